"""The paper's Tables 2–6, rendered from the reference rows in ``leaderboards/`` plus the records under ``results/``.

Each table has two sections: the paper's rows (layout, column groups and row order as in the paper) and a
"Measured here" section with one row per (record, defense variant): explicit architecture, training recipe, n, the
defense variant, and every cell as ``value [lo, hi]`` (percent, 95% CI from the record). A ZeroPur cell of the
paper's layout that no record fills is a "–" row whose footnote gives the ``zeropur-bench run`` command that fills
it. Measured rows never sit under a paper heading such as "ResNet-18": they carry their own architecture column.

Record fields this module reads (``docs/architecture.md``, schema ``zeropur-bench/record/v1``):

- ``config``: ``dataset``, ``threat`` ("linf"/"l2"), ``eps`` (float), ``setting`` ("transfer"/"adaptive"),
  ``model``, ``arch`` (built-in arch name or zoo name), ``recipe`` (str or null), ``checkpoint`` (optional, for the
  fill-in commands), ``n_ex``, ``attacks``: list of ``{"name", "params"}`` (optional ``"key"``).
- ``variants``: ``{variant: {"defense": {"name": "zeropur"|"none", "profile", "stages": "c"|"cf", "blur"},
  "summary": {...}}}``; without ``variants`` the top-level ``summary`` and ``config["defense"]`` are one variant.
- ``summary``: ``n``, ``defended_clean_acc``, ``robust_acc[key]``, ``ci95.defended_clean_acc``,
  ``ci95.robust_acc[key]`` (fractions). ``key`` is the attack entry's ``"key"`` if it has one, else its ``"name"``.
- ``provenance.model`` (optional): ``ModelInfo`` dict; ``meta.recipe`` is used when ``config.recipe`` is null.

Which record fills which table (the paper's settings, Sec. 4 and App. A.2):

| table | dataset | threat, eps | setting | columns |
|---|---|---|---|---|
| 2 | cifar10 | linf 8/255 | transfer | PGD-20 = ``pgd`` with steps 20; AutoAttack = ``autoattack`` version rand |
| 3 | cifar10 | l2 0.5 | transfer | as Table 2 |
| 4 | cifar100 | linf 8/255 | transfer | as Table 2 |
| 5 | imagenet | linf 4/255 | transfer | Natural = defended clean accuracy; AutoAttack (rand) |
| 6 | any | linf 8/255 | adaptive | BPDA+EOT = ``bpda-eot``, any number of steps (one row per such attack) |

Attack parameters missing from a record's ``params`` take the registered attack's defaults
(``zeropur_bench.attacks.ATTACKS[name].defaults``).
"""
from __future__ import annotations

import json
import math
import os
import re
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import pandas as pd
from tabulate import tabulate

from .errors import UserError
from .evaluate import default_eps
from .records import SCHEMA

FORMATS = ("markdown", "csv", "latex")
MISSING = "–"  # en dash: a cell of the paper's layout not measured here
NOT_REPORTED = "-"  # the paper's own mark for a number its source did not report
_EPS_TOL = 1e-6


# ---------------------------------------------------------------------------------------------- table specs
@dataclass(frozen=True)
class Metric:
    """A measured column: ``attack`` selects an attack entry of the record, or None for defended clean accuracy."""

    header: str
    attack: Callable[[str, dict], bool] | None = None
    attack_arg: str = ""  # what to pass to ``--attack`` to measure it


@dataclass(frozen=True)
class TableSpec:
    number: int
    title: str
    dataset: str | None  # None: any dataset (Table 6)
    threat: str
    eps: float
    setting: str
    metrics: tuple[Metric, ...]
    ref_metrics: tuple[tuple[str, str], ...]  # (leaderboard column, header)
    default_dataset: str


def _norm(s: Any) -> str:
    return re.sub(r"[^a-z0-9]", "", str(s).lower())


def _is_pgd20(name: str, params: dict) -> bool:
    return _norm(name) == "pgd" and int(params.get("steps", -1)) == 20


def _is_aa_rand(name: str, params: dict) -> bool:
    return _norm(name) == "autoattack" and params.get("version") == "rand"


def _is_bpda_eot(name: str, params: dict) -> bool:
    return _norm(name) == "bpdaeot"


