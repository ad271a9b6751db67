"""Rendering one of the paper's tables: the paper's layout with the measured rows beneath their paper rows, a
compact table of robust accuracy and cost, the missing list, and a CSV with every number at full precision."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pandas as pd
from tabulate import tabulate

from ..fmt import pct_ci, signed
from ..records import Metric as Value
from .commands import Missing
from .match import MeasuredRow
from .paper import COLUMNS, Metric, PaperRow, TableSpec

MISSING = "–"  # a cell not measured (the missing list says what fills it)
OUTSIDE = "†"  # the paper's number lies outside the measured 95% interval
DIGITS = 1


def measured_value(m: Metric, r: MeasuredRow) -> Value:
    """What row ``r`` measured for paper metric ``m``, on the paper's protocol (adversarial input alone)."""
    v = r.variant
    if m.kind == "natural":
        return v.metric("defended_clean_acc")
    if m.kind == "bpda":
        return v.metric("adv_acc", r.attack.key) if r.attack is not None else Value(None, None)
    return v.metric("adv_acc", m.key) if r.record.attack(m.key) is not None else Value(None, None)


def outside_ci(val: Value, paper: float) -> bool | None:
    if val.ci is None:
        return None
    lo, hi = 100 * val.ci[0], 100 * val.ci[1]
    return not (lo - 1e-9 <= paper <= hi + 1e-9)


def cell(m: Metric, r: MeasuredRow) -> str:
    """``value [lo, hi] (Δ vs paper)`` with † where the paper's number lies outside the interval."""
    val = measured_value(m, r)
    if not val.measured:
        return MISSING
    text = pct_ci(val.acc, val.ci, DIGITS)
    paper = r.paper.number(m) if r.paper is not None else None
    if paper is None:
        return text
    out = outside_ci(val, paper)
    return f"{text} ({signed(100 * val.acc - paper, DIGITS)})" + (OUTSIDE if out else "")


def _mark(flag: str) -> str:
    return {"true": "✓", "false": "✗"}.get(flag, flag)


def row_title(r: MeasuredRow, where: bool = True) -> str:
    vs = f" vs {r.attack.key}" if r.attack is not None else ""
    return f"↳ {r.rid} {r.label}{vs}" + (f" · {r.where}" if where else "")


# -- the paper's layout ------------------------------------------------------------------------------------------
def main_frame(spec: TableSpec, prows: list[PaperRow], rows: list[MeasuredRow]) -> pd.DataFrame:
    """The paper's table in the paper's layout, each paper row followed by the rows measured beneath it (the rows
    of other purifiers are in :func:`purifiers_frame`)."""
    rows = [r for r in rows if not r.purifier]
    if spec.grouped:
        return _grouped_frame(spec, prows, rows)
    cols = [*spec.columns, *(m.name for m in spec.metrics)]
    data = []
    for p in prows:
        data.append({**{c: _fixed(c, p) for c in spec.columns}, **{m.name: p.printed(m) for m in spec.metrics}})
        for r in (r for r in rows if r.paper is p):
            data.append(_flat_measured(spec, r, cols))
    data += [_flat_measured(spec, r, cols) for r in rows if r.paper is None]
    return pd.DataFrame(data, columns=cols)


def _fixed(column: str, p: PaperRow) -> str:
    """A fixed column of a paper row, by what fills it (:data:`~.paper.COLUMNS`)."""
    source = COLUMNS[column]
    if source == "method":
        return p.method
    if source == "arch":
        return p.arch
    if source.startswith("mark:"):
        return _mark(p.raw.get(source[5:], ""))
    if source.startswith("text:"):
        return p.raw.get(source[5:], "")
    return p.raw.get("purification_model") if p.raw.get("model_required") == "true" else _mark("false")


def purifiers_frame(spec: TableSpec, rows: list[MeasuredRow]) -> pd.DataFrame:
    """The measured variants of other purifiers (no row of the paper's table can match them), in the table's
    metric columns."""
    cols = ["Purifier", *(m.name for m in spec.metrics)]
    return pd.DataFrame([{"Purifier": row_title(r), **{m.name: cell(m, r) for m in spec.metrics}}
                         for r in rows if r.purifier], columns=cols)


