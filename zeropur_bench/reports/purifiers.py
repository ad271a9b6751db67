"""The purifier leaderboard (issue 34): every measured purification defense, and the static reference, under one
protocol, ranked by the worst case over an adaptive suite.

A row is one defense (registered name and options) on one classifier. Its numbers come from two records:
the transfer run (clean accuracy and transfer PGD-20, the largest n found) and the adaptive run (the largest n
found; a cascade or a single attack). Only adaptive numbers rank: a defense with transfer numbers alone is listed
below the ranking, as "transfer only: not a robustness claim". Cascade columns are cumulative: each attack ran
only on the examples every earlier one left unbroken, so a column is the worst case so far (README "Adaptive attacks
as a cascade"). "Set by" names the last attack of the cascade that broke an example: the one that fixed the
worst case. Written here because no library ranks purification defenses (RobustBench refuses them).
"""
from __future__ import annotations

import json
import shlex
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from ..config import default_eps
from ..fmt import fmt_value
from ..profile_names import SAME_C_PROFILES as _SAME_C
from ..records import RecordView
from ..records.view import DISPLAY_NAMES, VariantView
from ..stats import mcnemar_two_sided
from .commands import run_command

# an attack family's column (the suite of issue 34; anything else keeps its record key)
FAMILY_COLUMNS = {"bpda-eot": "BPDA+EOT", "pgd-eot": "Full gradient (PGD-EOT)", "square": "Square",
                  "defense-aware": "Defense-aware", "autoattack": "AutoAttack"}
_ABBREV = {"bpda-eot": "B", "pgd-eot": "F", "square": "S", "defense-aware": "D", "autoattack": "A"}
VS_ALONE = "vs the classifier alone (same images)"
COLUMNS = ["Rank", "Classifier", "Defense", "Judged", "Clean", "Transfer PGD-20", *FAMILY_COLUMNS.values(),
           "Order run", "Worst case [95% CI]", "Set by", "n (adaptive)", VS_ALONE, "Passes / prediction",
           "Minutes (adaptive)", "Sanity checks"]


@dataclass
class _Row:
    model: str
    variant: VariantView
    transfer: RecordView | None = None
    adaptive: RecordView | None = None
    sanity: str | None = None
    reference: "_Row | None" = None  # the classifier alone on the same classifier (ranked), for the paired column


def _identity(rec: RecordView, v: VariantView) -> tuple[str, str, str]:
    return defense_identity(rec.model, v.name, v.options)


def defense_identity(model: str, name: str, options: dict[str, Any]) -> tuple[str, str, str]:
    """What makes two runs' variants one board row: the classifier, the defense and its options."""
    return model, name, json.dumps(_normalized(options), sort_keys=True, default=str)


def _normalized(options: dict[str, Any]) -> dict[str, Any]:
    """A defense's options as the board tells defenses apart: without a fitted calibration, ZeroPur-C's profiles one."""
    opts = {k: val for k, val in options.items() if k != "calibration"}  # its weight is a fitted fact, not a knob
    if opts.get("stages") == "c" and opts.get("profile") in _SAME_C:  # ZeroPur-C: no fine stage, one defense
        opts["profile"] = _SAME_C[0]
    return opts


SANITY_SCHEMA = "zeropur-bench/sanity/v2"


def load_sanity_reports(folder: str | Path) -> list[dict[str, Any]]:
    """The sanity reports (schema :data:`SANITY_SCHEMA`) under ``folder``, recursively; other JSON is skipped."""
    out = []
    for path in sorted(Path(folder).rglob("*.json")):
        try:
            d = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue
        if isinstance(d, dict) and d.get("schema") == SANITY_SCHEMA:
            out.append(d)
    return out


def sanity_verdicts(reports: list[dict[str, Any]]) -> dict[tuple[str, str, str], str]:
    """Per board row, the verdict of its sanity report (``zeropur-bench sanity``; the largest n where several):
    'pass' or the flags raised, with n."""
    best: dict[tuple[str, str, str], dict[str, Any]] = {}
    for rep in reports:
        cfg = rep.get("config") or {}
        (d,) = cfg.get("defenses") or [{}]
        opts = d.get("options")
        if not isinstance(opts, dict):  # a report made before defense options: ZeroPur's fields
            opts = {k: d[k] for k in ("profile", "stages", "blur") if d.get(k) is not None}
        key = defense_identity(str(cfg.get("model")), str(d.get("name") or "zeropur"), opts)
        if key not in best or int(rep.get("n") or 0) > int(best[key].get("n") or 0):
            best[key] = rep
    return {k: (f"pass (n={r.get('n')})" if r.get("passed") else
                f"flags: {', '.join(map(str, r.get('flags') or ['failed']))} (n={r.get('n')})")
            for k, r in best.items()}


