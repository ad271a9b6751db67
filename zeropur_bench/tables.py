"""The paper's Tables 2–6, rendered from the reference rows in ``leaderboards/`` plus the records under ``results/``.

Each table has two sections:

* **Paper (reference rows)**: the paper's rows, layout, column groups and row order as in the paper.
* **Measured here**: a side-by-side comparison with the paper, one row per (record, defense variant) (Table 6:
  per BPDA+EOT attack too). Each row names the paper row it stands beside ("Paper row": the paper's ZeroPur row of
  the same training recipe and stages, on the same architecture when the paper has it, else on the paper's first
  architecture, with the difference stated), its own architecture, recipe and n, and per paper metric M:
  ``M paper`` (the paper's number as printed), ``M paper protocol`` (accuracy on the adversarial input alone, the
  clean result ignored, as the paper reports it: the record's ``adv_acc``), ``M Δ`` (paper protocol − paper,
  points), ``M paper in CI`` (✓ when the paper's number lies inside the measured 95% Wilson interval) and
  ``M robust`` (clean ∧ adversarial: the record's ``robust_acc``, ≤ clean). Every measured value is
  ``value [lo, hi]`` in percent. Table 2 adds ``BPDA+EOT any-step (adaptive, robust)`` from an adaptive record of
  the same classifier and defense. A ZeroPur row of the paper that no record fills is a "–" row (beside its paper
  number) whose footnote gives the ``zeropur-bench run`` command that fills it.

A column carries a paper's or a library's name only when the attack ran with their settings: the PGD-20 columns
take the record's attack whose ``key`` is exactly ``"PGD-20"`` (App. A.2's settings), the AutoAttack columns the
one whose key is exactly ``"AutoAttack-rand"`` (AutoAttack's own settings, the 'rand' version the paper reports).
``pgd[steps=10]``, ``autoattack[n_iter=2,version=rand]`` or ``AutoAttack-standard`` fill neither; the footnote
then says what to run. Table 6 takes ``bpda-eot`` with any parameters, one row per such attack, named by its key.

Record fields this module reads (schema ``zeropur-bench/record/v2``, semantics in ``zeropur_bench.records``):

- ``config``: ``dataset``, ``threat`` ("linf"/"l2"), ``eps``, ``setting`` ("transfer"/"adaptive"), ``model``,
  ``arch``, ``recipe`` (``vanilla``/``standard``/``strong``/``standard-padcrop``/null), ``checkpoint``, ``n_ex``,
  ``attacks``: list of ``{"name", "params", "label", "key", "resolved"}``.
- ``keys.comparison.model.checkpoint_sha256``: identifies the classifier (Table 2's adaptive column).
- ``variants``: ``{variant: {"defense": {"name": "zeropur"|"none", "profile", "stages", "blur", "overrides",
  "resolved": {...}}, "summary": {...}}}``.
- ``summary``: ``n``, ``defended_clean_acc``, ``adv_acc[key]``, ``robust_acc[key]``, ``robust_final_acc[key]``
  (adaptive iterative attacks), and ``ci95`` with the same structure ([lo, hi] fractions).
- ``provenance.model`` (optional): ``recipe`` / ``meta.recipe`` when ``config.recipe`` is null.

Which record fills which table (the paper's settings, Sec. 4 and App. A.2):

| table | dataset | threat, eps | setting | metrics |
|---|---|---|---|---|
| 2 | cifar10 | linf 8/255 | transfer | PGD-20 (key ``PGD-20``), AutoAttack (key ``AutoAttack-rand``); + adaptive BPDA+EOT |
| 3 | cifar10 | l2 0.5 | transfer | as Table 2, without the adaptive column |
| 4 | cifar100 | linf 8/255 | transfer | as Table 3 |
| 5 | imagenet | linf 4/255 | transfer | Natural (defended clean accuracy), AutoAttack (key ``AutoAttack-rand``) |
| 6 | any | linf 8/255 | adaptive | BPDA+EOT = ``bpda-eot``, any parameters (one row per such attack) |
"""
from __future__ import annotations

import json
import math
import os
import re
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd
from tabulate import tabulate

from .attacks.base import _fmt_value
from .errors import UserError
from .evaluate import default_eps
from .records import OLD_SCHEMAS, SCHEMA

FORMATS = ("markdown", "csv", "latex")
MISSING = "–"  # en dash: a cell of the paper's layout not measured here
NOT_REPORTED = "-"  # the paper's own mark for a number its source did not report
IN_CI, NOT_IN_CI = "✓", "✗"
_EPS_TOL = 1e-6
FILL_N_EX = 1000  # examples in the commands that fill a paper row (the paper: the full 10,000)

CLEAN_COL = "Clean (defended)"
_NOT_ZEROPUR = ("none", "blur")  # defense names that stand beside no ZeroPur row of the paper
ADAPTIVE_COL = "BPDA+EOT any-step (adaptive, robust)"


# ---------------------------------------------------------------------------------------------- table specs
@dataclass(frozen=True)
class Metric:
    """A paper metric: its leaderboard column, and what measures it.

    ``kind``: "attack" (the record's attack with key ``key``), "natural" (defended clean accuracy) or "bpda"
    (Table 6: any ``bpda-eot`` attack). ``family``: attack names of this kind, so that a near miss (e.g.
    ``pgd[steps=10]``) is named in the footnote."""

    name: str
    ref_col: str
    kind: str
    key: str | None = None
    family: tuple[str, ...] = ()
    attack_arg: str = ""  # what to pass to ``--attack`` to measure it
    settings: str = ""  # whose settings the column name stands for


_PGD20 = Metric("PGD-20", "pgd20", "attack", "PGD-20", ("pgd",), "pgd", "App. A.2's PGD-20")
_AA = Metric("AutoAttack", "autoattack", "attack", "AutoAttack-rand", ("autoattack",), "autoattack:version=rand",
             "AutoAttack 'rand' with AutoAttack's own settings")
_NATURAL = Metric("Natural", "natural", "natural")
_BPDA = Metric("BPDA+EOT", "bpda_eot", "bpda", None, ("bpda-eot",), "bpda-eot")