def _flat_measured(spec: TableSpec, r: MeasuredRow, cols: list[str]) -> dict[str, str]:
    d = {c: "" for c in cols}
    if "Arch" in d:
        d["Method"], d["Arch"] = row_title(r, where=False), r.where.replace(r.arch.short, r.arch.label, 1)
    else:
        d["Method"] = row_title(r)
    d.update({m.name: cell(m, r) for m in spec.metrics})
    return d


def _grouped_frame(spec: TableSpec, prows: list[PaperRow], rows: list[MeasuredRow]) -> pd.DataFrame:
    """Table 2: the architecture groups side by side, rows paired by their position in the paper."""
    archs = list(dict.fromkeys(p.arch for p in prows))
    cols = ["Training Required"] + [f"{a}: {h}" for a in archs for h in ("Method", *(m.name for m in spec.metrics))]
    by_pos: dict[int, list[PaperRow]] = {}
    for p in prows:
        by_pos.setdefault(p.position, []).append(p)
    data = []

    def measured(r: MeasuredRow, arch: str) -> dict[str, str]:
        d = {c: "" for c in cols}
        d[f"{arch}: Method"] = row_title(r)
        d.update({f"{arch}: {m.name}": cell(m, r) for m in spec.metrics})
        return d

    for pos in sorted(by_pos):
        group = by_pos[pos]
        d = {c: "" for c in cols}
        d["Training Required"] = _mark(group[0].raw.get("training_required", ""))
        for p in group:
            d[f"{p.arch}: Method"] = p.method
            d.update({f"{p.arch}: {m.name}": p.printed(m) for m in spec.metrics})
        data.append(d)
        data += [measured(r, r.paper.arch) for p in group for r in rows if r.paper is p]
    data += [measured(r, archs[0]) for r in rows if r.paper is None]
    return pd.DataFrame(data, columns=cols)


# -- robust accuracy and cost ----------------------------------------------------------------------------------------
ADAPTIVE_COL = "BPDA+EOT robust (adaptive, any step)"
CLEAN_COL = "Clean (defended)"
PASSES_COL = "Passes / prediction"


def _passes(r: MeasuredRow) -> str:
    p = r.variant.passes_per_prediction
    return MISSING if p is None else (f"{p:.0f}" if p >= 10 else f"{p:.3g}")


def compact_frame(spec: TableSpec, rows: list[MeasuredRow]) -> pd.DataFrame:
    """Per measured row: defended clean accuracy, robust accuracy (clean ∧ adversarial) per attack, the
    adaptive column, the defense's classifier passes per prediction, and the record file."""
    data = []
    for r in rows:
        v = r.variant
        d = {"Row": f"{r.rid} {r.label}" + (f" vs {r.attack.key}" if r.attack is not None else "")
             + f" · {r.classifier}",
             CLEAN_COL: pct_ci(*_mc(v.metric("defended_clean_acc"))) or MISSING}
        record = str(r.record.path or MISSING)
        for m in spec.metrics:
            if m.kind == "attack":
                val = v.metric("robust_acc", m.key) if r.record.attack(m.key) else Value(None, None)
                d[f"{m.name} robust"] = pct_ci(*_mc(val)) or MISSING
            elif m.kind == "bpda":
                d["BPDA+EOT robust (any step)"] = pct_ci(*_mc(v.metric("robust_acc", r.attack.key))) or MISSING
                d["BPDA+EOT robust (final only)"] = pct_ci(*_mc(v.metric("robust_final_acc", r.attack.key))) \
                    or MISSING
                fwd = r.record.cost(r.attack.key).get("forward_passes_per_image")
                d["Attack passes / image"] = f"{fwd:.0f}" if isinstance(fwd, (int, float)) else MISSING
        if spec.adaptive_column:
            a = r.adaptive
            d[ADAPTIVE_COL] = MISSING if a is None else (
                f"{pct_ci(a.metric.acc, a.metric.ci, DIGITS)} ({a.attack.params.get('steps')} steps, "
                f"n={a.record.n})")
            if a is not None:
                record += f"; BPDA+EOT: {a.record.path}"
        d[PASSES_COL] = _passes(r)
        d["Record"] = record
        data.append(d)
    return pd.DataFrame(data)


