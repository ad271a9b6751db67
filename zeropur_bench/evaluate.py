"""The evaluation engine: classifier + defense variants + attacks on a data slice → one record.

The engine is three parts: its inputs, loaded once (:mod:`zeropur_bench.inputs`), the batch strategies that attack
and judge one batch (:mod:`zeropur_bench.strategies`), and the run layer here (:class:`Evaluator`): store, shards,
resume, progress, the record.

* ``transfer`` setting (paper Tables 2–5): each attack is crafted once on the bare classifier; the same
  adversarial set is then purified by every defense variant ("craft once, purify many").
* ``adaptive`` setting (Table 6, Figure 5): each attack is crafted against each defended model. Iterative attacks
  report "any step" (headline: an image broken at any iterate stays broken, Hill et al.) and "final only" (the
  attack's last iterate, re-judged) beside it, with a curve of both over the attack's steps.

Per example: bare clean, defended clean, the paper's protocol per attack (``adv_correct``: right on the attack's
input) and robust per attack (``robust_correct``: defended clean AND adversarial), worst case. Semantics and
layout: :mod:`zeropur_bench.records`. Everything is validated (data, classifier, defenses, attacks, device,
output location) before anything is written. The run is resumable at batch granularity: each finished batch is
saved under ``<record>.partial/`` (refused if made by a different configuration or different code) and the record
is assembled atomically at the end. ``shard=(k, n)`` computes only the batches ``b`` with ``b % n == k`` (job
arrays, ``torchrun`` ranks); ``merge_only`` computes nothing and assembles once every batch exists.
"""
from __future__ import annotations

import contextlib
import os
import time
from typing import Any, Callable

import torch
from torch import nn

from .config import AttackSpec, DefenseSpec, EvalConfig, default_eps, eps_str  # noqa: F401  (the engine's API)
from .errors import UserError
from .inputs import RunInputs, autocast  # noqa: F401  (autocast: the engine's API)
from .records import git_commit
from .records.assemble import RunFacts, assemble_record
from .records.batch import BatchResult
from .store import RunStore, resolve_out  # noqa: F401  (resolve_out: the engine's API)


