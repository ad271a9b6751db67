"""Run records: one JSON file per run, written atomically, with the stable keys other tools read.

Layout (``docs/architecture.md``): ``config``, ``keys``, ``summary``, ``examples``, ``variants``, ``estimator``,
``provenance``, ``cost``, ``environment``, ``model_info``. Partial results live in ``<record>.partial/`` (one
JSON per finished batch) until the run completes, so a killed run resumes at batch granularity.

Semantics (schema v2), per example and per defense variant:

* ``defended_clean_correct``: the defended model is right on the unperturbed image;
* ``adv_correct[a]``: right on attack ``a``'s input, clean result ignored: the paper's protocol (adaptive
  iterative attacks: not broken at any step, Hill et al.'s count);
* ``robust_correct[a] = defended_clean_correct AND adv_correct[a]``: the unperturbed image lies inside every
  threat model, so an image the defense gets wrong unattacked is never robust (RobustBench, AutoAttack);
* ``robust_final_correct[a]``: adaptive iterative attacks only, ``defended_clean_correct AND`` the judgement of
  the attack's *last* iterate ("final only"; any-step ≤ final-only);
* ``worst_case_correct``: ``defended_clean_correct AND`` every ``adv_correct``.

Hence ``robust_acc[a] ≤ defended_clean_acc`` and ``worst_case_acc ≤ min robust_acc`` by construction.
"""
from __future__ import annotations

import importlib.metadata
import json
import os
import platform
import subprocess
import tempfile
from pathlib import Path
from typing import Any

SCHEMA = "zeropur-bench/record/v2"
OLD_SCHEMAS = ("zeropur-bench/record/v1",)
PACKAGES = ("zeropur-bench", "torch", "torchvision", "robustbench", "pyautoattack", "torchattacks", "numpy")


def write_json_atomic(path: str | os.PathLike, obj: Any) -> None:
    """Write JSON to a temp file in the same folder, fsync, then ``os.replace``: never a half-written file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".tmp-", suffix=".json", dir=path.parent)
    try:
        with os.fdopen(fd, "w") as f:
            json.dump(obj, f, indent=1, sort_keys=False)
            f.write("\n")
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def git_commit(repo: str | os.PathLike | None = None) -> str | None:
    repo = Path(repo or Path(__file__).resolve().parents[1])
    try:
        out = subprocess.run(["git", "-C", str(repo), "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5)
        dirty = subprocess.run(["git", "-C", str(repo), "status", "--porcelain", "--untracked-files=no"],
                               capture_output=True, text=True, timeout=5)
    except (OSError, subprocess.SubprocessError):
        return None
    if out.returncode != 0:
        return None
    return out.stdout.strip() + ("-dirty" if dirty.stdout.strip() else "")


def environment() -> dict:
    versions = {}
    for p in PACKAGES:
        try:
            versions[p] = importlib.metadata.version(p)
        except importlib.metadata.PackageNotFoundError:
            versions[p] = None
    return {"packages": versions, "python": platform.python_version(), "platform": platform.platform(),
            "processor": platform.machine(), "cpu_count": os.cpu_count(), "git_commit": git_commit()}


def load_record(path: str | os.PathLike) -> dict:
    with open(path) as f:
        rec = json.load(f)
    if rec.get("schema") in OLD_SCHEMAS:
        raise ValueError(f"{path} is a {rec['schema']} record, made before robust accuracy required the clean "
                         f"image right too; re-make it with the same command")
    if rec.get("schema") != SCHEMA:
        raise ValueError(f"{path}: not a {SCHEMA} record")
    return rec


# -- summaries ---------------------------------------------------------------------------------------------------
def _acc_ci(v: list[bool]) -> tuple[float, list[float]]:
    from .stats import wilson

    n = len(v)
    if not n:
        return float("nan"), [float("nan"), float("nan")]
    return sum(v) / n, list(wilson(sum(v), n))


def _and(*vecs: list[bool]) -> list[bool]:
    return [all(t) for t in zip(*vecs)]


def per_example(clean: list[bool], defended_clean: list[bool], adv: dict[str, list[bool]],
                adv_final: dict[str, list[bool]] | None = None) -> dict[str, Any]:
    """The per-example vectors of one variant (module docstring) from the raw judgements."""
    robust = {a: _and(defended_clean, v) for a, v in adv.items()}
    ex: dict[str, Any] = {"clean_correct": clean, "defended_clean_correct": defended_clean, "adv_correct": adv,
                          "robust_correct": robust,
                          "worst_case_correct": _and(defended_clean, *adv.values()) if adv else list(defended_clean)}
    if adv_final:
        ex["robust_final_correct"] = {a: _and(defended_clean, v) for a, v in adv_final.items()}
    return ex


def summarize(ex: dict[str, Any]) -> dict[str, Any]:
    """Accuracies (fractions) with Wilson 95% intervals from a variant's per-example vectors."""
    s: dict[str, Any] = {"n": len(ex["defended_clean_correct"])}
    ci: dict[str, Any] = {}
    for name, key in (("clean_acc", "clean_correct"), ("defended_clean_acc", "defended_clean_correct"),
                      ("worst_case_acc", "worst_case_correct")):
        s[name], ci[name] = _acc_ci(ex[key])
    for name, key in (("robust_acc", "robust_correct"), ("robust_final_acc", "robust_final_correct"),
                      ("adv_acc", "adv_correct")):
        if key in ex:
            s[name], ci[name] = {}, {}
            for a, v in ex[key].items():
                s[name][a], ci[name][a] = _acc_ci(v)
    adv = ex.get("adv_correct") or {}
    if adv:
        s["adv_worst_case_acc"], ci["adv_worst_case_acc"] = _acc_ci(_and(*adv.values()))
    s["ci95"] = ci
    return s


def step_curves(defended_clean: list[bool], first_broken: list[int | None], final_counts: list[int],
                adv_final_counts: list[int]) -> dict[str, list[float]]:
    """Per attack step t = 0..T (t = 0: the start): ``robust_any_step`` (clean ∧ not broken at any step ≤ t),
    ``robust_final`` (clean ∧ iterate t itself not broken), and the paper-protocol ``adv_any_step`` /
    ``adv_final`` (without the clean ∧). ``final_counts`` / ``adv_final_counts``: per step, how many examples
    were (clean ∧) not broken at that iterate, summed over batches."""
    n = len(defended_clean)
    steps = len(final_counts)
    any_r, any_a = [], []
    for t in range(steps):
        alive = [fb is None or fb > t for fb in first_broken]
        any_a.append(sum(alive) / n)
        any_r.append(sum(a and c for a, c in zip(alive, defended_clean)) / n)
    return {"robust_any_step": any_r, "robust_final": [k / n for k in final_counts],
            "adv_any_step": any_a, "adv_final": [k / n for k in adv_final_counts]}


def write_text_atomic(path: str | os.PathLike, text: str) -> None:
    """Write text via a temp file + ``os.replace`` (no half-written tables)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".tmp-", dir=path.parent)
    try:
        with os.fdopen(fd, "w") as f:
            f.write(text if text.endswith("\n") else text + "\n")
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
