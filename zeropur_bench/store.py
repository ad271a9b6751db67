"""Where a run's results live on disk: the record file and ``<record>.partial/`` (one JSON per finished batch).

* The partial folder's ``config.json`` holds the resume key; batches of another configuration or another code
  version are never mixed in (several processes may open it at once: the first writer wins, the rest compare).
  The folder is created with the first finished batch: a refused run, or a ``--merge-only`` with nothing to
  merge, leaves nothing on disk.
* A batch file that cannot be read back (truncated, foreign) counts as not finished: a rerun recomputes it, and
  ``--merge-only`` names it among the missing ones.
* An existing file at the record's path is the same run's finished record (reported, not recomputed, unless
  forced), an older record of the same configuration (replaced), or anything else (refused: never overwritten).
"""
from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Any

from .errors import UserError
from .fsio import check_regular, write_json_atomic
from .records.batch import BatchResult
from .keys import code_version, describe_diff, digest

_BATCH = re.compile(r"batch-\d{5,}\.json")


def resolve_out(out: str | os.PathLike | None, default_name: str, results_dir: str | os.PathLike = "results") -> Path:
    """Where a record goes: ``out``; an existing folder or a path ending in '/' means "that folder, default name";
    None means ``results/<default name>``. The location must be writable (checked, nothing created)."""
    if out is None:
        path = Path(results_dir) / default_name
    else:
        text = os.fspath(out)
        path = Path(text)
        if text.endswith(("/", os.sep)) or path.is_dir():
            path = path / default_name
    if path.is_dir():
        raise UserError(f"output '{path}' is a folder; give a file name or a folder ending in '/'")
    probe = path.parent
    while not probe.exists():
        if probe == probe.parent:
            break
        probe = probe.parent
    if not probe.is_dir():
        raise UserError(f"cannot write '{path}': '{probe}' is a file, not a folder")
    if not os.access(probe, os.W_OK | os.X_OK):
        raise UserError(f"cannot write '{path}': no write permission in '{probe}'")
    check_regular(path)
    return path