def defense_title(v: VariantView) -> str:
    """How the board names a defense: display name, then its options (ZeroPur: stages and profile)."""
    return title_of(v.name, v.options, v.blur)


def title_of(name: str, options: dict[str, Any], blur: str | None = None) -> str:
    """:func:`defense_title` from a registered name and options (and ZeroPur's blur)."""
    if name == "none":
        return "none (the classifier alone)"
    title, stages, profile = DISPLAY_NAMES.get(name, name), options.get("stages"), options.get("profile")
    if stages is not None:
        profile = "authors = calibrated" if stages == "c" and profile in _SAME_C else profile
        extra = [f"{profile}" if profile else "", f"blur {blur}" if blur else ""]
        return f"{title} {'C-F' if stages == 'cf' else 'C'} ({', '.join(e for e in extra if e)})"
    opts = ", ".join(f"{k}={val}" for k, val in sorted(options.items()))
    return f"{title} ({opts})" if opts else title


def _pct(x: float | None) -> str:
    return "–" if x is None else f"{100 * x:.1f}"


def _with_ci(m: Any) -> str:
    if not m.measured:
        return "–"
    return f"{100 * m.acc:.1f} [{100 * m.ci[0]:.1f}, {100 * m.ci[1]:.1f}]" if m.ci else f"{100 * m.acc:.1f}"


def set_by(rec: RecordView, v: VariantView) -> str:
    """The attack that set the worst case: the last one, in the record's order, that broke an example
    (``examples.broken_by``); '–' when none broke one (or the record does not say)."""
    broken = v.examples.get("broken_by") or []
    counts = {a.key: 0 for a in rec.attacks}
    for b in broken:
        if b in counts:
            counts[b] += 1
    hit = [k for k, c in counts.items() if c]
    if not broken and len(rec.attacks) == 1:  # one attack (no cascade record): it set the worst case if it broke any
        m = v.metric("worst_case_acc").acc
        return rec.attacks[0].key if m is not None and m < (v.metric("defended_clean_acc").acc or 0) else "–"
    return hit[-1] if hit else "–"


def _minutes(rec: RecordView) -> float | None:
    secs = [rec.cost(a.key).get("seconds_per_image") for a in rec.attacks]
    if not any(isinstance(s, (int, float)) for s in secs):
        return None
    return sum(float(s) for s in secs if isinstance(s, (int, float))) * rec.n / 60


# the board's threat (issue 34: one protocol for every row, the paper's eps); a record of another dataset or threat
# never enters it
BOARD_DATASET, BOARD_THREAT = "cifar10", "linf"
BOARD_EPS = default_eps(BOARD_DATASET, BOARD_THREAT)


def same_threat(rec: RecordView) -> bool:
    """A CIFAR-10 record at L∞ 8/255, the board's threat (an L2 Table 3 record of the same classifier and defense
    must not lend it its transfer column)."""
    return (rec.dataset == BOARD_DATASET and rec.threat == BOARD_THREAT
            and abs(rec.eps - BOARD_EPS) < 1e-9)


def in_protocol(rec: RecordView) -> bool:
    """An adaptive record of the board's protocol: a cascade (the suite, each attack on the survivors), or
    AutoAttack alone (the static reference, as RobustBench evaluates it). A single gradient attack is not the
    suite: its row stays unranked."""
    if rec.setting != "adaptive":
        return False
    cascade = bool((rec.raw.get("config") or {}).get("cascade"))
    return cascade or (len(rec.attacks) == 1 and rec.attacks[0].family == "autoattack")