@dataclass(frozen=True)
class TableSpec:
    number: int
    title: str
    dataset: str | None  # None: any dataset (Table 6)
    threat: str
    eps: float
    setting: str
    metrics: tuple[Metric, ...]
    default_dataset: str
    adaptive_column: bool = False  # Table 2: BPDA+EOT any-step from a matching adaptive record

    @property
    def ref_metrics(self) -> tuple[tuple[str, str], ...]:
        """(leaderboard column, header) of the paper's metrics, for the reference section."""
        return tuple((m.ref_col, m.name) for m in self.metrics)


TABLES: dict[int, TableSpec] = {
    2: TableSpec(2, "Robust accuracy (%) against PGD-20 and AutoAttack, ℓ∞ (ε = 8/255), CIFAR-10",
                 "cifar10", "linf", 8 / 255, "transfer", (_PGD20, _AA), "cifar10", adaptive_column=True),
    3: TableSpec(3, "Robust accuracy (%) against PGD-20 and AutoAttack, ℓ2 (ε = 0.5), CIFAR-10",
                 "cifar10", "l2", 0.5, "transfer", (_PGD20, _AA), "cifar10"),
    4: TableSpec(4, "Robust accuracy (%) against PGD-20 and AutoAttack, ℓ∞ (ε = 8/255), CIFAR-100",
                 "cifar100", "linf", 8 / 255, "transfer", (_PGD20, _AA), "cifar100"),
    5: TableSpec(5, "Natural and robust accuracy (%) against AutoAttack, ℓ∞ (ε = 4/255), ImageNet",
                 "imagenet", "linf", 4 / 255, "transfer", (_NATURAL, _AA), "imagenet"),
    6: TableSpec(6, "Robust accuracy (%) against BPDA+EOT (adaptive), ℓ∞ (ε = 8/255)",
                 None, "linf", 8 / 255, "adaptive", (_BPDA,), "cifar10"),
}

_ROLES = {"attack": ("paper", "protocol", "delta", "inci", "robust"),
          "natural": ("paper", "delta", "inci"),
          "bpda": ("paper", "protocol", "delta", "inci", "robust", "final")}


def metric_column(m: Metric, role: str) -> str:
    """The header of ``m``'s ``role`` column: paper | protocol | delta | inci | robust | final."""
    if m.kind == "bpda":
        return {"paper": f"{m.name} paper", "protocol": f"{m.name} paper protocol (any step)",
                "delta": f"{m.name} Δ", "inci": f"{m.name} paper in CI", "robust": f"{m.name} robust (any step)",
                "final": f"{m.name} final only (robust)"}[role]
    return {"paper": f"{m.name} paper", "protocol": f"{m.name} paper protocol", "delta": f"{m.name} Δ",
            "inci": f"{m.name} paper in CI", "robust": f"{m.name} robust"}[role]


def measured_columns(table: int) -> list[str]:
    """The columns of Table ``table``'s "Measured here" section, in order."""
    spec = TABLES[table]
    cols = ["Method"] + (["Dataset"] if spec.number == 6 else []) + [
        "Paper row", "Architecture", "Training recipe", "n", CLEAN_COL]
    for m in spec.metrics:
        cols += [metric_column(m, r) for r in _ROLES[m.kind]]
    if spec.adaptive_column:
        cols.append(ADAPTIVE_COL)
    return cols + ["Record"]


def _norm(s: Any) -> str:
    return re.sub(r"[^a-z0-9]", "", str(s).lower())


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
    """Every record (schema ``zeropur-bench/record/v2``) in ``*.json`` files under ``results_dir``, recursively,
    sorted by path. Records of an older schema are skipped with a warning (they count robust accuracy
    differently: re-make them with the same command); other JSON files (baselines, resume state) are skipped
    silently; a missing directory gives []. Each record gets ``"_path"`` (its path as found) for the Record
    column."""
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
        if not isinstance(obj, dict):
            continue
        if obj.get("schema") in OLD_SCHEMAS:
            warnings.warn(f"skipping {path}: a {obj['schema']} record, made before robust accuracy required the "
                          f"clean image right too; it needs re-making with the same command (its 'config' holds "
                          f"it) to appear in the tables", stacklevel=2)
            continue
        if obj.get("schema") == SCHEMA:
            obj["_path"] = str(path)
            records.append(obj)
    return records


def render_table(table: int, records: list[dict], fmt: str = "markdown",
                 leaderboards_dir: str | os.PathLike | None = None) -> str:
    """Render the paper's Table ``table`` (2–6): its reference rows from ``leaderboards/table{N}.csv``, then the
    rows measured here from ``records`` side by side with the paper, then footnotes with the commands that fill
    the missing cells.

    ``fmt``: "markdown" (default), "csv" (one long table with a ``section`` column: paper / measured / missing)
    or "latex"."""
    _check_table(table)
    if fmt not in FORMATS:
        raise UserError(f"unknown table format '{fmt}'; choose one of: {', '.join(FORMATS)}")
    spec = TABLES[table]
    ref = _load_leaderboard(table, leaderboards_dir)
    prows = _paper_rows(ref)
    measured = _measured_rows(spec, prows, records)
    missing = _missing_rows(spec, prows, measured)
    # Paper order (V-C, V-C-F, B-C, ...; within it the paper's architecture groups, measured rows before the
    # paper row's own "–" row), then measured rows that match no paper row, in record order.
    rows = sorted(measured + missing, key=lambda r: r.order)
    if fmt == "csv":
        return _render_csv(spec, ref, rows)
    doc = _render_doc(spec, ref, rows, fmt)
    return doc + _paired_section(spec, records) if fmt == "markdown" else doc


def _paired_section(spec: TableSpec, records: list[dict]) -> str:
    """Markdown: exact two-sided McNemar p-values of C-F vs C and of calibrated vs authors (``paired.compare``)
    for every record of this table that holds such variants."""
    from .paired import compare, fmt_cell

    keys = [m.key for m in spec.metrics if m.kind == "attack" and m.key]
    if not keys or spec.number == 6:
        return ""
    rows = []
    for rec in records:
        config = rec.get("config") or {}
        if not _config_matches(spec, config):
            continue
        for c in compare(rec, keys):
            row = {"Classifier": config.get("model"), "Comparison": c["comparison"], "Blur": c["blur"], "n": c["n"]}
            for m in spec.metrics:
                if m.kind == "attack":
                    row[f"{m.name} paper protocol Δ (p)"] = fmt_cell(c["cells"].get((m.key, "adv")))
                    row[f"{m.name} robust Δ (p)"] = fmt_cell(c["cells"].get((m.key, "robust")))
            rows.append(row)
    if not rows:
        return ""
    return ("\n### Paired comparisons (same examples, same adversarial set)\n\n"
            + pd.DataFrame(rows).to_markdown(index=False)
            + "\n\nΔ: points, first variant minus second; p: exact two-sided McNemar test on the per-example "
              "vectors of the record.\n")


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