SUITE = (("bpda-eot", "BPDA+EOT"), ("square", "Square"), ("defense-aware", "Defense-aware"), ("pgd-eot", "PGD-EOT"),
         ("autoattack", "AutoAttack-BPDA"))
WORST_COL = "Worst case (clean ∧ every attack)"


def _suite_attack(r: MeasuredRow, family: str) -> Any:
    if family == "bpda-eot":
        return r.attack
    return next((a for a in r.record.attacks if a.family == family), None)


def suite_frame(rows: list[MeasuredRow]) -> pd.DataFrame:
    """Table 6: per measured row, robust accuracy under each attack family of the adaptive suite (a cascade's
    later attacks on the survivors of the earlier ones, said in the cell) and the per-example worst case."""
    data = []
    for r in rows:
        v = r.variant
        attacked = v.summary.get("attacked_n") or {}
        d = {"Row": f"{r.rid} {r.label} · {r.classifier}", "n": str(v.n),
             CLEAN_COL: pct_ci(*_mc(v.metric("defended_clean_acc"))) or MISSING}
        for family, name in SUITE:
            a = _suite_attack(r, family)
            cell = pct_ci(*_mc(v.metric("robust_acc", a.key))) if a is not None else None
            if cell and a.key in attacked and attacked[a.key] < v.n:
                cell += f" · on {attacked[a.key]} survivors"
            d[name] = cell or MISSING
        d[WORST_COL] = pct_ci(*_mc(v.metric("worst_case_acc"))) or MISSING
        data.append(d)
    return pd.DataFrame(data)


def cost_frame(rows: list[MeasuredRow]) -> pd.DataFrame:
    """Table 6: how hard each number was attacked: classifier forward passes per image (all attacked examples'
    passes over n) and the wall time of each cell on the CPU that made the record."""
    data = []
    for r in rows:
        d, total_p, total_s = {"Row": r.rid}, 0.0, 0.0
        for family, name in SUITE:
            a = _suite_attack(r, family)
            c = r.record.cost(a.key) if a is not None else {}
            fwd, sec = c.get("forward_passes_per_image"), c.get("seconds_per_image")
            if not isinstance(fwd, (int, float)) or not isinstance(sec, (int, float)):
                d[name] = MISSING
                continue
            total_p, total_s = total_p + fwd, total_s + sec
            d[name] = f"{fwd:,.0f} passes/img · {sec * r.variant.n / 60:.1f} min"
        d["Total"] = f"{total_p:,.0f} passes/img · {total_s * r.variant.n / 60:.1f} min"
        d["Record"] = str(r.record.path or MISSING)
        data.append(d)
    return pd.DataFrame(data)


def _mc(val: Value) -> tuple[float | None, Any, int]:
    return val.acc, val.ci, DIGITS


# -- the whole document ----------------------------------------------------------------------------------------------
@dataclass
class Document:
    spec: TableSpec
    prows: list[PaperRow]
    rows: list[MeasuredRow]
    missing: list[Missing]
    paired: pd.DataFrame | None = None


def legend(spec: TableSpec) -> list[str]:
    lines = ["↳ m1, m2, …: rows measured here, under the paper row of the same recipe and stages; each names its "
             "architecture (not the paper's: a comparison across classifiers), recipe, profile and n. Rows with no "
             "paper row (other recipes, adversarially trained classifiers, blur alone, no defense) come last, no Δ.",
             f"Cells: accuracy % [95% Wilson CI] (Δ = measured − paper, points), counted as the paper counts (the "
             f"attack's input alone, clean result ignored); {OUTSIDE}: the paper's number lies outside the CI."]
    if spec.setting == "transfer":
        lines.append("Transfer: attacks crafted on the bare classifier, then purified; not a robustness claim. "
                     "PGD-20 and AutoAttack ('rand') only with their own settings.")
    else:
        lines.append("BPDA+EOT: adaptive; an image counts if no step broke it (Hill et al.). Each row names its attack.")
    lines.append("Profiles: authors = the authors' code (ILA weight 1e-4); paper = the paper's text; calibrated = "
                 "ILA weight fitted per classifier on clean training images.")
    return lines + list(spec.notes)