_CLEAN = Metric("Clean (defended)")
_PGD20 = Metric("PGD-20", _is_pgd20, "pgd")
_AA = Metric("AutoAttack", _is_aa_rand, "autoattack:version=rand")

TABLES: dict[int, TableSpec] = {
    2: TableSpec(2, "Robust accuracy (%) against PGD-20 and AutoAttack, ℓ∞ (ε = 8/255), CIFAR-10",
                 "cifar10", "linf", 8 / 255, "transfer", (_CLEAN, _PGD20, _AA),
                 (("pgd20", "PGD-20"), ("autoattack", "AutoAttack")), "cifar10"),
    3: TableSpec(3, "Robust accuracy (%) against PGD-20 and AutoAttack, ℓ2 (ε = 0.5), CIFAR-10",
                 "cifar10", "l2", 0.5, "transfer", (_CLEAN, _PGD20, _AA),
                 (("pgd20", "PGD-20"), ("autoattack", "AutoAttack")), "cifar10"),
    4: TableSpec(4, "Robust accuracy (%) against PGD-20 and AutoAttack, ℓ∞ (ε = 8/255), CIFAR-100",
                 "cifar100", "linf", 8 / 255, "transfer", (_CLEAN, _PGD20, _AA),
                 (("pgd20", "PGD-20"), ("autoattack", "AutoAttack")), "cifar100"),
    5: TableSpec(5, "Natural and robust accuracy (%) against AutoAttack, ℓ∞ (ε = 4/255), ImageNet",
                 "imagenet", "linf", 4 / 255, "transfer", (Metric("Natural"), _AA),
                 (("natural", "Natural"), ("autoattack", "AutoAttack")), "imagenet"),
    6: TableSpec(6, "Robust accuracy (%) against BPDA+EOT (adaptive), ℓ∞ (ε = 8/255)",
                 None, "linf", 8 / 255, "adaptive", (Metric("BPDA+EOT", _is_bpda_eot, "bpda-eot"),),
                 (("bpda_eot", "BPDA+EOT"),), "cifar10"),
}


# ---------------------------------------------------------------------------------------------- public API
def infer_table_number(path: str | os.PathLike) -> int:
    """The table number in a file name: ``results/table4.md`` → 4."""
    m = re.search(r"table[\s_-]*(\d+)", Path(path).name, flags=re.IGNORECASE)
    if not m:
        raise UserError(f"cannot infer the table number from '{path}'; name the file tableN.md (N = 2..6) "
                        "or pass --table N")
    n = int(m.group(1))
    _check_table(n)
    return n


def infer_format(path: str | os.PathLike) -> str:
    """Output format from a file extension: .csv → csv, .tex → latex, anything else → markdown."""
    ext = Path(path).suffix.lower()
    return {".csv": "csv", ".tex": "latex", ".latex": "latex"}.get(ext, "markdown")


def load_records(results_dir: str | os.PathLike) -> list[dict]:
    """Every record (schema ``zeropur-bench/record/v1``) in ``*.json`` files under ``results_dir``, recursively,
    sorted by path. Other JSON files (baselines, resume state) are skipped silently; a missing directory gives [].
    Each record gets ``"_path"`` (its path as found) for the tables' Record column."""
    root = Path(results_dir)
    if not root.exists():
        return []
    if not root.is_dir():
        raise UserError(f"results path '{root}' is not a directory; pass the folder that holds the records")
    records = []
    for path in sorted(root.rglob("*.json")):
        try:
            with open(path, encoding="utf-8") as f:
                obj = json.load(f)
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
            warnings.warn(f"skipping unreadable JSON {path}: {e}", stacklevel=2)
            continue
        if isinstance(obj, dict) and obj.get("schema") == SCHEMA:
            obj["_path"] = str(path)
            records.append(obj)
    return records