# ---------------------------------------------------------------------------------------------- the paper's ZeroPur rows
_ARCH_ALIASES = {"standardr50": "resnet50"}  # RobustBench's 'Standard_R50' is the paper's ImageNet ResNet-50


def _arch_key(name: str) -> str:
    return _norm(name).replace("wideresnet", "wrn")


def _paper_arch_key(key: str) -> str:
    return _ARCH_ALIASES.get(key, key)


@dataclass
class _PaperRow:
    method: str
    arch: str
    arch_key: str
    recipe: str  # "" where the paper does not say (Table 5)
    stages: str  # "" where the paper does not say (Table 5)
    blur: str
    values: dict[str, str]  # leaderboard metric column -> number as printed ("" = not reported)
    group: int  # architecture group, in the paper's order (Table 2: 0 = ResNet-18, 1 = WideResNet-28-10)
    order: int  # position of (recipe, stages) in the paper's order: V-C, V-C-F, B-C, B-C-F, S-C, S-C-F

    @property
    def label(self) -> str:
        return f"{self.method} ({self.arch})" if self.arch else self.method


def _paper_rows(ref: pd.DataFrame) -> list[_PaperRow]:
    zp = ref[ref["citation"] == "this paper"]
    groups: list[str] = []
    orders: list[tuple[str, str]] = []
    out = []
    for _, r in zp.iterrows():
        arch = r.get("architecture", "")
        rs = (r.get("classifier_recipe", ""), r.get("stages", ""))
        if arch not in groups:
            groups.append(arch)
        if rs not in orders:
            orders.append(rs)
        values = {c: r[c] for c in ("pgd20", "autoattack", "natural", "bpda_eot") if c in r.index}
        out.append(_PaperRow(method=r["method"], arch=arch, arch_key=_arch_key(arch), recipe=rs[0], stages=rs[1],
                             blur=r.get("blur", ""), values=values, group=groups.index(arch), order=orders.index(rs)))
    return out


def _match_paper(spec: TableSpec, prows: list[_PaperRow], defense: dict, arch_key: str, recipe_key: str,
                 dataset: str) -> tuple[_PaperRow | None, bool]:
    """(the paper's ZeroPur row a measured variant stands beside, whether the architecture is the paper's):
    same recipe and stages; the same architecture group when the paper has it, else the paper's first group."""
    if defense.get("name") in _NOT_ZEROPUR:
        return None, False
    if spec.number == 5:  # the paper's one ImageNet ZeroPur row (recipe and stages not stated)
        cands = list(prows)
    else:
        if spec.dataset is None and dataset != spec.default_dataset:
            return None, False  # Table 6's ZeroPur rows are CIFAR-10
        cands = [p for p in prows if p.recipe and p.recipe == recipe_key and p.stages == defense.get("stages")]
    if not cands:
        return None, False
    same = [p for p in cands if p.arch_key == _paper_arch_key(arch_key)]
    if same:
        return same[0], True
    return min(cands, key=lambda p: p.group), False


# ---------------------------------------------------------------------------------------------- record access
@dataclass(frozen=True)
class _Attack:
    key: str  # the record's column / summary key
    name: str  # registry name
    params: dict  # resolved parameters


def _attack_defaults(name: str) -> dict:
    try:
        from .attacks import ATTACKS  # registry import pulls torch; only needed for records without "resolved"
    except Exception:  # pragma: no cover - the table must render even if the attack stack cannot import
        return {}
    cls = ATTACKS.get(name)
    return dict(getattr(cls, "defaults", {}) or {}) if cls else {}


def _attack_entries(config: dict) -> list[_Attack]:
    out = []
    for a in config.get("attacks") or []:
        if isinstance(a, str):
            a = {"name": a, "params": {}}
        name = str(a.get("name", ""))
        params = a.get("resolved")
        if not isinstance(params, dict):
            params = {**_attack_defaults(name), **(a.get("params") or {})}
        out.append(_Attack(str(a.get("key") or name), name, dict(params)))
    return out


def _select(m: Metric, entries: list[_Attack]) -> _Attack | None:
    """The record's attack that fills ``m``'s columns: exactly the paper's key (None for Natural)."""
    if m.kind == "attack":
        return next((e for e in entries if e.key == m.key), None)
    return None


def _config_matches(spec: TableSpec, config: dict) -> bool:
    try:
        eps = float(config.get("eps"))
    except (TypeError, ValueError):
        return False
    if config.get("split", "test") != "test":
        return False  # e.g. the calibration study's training-slice records: the paper's tables are test images
    return ((spec.dataset is None or config.get("dataset") == spec.dataset)
            and config.get("threat") == spec.threat and abs(eps - spec.eps) < _EPS_TOL
            and config.get("setting") == spec.setting)


_ARCH_FALLBACK = {"resnet18": ("ResNet-18", 11.2), "preactresnet18": ("PreAct ResNet-18", 11.2),
                  "wrn2810": ("WideResNet-28-10", 36.5),
                  "resnet50": ("ResNet-50", None)}


