"""Adaptive attacks against ZeroPur at paper scale: Hill et al.'s full BPDA+EOT protocol and Mao et al.'s
defense-aware attack (λ swept), on the shared CIFAR-10 ResNet-20.

    python benchmarks/bench_adaptive.py --n 200                      # the acceptance run (hours on 2 CPU cores)
    python benchmarks/bench_adaptive.py --n 8 --steps 5 --coarse-steps 2 --stages c   # a smoke run

Prints clean accuracy (bare and through the defense), transfer PGD-20 accuracy through the defense, and for each
adaptive attack the robust accuracy "any step" (headline: an image broken at any iterate stays broken) and
"final only", with Wilson 95% intervals, passes per image and wall time.
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch

from zeropur_bench.attacks import make_attack
from zeropur_bench.classifiers import load_classifier
from zeropur_bench.data import load_data
from zeropur_bench.defense.zeropur import ZeroPur
from zeropur_bench.stats import wilson

REPO = Path(__file__).resolve().parents[1]
DEFAULT_CKPT = REPO.parent / "shared" / "weights" / "cifar10" / "resnet20.th"


def _acc(correct: torch.Tensor) -> str:
    k, n = int(correct.sum()), int(correct.numel())
    lo, hi = wilson(k, n)
    return f"{k / n:.4f} [{lo:.3f}, {hi:.3f}]"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=200, help="first n CIFAR-10 test images (default 200)")
    ap.add_argument("--batch-size", type=int, default=50)
    ap.add_argument("--data-dir", default=None, help="npz data dir (default $ZEROPUR_BENCH_DATA or ./data)")
    ap.add_argument("--checkpoint", default=str(DEFAULT_CKPT))
    ap.add_argument("--profile", default="authors")
    ap.add_argument("--stages", default="cf")
    ap.add_argument("--blur", default="median:3")
    ap.add_argument("--coarse-steps", type=int, default=None, help="override ZeroPur's coarse steps (speed)")
    ap.add_argument("--fine-steps", type=int, default=None, help="override ZeroPur's fine steps (speed)")
    ap.add_argument("--random-start", action="store_true", help="stochastic ZeroPur (random start)")
    ap.add_argument("--eps", type=float, default=8 / 255)
    ap.add_argument("--steps", type=int, default=50, help="BPDA+EOT steps (Hill et al.: 50)")
    ap.add_argument("--eot-reps", type=int, default=15)
    ap.add_argument("--verify-reps", type=int, default=150)
    ap.add_argument("--da-steps", type=int, default=10, help="defense-aware PGD steps (Mao et al.: 10)")
    ap.add_argument("--lambdas", type=float, nargs="+", default=[0.1, 1.0, 10.0])
    ap.add_argument("--attacks", nargs="+", default=["bpda-eot", "defense-aware"])
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--json", default=None, help="also write the summary here")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    x, y = load_data("cifar10", "test", n=args.n, data_dir=args.data_dir)
    clf = load_classifier("resnet20", "cifar10", checkpoint=args.checkpoint)
    overrides = {}
    if args.coarse_steps is not None:
        overrides["coarse_steps"] = args.coarse_steps
    if args.fine_steps is not None:
        overrides["fine_steps"] = args.fine_steps
    if args.random_start:
        overrides["random_start"] = True
    defense = ZeroPur(clf, profile=args.profile, stages=args.stages, blur=args.blur, seed=args.seed, **overrides)
    print(f"ZeroPur {defense.extra_repr()}, {overrides}; n={args.n}, eps={args.eps * 255:.2f}/255, "
          f"threads={torch.get_num_threads()}", flush=True)

    batches = [(torch.arange(i, min(i + args.batch_size, args.n))) for i in range(0, args.n, args.batch_size)]
    summary: dict = {"n": args.n, "config": vars(args)}

    t0 = time.time()
    with torch.no_grad():
        bare = torch.cat([clf(x[b]).argmax(1) == y[b] for b in batches])
        defended = torch.cat([defense(x[b], indices=b).argmax(1) == y[b] for b in batches])
    pgd = make_attack("pgd", clf, eps=args.eps, seed=args.seed)
    transfer = []
    for b in batches:
        xa = pgd(x[b], y[b], indices=b)
        with torch.no_grad():
            transfer.append(defense(xa, indices=b).argmax(1) == y[b])
    transfer = torch.cat(transfer)
    print(f"clean (bare) {_acc(bare)}  clean (defended) {_acc(defended)}  transfer PGD-20 -> ZeroPur "
          f"{_acc(transfer)}  ({time.time() - t0:.0f} s)", flush=True)
    summary.update(clean_acc=bare.float().mean().item(), defended_clean_acc=defended.float().mean().item(),
                   transfer_pgd20_acc=transfer.float().mean().item())

    params = {"bpda-eot": dict(steps=args.steps, eot_reps=args.eot_reps, verify_reps=args.verify_reps),
              "defense-aware": dict(steps=args.da_steps, lambdas=tuple(args.lambdas)),
              "pgd-eot": dict(steps=args.steps),
              "autoattack-bpda": dict()}
    for name in args.attacks:
        atk = make_attack(name, defense, eps=args.eps, seed=args.seed, **params.get(name, {}))
        t = time.time()
        any_ok, fin_ok, fwd, bwd = [], [], 0, 0
        for b in batches:
            xa = atk(x[b], y[b], indices=b)
            info = atk.last_info
            if "broken_any_step" in info:
                any_ok.append(~info["broken_any_step"])
                fin_ok.append(~info["broken_final"])
            else:  # attacks without per-step tracking: judge the returned x_adv
                with torch.no_grad():
                    ok = defense(xa, indices=b).argmax(1) == y[b]
                any_ok.append(ok)
                fin_ok.append(ok)
            fwd += info["forward_passes"]
            bwd += info["backward_passes"]
        wall = time.time() - t
        any_ok, fin_ok = torch.cat(any_ok), torch.cat(fin_ok)
        extra = {k: v for k, v in info.items() if k in ("deterministic", "eot_reps", "verify_reps", "judge_reps")}
        print(f"{name}: robust any-step {_acc(any_ok)}  final-only {_acc(fin_ok)}  "
              f"passes/image fwd {fwd / args.n:.0f} bwd {bwd / args.n:.0f}  wall {wall:.0f} s "
              f"({wall / args.n:.2f} s/image)  {extra}", flush=True)
        summary[name] = {"robust_acc_any_step": any_ok.float().mean().item(),
                         "robust_acc_final": fin_ok.float().mean().item(), "wall_s": wall,
                         "forward_passes_per_image": fwd / args.n, "backward_passes_per_image": bwd / args.n,
                         **{k: v for k, v in extra.items()}}
    if args.json:
        Path(args.json).write_text(json.dumps(summary, indent=2, default=str))


if __name__ == "__main__":
    main()
