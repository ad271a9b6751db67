"""The science check of issue 30: does the fine stage's ILA term or its self-LPIPS term steer fine alignment?

For each classifier: PGD-20 (L∞ 8/255, step 2/255, torchattacks) on clean TRAINING images (the first n of the
calibration slice's seeded permutation, never test images), ZeroPur's coarse stage (authors' settings, the
paper's blur for the classifier's recipe), then, at the start of fine alignment (x'' = x'), the per-image L2 norm
of the gradient of each weighted term of the authors' fine loss w·ILA − 1·self-LPIPS (Eq. 11, docs/method.md):

    ratio(w) = ‖∇ w·ILA‖ / ‖∇ self-LPIPS‖

at the authors' w = 1e-4 and at the classifier's calibrated w (clean-guard, from the registry). Beside it the
feature scale S that `calibrate` measures (rule 'scale'; the public ResNet-20's S_ref is 16,833). A ratio far
below 1 means self-LPIPS steers the fine steps and ILA barely acts; far above 1, ILA dominates.

    python benchmarks/grad_ratio.py --models resnet20-cifar10-public resnet20-cifar10-standard [--n 64]

Written here because no library measures this. Prints a markdown table; nothing is written.
"""
from __future__ import annotations

import argparse
import sys

import torch


def measure(name: str, n: int, data_dir: str | None) -> dict:
    import torchattacks

    from zeropur_bench import load_classifier, registry
    from zeropur_bench.data import load_data
    from zeropur_bench.defense import ZeroPur
    from zeropur_bench.defense.calibrate import feature_scale
    from zeropur_bench.defense.calibration import DEFAULT_N, DEFAULT_RULE, DEFAULT_SEED, calibration_slice, weights_sha256
    from zeropur_bench.runspec import default_blur

    entry = registry.get(name)
    clf = load_classifier(name, entry.dataset)
    blur = default_blur(name)
    x_all, y_all = load_data(entry.dataset, "train", data_dir=data_dir)
    idx = calibration_slice(len(x_all), n, DEFAULT_SEED)
    x, y = x_all[idx], y_all[idx]
    torch.manual_seed(0)
    x_adv = torchattacks.PGD(clf, eps=8 / 255, alpha=2 / 255, steps=20, random_start=True)(x, y).detach()
    base = ZeroPur(clf, profile="authors", stages="cf", blur=blur)
    x1 = base.purify_stages(x_adv)["coarse"]
    ila_only = ZeroPur(clf, profile="authors", stages="cf", blur=blur, ila_weight=1.0, lpips_weight=0.0)
    lpips_only = ZeroPur(clf, profile="authors", stages="cf", blur=blur, ila_weight=0.0, lpips_weight=1.0)

    def grad_norm(zp: ZeroPur) -> torch.Tensor:
        x2 = x1.clone().requires_grad_(True)
        (g,) = torch.autograd.grad(zp.fine_objective(x2, x_adv, x1, full=True).sum(), x2)
        return g.flatten(1).norm(dim=1)

    g_ila, g_lpips = grad_norm(ila_only), grad_norm(lpips_only)
    cal = registry.calibration_for(weights_sha256(clf), blur, DEFAULT_RULE)
    w_cal = None if cal is None else float(cal["ila_weight"])
    s, _ = feature_scale(base, x_all[calibration_slice(len(x_all), DEFAULT_N, DEFAULT_SEED)])  # calibrate's S
    out = {"model": name, "blur": blur, "n": n, "S": s, "w_calibrated": w_cal,
           "ratio_authors": float((1e-4 * g_ila / g_lpips).median()),
           "ratio_calibrated": None if w_cal is None else float((w_cal * g_ila / g_lpips).median())}
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", nargs="+", default=["resnet20-cifar10-public", "resnet20-cifar10-standard"])
    ap.add_argument("--n", type=int, default=64)
    ap.add_argument("--data-dir", default=None)
    ap.add_argument("--threads", type=int, default=None)
    a = ap.parse_args(argv)
    if a.threads:
        torch.set_num_threads(a.threads)
    rows = [measure(m, a.n, a.data_dir) for m in a.models]
    print("| classifier | blur | n | S | w calibrated | median ratio, w = 1e-4 | median ratio, w calibrated |")
    print("|---|---|---|---|---|---|---|")
    for r in rows:
        wc = "–" if r["w_calibrated"] is None else f"{r['w_calibrated']:.3g}"
        rc = "–" if r["ratio_calibrated"] is None else f"{r['ratio_calibrated']:.3g}"
        print(f"| {r['model']} | {r['blur']} | {r['n']} | {r['S']:,.0f} | {wc} | {r['ratio_authors']:.3g} | {rc} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
