"""Acceptance grid: ZeroPur profile × stages (C, C-F) × blur on transfer PGD-20, CIFAR-10, shared ResNet.

Adversarial examples: torchattacks PGD (Linf eps 8/255, step 2/255, 20 steps, random start, torch seed 0) on the
bare classifier, first N test images. For each profile and blur one purification run gives both the coarse (C)
and the coarse+fine (C-F) result; the same run on the clean images gives the clean accuracy through the defense.
Baseline rows: the bare classifier and the blur alone (classify g(x)). Prints a markdown table.

    python benchmarks/grid_zeropur.py --n 500
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import pandas as pd
import torch

from zeropur_bench.classifiers import load_classifier
from zeropur_bench.data import load_data
from zeropur_bench.defense import ZeroPur, make_blur


def _ok(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, bs: int = 500) -> torch.Tensor:
    with torch.no_grad():
        return torch.cat([model(x[i:i + bs]).argmax(1) == y[i:i + bs] for i in range(0, len(x), bs)])


def _row(model: torch.nn.Module, x_adv: torch.Tensor, x_clean: torch.Tensor, y: torch.Tensor) -> dict[str, float]:
    """robust = right on the clean input AND on the adversarial one (records' semantics); adv = the adversarial
    input alone (the paper's protocol)."""
    adv, clean = _ok(model, x_adv, y), _ok(model, x_clean, y)
    return {"robust_acc": (adv & clean).float().mean().item(), "adv_acc (paper protocol)": adv.float().mean().item(),
            "clean_acc": clean.float().mean().item()}


def _purify(zp: ZeroPur, x: torch.Tensor, bs: int) -> dict[str, torch.Tensor]:
    parts = [zp.purify_stages(x[i:i + bs], indices=torch.arange(i, min(i + bs, len(x)))) for i in range(0, len(x), bs)]
    return {k: torch.cat([p[k] for p in parts]) for k in parts[0]}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=500)
    ap.add_argument("--arch", default="resnet20")
    ap.add_argument("--checkpoint", default=None, help="default: the registered public <arch>-cifar10-public")
    ap.add_argument("--profiles", default="authors,paper")
    ap.add_argument("--blurs", default="median:3,gaussian:1.2,gaussian:1.8,tv:0.05")
    ap.add_argument("--batch", type=int, default=250)
    ap.add_argument("--dtype", choices=["fp32", "bf16"], default="fp32")
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--out", default=None, help="also write the markdown table here")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    import torchattacks

    model = load_classifier(args.arch, "cifar10", checkpoint=args.checkpoint) if args.checkpoint else \
        load_classifier(f"{args.arch}-cifar10-public", "cifar10")
    x, y = load_data("cifar10", "test", n=args.n)
    torch.manual_seed(0)
    atk = torchattacks.PGD(model, eps=8 / 255, alpha=2 / 255, steps=20, random_start=True)
    x_adv = torch.cat([atk(x[i:i + args.batch], y[i:i + args.batch]) for i in range(0, len(x), args.batch)])
    rows = [{"defense": "none", "profile": "-", "blur": "-", "stages": "-", **_row(model, x_adv, x, y),
             "seconds": 0.0}]
    for spec in args.blurs.split(","):
        g = make_blur(spec)
        rows.append({"defense": "blur only", "profile": "-", "blur": g.spec, "stages": "-",
                     **_row(model, g(x_adv), g(x), y), "seconds": 0.0})
    for profile in args.profiles.split(","):
        for spec in args.blurs.split(","):
            zp = ZeroPur(model, profile=profile, stages="cf", blur=spec, dtype=args.dtype)
            t = time.perf_counter()
            adv, clean = _purify(zp, x_adv, args.batch), _purify(zp, x, args.batch)
            secs = time.perf_counter() - t
            for stage, key in (("C", "coarse"), ("C-F", "purified")):
                rows.append({"defense": "ZeroPur", "profile": profile, "blur": zp.blur.spec, "stages": stage,
                             **_row(model, adv[key], clean[key], y), "seconds": secs})
            print(f"[{profile} {spec}] C {rows[-2]['robust_acc']:.3f}/{rows[-2]['clean_acc']:.3f} "
                  f"C-F {rows[-1]['robust_acc']:.3f}/{rows[-1]['clean_acc']:.3f} ({secs:.0f}s)",
                  file=sys.stderr, flush=True)
    df = pd.DataFrame(rows)
    cols = ["robust_acc", "adv_acc (paper protocol)", "clean_acc"]
    df[cols] = (100 * df[cols]).round(1)
    df["seconds"] = df["seconds"].round(0)
    table = (f"PGD-20 Linf 8/255 transfer, {args.arch}, CIFAR-10 first {args.n} test images, dtype {args.dtype} "
             f"(accuracy %, seconds = C-F purification of adversarial + clean sets)\n\n"
             + df.to_markdown(index=False))
    print(table)
    if args.out:
        Path(args.out).write_text(table + "\n")


if __name__ == "__main__":
    main()