def collect(records: list[RecordView], models: list[str] | None = None,
            sanity: list[dict[str, Any]] | None = None) -> list[_Row]:
    """One row per (classifier, defense) with its largest transfer record (one with a PGD attack) and its largest
    adaptive record of the protocol (:func:`in_protocol`; at equal n, the one with more attacks), at the board's
    threat only (:func:`same_threat`); sweeps are left out. ``models``: only these classifiers."""
    rows: dict[tuple[str, str, str], _Row] = {}
    for rec in records:
        if (models is not None and rec.model not in models) or not same_threat(rec):
            continue
        for v in rec.variants.values():
            if v.sweep:
                continue
            if rec.setting == "adaptive" and not in_protocol(rec):
                continue
            row = rows.setdefault(_identity(rec, v), _Row(rec.model, v))
            if rec.setting == "adaptive":  # the largest n; at equal n the longer suite (a cascade with more attacks)
                if row.adaptive is None or (rec.n, len(rec.attacks)) > (row.adaptive.n, len(row.adaptive.attacks)):
                    row.adaptive, row.variant = rec, v
            elif any(a.family == "pgd" for a in rec.attacks):
                if row.transfer is None or rec.n > row.transfer.n:
                    row.transfer = rec
    verdicts = sanity_verdicts(sanity or [])
    for key, row in rows.items():
        row.sanity = verdicts.get(key)
    return list(rows.values())


def numbers(row: _Row) -> dict[str, Any]:
    """A row's facts at full precision (fractions; None where not measured): what the CSV holds and the markdown
    rounds."""
    key = _identity(row.adaptive or row.transfer, row.variant)  # type: ignore[arg-type]
    d: dict[str, Any] = {"classifier": row.model, "defense": defense_title(row.variant), "judged": None,
                         "clean": None, "clean_n": None, "transfer_pgd20": None,
                         **{c: None for c in FAMILY_COLUMNS.values()}, "order_run": None, "worst_case": None,
                         "worst_case_ci_low": None, "worst_case_ci_high": None, "set_by": None, "n_adaptive": None,
                         "passes_per_prediction": row.variant.passes_per_prediction, "minutes_adaptive": None,
                         "adaptive_record": None, "transfer_record": None, "sanity": row.sanity,
                         **{f"vs_alone_{k}": None for k in ("delta", "p", "n", "gained", "lost")},
                         "to_confirm": False}
    if row.transfer is not None:
        tv = next(v for v in row.transfer.variants.values() if _identity(row.transfer, v) == key)
        pgd = next(a.key for a in row.transfer.attacks if a.family == "pgd")
        d.update(clean=tv.metric("defended_clean_acc").acc, clean_n=row.transfer.n,
                 transfer_pgd20=tv.metric("robust_acc", pgd).acc, judged=_judged(row.transfer),
                 transfer_record=row.transfer.path)
    if row.adaptive is not None:
        rec, v = row.adaptive, row.variant
        if row.transfer is None:
            d.update(clean=v.metric("defended_clean_acc").acc, clean_n=rec.n)
        for a in rec.attacks:
            if FAMILY_COLUMNS.get(a.family) in d:
                d[FAMILY_COLUMNS[a.family]] = v.metric("robust_acc", a.key).acc
        w = v.metric("worst_case_acc")
        d.update(judged=_judged(rec), order_run="→".join(_ABBREV.get(a.family, "?") for a in rec.attacks),
                 worst_case=w.acc, worst_case_ci_low=w.ci[0] if w.ci else None,
                 worst_case_ci_high=w.ci[1] if w.ci else None, set_by=set_by(rec, v), n_adaptive=rec.n,
                 minutes_adaptive=_minutes(rec), adaptive_record=rec.path)
        f = vs_alone(row)
        d.update(f)
        d["to_confirm"] = _surprising(row, f)
    return d


def vs_alone(row: _Row) -> dict[str, Any]:
    """Issue 34's question, does the purifier add to the classifier or take away: its worst case against the
    classifier alone's (:attr:`_Row.reference`) on the examples both measured, paired per example: the difference
    in points, the examples only the defense keeps (gained) and only the classifier alone keeps (lost), and the exact
    two-sided McNemar p. Empty without a reference or a common example."""
    ref = row.reference
    if ref is None or ref.adaptive is None or row.adaptive is None:
        return {}
    mine = dict(zip(row.adaptive.indices, row.variant.examples.get("worst_case_correct") or []))
    theirs = dict(zip(ref.adaptive.indices, ref.variant.examples.get("worst_case_correct") or []))
    common = [i for i in mine if i in theirs]
    if not common:
        return {}
    a, b = [bool(mine[i]) for i in common], [bool(theirs[i]) for i in common]
    p, gained, lost = mcnemar_two_sided(a, b)
    return {"vs_alone_delta": (sum(a) - sum(b)) / len(common), "vs_alone_p": p, "vs_alone_n": len(common),
            "vs_alone_gained": gained, "vs_alone_lost": lost}


