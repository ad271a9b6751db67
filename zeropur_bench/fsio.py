"""One atomic writer for every file the package writes (records, batch files, tables, figures, registries), and
the one rule every writer follows: it writes a missing file or replaces a regular file of its own making, never
anything else.

Temp file in the destination folder, fsync, ``os.replace``: a reader never sees a half-written file, and a failed
write (a full disk, a kill) leaves the old file as it was. ``mkstemp`` creates files with mode 0600, which would
hide records from colleagues on a shared filesystem, so the final mode is 0666 minus the process umask (0644
under the usual 022), as ``open()`` would give.

A symlink is followed: its target is what is written (or refused), and the link stays a link. A device, a FIFO,
a socket or a folder at the path (or at a symlink's end) is never opened, read or replaced.
"""
from __future__ import annotations

import errno
import json
import os
import stat
import tempfile
from pathlib import Path
from typing import Any, Callable

from .errors import UserError

_KINDS = ((stat.S_ISDIR, "a folder"), (stat.S_ISCHR, "a character device"), (stat.S_ISBLK, "a block device"),
          (stat.S_ISFIFO, "a FIFO (named pipe)"), (stat.S_ISSOCK, "a socket"))


def _umask() -> int:
    old = os.umask(0o022)  # the only portable way to read it is to set it
    os.umask(old)
    return old


def file_kind(path: str | os.PathLike) -> str | None:
    """What is at ``path``, symlinks followed: None (nothing), ``"a regular file"``, ``"a folder"``, ``"a
    character device"``, ``"a FIFO (named pipe)"``, ``"a socket"``, ``"a symlink to nothing"`` ... (never opens
    it: reading a FIFO would block)."""
    try:
        mode = os.stat(path).st_mode
    except FileNotFoundError:
        return "a symlink to nothing" if os.path.islink(path) else None
    except NotADirectoryError:
        return None  # a parent is a file: resolve_out / the writer say so
    if stat.S_ISREG(mode):
        return "a regular file"
    return next((what for test, what in _KINDS if test(mode)), "not a regular file")


def check_regular(path: str | os.PathLike, option: str = "--out", action: str = "write") -> bool:
    """True when ``path`` (symlinks followed) is a regular file, False when nothing is there; a
    :class:`UserError` for anything else (a device, a FIFO, a socket, a folder, a dangling symlink), which is
    never opened (``action`` says what was refused: write or read)."""
    kind = file_kind(path)
    if kind is None:
        return False
    if kind != "a regular file":
        link = f" (a symlink to '{os.path.realpath(path)}')" if os.path.islink(path) else ""
        raise UserError(f"{option} '{path}' is {kind}{link}, not a regular file; refusing to {action} it: give "
                        "a regular file")
    return True


def claim(path: str | os.PathLike, is_ours: Callable[[Path], bool], what: str, option: str = "--out",
          fix: str = "move it away or choose another file name") -> None:
    """The one rule of every writer, checked before any work: ``path`` must be missing, or a regular file that
    ``is_ours`` (given the path; it may read it) recognises as ``what`` made by this package. Anything else is a
    :class:`UserError` and nothing is written: a device, a FIFO, a symlink to one, a user's file."""
    path = Path(path)
    if not check_regular(path, option):
        return
    try:
        ok = bool(is_ours(path))
    except (OSError, UnicodeDecodeError, ValueError, AttributeError, TypeError, KeyError):
        ok = False
    if not ok:
        raise UserError(f"{option} '{path}' exists and is not {what}; refusing to overwrite it: {fix}")


def json_is(test: Callable[[dict], bool]) -> Callable[[Path], bool]:
    """An ``is_ours`` for :func:`claim`: the file is a JSON object that ``test`` accepts."""

    def is_ours(path: Path) -> bool:
        obj = json.loads(path.read_text(encoding="utf-8"))
        return isinstance(obj, dict) and bool(test(obj))

    return is_ours


def refuse_foreign(path: str | os.PathLike, is_ours: Callable[[Any], bool], what: str, *,
                   parse: Callable[[str], Any] | None = None, option: str = "--out") -> None:
    """:func:`claim` for outputs recognised by their content: ``is_ours`` is given the file parsed by ``parse``
    (default: JSON)."""
    if parse is None:
        claim(path, json_is(is_ours), what, option)
    else:
        claim(path, lambda p: is_ours(parse(Path(p).read_text(encoding="utf-8"))), what, option)


def write_bytes_atomic(path: str | os.PathLike, data: bytes, mode: int | None = None, *,
                       exclusive: bool = False) -> None:
    """Write ``data`` to ``path`` atomically; ``mode`` defaults to ``0o666 & ~umask``. A symlink's target is
    written; anything but a regular file there is refused (:func:`check_regular`). ``exclusive``: create the file
    only if nothing is there (``FileExistsError`` otherwise), still never half-written. A full disk or a
    read-only location is a :class:`UserError` naming the file, and nothing is left behind."""
    path = Path(path)
    check_regular(path)
    if path.is_symlink():
        path = Path(os.path.realpath(path))
    tmp, taken = None, False
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=".tmp-", suffix=path.suffix, dir=path.parent)
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o666 & ~_umask() if mode is None else mode)
        if exclusive:
            try:
                os.link(tmp, path)  # fails if anything is there: the first writer wins, whole
            except FileExistsError:
                taken = True
        else:
            check_regular(path)  # again, right before the replace: never a device made meanwhile
            os.replace(tmp, path)
            tmp = None
    except OSError as exc:
        if exc.errno in (errno.ENOSPC, errno.EDQUOT):
            raise UserError(f"no space left on the device to write '{path}'; free some space or choose another "
                            "location, then rerun (finished batches are kept)") from None
        if exc.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
            raise UserError(f"cannot write '{path}': {exc.strerror}; choose a writable location") from None
        if exc.errno in (errno.ENOTDIR, errno.EEXIST, errno.EISDIR):
            raise UserError(f"cannot write '{path}': {exc.strerror} (a part of the path is a file, not a "
                            "folder); choose another location") from None
        raise
    finally:
        if tmp is not None and os.path.lexists(tmp):
            os.unlink(tmp)
    if taken:
        raise FileExistsError(errno.EEXIST, "another writer made it first", str(path))


def write_text_atomic(path: str | os.PathLike, text: str, *, exclusive: bool = False) -> None:
    """Text (a final newline added when missing), atomically."""
    write_bytes_atomic(path, (text if text.endswith("\n") else text + "\n").encode("utf-8"), exclusive=exclusive)


def write_json_atomic(path: str | os.PathLike, obj: Any, *, exclusive: bool = False) -> None:
    """JSON (indent 1, keys in insertion order), atomically."""
    write_text_atomic(path, json.dumps(obj, indent=1, sort_keys=False), exclusive=exclusive)
