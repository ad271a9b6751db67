"""One batch's results, typed: what a batch strategy returns, a batch file holds and record assembly reads.

The batch file (``<record>.partial/batch-NNNNN.json``) is :meth:`BatchResult.to_dict`; :meth:`BatchResult.from_dict`
reads it back (a file that does not parse is damaged: ``KeyError``/``TypeError``/``ValueError``).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass
class VariantBatch:
    """One defense variant on one batch. Per example: ``defended_clean_correct``; per attack key:
    ``adv_correct`` (right on the attack's input; any step for iterative adaptive attacks), ``adv_final_correct``
    (the attack's last iterate), ``first_broken_step`` (None: never broken), ``final_counts`` (per step, how many
    examples are still robust / right), ``attacked`` (a cascade: which examples the attack saw)."""

    defended_clean_correct: list[bool]
    forward_passes_per_prediction: float
    adv_correct: dict[str, list[bool]] = field(default_factory=dict)
    adv_final_correct: dict[str, list[bool]] = field(default_factory=dict)
    first_broken_step: dict[str, list[int | None]] = field(default_factory=dict)
    final_counts: dict[str, dict[str, list[int]]] = field(default_factory=dict)
    attacked: dict[str, list[bool]] | None = None

    def to_dict(self) -> dict[str, Any]:
        out = {"defended_clean_correct": self.defended_clean_correct,
               "forward_passes_per_prediction": self.forward_passes_per_prediction, "adv_correct": self.adv_correct,
               "adv_final_correct": self.adv_final_correct, "first_broken_step": self.first_broken_step,
               "final_counts": self.final_counts}
        if self.attacked is not None:
            out["attacked"] = self.attacked
        return out

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "VariantBatch":
        return cls(defended_clean_correct=list(d["defended_clean_correct"]),
                   forward_passes_per_prediction=float(d["forward_passes_per_prediction"]),
                   adv_correct=dict(d["adv_correct"]), adv_final_correct=dict(d["adv_final_correct"]),
                   first_broken_step=dict(d["first_broken_step"]), final_counts=dict(d["final_counts"]),
                   attacked=dict(d["attacked"]) if d.get("attacked") is not None else None)


@dataclass
class BatchResult:
    """A batch: dataset ``index``, the bare classifier's ``clean_correct``, each variant's
    :class:`VariantBatch`, the bare classifier on each transfer attack's input (``bare_adv_correct``), each
    attack's ``cost`` (classifier passes, seconds) and ``notes`` (its ``last_info`` without tensors), who computed
    it; ``inputs`` (the attacks' inputs as tensors, on request) is never saved."""

    index: list[int]
    clean_correct: list[bool]
    variants: dict[str, VariantBatch] = field(default_factory=dict)
    bare_adv_correct: dict[str, list[bool]] = field(default_factory=dict)
    cost: dict[str, dict[str, float]] = field(default_factory=dict)
    notes: dict[str, Any] = field(default_factory=dict)
    computed_by: dict[str, Any] | None = None
    inputs: dict[str, dict[str, Any]] | None = field(default=None, repr=False)

    def __len__(self) -> int:
        return len(self.index)

    def to_dict(self) -> dict[str, Any]:
        """The batch file's content (without ``inputs``)."""
        out = {"index": self.index, "cost": self.cost, "notes": self.notes,
               "variants": {k: v.to_dict() for k, v in self.variants.items()},
               "bare_adv_correct": self.bare_adv_correct, "clean_correct": self.clean_correct}
        if self.computed_by is not None:
            out["computed_by"] = self.computed_by
        return out

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "BatchResult":
        return cls(index=[int(i) for i in d["index"]], clean_correct=list(d["clean_correct"]),
                   variants={str(k): VariantBatch.from_dict(v) for k, v in d["variants"].items()},
                   bare_adv_correct=dict(d["bare_adv_correct"]), cost=dict(d["cost"]), notes=dict(d["notes"]),
                   computed_by=d.get("computed_by"))
