"""Estimators of a (possibly stochastic) defended model's prediction.

- ``one-shot``: argmax of one call.
- ``logit-avg``: argmax of the logits averaged over ``n`` calls (Hill et al.'s verification: 150 purifications).
- ``majority``: the most frequent argmax over ``n`` calls (Lee & Kim's decision); ties go to the lowest class
  index.
- ``worst-of-n``: right only if every one of the ``n`` calls is right (DiffHammer, Wang et al. 2024; AutoAttack
  PR #105): the label is the calls' common argmax where all ``n`` agree, else :data:`NO_CONSENSUS` (-1, never a
  class). A randomized defense must survive every resubmission, not most; runs ask ``n >= WORST_OF_N_MIN``.

For a deterministic model every call gives the same logits, so ``n`` collapses to 1: :func:`predict` probes the
model first (two calls on a few images; bit-identical outputs => deterministic) and says so in its info. The
estimator and ``n`` used are part of a record.
"""
from __future__ import annotations

from typing import Callable, Literal, overload

import inspect

import torch
import torch.nn as nn

from .errors import UserError

ESTIMATORS = ("one-shot", "logit-avg", "majority", "worst-of-n")
Estimator = Literal["one-shot", "logit-avg", "majority", "worst-of-n"]
NO_CONSENSUS = -1  # worst-of-n's label where the calls disagree: equal to no class, so never counted right
WORST_OF_N_MIN = 10  # the resubmissions a run's worst-of-n judge makes at least (DiffHammer; AutoAttack PR #105)
Model = nn.Module | Callable[[torch.Tensor], torch.Tensor]


# Randomness streams. A defense whose forward/purify takes ``indices`` (ZeroPur) draws its random start from
# (seed, index) only, so calling it twice with the same indices repeats the same randomness. Call k of a
# repeated prediction therefore uses ``indices + k * STREAM`` (call 0 = the canonical dataset indices); attacks
# draw their EOT copies from streams >= ATTACK_STREAM and the determinism probe from PROBE_STREAM, so the
# attacker never sees the judge's exact noise.
STREAM = 1 << 32
ATTACK_STREAM = 1 << 20
PROBE_STREAM = 1 << 29


def accepts_indices(model: Model) -> bool:
    """Whether ``model(x, indices=...)`` is supported (its forward, or the callable, has an ``indices`` param)."""
    fn = model.forward if isinstance(model, nn.Module) else model
    try:
        return "indices" in inspect.signature(fn).parameters
    except (TypeError, ValueError):
        return False


def call_with_indices(model: Model, x: torch.Tensor, indices: torch.Tensor | None) -> torch.Tensor:
    """``model(x, indices=indices)`` when supported and given, else ``model(x)``."""
    if indices is not None and accepts_indices(model):
        return model(x, indices=indices)
    return model(x)


@torch.no_grad()
def probe_deterministic(model: Model, x: torch.Tensor, k: int = 8) -> bool:
    """True iff two calls of ``model`` on the first ``k`` images of ``x`` give bit-identical outputs (with fresh
    randomness streams for a model that takes ``indices``)."""
    xs = x[:k]
    base = torch.arange(xs.shape[0], device=x.device)
    a = call_with_indices(model, xs, base + PROBE_STREAM * STREAM)
    b = call_with_indices(model, xs, base + (PROBE_STREAM + 1) * STREAM)
    return bool(torch.equal(a, b))


def _device_of(model: Model, x: torch.Tensor) -> torch.device:
    if isinstance(model, nn.Module):
        for t in model.parameters():
            return t.device
    return x.device