def _cells(row: _Row) -> dict[str, Any]:
    f = numbers(row)
    d: dict[str, Any] = {c: "–" for c in COLUMNS}
    d.update({"Classifier": f["classifier"], "Defense": f["defense"], "Judged": f["judged"] or "–",
              "Transfer PGD-20": _pct(f["transfer_pgd20"]), "Order run": f["order_run"] or "–",
              "Set by": f["set_by"] or "–", "n (adaptive)": f["n_adaptive"] or "–",
              "Sanity checks": f["sanity"] or "not run"})
    if f["clean"] is not None:
        d["Clean"] = f"{_pct(f['clean'])} (n={f['clean_n']})"
    d.update({c: _pct(f[c]) for c in FAMILY_COLUMNS.values()})
    if f["worst_case"] is not None:
        w = row.variant.metric("worst_case_acc")
        d["Worst case [95% CI]"] = _with_ci(w) + (f" {TO_CONFIRM_MARK}" if f["to_confirm"] else "")
    if f["minutes_adaptive"] is not None:
        d["Minutes (adaptive)"] = f"{f['minutes_adaptive']:.0f}"
    if f["vs_alone_delta"] is not None:
        d[VS_ALONE] = (f"{100 * f['vs_alone_delta']:+.1f} (gained {f['vs_alone_gained']}, lost "
                       f"{f['vs_alone_lost']}, p={f['vs_alone_p']:.2g}, n={f['vs_alone_n']})")
    p = f["passes_per_prediction"]
    d["Passes / prediction"] = "–" if p is None else (f"{p:.0f}" if p >= 10 else f"{p:.3g}")
    return d


def _judged(rec: RecordView) -> str:
    raw = rec.raw.get("config") or {}
    est, n = raw.get("estimator", "one-shot"), raw.get("estimator_n", 1)
    return f"{est} ({n})" if est == "worst-of-n" else str(est)


def board(records: list[RecordView], models: list[str] | None = None,
          sanity: list[dict[str, Any]] | None = None) -> tuple[list[_Row], list[_Row]]:
    """(ranked, transfer only): the adaptive rows ranked by worst case (highest first; ties by clean), and the
    rows with transfer numbers alone, which are never ranked. ``sanity``: sanity reports (JSON dicts) whose
    verdicts fill the last column."""
    rows = collect(records, models, sanity)
    alone = {r.model: r for r in rows if r.variant.name == "none" and r.adaptive is not None}
    for r in rows:
        if r.adaptive is not None and r.variant.name != "none":
            r.reference = alone.get(r.model)
    ranked = sorted((r for r in rows if r.adaptive is not None),
                    key=lambda r: (-(r.variant.metric("worst_case_acc").acc or 0.0),
                                   -(r.variant.metric("defended_clean_acc").acc or 0.0), r.model, r.variant.key))
    return ranked, [r for r in rows if r.adaptive is None]


# The board's protocol (issue 34): the defenses every board classifier is to be measured with, as (registered name,
# options; {} is the paper's settings); benchmarks/make_results.sh `purifiers` runs them (its PURIFIERS defaults to
# PROTOCOL_NAMES). ZeroPur is two rows, calibrated C and C-F, under the classifier's recipe blur (a per-classifier
# choice, so not compared). The classifier alone is the static reference, ranked on the adversarially trained
# classifier only (a standard classifier's is 0%: nothing to compare with).
PROTOCOL: tuple[tuple[str, dict[str, Any]], ...] = (
    ("bit-depth", {}), ("median-smoothing", {}), ("jpeg", {}), ("tvm", {}), ("random-resize-pad", {}),
    ("mixup-inference", {}), ("anti-adversary", {}), ("zeropur", {"profile": "calibrated", "stages": "c"}),
    ("zeropur", {"profile": "calibrated", "stages": "cf"}))
PROTOCOL_NAMES = tuple(dict.fromkeys(name for name, _ in PROTOCOL))


def is_protocol_row(v: VariantView, name: str, options: dict[str, Any]) -> bool:
    """Whether a variant is the protocol's defense ``name`` with ``options`` (its blur aside; ZeroPur-C's profiles
    one, as on the board)."""
    mine = {k: val for k, val in _normalized(v.options).items() if k != "blur"}
    return v.name == name and mine == _normalized(options)


