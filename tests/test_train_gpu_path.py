"""The training path on a bare GPU machine (App. A.1): ``python -m zeropur_bench.train`` from the repository root
with only torch / torchvision / numpy (no robustbench, pyautoattack, torchattacks, click, rich, pandas, scipy,
tabulate, and not the installed package); our ResNet-18 / PreAct ResNet-18 / WRN-28-10 have RobustBench's exact
layout; ``--device cuda`` fails cleanly without a GPU and trains on one; ``best.pt``."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

import zeropur_bench.train.loop as train_mod  # the module whose constants the loop reads
from zeropur_bench.errors import UserError
from zeropur_bench.train import resolve_device, train

REPO = Path(__file__).resolve().parents[1]
# absent on the bare GPU machine: RobustBench / AutoAttack / torchattacks, and the CLI's and tables' dependencies
BLOCKED = ("robustbench", "pyautoattack", "autoattack", "torchattacks", "click", "rich", "pandas", "scipy", "tabulate")
CUDA = torch.cuda.is_available()

# Put on PYTHONPATH as sitecustomize.py (site imports it after the .pth files): every finder on sys.meta_path is
# wrapped so that a blocked package is simply not found (find_spec None, as when it is not installed: torch probes
# optional packages with importlib.util.find_spec), each lookup is logged, and the editable install's finder is
# dropped, so only the repository copy of zeropur_bench can be imported.
SITECUSTOMIZE = '''
import os, sys
_BLOCKED = set(os.environ["ZP_BLOCKED"].split(","))
_LOG = os.environ["ZP_BLOCK_LOG"]


class _Hide:
    def __init__(self, finder):
        self._finder = finder

    def find_spec(self, name, path=None, target=None):
        if name.partition(".")[0] in _BLOCKED:
            with open(_LOG, "a") as f:
                f.write(name + "\\n")
            return None
        find = getattr(self._finder, "find_spec", None)
        return find(name, path, target) if find is not None else None

    def __getattr__(self, attr):
        return getattr(self._finder, attr)


sys.meta_path[:] = [_Hide(f) for f in sys.meta_path if not getattr(f, "__module__", "").startswith("__editable__")]
'''


@pytest.fixture()
def bare_env(tmp_path: Path) -> dict[str, str]:
    """Environment of a subprocess that sees the repository (PYTHONPATH) but none of the blocked packages."""
    site = tmp_path / "site"
    site.mkdir()
    (site / "sitecustomize.py").write_text(SITECUSTOMIZE)
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env.update(PYTHONPATH=os.pathsep.join([str(site), str(REPO)]), ZP_BLOCKED=",".join(BLOCKED),
               ZP_BLOCK_LOG=str(tmp_path / "blocked.log"), OMP_NUM_THREADS="1")
    return env


def _blocked_attempts(env: dict[str, str]) -> list[str]:
    log = Path(env["ZP_BLOCK_LOG"])
    return log.read_text().split() if log.exists() else []


def test_blocker_works(bare_env: dict[str, str]) -> None:
    r = subprocess.run([sys.executable, "-c", "import robustbench"], cwd=REPO, env=bare_env, capture_output=True,
                       text=True)
    assert r.returncode != 0 and "ModuleNotFoundError: No module named 'robustbench'" in r.stderr
    assert set(_blocked_attempts(bare_env)) == {"robustbench"}


# ---------------------------------------------------------------- (a) the whole training path, bare

def test_train_cli_runs_bare_and_writes_loadable_models(data_dir: str, tmp_path: Path,
                                                        bare_env: dict[str, str]) -> None:
    out = tmp_path / "run"
    cmd = [sys.executable, "-m", "zeropur_bench.train", "--dataset", "cifar10", "--arch", "resnet20", "--aug",
           "strong", "--epochs", "1", "--n-train", "256", "--batch-size", "64", "--n-test", "100", "--device", "cpu",
           "--channels-last", "--num-threads", "1", "--no-progress", "--data-dir", data_dir, "--out", str(out)]
    r = subprocess.run(cmd, cwd=REPO, env=bare_env, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-3000:]
    assert (out / "model.pt").is_file() and (out / "best.pt").is_file() and (out / "checkpoint.pt").is_file()
    # load both files in the same bare interpreter, and build the three RobustBench-layout architectures there
    probe = f"""
import json, sys, torch
import zeropur_bench
from zeropur_bench.archs import build_arch
from zeropur_bench.classifiers import load_classifier
from zeropur_bench.data import load_data
x, y = load_data("cifar10", "test", n=100, data_dir={data_dir!r})
res = {{"file": zeropur_bench.__file__}}
for name in ("model.pt", "best.pt"):
    m = load_classifier("resnet20", "cifar10", checkpoint={str(out)!r} + "/" + name)
    with torch.no_grad():
        res[name] = int((m(x).argmax(1) == y).sum())
res["archs"] = {{a: sum(p.numel() for p in build_arch(a, 10).parameters())
                for a in ("resnet18", "preact-resnet18", "wrn-28-10")}}