def render_table(table: int, records: list[dict], fmt: str = "markdown",
                 leaderboards_dir: str | os.PathLike | None = None) -> str:
    """Render the paper's Table ``table`` (2–6): its reference rows from ``leaderboards/table{N}.csv``, then the
    rows measured here from ``records``, then footnotes with the commands that fill the missing cells.

    ``fmt``: "markdown" (default), "csv" (one long table with a ``section`` column: paper / measured / missing)
    or "latex"."""
    _check_table(table)
    if fmt not in FORMATS:
        raise UserError(f"unknown table format '{fmt}'; choose one of: {', '.join(FORMATS)}")
    spec = TABLES[table]
    ref = _load_leaderboard(table, leaderboards_dir)
    measured = _measured_rows(spec, records)
    missing = _missing_rows(spec, ref, measured)
    if fmt == "csv":
        return _render_csv(spec, ref, measured, missing)
    return _render_doc(spec, ref, measured, missing, fmt)


# ---------------------------------------------------------------------------------------------- reference rows
def _check_table(n: int) -> None:
    if n not in TABLES:
        raise UserError(f"table {n} is not one of the paper's tables this tool renders; choose 2, 3, 4, 5 or 6")


def default_leaderboards_dir() -> Path:
    """``$ZEROPUR_BENCH_LEADERBOARDS``, else the repository's ``leaderboards/``."""
    env = os.environ.get("ZEROPUR_BENCH_LEADERBOARDS")
    return Path(env) if env else Path(__file__).resolve().parents[1] / "leaderboards"


def _load_leaderboard(table: int, leaderboards_dir: str | os.PathLike | None) -> pd.DataFrame:
    path = Path(leaderboards_dir) if leaderboards_dir is not None else default_leaderboards_dir()
    path = path / f"table{table}.csv"
    if not path.is_file():
        raise UserError(f"reference rows not found: '{path}'; pass the leaderboards/ folder of the zeropur-bench "
                        "repository (or set ZEROPUR_BENCH_LEADERBOARDS)")
    # As strings: the paper's formatting ("59.00") is kept exactly.
    return pd.read_csv(path, dtype=str, keep_default_na=False)


def _mark(flag: str, fmt: str) -> str:
    if fmt == "latex":
        return {"true": "yes", "false": "no"}.get(flag, flag)
    return {"true": "✓", "false": "✗"}.get(flag, flag)


def _ref_num(s: str) -> str:
    return s if s else NOT_REPORTED


def _reference_frame(spec: TableSpec, ref: pd.DataFrame, fmt: str) -> pd.DataFrame:
    """The paper's layout of the reference rows."""
    t = spec.number
    if t == 2:
        # Two architecture column groups side by side, rows paired by their position in the paper.
        parts = [ref[ref["architecture"] == a].reset_index(drop=True) for a in ref["architecture"].unique()]
        cols: dict[Any, list[str]] = {("", "Training Required"): [_mark(v, fmt) for v in parts[0]["training_required"]]}
        for p in parts:
            arch = p["architecture"].iloc[0]
            cols[(arch, "Method")] = list(p["method"])
            for col, header in spec.ref_metrics:
                cols[(arch, header)] = [_ref_num(v) for v in p[col]]
        df = pd.DataFrame(cols)
        df.columns = pd.MultiIndex.from_tuples(df.columns)
        return df
    if t in (3, 4):
        df = pd.DataFrame({"Method": ref["method"], "Training Required": [_mark(v, fmt) for v in ref["training_required"]],
                           "Arch": ref["architecture"]})
    elif t == 5:
        df = pd.DataFrame({"Method": ref["method"],
                           "Model Required": [m if r == "true" else _mark("false", fmt)
                                              for r, m in zip(ref["model_required"], ref["purification_model"])],
                           "Training Required": [_mark(v, fmt) for v in ref["training_required"]]})
    else:
        df = pd.DataFrame({"Method": ref["method"], "Purification": ref["purification"]})
    for col, header in spec.ref_metrics:
        df[header] = [_ref_num(v) for v in ref[col]]
    return df


# ---------------------------------------------------------------------------------------------- measured rows
@dataclass
class _Row:
    method: str
    architecture: str
    recipe: str
    n: str
    cells: dict[str, str]  # metric header -> "v [lo, hi]" or MISSING (+ footnote marker)
    record: str
    dataset: str = ""
    arch_key: str = ""
    recipe_key: str = ""
    stages: str = ""
    defense: str = ""
    command: str = ""