def unmeasured(ranked_rows: list[_Row], models: list[str]) -> dict[str, list[tuple[str, dict[str, Any]]]]:
    """Per board classifier (``models``), the defenses of :data:`PROTOCOL` with no ranked row on it yet (no adaptive
    record of the protocol with those options): what the board does not say, so that a short board is not read as
    a complete one."""
    out: dict[str, list[tuple[str, dict[str, Any]]]] = {}
    for model in models:
        have = [r.variant for r in ranked_rows if r.model == model]
        missing = [(name, opts) for name, opts in PROTOCOL if not any(is_protocol_row(v, name, opts) for v in have)]
        if missing:
            out[model] = missing
    return out


# A defense kept above the classifier alone at this two-sided McNemar p is a surprise to confirm (issue 34: a purifier
# on an adversarially trained classifier is expected not to beat it).
SURPRISE_P = 0.05
# the attack that settles such a row: AutoAttack through the purifier's own full gradient
CONFIRM_ATTACK = "autoattack-full"
TO_CONFIRM_MARK = "‡"


def _attack_arg(a: Any) -> str:
    opts = ",".join(f"{k}={fmt_value(v)}" for k, v in sorted(a.given.items()))
    return f"{a.name}:{opts}" if opts else a.name


def offers_full_gradient(name: str) -> bool | None:
    """Whether the registered defense ``name`` offers its full gradient (None: not known before it is built, as for
    ZeroPur, or not registered here)."""
    from .. import defense  # noqa: F401  (registers the built-in defenses)
    from ..defenses import get_defense
    from ..errors import UserError

    try:
        gradients = get_defense(name).gradients
    except UserError:
        return None
    return None if gradients is None else "full" in gradients


def confirm_command(row: _Row) -> str | None:
    """The adaptive run of ``row`` repeated with :data:`CONFIRM_ATTACK` appended to its cascade: the same images
    (n, data seed), seed, batch size (each batch's draws follow from it), dtype, estimator, classifier file and
    attacks, and the surrogate its full-gradient PGD-EOT used; a new record beside the old one. None when the
    defense offers no full gradient (BPDA only): then only a differently built attack can settle the row."""
    rec, v = row.adaptive, row.variant
    assert rec is not None
    if offers_full_gradient(v.name) is False:
        return None
    opts = {k: val for k, val in v.options.items() if k != "blur"}
    if v.name == "zeropur":
        kw: dict[str, Any] = {"defense": "zeropur", "stages": [opts["stages"]], "profiles": [opts["profile"]],
                              "overrides": v.overrides or None}
    else:
        extra = ",".join(f"{k}={fmt_value(val)}" for k, val in sorted(opts.items()))
        kw = {"defense": f"{v.name}:{extra}" if extra else v.name}
    surrogates = [a.given["surrogate"] for a in rec.attacks if a.family == "pgd-eot" and a.given.get("surrogate")]
    confirm = f"{CONFIRM_ATTACK}:surrogate={surrogates[-1]}" if surrogates else CONFIRM_ATTACK
    cfg = rec.raw.get("config") or {}
    return run_command(dataset=rec.dataset, threat=rec.threat, model=rec.model, eps=rec.eps, blur=v.blur,
                       checkpoint=cfg.get("checkpoint"), recipe=cfg.get("recipe") if cfg.get("checkpoint") else None,
                       setting="adaptive", cascade=True, attacks=[_attack_arg(a) for a in rec.attacks] + [confirm],
                       n_ex=rec.n, batch_size=int(cfg.get("batch_size", 100)), seed=cfg.get("seed"),
                       data_seed=cfg.get("data_seed"), dtype=cfg.get("dtype"), estimator=cfg.get("estimator"),
                       estimator_n=cfg.get("estimator_n"), out="results/purifiers/", **kw)


def to_confirm(ranked_rows: list[_Row]) -> list[_Row]:
    """Rows kept above the classifier alone on the same images (Δ > 0, McNemar p < :data:`SURPRISE_P`) whose
    cascade has not yet run :data:`CONFIRM_ATTACK`: an attack failure until a stronger attack says otherwise."""
    return [r for r in ranked_rows if _surprising(r, vs_alone(r))]


