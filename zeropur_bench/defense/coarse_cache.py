"""An exact memo of ZeroPur's coarse stage, shared by defense variants that differ only after it."""
from __future__ import annotations

import contextlib
from typing import Iterator

import torch


class CoarseCache:
    """Exact memo of coarse-stage results shared by defense variants that differ only after it (``authors`` and
    ``calibrated`` C-F, and C): an entry is reused only for a bit-identical input, the same indices and the same
    coarse settings, so results are unchanged. Holds the last ``size`` entries."""

    def __init__(self, size: int = 6) -> None:
        self.size = size
        self._entries: list[tuple[tuple, torch.Tensor, torch.Tensor, torch.Tensor]] = []
        self.hits = 0
        self._bypass = 0

    @contextlib.contextmanager
    def bypass(self) -> Iterator[None]:
        """Compute every coarse stage inside the block (e.g. while classifier passes per prediction are counted)."""
        self._bypass += 1
        try:
            yield
        finally:
            self._bypass -= 1

    def get(self, key: tuple, x: torch.Tensor, indices: torch.Tensor) -> torch.Tensor | None:
        if self._bypass:
            return None
        for k, xe, ie, out in self._entries:
            if k == key and xe.shape == x.shape and xe.device == x.device and torch.equal(ie, indices) \
                    and torch.equal(xe, x):
                self.hits += 1
                return out
        return None

    def put(self, key: tuple, x: torch.Tensor, indices: torch.Tensor, out: torch.Tensor) -> None:
        if self._bypass:
            return
        self._entries.append((key, x.detach().clone(), indices.clone(), out.detach()))
        del self._entries[:-self.size]
