"""Accuracy curves: over an adaptive attack's iterations (``attack-curve``) and over eps (``eps``)."""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Sequence

from ...errors import UserError
from ...keys import canon
from ...records import RecordView
from .common import (Source, accuracy_axis, bare_attack_without_eps, caption, check_out, defense_desc, diff, figure,
                     integer_x, join, legend, model_desc, model_id, record_model_desc, sanity_defense_desc, save_figure,
                     set_caption, uniq)


# -- attack curves -----------------------------------------------------------------------------------------------------
def _curve_rows(sources: Sequence[Source], attacks: Sequence[str] | None, variants: Sequence[str] | None
                ) -> tuple[list[dict], list[tuple[Source, str, str]], list[RecordView]]:
    rows, lines, recs = [], [], []
    for s in sources:
        got = False
        for k, v in s.record.variants.items():
            if variants and k not in variants:
                continue
            for a, curve in (v.summary.get("curves") or {}).items():
                if attacks and a not in attacks:
                    continue
                got = True
                lines.append((s, k, a))
                for t, (any_, fin) in enumerate(zip(curve["robust_any_step"], curve["robust_final"])):
                    rows.append({"record": s.name, "variant": k, "attack": a, "t": t, "robust_any_step": any_,
                                 "robust_final": fin, "n": v.summary["n"]})
        if got:
            recs.append(s.record)
    return rows, lines, recs


def plot_attack_curve(sources: Sequence[Source], out: str | os.PathLike, *, attacks: Sequence[str] | None = None,
                      variants: Sequence[str] | None = None) -> dict:
    """Robust accuracy against the attack's iteration for adaptive iterative attacks (``summary["curves"]``): any
    step (solid; an image broken at any iterate stays broken) and the iterate itself (dashed), so an oscillating
    attack is visible."""
    check_out(out)
    rows, lines, recs = _curve_rows(sources, attacks, variants)
    if not lines:
        settings = join(s.record.setting for s in sources)
        raise UserError(f"no per-step attack curves in {', '.join(s.name for s in sources)} (setting {settings}"
                        f"{'; filtered by --attack/--variant' if attacks or variants else ''}); attack-curve needs "
                        "adaptive records of iterative attacks, e.g. `zeropur-bench run --setting adaptive --attack "
                        "bpda-eot:steps=10`")
    pairs = [(k, a) for _, k, a in lines]
    models = uniq(record_model_desc(s.record) for s, _, _ in lines)
    fig = figure(6.8, 5.0)
    ax = fig.add_subplot(1, 1, 1)
    for i, (s, k, a) in enumerate(lines):
        rs = [r for r in rows if r["record"] == s.name and r["variant"] == k and r["attack"] == a]
        name = f"{k} · {a}" + (f" ({record_model_desc(s.record)})" if len(models) > 1 else "") \
            + (f" [{Path(s.name).stem[-8:]}]" if pairs.count((k, a)) > 1 else "")
        ts = [r["t"] for r in rs]
        ax.plot(ts, [r["robust_any_step"] for r in rs], color=f"C{i}", marker="o", markersize=3,
                label=f"{name}: any step")
        ax.plot(ts, [r["robust_final"] for r in rs], color=f"C{i}", linestyle="--", marker="x", markersize=3,
                label=f"{name}: this iterate only")
    integer_x(ax)
    ax.set_xlabel("attack iteration t (0 = start)")
    accuracy_axis(ax)
    legend(fig, ax)
    set_caption(fig, "Robust accuracy over the attack's iterations: any step (solid) vs the iterate itself (dashed)",
                caption(recs, defense=join([f"{k}: {defense_desc(s.record.variants[k])}" for s, k, _ in lines], "; "),
                        attacks=[a for _, k, a in lines], setting=join(r.setting for r in recs)))
    path, csv_path = save_figure(fig, out, ["record", "variant", "attack", "t", "robust_any_step", "robust_final",
                                            "n"], rows)
    return {"figure": str(path), "csv": str(csv_path), "rows": rows}


