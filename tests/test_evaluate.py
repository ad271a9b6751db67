"""Issue 4: the evaluation engine on real data and the shared ResNet-20 — records, resume, determinism."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from zeropur_bench.evaluate import AttackSpec, DefenseSpec, EvalConfig, evaluate
from zeropur_bench.errors import UserError
from zeropur_bench.stats import wilson

from conftest import REPO, WEIGHTS

FAST = {"coarse_steps": 3, "fine_steps": 3}  # mechanics tests: the defense's strength is tested elsewhere


def _config(**kw) -> EvalConfig:
    base = dict(model="resnet20", checkpoint=str(WEIGHTS / "resnet20.th"), n_ex=40, batch_size=20,
                attacks=[AttackSpec("pgd", {"steps": 5})],
                defenses=[DefenseSpec(stages="c", overrides=FAST), DefenseSpec(stages="cf", overrides=FAST)])
    base.update(kw)
    return EvalConfig(**base)


@pytest.fixture(scope="module")
def record(tmp_path_factory, data_dir):
    out = tmp_path_factory.mktemp("rec") / "r.json"
    return evaluate(_config(), out=out, data_dir=data_dir)


def test_record_schema_and_consistency(record):
    assert Path(record["_path"]).is_file()
    on_disk = json.loads(Path(record["_path"]).read_text())
    assert on_disk["schema"] == "zeropur-bench/record/v1"
    s, ex = on_disk["summary"], on_disk["examples"]
    assert s["n"] == 40 and ex["index"] == list(range(40))
    for key in ("clean_acc", "defended_clean_acc", "worst_case_acc"):
        assert 0.0 <= s[key] <= 1.0
        lo, hi = s["ci95"][key]
        assert lo <= s[key] <= hi
    # every summary number is recomputable from the per-example vectors
    assert s["clean_acc"] == sum(ex["clean_correct"]) / 40
    assert s["defended_clean_acc"] == sum(ex["defended_clean_correct"]) / 40
    assert s["robust_acc"]["pgd[steps=5]"] == sum(ex["robust_correct"]["pgd[steps=5]"]) / 40
    assert s["ci95"]["robust_acc"]["pgd[steps=5]"] == list(wilson(sum(ex["robust_correct"]["pgd[steps=5]"]), 40))
    worst = [all(v[i] for v in ex["robust_correct"].values()) for i in range(40)]
    assert ex["worst_case_correct"] == worst
    assert set(on_disk["variants"]) == {"zeropur-c", "zeropur-cf"}
    assert on_disk["summary"] == on_disk["variants"]["zeropur-cf"]["summary"]  # primary = last variant
    # provenance and RobustBench block
    assert on_disk["provenance"]["model"]["checkpoint_sha256"].startswith("12fca82f")
    assert len(on_disk["provenance"]["data"]["sha256"]) == 64
    mi = on_disk["model_info"]
    assert mi["clean_acc"] == f"{100 * s['defended_clean_acc']:.2f}" and mi["autoattack_acc"] is None
    assert on_disk["cost"]["pgd[steps=5]"]["backward_passes_per_image"] == pytest.approx(5.0, abs=0.01)
    assert on_disk["environment"]["packages"]["robustbench"] == "1.1.1"


def test_bare_classifier_broken_and_purification_helps(record):
    bare = record["bare_classifier"]["robust_acc"]["pgd[steps=5]"]
    pur = record["variants"]["zeropur-c"]["summary"]["robust_acc"]["pgd[steps=5]"]
    assert bare <= 0.1
    assert pur >= bare + 0.25, (bare, pur)


def test_transfer_pgd20_then_zeropur_full_strength(data_dir, tmp_path):
    """Issue 4: transfer PGD-20 then ZeroPur (authors profile, median 3×3) is clearly above the bare model."""
    cfg = _config(n_ex=100, batch_size=100, attacks=[AttackSpec("pgd")], defenses=[DefenseSpec(stages="c")])
    rec = evaluate(cfg, out=tmp_path / "t.json", data_dir=data_dir)
    bare = rec["bare_classifier"]["robust_acc"]["pgd"]
    pur = rec["summary"]["robust_acc"]["pgd"]
    print(f"\nPGD-20 transfer, n=100: bare {bare:.2f}, ZeroPur-C (authors, median:3) {pur:.2f}")
    assert bare <= 0.03
    assert pur >= 0.45


def test_adaptive_records_any_step_and_final(data_dir, tmp_path):
    cfg = _config(n_ex=20, batch_size=20, setting="adaptive",
                  attacks=[AttackSpec("bpda-eot", {"steps": 3, "eot_reps": 2, "verify_reps": 2})],
                  defenses=[DefenseSpec(stages="c", overrides=FAST)])
    rec = evaluate(cfg, out=tmp_path / "a.json", data_dir=data_dir)
    v = rec["variants"]["zeropur-c"]
    any_step = v["examples"]["robust_correct"]["bpda-eot[eot_reps=2,steps=3,verify_reps=2]"]
    final = v["examples"]["robust_final_correct"]["bpda-eot[eot_reps=2,steps=3,verify_reps=2]"]
    assert all(f or not a for a, f in zip(any_step, final))  # any-step never exceeds final-only
    assert rec["estimator"]["adaptive_headline"] == "any-step"
    assert v["defense"]["deterministic"] is True  # authors profile: no random start


def test_same_config_same_results(record, data_dir, tmp_path):
    again = evaluate(_config(), out=tmp_path / "again.json", data_dir=data_dir)
    assert again["examples"] == record["examples"]
    assert again["variants"]["zeropur-c"]["examples"] == record["variants"]["zeropur-c"]["examples"]


def test_bad_configs_raise_user_error():
    with pytest.raises(UserError, match="unknown attack"):
        _config(attacks=[AttackSpec("nope")])
    with pytest.raises(UserError, match="eps must be in"):
        _config(eps=8.0)
    with pytest.raises(UserError, match="adaptive"):
        _config(attacks=[AttackSpec("bpda-eot")])
    with pytest.raises(UserError, match="unknown threat"):
        _config(threat="l3")


RESUME_CMD = [sys.executable, "-m", "zeropur_bench.cli", "run", "--model", "resnet20", "--checkpoint",
              str(WEIGHTS / "resnet20.th"), "--n-ex", "60", "--batch-size", "10", "--attack", "pgd:steps=3",
              "--stages", "c", "--zp", "coarse_steps=3", "--no-progress"]


def test_resume_after_sigkill_equals_uninterrupted(tmp_path, data_dir):
    env = {**os.environ, "ZEROPUR_BENCH_DATA": data_dir}
    killed = tmp_path / "killed.json"
    partial = tmp_path / "killed.json.partial"
    proc = subprocess.Popen(RESUME_CMD + ["--out", str(killed)], env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, cwd=tmp_path)
    deadline = time.time() + 240
    while time.time() < deadline and len(list(partial.glob("batch-*.json"))) < 2 and proc.poll() is None:
        time.sleep(0.05)
    assert proc.poll() is None, "run finished before it could be killed; the test needs a slower configuration"
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    done_before = len(list(partial.glob("batch-*.json")))
    assert done_before >= 1 and not killed.exists()
    out = subprocess.run(RESUME_CMD + ["--out", str(killed)], env=env, capture_output=True, text=True, cwd=tmp_path,
                         timeout=600)
    assert out.returncode == 0, out.stderr
    assert f"resumed {done_before} finished batches" in out.stdout
    assert not partial.exists()
    straight = tmp_path / "straight.json"
    out2 = subprocess.run(RESUME_CMD + ["--out", str(straight)], env=env, capture_output=True, text=True,
                          cwd=tmp_path, timeout=600)
    assert out2.returncode == 0, out2.stderr
    a, b = json.loads(killed.read_text()), json.loads(straight.read_text())
    assert a["cost"]["_run"]["batches_resumed"] == done_before
    assert a["cost"]["_run"]["batches_computed"] == 6 - done_before
    assert b["cost"]["_run"]["batches_computed"] == 6
    for key in ("examples", "summary", "variants", "config", "bare_classifier"):
        assert a[key] == b[key], key


def test_data_seed_takes_a_seeded_subset(data_dir):
    cfg = _config(n_ex=10, batch_size=10, data_seed=3, defenses=[DefenseSpec(name="none")])
    a = evaluate(cfg, data_dir=data_dir, write=False)
    b = evaluate(cfg, data_dir=data_dir, write=False)
    idx = a["examples"]["index"]
    assert idx == b["examples"]["index"] and idx == sorted(idx) and idx != list(range(10))
    assert a["provenance"]["data"]["data_seed"] == 3 and a["examples"] == b["examples"]
    other = evaluate(_config(n_ex=10, batch_size=10, data_seed=4, defenses=[DefenseSpec(name="none")]),
                     data_dir=data_dir, write=False)
    assert other["examples"]["index"] != idx
