"""Shipped classifiers by name, as RobustBench registers its zoo: ``resnet20-cifar10-standard`` etc.

One place and one format for every classifier the project ships: ``zeropur_bench/weights/<name>.safetensors``
(safetensors: loading can never run code), fp32 for files of a few MB, fp16 above that (loaded back to fp32),
with the training metadata as JSON under the header key ``zeropur_bench``. The entries live in
``zeropur_bench/weights/registry.json``; each gives file, sha256, architecture, dataset, training recipe, test
accuracy, the hardware that trained it and the command that reproduces it, plus room for a download URL
(fetched with a sha256 check) for the day the files are hosted. The public weights in ``../shared/weights``
are registered too (location ``shared:``), identified by sha256, so a record made from them gets its recipe
(``standard-padcrop``) without being told. Files are identified by sha256, never by path.
"""
from __future__ import annotations

import functools
import json
import os
from dataclasses import MISSING, asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

import torch

from .errors import UserError
from .fsio import write_bytes_atomic

WEIGHTS = Path(__file__).resolve().parent / "weights"
REGISTRY_FILE = WEIGHTS / "registry.json"
META_KEY = "zeropur_bench"
FP16_ABOVE_BYTES = 8 * 1024 * 1024  # files of a few MB stay fp32; larger ones ship as fp16
MAX_FILE_BYTES = 24 * 1024 * 1024


@dataclass(frozen=True)
class Entry:
    """One shipped (or registered public) classifier."""

    name: str
    arch: str
    dataset: str
    recipe: str
    file: str  # "<file>" in zeropur_bench/weights, or "shared:<path under ../shared/weights>"
    sha256: str
    test_acc: float | None = None
    test_n: int | None = None
    correct_first500: int | None = None
    trained_on: str | None = None
    reproduce: str | None = None
    url: str | None = None
    notes: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)
    # Fitted ILA weights of profile 'calibrated' (defense/calibration.py), one per rule and blur, each a
    # Calibration dict with the weights' sha256 (weights_sha256) by which ZeroPur finds it.
    calibrations: list[dict[str, Any]] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def file_sha256(path: str | os.PathLike) -> str:
    """sha256 of a file's bytes (how shipped classifiers are identified)."""
    import hashlib

    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def weights_dir() -> Path:
    """The folder of shipped classifiers and their ``registry.json``: ``$ZEROPUR_BENCH_WEIGHTS``, else the
    package's ``weights/``."""
    env = os.environ.get("ZEROPUR_BENCH_WEIGHTS")
    return Path(env) if env else WEIGHTS


_FIELDS = {f.name: f for f in fields(Entry)}
_REQUIRED = [n for n, f in _FIELDS.items() if f.default is MISSING and f.default_factory is MISSING]


@functools.lru_cache(maxsize=4)
def _read(registry_file: str) -> dict[str, Entry]:
    """The entries of a ``registry.json``; a damaged or foreign one is a :class:`UserError` naming it and the
    entry or field at fault (never a traceback, whichever command reads it, ``list`` included)."""
    path = Path(registry_file)
    if not path.is_file():  # none there (a FIFO or a device is not read either)
        return {}
    fix = ("restore it from the package, or point $ZEROPUR_BENCH_WEIGHTS at a folder holding a registry.json "
           "written by zeropur-bench" if os.environ.get("ZEROPUR_BENCH_WEIGHTS") else "reinstall the package")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise UserError(f"classifier registry '{path}' is damaged ({str(exc).splitlines()[0][:80]}); {fix}") \
            from None
    entries = data.get("classifiers") if isinstance(data, dict) else None
    if not isinstance(entries, list):
        raise UserError(f"classifier registry '{path}' is not a zeropur-bench registry (no list 'classifiers'); {fix}")
    out = {}
    for i, e in enumerate(entries):
        where = f"classifier registry '{path}', entry {i + 1}"
        if not isinstance(e, dict):
            raise UserError(f"{where} is not an object; {fix}")
        where += f" ('{e.get('name')}')" if isinstance(e.get("name"), str) else ""
        unknown = sorted(set(e) - set(_FIELDS))
        if unknown:
            raise UserError(f"{where} has unknown field(s) {', '.join(unknown)} (known: {', '.join(_FIELDS)}); "
                            f"it was written by another tool or version: {fix}")
        missing = [k for k in _REQUIRED if not isinstance(e.get(k), str) or not e.get(k)]
        if missing:
            raise UserError(f"{where} lacks the field(s) {', '.join(missing)} (each a non-empty text); {fix}")
        if e["name"] in out:
            raise UserError(f"{where}: the name '{e['name']}' is registered twice; {fix}")
        out[e["name"]] = Entry(**e)
    return out


def _load() -> dict[str, Entry]:
    return _read(str(weights_dir() / REGISTRY_FILE.name))


def reload() -> None:
    """Forget the cached ``registry.json``: the next lookup reads it again (after writing it, as ``ship`` does)."""
    _read.cache_clear()


def entries() -> dict[str, Entry]:
    """Every registered classifier, by name."""
    return dict(_load())


def get(name: str) -> Entry | None:
    return _load().get(name)