res["loaded"] = sorted(m for m in sys.modules if m.partition(".")[0] in {BLOCKED!r})
print(json.dumps(res))
"""
    p = subprocess.run([sys.executable, "-c", probe], cwd=REPO, env=bare_env, capture_output=True, text=True,
                       timeout=600)
    assert p.returncode == 0, p.stderr[-3000:]
    res = json.loads(p.stdout.splitlines()[-1])
    assert Path(res["file"]).resolve() == REPO / "zeropur_bench" / "__init__.py"  # the repository, not site-packages
    assert res["loaded"] == [], _blocked_attempts(bare_env)  # (torch itself may probe for pandas etc.)
    assert res["archs"] == {"resnet18": 11_173_962, "preact-resnet18": 11_171_146, "wrn-28-10": 36_479_194}

    model = torch.load(out / "model.pt", weights_only=True)
    best = torch.load(out / "best.pt", weights_only=True)
    assert res["model.pt"] == model["test_correct"] and model["test_n"] == 100  # fp32 eval reproduced on load
    assert best["finished"] is False and best["best_epoch"] == 1 and best["format"] == model["format"]
    assert best["best_test_acc_fp32"] == model["log"][0]["test_acc"] == res["best.pt"] / 100
    assert best["best_eval"] == {"precision": "fp32", "device": "cpu", "test_n": 100, "channels_last": True}
    for k, v in model["state_dict"].items():  # one epoch: the best state is the final state
        assert torch.equal(v, best["state_dict"][k]), k
    assert model["log"][0]["device"] == "cpu" and model["environment"]["device"] == "cpu"
    assert model["environment"]["devices_used"] == ["cpu"] and "--device cpu" in model["command"]


# ---------------------------------------------------------------- (b) --device cuda without a GPU

@pytest.mark.skipif(CUDA, reason="CUDA is available here: the no-GPU error path cannot be exercised")
def test_device_cuda_without_gpu_exits_2_and_writes_nothing(data_dir: str, tmp_path: Path,
                                                            bare_env: dict[str, str]) -> None:
    out = tmp_path / "never"
    cmd = [sys.executable, "-m", "zeropur_bench.train", "--dataset", "cifar10", "--arch", "resnet18", "--aug",
           "standard", "--epochs", "1", "--device", "cuda", "--data-dir", data_dir, "--out", str(out)]
    r = subprocess.run(cmd, cwd=REPO, env=bare_env, capture_output=True, text=True, timeout=300)
    assert r.returncode == 2
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: --device cuda: no CUDA GPU"), r.stderr
    assert "--device cpu" in lines[0] and r.stdout == ""
    assert not out.exists()


def test_bad_devices_are_user_errors(tmp_path: Path) -> None:
    with pytest.raises(UserError, match="unknown device"):
        resolve_device("gpu")
    with pytest.raises(UserError, match="supports --device cpu and --device cuda"):
        resolve_device("meta")
    assert resolve_device("cpu") == torch.device("cpu")
    with pytest.raises(UserError, match="unknown device"):
        train("cifar10", "resnet20", "vanilla", 1, tmp_path / "x", device="tpu")
    assert not (tmp_path / "x").exists()


# ---------------------------------------------------------------- the accelerator's lazy sync, run on the CPU

def test_lazy_sync_path_gives_the_same_run(data_dir: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Reading the loss back every few steps (what a GPU does) records exactly what reading it every step does."""
    kw = dict(batch_size=8, n_train=256, data_dir=data_dir, progress=False, eval_test=False, num_threads=1)
    eager = train("cifar10", "resnet20", "standard", 1, tmp_path / "eager", **kw)
    monkeypatch.setattr(train_mod, "CPU_SYNC_EVERY", 7)  # 32 steps: per-step reads for 20, then every 7 and the last
    lazy = train("cifar10", "resnet20", "standard", 1, tmp_path / "lazy", **kw)
    assert lazy["log"][0]["loss"] == eager["log"][0]["loss"]
    assert lazy["log"][0]["train_acc"] == eager["log"][0]["train_acc"]
    assert lazy["first_step_losses"] == eager["first_step_losses"] and len(lazy["first_step_losses"]) == 20
    a = torch.load(tmp_path / "eager" / "model.pt", weights_only=True)["state_dict"]
    b = torch.load(tmp_path / "lazy" / "model.pt", weights_only=True)["state_dict"]
    assert all(torch.equal(a[k], b[k]) for k in a)
    monkeypatch.setattr(train_mod, "N_FIRST_LOSSES", 0)  # no per-step reads at all: the lazy check must catch it
    with pytest.raises(RuntimeError, match="training diverged: non-finite loss within steps 1..7 of epoch 1"):
        train("cifar10", "resnet20", "vanilla", 1, tmp_path / "nan", lr=1e30, warmup_epochs=0, **kw)


# ---------------------------------------------------------------- our architectures = RobustBench's layout

