"""Figures of a parameter sweep: robust accuracy against one ZeroPur setting (``steps``, the paper's Fig. 5) and
over two (``grid``, Fig. 6).

The points are defense variants: of one transfer sweep record (one adversarial set judged by every variant), or of
adaptive records made one per value (``zeropur-bench sweep``). The swept setting is read from the variants'
resolved settings; everything else must be identical, or the plot is refused with one line naming the difference.
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass
from typing import Any, Sequence

from ...errors import UserError
from ...fmt import fmt_value
from ...keys import canon
from ...records import RecordView, VariantView
from .common import (Source, accuracy_axis, caption, check_out, defense_desc, diff, figure, legend, percent_axis,
                     record_context, save_figure, set_caption, uniq)

STEP_PARAMS = ("coarse_steps", "fine_steps")
DERIVED = {"coarse_steps": "coarse_step", "fine_steps": "fine_step"}  # step size = eps / steps unless set
CLEAN = "defended clean"


@dataclass(frozen=True)
class Point:
    """One defense variant of one record: a point of the sweep."""

    record: RecordView
    variant: VariantView
    name: str  # the record's file name

    @property
    def key(self) -> str:
        return self.variant.key

    @property
    def resolved(self) -> dict:
        return self.variant.resolved

    @property
    def label(self) -> str:
        return f"{self.name}:{self.key}"


def sweep_points(sources: Sequence[Source], stages: str | None, variants: Sequence[str] | None) -> list[Point]:
    """Every ZeroPur variant of the records (``--stages`` / ``--variant`` filters); the bare classifier is no
    point."""
    pts = []
    for s in sources:
        for v in s.record.variants.values():
            if v.name == "none" or (stages and v.stages != stages) or (variants and v.key not in variants):
                continue
            pts.append(Point(s.record, v, s.name))
    if not pts:
        what = f" with stages {stages}" if stages else (f" named {', '.join(variants)}" if variants else "")
        raise UserError(f"no ZeroPur variants{what} in {', '.join(s.name for s in sources)}")
    return pts


def _scalar(v: Any) -> bool:
    return isinstance(v, (int, float, str, bool)) or v is None


def detect_swept(pts: Sequence[Point], want: int, given: Sequence[str | None]) -> list[str]:
    """The swept parameters: ``given`` (``--param``/``--param2``) or those resolved values that vary."""
    given = [g for g in given if g]
    if given:
        for g in given:
            if any(g not in p.resolved for p in pts):
                raise UserError(f"--param {g} is not a ZeroPur setting of these records; known: "
                                f"{', '.join(sorted(k for k, v in pts[0].resolved.items() if _scalar(v)))}")
        if len(given) != want:
            raise UserError(f"this plot sweeps {want} parameter(s); got {len(given)} ({', '.join(given)})")
        return list(given)
    keys = [k for k, v in pts[0].resolved.items() if _scalar(v)]
    varying = [k for k in keys if len({json.dumps(p.resolved.get(k)) for p in pts}) > 1]
    for p, step in DERIVED.items():  # a step size derived from the step count moves with it
        if p in varying and step in varying:
            varying.remove(step)
    if want == 2 and set(STEP_PARAMS) <= set(varying):
        varying = list(STEP_PARAMS) + [k for k in varying if k not in STEP_PARAMS]
    if len(varying) < want:
        raise UserError(f"the records hold {len(pts)} defense variant(s) that do not vary in "
                        f"{'two parameters' if want == 2 else 'any parameter'} ({', '.join(p.label for p in pts[:4])}"
                        f"{' ...' if len(pts) > 4 else ''}); make them with `zeropur-bench sweep --param ...`"
                        + (" --param2 ..." if want == 2 else ""))
    if len(varying) > want:
        raise UserError(f"the records vary in {', '.join(varying)}; a {'grid' if want == 2 else 'steps'} plot "
                        f"sweeps {want}: choose with --param{' and --param2' if want == 2 else ''}, or filter the "
                        "variants with --stages / --variant")
    return varying


def _drop_swept(v: VariantView, swept: Sequence[str]) -> dict:
    """A variant's defense without the swept parameters (and the step sizes derived from them)."""
    gone = set(swept) | {DERIVED[p] for p in swept if p in DERIVED}
    spec = {"name": v.name, "profile": v.profile, "stages": v.stages, "blur": v.blur,
            "overrides": {k: x for k, x in v.overrides.items() if k not in gone}}
    res = {k: x for k, x in v.resolved.items() if k not in gone and k != "channels_last"}
    return canon({"spec": spec, "resolved": res})


