"""Datasets: the first ``n`` examples of a split as ``(x, y)``, with provenance.

x is float32 in [0, 1], NCHW; y is int64. Sources, in order:

1. ``<data_dir>/<dataset>_<split>.npz`` (x uint8 NHWC, y): what ``../shared/data/prepare.py`` writes;
2. the torchvision / RobustBench layout in ``data_dir`` through robustbench's loaders (these download when
   online; CIFAR only has a test split there);
3. ImageNet from ``<data_dir>/imagenet/val`` (or ``<data_dir>/val``) through robustbench's loader.

``data_dir`` comes from the caller (the CLI's ``--data-dir``), else ``$ZEROPUR_BENCH_DATA``, else ``./data``.
"""
from __future__ import annotations

import hashlib
import os
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Literal, overload

import numpy as np
import torch

from .errors import UserError

DATASETS: dict[str, dict] = {
    "cifar10": {"num_classes": 10, "shape": (3, 32, 32), "splits": ("test", "train")},
    "cifar100": {"num_classes": 100, "shape": (3, 32, 32), "splits": ("test", "train")},
    "imagenet": {"num_classes": 1000, "shape": (3, 224, 224), "splits": ("test",)},
}
ENV_VAR = "ZEROPUR_BENCH_DATA"
OFFLINE_VAR = "ZEROPUR_BENCH_OFFLINE"


def offline() -> bool:
    """``$ZEROPUR_BENCH_OFFLINE`` set to 1/true/yes: never try to download data or checkpoints."""
    return os.environ.get(OFFLINE_VAR, "").strip().lower() in ("1", "true", "yes")


@dataclass(frozen=True)
class DataInfo:
    """What was loaded: enough to refuse comparing results made on different data."""

    dataset: str
    split: str
    n: int
    source: str  # "npz" | "torchvision" | "imagefolder"
    path: str
    sha256: str  # of the returned slice: x as float32 bytes, then y as int64 bytes

    def to_dict(self) -> dict:
        return asdict(self)


def resolve_data_dir(data_dir: str | os.PathLike | None = None) -> Path:
    """The data directory: the argument, else ``$ZEROPUR_BENCH_DATA``, else ``./data``."""
    if data_dir is not None:
        return Path(data_dir)
    return Path(os.environ.get(ENV_VAR) or "data")


def portable_path(path: str | os.PathLike) -> str:
    """``path`` as a reader on another machine can use it, never a machine's absolute path: under
    ``$ZEROPUR_BENCH_DATA`` it is written ``$ZEROPUR_BENCH_DATA/<rest>``; inside this package (shipped weights) it is
    ``zeropur_bench/<rest>``; under the working directory or its
    parent (``../shared``) it is relative to the working directory; otherwise only its last two parts remain.
    For display and provenance only: nothing is identified by a path (hashes do that)."""
    p = Path(os.path.abspath(path))
    env = os.environ.get(ENV_VAR)
    if env:
        try:
            return f"${ENV_VAR}/{p.relative_to(Path(os.path.abspath(env))).as_posix()}".rstrip("/")
        except ValueError:
            pass
    pkg = Path(__file__).resolve().parent
    try:  # shipped files (weights, calibrations): named inside the package, wherever the command ran
        return (pkg.name / Path(p).resolve().relative_to(pkg)).as_posix()
    except ValueError:
        pass
    rel = Path(os.path.relpath(p, os.getcwd()))
    if not rel.parts or rel.parts[0] != ".." or (len(rel.parts) > 1 and rel.parts[1] != ".."):
        return rel.as_posix()
    return "…/" + "/".join(p.parts[-2:])


def slice_sha256(x: torch.Tensor, y: torch.Tensor) -> str:
    h = hashlib.sha256()
    h.update(x.detach().to(torch.float32).contiguous().cpu().numpy().tobytes())
    h.update(y.detach().to(torch.int64).contiguous().cpu().numpy().tobytes())
    return h.hexdigest()


def check_dataset(dataset: str, split: str = "test") -> None:
    if dataset not in DATASETS:
        raise UserError(f"unknown dataset '{dataset}'; known: {', '.join(DATASETS)}")
    if split not in DATASETS[dataset]["splits"]:
        raise UserError(f"dataset '{dataset}' has no split '{split}'; known: {', '.join(DATASETS[dataset]['splits'])}")


def _missing_message(dataset: str, split: str, root: Path, why: str) -> str:
    return (f"no {dataset} {split} data found in '{root}' ({why}). Provide it one of these ways: "
            f"(1) decode the shared copy: `python ../shared/data/prepare.py {root}` (writes {dataset}_{split}.npz); "
            f"(2) point --data-dir or ${ENV_VAR} at a folder holding {dataset}_{split}.npz or the torchvision "
            f"layout; (3) run once online so robustbench/torchvision can download it into that folder.")


def _load_npz(path: Path, dataset: str, n: int | None) -> tuple[torch.Tensor, torch.Tensor]:
    import zipfile

    try:
        with np.load(path, allow_pickle=False) as d:
            if "x" not in d or "y" not in d:
                raise UserError(f"data file '{path}' must hold arrays 'x' (uint8 N×H×W×C) and 'y'; found "
                                f"{sorted(d.files)}")
            x_np, y_np = d["x"], d["y"]
    except (zipfile.BadZipFile, EOFError, ValueError, OSError) as exc:
        raise UserError(f"data file '{path}' is damaged ({str(exc).splitlines()[0][:120]}); decode it again with "
                        f"`python ../shared/data/prepare.py {path.parent}`") from None
    h, w = DATASETS[dataset]["shape"][1:]
    if x_np.dtype != np.uint8 or x_np.ndim != 4 or x_np.shape[1:] != (h, w, 3):
        raise UserError(f"data file '{path}': x must be uint8 N×{h}×{w}×3 (RGB {dataset} images), got "
                        f"{x_np.dtype} {'×'.join(map(str, x_np.shape))}")
    check_labels(y_np, len(x_np), dataset, f"data file '{path}'")
    if n is not None:
        x_np, y_np = x_np[:n], y_np[:n]
    x = torch.from_numpy(np.ascontiguousarray(x_np)).permute(0, 3, 1, 2).float().div_(255.0).contiguous()
    y = torch.from_numpy(np.asarray(y_np).astype(np.int64))
    return x, y


