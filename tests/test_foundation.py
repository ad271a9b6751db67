"""Issue 2: install, data, classifiers, safe checkpoint loading — on real data and real weights."""
from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch

from zeropur_bench._compat import import_robustbench, robustbench_record_mismatches
from zeropur_bench.classifiers import load_classifier, safe_load
from zeropur_bench.data import load_data, slice_sha256
from zeropur_bench.errors import UserError

from conftest import WEIGHTS, make_malicious_checkpoint


def test_robustbench_imports_and_files_are_the_release():
    rb = import_robustbench()
    assert hasattr(rb.utils, "load_model")
    import importlib.metadata as md

    assert md.version("robustbench") == "1.1.1"
    # The version string survives torchattacks' stale copy overwriting the files; the RECORD hashes do not.
    assert robustbench_record_mismatches() == []
    # autoattack resolves to pyautoattack for robustbench's own imports
    import autoattack

    assert autoattack.__name__ == "pyautoattack"


def test_record_check_detects_an_overwritten_file(tmp_path, monkeypatch):
    """The RECORD check must flag a file whose bytes differ (as torchattacks' 2022 copy would)."""
    import importlib.metadata as md

    dist = md.distribution("robustbench")
    target = next(f for f in dist.files if str(f) == "robustbench/data.py")
    fake = tmp_path / "robustbench"
    fake.mkdir()
    real = Path(dist.locate_file(target))
    (fake / "data.py").write_bytes(real.read_bytes() + b"\n# overwritten\n")

    class FakeDist:
        files = [target]

        @staticmethod
        def locate_file(f):
            return tmp_path / str(f)

    monkeypatch.setattr(md, "distribution", lambda name: FakeDist)
    assert robustbench_record_mismatches() == ["robustbench/data.py"]


def test_cifar100_test_loads(data_dir):
    x, y, info = load_data("cifar100", "test", data_dir=data_dir, return_info=True)
    assert x.shape == (10000, 3, 32, 32) and x.dtype == torch.float32
    assert y.dtype == torch.int64
    assert float(x.min()) >= 0.0 and float(x.max()) <= 1.0
    counts = torch.bincount(y, minlength=100)
    assert len(counts) == 100 and bool((counts == 100).all())
    assert info.source == "npz" and info.n == 10000 and info.sha256 == slice_sha256(x, y)


def test_first_n_is_a_prefix_and_hash_changes(data_dir):
    x5, y5, i5 = load_data("cifar10", n=5, data_dir=data_dir, return_info=True)
    x10, y10, i10 = load_data("cifar10", n=10, data_dir=data_dir, return_info=True)
    assert torch.equal(x5, x10[:5]) and torch.equal(y5, y10[:5])
    assert i5.sha256 != i10.sha256
    # pixel values are exactly k/255 (lossless uint8 source)
    assert torch.equal((x5 * 255).round() / 255, x5)


@pytest.mark.parametrize("depth,expected", [(56, 926), (20, 915)])
def test_shared_resnets_clean_accuracy_first_1000(data_dir, depth, expected):
    x, y = load_data("cifar10", n=1000, data_dir=data_dir)
    model, info = load_classifier(f"resnet{depth}", "cifar10", checkpoint=str(WEIGHTS / f"resnet{depth}.th"),
                                  return_info=True)
    assert not model.training and not any(p.requires_grad for p in model.parameters())
    with torch.no_grad():
        correct = sum(int((model(x[i:i + 250]).argmax(1) == y[i:i + 250]).sum()) for i in range(0, 1000, 250))
    assert correct == expected
    assert info.checkpoint_sha256 == {20: "12fca82f0bebc4135bf1f32f6e3710e61d5108578464b84fd6d7f5c1b04036c8",
                                      56: "4bfd97631478d6b638d2764fd2baff3edb1d7d82252d54439343b6596b9b5367"}[depth]


def test_checkpoint_layouts(tmp_path, resnet20_path, cifar10_test):
    x, y = cifar10_test[0][:64], cifar10_test[1][:64]
    ref = load_classifier("resnet20", checkpoint=resnet20_path)
    sd = {k[len("module."):]: v for k, v in safe_load(resnet20_path)["state_dict"].items()}
    layouts = {"raw.pt": sd, "wrapped.pt": {"state_dict": sd, "epoch": 3},
               "prefixed.pt": {f"module.{k}": v for k, v in sd.items()}}
    from safetensors.torch import save_file

    save_file(sd, str(tmp_path / "st.safetensors"))
    for name, obj in layouts.items():
        torch.save(obj, tmp_path / name)
    with torch.no_grad():
        want = ref(x)
        for name in [*layouts, "st.safetensors"]:
            got = load_classifier("resnet20", checkpoint=str(tmp_path / name))(x)
            assert torch.equal(got, want), name


MALICIOUS = textwrap.dedent("""
    import os, sys, pytest
    from pathlib import Path
    from zeropur_bench.classifiers import load_classifier
    from zeropur_bench.errors import UserError
    ckpt, sentinel = sys.argv[1], sys.argv[2]
    try:
        load_classifier("resnet20", checkpoint=ckpt)
    except UserError as exc:
        print("REFUSED:", exc)
    print("SENTINEL_EXISTS" if Path(sentinel).exists() else "SENTINEL_ABSENT")
""")


def test_malicious_checkpoint_is_refused(tmp_path):
    ckpt, sentinel = make_malicious_checkpoint(tmp_path)
    script = tmp_path / "load.py"
    script.write_text(MALICIOUS)
    # TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD=1 turns torch's own weights_only default off: only an explicit flag in
    # our loader keeps the payload from running.
    env = {**os.environ, "TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD": "1"}
    out = subprocess.run([sys.executable, str(script), str(ckpt), str(sentinel)], env=env, capture_output=True,
                         text=True, timeout=300)
    assert "REFUSED: refusing to load" in out.stdout, out.stdout + out.stderr
    assert "SENTINEL_ABSENT" in out.stdout
    assert not sentinel.exists()


def test_clear_errors_api(tmp_path, resnet20_path, data_dir):
    cases = [
        (lambda: load_classifier("no-such-model"), "unknown model 'no-such-model'"),
        (lambda: load_data("cifar11", data_dir=data_dir), "unknown dataset 'cifar11'"),
        (lambda: load_classifier("resnet20", checkpoint=str(tmp_path / "missing.th")), "does not exist"),
        (lambda: load_classifier("resnet20", "cifar100", checkpoint=resnet20_path), "output classes"),
        (lambda: load_data("cifar10", data_dir=tmp_path / "empty"), "prepare.py"),
    ]
    for fn, needle in cases:
        with pytest.raises(UserError, match=needle.replace("(", r"\(")):
            fn()
