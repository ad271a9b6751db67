"""``zeropur-bench``: a thin Click layer over the Python API (data → classifier → defense → attack → record →
table). Every user error ends in one line on stderr and exit status 2."""
from __future__ import annotations

import os
import sys
from fractions import Fraction
from pathlib import Path
from typing import Any

import click

from .errors import UserError, _one_line, friendly as _friendly

DATASET_CHOICES = ("cifar10", "cifar100", "imagenet")
PROFILE_NAMES = ("authors", "paper", "calibrated")
DEFAULT_PROFILE = "calibrated"  # issue 20: the measurements behind this choice are in README "The calibrated profile"
# The paper's blur per training recipe (Sec. 4.1): median 3x3 for 'Vanilla' classifiers, gaussian sigma 1.2 for
# 'Standard' / 'Strong'.
PAPER_BLUR = {"vanilla": "median:3", "standard": "gaussian:1.2", "strong": "gaussian:1.2"}
FALLBACK_BLUR = "median:3"


class _Group(click.Group):
    """Click's usage errors (a bad --dataset, a missing option) as one line too, with where to look."""

    def main(self, args: Any = None, prog_name: str | None = None, complete_var: str | None = None,
             standalone_mode: bool = True, **extra: Any) -> Any:
        try:
            rv = super().main(args, prog_name, complete_var, standalone_mode=False, **extra)
        except click.exceptions.Exit as e:
            sys.exit(e.exit_code)
        except click.ClickException as e:
            ctx = getattr(e, "ctx", None)
            where = f" (see `{ctx.command_path} --help`)" if ctx is not None else ""
            click.echo(f"error: {_one_line(e.format_message())}{where}", err=True)
            sys.exit(2)
        except click.exceptions.Abort:
            click.echo("aborted", err=True)
            sys.exit(1)
        if standalone_mode:
            sys.exit(rv if isinstance(rv, int) else 0)
        return rv


def parse_number(text: str, what: str = "value") -> float:
    """'8/255', '0.031', '0.5' → float."""
    try:
        return float(Fraction(text.strip()))
    except (ValueError, ZeroDivisionError):
        raise UserError(f"{what} must be a number or a fraction like 8/255, got '{text}'") from None


def parse_value(text: str) -> Any:
    low = text.strip().lower()
    if low in ("true", "false"):
        return low == "true"
    if low in ("none", "null"):
        return None
    try:
        return int(text)
    except ValueError:
        pass
    if "/" in text or any(ch.isdigit() for ch in text):
        try:
            return float(Fraction(text))
        except (ValueError, ZeroDivisionError):
            pass
    if "|" in text:  # a list, e.g. lambdas=0.1|1|10
        return [parse_value(t) for t in text.split("|")]
    return text


def parse_kv(items: str, what: str) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for item in filter(None, (s.strip() for s in items.split(","))):
        if "=" not in item:
            raise UserError(f"{what}: expected KEY=VALUE, got '{item}'")
        k, v = item.split("=", 1)
        out[k.strip().replace("-", "_")] = parse_value(v)
    return out


def parse_attack(text: str):
    """``NAME`` or ``NAME:key=value,key=value`` (e.g. ``pgd:steps=40``, ``autoattack:version=standard``)."""
    from .evaluate import AttackSpec

    name, _, rest = text.partition(":")
    return AttackSpec(name=name.strip(), params=parse_kv(rest, f"--attack {text}"))


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


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 110})
@click.version_option(package_name="zeropur-bench")
def main() -> None:
    """ZeroPur purification benchmarks for RobustBench / AutoAttack.

    \b
    Example:
      zeropur-bench run --dataset cifar10 --threat linf --model resnet20-cifar10-public --n-ex 200
      zeropur-bench table --out results/table2.md
    """


@main.command("run")
@click.option("--dataset", type=click.Choice(DATASET_CHOICES), default="cifar10", show_default=True)
@click.option("--threat", type=click.Choice(["linf", "l2"], case_sensitive=False), default="linf", show_default=True,
              help="Threat model of the ATTACK. Purification stays L∞ with its own budget (eps_c, eps_f) whatever "
                   "the threat model, as in the paper.")
@click.option("--model", default=None, help="Shipped classifier (e.g. resnet20-cifar10-standard), built-in "
              "architecture (with --checkpoint) or RobustBench zoo name (see `list`). Default: the shipped "
              "resnet20-<dataset>-standard where it exists, else RobustBench 'Standard'.")
