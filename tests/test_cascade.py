"""Issue 23: attacks as a cascade (each attack only on the examples every earlier one left unbroken), on a real
classifier, real data and real attacks against ZeroPur, checked against running every attack on every example."""
from __future__ import annotations

import pytest

from zeropur_bench.errors import UserError
from zeropur_bench.config import AttackSpec, DefenseSpec, EvalConfig
from zeropur_bench.evaluate import Evaluator

# Deterministic attacks (no random start) against the deterministic authors' ZeroPur-C: an example's outcome under
# an attack does not depend on which other examples share its batch, so the cascade must agree exactly.
ATTACKS = [AttackSpec("bpda-eot", {"steps": 2, "random_start": False}),
           AttackSpec("pgd", {"steps": 3, "random_start": False})]


def _config(cascade: bool, **kw) -> EvalConfig:
    return EvalConfig(model="resnet20-cifar10-standard", n_ex=16, batch_size=8, setting="adaptive",
                      cascade=cascade, attacks=list(ATTACKS),
                      defenses=[DefenseSpec(profile="authors", stages="c", overrides={"coarse_steps": 2})], **kw)


@pytest.fixture(scope="module")
def pair(data_dir: str) -> tuple[dict, dict]:
    every = Evaluator(_config(False), data_dir=data_dir).run(write=False, progress=False)
    cascade = Evaluator(_config(True), data_dir=data_dir).run(write=False, progress=False)
    return every, cascade


def test_cascade_worst_case_equals_every_attack_on_every_example(pair: tuple[dict, dict]) -> None:
    every, cascade = pair
    a, b = every["examples"], cascade["examples"]
    k1, k2 = [x["key"] for x in every["config"]["attacks"]]
    assert a["index"] == b["index"] and a["defended_clean_correct"] == b["defended_clean_correct"]
    assert b["worst_case_correct"] == a["worst_case_correct"]
    assert 0 < sum(a["worst_case_correct"]) < len(a["index"])  # the case is not trivial either way
    # the first attack saw every example: its column is the plain one; the second is "on survivors" (cumulative)
    assert b["adv_correct"][k1] == a["adv_correct"][k1]
    assert b["adv_correct"][k2] == [x and y for x, y in zip(a["adv_correct"][k1], a["adv_correct"][k2])]
    assert cascade["summary"]["attacked_n"] == {k1: 16, k2: sum(a["adv_correct"][k1])}
    assert sum(a["adv_correct"][k1]) < 16  # so the second attack really skipped examples


def test_cascade_says_which_attack_broke_each_example_and_when(pair: tuple[dict, dict]) -> None:
    every, cascade = pair
    a, b = every["examples"], cascade["examples"]
    k1, k2 = [x["key"] for x in every["config"]["attacks"]]
    for i in range(len(b["index"])):
        want = k1 if not a["adv_correct"][k1][i] else k2 if not a["adv_correct"][k2][i] else None
        assert b["broken_by"][i] == want
        # bpda-eot reports its steps; pgd does not
        assert b["broken_at_step"][i] == (a["first_broken_step"][k1][i] if want == k1 else None)
    assert b["attacked"][k2] == a["adv_correct"][k1]


def test_cascade_costs_less_and_has_its_own_key(pair: tuple[dict, dict]) -> None:
    every, cascade = pair
    k2 = every["config"]["attacks"][1]["key"]
    assert cascade["cost"][k2]["forward_passes_per_image"] < every["cost"][k2]["forward_passes_per_image"]
    assert cascade["keys"]["comparison"]["cascade"] is True and "cascade" not in every["keys"]["comparison"]
    assert cascade["config"]["cascade"] is True
    for rec in pair:  # robust ≤ defended clean, worst case ≤ every attack, per example
        ex = rec["examples"]
        for key, v in ex["robust_correct"].items():
            assert all(r <= c for r, c in zip(v, ex["defended_clean_correct"]))
            assert all(w <= r for w, r in zip(ex["worst_case_correct"], v))


def test_cascade_is_adaptive_only() -> None:
    with pytest.raises(UserError, match="--setting adaptive"):
        EvalConfig(model="resnet20-cifar10-standard", cascade=True, attacks=[AttackSpec("pgd")])