def _md(df: pd.DataFrame) -> str:
    return tabulate(df.values.tolist(), headers=list(df.columns), tablefmt="github", disable_numparse=True)


def render_markdown(doc: Document) -> str:
    spec = doc.spec
    out = [f"## Table {spec.number}. {spec.title}", "", _md(main_frame(spec, doc.prows, doc.rows)), ""]
    out += legend(spec) + ["", f"Paper rows: leaderboards/{spec.leaderboard} (each with its source)."]
    if any(r.purifier for r in doc.rows):
        out += ["", "### Measured purifiers (no row of the paper's table): measured here, one protocol", "",
                _md(purifiers_frame(spec, doc.rows)),
                "", "Other purifiers measured under the table's protocol (registered defenses and plugins): the "
                "cells are as above; their robust accuracy is in the next section. Ranked by the worst case over "
                "the whole adaptive cascade, beside ZeroPur and an adversarially trained reference, in "
                "results/purifiers.md (`zeropur-bench purifiers`)."]
    if doc.rows:
        out += ["", "### Measured rows: robust accuracy (clean ∧ adversarial) and cost", "",
                _md(compact_frame(spec, doc.rows)), "",
                f"Robust: right on the clean image AND on the attack's input, so robust ≤ {CLEAN_COL}. "
                f"{PASSES_COL}: classifier forward passes per defended prediction, measured."
                + (f" {ADAPTIVE_COL}: from the adaptive record of the same classifier and ZeroPur settings."
                   if spec.adaptive_column else "")]
    if spec.suite and doc.rows:
        out += ["", "### Worst case over the adaptive suite", "", _md(suite_frame(doc.rows)), "",
                "Robust accuracy (clean ∧ adversarial, any step) per attack; in a cascade each attack after the "
                "first ran only on the survivors of the ones before it, so its cell is the worst case so far. "
                f"{WORST_COL}: per example, over every attack of the record (Wilson 95% CI).", "",
                "### Attack cost", "", _md(cost_frame(doc.rows)), "",
                "Classifier forward passes per image (inside the purifier too) and the wall time of each cell on the "
                "2-core CPU that made the record (one torch thread)."]
    if doc.missing:
        out += ["", "### Not measured here", ""]
        for item in doc.missing:
            cmds = " then ".join(f"`{c}`" for c in item.commands)
            out.append(f"- {item.what}" + (f": {cmds}" if cmds else "") + (f" ({item.note})" if item.note else ""))
    if doc.paired is not None and len(doc.paired):
        out += ["", "### Paired comparisons (same examples, same adversarial set)", "", _md(doc.paired), "",
                "Δ: points, first variant minus second; p: exact two-sided McNemar test on the per-example vectors "
                "of the record."]
    return "\n".join(out).rstrip() + "\n"


def _latex_escape(s: str) -> str:
    repl = {"\\": r"\textbackslash{}", "&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#", "_": r"\_",
            "{": r"\{", "}": r"\}", "~": r"\textasciitilde{}", "^": r"\textasciicircum{}"}
    return "".join(repl.get(c, c) for c in s)