@click.option("--checkpoint", default=None, help="Local checkpoint for a built-in architecture.")
@click.option("--model-dir", default=None, help="Folder of RobustBench checkpoints (<dir>/<dataset>/<threat>/<name>.pt).")
@click.option("--data-dir", default=None, help="Data folder (default: $ZEROPUR_BENCH_DATA, else ./data).")
@click.option("--defense", "defenses", multiple=True, type=click.Choice(["zeropur", "blur", "none"]),
              help="zeropur (default), blur (the blur alone, g(x): the paper's Table 1 baseline) or none. "
                   "Repeatable: --defense zeropur --defense blur.")
@click.option("--stages", multiple=True, type=click.Choice(["c", "cf"]),
              help="Coarse only (c) and/or coarse + fine (cf); repeat for several variants on ONE adversarial "
                   "set. Default: both.")
@click.option("--profile", "profiles", multiple=True, type=click.Choice(PROFILE_NAMES),
              help="authors (the authors' code), paper (the paper's text) or calibrated (the authors' settings "
                   "with the ILA weight fitted to this classifier on clean training images). Repeatable: one "
                   f"adversarial set serves every profile. Default: {DEFAULT_PROFILE}.")
@click.option("--calibration", "calibration_file", default=None,
              help="Calibration file (zeropur-bench calibrate) for --profile calibrated. Default: the shipped "
                   "calibration of a shipped classifier, else one computed now on clean training images.")
@click.option("--blur", multiple=True, help="Blur spec: median:3, gaussian:1.2, tv:0.1 ... Repeatable. Default: "
              "the paper's blur for the classifier's training recipe (median:3 for vanilla, gaussian:1.2 for "
              "standard/strong), median:3 when the recipe is unknown.")
@click.option("--zp", "zp_overrides", default="", help="ZeroPur overrides, e.g. 'coarse_steps=5,fine_steps=20'.")
@click.option("--attack", "attacks", multiple=True,
              help="Registered attack, optionally with parameters: NAME[:k=v,...], e.g. pgd:steps=40 or "
                   "autoattack:version=standard. Repeatable. Default: pgd (PGD-20) and autoattack:version=rand (AutoAttack-rand).")
@click.option("--setting", type=click.Choice(["transfer", "adaptive"]), default="transfer", show_default=True,
              help="transfer: crafted on the bare classifier then purified (Tables 2–5); adaptive: crafted "
                   "against the defended model (Table 6).")
@click.option("--eps", default=None, help="Attack budget, e.g. 8/255. Default: Linf 8/255 (CIFAR), 4/255 "
              "(ImageNet); L2 0.5.")
@click.option("--n-ex", type=int, default=None, help="Number of test examples (the first n). Default: 100 for "
              "the built-in CIFAR ResNets (a few minutes on 2 CPU cores), 10 for RobustBench zoo models "
              "(WRN-28-10 is ~40x slower on CPU).")
@click.option("--batch-size", type=int, default=100, show_default=True)
@click.option("--device", default="cpu", show_default=True)
@click.option("--dtype", type=click.Choice(["fp32", "bf16"]), default="fp32", show_default=True,
              help="bf16 = autocast; validate against fp32 before reporting bf16 numbers.")
@click.option("--channels-last", is_flag=True, help="channels_last memory format (faster convolutions on CPU).")
@click.option("--seed", type=int, default=0, show_default=True, help="Attack and defense seed.")
@click.option("--data-seed", type=int, default=None, help="Take a seeded random subset instead of the first n.")
@click.option("--estimator", type=click.Choice(["one-shot", "logit-avg", "majority"]), default="one-shot",
              show_default=True, help="How a stochastic defense is judged (collapses to one call if deterministic).")
@click.option("--estimator-n", type=int, default=1, show_default=True)
@click.option("--recipe", default=None, help="How your classifier was trained (vanilla/standard/strong/...), for "
              "tables; shipped and registered classifiers bring their own.")
@click.option("--out", default=None, help="Record path, or a folder (existing, or ending in /) for the default name "
              "<dataset>-<threat>-<model>-<setting>-<hash>.json (default folder: results/).")
@click.option("--shard", default=None, help="K/N: compute only batches b with b %% N == K into the shared "
              "<record>.partial/ (one job of an array); assemble with --merge-only once all N are done.")