def _fmt_ci(acc: float | None, ci: Any) -> str | None:
    if acc is None or (isinstance(acc, float) and math.isnan(acc)):
        return None
    s = f"{100 * acc:.2f}"
    if isinstance(ci, (list, tuple)) and len(ci) == 2 and None not in ci:
        s += f" [{100 * ci[0]:.2f}, {100 * ci[1]:.2f}]"
    return s


_CELL = re.compile(r"^\s*(-?\d+\.\d+)(?:\s*\[(-?\d+\.\d+),\s*(-?\d+\.\d+)\])?")


def parse_cell(cell: str) -> tuple[float, float | None, float | None] | None:
    """``"53.73 [46.60, 60.27]"`` → (53.73, 46.60, 60.27); a "–" cell → None."""
    m = _CELL.match(str(cell))
    if not m:
        return None
    v, lo, hi = m.groups()
    return float(v), (float(lo) if lo else None), (float(hi) if hi else None)


def _attack_defaults(name: str) -> dict:
    try:
        from .attacks import ATTACKS  # registry import pulls torch; only needed to fill omitted defaults
    except Exception:  # pragma: no cover - the table must render even if the attack stack cannot import
        return {}
    cls = ATTACKS.get(name)
    return dict(getattr(cls, "defaults", {}) or {}) if cls else {}


def _attack_entries(config: dict) -> list[tuple[str, str, dict]]:
    """(robust_acc key, name, params with defaults filled) per attack of the record."""
    out = []
    for a in config.get("attacks") or []:
        if isinstance(a, str):
            a = {"name": a, "params": {}}
        name = str(a.get("name", ""))
        params = {**_attack_defaults(name), **(a.get("params") or {})}
        out.append((str(a.get("key") or name), name, params))
    return out


def _config_matches(spec: TableSpec, config: dict) -> bool:
    try:
        eps = float(config.get("eps"))
    except (TypeError, ValueError):
        return False
    return ((spec.dataset is None or config.get("dataset") == spec.dataset)
            and config.get("threat") == spec.threat and abs(eps - spec.eps) < _EPS_TOL
            and config.get("setting") == spec.setting)


_ARCH_FALLBACK = {"resnet18": ("ResNet-18", 11.2), "preactresnet18": ("PreAct ResNet-18", 11.2),
                  "wrn2810": ("WideResNet-28-10", 36.5),
                  "resnet50": ("ResNet-50", None)}


def _arch_key(name: str) -> str:
    return _norm(name).replace("wideresnet", "wrn")


def _arch_label(config: dict, model_info: dict) -> tuple[str, str]:
    """(display label, normalised key): e.g. ("ResNet-20 (CIFAR, 0.27M)", "resnet20")."""
    arch = str(config.get("arch") or model_info.get("arch") or config.get("model") or "?")
    key = _arch_key(arch)
    try:
        from .archs import ARCHS
    except Exception:  # pragma: no cover
        ARCHS = {}
    spec = next((s for n, s in ARCHS.items() if _arch_key(n) == key), None)
    m = re.fullmatch(r"resnet(\d+)", key)
    if spec is not None and m and int(m.group(1)) not in (18, 34, 50):
        return f"ResNet-{m.group(1)} (CIFAR, {spec.params_m:g}M)", key
    if spec is not None:
        base = _ARCH_FALLBACK.get(key, (spec.name, None))[0]
        return f"{base} ({spec.params_m:g}M)", key
    if key in _ARCH_FALLBACK:
        base, p = _ARCH_FALLBACK[key]
        return (f"{base} ({p:g}M)" if p else base), key
    source = model_info.get("source")
    return (f"{arch} (RobustBench zoo)" if source == "robustbench" else arch), key


def _variants(record: dict) -> list[tuple[str, dict, dict]]:
    """(variant name, defense dict, summary) in display order: no defense, then C, then C-F."""
    variants = record.get("variants")
    if not variants:
        d = record.get("config", {}).get("defense") or {}
        variants = {str(d.get("name", "primary")): {"defense": d, "summary": record.get("summary", {})}}
    out = []
    for name, v in variants.items():
        d = dict(v.get("defense") or {})
        if not d.get("stages") and d.get("name", "zeropur") != "none":
            m = re.search(r"-(cf|c)$", name)
            if m:
                d["stages"] = m.group(1)
        out.append((name, d, v.get("summary") or {}))
    order = {"none": 0, "c": 1, "cf": 2}
    return sorted(out, key=lambda t: 0 if t[1].get("name") == "none" else order.get(t[1].get("stages", ""), 3))


