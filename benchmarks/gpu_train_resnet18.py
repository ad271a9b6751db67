"""Train the paper's CIFAR-10 ResNet-18 'Vanilla' / 'Standard' / 'Strong' classifiers (App. A.1) on one GPU
(an H200) in under 10 minutes of wall time for the three, with ``python -m zeropur_bench.train --device cuda``.

    python benchmarks/gpu_train_resnet18.py            # repository root; data in ./data or $ZEROPUR_BENCH_DATA
    SMOKE=1 python benchmarks/gpu_train_resnet18.py    # CPU smoke test of this script (tiny, see below)
    python benchmarks/gpu_train_resnet18.py --collect standard   # only copy one run's files to $OUT (see below)

Needs only torch, torchvision and numpy (the package need not be installed: it runs from the repository root).
Writes ``runs/c10_r18_{vanilla,standard,strong}/`` (a rerun resumes each from its last finished epoch) and copies
``summary.json`` (accuracies, floors, img/s, sha256 of each model file), each run's ``train_log.json`` and each
run's ``model.pt`` (else ``best.pt``, when the run was stopped) into the output folder: ``runs/c10_r18_out``, or
``$OUT`` when set. With ``$OUT`` set (a device machine, whose ``$OUT`` returns at most 8 files of 16 MiB, 64 MiB in
all, while a ResNet-18 ``model.pt`` is ~45 MB) the training call copies only the summary and the logs, and each
model comes back in its own follow-up call ``--collect AUG`` (made while the machine is still warm), split into
``NAME.partNN`` pieces of at most ``SPLIT_MB`` (15) MiB: rejoin with ``cat NAME.part* > NAME`` and check the
sha256 in ``summary.json``.

Recipe (App. A.1; recorded in each model.pt): SGD momentum 0.9, weight decay 5e-4 on all parameters, cosine decay
with linear warm-up (1/12 of the epochs), bf16 autocast, channels_last, cross-entropy, seed 0, full training set.
Batch 512 with lr 0.4: the paper's 0.1 is for 4×512 on 4 GPUs, whose 120 epochs we cannot afford; for short runs
we take the usual CIFAR reference point (lr 0.1 at batch 128, as the CPU runs use) and scale it linearly with the
batch (Goyal et al. 2017), which the warm-up makes safe.

Epochs from a throughput estimate: ResNet-18 (CIFAR variant, 0.56 GFLOP per 32×32 image forward, ~1.7 GFLOP
forward + backward) in eager PyTorch with bf16 + channels_last at batch 512 runs at roughly 25-40k img/s on an
H100/H200 (small 3×3 convolutions and memory-bound BatchNorm keep it far below the ~790 TFLOP/s matrix peak). At
the low end, 25k img/s, an epoch of 50k images takes 2 s, and the per-epoch test evaluation (10k images, forward
only) and checkpoint (~90 MB) add ~0.5 s. 20 + 50 + 60 = 130 epochs ≈ 130 × 2.5 s ≈ 5.5 min of GPU time, leaving
room for process start, data loading, the final fp32 evaluations and a throughput 1.5× below the estimate within
10 min. The three runs share the GPU concurrently (the process start, per-epoch evaluation / checkpointing and the
final CPU checks of one overlap the others' training). The epoch counts are those the floors need with margin
(ResNet-18, batch 512, cosine: no augmentation saturates at ~85-87 % within ~15 epochs; the resized crop and the
colour augmentations need more epochs to fit). The script prints each run's measured img/s after its first epoch
and a projection of the total; if the projection exceeds the budget it says so. A hard stop (``HARD_STOP_S``,
default 560 s) stops runs still training so the copy to ``$OUT`` happens inside a 10-minute command; a stopped
run keeps its ``best.pt`` and ``checkpoint.pt`` (rerun to resume).

Floors (full CIFAR-10 test set, fp32, as ``load_classifier`` runs the model): Vanilla ≥ 82.0 %, Standard ≥ 91.0 %,
Strong ≥ 89.0 %; the script exits 1 if a finished run misses its floor or a run did not finish.
Environment overrides: EPOCHS_VANILLA / EPOCHS_STANDARD / EPOCHS_STRONG, BATCH, LR, DEVICE, BF16=0/1, SEQUENTIAL=1
(one run after another), HARD_STOP_S, SPLIT_MB, RUNS_DIR, SMOKE=1 (device cpu, 128 training / 100 test images,
batch 64, 1 epoch each, fp32, runs in a temporary folder, floors reported but not enforced).
"""
from __future__ import annotations