def _arch_label(config: dict, model_info: dict) -> tuple[str, str, str]:
    """(display label, short name, normalised key): e.g. ("ResNet-20 (CIFAR, 0.27M)", "ResNet-20", "resnet20")."""
    arch = str(config.get("arch") or model_info.get("arch") or config.get("model") or "?")
    key = _arch_key(arch)
    try:
        from .archs import ARCHS
    except Exception:  # pragma: no cover
        ARCHS = {}
    spec = next((s for n, s in ARCHS.items() if _arch_key(n) == key), None)
    m = re.fullmatch(r"resnet(\d+)", key)
    if spec is not None and m and int(m.group(1)) not in (18, 34, 50):
        return f"ResNet-{m.group(1)} (CIFAR, {spec.params_m:g}M)", f"ResNet-{m.group(1)}", key
    if spec is not None:
        base = _ARCH_FALLBACK.get(key, (spec.name, None))[0]
        return f"{base} ({spec.params_m:g}M)", base, key
    if key in _ARCH_FALLBACK:
        base, p = _ARCH_FALLBACK[key]
        return (f"{base} ({p:g}M)" if p else base), base, key
    source = model_info.get("source")
    return (f"{arch} (RobustBench zoo)" if source == "robustbench" else arch), arch, key


def _recipe(config: dict, model_info: dict) -> str | None:
    r = config.get("recipe") or model_info.get("recipe")
    if not r:
        meta = (model_info.get("meta") or {}).get("recipe")
        if isinstance(meta, dict):
            meta = meta.get("aug") or meta.get("name")
        r = meta if isinstance(meta, str) else None
    return str(r) if r else None


def _recipe_key(recipe: str | None) -> str:
    """"standard" / "vanilla" / "strong" as the leaderboard spells them; "standard-padcrop" stays distinct."""
    return str(recipe or "").split(" ")[0].strip().lower()


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
    order = {"none": 0, "c": 2, "cf": 3}
    profiles = {"authors": 0, "calibrated": 1, "paper": 2}
    return sorted(out, key=lambda t: (0, 0) if t[1].get("name") == "none" else (1, 0) if t[1].get("name") == "blur"
                  else (order.get(t[1].get("stages", ""), 4), profiles.get(str(t[1].get("profile")), 3)))


def _variant_label(name: str, d: dict) -> str:
    if d.get("name") == "none" or name == "none":
        return "No defense"
    if d.get("name") == "blur":
        return f"Blur only (g(x), {d.get('blur')})"
    stages = {"c": "ZeroPur-C", "cf": "ZeroPur-C-F"}.get(str(d.get("stages")), f"ZeroPur ({name})")
    extra = [f"{k} {d[k]}" for k in ("profile", "blur") if d.get(k)]
    extra += [f"{k}={_fmt_value(v)}" for k, v in sorted((d.get("overrides") or {}).items())]
    return stages + (f" ({', '.join(extra)})" if extra else "")


# -- the same defended model (Table 2's adaptive column) ------------------------------------------------------------
# Resolved ZeroPur settings that do not change what the defended model computes (numerics and gradients aside).
_DEFENSE_IGNORED = ("dtype", "channels_last", "seed", "grad_mode", "surrogate")
_DEFENSE_ESSENTIAL = ("profile", "stages", "blur")


def _model_sha(rec: dict) -> str | None:
    cmp_model = (((rec.get("keys") or {}).get("comparison") or {}).get("model") or {})
    return cmp_model.get("checkpoint_sha256") or None


def _same_model(a: dict, b: dict) -> bool:
    """Same classifier: the same checkpoint sha256 (keys.comparison.model); where either lacks one, the same
    ``config.checkpoint``; for zoo models without a file, the same comparison model entry."""
    sa, sb = _model_sha(a), _model_sha(b)
    if sa and sb:
        return sa == sb
    ca, cb = (a.get("config") or {}).get("checkpoint"), (b.get("config") or {}).get("checkpoint")
    if ca and cb:
        return os.path.normpath(str(ca)) == os.path.normpath(str(cb))
    if not ca and not cb and not sa and not sb:
        ma = (((a.get("keys") or {}).get("comparison") or {}).get("model"))
        mb = (((b.get("keys") or {}).get("comparison") or {}).get("model"))
        return bool(ma) and ma == mb
    return False


def _same_value(a: Any, b: Any) -> bool:
    if isinstance(a, (int, float)) and isinstance(b, (int, float)) and not isinstance(a, bool) \
            and not isinstance(b, bool):
        return math.isclose(float(a), float(b), rel_tol=1e-9, abs_tol=1e-12)
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(_same_value(a[k], b[k]) for k in a)
    if isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)):
        return len(a) == len(b) and all(_same_value(x, y) for x, y in zip(a, b))
    return a == b


def _same_defense(a: dict, b: dict) -> bool:
    """The same ZeroPur: profile, stages, blur and every step / eps setting of the resolved configs (dtype,
    channels_last, seed, gradient mode ignored). Without resolved configs: profile, stages, blur, overrides."""
    if a.get("name") in _NOT_ZEROPUR or b.get("name") in _NOT_ZEROPUR:
        return False
    ra, rb = a.get("resolved"), b.get("resolved")
    if isinstance(ra, dict) and isinstance(rb, dict):
        if not all(_same_value(ra.get(k, a.get(k)), rb.get(k, b.get(k))) for k in _DEFENSE_ESSENTIAL):
            return False
        common = (set(ra) & set(rb)) - set(_DEFENSE_IGNORED)
        return all(_same_value(ra[k], rb[k]) for k in common)
    return all(_same_value(a.get(k), b.get(k)) for k in _DEFENSE_ESSENTIAL) and \
        _same_value(a.get("overrides") or {}, b.get("overrides") or {})


def _adaptive_bpda(rec: dict, defense: dict, records: list[dict]) -> tuple[str, str] | None:
    """("v [lo, hi] (steps=N)", path) from an adaptive record of the same dataset / threat / eps, the same
    classifier and the same defense, with a ``bpda-eot`` attack (the most steps, then the largest n), else None."""
    cfg = rec.get("config") or {}
    best = None
    for other in records:
        oc = other.get("config") or {}
        try:
            same_eps = abs(float(oc.get("eps")) - float(cfg.get("eps"))) < _EPS_TOL
        except (TypeError, ValueError):
            continue
        if not (oc.get("setting") == "adaptive" and oc.get("dataset") == cfg.get("dataset")
                and oc.get("threat") == cfg.get("threat") and same_eps and _same_model(rec, other)):
            continue
        bpda = [e for e in _attack_entries(oc) if e.name == "bpda-eot"]
        if not bpda:
            continue
        for _, d, summ in _variants(other):
            if not _same_defense(defense, d):
                continue
            for e in bpda:
                val = _fmt_ci((summ.get("robust_acc") or {}).get(e.key),
                              ((summ.get("ci95") or {}).get("robust_acc") or {}).get(e.key))
                if val is None:
                    continue
                steps = e.params.get("steps")
                rank = (int(steps) if isinstance(steps, int) else -1, int(summ.get("n") or 0))
                if best is None or rank > best[0]:
                    best = (rank, f"{val} (steps={steps})", str(other.get("_path", "")))
    return None if best is None else (best[1], best[2])


