"""Issue 14, GPU path: data, classifier, ZeroPur, every attack and the estimators on CUDA, bf16 autocast included.
Skipped with its reason on a machine without a CUDA GPU (CI has none; run it where one is lent)."""
from __future__ import annotations

import pytest
import torch

from zeropur_bench.attacks import ATTACKS
from zeropur_bench.config import AttackSpec, DefenseSpec, EvalConfig
from zeropur_bench.evaluate import evaluate

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA GPU on this machine")

SMALL = {"pgd": {"steps": 2}, "difgsm": {"steps": 2}, "autoattack": {"version": "rand", "n_iter": 2},
         "square": {"n_queries": 10}, "bpda-eot": {"steps": 2}, "defense-aware": {"steps": 1, "lambdas": 1.0},
         "pgd-eot": {"steps": 1, "eot_iter": 2}, "autoattack-bpda": {"n_iter": 2}, "autoattack-full": {"n_iter": 2}}


@pytest.mark.parametrize("dtype", ["fp32", "bf16"])
@pytest.mark.parametrize("setting", ["transfer", "adaptive"])
def test_every_attack_end_to_end_on_cuda(setting, dtype, data_dir):
    names = [n for n, c in ATTACKS.items() if setting == "adaptive" or not (c.needs_defense or c.adaptive_only)]
    cfg = EvalConfig(model="resnet20-cifar10-public", n_ex=4, batch_size=4, setting=setting, device="cuda",
                     dtype=dtype, attacks=[AttackSpec(n, SMALL[n]) for n in names],
                     defenses=[DefenseSpec(profile="authors", stages="cf", overrides={"coarse_steps": 2, "fine_steps": 2})])
    rec = evaluate(cfg, data_dir=data_dir, write=False)
    assert rec["cost"]["_run"]["device"] == "cuda" and rec["summary"]["n"] == 4
    for key in rec["summary"]["robust_acc"]:
        assert rec["summary"]["robust_acc"][key] <= rec["summary"]["defended_clean_acc"]
