"""``zeropur-bench plot KIND``: a figure and its sidecar CSV from records (:mod:`zeropur_bench.reports.figures`).

The command only checks which options apply to which kind and hands over to the figures API."""
from __future__ import annotations

from typing import Any

import click

from ..errors import UserError, friendly
from ..reports.figures import (KINDS, check_out, load_sources, plot_attack_curve, plot_cosine, plot_eps, plot_grid,
                               plot_images, plot_steps)


def _int_list(text: str | None, what: str) -> list[int] | None:
    if not text:
        return None
    try:
        vals = [int(t) for t in text.replace(" ", "").split(",") if t]
    except ValueError:
        raise UserError(f"{what} must be comma-separated integers, e.g. 3,17; got '{text}'") from None
    if not vals or any(v < 0 for v in vals):
        raise UserError(f"{what} must be comma-separated integers >= 0, got '{text}'")
    return vals


def _check_applicable(kind: str, recompute_only: dict[str, Any], sweep_only: bool, no_bare: bool) -> None:
    """Refuse options that do not apply to ``kind`` (one line naming the first)."""
    if kind not in ("cosine", "images"):
        used = [k for k, val in recompute_only.items() if val is not None]
        if used:
            raise UserError(f"--{used[0]} applies to cosine and images only, not to {kind}")
    if kind not in ("steps", "grid") and sweep_only:
        raise UserError(f"--stages/--param/--param2/--no-clean apply to steps and grid only, not to {kind}")
    if kind != "eps" and no_bare:
        raise UserError("--no-bare applies to eps only")


def _recompute(kind: str, files: list[str], attacks: list[str] | None, variants: list[str] | None, n: int | None,
               index: str | None, pick: str | None, **common: Any) -> dict:
    """cosine / images: one attack and one defense variant, recomputed on the examples shown."""
    if (attacks and len(attacks) > 1) or (variants and len(variants) > 1):
        raise UserError(f"{kind} recomputes one attack and one defense variant: give at most one --attack and "
                        "one --variant")
    idx = _int_list(index, "--index")
    srcs = load_sources(files, what=f"a {kind} plot")
    common.update(attack=attacks[0] if attacks else None, variant=variants[0] if variants else None)
    if kind == "cosine":
        if pick:
            raise UserError("--pick applies to images; cosine takes the first --n examples or --index")
        return plot_cosine(srcs, common.pop("out"), n=n or 8, indices=idx, **common)
    if len(srcs) > 1:
        raise UserError(f"images draws examples of one record; got {len(srcs)} "
                        f"({', '.join(s.name for s in srcs[:3])}{' ...' if len(srcs) > 3 else ''})")
    return plot_images(srcs[0], common.pop("out"), indices=idx, pick=pick, n=n or 4, **common)


@click.command("plot")
@click.argument("kind", type=click.Choice(KINDS))
@click.argument("paths", nargs=-1)
@click.option("--results", "results", multiple=True, help="Record / sanity report files, or folders of them "
              "(their *.json). Repeatable; paths may also follow KIND.")
@click.option("--out", required=True, help="Figure file: .png, .svg or .pdf; the numbers plotted go to the same "
              "path with .csv.")
@click.option("--attack", "attacks", multiple=True, help="Attack column(s) to draw, as in the record (e.g. "
              "'pgd'). Default: all (cosine/images: the record's first).")
@click.option("--variant", "variants", multiple=True, help="Defense variant(s) to draw, e.g. zeropur-cf. Default: "
              "all (cosine/images: the record's primary variant).")
@click.option("--stages", type=click.Choice(["c", "cf"]), default=None,
              help="steps/grid: only the variants with these stages.")
@click.option("--param", default=None, help="steps/grid: the swept parameter (default: the one that varies).")
@click.option("--param2", default=None, help="grid: the second parameter (default: coarse_steps × fine_steps).")
@click.option("--no-clean", is_flag=True, help="steps/grid: leave out the defended clean accuracy.")
@click.option("--no-bare", is_flag=True, help="eps: leave out the bare classifier.")
@click.option("--n", "n", type=int, default=None, help="cosine: examples averaged (default 8); images: rows "
              "(default 4).")
@click.option("--index", default=None, help="cosine/images: dataset indices of the examples, e.g. 3,17.")
@click.option("--pick", type=click.Choice(["failures", "successes"]), default=None,
              help="images: the first --n examples that are not robust (failures) or robust (successes) in the "
                   "record.")
@click.option("--data-dir", default=None, help="cosine/images: data folder (default: $ZEROPUR_BENCH_DATA, else "
              "./data).")
@click.option("--checkpoint", default=None, help="cosine/images: the classifier's checkpoint when the record's "
              "path does not resolve here (its sha256 must match the record's).")
@click.option("--device", default=None, help="cosine/images: device for the recomputation (default: the "
              "record's).")
@friendly
def plot_cmd(kind: str, paths: tuple[str, ...], results: tuple[str, ...], out: str, attacks: tuple[str, ...],
             variants: tuple[str, ...], stages: str | None, param: str | None, param2: str | None, no_clean: bool,
             no_bare: bool, n: int | None, index: str | None, pick: str | None, data_dir: str | None,
             checkpoint: str | None, device: str | None) -> None:
    """Draw a figure from records, with a sidecar CSV of exactly the numbers plotted.

    \b
    KIND: steps (robust accuracy vs purification steps, Fig. 5), grid (coarse × fine heat map, Fig. 6),
    attack-curve (any-step vs final-only over attack iterations), eps (robust accuracy vs eps), cosine
    (embedding similarity over coarse shifting, Fig. 3), images (clean / adversarial / coarse / purified).
    Only cosine and images recompute, and only the examples they show (checked against the record).

    \b
    Examples:
      zeropur-bench sweep --model resnet20-cifar10-public --n-ex 32 --attack pgd \\
          --param fine_steps --values 0,10,25,50 --out-dir results/sweeps/
      zeropur-bench plot steps --results results/sweeps/ --out results/figures/steps.png
      zeropur-bench plot attack-curve --results results/adaptive.json --out curve.png
      zeropur-bench plot eps --results results/sanity/cifar10-resnet20-c.json --out eps.png
      zeropur-bench plot images --results results/run.json --pick failures --n 4 --out fails.png
    """
    from ..device import check_device

    check_out(out)
    files = list(results) + list(paths)
    a, v = list(attacks) or None, list(variants) or None
    if device:
        check_device(device)
    _check_applicable(kind, {"index": index, "pick": pick, "data-dir": data_dir, "checkpoint": checkpoint,
                             "device": device, "n": n}, bool(stages or param or param2 or no_clean), no_bare)
    if kind == "steps":
        if param2:
            raise UserError("--param2 is for grid; a steps plot sweeps one parameter")
        res = plot_steps(load_sources(files, what="a steps plot"), out, param=param, attacks=a, stages=stages,
                         variants=v, clean=not no_clean)
    elif kind == "grid":
        res = plot_grid(load_sources(files, what="a grid plot"), out, param=param, param2=param2, attacks=a,
                        stages=stages, variants=v, clean=not no_clean)
    elif kind == "attack-curve":
        res = plot_attack_curve(load_sources(files, what="an attack-curve plot"), out, attacks=a, variants=v)
    elif kind == "eps":
        res = plot_eps(load_sources(files, ("record", "sanity"), what="an eps plot"), out, attacks=a, variants=v,
                       bare=not no_bare)
    else:
        res = _recompute(kind, files, a, v, n, index, pick, out=out, data_dir=data_dir, checkpoint=checkpoint,
                         device=device)
    click.echo(f"figure written to {res['figure']} (numbers: {res['csv']})")
