"""The two keys of a run, defined once: what makes two records comparable, and what makes a partial run resumable.

* **Comparison key**: everything that changes results — dataset, split, threat, eps, setting, every attack with its
  resolved parameters, every defense variant with its resolved parameters, the data slice's sha256, the
  classifier's architecture and checkpoint sha256, seed, estimator and dtype. No path, label, batch size,
  device, thread count or output location: records made on two machines, or with different batch sizes, are
  compared statistically (``zeropur-bench check``), not refused.
* **Resume key**: the comparison key plus the batch size (attack randomness is seeded per batch, from the seed
  and the batch's first index, so batch boundaries must not move) and the code version (batches made by
  different code are never mixed into one record).

The record's default file name is derived from the comparison key plus the batch size (not the code version, so
a rerun after a code change finds the old partial folder and refuses it with a clear message instead of
silently starting a second one).
"""
from __future__ import annotations

import functools
import hashlib
import json
from pathlib import Path
from typing import Any

# Keys of a resolved defense config that do not change results (numerics aside) and so stay out of the key.
_DEFENSE_NOISE = ("channels_last",)


def canon(obj: Any) -> Any:
    """JSON-stable form: floats rounded to 12 significant digits (8/255 typed two ways is one eps)."""
    if isinstance(obj, float):
        return float(f"{obj:.12g}")
    if isinstance(obj, dict):
        return {str(k): canon(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [canon(v) for v in obj]
    return obj


def digest(obj: Any, length: int = 16) -> str:
    """Short sha256 of the canonical JSON of ``obj``."""
    text = json.dumps(canon(obj), sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:length]


def comparison_key(*, dataset: str, split: str, threat: str, eps: float, setting: str,
                   attacks: list[dict[str, Any]], defenses: list[dict[str, Any]], data_sha256: str | None,
                   model: dict[str, Any], seed: int, estimator: str, estimator_n: int, dtype: str,
                   cascade: bool = False) -> dict[str, Any]:
    """The comparison key (module docstring). ``attacks``: ``{"name", "params"}`` with resolved parameters;
    ``defenses``: resolved defense configs; ``model``: ``{"arch", "checkpoint_sha256"}`` (or the zoo name when
    there is no local file to hash). ``cascade`` enters the key only when set, so earlier keys stay valid."""
    return canon({**({"cascade": True} if cascade else {}),
        "dataset": dataset, "split": split, "threat": threat, "eps": float(eps), "setting": setting,
        "attacks": [{"name": a["name"], "params": a["params"]} for a in attacks],
        "defenses": [{k: v for k, v in d.items() if k not in _DEFENSE_NOISE} for d in defenses],
        "data_sha256": data_sha256, "model": model, "seed": int(seed), "estimator": estimator,
        "estimator_n": int(estimator_n), "dtype": dtype,
    })


def resume_key(comparison: dict[str, Any], batch_size: int, code: str) -> dict[str, Any]:
    """The resume key: the comparison key plus batch size and code version."""
    return {"comparison": comparison, "batch_size": int(batch_size), "code_version": code}


def key_diff(a: dict[str, Any], b: dict[str, Any], prefix: str = "") -> list[str]:
    """Dotted paths where two keys differ (for a one-line refusal)."""
    out: list[str] = []
    for k in sorted(set(a) | set(b)):
        va, vb = a.get(k), b.get(k)
        path = f"{prefix}{k}"
        if isinstance(va, dict) and isinstance(vb, dict):
            out += key_diff(va, vb, path + ".")
        elif va != vb:
            if isinstance(va, list) and isinstance(vb, list) and len(va) == len(vb):
                for i, (x, y) in enumerate(zip(va, vb)):
                    if isinstance(x, dict) and isinstance(y, dict):
                        out += key_diff(x, y, f"{path}[{i}].")
                    elif x != y:
                        out.append(f"{path}[{i}]")
            else:
                out.append(path)
    return out


def describe_diff(a: dict[str, Any], b: dict[str, Any], limit: int = 4) -> str:
    """``eps: 0.0313725 → 0.0156863; setting: transfer → adaptive`` for the first ``limit`` differences."""
    parts = []
    for path in key_diff(a, b)[:limit]:
        va, vb = _get(a, path), _get(b, path)
        parts.append(f"{path}: {_short(va)} → {_short(vb)}")
    more = len(key_diff(a, b)) - limit
    return "; ".join(parts) + (f"; and {more} more" if more > 0 else "")


def _get(obj: Any, path: str) -> Any:
    import re

    for part in re.findall(r"[^.\[\]]+|\[\d+\]", path):
        if part.startswith("["):
            i = int(part[1:-1])
            obj = obj[i] if isinstance(obj, list) and i < len(obj) else None
        else:
            obj = obj.get(part) if isinstance(obj, dict) else None
    return obj


def _short(v: Any) -> str:
    s = json.dumps(v, default=str) if not isinstance(v, str) else v
    return s if len(s) <= 40 else s[:37] + "..."


@functools.lru_cache(maxsize=1)
def code_version() -> str:
    """sha256 (16 hex) of the package's Python sources: two processes share it iff they run the same code (the
    git commit is recorded beside it for the reader, but a dirty tree has the same commit)."""
    root = Path(__file__).resolve().parent
    h = hashlib.sha256()
    for path in sorted(root.rglob("*.py")):
        h.update(path.relative_to(root).as_posix().encode())
        h.update(b"\0")
        h.update(path.read_bytes())
        h.update(b"\0")
    return h.hexdigest()[:16]
