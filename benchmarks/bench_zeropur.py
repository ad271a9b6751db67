"""ZeroPur purification throughput against the bare classifier's cost.

Prints images/s and the efficiency ratio ideal/actual, where per batch
    ideal = K_c·(T_fb + T_f) + K_f·T_fb + 2·T_f        (stages 'cf'; 'c': K_c·(T_fb + T_f))
T_f / T_fb = bare classifier forward / forward+backward-to-input time for the same batch, measured in the same
process with the same dtype and memory layout. (A coarse step is one forward+backward on x plus one forward on
g(x); a fine step one forward+backward; fine alignment needs two target forwards.)

    python benchmarks/bench_zeropur.py --arch resnet56 --batch 256 --dtype fp32 --n-batches 1
"""
from __future__ import annotations

import argparse
import contextlib
import statistics
import time
from pathlib import Path

import torch

from zeropur_bench.classifiers import IMAGENET_MEAN, IMAGENET_STD, Normalized, load_classifier
from zeropur_bench.defense import ZeroPur

SHARED_WEIGHTS = Path(__file__).resolve().parents[2] / "shared" / "weights" / "cifar10"


def _classifier(arch: str, checkpoint: str | None) -> torch.nn.Module:
    ckpt = checkpoint or (str(SHARED_WEIGHTS / f"{arch}.th") if (SHARED_WEIGHTS / f"{arch}.th").is_file() else None)
    if ckpt:
        return load_classifier(arch, "cifar10", checkpoint=ckpt)
    from zeropur_bench.archs import build_arch

    model = Normalized(build_arch(arch, 10), IMAGENET_MEAN, IMAGENET_STD).eval()  # random weights: same cost
    for p in model.parameters():
        p.requires_grad_(False)
    return model


def _images(n: int) -> torch.Tensor:
    try:
        from zeropur_bench.data import load_data

        return load_data("cifar10", "test", n=n)[0]
    except Exception:  # no data here: random images cost the same
        return torch.rand(n, 3, 32, 32, generator=torch.Generator().manual_seed(0))


def _timed(fn, reps: int) -> float:
    fn()  # warm-up
    times = []
    for _ in range(reps):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--arch", default="resnet56")
    ap.add_argument("--checkpoint", default=None)
    ap.add_argument("--batch", type=int, default=256)
    ap.add_argument("--dtype", choices=["fp32", "bf16"], default="fp32")
    ap.add_argument("--channels-last", action="store_true")
    ap.add_argument("--n-batches", type=int, default=1)
    ap.add_argument("--profile", default="authors")
    ap.add_argument("--stages", default="cf")
    ap.add_argument("--blur", default="median:3")
    ap.add_argument("--reps", type=int, default=3, help="repetitions of the bare T_f / T_fb timings")
    ap.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's default)")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    model = _classifier(args.arch, args.checkpoint)
    zp = ZeroPur(model, profile=args.profile, stages=args.stages, blur=args.blur, dtype=args.dtype,
                 channels_last=args.channels_last)
    x_all = _images(args.batch * args.n_batches)
    x = x_all[: args.batch]
    x_in = x.contiguous(memory_format=torch.channels_last) if args.channels_last else x

    def autocast():
        return torch.autocast("cpu", dtype=torch.bfloat16) if args.dtype == "bf16" else contextlib.nullcontext()

    def fwd() -> None:
        with torch.no_grad(), autocast():
            model(x_in)

    def fwd_bwd() -> None:
        a = x_in.detach().requires_grad_(True)
        with autocast():
            out = model(a)
        torch.autograd.grad(out.float().sum(), a)

    t_f, t_fb = _timed(fwd, args.reps), _timed(fwd_bwd, args.reps)
    zp.purify(x[: min(8, args.batch)])  # warm-up
    times = []
    for b in range(args.n_batches):
        xb = x_all[b * args.batch:(b + 1) * args.batch]
        t = time.perf_counter()
        zp.purify(xb, indices=torch.arange(b * args.batch, (b + 1) * args.batch))
        times.append(time.perf_counter() - t)
    t_f2, t_fb2 = _timed(fwd, args.reps), _timed(fwd_bwd, args.reps)  # again after: the machine may be shared
    t_f, t_fb = (t_f + t_f2) / 2, (t_fb + t_fb2) / 2
    kc, kf = zp.coarse_steps, zp.fine_steps if args.stages == "cf" else 0
    ideal = kc * (t_fb + t_f) + (kf * t_fb + 2 * t_f if kf else 0)
    actual = statistics.mean(times)
    print(f"arch={args.arch} batch={args.batch} dtype={args.dtype} channels_last={args.channels_last} "
          f"profile={args.profile} stages={args.stages} blur={args.blur} threads={torch.get_num_threads()} "
          f"K_c={kc} K_f={kf}")
    print(f"T_f={t_f:.3f}s T_fb={t_fb:.3f}s per batch (bare classifier)")
    print(f"purify: {actual:.2f}s per batch = {args.batch / actual:.1f} images/s; "
          f"ideal {ideal:.2f}s; ratio ideal/actual = {ideal / actual:.3f}")


if __name__ == "__main__":
    main()
