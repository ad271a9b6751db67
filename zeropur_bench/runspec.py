"""What a run is made of, below the CLI: parsing of option text (numbers, ``k=v`` lists, attacks), the defaults
a run falls back on (classifier, blur, profile, number of examples, attacks), the defense variants of a run,
their calibrations, and the end-of-run summary table.

``zeropur_bench.cli`` and the library (``sweep``, benchmarks) share these; nothing here imports Click. Messages
go through an ``echo`` callable (stderr by default), user errors are :class:`~zeropur_bench.errors.UserError`.
"""
from __future__ import annotations

import sys
from typing import TYPE_CHECKING, Any, Callable, Sequence

from .errors import UserError
from .parsing import parse_kv, parse_number, parse_spec, parse_value  # noqa: F401  (parse_kv/_number/_value: API)
from .profile_names import DEFAULT_PROFILE, PROFILE_NAMES  # noqa: F401  (re-exported: the CLI imports them here)

if TYPE_CHECKING:  # the engine imports torch: loaded only when a run is built
    from torch import nn

    from .config import AttackSpec, DefenseSpec

# The paper's blur per training recipe (Sec. 4.1): median 3x3 for 'Vanilla' classifiers, gaussian sigma 1.2 for
# 'Standard' / 'Strong'.
PAPER_BLUR = {"vanilla": "median:3", "standard": "gaussian:1.2", "strong": "gaussian:1.2"}
FALLBACK_BLUR = "median:3"

Echo = Callable[[str], None]


def to_stderr(message: str) -> None:
    """The default ``echo``: one message per line on stderr."""
    print(message, file=sys.stderr)


# -- option text (parsed in zeropur_bench.parsing, the one place for numbers, k=v lists and NAME:k=v specs) -------
def parse_attack(text: str) -> AttackSpec:
    """``NAME`` or ``NAME:key=value,key=value`` (e.g. ``pgd:steps=40``, ``autoattack:version=standard``)."""
    from .config import AttackSpec

    name, params = parse_spec(text, f"--attack {text}")
    return AttackSpec(name=name, params=params)


# -- defaults ---------------------------------------------------------------------------------------------------
def default_model(dataset: str) -> tuple[str, str]:
    """(model, message): the project's shipped ``resnet20-<dataset>-standard`` where it is registered, else
    RobustBench's standard model (``Standard`` on CIFAR-10, ``Standard_R50`` on ImageNet)."""
    from . import registry

    name = f"resnet20-{dataset}-standard"
    if registry.get(name) is not None:
        return name, f"default classifier: shipped '{name}' (ResNet-20, 'Standard' recipe; `zeropur-bench list`)"
    zoo = {"cifar10": "Standard", "imagenet": "Standard_R50"}.get(dataset)
    if zoo is None:
        raise UserError(f"no default {dataset} classifier is shipped yet (see zeropur_bench/weights/README.md); "
                        f"pass --model ARCH --checkpoint PATH (e.g. one trained with `zeropur-bench train`)")
    return zoo, (f"default classifier: RobustBench '{zoo}'; offline it needs models/{dataset}/Linf/{zoo}.pt — or "
                 f"pass e.g. --model resnet20-cifar10-public")


def default_blur(model: str, checkpoint: str | None = None, recipe: str | None = None) -> str:
    """The paper's blur for the classifier's recipe (``--recipe``, else the registry's), else median:3."""
    from . import registry

    if recipe is None and checkpoint is None and registry.get(model) is not None:
        recipe = registry.get(model).recipe
    return PAPER_BLUR.get(str(recipe or "").lower(), FALLBACK_BLUR)


def default_n_ex(model: str) -> int:
    """100 test examples for the built-in CIFAR ResNets (a few minutes on 2 CPU cores), 10 for other models
    (RobustBench's WRN-28-10 is ~40x slower on CPU)."""
    from . import registry
    from .archs import ARCHS

    arch = registry.get(model).arch if registry.get(model) else model
    return 100 if arch in ARCHS and arch.startswith("resnet") and arch != "resnet18" else 10


def default_attacks() -> list[AttackSpec]:
    """PGD-20 and AutoAttack-rand (the paper's Tables 2–5)."""
    from .config import AttackSpec

    return [AttackSpec("pgd"), AttackSpec("autoattack", {"version": "rand"})]


