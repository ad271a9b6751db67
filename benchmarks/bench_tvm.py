"""TV-minimisation purifier (Guo et al. 2018) throughput at a given solver block size.

The solver's 200 iterations are a dozen elementwise passes each, so its speed is memory bandwidth: a block of images
whose tensors stay in cache is faster per image than the whole batch at once. Run two block sizes as two processes
and compare them paired (e.g. with /usr/bin/time, or hyperfine), on the same machine in the same minutes:

    python benchmarks/bench_tvm.py --block 32
    python benchmarks/bench_tvm.py --block 512

Prints ms per image for one solve of --n CIFAR-10 test images (data: $ZEROPUR_BENCH_DATA or ./data, as
zeropur_bench.data resolves it).
"""
from __future__ import annotations

import argparse
import time

import torch

from zeropur_bench.data import load_data
from zeropur_bench.defense.purifiers import tvm


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--block", type=int, default=tvm.SOLVER_BLOCK, help="images per solver block (no gradient)")
    ap.add_argument("--n", type=int, default=512, help="images purified, in one call")
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    x, _ = load_data("cifar10", n=args.n)
    d = tvm.TVMinimization(torch.nn.Identity())
    mask = d.mask(x, torch.arange(len(x)))
    with torch.no_grad():
        t = time.perf_counter()
        tvm.masked_tv(x, mask, d.weight, d.iters, block=args.block)
        dt = time.perf_counter() - t
    print(f"block {args.block}: {1000 * dt / len(x):.2f} ms per image ({len(x)} images, {d.iters} iterations)")


if __name__ == "__main__":
    main()