@click.option("--merge-only", is_flag=True, help="Compute nothing: assemble the record from <record>.partial/ when "
              "every batch exists, else list the missing ones and exit 2.")
@click.option("--no-progress", is_flag=True)
@_friendly
def run_cmd(dataset: str, threat: str, model: str | None, checkpoint: str | None, model_dir: str | None,
            data_dir: str | None, defenses: tuple[str, ...], stages: tuple[str, ...], profiles: tuple[str, ...],
            calibration_file: str | None, blur: tuple[str, ...],
            zp_overrides: str, attacks: tuple[str, ...], setting: str, eps: str | None, n_ex: int | None,
            batch_size: int, device: str, dtype: str, channels_last: bool, seed: int, data_seed: int | None,
            estimator: str, estimator_n: int, recipe: str | None, out: str | None, shard: str | None,
            merge_only: bool, no_progress: bool) -> None:
    """Evaluate a (defended) classifier under attack and write a record under results/.

    \b
    Examples:
      zeropur-bench run --dataset cifar10 --threat linf --model resnet20-cifar10-public --n-ex 200
      zeropur-bench run --model resnet20 --checkpoint ../shared/weights/cifar10/resnet20.th \\
          --setting adaptive --attack bpda-eot:steps=10 --stages c --n-ex 50
      torchrun --nproc_per_node=4 -m zeropur_bench run --model resnet20-cifar10-public --n-ex 1000
    """
    from .archs import ARCHS
    from .evaluate import AttackSpec, EvalConfig, Evaluator

    from . import distributed, registry

    device = distributed.resolve_device(device)  # under torchrun: cuda -> cuda:LOCAL_RANK
    if model is None:
        model, msg = default_model(dataset)
        if not (distributed.launched_by_torchrun() and os.environ.get("RANK") != "0"):
            click.echo(msg, err=True)
    if n_ex is None:
        arch = registry.get(model).arch if registry.get(model) else model
        n_ex = 100 if arch in ARCHS and arch.startswith("resnet") and arch != "resnet18" else 10
    attack_specs = [parse_attack(a) for a in attacks] or [
        AttackSpec("pgd"), AttackSpec("autoattack", {"version": "rand"})]
    overrides = parse_kv(zp_overrides, "--zp")
    profile_list = list(dict.fromkeys(profiles)) or [DEFAULT_PROFILE]
    defense_list = list(dict.fromkeys(defenses)) or ["zeropur"]
    blurs = list(dict.fromkeys(blur)) or [default_blur(model, checkpoint, recipe)]
    variants = build_variants(defense_list, stages, profile_list, blurs, overrides)
    config = EvalConfig(model=model, dataset=dataset, threat=threat, setting=setting,
                        eps=parse_number(eps, "--eps") if eps is not None else None,
                        attacks=attack_specs, defenses=variants, checkpoint=checkpoint, model_dir=model_dir,
                        n_ex=n_ex, data_seed=data_seed, seed=seed, estimator=estimator, estimator_n=estimator_n,
                        batch_size=batch_size, device=device, dtype=dtype, channels_last=channels_last,
                        recipe=recipe)
    # after every other option is validated (EvalConfig above): a calibration on the fly takes minutes
    loaded = attach_calibrations(variants, model, dataset, threat, checkpoint, model_dir, device, calibration_file,
                                 data_dir)
    shard_kn = distributed.parse_shard(shard)
    if distributed.launched_by_torchrun() and (shard_kn or merge_only):
        raise UserError("--shard and --merge-only are for independent jobs; under torchrun the ranks share the "
                        "batches themselves")
    if shard_kn and merge_only:
        raise UserError("give either --shard K/N (compute a share) or --merge-only (assemble), not both")
    ctx = distributed.init(config.device)
    try:
        ev = Evaluator(config, data_dir=data_dir, **({"classifier": loaded[0], "model_info": loaded[1].to_dict()}
                                                    if loaded is not None else {}))
        if ctx.active:
            record = ev.run(out=out, progress=not no_progress and ctx.is_main, shard=(ctx.rank, ctx.world_size),
                            barrier=distributed.barrier(ctx), assemble=ctx.is_main,
                            worker=f"rank {ctx.rank}/{ctx.world_size}")
        else:
            record = ev.run(out=out, progress=not no_progress, shard=shard_kn, merge_only=merge_only,
                            assemble=shard_kn is None)
    finally:
        distributed.finish(ctx)
    if "status" in record:  # a share of the batches, not the record
        if not ctx.active:
            click.echo(f"{shard}: computed {record['computed']} and found {record['resumed']} finished batches in "
                       f"{record['partial']}; once every shard is done, assemble with the same command and "
                       f"--merge-only instead of --shard")
        return
    click.echo(summary_text(record))
    resumed = f" (resumed {ev.batches_resumed} finished batches)" if ev.batches_resumed else ""
    workers = f" by {ctx.world_size} ranks" if ctx.active else ""
    click.echo(f"record written to {record['_path']}{workers}{resumed}")


