"""Leaderboard entries from records, and their export in RobustBench's ``model_info`` layout.

One entry per defended model (the classifier, the defense's settings, dataset, split, threat and eps: the ``id`` of
:func:`zeropur_bench.records.model_info.defended_model_id`), gathering every record variant that evaluated it. An
entry with an adaptive evaluation on test images is ranked by its best known robust accuracy: the lowest per-example
worst case over its adaptive evaluations (``external``), so no entry ranks above what any of its records measured.
Its other fields come from that evaluation; ``autoattack_acc`` is the lowest AutoAttack accuracy (own settings, every
image attacked) among them. An entry with only transfer evaluations has no ranked number and is exported apart.

Export layout (RobustBench's): ``DIR/<dataset>/<Threat>/<id>.json`` for ranked entries, read by RobustBench's
``generate_leaderboard(dataset, threat, DIR)``; its ``get_leaderboard_latex`` and ``get_leaderboard_bibtex`` read
``./model_info/<dataset>/<Threat>`` from the working directory, so export into a folder named ``model_info`` and
call them from its parent. Transfer-only entries go to ``DIR/transfer-only/<dataset>/<Threat>/<id>.json``, where
RobustBench's readers never look. Extra key ``zeropur_bench`` (ignored by RobustBench) lists the evaluations.
"""
from __future__ import annotations

import os
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import UserError
from ..fsio import refuse_foreign, write_json_atomic
from ..records import RecordView, VariantView
from ..records.model_info import model_info_block, ranked_value
from ..threats import THREATS

EXPORT_SCHEMA = "zeropur-bench/model-info-export/v1"
TRANSFER_DIR = "transfer-only"
_KEY_ORDER = ("link", "name", "authors", "additional_data", "number_forward_passes", "dataset", "venue",
              "architecture", "eps", "clean_acc", "reported", "autoattack_acc", "external", "footnote", "unreliable",
              "id")


@dataclass(frozen=True)
class Evaluation:
    """One defense variant of one record, with its ``model_info`` view."""

    record: RecordView
    variant: VariantView
    info: dict[str, Any]

    @property
    def ranked_value(self) -> float | None:
        return ranked_value(self.info)


@dataclass(frozen=True)
class Entry:
    """One defended model: its evaluations, the one its numbers come from (``best``) and its exported info."""

    id: str
    dataset: str
    threat: str  # RobustBench's spelling: "Linf", "L2"
    eps: str
    evaluations: tuple[Evaluation, ...]
    best: Evaluation
    info: dict[str, Any]

    @property
    def ranked(self) -> bool:
        return ranked_value(self.info) is not None

    @property
    def best_known(self) -> float | None:
        return ranked_value(self.info)


def _ordered(info: dict[str, Any]) -> dict[str, Any]:
    return {**{k: info[k] for k in _KEY_ORDER if k in info}, **{k: v for k, v in info.items() if k not in _KEY_ORDER}}


def _entry(eid: str, evs: list[Evaluation]) -> Entry:
    ranked = [e for e in evs if e.ranked_value is not None]
    if ranked:
        best = min(ranked, key=lambda e: (e.ranked_value, -e.variant.n, e.record.path or "", e.variant.key))
        info = {k: v for k, v in best.info.items() if k != "autoattack_acc"}
        aa = [e for e in ranked if "autoattack_acc" in e.info]
        if aa:
            low = min(aa, key=lambda e: float(e.info["autoattack_acc"]))
            info["autoattack_acc"] = low.info["autoattack_acc"]
            if low is not best:
                info["footnote"] += (f" AutoAttack accuracy from another evaluation ({low.variant.n} images, "
                                     f"{os.path.basename(low.record.path or '')}).")
        if len(ranked) > 1:
            info["footnote"] += f" The lowest of {len(ranked)} adaptive evaluations of this defended model."
    else:
        best = max(evs, key=lambda e: (e.variant.n, e.record.path or "", e.variant.key))
        info = dict(best.info)
        if len(evs) > 1:
            info["footnote"] += f" ({len(evs)} transfer evaluations of this defended model; this one has the most images.)"
    info["zeropur_bench"] = {
        "schema": EXPORT_SCHEMA,
        "evaluations": [{"record": Path(e.record.path).as_posix() if e.record.path else None, "variant": e.variant.key,
                         "setting": e.record.setting, "n": e.variant.n, "best": e is best} for e in evs]}
    rec = best.record
    return Entry(id=eid, dataset=rec.dataset, threat=THREATS.get(rec.threat, rec.threat), eps=rec.eps_str,
                 evaluations=tuple(evs), best=best, info=_ordered(info))


def leaderboard_entries(records: list[RecordView]) -> list[Entry]:
    """Every defense variant of every record, one entry per defended model: ranked entries first (best known
    robust accuracy, high to low; then clean accuracy, then name), then transfer-only entries by name."""
    groups: dict[str, list[Evaluation]] = defaultdict(list)
    for rec in records:
        for v in rec.ordered_variants():
            info = model_info_block(rec.raw, v.key)
            groups[info["id"]].append(Evaluation(rec, v, info))
    entries = [_entry(eid, evs) for eid, evs in groups.items()]
    return sorted(entries, key=lambda e: (0, -e.best_known, -float(e.info["clean_acc"]), e.info["name"], e.id)
                  if e.ranked else (1, 0.0, 0.0, e.info["name"], e.id))


def export_path(entry: Entry, out_dir: str | os.PathLike) -> Path:
    """``DIR/<dataset>/<Threat>/<id>.json`` (ranked) or ``DIR/transfer-only/<dataset>/<Threat>/<id>.json``."""
    base = Path(out_dir) if entry.ranked else Path(out_dir) / TRANSFER_DIR
    return base / entry.dataset / entry.threat / f"{entry.id}.json"


def _is_export(obj: Any) -> bool:
    return isinstance(obj, dict) and (obj.get("zeropur_bench") or {}).get("schema") == EXPORT_SCHEMA


def export_model_info(entries: list[Entry], out_dir: str | os.PathLike) -> list[Path]:
    """Write every entry's ``model_info`` in RobustBench's layout; a file there that is not an export of this
    package is never overwritten (checked for all files before any is written)."""
    if Path(out_dir).exists() and not Path(out_dir).is_dir():
        raise UserError(f"--model-info '{out_dir}' is a file; give a folder (e.g. model_info)")
    plan = [(export_path(e, out_dir), e.info) for e in entries]
    for path, _ in plan:
        refuse_foreign(path, _is_export, "a model_info file written by zeropur-bench export",
                       option="--model-info")
    for path, info in plan:
        write_json_atomic(path, info)
    return [p for p, _ in plan]
