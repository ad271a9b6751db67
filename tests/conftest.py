"""Shared fixtures: real CIFAR data decoded from ../shared/data and the shared pretrained CIFAR-10 ResNets.

``ZEROPUR_BENCH_DATA`` must point at the decoded ``.npz`` files (``.ci/run`` sets it up); without it the
fixtures decode ../shared/data into a temporary folder once per session.
"""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("ZEROPUR_BENCH_SHARED", REPO.parent / "shared"))
WEIGHTS = SHARED / "weights" / "cifar10"

torch.set_num_threads(int(os.environ.get("ZEROPUR_BENCH_TEST_THREADS", "1")))


@pytest.fixture(scope="session")
def data_dir(tmp_path_factory: pytest.TempPathFactory) -> str:
    for cand in (os.environ.get("ZEROPUR_BENCH_DATA"), str(REPO / "data")):
        if cand and (Path(cand) / "cifar10_test.npz").is_file() and (Path(cand) / "cifar100_test.npz").is_file():
            cand = str(Path(cand).resolve())  # absolute: subprocess tests run in other working directories
            os.environ["ZEROPUR_BENCH_DATA"] = cand
            return cand
    out = tmp_path_factory.mktemp("data")
    subprocess.run([sys.executable, str(SHARED / "data" / "prepare.py"), str(out)], check=True,
                   stdout=subprocess.DEVNULL)
    os.environ["ZEROPUR_BENCH_DATA"] = str(out)
    return str(out)


@pytest.fixture(scope="session")
def cifar10_test(data_dir: str) -> tuple[torch.Tensor, torch.Tensor]:
    """The first 500 CIFAR-10 test images (original order) and labels."""
    from zeropur_bench.data import load_data

    return load_data("cifar10", "test", n=500, data_dir=data_dir)


def _shared_resnet(depth: int) -> torch.nn.Module:
    from zeropur_bench.classifiers import load_classifier

    return load_classifier(f"resnet{depth}", "cifar10", checkpoint=str(WEIGHTS / f"resnet{depth}.th"))


@pytest.fixture(scope="session")
def resnet20() -> torch.nn.Module:
    return _shared_resnet(20)


@pytest.fixture(scope="session")
def resnet56() -> torch.nn.Module:
    return _shared_resnet(56)


@pytest.fixture(scope="session")
def resnet20_path() -> str:
    return str(WEIGHTS / "resnet20.th")


def make_malicious_checkpoint(folder: Path) -> tuple[Path, Path]:
    """A checkpoint whose pickle would run ``touch <sentinel>`` if unpickled without weights_only."""
    sentinel = folder / "pwned"

    class Payload:
        def __reduce__(self):
            return (os.system, (f"touch {sentinel}",))

    ckpt = folder / "evil.pt"
    torch.save({"state_dict": {"w": torch.zeros(1)}, "x": Payload()}, ckpt)
    return ckpt, sentinel