def default_blur(model: str, checkpoint: str | None = None, recipe: str | None = None) -> str:
    """The paper's blur for the classifier's recipe (``--recipe``, else the registry's), else median:3."""
    from . import registry

    if recipe is None and checkpoint is None and registry.get(model) is not None:
        recipe = registry.get(model).recipe
    return PAPER_BLUR.get(str(recipe or "").lower(), FALLBACK_BLUR)


def load_for_calibration(model: str, dataset: str, threat: str, checkpoint: str | None, model_dir: str | None,
                         device: str):
    """(classifier, info), loaded once for the calibration lookup and handed to the engine."""
    from .classifiers import load_classifier
    from .evaluate import check_device

    check_device(device)
    return load_classifier(model, dataset, threat, checkpoint=checkpoint, model_dir=model_dir, device=device,
                           return_info=True)


def attach_calibrations(variants: list, model: str, dataset: str, threat: str, checkpoint: str | None,
                        model_dir: str | None, device: str, calibration_file: str | None,
                        data_dir: str | None) -> tuple[Any, Any] | None:
    """Give every ``calibrated`` ZeroPur variant its calibration (``DefenseSpec.calibration``): None where the
    classifier's shipped one exists, the named file's, or one computed now on clean training images (said on
    stderr); never a silent fall back to the authors' 1e-4. Returns the (classifier, info) it loaded, or None
    when no variant is calibrated (then ``--calibration`` is refused)."""
    from . import registry
    from .defense.blur import make_blur
    from .defense.calibrate import calibrate
    from .defense.calibration import DEFAULT_RULE, load_calibration, weights_sha256

    targets = [v for v in variants if v.name == "zeropur" and v.profile == "calibrated"]
    if not targets:
        if calibration_file is not None:
            raise UserError("--calibration is for --profile calibrated")
        return None
    loaded = load_for_calibration(model, dataset, threat, checkpoint, model_dir, device)
    given = load_calibration(calibration_file).to_dict() if calibration_file is not None else None
    sha = weights_sha256(loaded[0])
    fitted: dict[str, dict | None] = {}
    for v in targets:
        spec = make_blur(v.blur).spec
        if spec not in fitted:
            if given is not None or registry.calibration_for(sha, spec, DEFAULT_RULE) is not None:
                fitted[spec] = given
            else:
                click.echo(f"profile calibrated: this classifier has no shipped calibration for blur {spec}; "
                           f"calibrating now (rule {DEFAULT_RULE}, clean {dataset} training images; save one with "
                           "`zeropur-bench calibrate` and pass --calibration to skip this)", err=True)
                fitted[spec] = calibrate(loaded[0], dataset, blur=v.blur, data_dir=data_dir,
                                         echo=lambda m: click.echo(m, err=True)).to_dict()
        v.calibration = fitted[spec]
    return loaded


def build_variants(defenses: list[str], stages: tuple[str, ...] | list[str], profiles: list[str], blurs: list[str],
                   overrides: dict) -> list:
    """The defense variants of a run, in display order: the blur alone, then per blur and profile C and C-F
    (calibrations are attached by :func:`attach_calibrations`). C under 'calibrated' is C under 'authors' (the
    calibration only changes the fine stage), so with both profiles it is made once, as the authors'."""
    from .defense.blur import make_blur
    from .evaluate import DefenseSpec

    for b in blurs:  # validate blur specs before any work
        make_blur(b)
    stage_list = list(dict.fromkeys(stages)) or ["c", "cf"]
    many_b, many_p = len(blurs) > 1, len(profiles) > 1
    out = []
    if "none" in defenses:
        out.append(DefenseSpec(name="none"))
    if "blur" in defenses:
        out += [DefenseSpec(name="blur", blur=b, label="blur" + (f"-{b}" if many_b else "")) for b in blurs]
    if "zeropur" in defenses:
        for b in blurs:
            for p in profiles:
                for st in stage_list:
                    if st == "c" and p == "calibrated" and "authors" in profiles:
                        continue
                    label = f"zeropur-{st}" + (f"-{p}" if many_p else "") + (f"-{b}" if many_b else "")
                    out.append(DefenseSpec(profile=p, stages=st, blur=b, overrides=overrides, label=label))
    return out