def _robustbench_arch(name: str) -> torch.nn.Module:
    from zeropur_bench._compat import import_robustbench

    import_robustbench()
    from robustbench.model_zoo.architectures.resnet import BasicBlock, PreActBlock, PreActResNet, ResNet
    from robustbench.model_zoo.architectures.wide_resnet import WideResNet

    if name == "resnet18":
        return ResNet(BasicBlock, [2, 2, 2, 2], num_classes=10)
    if name == "preact-resnet18":
        return PreActResNet(PreActBlock, [2, 2, 2, 2], num_classes=10)
    return WideResNet(depth=28, widen_factor=10, num_classes=10)


@pytest.mark.parametrize("name", ["resnet18", "preact-resnet18", "wrn-28-10"])
def test_arch_matches_robustbench(name: str) -> None:
    from zeropur_bench.archs import ARCHS, build_arch

    try:
        ref = _robustbench_arch(name)
    except ImportError as exc:
        pytest.skip(f"robustbench is not importable here ({exc}); the layout check needs it")
    torch.manual_seed(1)  # a different init from ours: the loaded weights must be what decides the output
    ours = build_arch(name, 10)
    assert [(n, type(m).__name__) for n, m in ours.named_modules()] == \
        [(n, type(m).__name__) for n, m in ref.named_modules()]
    ref_sd = ref.state_dict()
    assert {k: v.shape for k, v in ours.state_dict().items()} == {k: v.shape for k, v in ref_sd.items()}
    with torch.no_grad():  # non-trivial BatchNorm statistics, so eval mode's affine path is compared too
        for m in ref.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.uniform_(-0.1, 0.1)
                m.running_var.uniform_(0.5, 1.5)
                m.weight.uniform_(0.5, 1.5)
                m.bias.uniform_(-0.1, 0.1)
    ours.load_state_dict(ref.state_dict(), strict=True)
    ours.eval()
    ref.eval()
    x = torch.rand(2, 3, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(ours(x), ref(x), atol=1e-5, rtol=1e-5)
    assert set(ARCHS[name].stages) <= {n for n, _ in ours.named_children()}  # the names the defense hooks


# ---------------------------------------------------------------- (c) a real GPU run

@pytest.mark.skipif(not CUDA, reason="needs a CUDA GPU (torch.cuda.is_available() is False here)")
def test_cuda_training_and_resume(data_dir: str, tmp_path: Path) -> None:
    from zeropur_bench.augment import augment
    from zeropur_bench.classifiers import load_classifier
    from zeropur_bench.data import load_data

    x = load_data("cifar10", "test", n=256, data_dir=data_dir)[0]
    # the device gets the CPU generator's parameters: the same images up to float rounding (crop + flip), and for
    # 'strong' up to the rare pixel on a threshold (solarise, equalise's uint8 rounding)
    g = lambda: torch.Generator().manual_seed(3)  # noqa: E731
    torch.testing.assert_close(augment(x.cuda(), "standard", g()).cpu(), augment(x, "standard", g()),
                               atol=1e-4, rtol=0)
    diff = (augment(x.cuda(), "strong", g()).cpu() - augment(x, "strong", g())).abs().flatten(1)
    assert diff.median() < 1e-5 and (diff.amax(1) > 2e-2).float().mean() <= 0.05
    out = tmp_path / "gpu"
    kw = dict(batch_size=128, n_train=1024, n_test=500, data_dir=data_dir, progress=False, bf16=True,
              channels_last=True)
    part = train("cifar10", "resnet20", "strong", 2, out, device="cuda", stop_after=1, **kw)
    assert not part["finished"] and part["log"][0]["device"] == "cuda" and len(part["first_step_losses"]) == 8
    assert part["log"][0]["device_name"] == torch.cuda.get_device_name()
    best = torch.load(out / "best.pt", weights_only=True)
    assert best["best_eval"]["precision"] == "bf16" and best["finished"] is False and best["best_epoch"] == 1
    assert best["environment"]["device"] == "cuda" and best["environment"]["device_name"]
    res = train("cifar10", "resnet20", "strong", 2, out, device="cuda:0", **kw)  # resumed, named otherwise
    assert res["finished"] and res["environment"]["device"] == "cuda:0"
    assert [e["device"] for e in res["log"]] == ["cuda", "cuda:0"] and len(res["first_step_losses"]) == 16
    assert res["environment"]["devices_used"] == ["cuda", "cuda:0"] and res["test_n"] == 500
    for name in ("model.pt", "best.pt"):
        m = load_classifier("resnet20", "cifar10", checkpoint=str(out / name))  # loads on the CPU
        assert all(p.device.type == "cpu" for p in m.parameters())
    ck = torch.load(out / "checkpoint.pt", weights_only=True)
    assert all(v.device.type == "cpu" for v in ck["state_dict"].values())
    xs, ys = load_data("cifar10", "test", n=500, data_dir=data_dir)
    with torch.no_grad():  # the recorded count is the CPU's, as load_classifier runs the file
        m = load_classifier("resnet20", "cifar10", checkpoint=str(out / "model.pt"))
        assert int((m(xs).argmax(1) == ys).sum()) == res["correct_first500"]
    assert abs(res["correct_first500_device"] - res["correct_first500"]) <= 2