def _progress(enabled: bool):
    if not enabled:
        return None
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, \
        TimeRemainingColumn

    return Progress(TextColumn("{task.description:<30}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                    TextColumn("ETA"), TimeRemainingColumn(), console=Console(stderr=True), transient=False)


class Evaluator:
    """Runs an :class:`EvalConfig`: the run layer over its :class:`~zeropur_bench.inputs.RunInputs` (loaded on
    first need; ``classifier`` / data may be passed in, else loaded from the config)."""

    def __init__(self, config: EvalConfig, *, data_dir: str | os.PathLike | None = None,
                 classifier: nn.Module | None = None, model_info: dict | None = None,
                 data: tuple[torch.Tensor, torch.Tensor] | None = None, data_info: dict | None = None,
                 echo: Callable[[str], None] | None = None) -> None:
        self.config = config
        self.inputs = RunInputs(config, data_dir=data_dir, classifier=classifier, model_info=model_info, data=data,
                                data_info=data_info, echo=echo)
        self.batches_computed = 0
        self.batches_resumed = 0
        self.reused = False  # run() found this run's finished record and returned it

    def prepare(self) -> RunInputs:
        """Load and validate everything (classifier, data, defenses, attacks against their targets), probe
        determinism and compute the run's keys. Writes nothing."""
        return self.inputs.load()

    # -- what the engine loaded (read-only views for reports that recompute a few examples) -------------------
    @property
    def classifier(self) -> nn.Module:
        return self.prepare().classifier

    @property
    def model_info(self) -> dict | None:
        return self.prepare().model_info

    @property
    def data(self) -> tuple[torch.Tensor, torch.Tensor]:
        return self.prepare().data

    @property
    def data_info(self) -> dict:
        return self.prepare().data_info

    @property
    def indices(self) -> torch.Tensor:
        return self.prepare().indices

    @property
    def defenses(self) -> dict[str, nn.Module]:
        return self.prepare().defenses

    @property
    def attack_keys(self) -> dict[int, str]:
        return self.prepare().attack_keys

    @property
    def comparison(self) -> dict[str, Any]:
        return self.prepare().comparison

    def defense_config(self, key: str) -> dict:
        return self.prepare().defense_config(key)

    def default_name(self) -> str:
        return self.prepare().default_name()

    def run_batch(self, xb: torch.Tensor, yb: torch.Tensor, idx: torch.Tensor,
                  on_attack_done: Callable[[str, int], None] | None = None, keep_inputs: bool = False) -> BatchResult:
        """Attack and judge one batch (:func:`zeropur_bench.strategies.run_batch`)."""
        from .strategies import run_batch

        return run_batch(self.prepare(), xb, yb, idx, on_attack_done, keep_inputs)

    # -- the run -------------------------------------------------------------------------------------------------
    def plan(self) -> list[tuple[int, int]]:
        """(batch number, first row) of every batch: fixed by n and the batch size alone, so any split of the
        batches over processes computes exactly what one process would."""
        n = len(self.data[0])
        return [(b, s) for b, s in enumerate(range(0, n, self.config.batch_size))]

    def run(self, out: str | os.PathLike | None = None, progress: bool = True, write: bool = True,
            shard: tuple[int, int] | None = None, merge_only: bool = False,
            barrier: Callable[[], None] | None = None, assemble: bool = True, worker: str | None = None,
            force: bool = False) -> dict:
        """Run (or resume) and return the record, also written to ``out`` unless ``write=False``.

        ``shard=(k, n)``: compute only batches ``b % n == k``. ``merge_only``: compute nothing. ``barrier`` is
        called after this process's batches (distributed runs); ``assemble=False`` returns a status instead of
        the record (a shard that leaves the assembly to another process). ``worker`` names this process in the
        batch files and the progress bar (e.g. "rank 1/4"). A finished record of the same run at ``out`` is
        returned as it is (``self.reused`` is then True) unless ``force``."""
        worker = worker or ("single" if shard is None else f"shard {shard[0]}/{shard[1]}")
        self.prepare()
        if shard is not None:
            k, n_shards = shard
            if not (isinstance(k, int) and isinstance(n_shards, int) and 0 <= k < n_shards):
                raise UserError(f"shard must be K/N with 0 <= K < N, got {k}/{n_shards}")
        if (shard is not None or merge_only or barrier is not None) and not write:
            raise UserError("sharded and merged runs keep their batches on disk: they need write=True")
        plan = self.plan()
        store = RunStore(resolve_out(out, self.default_name()), self.inputs.resume, len(plan))
        if write:
            old = store.finished()
            if old is not None and not force:
                self.reused = True
                return {**old, "_path": str(store.path)}
            store.open(git_commit())
        mine = [] if merge_only else [(b, s) for b, s in plan if shard is None or b % shard[1] == shard[0]]
        t_start = time.perf_counter()
        results = self._compute(mine, store if write else None, progress, worker, shard is not None)
        wall = time.perf_counter() - t_start
        if barrier is not None:
            barrier()
        if not assemble:
            return {"status": "shard-done", "computed": self.batches_computed, "resumed": self.batches_resumed,
                    "partial": str(store.partial)}
        for b, s in plan:
            if b not in results and write:
                got = store.read_batch(b, self._batch_len(s), list(self.defenses))
                if got is not None:
                    results[b] = got
        missing = [b for b, _ in plan if b not in results]
        if missing:
            shown = ", ".join(str(b) + (f" ({store.batch_file(b).name} is damaged)" if b in store.damaged else "")
                              for b in missing[:12]) + (" ..." if len(missing) > 12 else "")
            raise UserError(f"cannot assemble '{store.path}': {len(missing)} of {len(plan)} batches are not finished "
                            f"(missing: {shown}); run the remaining shards, or rerun without --shard/--merge-only")
        record = assemble_record(self.facts(), [results[b] for b, _ in plan], wall)
        if write:
            store.write_record(record)
            record["_path"] = str(store.path)
        return record

    def _batch_len(self, start: int) -> int:
        return min(self.config.batch_size, len(self.data[0]) - start)

    def _compute(self, mine: list[tuple[int, int]], store: RunStore | None, progress: bool, worker: str,
                 sharded: bool) -> dict[int, dict]:
        """This process's batches: read back where finished (a damaged file is recomputed), else computed and
        saved."""
        c = self.config
        x_all, y_all = self.data
        bars = _progress(progress)
        tasks: dict[str, Any] = {}
        results: dict[int, dict] = {}
        with (bars or contextlib.nullcontext()):
            if bars is not None and mine:
                total = sum(self._batch_len(s) for _, s in mine)
                for key in self.attack_keys.values():
                    share = f" [{worker}: its share]" if sharded else ""
                    tasks[key] = bars.add_task(f"{key} ({c.setting}){share}", total=total)

            def advance(key: str, k: int) -> None:
                if bars is not None and key in tasks:
                    bars.update(tasks[key], advance=k)

            for b, s in mine:
                got = store.read_batch(b, self._batch_len(s), list(self.defenses)) if store is not None else None
                if got is not None:
                    results[b] = got
                    self.batches_resumed += 1
                    for key in self.attack_keys.values():
                        advance(key, len(got))
                    continue
                xb = x_all[s: s + c.batch_size].to(c.device)
                yb = y_all[s: s + c.batch_size].to(c.device)
                idx = self.indices[s: s + c.batch_size]
                results[b] = self.run_batch(xb, yb, idx, advance)
                results[b].computed_by = {"worker": worker, "pid": os.getpid()}
                self.batches_computed += 1
                if store is not None:
                    store.write_batch(b, results[b])
        return results

    # -- the record ---------------------------------------------------------------------------------------------
    def facts(self) -> RunFacts:
        """What the record needs of this run besides its batches (:func:`zeropur_bench.records.assemble_record`)."""
        r = self.prepare()
        return RunFacts(config=self.config, attack_keys=[r.attack_keys[i] for i in range(len(self.config.attacks))],
                        key_without_eps=dict(r.key_without_eps),
                        defense_configs={k: r.defense_config(k) for k in r.defenses},
                        calibrations={k: d.calibration for k, d in r.defenses.items()},
                        deterministic=dict(r.deterministic), bare_deterministic=r.bare_deterministic,
                        comparison=r.comparison, resume=r.resume, model_info=r.model_info,
                        data_info=r.data_info, batches_computed=self.batches_computed,
                        batches_resumed=self.batches_resumed, recipe=r.recipe)


def evaluate(config: EvalConfig, out: str | os.PathLike | None = None, *, data_dir: str | os.PathLike | None = None,
             progress: bool = False, write: bool = True, **kwargs: Any) -> dict:
    """Run ``config`` and return its record (also written to ``out`` unless ``write=False``)."""
    return Evaluator(config, data_dir=data_dir, **kwargs).run(out=out, progress=progress, write=write)