def summary_text(record: dict) -> str:
    """The end-of-run tables: robust accuracy (defended clean ∧ adversarial) per defense variant and attack, with
    final-only beside any-step for adaptive iterative attacks; then the paper's protocol (accuracy on the
    adversarial input alone), clearly apart. Percent with 95% Wilson intervals."""
    import pandas as pd

    c = record["config"]
    pct = lambda a, ci: f"{100 * a:.1f} [{100 * ci[0]:.1f}, {100 * ci[1]:.1f}]"  # noqa: E731
    robust_rows, paper_rows = [], []
    blocks = []
    if record.get("bare_classifier") is not None:
        blocks.append(("none (bare classifier)", record["bare_classifier"], "clean_acc"))
    blocks += [(k, v["summary"], "defended_clean_acc") for k, v in record["variants"].items()]
    for name, s, clean_key in blocks:
        row = {"defense": name, "clean": pct(s[clean_key], s["ci95"][clean_key])}
        prow = dict(row)
        for a in s["robust_acc"]:
            row[a] = pct(s["robust_acc"][a], s["ci95"]["robust_acc"][a])
            if a in s.get("robust_final_acc", {}):
                row[a + " (final only)"] = pct(s["robust_final_acc"][a], s["ci95"]["robust_final_acc"][a])
            prow[a] = pct(s["adv_acc"][a], s["ci95"]["adv_acc"][a])
        row["worst case"] = pct(s["worst_case_acc"], s["ci95"]["worst_case_acc"])
        robust_rows.append(row)
        paper_rows.append(prow)
    head = (f"{c['dataset']} {c['threat']} eps={c['eps_str']} {c['setting']} | model {c['model']} | "
            f"n={record['summary']['n']} | accuracy % [95% Wilson CI]")
    any_step = " (adaptive: any step, an image broken at any iterate stays broken)" if c["setting"] == "adaptive" else ""
    return (head + f"\n\nRobust accuracy = right on the clean image AND on the attack's input{any_step}:\n"
            + pd.DataFrame(robust_rows).to_markdown(index=False)
            + "\n\nPaper's protocol, for comparison with the paper only: right on the attack's input, clean result "
              "ignored (not a robustness claim):\n" + pd.DataFrame(paper_rows).to_markdown(index=False))


@main.command("table")
@click.option("--out", required=True, help="Output file, e.g. results/table2.md (the table number is taken from "
              "the name unless --table is given; .csv / .tex choose the format), or a folder (with --table).")
@click.option("--table", "table_no", type=int, default=None, help="Paper table number: 2, 3, 4, 5 or 6.")
@click.option("--results", "results_dir", default="results", show_default=True, help="Folder of run records.")
@click.option("--format", "fmt", type=click.Choice(["markdown", "csv", "latex"]), default=None,
              help="Default: from the file suffix (.md markdown, .csv, .tex latex).")
@_friendly
def table_cmd(out: str, table_no: int | None, results_dir: str, fmt: str | None) -> None:
    """Render one of the paper's Tables 2–6 from the records found plus the reference rows in leaderboards/.

    \b
    Example:
      zeropur-bench table --out results/table2.md
      zeropur-bench table --out results/t4.csv --table 4
    """
    from .evaluate import resolve_out
    from .records import write_text_atomic
    from .tables import infer_format, infer_table_number, load_records, render_table

    folder = out.endswith(("/", os.sep)) or Path(out).is_dir()
    if folder and table_no is None:
        raise UserError(f"--out '{out}' is a folder: give --table N (2..6) to name the file, or give a file name "
                        "such as results/table2.md")
    number = table_no if table_no is not None else infer_table_number(out)
    if number not in (2, 3, 4, 5, 6):
        raise UserError(f"table {number} is not one of the paper's result tables 2, 3, 4, 5, 6")
    ext = {"csv": ".csv", "latex": ".tex"}.get(fmt or "markdown", ".md")
    path = resolve_out(out, f"table{number}{ext}")
    out = str(path)
    fmt = fmt or infer_format(out)
    text = render_table(number, load_records(results_dir), fmt=fmt)
    write_text_atomic(out, text)
    click.echo(text)
    click.echo(f"table {number} written to {out}", err=True)