# ---------------------------------------------------------------------------------------------- cells
def _fmt_ci(acc: float | None, ci: Any) -> str | None:
    if acc is None or (isinstance(acc, float) and math.isnan(acc)):
        return None
    s = f"{100 * acc:.2f}"
    if isinstance(ci, (list, tuple)) and len(ci) == 2 and None not in ci:
        s += f" [{100 * ci[0]:.2f}, {100 * ci[1]:.2f}]"
    return s


_CELL = re.compile(r"^\s*([-+]?\d+\.\d+)(?:\s*\[([-+]?\d+\.\d+),\s*([-+]?\d+\.\d+)\])?")


def parse_cell(cell: str) -> tuple[float, float | None, float | None] | None:
    """``"53.73 [46.60, 60.27]"`` → (53.73, 46.60, 60.27); ``"+1.25"`` → (1.25, None, None); "–" → None."""
    m = _CELL.match(str(cell))
    if not m:
        return None
    v, lo, hi = m.groups()
    return float(v), (float(lo) if lo else None), (float(hi) if hi else None)


def _paper_number(s: str) -> float | None:
    try:
        return float(s)
    except (TypeError, ValueError):
        return None


def _delta(acc: float, paper: float) -> str:
    d = round(100 * acc - paper, 2)
    return f"{(d if d != 0 else 0.0):+.2f}"


def _in_ci(ci: Any, paper: float) -> str:
    if not (isinstance(ci, (list, tuple)) and len(ci) == 2 and None not in ci):
        return MISSING
    lo, hi = 100 * float(ci[0]), 100 * float(ci[1])
    return IN_CI if lo - 1e-9 <= paper <= hi + 1e-9 else NOT_IN_CI


def _comparison_cells(m: Metric, paper: _PaperRow | None, acc: float | None, ci: Any) -> dict[str, str]:
    """``M paper``, ``M Δ`` and ``M paper in CI`` for the measured paper-protocol value ``acc`` (None: not
    measured)."""
    cells = {metric_column(m, "paper"): MISSING, metric_column(m, "delta"): MISSING,
             metric_column(m, "inci"): MISSING}
    if paper is None:
        return cells
    printed = paper.values.get(m.ref_col, "")
    cells[metric_column(m, "paper")] = _ref_num(printed)
    p = _paper_number(printed)
    if p is not None and acc is not None and not (isinstance(acc, float) and math.isnan(acc)):
        cells[metric_column(m, "delta")] = _delta(acc, p)
        cells[metric_column(m, "inci")] = _in_ci(ci, p)
    return cells


# ---------------------------------------------------------------------------------------------- rows
@dataclass
class _Row:
    section: str  # "measured" | "missing"
    method: str
    paper_row: str
    architecture: str
    recipe: str
    n: str
    cells: dict[str, str]  # column header -> text (MISSING where not measured)
    record: str
    order: tuple
    dataset: str = ""
    arch_key: str = ""
    recipe_key: str = ""
    stages: str = ""
    defense: str = ""
    # (command, columns it fills, note for the footnote)
    commands: list[tuple[str, tuple[str, ...], str]] = field(default_factory=list)
    standin: str = ""  # the project's ResNet-20 stand-in for a paper row (missing rows only)


_UNMATCHED = 10 ** 6


def _zp_opts(overrides: dict) -> str:
    def v(x: Any) -> str:
        if isinstance(x, bool):
            return "true" if x else "false"
        if x is None:
            return "none"
        if isinstance(x, (list, tuple)):
            return "|".join(v(t) for t in x)
        return repr(x) if isinstance(x, float) else str(x)

    return ",".join(f"{k}={v(x)}" for k, x in sorted(overrides.items()))


def _run_command(dataset: str, threat: str, model: str, checkpoint: str | None, defense: dict, setting: str,
                 attacks: list[str], eps: float | None = None, n_ex: int | None = None,
                 recipe: str | None = None) -> str:
    parts = ["zeropur-bench run", f"--dataset {dataset}", f"--threat {threat}", f"--model {model}"]
    if checkpoint:
        parts.append(f"--checkpoint {checkpoint}")
    if recipe:
        parts.append(f"--recipe {recipe}")
    if eps is not None and abs(eps - default_eps(dataset, threat)) > _EPS_TOL:
        parts.append(f"--eps {eps:g}")
    if defense.get("name") == "none":
        parts.append("--defense none")
    elif defense.get("name") == "blur":
        parts += ["--defense blur", f"--blur {defense.get('blur')}"]
    else:
        for opt in ("stages", "profile", "blur"):
            if defense.get(opt):
                parts.append(f"--{opt} {defense[opt]}")
        if defense.get("overrides"):
            parts.append(f"--zp {_zp_opts(defense['overrides'])}")
    if setting != "transfer":
        parts.append(f"--setting {setting}")
    parts += [f"--attack {a}" for a in attacks]
    if n_ex:
        parts.append(f"--n-ex {n_ex}")
    return " ".join(parts)