def by_sha256(sha: str | None) -> Entry | None:
    """The registered classifier with this file hash (how a path given by hand is recognised)."""
    return next((e for e in _load().values() if sha and e.sha256 == sha), None)


def calibrations_by_weights(weights_sha: str) -> list[dict[str, Any]]:
    """Every shipped calibration dict of the classifier whose weights have this sha256 (``weights_sha256``), each
    with ``source`` set to ``registry:<entry name>``."""
    return [{**c, "source": f"registry:{e.name}"} for e in _load().values() for c in e.calibrations
            if c.get("weights_sha256") == weights_sha]


def calibration_for(weights_sha: str, blur: str, rule: str) -> dict[str, Any] | None:
    """The shipped calibration dict for these weights, this blur and ``rule``; one fitted without a blur
    (``blur`` None: the scale rule) serves every blur. None if there is none."""
    cands = [c for c in calibrations_by_weights(weights_sha) if c.get("rule") == rule and c.get("blur") in (None, blur)]
    return next((c for c in cands if c.get("blur") == blur), cands[0] if cands else None)


def shared_dir() -> Path:
    """``$ZEROPUR_BENCH_SHARED/weights``, else ``../shared/weights`` from the working directory or the repository."""
    env = os.environ.get("ZEROPUR_BENCH_SHARED")
    if env:
        return Path(env) / "weights"
    for base in (Path.cwd(), Path(__file__).resolve().parents[1]):
        cand = base.parent / "shared" / "weights"
        if cand.is_dir():
            return cand
    return Path("..") / "shared" / "weights"


def path_of(entry: Entry) -> Path:
    """The local file of ``entry`` (downloaded first if it has a URL and is missing)."""
    root = shared_dir() if entry.file.startswith("shared:") else weights_dir()
    path = root / entry.file.removeprefix("shared:")
    if not path.resolve().is_relative_to(root.resolve()):
        raise UserError(f"classifier '{entry.name}': its registry file '{entry.file}' lies outside the weights "
                        f"folder '{root}'; fix {root / REGISTRY_FILE.name}")
    if not path.is_file():
        if entry.url:
            return fetch(entry, path)
        raise UserError(f"classifier '{entry.name}' is registered but its file '{path}' is missing"
                        + (" (set $ZEROPUR_BENCH_SHARED to the folder holding weights/)"
                           if entry.file.startswith("shared:") else " (reinstall the package)"))
    return path


def fetch(entry: Entry, path: Path) -> Path:
    """Download ``entry.url`` and check its sha256 before writing it to ``path`` (a mismatch writes nothing)."""
    import hashlib
    import urllib.request

    from .data import OFFLINE_VAR, offline

    if offline():
        raise UserError(f"classifier '{entry.name}' is not at '{path}' and offline mode (${OFFLINE_VAR}) forbids "
                        f"downloading it from {entry.url}")
    try:
        with urllib.request.urlopen(entry.url, timeout=60) as r:  # noqa: S310 (https URL)
            data = r.read(MAX_FILE_BYTES + 1)
    except OSError as exc:
        raise UserError(f"could not download classifier '{entry.name}' from {entry.url} ({exc})") from None
    got = hashlib.sha256(data).hexdigest()
    if got != entry.sha256:
        raise UserError(f"download of '{entry.name}' has sha256 {got[:12]}…, expected {entry.sha256[:12]}…; not used")
    write_bytes_atomic(path, data)  # checked first, then written whole: never a half-downloaded file
    return path


def write_classifier(state_dict: dict[str, torch.Tensor], meta: dict[str, Any], dest: str | os.PathLike,
                     fp16: bool | None = None) -> dict[str, Any]:
    """Write a shippable classifier file: safetensors with ``meta`` as JSON under the header key
    ``zeropur_bench``. ``fp16=None`` chooses fp16 when the fp32 file would exceed a few MB. Returns
    ``{"path", "sha256", "bytes", "dtype"}``."""
    from safetensors.torch import save

    tensors = {k: v.detach().cpu().contiguous() for k, v in state_dict.items()}
    fp32_bytes = sum(t.numel() * 4 for t in tensors.values() if t.is_floating_point())
    if fp16 is None:
        fp16 = fp32_bytes > FP16_ABOVE_BYTES
    if fp16:
        tensors = {k: (v.half() if v.is_floating_point() else v) for k, v in tensors.items()}
    dest = Path(dest)
    data = save(tensors, metadata={META_KEY: json.dumps({**meta, "stored_dtype": "fp16" if fp16 else "fp32"})})
    size = len(data)
    if size > MAX_FILE_BYTES:
        raise UserError(f"'{dest}' would be {size / 2**20:.1f} MB, over the {MAX_FILE_BYTES // 2**20} MB limit")
    write_bytes_atomic(dest, data, mode=0o644)
    return {"path": str(dest), "sha256": file_sha256(dest), "bytes": size, "dtype": "fp16" if fp16 else "fp32"}


def read_metadata(path: str | os.PathLike) -> dict[str, Any]:
    """The ``zeropur_bench`` metadata of a shipped safetensors file ({} if none)."""
    from safetensors import safe_open

    with safe_open(str(path), framework="pt") as f:
        raw = (f.metadata() or {}).get(META_KEY)
    return json.loads(raw) if raw else {}