@torch.no_grad()
def repeated_calls(model: Model, x: torch.Tensor, n: int, batch_size: int = 256,
                   indices: torch.Tensor | None = None, stream: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Call ``model`` ``n`` times on every image of ``x``, batching copies together (row r of the stacked batch is
    copy r // B of image r % B; copy k gets ``indices + (stream + k) * STREAM`` when the model takes indices).
    Returns (sum of logits [B, C], argmax vote counts [B, C])."""
    b = x.shape[0]
    total = n * b
    base = (torch.arange(b, device=x.device) if indices is None else indices.to(x.device, torch.int64))
    use_idx = accepts_indices(model)
    logit_sum: torch.Tensor | None = None
    votes: torch.Tensor | None = None
    for start in range(0, total, batch_size):
        rows = torch.arange(start, min(start + batch_size, total), device=x.device)
        img = rows % b
        idx = base[img] + (stream + rows // b) * STREAM if use_idx else None
        logits = call_with_indices(model, x[img], idx).float()
        if logit_sum is None:
            logit_sum = torch.zeros(b, logits.shape[1], device=logits.device)
            votes = torch.zeros(b, logits.shape[1], device=logits.device)
        img = img.to(logits.device)
        logit_sum.index_add_(0, img, logits)
        votes.index_put_((img, logits.argmax(1)), torch.ones_like(img, dtype=votes.dtype), accumulate=True)
    assert logit_sum is not None and votes is not None
    return logit_sum, votes


@overload
def predict(model: Model, x: torch.Tensor, estimator: Estimator = ..., n: int = ..., batch_size: int = ...,
            *, indices: torch.Tensor | None = ..., probe: bool = ...,
            return_info: Literal[False] = ...) -> torch.Tensor: ...
@overload
def predict(model: Model, x: torch.Tensor, estimator: Estimator = ..., n: int = ..., batch_size: int = ...,
            *, indices: torch.Tensor | None = ..., probe: bool = ...,
            return_info: Literal[True]) -> tuple[torch.Tensor, dict]: ...


@torch.no_grad()
def predict(model: Model, x: torch.Tensor, estimator: Estimator = "one-shot", n: int = 1, batch_size: int = 256,
            *, indices: torch.Tensor | None = None, probe: bool = True, stream: int = 0,
            return_info: bool = False) -> torch.Tensor | tuple[torch.Tensor, dict]:
    """Predicted labels of ``model`` (a defense or a bare classifier, called in its current mode) on ``x``.

    ``n`` is the number of calls for logit-avg / majority / worst-of-n (ignored by one-shot). With ``probe`` a
    deterministic model is detected and ``n`` collapses to 1. ``indices`` (dataset indices) seed a model that takes
    them (ZeroPur's random start): call k uses ``indices + (stream + k) * STREAM``, so call 0 is the canonical one and
    the n calls draw fresh randomness. Labels come back on ``x``'s device (worst-of-n: :data:`NO_CONSENSUS` where
    the calls disagree); with ``return_info`` also ``{"estimator", "n_requested", "n", "deterministic"}``.
    """
    if estimator not in ESTIMATORS:
        raise UserError(f"unknown estimator {estimator!r}; known: {', '.join(ESTIMATORS)}")
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise UserError(f"the number of calls n must be an integer >= 1, got {n!r}")
    if batch_size < 1:
        raise UserError(f"batch_size must be >= 1, got {batch_size!r}")
    out_device = x.device
    x = x.to(_device_of(model, x))
    n_req = n
    if estimator == "one-shot":
        n = 1
    det = None
    if n > 1 and probe and x.shape[0] > 0:
        det = probe_deterministic(model, x)
        if det:
            n = 1
    info = {"estimator": estimator, "n_requested": n_req, "n": n, "deterministic": det}
    if x.shape[0] == 0:
        labels = torch.zeros(0, dtype=torch.long, device=out_device)
        return (labels, info) if return_info else labels
    logit_sum, votes = repeated_calls(model, x, n, batch_size, indices, stream)
    # argmax returns the first maximum: majority ties go to the lowest class index.
    labels = (votes if estimator in ("majority", "worst-of-n") else logit_sum).argmax(1)
    if estimator == "worst-of-n":  # unanimous, else no class: right iff all n calls are right
        labels = torch.where(votes.max(1).values == n, labels, torch.full_like(labels, NO_CONSENSUS))
    labels = labels.to(out_device)
    return (labels, info) if return_info else labels


def correct(pred: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Per-example correctness (bool, on CPU) of predicted labels."""
    return (pred.cpu() == y.cpu())


def aggregate(logits_calls: torch.Tensor, estimator: Estimator) -> torch.Tensor:
    """Labels from stacked per-call logits ``[n, B, C]`` (for callers that kept every call)."""
    if estimator not in ESTIMATORS:
        raise UserError(f"unknown estimator {estimator!r}; known: {', '.join(ESTIMATORS)}")
    if estimator == "one-shot":
        return logits_calls[0].argmax(1)
    if estimator == "logit-avg":
        return logits_calls.mean(0).argmax(1)
    if estimator == "worst-of-n":
        calls = logits_calls.argmax(2)
        return torch.where((calls == calls[:1]).all(0), calls[0], torch.full_like(calls[0], NO_CONSENSUS))
    votes = torch.nn.functional.one_hot(logits_calls.argmax(2), logits_calls.shape[2]).sum(0)
    return votes.argmax(1)


def per_call_correct(logits_calls: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """``[n, B]`` bool: whether each call alone was right (the one-shot correctness of each call)."""
    return logits_calls.argmax(2).cpu() == y.cpu().view(1, -1)