@main.command("calibrate")
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
@_friendly
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
    import json

    from .defense.calibrate import calibrate
    from .defense.calibration import DEFAULT_RULE
    from .evaluate import check_device
    from .records import write_text_atomic

    if model is None:
        model, msg = default_model(dataset)
        click.echo(msg, err=True)
    check_device(device)
    if not 0 <= delta < 100:
        raise UserError(f"--delta is in points of accuracy, in [0, 100), got {delta:g}")
    path = Path(out)
    if path.is_dir() or out.endswith(("/", os.sep)):
        raise UserError(f"--out '{out}' is a folder; give a file name such as {out.rstrip('/')}/calibration.json")
    if path.exists():
        try:
            ok = json.loads(path.read_text()).get("format", "").startswith("zeropur-bench/calibration/")
        except (OSError, UnicodeDecodeError, ValueError, AttributeError):
            ok = False
        if not ok:
            raise UserError(f"--out '{out}' exists and is not a calibration file; refusing to overwrite it")
    blur = blur or default_blur(model, checkpoint, recipe)
    clf, info = load_for_calibration(model, dataset, "linf", checkpoint, model_dir, device)
    cal = calibrate(clf, dataset, blur=blur, rule=rule or DEFAULT_RULE, n=n_images, seed=seed, delta=delta / 100,
                    data_dir=data_dir, echo=lambda m: click.echo(m, err=True))
    d = cal.to_dict()
    d["details"]["classifier"] = {"model": model, "file_sha256": info.checkpoint_sha256}
    path.parent.mkdir(parents=True, exist_ok=True)
    write_text_atomic(path, json.dumps(d, indent=1) + "\n")
    click.echo(f"{model}: ila_weight {cal.ila_weight:.4g} (rule {cal.rule}, blur {cal.blur or 'any'}, {cal.n} clean "
               f"{dataset} training images, seed {cal.seed}; authors' profile: 1e-4) in {cal.details['seconds']:.0f} s")
    click.echo(f"calibration written to {path}")


@main.command("list")
@_friendly
def list_cmd() -> None:
    """List datasets, built-in architectures, attacks with their defaults, defense profiles and blurs.

    \b
    Example:
      zeropur-bench list
    """
    import pandas as pd

    from .archs import ARCHS
    from .attacks import ATTACKS
    from .data import DATASETS
    from .defense import PROFILES

    click.echo("Datasets:")
    click.echo(pd.DataFrame([{"dataset": k, "classes": v["num_classes"], "splits": ", ".join(v["splits"])}
                             for k, v in DATASETS.items()]).to_markdown(index=False))
    from . import registry

    click.echo("\nShipped and registered classifiers (--model NAME; zeropur_bench/weights/registry.json):")
    click.echo(pd.DataFrame([{"name": e.name, "dataset": e.dataset, "arch": e.arch, "recipe": e.recipe,
                              "test acc %": f"{100 * e.test_acc:.2f}" if e.test_acc is not None else "?",
                              "file": e.file, "sha256": e.sha256[:12]}
                             for e in registry.entries().values()]).to_markdown(index=False))
    click.echo("\nBuilt-in architectures (use with --checkpoint); any RobustBench zoo name also works:")
    click.echo(pd.DataFrame([{"name": a.name, "params (M)": a.params_m, "description": a.description}
                             for a in ARCHS.values()]).to_markdown(index=False))
    click.echo("\nAttacks (--attack NAME[:k=v,...]):")
    rows = []
    for name, cls in sorted(ATTACKS.items()):
        setting = "adaptive" if (cls.needs_defense or cls.adaptive_only) else "transfer, adaptive"
        rows.append({"attack": name, "settings": setting, "norms": ", ".join(cls.norms),
                     "defaults": ", ".join(f"{k}={_short(v)}" for k, v in cls.defaults.items())})
    click.echo(pd.DataFrame(rows).to_markdown(index=False))
    click.echo("\nZeroPur profiles (--profile; override single knobs with --zp k=v):")
    frame = pd.DataFrame({k: {kk: ("fitted per classifier (calibrate)" if vv is None and kk == "ila_weight" else
                                   _short(vv)) for kk, vv in v.items()} for k, v in PROFILES.items()})
    click.echo(frame.to_markdown())
    from .defense.blur import BLURS

    click.echo("\nBlurs (--blur):")
    for form in BLURS.values():
        click.echo(f"  {form}")