# -- defense variants ------------------------------------------------------------------------------------------
def parse_defense(text: str) -> tuple[str, dict[str, Any]]:
    """``NAME`` or ``NAME:key=value,key=value`` (e.g. ``zeropur:stages=c``, ``my-squeeze:bits=3``)."""
    return parse_spec(text, f"--defense {text}")


def build_variants(defenses: Sequence[str], stages: Sequence[str], profiles: Sequence[str], blurs: Sequence[str],
                   overrides: dict, calibration_file: str | None = None) -> list[DefenseSpec]:
    """The defense variants of a run, in display order (the bare classifier, the blur alone, then the others as
    given). Each ``--defense NAME[:k=v,...]`` expands into its variants by its own rule
    (:meth:`~zeropur_bench.defenses.DefenseEntry.expand`): ZeroPur into one variant per blur, profile and stages
    (``--blur``, ``--profile``, ``--stages``, ``--zp``, ``--calibration``), the blur alone into one per blur, any
    other defense into one variant with its options."""
    from .config import DefenseSpec
    from .defense import registered
    from .defenses import VariantOptions

    run = VariantOptions(stages=tuple(dict.fromkeys(stages)), profiles=tuple(dict.fromkeys(profiles)),
                         blurs=tuple(dict.fromkeys(blurs)), overrides=dict(overrides),
                         calibration_file=calibration_file)
    parsed = [parse_defense(t) for t in dict.fromkeys(defenses)]
    entries = [(registered(name), options) for name, options in parsed]
    out: list[DefenseSpec] = []
    for entry, options in sorted(entries, key=lambda e: e[0].order):  # stable: the given order within a rank
        entry.check_options(options)
        out += [DefenseSpec(entry.name, opts, label) for opts, label in entry.expand(options, run)]
    if calibration_file is not None and not any(v.option("calibration") is not None for v in out):
        raise UserError("--calibration is for --profile calibrated")
    return out


# -- the end-of-run table ---------------------------------------------------------------------------------------
def summary_text(record: dict) -> str:
    """The end-of-run tables: robust accuracy (defended clean ∧ adversarial) per defense variant and attack, with
    final-only beside any-step for adaptive iterative attacks; then the paper's protocol (accuracy on the
    adversarial input alone), clearly apart. Percent with 95% Wilson intervals."""
    import pandas as pd

    from .fmt import pct_ci

    c = record["config"]
    robust_rows, paper_rows = [], []
    blocks = []
    if record.get("bare_classifier") is not None:
        blocks.append(("none (bare classifier)", record["bare_classifier"], "clean_acc"))
    blocks += [(k, v["summary"], "defended_clean_acc") for k, v in record["variants"].items()]
    for name, s, clean_key in blocks:
        row = {"defense": name, "clean": pct_ci(s[clean_key], s["ci95"][clean_key], 1)}
        prow = dict(row)
        for a in s["robust_acc"]:
            row[a] = pct_ci(s["robust_acc"][a], s["ci95"]["robust_acc"][a], 1)
            if a in s.get("robust_final_acc", {}):
                row[a + " (final only)"] = pct_ci(s["robust_final_acc"][a], s["ci95"]["robust_final_acc"][a], 1)
            prow[a] = pct_ci(s["adv_acc"][a], s["ci95"]["adv_acc"][a], 1)
        row["worst case"] = pct_ci(s["worst_case_acc"], s["ci95"]["worst_case_acc"], 1)
        robust_rows.append(row)
        paper_rows.append(prow)
    head = (f"{c['dataset']} {c['threat']} eps={c['eps_str']} {c['setting']} | model {c['model']} | "
            f"n={record['summary']['n']} | accuracy % [95% Wilson CI]")
    any_step = " (adaptive: any step, an image broken at any iterate stays broken)" if c["setting"] == "adaptive" else ""
    if c.get("cascade"):
        any_step += ("; a cascade: each attack after the first ran on the survivors of the ones before it, so its "
                     "column is the worst case so far")
    return (head + f"\n\nRobust accuracy = right on the clean image AND on the attack's input{any_step}:\n"
            + pd.DataFrame(robust_rows).to_markdown(index=False)
            + "\n\nPaper's protocol, for comparison with the paper only: right on the attack's input, clean result "
              "ignored (not a robustness claim):\n" + pd.DataFrame(paper_rows).to_markdown(index=False))
