"""Adversarial training (issue 34's static reference): torchattacks' FGSM-RS / PGD-7 examples crafted in training
mode, the cyclic schedule, exact resume, and checkpoints written before these recipe keys existed."""
from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from zeropur_bench.errors import UserError
from zeropur_bench.train import cli_command, default_warmup, lr_at, train
from zeropur_bench.classifiers import Normalized
from zeropur_bench.train.adversarial import EPS, craft, watch_accuracy

KW = dict(batch_size=64, n_train=128, progress=False, eval_test=False, num_threads=1)


@pytest.fixture(scope="module")
def standard_r20():
    from zeropur_bench.classifiers import load_classifier

    return load_classifier("resnet20-cifar10-standard", "cifar10")


@pytest.mark.parametrize("name", ["fgsm-rs", "pgd-7"])
def test_crafted_examples_are_in_the_ball_and_raise_the_loss(name: str, standard_r20, data_dir: str) -> None:
    """On the shipped Standard ResNet-20 and real test images: within 8/255 and [0, 1], the loss rises, the model
    is back in its own mode afterwards, and 'none' returns the batch itself."""
    from zeropur_bench.data import load_data

    import copy

    x, y = load_data("cifar10", "test", n=64, data_dir=data_dir)
    # a copy: crafting in training mode updates BatchNorm's running statistics, as in the papers' training
    model = Normalized(copy.deepcopy(standard_r20), [0.0, 0.0, 0.0], [1.0, 1.0, 1.0], channels_last=False)
    model.eval()  # the shipped classifier normalises inside
    torch.manual_seed(0)
    adv = craft(model, name, x, y, bf16=False)
    assert not model.training
    assert (adv - x).abs().max() <= EPS + 1e-6 and adv.min() >= 0 and adv.max() <= 1
    assert (adv - x).abs().max() > EPS / 2  # it moved
    with torch.no_grad():
        clean, attacked = F.cross_entropy(model(x), y), F.cross_entropy(model(adv), y)
    assert attacked > clean + 0.5, (float(clean), float(attacked))
    assert craft(model, "none", x, y, bf16=False) is x
    acc = watch_accuracy(model, x, y, bf16=False, seed=0)
    with torch.no_grad():
        clean_acc = float((model(x).argmax(1) == y).float().mean())
    assert 0 <= acc < clean_acc - 0.3  # PGD-10 at 8/255 breaks a standard classifier


def test_cyclic_schedule() -> None:
    """Wong et al.'s one-cycle: up to the peak at 2/5 of the run, then linearly to 0."""
    assert default_warmup(15, "cyclic") == 6 and default_warmup(15) == 1
    total, warm = 1000, 400
    lrs = [lr_at(s, total, warm, 0.2, "cyclic") for s in range(total)]
    assert max(lrs) == pytest.approx(0.2) and lrs.index(max(lrs)) == warm - 1
    assert lrs[700] == pytest.approx(0.2 * (1 - 300 / 600)) and lrs[-1] < 0.001
    assert lr_at(850, total, warm, 0.2) == pytest.approx(0.1 * (1 + math.cos(math.pi * 450 / 600)))  # cosine: default


def test_adversarial_run_resumes_exactly_and_records_its_recipe(data_dir: str, tmp_path: Path) -> None:
    kw = dict(KW, data_dir=data_dir, adversarial="fgsm-rs", schedule="cyclic", lr=0.2)
    full = train("cifar10", "resnet20", "standard", 2, tmp_path / "a", **kw)
    part = train("cifar10", "resnet20", "standard", 2, tmp_path / "b", stop_after=1, **kw)
    assert not part["finished"]
    train("cifar10", "resnet20", "standard", 2, tmp_path / "b", **kw)
    a = torch.load(tmp_path / "a" / "model.pt", weights_only=True)
    b = torch.load(tmp_path / "b" / "model.pt", weights_only=True)
    for k in a["state_dict"]:
        assert torch.equal(a["state_dict"][k], b["state_dict"][k]), k
    assert [e["train_pgd10_acc"] for e in a["log"]] == [e["train_pgd10_acc"] for e in b["log"]]
    assert all(0 <= e["train_pgd10_acc"] <= 1 for e in a["log"])
    assert a["recipe"]["adversarial"]["name"] == "fgsm-rs" and a["recipe"]["adversarial"]["alpha"] == 10 / 255
    assert a["recipe"]["schedule"]["name"].startswith("cyclic") and a["recipe"]["schedule"]["warmup_epochs"] == 0 + 1
    assert "--adversarial fgsm-rs" in a["reproduce"] and "--schedule cyclic" in a["reproduce"]
    # the adversarial steps differ from clean ones: same seed, same data, other weights
    clean = train("cifar10", "resnet20", "standard", 1, tmp_path / "c", **dict(kw, adversarial="none"))
    assert clean["finished"]
    # a resume under another recipe is refused
    with pytest.raises(UserError, match="different recipe.*adversarial"):
        train("cifar10", "resnet20", "standard", 2, tmp_path / "b", **dict(kw, adversarial="pgd-7"))
    with pytest.raises(UserError, match="--adversarial"):
        train("cifar10", "resnet20", "standard", 2, tmp_path / "d", **dict(kw, adversarial="trades"))


def test_checkpoint_from_before_the_new_recipe_keys_resumes(data_dir: str, tmp_path: Path) -> None:
    """A checkpoint written before 'adversarial' and 'schedule' existed (the ResNet-18 runs) resumes as a clean,
    cosine run, and its reproduce command is unchanged."""
    kw = dict(KW, data_dir=data_dir)
    train("cifar10", "resnet20", "vanilla", 2, tmp_path / "old", stop_after=1, **kw)
    ck_path = tmp_path / "old" / "checkpoint.pt"
    ck = torch.load(ck_path, weights_only=True)
    for key in ("adversarial", "schedule"):
        del ck["config"][key]
    torch.save(ck, ck_path)
    assert "--adversarial" not in cli_command(ck["config"]) and "--schedule" not in cli_command(ck["config"])
    done = train("cifar10", "resnet20", "vanilla", 2, tmp_path / "old", **kw)
    assert done["finished"] and done["recipe"]["adversarial"] == {"name": "none"}


def test_shipped_fastat_reference_holds_its_floor_on_a_slice(data_dir: str) -> None:
    """The static reference (resnet20-cifar10-fastat) loads by name, checked by sha256, and on the first 200 test
    images keeps its clean accuracy and a white-box PGD-20 robust accuracy that a standard model does not have
    (its AutoAttack floor at n=1000 is in results/purifiers/)."""
    import torchattacks

    from zeropur_bench import registry
    from zeropur_bench.classifiers import load_classifier
    from zeropur_bench.data import load_data

    entry = registry.get("resnet20-cifar10-fastat")
    assert entry.extra["adversarial"] == "fgsm-rs" and entry.extra["epochs_trained"] == 15
    assert {c["rule"] for c in entry.calibrations} == {"scale", "clean-guard"}
    model = load_classifier("resnet20-cifar10-fastat", "cifar10")
    x, y = load_data("cifar10", "test", n=200, data_dir=data_dir)
    with torch.no_grad():
        clean = model(x).argmax(1) == y
    torch.manual_seed(0)
    adv = torchattacks.PGD(model, eps=8 / 255, alpha=2 / 255, steps=20, random_start=True)(x, y)
    with torch.no_grad():
        robust = (model(adv).argmax(1) == y) & clean
    assert int(clean.sum()) == 132 and 0.30 <= float(robust.float().mean()) <= 0.40  # measured: 66.0% / 33.5%