import argparse
import hashlib
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
AUGS = ("vanilla", "standard", "strong")
FLOORS = {"vanilla": 0.82, "standard": 0.91, "strong": 0.89}
EPOCHS = {"vanilla": 20, "standard": 50, "strong": 60}
N_TRAIN_FULL = 50_000
BUDGET_S = 600
EPOCH_LINE = re.compile(r"\] epoch \d+/\d+ loss ")  # train.py's per-epoch line


def env_int(name: str, default: int) -> int:
    return int(os.environ.get(name) or default)


def settings() -> dict:
    """The run settings: real (GPU) by default, tiny CPU ones with SMOKE=1; environment overrides win."""
    smoke = os.environ.get("SMOKE", "") not in ("", "0")
    s = {"smoke": smoke, "device": os.environ.get("DEVICE") or ("cpu" if smoke else "cuda"),
         "batch": env_int("BATCH", 64 if smoke else 512), "lr": float(os.environ.get("LR") or 0.4),
         "epochs": {a: env_int(f"EPOCHS_{a.upper()}", 1 if smoke else EPOCHS[a]) for a in AUGS},
         "sequential": os.environ.get("SEQUENTIAL", "") not in ("", "0"),
         "hard_stop_s": env_int("HARD_STOP_S", 0 if smoke else 560),
         "n_train": 128 if smoke else None, "n_test": 100 if smoke else None,
         "threads": 1 if smoke else 4,
         # the smoke run drops bf16 by default: a CPU without native bf16 emulates it, several times slower
         "bf16": os.environ.get("BF16", "0" if smoke else "1") != "0"}
    runs = os.environ.get("RUNS_DIR") or (tempfile.mkdtemp(prefix="zeropur_smoke_") if smoke else "runs")
    s["runs"] = Path(runs)
    out = os.environ.get("OUT")
    s["out"] = Path(out) if out else s["runs"] / "c10_r18_out"
    s["split_mb"] = env_int("SPLIT_MB", 15 if out else 0)
    return s


def run_dir(s: dict, aug: str) -> Path:
    return s["runs"] / f"c10_r18_{aug}"


def train_cmd(s: dict, aug: str) -> list[str]:
    cmd = [sys.executable, "-m", "zeropur_bench.train", "--dataset", "cifar10", "--arch", "resnet18", "--aug", aug,
           "--epochs", str(s["epochs"][aug]), "--out", str(run_dir(s, aug)), "--batch-size", str(s["batch"]),
           "--lr", repr(s["lr"]), "--channels-last", "--device", s["device"],
           "--num-threads", str(s["threads"]), "--no-progress"] + (["--bf16"] if s["bf16"] else [])
    if s["n_train"]:
        cmd += ["--n-train", str(s["n_train"])]
    if s["n_test"]:
        cmd += ["--n-test", str(s["n_test"])]
    return cmd


def check_data() -> None:
    root = Path(os.environ.get("ZEROPUR_BENCH_DATA") or "data")
    missing = [f for f in ("cifar10_train.npz", "cifar10_test.npz") if not (root / f).is_file()]
    if missing:
        sys.exit(f"error: {', '.join(missing)} not in '{root}'; decode the shared copy with "
                 f"`python ../shared/data/prepare.py data` or point $ZEROPUR_BENCH_DATA at a folder holding them")