@main.command("sanity")
@click.option("--dataset", type=click.Choice(DATASET_CHOICES), default="cifar10", show_default=True)
@click.option("--model", default=None, help="As for `run`.")
@click.option("--checkpoint", default=None)
@click.option("--model-dir", default=None)
@click.option("--data-dir", default=None)
@click.option("--stages", type=click.Choice(["c", "cf"]), default="c", show_default=True)
@click.option("--profile", type=click.Choice(PROFILE_NAMES), default=DEFAULT_PROFILE, show_default=True)
@click.option("--calibration", "calibration_file", default=None, help="As for `run` (profile calibrated).")
@click.option("--blur", default=None, help="Default: the paper's blur for the classifier's recipe.")
@click.option("--zp", "zp_overrides", default="", help="ZeroPur overrides, e.g. 'coarse_steps=5'.")
@click.option("--attack", default="bpda-eot:steps=10", show_default=True,
              help="The adaptive gradient attack of the eps sweep and the convergence check.")
@click.option("--extra-attack", "extra", multiple=True, help="More adaptive gradient attacks, e.g. defense-aware.")
@click.option("--square-queries", type=int, default=100, show_default=True)
@click.option("--n-ex", type=int, default=100, show_default=True)
@click.option("--batch-size", type=int, default=100, show_default=True)
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--device", default="cpu", show_default=True)
@click.option("--out", default=None, help="Report path (default: results/sanity/<dataset>-<model>-<stages>.json).")
@_friendly
def sanity_cmd(dataset: str, model: str | None, checkpoint: str | None, model_dir: str | None, data_dir: str | None,
               stages: str, profile: str, calibration_file: str | None, blur: str | None, zp_overrides: str,
               attack: str, extra: tuple[str, ...],
               square_queries: int, n_ex: int, batch_size: int, seed: int, device: str, out: str | None) -> None:
    """Evaluation sanity checks (Carlini et al. 2019) against the defended model: an eps sweep that must reach
    ~0%, doubled attack steps within the CI, a gradient-free attack (Square) vs the gradient attacks (masking
    flag), and adaptive ≤ transfer. Writes a JSON report and prints the verdicts.

    \b
    Example:
      zeropur-bench sanity --model resnet20 --checkpoint ../shared/weights/cifar10/resnet20.th --n-ex 100
    """
    from .evaluate import DefenseSpec, EvalConfig
    from .sanity import run_sanity, sanity_report_text

    if model is None:
        model, msg = default_model(dataset)
        click.echo(msg, err=True)
    defense = DefenseSpec(profile=profile, stages=stages, blur=blur or default_blur(model, checkpoint),
                          overrides=parse_kv(zp_overrides, "--zp"))
    config = EvalConfig(model=model, dataset=dataset, checkpoint=checkpoint, model_dir=model_dir, n_ex=n_ex,
                        batch_size=batch_size, seed=seed, device=device, defenses=[defense])
    attach_calibrations(config.defenses, model, dataset, "linf", checkpoint, model_dir, device, calibration_file,
                        data_dir)
    out = out or f"results/sanity/{dataset}-{Path(model).name}-{stages}.json"
    report = run_sanity(config, data_dir=data_dir, attack=parse_attack(attack),
                        extra_attacks=[parse_attack(a) for a in extra], square_queries=square_queries, out=out,
                        progress=True)
    click.echo(sanity_report_text(report))
    click.echo(f"report written to {out}")


@main.command("check")
@click.option("--baseline", "baselines", multiple=True, required=True,
              help="Baseline record(s), e.g. results/baselines/cifar10-resnet20.json. Repeatable.")