# -- eps ---------------------------------------------------------------------------------------------------------------
def _eps_context(s: Source) -> dict:
    """What an eps plot's inputs must share: one model on one data slice."""
    if s.kind == "sanity":
        r = s.sanity
        ctx = {"dataset": r.dataset, "threat": r.threat, "split": r.split,
               "model": model_id(r.model_info.get("arch") or r.arch or r.model, r.model_info, r.model),
               "n": r.n, "data_seed": r.data_seed}
    else:
        rv = s.record
        ctx = {"dataset": rv.dataset, "threat": rv.threat, "split": rv.split,
               "model": model_id(rv.model_info.get("arch") or rv.arch, rv.model_info, rv.model),
               "n": rv.n, "data_seed": rv.data_info.get("data_seed")}
    return canon(ctx)


class _EpsRows:
    """The rows of an eps plot: one per (series, eps); ``_sid`` tells series apart before they are named."""

    def __init__(self, attacks: Sequence[str] | None) -> None:
        self.attacks = attacks
        self.rows: list[dict] = []

    def wanted(self, key: str, without_eps: str) -> bool:
        return not self.attacks or key in self.attacks or without_eps in self.attacks

    def add(self, sid: tuple, series: str, kind: str, eps: float, threat: str, acc: float, ci: Sequence[float],
            n: int, src: str, attack: str) -> None:
        from ...config import eps_str

        self.rows.append({"_sid": sid, "series": series, "kind": kind, "attack": attack, "eps": float(eps),
                          "eps_str": eps_str(float(eps), threat), "acc": acc, "ci95_lo": ci[0], "ci95_hi": ci[1],
                          "n": n, "source": src})

    def add_sanity(self, s: Source, variants: Sequence[str] | None, bare: bool) -> None:
        r = s.sanity
        if not r.sweep:
            raise UserError(f"{s.name}: the sanity report has no eps sweep (checks[0].details.sweep)")
        if (variants and r.variant not in variants) or not self.wanted(r.attack, r.attack_without_eps):
            return
        for row in r.sweep:
            self.add(("sanity", s.path, "defended"), f"{r.variant} · {r.attack_without_eps} (adaptive, any step)",
                     "defended", row["eps"], r.threat, row["robust_acc"], row["ci95"], r.n, s.name, r.attack)
            if bare and "bare_robust_acc" in row:
                self.add(("sanity", s.path, "bare"), f"bare classifier · {bare_attack_without_eps(row)}", "bare",
                         row["eps"], r.threat, row["bare_robust_acc"], row["bare_ci95"], r.n, s.name,
                         row["bare_attack"])

    def add_record(self, s: Source, variants: Sequence[str] | None, bare: bool) -> None:
        rv = s.record
        # an attack's identity across eps: registry name and the parameters given (not the eps-resolved ones)
        ident = {a.key: (a.name, json.dumps(a.given, sort_keys=True, default=str)) for a in rv.attacks}
        plain = {a.key: a.key_without_eps for a in rv.attacks}
        any_step = ", any step" if rv.setting == "adaptive" else ""
        for k, v in rv.variants.items():
            if variants and k not in variants:
                continue
            for a in v.summary["robust_acc"]:
                if not self.wanted(a, plain.get(a, a)):
                    continue
                m = v.metric("robust_acc", a)
                self.add(("record", rv.setting, k, ident.get(a, a)),
                         f"{k} · {plain.get(a, a)} ({rv.setting}{any_step})", "defended", rv.eps, rv.threat,
                         m.acc, m.ci, v.summary["n"], s.name, a)
        b = rv.bare
        if bare and b:
            for a, acc in b["robust_acc"].items():
                if self.wanted(a, plain.get(a, a)):
                    self.add(("bare", ident.get(a, a)), f"bare classifier · {plain.get(a, a)}", "bare", rv.eps,
                             rv.threat, acc, b["ci95"]["robust_acc"][a], b["n"], s.name, a)

    def finish(self) -> list[dict]:
        """Name each series after its smallest eps, refuse duplicates and single-eps inputs; sorted rows."""
        rows = self.rows
        if not rows:
            raise UserError("nothing to plot: --attack / --variant left no series")
        rows.sort(key=lambda r: r["eps"])
        label: dict[tuple, str] = {}
        for r in rows:  # a series is named after its smallest eps (attack names may say the eps they ran at)
            label.setdefault(r["_sid"], r["series"])
        names = list(label.values())
        for sid, name in list(label.items()):
            if names.count(name) > 1:
                label[sid] = f"{name} [{' '.join(str(t) for t in sid[1:2])}]"
        seen: dict[tuple, str] = {}
        for r in rows:
            r["series"] = label[r["_sid"]]
            k = (r["_sid"], round(r["eps"], 12))
            if k in seen:
                raise UserError(f"two results for {r['series']} at eps {r['eps_str']} ({seen[k]} and {r['source']}); "
                                "give one per eps")
            seen[k] = r["source"]
        if len(uniq(round(r["eps"], 12) for r in rows)) < 2:
            raise UserError(f"all inputs are at one eps ({rows[0]['eps_str']}); an eps plot needs a sanity report's "
                            "eps sweep or records at several eps")
        rows.sort(key=lambda r: (r["kind"] == "bare", r["series"], r["eps"]))
        return rows


