"""Run records: one JSON file per run (schema ``zeropur-bench/record/v2``), written atomically.

* :mod:`.semantics`: what the per-example vectors and summaries mean (robust = clean ∧ adversarial);
* :mod:`.assemble`: the engine's batches → a record (``assemble_record``);
* :mod:`.model_info`: RobustBench's ``model_info`` view of a record (``model_info_block``), derived, not measured;
* :mod:`.view`: the one typed reader (:class:`RecordView`, :func:`scan_records`) that reports use;
* :mod:`.meta`: where a record was made.

Partial results live in ``<record>.partial/`` (one JSON per finished batch) until the run completes, so a killed
run resumes at batch granularity.
"""
from __future__ import annotations

from .meta import PACKAGES, environment, git_commit
from .model_info import defended_model_id, model_info_block, ranked_value, robustbench_architecture
from .semantics import per_example, step_curves, summarize
from .view import OLD_SCHEMAS, RECORD_PREFIX, SCHEMA, AttackView, Metric, RecordError, RecordView, VariantView, scan_records


def load_record(path) -> dict:
    """A v2 record file as a dict (a :class:`RecordError` otherwise); reports use :meth:`RecordView.read`."""
    return RecordView.read(path).raw


__all__ = ["SCHEMA", "OLD_SCHEMAS", "RECORD_PREFIX", "PACKAGES", "AttackView", "Metric", "RecordError", "RecordView",
           "VariantView", "defended_model_id", "environment", "git_commit", "load_record", "model_info_block",
           "ranked_value", "robustbench_architecture", "per_example", "scan_records", "step_curves", "summarize"]