def check_family(pts: Sequence[Point], swept: Sequence[str], attacks: Sequence[str]) -> None:
    """Refuse points that differ in anything but the swept parameters (one line naming the difference)."""
    ref = pts[0]
    ctx0, def0 = record_context(ref.record, attacks), _drop_swept(ref.variant, swept)
    for p in pts[1:]:
        ctx = record_context(p.record, attacks)
        if ctx != ctx0:
            raise UserError(f"mismatched records: {p.name} and {ref.name} differ in more than "
                            f"{'/'.join(swept)} ({diff(ctx0, ctx)}); plot records of one sweep")
        d = _drop_swept(p.variant, swept)
        if d != def0:
            raise UserError(f"mismatched defense variants: {p.label} and {ref.label} differ in more than "
                            f"{'/'.join(swept)} ({diff(def0, d)}); filter with --stages / --variant, or plot one "
                            "sweep")
    seen: dict[tuple, str] = {}
    for p in pts:
        at = tuple(json.dumps(p.resolved.get(s)) for s in swept)
        if at in seen:
            where = ", ".join(f"{s}={p.resolved.get(s)}" for s in swept)
            raise UserError(f"two records for {where}: {seen[at]} and {p.label}; give one per value")
        seen[at] = p.label


def _attacks_of(pts: Sequence[Point], attacks: Sequence[str] | None) -> list[str]:
    have = list(pts[0].variant.summary["robust_acc"])
    if attacks:
        missing = [a for a in attacks if any(a not in p.variant.summary["robust_acc"] for p in pts)]
        if missing:
            raise UserError(f"attack {missing[0]!r} is not in every record; the records ran: {', '.join(have)}")
        return list(attacks)
    return have


def _acc_row(p: Point, series: str, attack: str | None) -> dict:
    m = p.variant.metric("defended_clean_acc") if attack is None else p.variant.metric("robust_acc", attack)
    lo, hi = m.ci if m.ci is not None else (None, None)
    return {"series": series, "attack": attack or "", "acc": m.acc, "ci95_lo": lo, "ci95_hi": hi,
            "n": p.variant.summary["n"], "variant": p.key, "record": p.name}


def _sort_key(v: Any) -> Any:
    return (0, float(v)) if isinstance(v, (int, float)) and not isinstance(v, bool) else (1, str(v))


def _uniq_records(pts: Sequence[Point]) -> list[RecordView]:
    out, seen = [], set()
    for p in pts:
        if id(p.record) not in seen:
            seen.add(id(p.record))
            out.append(p.record)
    return out


def _family(sources: Sequence[Source], want: int, given: Sequence[str | None], attacks: Sequence[str] | None,
            stages: str | None, variants: Sequence[str] | None) -> tuple[list[Point], list[str], list[str]]:
    """The checked points of one sweep, its swept parameter(s) and the attacks drawn."""
    pts = sweep_points(sources, stages, variants)
    swept = detect_swept(pts, want, given)
    atk = _attacks_of(pts, attacks)
    check_family(pts, swept, atk)
    return pts, swept, atk


def _draw_steps(ax: Any, pts: Sequence[Point], swept: str, series: Sequence[tuple[str, str | None]],
                rows: Sequence[dict], setting: str) -> None:
    numeric = all(isinstance(p.resolved[swept], (int, float)) for p in pts)
    for i, (name, _) in enumerate(series):
        rs = [r for r in rows if r["series"] == name]
        xs = [r["value"] for r in rs] if numeric else list(range(len(rs)))
        style = dict(color="0.45", linestyle=":", marker="s") if name == CLEAN else dict(color=f"C{i}", marker="o")
        label = name if name == CLEAN else f"{name}" + (" (any step)" if setting == "adaptive" else "")
        ax.plot(xs, [r["acc"] for r in rs], label=label, **style)
        ax.fill_between(xs, [r["ci95_lo"] for r in rs], [r["ci95_hi"] for r in rs], color=style["color"],
                        alpha=0.15, linewidth=0)
    if numeric:
        ax.set_xticks([p.resolved[swept] for p in pts], [fmt_value(p.resolved[swept]) for p in pts])
    else:
        ax.set_xticks(range(len(pts)), [str(p.resolved[swept]) for p in pts])
    ax.set_xlabel(swept.replace("_", " "))
    accuracy_axis(ax)


