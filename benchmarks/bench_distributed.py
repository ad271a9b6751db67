"""Scale-out on one machine: the same evaluation as 2 torchrun ranks × 1 thread and as 1 process × 2 threads.

    python benchmarks/bench_distributed.py                      # ZeroPur-C-F, transfer PGD-20, 32 images
    python benchmarks/bench_distributed.py --n 16 --zp coarse_steps=3,fine_steps=5   # quicker

Both runs write a record into a temporary folder; the script checks that the per-example results agree (they
need not be bit-identical here: 2 threads split reductions differently from 1) and prints wall times and their
ratio. Measured inside one invocation, back to back, so the ratio is meaningful on a shared machine only if
nothing else runs meanwhile.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def _run(cmd: list[str], env: dict) -> float:
    t = time.perf_counter()
    res = subprocess.run(cmd, env=env, cwd=REPO, capture_output=True, text=True)
    if res.returncode != 0:
        sys.exit(f"failed: {' '.join(cmd)}\n{res.stderr[-2000:]}")
    return time.perf_counter() - t


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=32)
    ap.add_argument("--batch-size", type=int, default=8)
    ap.add_argument("--zp", default="")
    ap.add_argument("--ranks", type=int, default=2)
    args = ap.parse_args()
    common = ["run", "--model", "resnet20-cifar10-public", "--n-ex", str(args.n), "--batch-size",
              str(args.batch_size), "--attack", "pgd", "--stages", "cf", "--no-progress"]
    if args.zp:
        common += ["--zp", args.zp]
    with tempfile.TemporaryDirectory() as tmp:
        env1 = {**os.environ, "OMP_NUM_THREADS": str(args.ranks)}
        t_one = _run([sys.executable, "-m", "zeropur_bench", *common, "--out", f"{tmp}/one.json"], env1)
        envn = {**os.environ, "OMP_NUM_THREADS": "1"}
        t_dist = _run([sys.executable, "-m", "torch.distributed.run", "--standalone",
                       f"--nproc_per_node={args.ranks}", "-m", "zeropur_bench", *common, "--out", f"{tmp}/dist.json"],
                      envn)
        one, dist = (json.loads(Path(f"{tmp}/{n}.json").read_text()) for n in ("one", "dist"))
        agree = sum(a == b for a, b in zip(one["examples"]["robust_correct"]["PGD-20"],
                                           dist["examples"]["robust_correct"]["PGD-20"]))
    print(f"n={args.n}, batch {args.batch_size}, ZeroPur-C-F, transfer PGD-20, cpu_count={os.cpu_count()}")
    print(f"1 process x {args.ranks} threads: {t_one:.1f} s")
    print(f"{args.ranks} ranks x 1 thread (torchrun, gloo): {t_dist:.1f} s")
    print(f"ratio (1 process / {args.ranks} ranks) = {t_one / t_dist:.2f}; per-example agreement {agree}/{args.n}")


if __name__ == "__main__":
    main()
