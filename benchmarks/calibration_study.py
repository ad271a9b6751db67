"""Which calibration rule should `calibrated` use? (issue 20, item 1)

For each classifier: fit the ILA weight on the calibration slice (clean training images, the default slice:
cifar train, n=256, seed 0) with rule ``scale`` and rule ``clean-guard`` (the paper's blur for the classifier's
recipe); then, on a SECOND, disjoint training slice (the last 200 rows of the same seeded permutation), craft
transfer PGD-20 on the bare classifier and purify with ZeroPur-C, C-F under the authors' 1e-4, C-F under each
rule, and the scale-free candidate (ila_norm='feature'). No test image is read.

    python benchmarks/calibration_study.py --out results/calibration [--models NAME ...] [--threads 1]
    python benchmarks/calibration_study.py --out results/calibration --models NAME --calibrate-only
    python benchmarks/calibration_study.py --out results/calibration --summary

Resumable: a classifier's calibration file and selection record are skipped once written; the selection record
resumes per batch (the engine's own resume). ``--calibrate-only`` stops after the calibration file (both rules),
which is all that benchmarks/ship_calibrations.py needs: on a ResNet-18 the selection record costs about 14 times
a ResNet-20's, so it can wait for a later session.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch

MODELS = ["resnet20-cifar10-vanilla", "resnet20-cifar10-standard", "resnet20-cifar10-strong",
          "resnet20-cifar100-vanilla", "resnet20-cifar100-standard", "resnet20-cifar100-strong",
          "resnet20-cifar10-public", "resnet56-cifar10-public"]
SELECTION_N = 200


def selection_slice(n_split: int, seed: int = 0, n: int = SELECTION_N) -> torch.Tensor:
    """The last ``n`` rows of the calibration slice's seeded permutation: disjoint from it."""
    g = torch.Generator().manual_seed(seed)
    return torch.randperm(n_split, generator=g)[-n:].sort().values


def run_one(name: str, out: Path, selection: bool = True) -> None:
    from zeropur_bench import load_classifier, registry
    from zeropur_bench.runspec import default_blur
    from zeropur_bench.data import load_data, slice_sha256
    from zeropur_bench.defense.calibrate import calibrate
    from zeropur_bench.defense.calibration import DEFAULT_N, DEFAULT_SEED, calibration_slice
    from zeropur_bench.config import AttackSpec, DefenseSpec, EvalConfig
    from zeropur_bench.evaluate import Evaluator

    entry = registry.get(name)
    dataset, blur = entry.dataset, default_blur(name)
    clf = load_classifier(name, dataset)
    cal_file = out / f"{name}.json"
    if cal_file.exists():
        cals = json.loads(cal_file.read_text())
    else:
        cals = {}
        for rule in ("scale", "clean-guard"):
            c = calibrate(clf, dataset, blur=blur, rule=rule, echo=lambda m: print(f"[{name}] {m}", flush=True))
            cals[rule] = c.to_dict()
            print(f"[{name}] {rule}: ila_weight {c.ila_weight:.4g} in {c.details['seconds']} s", flush=True)
        cal_file.write_text(json.dumps(cals, indent=1) + "\n")
    if not selection:
        return
    x_all, y_all = load_data(dataset, "train")
    idx = selection_slice(len(x_all))
    assert not set(idx.tolist()) & set(calibration_slice(len(x_all), DEFAULT_N, DEFAULT_SEED).tolist())
    x, y = x_all[idx], y_all[idx]
    del x_all, y_all
    info = {"dataset": dataset, "split": "train", "n": len(x), "source": "npz", "sha256": slice_sha256(x, y),
            "selection_slice": f"last {SELECTION_N} rows of randperm(50000, seed {DEFAULT_SEED}) (disjoint from the "
                               f"calibration slice: its first {DEFAULT_N})"}
    defs = [DefenseSpec(profile="authors", stages="c", blur=blur),
            DefenseSpec(profile="authors", stages="cf", blur=blur, label="zeropur-cf-authors"),
            DefenseSpec(profile="calibrated", stages="cf", blur=blur, label="zeropur-cf-scale",
                        calibration=cals["scale"]),
            DefenseSpec(profile="calibrated", stages="cf", blur=blur, label="zeropur-cf-guard",
                        calibration=cals["clean-guard"]),
            DefenseSpec(profile="authors", stages="cf", blur=blur, label="zeropur-cf-scalefree", overrides={"ila_norm": "feature"})]
    cfg = EvalConfig(model=name, dataset=dataset, split="train", n_ex=len(x), batch_size=100,
                     attacks=[AttackSpec("pgd")], defenses=defs)
    ev = Evaluator(cfg, classifier=clf, data=(x, y), data_info=info)
    ev.run(out=out / f"{name}-selection.json", progress=False)
    print(f"[{name}] selection record written", flush=True)


def summary(out: Path) -> str:
    import pandas as pd

    rows = []
    for name in MODELS:
        f = out / f"{name}-selection.json"
        if not f.exists():
            continue
        rec = json.loads(f.read_text())
        cals = json.loads((out / f"{name}.json").read_text())
        bare = rec["bare_classifier"]
        row = {"classifier": name, "bare clean": f"{100 * bare['clean_acc']:.1f}",
               "w scale": f"{cals['scale']['ila_weight']:.3g}", "w guard": f"{cals['clean-guard']['ila_weight']:.3g}"}
        for k, v in rec["variants"].items():
            s = v["summary"]
            row[k.replace("zeropur-", "")] = (f"{100 * s['adv_acc']['PGD-20']:.1f} / {100 * s['defended_clean_acc']:.1f}"
                                              f" / {100 * s['robust_acc']['PGD-20']:.1f}")
        rows.append(row)
    return ("PGD-20 transfer on the selection slice (200 clean training images, disjoint from the calibration "
            "slice): adversarial (paper protocol) / defended clean / robust (clean ∧ adversarial), %\n"
            + pd.DataFrame(rows).to_markdown(index=False))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default="results/calibration")
    ap.add_argument("--models", nargs="*", default=MODELS)
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--summary", action="store_true")
    ap.add_argument("--calibrate-only", action="store_true",
                    help="write the calibration file (both rules) and skip the selection record")
    a = ap.parse_args(argv)
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    if a.summary:
        print(summary(out))
        return 0
    if a.threads:
        torch.set_num_threads(a.threads)
    for name in a.models:
        run_one(name, out, selection=not a.calibrate_only)
    return 0


if __name__ == "__main__":
    sys.exit(main())
