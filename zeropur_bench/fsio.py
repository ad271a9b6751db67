"""One atomic writer for every file the package writes (records, batch files, tables, figures, registries).

Temp file in the destination folder, fsync, ``os.replace``: a reader never sees a half-written file, and a failed
write (a full disk, a kill) leaves the old file as it was. ``mkstemp`` creates files with mode 0600, which would
hide records from colleagues on a shared filesystem, so the final mode is 0666 minus the process umask (0644
under the usual 022), as ``open()`` would give.
"""
from __future__ import annotations

import errno
import json
import os
import tempfile
from pathlib import Path
from typing import Any, Callable

from .errors import UserError


def _umask() -> int:
    old = os.umask(0o022)  # the only portable way to read it is to set it
    os.umask(old)
    return old


def write_bytes_atomic(path: str | os.PathLike, data: bytes, mode: int | None = None) -> None:
    """Write ``data`` to ``path`` atomically; ``mode`` defaults to ``0o666 & ~umask``. A full disk or a read-only
    location is a :class:`UserError` naming the file, and nothing is left behind."""
    path = Path(path)
    tmp = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=".tmp-", suffix=path.suffix, dir=path.parent)
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o666 & ~_umask() if mode is None else mode)
        os.replace(tmp, path)
        tmp = None
    except OSError as exc:
        if exc.errno in (errno.ENOSPC, errno.EDQUOT):
            raise UserError(f"no space left on the device to write '{path}'; free some space or choose another "
                            "location, then rerun (finished batches are kept)") from None
        if exc.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
            raise UserError(f"cannot write '{path}': {exc.strerror}; choose a writable location") from None
        raise
    finally:
        if tmp is not None and os.path.exists(tmp):
            os.unlink(tmp)


def write_text_atomic(path: str | os.PathLike, text: str) -> None:
    """Text (a final newline added when missing), atomically."""
    write_bytes_atomic(path, (text if text.endswith("\n") else text + "\n").encode("utf-8"))


def write_json_atomic(path: str | os.PathLike, obj: Any) -> None:
    """JSON (indent 1, keys in insertion order), atomically."""
    write_text_atomic(path, json.dumps(obj, indent=1, sort_keys=False))


def refuse_foreign(path: str | os.PathLike, is_ours: Callable[[Any], bool], what: str, *,
                   parse: Callable[[str], Any] = json.loads, option: str = "--out") -> None:
    """A :class:`UserError` when ``path`` exists but its content (JSON unless ``parse`` says otherwise) is not
    ``what`` (``is_ours`` says which is): a file of the user's is never overwritten by an output of this package."""
    path = Path(path)
    if not path.exists():
        return
    try:
        ok = bool(is_ours(parse(path.read_text(encoding="utf-8"))))
    except (OSError, UnicodeDecodeError, ValueError, AttributeError):
        ok = False
    if not ok:
        raise UserError(f"{option} '{path}' exists and is not {what}; refusing to overwrite it")
