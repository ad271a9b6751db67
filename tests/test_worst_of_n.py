"""The worst-of-N estimator (DiffHammer; AutoAttack PR #105): an example counts as right only if all N
resubmissions are classified right. On a randomized purifier whose per-call correctness is known exactly, it is
neither a majority vote nor a one-shot; through the engine and the CLI it judges clean and attacked inputs alike,
and the record says so."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from zeropur_bench.config import AttackSpec, DefenseSpec, EvalConfig
from zeropur_bench.errors import UserError
from zeropur_bench.estimators import NO_CONSENSUS, STREAM, aggregate, predict
from zeropur_bench.purifier import Purifier, example_uniform

from clirun import zb


class Flaky(Purifier):
    """Right (class 0) on call k of example i iff example_uniform(seed, i + k·STREAM)[0] < p; a wrong call answers
    one of the classes 1..9, chosen by the draw's second number."""

    randomized = True

    def __init__(self, classifier: nn.Module, p: float = 0.8, seed: int = 0) -> None:
        super().__init__(classifier, seed)
        self.p = p

    def purify(self, x: torch.Tensor, indices: torch.Tensor | None = None) -> torch.Tensor:
        return x

    def predict(self, x: torch.Tensor, indices: torch.Tensor | None = None) -> torch.Tensor:
        u = self.example_uniform(indices, (2,), x.device, n=len(x))
        label = torch.where(u[:, 0] < self.p, 0, 1 + (u[:, 1] * 9).long())
        return F.one_hot(label, 10).float()


def _calls_right(seed: int, index: torch.Tensor, n: int, p: float) -> torch.Tensor:
    """[n, B]: whether call k of each example is right, from the draws alone (the estimators' stream k)."""
    return torch.stack([example_uniform(seed, index + k * STREAM, (2,), torch.device("cpu"))[:, 0] < p
                        for k in range(n)])


def test_worst_of_n_is_all_calls_right() -> None:
    m, n, p = 400, 10, 0.8
    model = Flaky(nn.Identity(), p)
    x, y, index = torch.zeros(m, 1, 1, 1), torch.zeros(m, dtype=torch.long), torch.arange(m)
    calls = _calls_right(0, index, n, p)
    pred, info = predict(model, x, "worst-of-n", n=n, indices=index, return_info=True)
    assert info == {"estimator": "worst-of-n", "n_requested": n, "n": n, "deterministic": False}
    right = pred == y
    assert torch.equal(right, calls.all(0))
    assert ((pred == 0) | (pred == NO_CONSENSUS)).all()  # the calls never agree on one wrong class here
    # not a majority vote, not a one-shot: examples right by those are wrong here, and the rate is about p^n
    majority = predict(model, x, "majority", n=n, indices=index) == y
    one_shot = predict(model, x, "one-shot", indices=index) == y
    assert (majority >= (calls.sum(0) > n / 2)).all() and torch.equal(one_shot, calls[0])
    assert (majority & ~right).sum() > 100 and (one_shot & ~right).sum() > 100 and right.sum() > 10
    assert abs(right.float().mean().item() - p ** n) < 0.05
    # one more resubmission can only lose examples
    assert (right >= (predict(model, x, "worst-of-n", n=n + 5, indices=index) == y)).all()


def test_worst_of_n_unanimous_wrong_and_deterministic(cifar10_test, resnet20) -> None:
    logits = torch.tensor([[[0.0, 2.0, 1.0], [3.0, 0.0, 0.0], [0.0, 0.0, 1.0]],
                           [[0.0, 3.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 4.0]]])  # [n=2, B=3, C=3]
    assert aggregate(logits, "worst-of-n").tolist() == [1, NO_CONSENSUS, 2]  # unanimous labels, right or wrong
    x = cifar10_test[0][:16]
    pred, info = predict(resnet20, x, "worst-of-n", n=10, return_info=True)
    assert info["deterministic"] is True and info["n"] == 1  # a deterministic model: one call decides
    assert torch.equal(pred, predict(resnet20, x))