def _variant_label(name: str, d: dict) -> str:
    if d.get("name") == "none" or name == "none":
        return "No defense"
    stages = {"c": "ZeroPur-C", "cf": "ZeroPur-C-F"}.get(str(d.get("stages")), f"ZeroPur ({name})")
    extra = [f"{k} {d[k]}" for k in ("profile", "blur") if d.get(k)]
    return stages + (f" ({', '.join(extra)})" if extra else "")


def _run_command(dataset: str, threat: str, model: str, checkpoint: str | None, defense: dict, setting: str,
                 attacks: list[str], eps: float | None = None, n_ex: int | None = None) -> str:
    parts = ["zeropur-bench run", f"--dataset {dataset}", f"--threat {threat}", f"--model {model}"]
    if checkpoint:
        parts.append(f"--checkpoint {checkpoint}")
    if eps is not None and abs(eps - default_eps(dataset, threat)) > _EPS_TOL:
        parts.append(f"--eps {eps:g}")
    if defense.get("name") == "none":
        parts.append("--defense none")
    else:
        for opt in ("stages", "profile", "blur"):
            if defense.get(opt):
                parts.append(f"--{opt} {defense[opt]}")
    if setting != "transfer":
        parts.append(f"--setting {setting}")
    parts += [f"--attack {a}" for a in attacks]
    if n_ex:
        parts.append(f"--n-ex {n_ex}")
    return " ".join(parts)


def _measured_rows(spec: TableSpec, records: list[dict]) -> list[_Row]:
    rows: list[_Row] = []
    for rec in records:
        config = rec.get("config") or {}
        if not _config_matches(spec, config):
            continue
        entries = _attack_entries(config)
        model_info = (rec.get("provenance") or {}).get("model") or {}
        label, key = _arch_label(config, model_info)
        recipe = config.get("recipe") or (model_info.get("meta") or {}).get("recipe") or "not recorded"
        path = rec.get("_path", "")
        # Table 6: one row per BPDA+EOT attack (any step count); otherwise one column per metric.
        if spec.number == 6:
            groups = [[(spec.metrics[0], e)] for e in entries if spec.metrics[0].attack(e[1], e[2])]
            if not groups:
                continue
        else:
            groups = [[(m, next((e for e in entries if m.attack(e[1], e[2])), None)) if m.attack else (m, None)
                       for m in spec.metrics]]
            if not any(e is not None for _, e in groups[0]):
                continue  # none of this table's attacks: the record belongs elsewhere
        for vname, d, summ in _variants(rec):
            ci = summ.get("ci95") or {}
            for group in groups:
                cells: dict[str, str] = {}
                missing_attacks = []
                for m, e in group:
                    if m.attack is None:
                        val = _fmt_ci(summ.get("defended_clean_acc"), ci.get("defended_clean_acc"))
                    elif e is None:
                        val = None
                    else:
                        val = _fmt_ci((summ.get("robust_acc") or {}).get(e[0]), (ci.get("robust_acc") or {}).get(e[0]))
                    if val is None:
                        missing_attacks.append(m.attack_arg)
                    cells[m.header] = val if val is not None else MISSING
                method = _variant_label(vname, d)
                if spec.number == 6:
                    e = group[0][1]
                    params = ", ".join(f"{k}={v}" for k, v in sorted(e[2].items()))
                    method += f" vs {e[1]}" + (f" ({params})" if params else "")
                cmd = ""
                attack_args = [a for a in missing_attacks if a]
                if attack_args:
                    cmd = _run_command(config.get("dataset", spec.default_dataset), spec.threat,
                                       str(config.get("model") or config.get("arch")), config.get("checkpoint"),
                                       d, spec.setting, attack_args, float(config["eps"]), config.get("n_ex"))
                rows.append(_Row(method=method, architecture=label, recipe=str(recipe),
                                 n=str(summ.get("n", config.get("n_ex", ""))), cells=cells, record=path,
                                 dataset=str(config.get("dataset", "")), arch_key=key,
                                 recipe_key=_norm(str(config.get("recipe") or "").split(" ")[0]),
                                 stages=str(d.get("stages", "")) if d.get("name") != "none" else "",
                                 defense=str(d.get("name", "zeropur")), command=cmd))
    return rows