def _measured_rows(spec: TableSpec, prows: list[_PaperRow], records: list[dict]) -> list[_Row]:
    rows: list[_Row] = []
    family = {f for m in spec.metrics for f in m.family}
    for rec in records:
        config = rec.get("config") or {}
        if not _config_matches(spec, config):
            continue
        entries = _attack_entries(config)
        if spec.number == 6:
            groups: list[_Attack | None] = [e for e in entries if e.name == "bpda-eot"]
        else:
            groups = [None]
            if not any(e.name in family for e in entries):
                continue  # none of this table's attacks (not even a near miss): the record belongs elsewhere
        if not groups:
            continue
        model_info = (rec.get("provenance") or {}).get("model") or {}
        label, short, arch_key = _arch_label(config, model_info)
        recipe = _recipe(config, model_info)
        path = str(rec.get("_path", ""))
        dataset = str(config.get("dataset", ""))
        for vname, d, summ in _variants(rec):
            if "[" in vname:  # a sweep's variants (zeropur-cf[fine_steps=10]) are figures, not rows of the tables
                continue
            paper, same_arch = _match_paper(spec, prows, d, arch_key, _recipe_key(recipe), dataset)
            if paper is None:
                paper_label = MISSING
            else:
                notes = ([] if same_arch else [f"measured on {short}"]) + (
                    [f"paper blur {paper.blur}"] if paper.blur and d.get("blur") != paper.blur else [])
                paper_label = (f"{paper.method} ({paper.arch}" + "".join(f"; {x}" for x in notes) + ")"
                               if paper.arch else paper.method + (f" ({'; '.join(notes)})" if notes else ""))
            order = (paper.order, paper.group, 0) if paper is not None else (_UNMATCHED, 0, 0)
            for bpda in groups:
                rows.append(_measured_row(spec, rec, config, entries, vname, d, summ, bpda, paper, paper_label,
                                          label, arch_key, recipe, path, dataset, order, records))
    return rows


def _measured_row(spec: TableSpec, rec: dict, config: dict, entries: list[_Attack], vname: str, d: dict,
                  summ: dict, bpda: _Attack | None, paper: _PaperRow | None, paper_label: str, label: str,
                  arch_key: str, recipe: str | None, path: str, dataset: str, order: tuple,
                  records: list[dict]) -> _Row:
    ci = summ.get("ci95") or {}
    acc_of = lambda name, key: (summ.get(name) or {}).get(key)  # noqa: E731
    ci_of = lambda name, key: (ci.get(name) or {}).get(key)  # noqa: E731
    cells: dict[str, str] = {CLEAN_COL: _fmt_ci(summ.get("defended_clean_acc"), ci.get("defended_clean_acc"))
                             or MISSING}
    missing_attacks: list[str] = []  # the table's attacks this record lacks
    fills: list[str] = []
    near: list[str] = []
    for m in spec.metrics:
        if m.kind == "natural":
            cells.update(_comparison_cells(m, paper, summ.get("defended_clean_acc"), ci.get("defended_clean_acc")))
            continue
        e = bpda if m.kind == "bpda" else _select(m, entries)
        adv = acc_of("adv_acc", e.key) if e else None
        cells.update(_comparison_cells(m, paper, adv, ci_of("adv_acc", e.key) if e else None))
        cells[metric_column(m, "protocol")] = (_fmt_ci(adv, ci_of("adv_acc", e.key)) if e else None) or MISSING
        cells[metric_column(m, "robust")] = (_fmt_ci(acc_of("robust_acc", e.key), ci_of("robust_acc", e.key))
                                             if e else None) or MISSING
        if m.kind == "bpda":
            cells[metric_column(m, "final")] = (_fmt_ci(acc_of("robust_final_acc", e.key),
                                                        ci_of("robust_final_acc", e.key)) if e else None) or MISSING
        if e is None and m.attack_arg:
            missing_attacks.append(m.attack_arg)
            fills += [metric_column(m, "protocol"), metric_column(m, "robust")]
            others = [x.key for x in entries if x.name in m.family]
            if others:
                near.append(f"the record's {', '.join(others)} {'is' if len(others) == 1 else 'are'} not "
                            f"{m.settings} and fill{'s' if len(others) == 1 else ''} no {m.name} column")
    model = str(config.get("model") or config.get("arch"))
    ckpt = config.get("checkpoint")
    cmd_recipe = recipe if ckpt and recipe else None
    try:
        eps = float(config["eps"])
    except (KeyError, TypeError, ValueError):
        eps = None
    commands = []
    if missing_attacks:
        # Every attack of the table, so that the new record fills the whole row on its own.
        every = [m.attack_arg for m in spec.metrics if m.attack_arg]
        commands.append((_run_command(config.get("dataset", spec.default_dataset), spec.threat, model, ckpt, d,
                                      spec.setting, every, eps, config.get("n_ex"), cmd_recipe),
                         tuple(fills), "; ".join(near)))
    record = path or MISSING
    if spec.adaptive_column:
        found = _adaptive_bpda(rec, d, records) if d.get("name") not in _NOT_ZEROPUR else None
        if found:
            cells[ADAPTIVE_COL] = found[0]
            record = f"{path} (BPDA+EOT: {found[1]})"
        else:
            cells[ADAPTIVE_COL] = MISSING
            if d.get("name") not in _NOT_ZEROPUR:
                commands.append((_run_command(config.get("dataset", spec.default_dataset), spec.threat, model, ckpt,
                                              d, "adaptive", ["bpda-eot"], eps, config.get("n_ex"), cmd_recipe),
                                 (ADAPTIVE_COL,), "makes the adaptive record (same classifier, same ZeroPur "
                                                  "settings) that fills the BPDA+EOT column"))
    method = _variant_label(vname, d) + (f" vs {bpda.key}" if bpda is not None else "")
    return _Row(section="measured", method=method, paper_row=paper_label, architecture=label,
                recipe=recipe or "not recorded", n=str(summ.get("n", config.get("n_ex", ""))), cells=cells,
                record=record, order=order, dataset=dataset, arch_key=arch_key, recipe_key=_recipe_key(recipe),
                stages=str(d.get("stages", "")) if d.get("name") not in _NOT_ZEROPUR else "",
                defense=str(d.get("name", "zeropur")), commands=commands)


def _builtin_name(arch: str) -> str:
    """The ``--model`` name of a paper architecture ("WideResNet-28-10" → "wrn-28-10")."""
    key = _arch_key(arch)
    try:
        from .archs import ARCHS
    except Exception:  # pragma: no cover
        ARCHS = {}
    return next((n for n in ARCHS if _arch_key(n) == key), arch.lower())