def test_worst_of_n_needs_ten_resubmissions() -> None:
    base = dict(model="resnet20-cifar10-standard", n_ex=2, defenses=[DefenseSpec("tvm")])
    with pytest.raises(UserError, match="--estimator-n 10 or more"):
        EvalConfig(**base, estimator="worst-of-n", estimator_n=5)
    with pytest.raises(UserError, match="worst-of-n"):
        EvalConfig(**base, estimator="one-shot", estimator_n=10)
    assert EvalConfig(**base, estimator="worst-of-n", estimator_n=10).estimator == "worst-of-n"


def _hand_worst(defense: nn.Module, x: torch.Tensor, y: torch.Tensor, index: torch.Tensor, n: int) -> torch.Tensor:
    """Right on all n calls of the defense, each call k with the indices of stream k."""
    with torch.no_grad():
        return torch.stack([defense(x, indices=index + k * STREAM).argmax(1) == y for k in range(n)]).all(0)


@pytest.mark.parametrize("setting", ["transfer", "adaptive"])
def test_engine_judges_clean_and_attacked_inputs_worst_of_n(setting: str, cifar10_test, data_dir: str) -> None:
    from zeropur_bench.evaluate import Evaluator

    x, y, index = cifar10_test[0][:16], cifar10_test[1][:16], torch.arange(16)
    config = EvalConfig(model="resnet20-cifar10-standard", n_ex=16, batch_size=16, setting=setting,
                        attacks=[AttackSpec("pgd", {"steps": 2})], defenses=[DefenseSpec("tvm", {"iters": 50})],
                        estimator="worst-of-n", estimator_n=10)
    ev = Evaluator(config, data_dir=data_dir)
    res = ev.run_batch(x, y, index, keep_inputs=True)
    (key,) = res.inputs
    tvm = ev.defenses["tvm[iters=50]"]
    v = res.variants["tvm[iters=50]"]
    clean = _hand_worst(tvm, x, y, index, 10)
    x_adv = res.inputs[key]["bare" if setting == "transfer" else "tvm[iters=50]"]
    adv = _hand_worst(tvm, x_adv, y, index, 10)
    assert v.defended_clean_correct == clean.tolist() and v.adv_correct[key] == adv.tolist()
    # the judgement is not one call's: some example right on its first call is wrong here
    with torch.no_grad():
        first = torch.cat([tvm(x, indices=index).argmax(1) == y, tvm(x_adv, indices=index).argmax(1) == y])
    assert (first & ~torch.cat([clean, adv])).any()


def test_cli_worst_of_n_in_the_record(tmp_path: Path, cifar10_test, data_dir: str) -> None:
    from zeropur_bench.defense.purifiers import RandomResizePad
    from zeropur_bench.classifiers import load_classifier

    out = tmp_path / "r.json"
    r = zb(["run", "--model", "resnet20-cifar10-standard", "--defense", "random-resize-pad", "--attack",
            "pgd:steps=2", "--n-ex", "8", "--estimator", "worst-of-n", "--estimator-n", "10", "--no-progress",
            "--data-dir", data_dir, "--out", str(out)], tmp_path)
    assert r.returncode == 0, r.stderr
    rec = json.loads(out.read_text())
    assert rec["config"]["estimator"] == "worst-of-n" and rec["config"]["estimator_n"] == 10
    assert rec["estimator"]["judge"] == {"estimator": "worst-of-n", "n_requested": 10,
                                         "n_used": {"random-resize-pad": 10}}
    assert rec["keys"]["comparison"]["estimator"] == "worst-of-n"
    defense = RandomResizePad(load_classifier("resnet20-cifar10-standard", "cifar10"))
    x, y = cifar10_test[0][:8], cifar10_test[1][:8]
    want = _hand_worst(defense, x, y, torch.arange(8), 10).tolist()
    assert rec["variants"]["random-resize-pad"]["examples"]["defended_clean_correct"] == want
    bad = zb(["run", "--defense", "tvm", "--n-ex", "2", "--estimator", "worst-of-n", "--estimator-n", "3"], tmp_path)
    assert bad.returncode == 2 and "--estimator-n 10 or more" in bad.stderr and "Traceback" not in bad.stderr
