"""Issue 32, item 1: RobustBench and AutoAttack beside the package, and RobustBench's own ``benchmark()`` on the
shipped Standard ResNet-20 and on ZeroPur-C, offline, with RobustBench's keyword arguments (real data, real
weights, real AutoAttack)."""
from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch

from zeropur_bench import ZeroPur, load_classifier
from zeropur_bench.data import load_data
from zeropur_bench.robustbench import GitHubAutoAttack, benchmark

REPO = Path(__file__).resolve().parents[1]
N = 4


def test_fresh_interpreter_imports_robustbench_and_autoattack(tmp_path):
    """A user's own imports, after ``import zeropur_bench``: the GitHub name resolves to pyautoattack's very modules
    (no second copy of ``autoattack.state``), so robustbench.eval gets pyautoattack's classes."""
    code = textwrap.dedent("""
        import sys
        import zeropur_bench, robustbench.eval, autoattack
        import autoattack.state, pyautoattack, pyautoattack.state
        assert autoattack is pyautoattack and autoattack.state is pyautoattack.state
        assert robustbench.eval.AutoAttack is pyautoattack.AutoAttack
        assert robustbench.eval.EvaluationState is pyautoattack.state.EvaluationState
        assert pyautoattack.__spec__.name == "pyautoattack"  # the module keeps its own spec
        print("ok")
    """)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])}
    out = subprocess.run([sys.executable, "-W", "ignore", "-c", code], cwd=tmp_path, env=env, capture_output=True,
                         text=True, timeout=300)
    assert out.returncode == 0 and out.stdout.strip() == "ok", out.stderr[-2000:]


def _accuracy(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor) -> float:
    with torch.no_grad():
        return (model(x).argmax(1) == y).float().mean().item()


@pytest.fixture(scope="module")
def standard_resnet20() -> torch.nn.Module:
    return load_classifier("resnet20-cifar10-standard", "cifar10")


def _rb_kwargs(data_dir: str) -> dict:
    # RobustBench's own keyword arguments; data_dir is the folder prepare.py fills
    return dict(n_examples=N, dataset="cifar10", threat_model="Linf", eps=8 / 255, data_dir=data_dir,
                device=torch.device("cpu"), batch_size=N)


def test_benchmark_bare_standard_resnet20(standard_resnet20, data_dir, tmp_path, monkeypatch):
    import robustbench.eval as rb_eval
    import torchvision.datasets

    def no_download(*a, **k):
        raise AssertionError("robustbench tried torchvision's CIFAR loader (download / md5 check)")

    monkeypatch.setattr(torchvision.datasets, "CIFAR10", no_download)
    upstream = (rb_eval.AutoAttack, rb_eval.load_clean_dataset)
    log = tmp_path / "aa.log"
    clean, robust = benchmark(standard_resnet20, **_rb_kwargs(data_dir), log_path=str(log))
    x, y = load_data("cifar10", "test", n=N, data_dir=data_dir)
    assert clean == _accuracy(standard_resnet20, x, y) > 0
    assert robust == 0.0  # an undefended classifier at eps 8/255
    assert "robust accuracy" in log.read_text()  # AutoAttack's log went where the GitHub API's log_path says
    assert (rb_eval.AutoAttack, rb_eval.load_clean_dataset) == upstream  # adapted only during the call


# The authors' C (10 coarse steps) costs 10-12 minutes here whenever an image survives APGD-CE (APGD-T, FAB-T and
# Square then run through the purifier): the default suite runs a 2-step C through the same code, -m slow the
# authors' own.
@pytest.mark.parametrize("coarse_steps", [2, pytest.param(10, marks=pytest.mark.slow)])
def test_benchmark_zeropur_c(standard_resnet20, data_dir, coarse_steps):
    """AutoAttack 'standard' through ZeroPur's BPDA gradient (its default grad_mode), as RobustBench runs it."""
    defended = ZeroPur(standard_resnet20, profile="authors", stages="c", blur="median:3",
                       coarse_steps=coarse_steps).eval()
    assert defended.grad_mode == "bpda"
    clean, robust = benchmark(defended, **_rb_kwargs(data_dir))
    x, y = load_data("cifar10", "test", n=N, data_dir=data_dir)
    assert clean == _accuracy(defended, x, y)  # RobustBench's clean accuracy is the defended model's
    assert 0.0 <= robust <= clean and (robust * N).is_integer()


def test_github_autoattack_api_over_pyautoattack(standard_resnet20, data_dir):
    """The constructor and run_standard_evaluation robustbench calls (positional model, attacks_to_run, bs=,
    x_adv returned; return_labels) run pyautoattack, whose sub-attacks stay reachable as on the GitHub object."""
    x, y = load_data("cifar10", "test", n=N, data_dir=data_dir)
    aa = GitHubAutoAttack(standard_resnet20, "Linf", 8 / 255, seed=0, version="custom", attacks_to_run=["apgd-ce"],
                          device="cpu")
    assert aa.attacks_to_run == ["apgd-ce"] and aa.apgd.n_iter == 100  # pyautoattack's own settings, reachable
    x_adv = aa.run_standard_evaluation(x, y, bs=N)
    assert torch.is_tensor(x_adv) and x_adv.shape == x.shape
    assert (x_adv - x).abs().max() <= 8 / 255 + 1e-6
    x_adv2, y_adv = aa.run_standard_evaluation(x, y, bs=N, return_labels=True)
    assert y_adv.shape == y.shape and torch.equal(x_adv, x_adv2)


def test_offline_data_only_where_it_is_robustbenchs_images(data_dir, monkeypatch):
    """prepare.py's CIFAR-10 test split holds the original order for its first 1000 rows only: the npz serves
    n ≤ 1000 and the whole set; any other n goes to robustbench's own loader (torchvision), never to a different
    subset under RobustBench's name."""
    import torchvision.datasets
    from robustbench.model_zoo.enums import BenchmarkDataset

    from zeropur_bench.robustbench import robustbench_adapted

    class Upstream(Exception):
        pass

    def torchvision_cifar(*a, **k):
        raise Upstream()

    monkeypatch.setattr(torchvision.datasets, "CIFAR10", torchvision_cifar)
    with robustbench_adapted() as rb_eval:
        load = rb_eval.load_clean_dataset
        x, y = load(BenchmarkDataset("cifar10"), 1000, data_dir, None)
        assert x.shape == (1000, 3, 32, 32) and torch.equal(y, load_data("cifar10", "test", n=1000,
                                                                         data_dir=data_dir)[1])
        assert load(BenchmarkDataset("cifar10"), 10000, data_dir, None)[0].shape[0] == 10000
        with pytest.raises(Upstream):
            load(BenchmarkDataset("cifar10"), 1001, data_dir, None)