def _draw_eps(ax: Any, rows: Sequence[dict], threat: str) -> None:
    from ...config import eps_str

    scale = 255.0 if threat == "linf" else 1.0
    for i, name in enumerate(uniq(r["series"] for r in rows)):
        rs = [r for r in rows if r["series"] == name]
        xs = [r["eps"] * scale for r in rs]
        is_bare = rs[0]["kind"] == "bare"
        color = "0.35" if is_bare else f"C{i}"
        ax.plot(xs, [r["acc"] for r in rs], marker="o", color=color, linestyle="--" if is_bare else "-", label=name)
        ax.fill_between(xs, [r["ci95_lo"] for r in rs], [r["ci95_hi"] for r in rs], color=color, alpha=0.12,
                        linewidth=0)
    ticks = sorted(uniq(r["eps"] for r in rows))
    ax.set_xticks([t * scale for t in ticks], [eps_str(t, threat) for t in ticks])
    ax.set_xlabel("eps" + (" (L∞)" if threat == "linf" else " (L2)"))
    accuracy_axis(ax)


def _eps_caption(sources: Sequence[Source], rows: Sequence[dict], variants: Sequence[str] | None,
                 threat: str) -> str:
    datasets, models, defenses, settings = [], [], [], []
    for s in sources:
        if s.kind == "sanity":
            r = s.sanity
            datasets.append(r.dataset)
            models.append(model_desc(r.model, r.arch, r.recipe))
            defenses.append(f"{r.variant}: " + sanity_defense_desc(r))
            settings.append("adaptive (sanity eps sweep)")
        else:
            rv = s.record
            datasets.append(rv.dataset)
            models.append(record_model_desc(rv))
            defenses += [f"{k}: {defense_desc(v)}" for k, v in rv.variants.items() if not variants or k in variants]
            settings.append(rv.setting)
    return " | ".join([f"{join(datasets)} {threat} eps swept", f"model {join(models)}",
                       f"defense {join(defenses, '; ')}", f"attack {join(r['attack'] for r in rows)}",
                       f"n={join(r['n'] for r in rows)}", "setting " + join(settings)])


def plot_eps(sources: Sequence[Source], out: str | os.PathLike, *, attacks: Sequence[str] | None = None,
             variants: Sequence[str] | None = None, bare: bool = True) -> dict:
    """Robust accuracy against eps from sanity reports (their eps sweep; defended and bare classifier) and/or
    records at several eps: each defense variant and the bare classifier (dashed)."""
    check_out(out)
    ctx0 = _eps_context(sources[0])
    for s in sources[1:]:
        ctx = _eps_context(s)
        if ctx != ctx0:
            raise UserError(f"mismatched inputs: {s.name} and {sources[0].name} differ ({diff(ctx0, ctx)}); an eps "
                            "plot compares one model on one data slice")
    acc = _EpsRows(attacks)
    for s in sources:
        if s.kind == "sanity":
            acc.add_sanity(s, variants, bare)
        else:
            acc.add_record(s, variants, bare)
    rows = acc.finish()
    first = sources[0]
    threat = first.sanity.threat if first.kind == "sanity" else first.record.threat
    fig = figure(6.8, 5.0)
    ax = fig.add_subplot(1, 1, 1)
    _draw_eps(ax, rows, threat)
    legend(fig, ax, title="95% Wilson bands")
    set_caption(fig, "Robust accuracy vs eps (defended; bare classifier dashed)",
                _eps_caption(sources, rows, variants, threat))
    path, csv_path = save_figure(fig, out, ["series", "kind", "attack", "eps", "eps_str", "acc", "ci95_lo", "ci95_hi",
                                            "n", "source"], rows)
    return {"figure": str(path), "csv": str(csv_path), "rows": rows}