def check_labels(y: np.ndarray | torch.Tensor, n_images: int, dataset: str, where: str) -> None:
    """Labels as the engine needs them: one integer per image, each a class of ``dataset``. A
    :class:`UserError` naming ``where`` and what is wrong, before any work is done."""
    y = y.numpy() if isinstance(y, torch.Tensor) else np.asarray(y)
    num_classes = DATASETS[dataset]["num_classes"]
    if y.ndim != 1:
        raise UserError(f"{where}: y must hold one label per image (shape N), got shape "
                        f"{'×'.join(map(str, y.shape)) or 'scalar'}")
    if not np.issubdtype(y.dtype, np.integer):
        raise UserError(f"{where}: y must hold integer class labels, got {y.dtype}")
    if len(y) != n_images:
        raise UserError(f"{where}: {len(y)} labels for {n_images} images; there must be one label per image")
    if len(y) and (int(y.min()) < 0 or int(y.max()) >= num_classes):
        bad = int(y.min()) if int(y.min()) < 0 else int(y.max())
        raise UserError(f"{where}: label {bad} is not a {dataset} class (0..{num_classes - 1}); is it "
                        f"another dataset's file?")


def check_images(x: torch.Tensor, dataset: str, where: str) -> None:
    """Images as the engine needs them: float N×3×H×W in [0, 1] at ``dataset``'s size."""
    shape = tuple(DATASETS[dataset]["shape"])
    if not x.is_floating_point() or x.ndim != 4 or tuple(x.shape[1:]) != shape:
        raise UserError(f"{where}: images must be float N×{'×'.join(map(str, shape))} ({dataset}), got "
                        f"{str(x.dtype).removeprefix('torch.')} {'×'.join(map(str, x.shape))}")
    if len(x) and not (bool(torch.isfinite(x).all()) and float(x.min()) >= 0 and float(x.max()) <= 1):
        raise UserError(f"{where}: image values must be finite and in [0, 1]")


def _load_robustbench(dataset: str, split: str, root: Path, n: int | None) -> tuple[torch.Tensor, torch.Tensor, str]:
    from ._compat import import_robustbench

    rb = import_robustbench()
    if dataset == "imagenet":
        folder = root / "imagenet" if (root / "imagenet" / "val").is_dir() else root
        if not (folder / "val").is_dir():
            raise FileNotFoundError(f"no ImageNet folder '{folder / 'val'}'")
        x, y = rb.data.load_imagenet(n_examples=n or 5000, data_dir=str(folder))
        return x, y.long(), "imagefolder"
    if split != "test":
        raise FileNotFoundError("robustbench's loaders only provide the test split")
    loader = rb.data.load_cifar10 if dataset == "cifar10" else rb.data.load_cifar100
    x, y = loader(n_examples=n, data_dir=str(root))
    return x, y.long(), "torchvision"


@overload
def load_data(dataset: str, split: str = ..., n: int | None = ..., data_dir: str | os.PathLike | None = ...,
              return_info: Literal[False] = ...) -> tuple[torch.Tensor, torch.Tensor]: ...
@overload
def load_data(dataset: str, split: str = ..., n: int | None = ..., data_dir: str | os.PathLike | None = ...,
              *, return_info: Literal[True]) -> tuple[torch.Tensor, torch.Tensor, DataInfo]: ...


def load_data(dataset: str, split: str = "test", n: int | None = None, data_dir: str | os.PathLike | None = None,
              return_info: bool = False):
    """The first ``n`` examples (all if ``None``) of ``dataset``'s ``split``, as RobustBench takes them.

    Returns ``(x, y)`` or, with ``return_info=True``, ``(x, y, DataInfo)``.
    """
    check_dataset(dataset, split)
    if n is not None and n <= 0:
        raise UserError(f"n must be a positive number of examples, got {n}")
    root = resolve_data_dir(data_dir)
    npz = root / f"{dataset}_{split}.npz"
    if npz.is_file():
        x, y = _load_npz(npz, dataset, n)
        source, path = "npz", portable_path(npz)
    elif offline():
        raise UserError(_missing_message(dataset, split, root, f"offline mode (${OFFLINE_VAR}), no download tried"))
    else:
        try:
            x, y, source = _load_robustbench(dataset, split, root, n)
        except UserError:
            raise
        except Exception as exc:  # offline download failure, missing folder, md5 mismatch ...
            why = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            raise UserError(_missing_message(dataset, split, root, why[:200])) from None
        path = portable_path(root)
        check_images(x, dataset, f"data in '{root}'")
        check_labels(y, len(x), dataset, f"data in '{root}'")
    if n is not None and len(x) < n:
        raise UserError(f"asked for n={n} {dataset} {split} examples but '{path}' holds only {len(x)}")
    info = DataInfo(dataset=dataset, split=split, n=len(x), source=source, path=path, sha256=slice_sha256(x, y))
    return (x, y, info) if return_info else (x, y)
