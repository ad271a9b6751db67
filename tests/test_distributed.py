"""Issue 14: one evaluation over several processes (torchrun, gloo on CPU) or independent shards gives, per example,
the record one process makes; a killed rank's finished batches are resumed by any world size."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from click.testing import CliRunner

from zeropur_bench.cli import main

from conftest import REPO

TRANSFER = ["--model", "resnet20-cifar10-public", "--n-ex", "8", "--batch-size", "2", "--attack", "pgd:steps=2",
            "--stages", "c", "--zp", "coarse_steps=2", "--no-progress"]
ADAPTIVE = ["--model", "resnet20-cifar10-public", "--n-ex", "8", "--batch-size", "2", "--setting", "adaptive",
            "--attack", "bpda-eot:steps=2", "--stages", "c", "--zp", "coarse_steps=2", "--no-progress"]
SAME = ("examples", "summary", "variants", "bare_classifier")


def _env(data_dir: str) -> dict:
    # the same thread count per process in both runs (torchrun sets 1 per rank; say it for one process too)
    return {**os.environ, "ZEROPUR_BENCH_DATA": data_dir, "OMP_NUM_THREADS": "1", "ZEROPUR_BENCH_OFFLINE": "1"}


def _single(args: list[str], out: Path, data_dir: str) -> dict:
    res = subprocess.run([sys.executable, "-m", "zeropur_bench", "run", *args, "--out", str(out)],
                         env=_env(data_dir), capture_output=True, text=True, cwd=REPO, timeout=900)
    assert res.returncode == 0, res.stderr
    return json.loads(out.read_text())


def _torchrun(args: list[str], out: Path, data_dir: str, n: int = 2) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={n}",
                             "-m", "zeropur_bench", "run", *args, "--out", str(out)],
                            env=_env(data_dir), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=REPO)


@pytest.mark.parametrize("args", [TRANSFER, ADAPTIVE], ids=["transfer", "adaptive"])
def test_two_ranks_equal_one_process(args, tmp_path, data_dir):
    one = _single(args, tmp_path / "one.json", data_dir)
    proc = _torchrun(args, tmp_path / "two.json", data_dir)
    stdout, stderr = proc.communicate(timeout=900)
    assert proc.returncode == 0, stderr
    assert stdout.count("record written to") == 1 and "by 2 ranks" in stdout  # only rank 0 reports
    two = json.loads((tmp_path / "two.json").read_text())
    for key in SAME:
        assert two[key] == one[key], key
    assert two["keys"]["comparison"] == one["keys"]["comparison"]
    # every batch computed exactly once, by the rank the fixed assignment gives it
    assert two["cost"]["_run"]["computed_by"] == ["rank 0/2", "rank 1/2"] * 2
    assert one["cost"]["_run"]["computed_by"] == ["single"] * 4
    assert two["examples"]["index"] == list(range(8))
    assert not list(tmp_path.glob("*.partial"))


def test_killed_rank_resumed_by_one_process(tmp_path, data_dir):
    args = [a if a != "8" else "24" for a in TRANSFER]  # 12 batches: the kill lands mid-run
    straight = _single(args, tmp_path / "straight.json", data_dir)
    out = tmp_path / "killed.json"
    partial = tmp_path / "killed.json.partial"
    proc = _torchrun(args, out, data_dir)
    killed = None
    deadline = time.time() + 600
    while killed is None and time.time() < deadline and proc.poll() is None:
        for f in partial.glob("batch-*.json"):
            try:
                who = json.loads(f.read_text())["computed_by"]
            except (OSError, ValueError, KeyError):
                continue  # not there yet
            if who["worker"] == "rank 1/2":
                os.kill(who["pid"], signal.SIGKILL)  # rank 1 dies after its first batch
                killed = f.name
                break
        time.sleep(0.05)
    assert killed is not None, "rank 1 never finished a batch"
    proc.communicate(timeout=600)
    assert proc.returncode != 0 and not out.exists()
    done = sorted(p.name for p in partial.glob("batch-*.json"))
    assert 1 <= len(done) < 12, done
    resumed = _single(args, out, data_dir)  # world size 1
    assert resumed["cost"]["_run"]["batches_resumed"] == len(done)
    assert resumed["cost"]["_run"]["batches_computed"] == 12 - len(done)
    for key in SAME:
        assert resumed[key] == straight[key], key


def test_shards_then_merge_equal_one_process(tmp_path, data_dir, monkeypatch):
    monkeypatch.setenv("ZEROPUR_BENCH_OFFLINE", "1")
    one = _single(TRANSFER, tmp_path / "one.json", data_dir)
    out = tmp_path / "sharded.json"
    runner = CliRunner()
    base = ["run", *TRANSFER, "--data-dir", data_dir, "--out", str(out)]
    res = runner.invoke(main, base + ["--shard", "1/2"])
    assert res.exit_code == 0 and "--merge-only" in res.output, res.output
    assert not out.exists()
    res = runner.invoke(main, base + ["--merge-only"])  # shard 0 missing: list the missing batches
    assert res.exit_code == 2 and "missing: 0, 2" in res.stderr and not out.exists(), res.output
    res = runner.invoke(main, base + ["--shard", "0/2"])
    assert res.exit_code == 0, res.output
    res = runner.invoke(main, base + ["--merge-only"])
    assert res.exit_code == 0, res.output
    merged = json.loads(out.read_text())
    for key in SAME:
        assert merged[key] == one[key], key
    assert merged["cost"]["_run"]["computed_by"] == ["shard 0/2", "shard 1/2"] * 2
    assert merged["cost"]["_run"]["batches_computed"] == 0  # the merge computed nothing


def test_bad_shard_and_device_index_under_torchrun(tmp_path, data_dir, monkeypatch):
    runner = CliRunner()
    for shard in ("2/2", "x", "1/0"):
        res = runner.invoke(main, ["run", *TRANSFER, "--shard", shard, "--out", str(tmp_path / "r.json")])
        assert res.exit_code == 2 and "--shard" in res.stderr and len(res.stderr.splitlines()) == 1
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("RANK", "0")
    monkeypatch.setenv("LOCAL_RANK", "0")
    res = runner.invoke(main, ["run", *TRANSFER, "--device", "cuda:1", "--out", str(tmp_path / "r.json")])
    assert res.exit_code == 2 and "cuda:LOCAL_RANK" in res.stderr and len(res.stderr.splitlines()) == 1
    assert not list(tmp_path.iterdir())