def _paper_model(p: _PaperRow, dataset: str) -> tuple[str, str | None, str | None]:
    """(--model, --checkpoint, --recipe) that measure the paper row ``p`` on its own architecture: the project's
    registered classifiers where they exist (``resnet18-cifar10-<recipe>``), else the built-in architecture with
    the checkpoint to supply."""
    if dataset == "imagenet":
        return "Standard_R50", None, None  # the paper's ResNet-50: RobustBench's non-robust 'Standard_R50'
    recipe = p.recipe or "standard"
    if p.arch_key == "resnet18" and dataset == "cifar10":
        return f"resnet18-cifar10-{recipe}", None, None
    name = _builtin_name(p.arch)
    tag = recipe if dataset == "cifar10" else f"{dataset}-{recipe}"
    return name, f"PATH/TO/{name}-{tag}.pt", recipe


def _missing_rows(spec: TableSpec, prows: list[_PaperRow], measured: list[_Row]) -> list[_Row]:
    """The paper's ZeroPur rows no record fills here, each beside its paper number, with the command that would
    fill it (and, under the paper's first architecture, the project's ResNet-20 stand-in)."""
    out = []
    for p in prows:
        if spec.number == 5:  # the paper's one ImageNet classifier: any ZeroPur row measured here stands for it
            filled = [m for m in measured if m.defense not in _NOT_ZEROPUR]
        else:
            filled = [m for m in measured if m.defense not in _NOT_ZEROPUR and m.arch_key == p.arch_key
                      and m.stages == p.stages and m.recipe_key == p.recipe
                      and (spec.dataset is not None or m.dataset == spec.default_dataset)]
        if filled:
            continue
        defense = {"name": "zeropur", "stages": p.stages or "cf", "profile": "authors", "blur": p.blur}
        attacks = [m.attack_arg for m in spec.metrics if m.attack_arg]
        model, ckpt, recipe = _paper_model(p, spec.default_dataset)
        cmd = _run_command(spec.default_dataset, spec.threat, model, ckpt, defense, spec.setting, attacks,
                           n_ex=FILL_N_EX, recipe=recipe)
        standin = ""
        if p.group == 0 and p.recipe and spec.default_dataset in ("cifar10", "cifar100") and p.arch_key != "resnet20":
            standin = _run_command(spec.default_dataset, spec.threat, f"resnet20-{spec.default_dataset}-{p.recipe}",
                                   None, defense, spec.setting, attacks, n_ex=FILL_N_EX)
        cells: dict[str, str] = {CLEAN_COL: MISSING}
        fills = [CLEAN_COL]
        for m in spec.metrics:
            cells.update(_comparison_cells(m, p, None, None))
            for role in _ROLES[m.kind]:
                if role in ("protocol", "robust", "final"):
                    cells[metric_column(m, role)] = MISSING
                    fills.append(metric_column(m, role))
        if spec.adaptive_column:
            cells[ADAPTIVE_COL] = MISSING
        note = (f"the project's ResNet-20 stand-in (another architecture: a row beside this paper row, not filling "
                f"it): `{standin}`") if standin else ""
        out.append(_Row(section="missing", method=f"{p.method} (paper row; not run here)", paper_row=p.label,
                        architecture=p.arch, recipe=p.recipe or "not stated", n="", cells=cells, record="",
                        order=(p.order, p.group, 1), dataset=spec.default_dataset, stages=p.stages,
                        commands=[(cmd, tuple(fills), note)], standin=standin))
    return out


# ---------------------------------------------------------------------------------------------- rendering
def _fixed(r: _Row, spec: TableSpec) -> dict[str, str]:
    d = {"Method": r.method}
    if spec.number == 6:
        d["Dataset"] = r.dataset or spec.default_dataset
    d.update({"Paper row": r.paper_row, "Architecture": r.architecture, "Training recipe": r.recipe,
              "n": r.n or MISSING})
    return d


def _measured_frame(spec: TableSpec, rows: list[_Row], numbers: dict[str, int], fmt: str) -> pd.DataFrame:
    cols = measured_columns(spec.number)
    inci = {metric_column(m, "inci") for m in spec.metrics}
    data = []
    for r in rows:
        d = {**_fixed(r, spec), **{c: r.cells.get(c, MISSING) for c in cols[len(_fixed(r, spec)):-1]},
             "Record": r.record or MISSING}
        # The footnote marker goes on each cell that its command would fill.
        for cmd, headers, _ in r.commands:
            for h in headers:
                d[h] = f"{d[h]} [{numbers[cmd]}]"
        if fmt == "latex":
            d.update({h: {IN_CI: "yes", NOT_IN_CI: "no"}.get(d[h], d[h]) for h in inci})
        data.append(d)
    return pd.DataFrame(data, columns=cols)


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


