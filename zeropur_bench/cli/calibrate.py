"""``zeropur-bench calibrate``: fit the fine stage's ILA weight (profile calibrated) for one classifier."""
from __future__ import annotations

import json
import os
from pathlib import Path

import click

from ..errors import UserError, friendly
from ..fsio import refuse_foreign


@click.command("calibrate")
@click.option("--dataset", type=click.Choice(["cifar10", "cifar100"]), default="cifar10", show_default=True)
@click.option("--model", default=None, help="As for `run` (default: the dataset's shipped standard ResNet-20).")
@click.option("--checkpoint", default=None)
@click.option("--model-dir", default=None)
@click.option("--data-dir", default=None)
@click.option("--blur", default=None, help="Blur spec (default: the paper's blur for the classifier's recipe).")
@click.option("--recipe", default=None, help="Training recipe of your classifier (chooses the default blur).")
@click.option("--rule", type=click.Choice(["scale", "clean-guard"]), default=None,
              help="scale: w = 1e-4 · S_ref / S (feature scale); clean-guard: the largest w on a log grid whose "
                   "defended clean accuracy stays within --delta of the bare classifier's. Default: clean-guard.")
@click.option("--n", "n_images", type=int, default=256, show_default=True, help="Clean training images in the slice.")
@click.option("--seed", type=int, default=0, show_default=True, help="Seed of the slice (a seeded permutation).")
@click.option("--delta", type=float, default=5.0, show_default=True,
              help="clean-guard: points of clean accuracy ZeroPur-C-F may lose against the bare classifier.")
@click.option("--device", default="cpu", show_default=True)
@click.option("--out", required=True, help="Calibration file to write (JSON), e.g. calibrations/mine.json.")
@friendly
def calibrate_cmd(dataset: str, model: str | None, checkpoint: str | None, model_dir: str | None,
                  data_dir: str | None, blur: str | None, recipe: str | None, rule: str | None, n_images: int,
                  seed: int, delta: float, device: str, out: str) -> None:
    """Fit the fine stage's ILA weight (profile calibrated) for one classifier and blur, on clean images of a
    fixed slice of the TRAINING split (no test image, no attack). Pass the file to `run --profile calibrated
    --calibration FILE`.

    \b
    Example:
      zeropur-bench calibrate --model resnet20 --checkpoint mine.pt --recipe standard --out calib.json
    """
    from ..defense.calibrate import calibrate
    from ..defense.calibration import DEFAULT_RULE
    from ..device import check_device
    from ..fsio import write_text_atomic
    from ..classifiers import load_classifier
    from ..parsing import check_seed
    from ..runspec import default_blur, default_model

    if model is None:
        model, msg = default_model(dataset)
        click.echo(msg, err=True)
    check_device(device)
    check_seed(seed, "--seed")
    if not 0 <= delta < 100:
        raise UserError(f"--delta is in points of accuracy, in [0, 100), got {delta:g}")
    path = _check_out(out)
    blur = blur or default_blur(model, checkpoint, recipe)
    clf, info = load_classifier(model, dataset, "Linf", checkpoint=checkpoint, model_dir=model_dir, device=device,
                                return_info=True)
    cal = calibrate(clf, dataset, blur=blur, rule=rule or DEFAULT_RULE, n=n_images, seed=seed, delta=delta / 100,
                    data_dir=data_dir, echo=lambda m: click.echo(m, err=True))
    d = cal.to_dict()
    d["details"]["classifier"] = {"model": model, "file_sha256": info.checkpoint_sha256}
    path.parent.mkdir(parents=True, exist_ok=True)
    write_text_atomic(path, json.dumps(d, indent=1) + "\n")
    click.echo(f"{model}: ila_weight {cal.ila_weight:.4g} (rule {cal.rule}, blur {cal.blur or 'any'}, {cal.n} clean "
               f"{dataset} training images, seed {cal.seed}; authors' profile: 1e-4) in {cal.details['seconds']:.0f} s")
    click.echo(f"calibration written to {path}")


def _check_out(out: str) -> Path:
    """``--out`` as a path to write: not a folder, and not a file other than a calibration (never overwritten)."""
    path = Path(out)
    if path.is_dir() or out.endswith(("/", os.sep)):
        raise UserError(f"--out '{out}' is a folder; give a file name such as {out.rstrip('/')}/calibration.json")
    refuse_foreign(path, lambda d: d.get("format", "").startswith("zeropur-bench/calibration/"), "a calibration file")
    return path