class RunStore:
    """The record at ``path`` and its partial folder, for the run with resume key ``resume``."""

    def __init__(self, path: Path, resume: dict[str, Any], n_batches: int) -> None:
        self.path = path
        self.partial = path.with_name(path.name + ".partial")
        self.resume = resume
        self.n_batches = n_batches
        self.damaged: list[int] = []  # batch files found but unreadable (recomputed, or missing for a merge)
        self._meta: dict | None = None  # the partial folder's config.json, written with the first batch
        self._meta_written = False

    # -- the record ------------------------------------------------------------------------------------------
    def finished(self) -> dict | None:
        """The same run's finished record at ``path`` (same resume key), None when there is none or it is an
        older record of the same configuration; anything else there is refused."""
        from .records import SCHEMA

        if not check_regular(self.path):  # a device, a FIFO ... is refused before it is opened
            return None
        try:
            old = json.loads(self.path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError):
            old = None
        keys = old.get("keys") if isinstance(old, dict) and old.get("schema") == SCHEMA else None
        if not isinstance(keys, dict):
            raise UserError(f"'{self.path}' exists and is not a record of this run; refusing to overwrite it: "
                            "choose another --out")
        if keys.get("resume_hash") == digest(self.resume):
            return old
        if keys.get("comparison_hash") == digest(self.resume["comparison"]):
            return None  # the same configuration, made with other code or batches: replaced by this run
        diff = describe_diff(keys.get("comparison") or {}, self.resume["comparison"])
        raise UserError(f"'{self.path}' holds the record of another configuration ({diff}); refusing to overwrite "
                        "it: choose another --out")

    def write_record(self, record: dict) -> None:
        write_json_atomic(self.path, record)
        self._remove_partial()

    def _remove_partial(self) -> None:
        """Delete the partial folder's own files (config.json, batch files, a writer's leftover temp files) and
        the folder once empty; anything else a user put there stays."""
        if not self.partial.is_dir() or self.partial.is_symlink():
            return
        for f in self.partial.iterdir():
            if f.name == "config.json" or _BATCH.fullmatch(f.name) or f.name.startswith(".tmp-"):
                if f.is_file() or f.is_symlink():
                    f.unlink(missing_ok=True)
        try:
            self.partial.rmdir()
        except OSError:
            pass  # not empty: a file that is not ours

    # -- the batches -----------------------------------------------------------------------------------------
    def open(self, git_commit: str | None) -> None:
        """Check that an existing partial folder is this run's (read only). The folder and its ``config.json``
        are created with the first batch file (:meth:`write_batch`): a run refused or stopped before any batch
        is finished, or a ``--merge-only`` with nothing to merge, leaves nothing behind."""
        self._meta = {"resume_key": self.resume, "resume_hash": digest(self.resume), "code_version": code_version(),
                      "git_commit": git_commit, "n_batches": self.n_batches}
        check_regular(self.path)
        if os.path.lexists(self.partial) and not self.partial.is_dir():
            raise UserError(f"'{self.partial}' is not a folder of partial results; move it away or choose another "
                            "--out")
        meta_file = self.partial / "config.json"
        if os.path.lexists(meta_file):
            self._check_existing(meta_file, self._meta)
            self._meta_written = True
        elif self.partial.is_dir() and any(not f.name.startswith(".tmp-") for f in self.partial.iterdir()):
            raise UserError(f"'{self.partial}' holds files but no config.json: it is not partial results of this "
                            "package; move it away or choose another --out")

    def _write_meta(self) -> None:
        """``config.json`` (the resume key), whole or not at all: the first of several processes writes it, the
        others compare theirs with it."""
        if self._meta is None or self._meta_written:
            return
        meta_file = self.partial / "config.json"
        created = not os.path.lexists(self.partial)
        try:
            write_json_atomic(meta_file, self._meta, exclusive=True)
        except FileExistsError:
            self._check_existing(meta_file, self._meta)
        except UserError:  # e.g. a full disk: leave no empty folder behind
            if created:
                try:
                    self.partial.rmdir()
                except OSError:
                    pass
            raise
        self._meta_written = True

    def _check_existing(self, meta_file: Path, meta: dict) -> None:
        check_regular(meta_file, "the partial folder's")
        try:  # written whole by the atomic writer (older versions could leave it empty after a full disk)
            old = json.loads(meta_file.read_text(encoding="utf-8"))
            if not isinstance(old, dict):
                raise ValueError("not a JSON object")
        except (OSError, UnicodeDecodeError, ValueError):
            raise UserError(f"'{meta_file}' is unreadable; remove '{self.partial}' to start over") from None
        if old.get("resume_hash") == meta["resume_hash"]:
            return
        ok = old.get("resume_key") or {}
        if ok.get("comparison") == self.resume["comparison"] and ok.get("batch_size") == self.resume["batch_size"]:
            raise UserError(f"'{self.partial}' holds batches made by different code (version "
                            f"{old.get('code_version')}, commit {old.get('git_commit')}; now {code_version()}); "
                            f"batches of two code versions are never mixed: remove '{self.partial}' to start over, "
                            "or finish it with the code that started it")
        diff = describe_diff(ok, self.resume) if isinstance(ok, dict) and ok else "unknown"
        raise UserError(f"'{self.partial}' holds partial results of a different configuration ({diff}); remove it "
                        "or choose another --out")

    def batch_file(self, b: int) -> Path:
        return self.partial / f"batch-{b:05d}.json"

    def read_batch(self, b: int, n: int, variants: list[str]) -> BatchResult | None:
        """Batch ``b`` if its file holds ``n`` examples of every variant, else None (a damaged file is noted)."""
        f = self.batch_file(b)
        if not os.path.lexists(f):
            return None
        try:
            if not f.is_file():  # never opened: a FIFO would block
                raise OSError("not a regular file")
            res = BatchResult.from_dict(json.loads(f.read_text(encoding="utf-8")))
            ok = (len(res.index) == n and len(res.clean_correct) == n
                  and all(len(res.variants[k].defended_clean_correct) == n for k in variants))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError, KeyError, TypeError, ValueError, AttributeError):
            ok = False
        if not ok:
            if b not in self.damaged:
                self.damaged.append(b)
            return None
        return res

    def write_batch(self, b: int, res: BatchResult) -> None:
        self._write_meta()
        write_json_atomic(self.batch_file(b), res.to_dict())
        if b in self.damaged:
            self.damaged.remove(b)