def _legend(spec: TableSpec, ci_mark: str) -> str:
    names = " / ".join(m.name for m in spec.metrics)
    parts = [
        "Measured rows, side by side with the paper: every measured value is accuracy (%) with its 95% Wilson "
        "interval [lo, hi] over the record's n examples. \"Paper row\" names the paper's ZeroPur row of the same "
        "training recipe and stages; its numbers are for the paper's architecture and training (the architecture "
        "named there), while each measured row states its own architecture and training recipe, and \"Paper "
        "row\" says where they differ (\"measured on ...\", \"paper blur ...\"): a comparison across classifiers, "
        "not a reproduction, unless both agree.",
        f"M paper: the paper's number for metric M ({names}), as printed.",
    ]
    if any(m.kind != "natural" for m in spec.metrics):
        parts.append("M paper protocol: accuracy on the adversarial input alone, the clean result ignored, as the "
                     "paper reports it. M robust: right on the clean image AND on the attack's input "
                     f"(clean ∧ adversarial), so robust ≤ {CLEAN_COL}.")
    parts.append(f"M Δ = paper protocol − paper, in points. M paper in CI: {ci_mark} when the paper's number lies "
                 "within the measured 95% Wilson interval (of the paper-protocol value), else the other mark.")
    if any(m.kind == "natural" for m in spec.metrics):
        parts.append(f"Natural: the paper's natural accuracy against the measured {CLEAN_COL} (no attack, so no "
                     "separate robust value); its Δ and CI use that column.")
    if spec.number in (2, 3, 4, 5):
        parts.append("Columns carry a paper's or library's name only with their settings: PGD-20 = App. A.2's "
                     "PGD-20 (record key PGD-20), AutoAttack = AutoAttack's 'rand' version with its own settings "
                     "(record key AutoAttack-rand); another setting leaves – and a footnote. Transfer setting: "
                     "attacks crafted on the bare classifier, then purified; not a robustness claim.")
    if spec.number == 4:
        parts.append("CIFAR-100 examples: rows 0–19 of the shared test split are the original test images in the "
                     "original order; the rows after them are a fixed class-balanced random sample of the test set, "
                     "not the original order, so 'the first n' of a record is that sample.")
    parts.append("Profiles: authors = the authors' code (ILA weight 1e-4); paper = the paper's text; calibrated = "
                 "the authors' settings with the ILA weight fitted per classifier on clean training images "
                 "(the record's defense.calibration says how). Blur only: the classifier on g(x) (Table 1's "
                 "baseline).")
    if spec.adaptive_column:
        parts.append(f"{ADAPTIVE_COL}: from an adaptive record of the same classifier (same checkpoint sha256) and "
                     "the same ZeroPur settings: right on the clean image and not broken at any step of BPDA+EOT "
                     "(attack steps in parentheses), the adaptive counterpart of the transfer columns.")
    if spec.number == 6:
        parts.append("BPDA+EOT paper protocol (any step): not broken at any step, clean result ignored (Hill et "
                     "al.'s count, as the paper reports it); robust (any step): also right on the clean image; "
                     "final only (robust): clean ∧ the attack's last iterate alone (– when the attack has no "
                     "iterates). Each row names its attack by its key.")
    parts.append("A sweep's variants (zeropur-bench sweep) are left out: `zeropur-bench plot steps|grid` draws them; "
                 "settings changed with --zp are named in the Method column.")
    parts.append(f"ZeroPur purifies with its own L∞ budget whatever the threat model. {MISSING}: not measured here; "
                 f"the footnote gives the command that measures it (paper rows: {FILL_N_EX} examples; the paper "
                 "uses the full test set, --n-ex 10000).")
    return " ".join(parts)


def _footnotes(rows: list[_Row]) -> tuple[dict[str, int], dict[str, str]]:
    """One footnote number per distinct command (and its note)."""
    numbers: dict[str, int] = {}
    notes: dict[str, str] = {}
    for r in rows:
        for cmd, _, note in r.commands:
            numbers.setdefault(cmd, len(numbers) + 1)
            notes.setdefault(cmd, note)
    return numbers, notes


def _render_doc(spec: TableSpec, ref: pd.DataFrame, rows: list[_Row], fmt: str) -> str:
    numbers, notes = _footnotes(rows)
    ref_df = _reference_frame(spec, ref, fmt)
    meas_df = _measured_frame(spec, rows, numbers, fmt)
    legend_ref = (f"Reference rows copied from the paper (leaderboards/table{spec.number}.csv, each row with its "
                  f"source). {NOT_REPORTED}: not reported in the paper.")
    if spec.number in (2, 3, 4, 5):
        legend_ref += " ✓/✗: training required or not, as marked in the paper." if fmt != "latex" else ""
    if fmt == "markdown":
        legend_meas = _legend(spec, f"{IN_CI}")
        out = [f"## Table {spec.number}. {spec.title}", "", "### Paper (reference rows)", "", _frame_to(ref_df, fmt),
               "", legend_ref, "", "### Measured here", ""]
        out += [_frame_to(meas_df, fmt), ""] if rows else ["(no records and no paper ZeroPur rows)", ""]
        out += [legend_meas, ""]
        out += [f"[{n}] `{c}`" + (f"; {notes[c]}" if notes[c] else "") for c, n in numbers.items()]
        return "\n".join(out).rstrip() + "\n"
    legend_meas = _legend(spec, "yes")
    out = [f"% Table {spec.number}. {spec.title}", "% Paper (reference rows)", _frame_to(ref_df, fmt),
           f"% {legend_ref}", "% Measured here"]
    if rows:
        out.append(_frame_to(meas_df, fmt))
    out.append("\\par\\noindent{\\footnotesize " + _latex_escape(legend_meas) + "\\par")
    out += [f"[{n}] \\texttt{{{_latex_escape(c)}}}" + (f"; {_latex_escape(notes[c])}" if notes[c] else "") + "\\par"
            for c, n in numbers.items()]
    out.append("}")
    return "\n".join(out) + "\n"


_CSV_FIXED = {"Method": "method", "Dataset": "dataset", "Paper row": "paper_row", "Architecture": "architecture",
              "Training recipe": "training_recipe", "n": "n", "Record": "source"}


def _render_csv(spec: TableSpec, ref: pd.DataFrame, rows: list[_Row]) -> str:
    """One long table: ``section`` = paper | measured | missing, then the measured section's columns (fixed ones
    in snake case, ``source`` = the record path or the paper's source); paper rows put their numbers in the
    ``M paper`` columns. ``command``: what fills the row's "–" cells ("; " between several),
    ``standin_command``: the project's ResNet-20 stand-in for a missing paper row."""
    cols = measured_columns(spec.number)
    names = [_CSV_FIXED.get(c, c) for c in cols]
    out_cols = ["section", *names[:-1], "training_required", names[-1], "command", "standin_command"]
    data = []
    for _, r in ref.iterrows():
        d = {c: "" for c in out_cols}
        d.update({"section": "paper", "method": r["method"], "architecture": r.get("architecture", ""),
                  "training_recipe": r.get("classifier_recipe", ""),
                  "training_required": r.get("training_required", ""), "source": r["source"]})
        if "dataset" in d:
            d["dataset"] = spec.default_dataset if r.get("citation") == "this paper" else ""
        d.update({metric_column(m, "paper"): r[m.ref_col] for m in spec.metrics})
        data.append(d)
    for r in rows:
        d = {c: "" for c in out_cols}
        fixed = _fixed(r, spec)
        d.update({_CSV_FIXED[k]: ("" if v == MISSING else v) for k, v in fixed.items()})
        d.update({c: ("" if v == MISSING else v) for c, v in r.cells.items()})
        d.update({"section": r.section, "training_required": "", "source": r.record,
                  "command": "; ".join(c for c, _, _ in r.commands), "standin_command": r.standin})
        data.append(d)
    return pd.DataFrame(data, columns=out_cols).to_csv(index=False, lineterminator="\n")