def _builtin_name(arch: str) -> str:
    """The ``--model`` name of a paper architecture ("WideResNet-28-10" → "wrn-28-10")."""
    key = _arch_key(arch)
    try:
        from .archs import ARCHS
    except Exception:  # pragma: no cover
        ARCHS = {}
    return next((n for n in ARCHS if _arch_key(n) == key), arch.lower())


def _missing_rows(spec: TableSpec, ref: pd.DataFrame, measured: list[_Row]) -> list[_Row]:
    """The paper's ZeroPur rows no record fills here, each with the command that would fill it."""
    out = []
    zp = ref[ref["citation"] == "this paper"]
    for _, r in zp.iterrows():
        arch_key = _arch_key(r["architecture"])
        stages = r.get("stages", "")
        recipe = r.get("classifier_recipe", "")
        if spec.number == 5:  # the paper's one ImageNet classifier: any ZeroPur row measured here stands for it
            filled = [m for m in measured if m.defense != "none"]
        else:
            filled = [m for m in measured if m.defense != "none" and m.arch_key == arch_key
                      and m.stages == stages and m.recipe_key == recipe
                      and (spec.dataset is not None or m.dataset == spec.default_dataset)]
        if filled:
            continue
        defense = {"name": "zeropur", "stages": stages or "cf", "profile": "authors", "blur": r.get("blur", "")}
        if spec.number == 5:
            # ImageNet: the paper's ResNet-50 is RobustBench's non-robust 'Standard_R50' zoo entry.
            model, ckpt = "Standard_R50", None
        else:
            model = _builtin_name(r["architecture"])
            ckpt = f"PATH/TO/{model}-{recipe or 'classifier'}.pt"
        attacks = [m.attack_arg for m in spec.metrics if m.attack_arg]
        cmd = _run_command(spec.default_dataset, spec.threat, model, ckpt, defense, spec.setting, attacks)
        out.append(_Row(method=f"{r['method']} (paper row; not run here)", architecture=r["architecture"], recipe=recipe or "not stated", n="",
                        cells={m.header: MISSING for m in spec.metrics}, record="", stages=stages,
                        command=cmd))
    return out


# ---------------------------------------------------------------------------------------------- rendering
def _measured_frame(spec: TableSpec, rows: list[_Row], marks: dict[int, int]) -> pd.DataFrame:
    data = []
    for i, r in enumerate(rows):
        d: dict[str, str] = {"Method": r.method}
        if spec.number == 6:
            d["Dataset"] = r.dataset or spec.default_dataset
        d.update({"Architecture": r.architecture, "Training recipe": r.recipe, "n": r.n or MISSING})
        # The footnote marker goes on each cell that its command would fill.
        d.update({h: (f"{v} [{marks[i]}]" if v == MISSING and i in marks else v) for h, v in r.cells.items()})
        d["Record"] = r.record or MISSING
        data.append(d)
    return pd.DataFrame(data)


def _latex_escape(s: str) -> str:
    repl = {"\\": r"\textbackslash{}", "&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#", "_": r"\_",
            "{": r"\{", "}": r"\}", "~": r"\textasciitilde{}", "^": r"\textasciicircum{}"}
    return "".join(repl.get(c, c) for c in s)


def _frame_to(df: pd.DataFrame, fmt: str) -> str:
    if fmt == "markdown":
        if isinstance(df.columns, pd.MultiIndex):
            df = df.copy()
            df.columns = [": ".join(p for p in c if p) for c in df.columns]
        # tabulate directly (DataFrame.to_markdown wraps it): disable_numparse keeps the paper's "59.00" as printed.
        return tabulate(df.values.tolist(), headers=list(df.columns), tablefmt="github", disable_numparse=True)
    try:
        return df.to_latex(index=False, escape=True, multicolumn=True, multicolumn_format="c")
    except ImportError:  # pandas' to_latex needs jinja2; tabulate's LaTeX has no column groups but works
        if isinstance(df.columns, pd.MultiIndex):
            df = df.copy()
            df.columns = [": ".join(p for p in c if p) for c in df.columns]
        return tabulate(df.values.tolist(), headers=list(df.columns), tablefmt="latex_booktabs",
                        disable_numparse=True)


