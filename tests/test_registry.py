"""Every registered classifier (zeropur_bench/weights/registry.json) loads by name, has the recorded sha256 and
reproduces its recorded accuracy in fp32: the first 500 test images in the default run, the full test set in
``-m slow``. A classifier shipped without a registry entry, or an entry without its file, fails."""
from __future__ import annotations

import pytest
import torch

from zeropur_bench import registry
from zeropur_bench.classifiers import file_sha256, load_classifier
from zeropur_bench.data import load_data

ENTRIES = sorted(registry.entries())
SHIPPED = [n for n in ENTRIES if not registry.get(n).file.startswith("shared:")]
FLOORS = {"resnet20-cifar10-vanilla": 0.80, "resnet20-cifar10-standard": 0.88, "resnet20-cifar10-strong": 0.85,
          "resnet20-cifar100-vanilla": 0.45, "resnet20-cifar100-standard": 0.62, "resnet20-cifar100-strong": 0.55,
          "resnet18-cifar10-vanilla": 0.82}


def _count(name: str, n: int | None, data_dir: str) -> int:
    e = registry.get(name)
    model = load_classifier(name, e.dataset)
    x, y = load_data(e.dataset, "test", n=n, data_dir=data_dir)
    with torch.no_grad():
        return sum(int((model(x[i:i + 500]).argmax(1) == y[i:i + 500]).sum()) for i in range(0, len(y), 500))


def test_every_shipped_file_is_registered() -> None:
    files = {p.name for p in registry.WEIGHTS.glob("*.safetensors")}
    assert files == {registry.get(n).file for n in SHIPPED}
    assert not list(registry.WEIGHTS.glob("*.pt"))  # one format for every shipped classifier


def test_the_paper_grid_is_shipped() -> None:
    """Issue 13: the paper's three training recipes (Table 1) on both CIFAR datasets, each above its floor."""
    assert set(FLOORS) <= set(SHIPPED)
    for name, floor in FLOORS.items():
        e = registry.get(name)
        assert e.recipe == name.rsplit("-", 1)[1] and e.test_n == 10000 and e.test_acc >= floor


@pytest.mark.parametrize("name", ENTRIES)
def test_registered_classifier_reproduces_first500(name: str, data_dir: str) -> None:
    e = registry.get(name)
    assert file_sha256(registry.path_of(e)) == e.sha256
    assert e.reproduce or e.file.startswith("shared:")
    assert _count(name, 500, data_dir) == e.correct_first500
    if name in FLOORS:
        assert e.test_n == 10000 and e.test_acc >= FLOORS[name]


def test_reproduce_is_the_normalised_training_command() -> None:
    """A registry entry's reproduce command is the one its weights' metadata records (``cli_command``): the
    ``zeropur-bench train`` form, with no machine's data folder in it."""
    from zeropur_bench.registry import read_metadata

    for name in SHIPPED:
        e = registry.get(name)
        meta = read_metadata(registry.path_of(e))
        if meta.get("reproduce"):
            assert e.reproduce == meta["reproduce"], name
            assert e.reproduce.startswith("zeropur-bench train ") and "--data-dir" not in e.reproduce, name


@pytest.mark.slow
@pytest.mark.parametrize("name", ENTRIES)
def test_registered_classifier_full_test_set(name: str, data_dir: str) -> None:
    e = registry.get(name)
    assert _count(name, None, data_dir) == round(e.test_acc * e.test_n)