def render_latex(doc: Document) -> str:
    spec = doc.spec

    def tex(df: pd.DataFrame) -> str:
        esc = df.map(lambda x: _latex_escape(str(x)))
        return tabulate(esc.values.tolist(), headers=[_latex_escape(c) for c in df.columns],
                        tablefmt="latex_raw", disable_numparse=True)

    out = [f"% Table {spec.number}. {spec.title}", tex(main_frame(spec, doc.prows, doc.rows))]
    if doc.rows:
        out += ["% Measured rows: robust accuracy (clean and adversarial) and cost", tex(compact_frame(spec, doc.rows))]
    out.append("\\par\\noindent{\\footnotesize " + _latex_escape(" ".join(legend(spec))) + "\\par")
    for item in doc.missing:
        cmds = "; ".join(f"\\texttt{{{_latex_escape(c)}}}" for c in item.commands)
        out.append(_latex_escape(item.what) + (f": {cmds}" if cmds else "") + "\\par")
    out.append("}")
    return "\n".join(out) + "\n"


CSV_COLUMNS = ["table", "section", "row", "method", "paper_row", "architecture", "recipe", "profile", "stages",
               "blur", "n", "column", "measure", "value", "ci95_lo", "ci95_hi", "paper", "delta_points",
               "paper_outside_ci", "record"]


def render_csv(doc: Document) -> str:
    """One long table, every number at full precision: measured values and intervals as the record's fractions;
    ``paper`` in percent as printed; ``delta_points`` = 100·value − paper."""
    spec, data = doc.spec, []
    for p in doc.prows:
        for m in spec.metrics:
            data.append({"section": "paper", "method": p.method, "architecture": p.arch, "recipe": p.recipe,
                         "stages": p.stages, "blur": p.blur, "column": m.name, "measure": "paper",
                         "paper": p.values.get(m.ref_col, ""), "record": p.raw.get("source", "")})
    for r in doc.rows:
        base = {"section": "measured", "row": r.rid, "method": r.label, "paper_row": r.paper.method if r.paper else "",
                "architecture": r.arch.label, "recipe": r.record.recipe or "", "profile": r.variant.profile or "",
                "stages": r.variant.stages or "", "blur": r.variant.blur or "", "n": str(r.variant.n),
                "record": r.record.path or ""}
        for col, measure, val, paper in _measured_numbers(spec, r):
            d = {**base, "column": col, "measure": measure}
            if val.measured:
                d.update(value=repr(val.acc), ci95_lo=repr(val.ci[0]) if val.ci else "",
                         ci95_hi=repr(val.ci[1]) if val.ci else "")
                if paper is not None:
                    d.update(paper=f"{paper:g}", delta_points=repr(100 * val.acc - paper),
                             paper_outside_ci=str(bool(outside_ci(val, paper))).lower())
            data.append(d)
        if r.variant.passes_per_prediction is not None:
            data.append({**base, "column": PASSES_COL, "measure": "passes_per_prediction",
                         "value": repr(r.variant.passes_per_prediction)})
    for d in data:
        d["table"] = spec.number
    frame = pd.DataFrame([{c: d.get(c, "") for c in CSV_COLUMNS} for d in data], columns=CSV_COLUMNS, dtype=str)
    return frame.to_csv(index=False, lineterminator="\n")


def _measured_numbers(spec: TableSpec, r: MeasuredRow) -> list[tuple[str, str, Value, float | None]]:
    v = r.variant
    out = [(CLEAN_COL, "defended_clean", v.metric("defended_clean_acc"), None)]
    for m in spec.metrics:
        paper = r.paper.number(m) if r.paper is not None else None
        out.append((m.name, "paper_protocol", measured_value(m, r), paper))
        if m.kind == "attack" and r.record.attack(m.key):
            out.append((m.name, "robust", v.metric("robust_acc", m.key), None))
        if m.kind == "bpda" and r.attack is not None:
            out += [(m.name, "robust", v.metric("robust_acc", r.attack.key), None),
                    (m.name, "robust_final", v.metric("robust_final_acc", r.attack.key), None)]
    if r.adaptive is not None:
        out.append((ADAPTIVE_COL, "robust", r.adaptive.metric, None))
    return out


__all__ = ["ADAPTIVE_COL", "CLEAN_COL", "CSV_COLUMNS", "Document", "MISSING", "OUTSIDE", "cell", "compact_frame",
           "legend", "main_frame", "measured_value", "render_csv", "render_latex", "render_markdown"]
