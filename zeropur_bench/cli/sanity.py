"""``zeropur-bench sanity``: the evaluation sanity checks (:mod:`zeropur_bench.sanity`) on one defense variant
(ZeroPur by default, or any registered defense with ``--defense``)."""
from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from ..errors import friendly
from ..runspec import DEFAULT_PROFILE, PROFILE_NAMES
from .options import Resolved, RunOptions, build_configs, run_options

if TYPE_CHECKING:
    from ..config import EvalConfig

TAKEN = ("dataset", "model", "checkpoint", "model_dir", "data_dir", "plugins", "defenses", "stages", "profiles",
         "calibration_file", "blur", "zp_overrides", "attacks", "n_ex", "batch_size", "seed", "device", "estimator",
         "estimator_n", "out")
# One variant is checked: --stages, --profile and --blur are given once; --attack is the sanity checks' attack.
CHANGES: dict[str, dict[str, Any]] = {
    "defenses": dict(multiple=False, default="zeropur", show_default=True,
                     help="The defense checked: zeropur (one variant: --stages, --profile, --blur) or any registered "
                          "defense, NAME[:k=v,...] (issue 34's purifiers, a plugin's)."),
    "stages": dict(multiple=False, type=click.Choice(["c", "cf"]), default="c", show_default=True,
                   help="Coarse only (c) or coarse + fine (cf)."),
    "profiles": dict(multiple=False, type=click.Choice(PROFILE_NAMES), default=DEFAULT_PROFILE, show_default=True,
                     help="authors, paper or calibrated (as for `run`)."),
    "blur": dict(multiple=False, default=None, help="Default: the paper's blur for the classifier's recipe."),
    "zp_overrides": dict(help="ZeroPur overrides, e.g. 'coarse_steps=5'."),
    "attacks": dict(multiple=False, default=None,
                    help="The adaptive gradient attack of the eps sweep and the convergence check [default: "
                         "bpda-eot:steps=10; pgd-eot:steps=10 for a defense that offers no BPDA]."),
    "n_ex": dict(default=100, show_default=True, help=None),
    "out": dict(help="Report path (default: results/sanity/<dataset>-<model>-<stages>.json)."),
}


@click.command("sanity")
@run_options(only=TAKEN, changes=CHANGES)
@click.option("--extra-attack", "extra", multiple=True, help="More adaptive gradient attacks, e.g. defense-aware.")
@click.option("--square-queries", type=int, default=100, show_default=True)
@friendly
def sanity_cmd(attacks: str, extra: tuple[str, ...], square_queries: int, out: str | None, **options: Any) -> None:
    """Evaluation sanity checks (Carlini et al. 2019) against the defended model: an eps sweep that must reach
    ~0%, doubled attack steps within the CI, a gradient-free attack (Square) vs the gradient attacks (masking
    flag), and adaptive ≤ transfer. Writes a JSON report and prints the verdicts.

    \b
    Example:
      zeropur-bench sanity --model resnet20 --checkpoint ../shared/weights/cifar10/resnet20.th --n-ex 100
    """
    from ..runspec import parse_attack
    from ..sanity import run_sanity, sanity_report_text

    opts = RunOptions.take(options)
    (config,) = build_configs(opts, _sanity_layout)
    (variant,) = config.defenses
    tag = opts.stages[0] if variant.name == "zeropur" else variant.key
    out = out or f"results/sanity/{config.dataset}-{Path(config.model).name}-{tag}.json"
    report = run_sanity(config, data_dir=opts.data_dir, attack=parse_attack(attacks) if attacks else None,
                        extra_attacks=[parse_attack(a) for a in extra], square_queries=square_queries, out=out,
                        progress=True)
    click.echo(sanity_report_text(report))
    click.echo(f"report written to {out}")


def _sanity_layout(r: Resolved) -> list[EvalConfig]:
    """One configuration with the one variant checked (ZeroPur's, or the one ``--defense`` names). Its
    ``attacks`` stay the engine's default: the checks choose their own attacks, and the report's ``config`` is as
    it always was."""
    from ..config import DefenseSpec, EvalConfig
    from ..defense.calibration import load_calibration
    from ..errors import UserError
    from ..runspec import build_variants, parse_defense

    base = {k: v for k, v in r.base.items() if k != "attacks"}
    if any(parse_defense(d)[0] != "zeropur" for d in r.defenses):
        variants = build_variants(r.defenses, r.stages, r.profiles, r.blurs, r.overrides)
        if len(variants) != 1:
            raise UserError(f"sanity checks one defense variant; --defense {' '.join(r.defenses)} makes "
                            f"{len(variants)}: give one --defense with one --blur")
        return [EvalConfig(**base, defenses=variants)]
    calibration = load_calibration(r.calibration_file).to_dict() if r.calibration_file else None
    defense = DefenseSpec(profile=r.profiles[0], stages=r.stages[0], blur=r.blurs[0], overrides=r.overrides,
                          calibration=calibration)
    return [EvalConfig(**base, defenses=[defense])]