def plot_steps(sources: Sequence[Source], out: str | os.PathLike, *, param: str | None = None,
               attacks: Sequence[str] | None = None, stages: str | None = None,
               variants: Sequence[str] | None = None, clean: bool = True) -> dict:
    """Robust accuracy (95% Wilson band) against one purification parameter, one line per attack, plus the
    defended clean accuracy (paper Fig. 5)."""
    check_out(out)
    pts, (swept,), atk = _family(sources, 1, [param], attacks, stages, variants)
    pts = sorted(pts, key=lambda p: _sort_key(p.resolved[swept]))
    series = ([(CLEAN, None)] if clean else []) + [(a, a) for a in atk]
    rows = [{"param": swept, "value": p.resolved[swept], **_acc_row(p, name, a)} for name, a in series for p in pts]
    fig = figure(6.8, 5.0)
    ax = fig.add_subplot(1, 1, 1)
    _draw_steps(ax, pts, swept, series, rows, pts[0].record.setting)
    legend(fig, ax, title="95% Wilson bands")
    set_caption(fig, f"Robust accuracy vs {swept.replace('_', ' ')}",
                caption(_uniq_records(pts), defense=defense_desc(pts[0].variant, [swept]) + f", {swept} swept",
                        attacks=atk))
    path, csv_path = save_figure(fig, out, ["series", "attack", "param", "value", "acc", "ci95_lo", "ci95_hi", "n",
                                            "variant", "record"], rows)
    return {"figure": str(path), "csv": str(csv_path), "rows": rows, "param": swept}


def _draw_grid(fig: Any, series: Sequence[tuple[str, str | None]], rows: Sequence[dict], pa: str, pb: str,
               av: Sequence[Any], bv: Sequence[Any]) -> None:
    axes = fig.subplots(1, len(series), squeeze=False)[0]
    im = None
    for ax, (name, _) in zip(axes, series):
        m = [[next(r["acc"] for r in rows if r["series"] == name and r[pa] == x and r[pb] == y) for y in bv]
             for x in av]
        im = ax.imshow(m, vmin=0.0, vmax=1.0, cmap="viridis", origin="lower", aspect="auto")
        for i in range(len(av)):
            for j in range(len(bv)):
                ax.text(j, i, f"{100 * m[i][j]:.1f}", ha="center", va="center", fontsize=8,
                        color="white" if m[i][j] < 0.6 else "black")
        ax.set_xticks(range(len(bv)), [str(v) for v in bv])
        ax.set_yticks(range(len(av)), [str(v) for v in av])
        ax.set_xlabel(pb.replace("_", " "))
        ax.set_ylabel(pa.replace("_", " "))
        ax.set_title(name, fontsize=9)
    if im is not None:
        cb = fig.colorbar(im, ax=list(axes), shrink=0.85)
        cb.set_label("accuracy")
        percent_axis(cb.ax)


def plot_grid(sources: Sequence[Source], out: str | os.PathLike, *, param: str | None = None,
              param2: str | None = None, attacks: Sequence[str] | None = None, stages: str | None = None,
              variants: Sequence[str] | None = None, clean: bool = True) -> dict:
    """Heat maps of robust accuracy over two parameters, coarse × fine steps by default, one panel per attack plus
    defended clean (paper Fig. 6)."""
    check_out(out)
    given = [param, param2] if (param or param2) else [None, None]
    pts, (pa, pb), atk = _family(sources, 2, given, attacks, stages, variants)
    av = sorted(uniq(p.resolved[pa] for p in pts), key=_sort_key)
    bv = sorted(uniq(p.resolved[pb] for p in pts), key=_sort_key)
    cell = {(p.resolved[pa], p.resolved[pb]): p for p in pts}
    missing = [(a, b) for a in av for b in bv if (a, b) not in cell]
    if missing:
        shown = "; ".join(f"{pa}={a}, {pb}={b}" for a, b in missing[:4]) + (" ..." if len(missing) > 4 else "")
        raise UserError(f"the {pa} × {pb} grid is incomplete: no record for {shown}; finish the sweep "
                        f"(`zeropur-bench sweep ... --param {pa} --param2 {pb}` resumes)")
    series = ([(CLEAN, None)] if clean else []) + [(a, a) for a in atk]
    rows = [{pa: x, pb: y, **_acc_row(cell[(x, y)], name, a)} for name, a in series for x in av for y in bv]
    fig = figure(3.3 * len(series) + 0.8, 3.6)
    _draw_grid(fig, series, rows, pa, pb, av, bv)
    set_caption(fig, f"Robust accuracy (%) over {pa.replace('_', ' ')} × {pb.replace('_', ' ')}",
                caption(_uniq_records(pts), defense=defense_desc(pts[0].variant, [pa, pb]) + f", {pa} × {pb} swept",
                        attacks=atk))
    path, csv_path = save_figure(fig, out, ["series", "attack", pa, pb, "acc", "ci95_lo", "ci95_hi", "n", "variant",
                                            "record"], rows)
    return {"figure": str(path), "csv": str(csv_path), "rows": rows, "params": [pa, pb]}