@click.option("--record", "record_path", default=None, help="Compare this run record instead of re-running.")
@click.option("--data-dir", default=None, help="Data folder (default: $ZEROPUR_BENCH_DATA, else ./data).")
@click.option("--zp", "zp_overrides", default="", help="Change ZeroPur knobs before re-running, e.g. "
              "'coarse_steps=3' (to see that the check catches a weaker defense).")
@click.option("--update", is_flag=True, help="Rewrite the baseline from the new run after a deliberate change "
              "(with --record: create it).")
@click.option("--no-progress", is_flag=True)
@_friendly
def check_cmd(baselines: tuple[str, ...], record_path: str | None, data_dir: str | None, zp_overrides: str,
              update: bool, no_progress: bool) -> None:
    """Regression check on robust accuracy: re-run each baseline's configuration and compare per example
    (one-sided exact McNemar, Holm across cells, plus an absolute floor). Exits 1 on a significant drop.

    \b
    Examples:
      zeropur-bench check --baseline results/baselines/cifar10-resnet20.json
      zeropur-bench check --baseline results/baselines/mine.json --record results/run.json --update
    """
    from .check import report, run_check

    if record_path is not None and len(baselines) > 1:
        raise UserError("--record compares one run: give one --baseline with it")
    failed = False
    for b in baselines:
        rows, _ = run_check(b, record_path=record_path, data_dir=data_dir, overrides=parse_kv(zp_overrides, "--zp"),
                            update=update, progress=not no_progress)
        if update:
            click.echo(f"{b}: baseline written")
            continue
        click.echo(f"{b}:\n{report(rows)}")
        failed |= any(r.failed for r in rows)
    if failed:
        click.echo("error: robust accuracy regressed (see the verdicts above)", err=True)
        sys.exit(1)


@main.command("train")
@click.option("--dataset", type=click.Choice(["cifar10", "cifar100"]), required=True)
@click.option("--arch", required=True, help="Built-in architecture: resnet20/32/44/56, resnet18, preact-resnet18, "
              "wrn-28-10.")
@click.option("--aug", type=click.Choice(["vanilla", "standard", "strong"]), required=True,
              help="Training recipe of the paper's Table 1 / App. A.1.")
@click.option("--epochs", type=int, required=True)
@click.option("--out", required=True, help="Run folder (checkpoint each epoch; rerun the command to resume).")
@click.option("--batch-size", type=int, default=128, show_default=True, help="Paper: 4×512 on 4 GPUs.")
@click.option("--lr", type=float, default=0.1, show_default=True)
@click.option("--momentum", type=float, default=0.9, show_default=True)
@click.option("--weight-decay", type=float, default=5e-4, show_default=True)
@click.option("--warmup-epochs", type=int, default=None, help="Default: scaled from the paper's 10 of 120.")
@click.option("--bf16", is_flag=True, help="bf16 autocast.")
@click.option("--channels-last", is_flag=True)
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--data-dir", default=None)
@click.option("--num-threads", type=int, default=None)
@click.option("--no-progress", is_flag=True)
@click.option("--stop-at-epoch", type=int, default=None, help="Stop (resumable) once this many epochs are trained.")
@click.option("--shorten", is_flag=True, help="End a run planned for more epochs at --epochs (cosine re-planned "
              "from the next epoch; recorded in the recipe and the reproduce command).")
@_friendly
def train_cmd(**kw: Any) -> None:
    """Train a base classifier with the paper's recipe (SGD, cosine schedule with linear warm-up).

    \b
    Example:
      zeropur-bench train --dataset cifar100 --arch resnet20 --aug standard --epochs 80 \\
          --out runs/c100_r20_standard --bf16 --channels-last
    """
    from .train import main as train_main

    argv = []
    for k, v in kw.items():
        flag = "--" + k.replace("_", "-")
        if isinstance(v, bool):
            argv += [flag] if v else []
        elif v is not None:
            argv += [flag, str(v)]
    rc = train_main(argv)
    if rc:
        sys.exit(rc)


def _short(v: Any) -> str:
    from .attacks.base import _fmt_value

    return _fmt_value(v)


def _register_figure_commands() -> None:
    """``plot`` and ``sweep`` live with their concepts (figures: plots.py; the steps sweep: sweep.py)."""
    from .plots import plot_cmd
    from .sweep import sweep_cmd

    main.add_command(plot_cmd, "plot")
    main.add_command(sweep_cmd, "sweep")


_register_figure_commands()


if __name__ == "__main__":  # pragma: no cover
    main()