class Run:
    """One training subprocess whose stderr is echoed with a prefix and watched for the first epoch's img/s."""

    def __init__(self, s: dict, aug: str, t_start: float, on_first_epoch) -> None:
        self.aug, self.t_start = aug, t_start
        self.run, self.n_train = run_dir(s, aug), s["n_train"] or N_TRAIN_FULL
        self.first_img_s: float | None = None
        env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]).rstrip(
            os.pathsep), "PYTHONUNBUFFERED": "1"}
        print(f"[{aug}] $ {' '.join(train_cmd(s, aug))}", flush=True)
        self.proc = subprocess.Popen(train_cmd(s, aug), cwd=REPO, env=env, stdout=subprocess.PIPE,
                                     stderr=subprocess.STDOUT, text=True, bufsize=1)
        self.on_first_epoch = on_first_epoch
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            print(f"[{self.aug} {time.time() - self.t_start:5.0f} s] {line.rstrip()}", flush=True)
            if self.first_img_s is None and EPOCH_LINE.search(line):
                self.first_img_s = self._img_s(line)
                if self.first_img_s:
                    self.on_first_epoch(self)

    def _img_s(self, line: str) -> float | None:
        """img/s from a GPU epoch line (``... (2 s, 24567 img/s on NVIDIA H200)``); a CPU line has none: then from
        the checkpoint's log."""
        if "img/s" in line:
            try:
                return float(line.split(" img/s")[0].rsplit(" ", 1)[1])
            except (IndexError, ValueError):
                return None
        import torch

        try:
            ck = torch.load(self.run / "checkpoint.pt", map_location="cpu", weights_only=True)
            secs = float(ck["log"][-1]["train_seconds"])
        except (OSError, RuntimeError, KeyError, IndexError):
            return None
        return self.n_train / max(secs, 1e-3)

    def wait(self, deadline: float | None) -> int:
        while self.proc.poll() is None:
            if deadline is not None and time.time() > deadline:
                print(f"[{self.aug}] hard stop: still training at {time.time() - self.t_start:.0f} s; stopping it "
                      f"(best.pt and checkpoint.pt stay; rerun to resume)", flush=True)
                self.proc.send_signal(signal.SIGTERM)
                try:
                    self.proc.wait(30)
                except subprocess.TimeoutExpired:
                    self.proc.kill()
                break
            time.sleep(0.5)
        self.reader.join(5)
        return self.proc.wait()


def project(s: dict, runs: list[Run], t_start: float, todo: tuple[str, ...]) -> None:
    """After the first epoch of every running job: measured img/s and the projected wall time of the runs in
    ``todo`` (those running now and those still to start)."""
    rates = {r.aug: r.first_img_s for r in runs if r.first_img_s}
    if len(rates) < len(runs):
        return
    n = s["n_train"] or N_TRAIN_FULL
    total_rate = sum(rates.values())
    left = sum(s["epochs"][a] * n for a in todo) - len(rates) * n
    eta = time.time() - t_start + left / total_rate * 1.25  # +25 %: evaluation and checkpoints
    print("measured after the first epoch: " + ", ".join(f"{a} {v:,.0f} img/s" for a, v in rates.items())
          + f"; together {total_rate:,.0f} img/s (first epoch includes cuDNN autotuning); projected wall "
          f"≈ {eta:.0f} s of the {BUDGET_S} s budget", flush=True)
    if eta > BUDGET_S and not s["smoke"]:
        print(f"WARNING: projected {eta:.0f} s exceeds {BUDGET_S} s; lower EPOCHS_* (the hard stop at "
              f"{s['hard_stop_s']} s keeps best.pt)", flush=True)


def train_all(s: dict) -> dict[str, int]:
    t_start = time.time()
    deadline = t_start + s["hard_stop_s"] if s["hard_stop_s"] else None
    lock = threading.Lock()
    live: list[Run] = []

    def on_first(run: Run) -> None:
        with lock:
            project(s, live, t_start, tuple(a for a in AUGS if a not in rcs))

    rcs: dict[str, int] = {}
    if s["sequential"]:
        for aug in AUGS:
            with lock:
                live[:] = [Run(s, aug, t_start, on_first)]
            rcs[aug] = live[0].wait(deadline)
    else:
        with lock:
            live.extend(Run(s, aug, t_start, on_first) for aug in AUGS)
        for r in list(live):
            rcs[r.aug] = r.wait(deadline)
    print(f"training done in {time.time() - t_start:.0f} s wall", flush=True)
    return rcs


def load_meta(path: Path) -> dict | None:
    import torch

    if not path.is_file():
        return None
    ck = torch.load(path, map_location="cpu", weights_only=True)
    ck.pop("state_dict", None)
    return ck