def _surprising(row: _Row, f: dict[str, Any]) -> bool:
    """Whether ``row``, whose :func:`vs_alone` facts are ``f``, is to confirm (see :func:`to_confirm`)."""
    if not f or f["vs_alone_delta"] <= 0 or f["vs_alone_p"] >= SURPRISE_P:
        return False
    return row.adaptive is not None and not any(a.name == CONFIRM_ATTACK for a in row.adaptive.attacks)


def render_board(ranked_rows: list[_Row], transfer_rows: list[_Row], fmt: str = "markdown",
                 models: list[str] | None = None) -> str:
    """The board as markdown (a heading, the ranking, the transfer-only section, and with ``models`` the protocol's
    rows not measured yet on those classifiers: :func:`unmeasured`) or CSV (every number at full precision: ranked
    rows with their rank, then the transfer-only ones with none)."""
    if fmt == "csv":
        frame = pd.DataFrame([{"rank": i + 1, **numbers(r)} for i, r in enumerate(ranked_rows)]
                             + [{"rank": None, **numbers(r)} for r in transfer_rows])
        for col in ("rank", "clean_n", "n_adaptive"):
            if col in frame:
                frame[col] = frame[col].astype("Int64")
        return frame.to_csv(index=False)
    ranked = pd.DataFrame([_cells(r) for r in ranked_rows], columns=COLUMNS)
    ranked["Rank"] = range(1, len(ranked) + 1)
    transfer_only = pd.DataFrame([_cells(r) for r in transfer_rows], columns=COLUMNS).drop(columns=["Rank"])
    out = ["# Purification defenses under one adaptive protocol", "",
           "Ranked by the worst case over the adaptive attacks (robust accuracy: right on the clean image AND on "
           "every attack's input). Attack columns of a cascade are cumulative (each attack ran on the survivors "
           "of the earlier ones, in the order of 'Order run': B BPDA+EOT, F full-gradient PGD-EOT, S Square, "
           "D defense-aware, A AutoAttack). 'Set by': the last attack that broke an example. "
           f"'{VS_ALONE}': the worst case minus the classifier alone's (its AutoAttack row) on the examples both "
           "measured, in points, with the examples only the defense keeps (gained) and only the classifier alone "
           "keeps (lost) and the exact two-sided McNemar p: whether the purifier adds to the classifier or takes "
           f"away ({TO_CONFIRM_MARK}: above it, to confirm; see below). "
           "L∞ 8/255, CIFAR-10 test images (the first n).", "",
           ranked.to_markdown(index=False, disable_numparse=True) if len(ranked) else "(no adaptive record yet)"]
    if len(transfer_only):
        out += ["", "## transfer only: not a robustness claim", "", transfer_only.to_markdown(index=False, disable_numparse=True)]
    surprises = to_confirm(ranked_rows)
    if surprises:
        out += ["", "## Above the classifier alone: to confirm", "",
                "A purifier on top of an adversarially trained classifier is expected not to beat it. These rows "
                f"keep more than the classifier alone on the same images (McNemar p < {SURPRISE_P:g}) and have not "
                "yet faced AutoAttack through the purifier's own full gradient: read them as a possible attack "
                "failure, not as added robustness, until that run says otherwise. Each line is that run (the same "
                "cascade with it appended; a new record).", ""]
        for r in surprises:
            cmd = confirm_command(r)
            out.append(f"- {r.model}, {defense_title(r.variant)}: " + (
                f"`{cmd}`" if cmd else "it offers no full gradient (BPDA only): a differently built attack (a "
                "differentiable approximation of the purifier, or a larger query budget) has to settle it"))
    missing = unmeasured(ranked_rows, models or [])
    if missing:
        out += ["", "## Not measured yet", "",
                "The protocol's defenses with no ranked row (no adaptive record of the protocol) on a board "
                "classifier: a defense listed here is unmeasured, neither robust nor broken. Each line is the "
                "command that measures them (clean and transfer PGD-20 at n=1000, the cascade, the sanity checks), "
                "from a clone of the repository.", ""]
        for model, ds in missing.items():
            names = " ".join(n for n in PROTOCOL_NAMES if any(n == name for name, _ in ds))
            out.append(f"- {model}: {', '.join(title_of(*d) for d in ds)}: `CLASSIFIERS={shlex.quote(model)} "
                       f"PURIFIERS={shlex.quote(names)} bash benchmarks/make_results.sh purifiers`")
    return "\n".join(out) + "\n"