def _render_doc(spec: TableSpec, ref: pd.DataFrame, measured: list[_Row], missing: list[_Row], fmt: str) -> str:
    rows = measured + missing
    # One footnote number per distinct command.
    cmd_numbers: dict[str, int] = {}
    marks: dict[int, int] = {}
    for i, r in enumerate(rows):
        if r.command:
            marks[i] = cmd_numbers.setdefault(r.command, len(cmd_numbers) + 1)
    ref_df = _reference_frame(spec, ref, fmt)
    meas_df = _measured_frame(spec, rows, marks)
    legend_ref = (f"Reference rows copied from the paper (leaderboards/table{spec.number}.csv, each row with its "
                  f"source). {NOT_REPORTED}: not reported in the paper.")
    if spec.number in (2, 3, 4, 5):
        legend_ref += " ✓/✗: training required or not, as marked in the paper." if fmt != "latex" else ""
    legend_meas = ("Measured rows: accuracy (%) with its 95% confidence interval [lo, hi] over the n examples of the "
                   f"record; ZeroPur purifies with its own L∞ budget whatever the threat model. {MISSING}: not "
                   "measured here; the footnote gives the command that measures it (the paper uses the full test "
                   "set: add --n-ex 10000). Paper rows marked ✓/✗ are not repeated here: a measured row's "
                   "classifier is described by its own architecture and training recipe.")
    if fmt == "markdown":
        out = [f"## Table {spec.number}. {spec.title}", "", "### Paper (reference rows)", "", _frame_to(ref_df, fmt),
               "", legend_ref, "", "### Measured here", ""]
        out += [_frame_to(meas_df, fmt), ""] if rows else ["(no records and no paper ZeroPur rows)", ""]
        out += [legend_meas, ""]
        out += [f"[{n}] `{c}`" for c, n in cmd_numbers.items()]
        return "\n".join(out).rstrip() + "\n"
    out = [f"% Table {spec.number}. {spec.title}", f"% Paper (reference rows)", _frame_to(ref_df, fmt),
           f"% {legend_ref}", "% Measured here"]
    if rows:
        out.append(_frame_to(meas_df, fmt))
    out.append("\\par\\noindent{\\footnotesize " + _latex_escape(legend_meas) + "\\par")
    out += [f"[{n}] \\texttt{{{_latex_escape(c)}}}\\par" for c, n in cmd_numbers.items()]
    out.append("}")
    return "\n".join(out) + "\n"


def _render_csv(spec: TableSpec, ref: pd.DataFrame, measured: list[_Row], missing: list[_Row]) -> str:
    """One long table: ``section`` = paper | measured | missing; metric columns hold the paper's number or the
    measured "v [lo, hi]"; ``command`` fills a missing cell."""
    metric_headers = [m.header for m in spec.metrics]
    for _, h in spec.ref_metrics:
        if h not in metric_headers:
            metric_headers.append(h)
    data = []
    for _, r in ref.iterrows():
        d = {"section": "paper", "method": r["method"], "architecture": r.get("architecture", ""),
             "training_recipe": r.get("classifier_recipe", ""), "training_required": r.get("training_required", ""),
             "n": "", "source": r["source"], "command": ""}
        d.update({h: "" for h in metric_headers})
        d.update({h: r[c] for c, h in spec.ref_metrics})
        data.append(d)
    for section, rows in (("measured", measured), ("missing", missing)):
        for r in rows:
            d = {"section": section, "method": r.method, "architecture": r.architecture, "training_recipe": r.recipe,
                 "training_required": "", "n": r.n, "source": r.record, "command": r.command}
            d.update({h: "" for h in metric_headers})
            d.update({h: ("" if v == MISSING else v) for h, v in r.cells.items()})
            data.append(d)
    cols = ["section", "method", "architecture", "training_recipe", "training_required", "n", *metric_headers,
            "source", "command"]
    return pd.DataFrame(data, columns=cols).to_csv(index=False, lineterminator="\n")