def summarise(s: dict, rcs: dict[str, int]) -> dict:
    rows = {}
    for aug in AUGS:
        d = run_dir(s, aug)
        model, best = load_meta(d / "model.pt"), load_meta(d / "best.pt")
        row: dict = {"run": str(d), "rc": rcs.get(aug), "floor": FLOORS[aug], "finished": model is not None}
        meta = model or best
        if meta is not None:
            log, n = meta["log"], meta["data"]["train"]["n"]
            secs = sum(e["train_seconds"] for e in log)
            row.update(epochs_done=len(log), epochs=meta["recipe"]["epochs"], train_seconds=round(secs, 1),
                       img_per_s_mean=round(n * len(log) / max(secs, 1e-9)),
                       img_per_s_first=round(n / max(log[0]["train_seconds"], 1e-9)),
                       device=meta["environment"].get("device_name") or meta["environment"].get("device"))
            src = model_file(s, aug)
            if src is not None:
                row.update(file=src.name, sha256=sha256(src))
        if model is not None:
            row.update(test_acc_fp32=model["test_acc"], test_n=model["test_n"],
                       correct_first500=model["correct_first500"],
                       meets_floor=model["test_acc"] >= FLOORS[aug] and model["test_n"] == 10_000)
        if best is not None:
            prec = best["best_eval"]["precision"]
            row.update(best_epoch=best["best_epoch"], best_test_acc=best[f"best_test_acc_{prec}"],
                       best_precision=prec)
        rows[aug] = row
    return rows


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def model_file(s: dict, aug: str) -> Path | None:
    """The run's ``model.pt``, else its ``best.pt`` (a stopped run), else ``None``."""
    for name in ("model.pt", "best.pt"):
        if (run_dir(s, aug) / name).is_file():
            return run_dir(s, aug) / name
    return None


def copy_out(s: dict, summary: dict, logs: tuple[str, ...], models: tuple[str, ...]) -> None:
    """Write ``summary.json`` and copy the ``logs`` runs' train_log.json and the ``models`` runs' model file into
    the output folder, a model split into parts of at most ``SPLIT_MB`` MiB when that is set."""
    out = s["out"]
    out.mkdir(parents=True, exist_ok=True)
    (out / "summary.json").write_text(json.dumps(summary, indent=1) + "\n")
    for aug in logs:
        if (run_dir(s, aug) / "train_log.json").is_file():
            shutil.copyfile(run_dir(s, aug) / "train_log.json", out / f"c10_r18_{aug}.train_log.json")
    limit = s["split_mb"] * 2**20
    for aug in models:
        src = model_file(s, aug)
        if src is None:
            print(f"[{aug}] nothing to copy: no model.pt or best.pt in {run_dir(s, aug)}", flush=True)
            continue
        name = f"c10_r18_{aug}.{src.name}"
        if not limit or src.stat().st_size <= limit:
            shutil.copyfile(src, out / name)
            print(f"[{aug}] copied {src} → {out / name}", flush=True)
            continue
        data = src.read_bytes()
        n = 0
        for n, i in enumerate(range(0, len(data), limit)):
            (out / f"{name}.part{n:02d}").write_bytes(data[i:i + limit])
        print(f"[{aug}] copied {src} → {out / name}.part00..{n:02d} (rejoin: cat {name}.part* > {name})", flush=True)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--collect", choices=AUGS, action="append", default=None,
                   help="do not train: copy this run's files (and a fresh summary.json) to $OUT; repeatable")
    a = p.parse_args(argv)
    os.chdir(REPO)
    s = settings()
    if a.collect:
        copy_out(s, {"runs": summarise(s, {})}, (), tuple(a.collect))
        return 0
    check_data()
    print(f"settings: device {s['device']}, batch {s['batch']}, lr {s['lr']}, epochs {s['epochs']}, "
          f"{'sequential' if s['sequential'] else 'concurrent'}, runs in {s['runs']}, output to {s['out']}"
          + (" (SMOKE: tiny CPU run, floors not checked)" if s["smoke"] else ""), flush=True)
    t0 = time.time()
    rcs = train_all(s)
    summary = {"settings": {k: (str(v) if isinstance(v, Path) else v) for k, v in s.items()},
               "wall_seconds": round(time.time() - t0, 1), "runs": summarise(s, rcs)}
    copy_out(s, summary, AUGS, () if s["split_mb"] else AUGS)
    if s["split_mb"]:
        print(f"models stay in {s['runs']}; fetch each with: python benchmarks/gpu_train_resnet18.py --collect AUG",
              flush=True)
    print(json.dumps(summary["runs"], indent=1), flush=True)
    bad = [a for a, r in summary["runs"].items() if not r.get("meets_floor")]
    if s["smoke"]:
        ok = all(r.get("finished") for r in summary["runs"].values())
        print(f"smoke {'OK' if ok else 'FAILED'}: {s['runs']}", flush=True)
        return 0 if ok else 1
    if bad:
        print(f"FLOORS NOT MET (or run unfinished): {', '.join(bad)}", flush=True)
        return 1
    print(f"all floors met in {summary['wall_seconds']:.0f} s wall", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
