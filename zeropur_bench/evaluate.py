"""The evaluation engine: classifier + defense variants + attacks on a data slice → one record.

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
from pathlib import Path
from typing import Any, Callable, Iterator

import torch
from torch import nn

from .config import (DEFENSES, DTYPES, RESERVED_LABELS, RUN_OWNED_DEFENSE_KEYS, SETTINGS, AttackSpec,  # noqa: F401
                     DefenseSpec, EvalConfig, default_eps, eps_str)
from .device import check_device  # noqa: F401  (the engine's API)
from .errors import UserError
from .keys import code_version, comparison_key, digest, resume_key
from .records import git_commit
from .records.assemble import RunFacts, assemble_record, attack_notes
from .store import RunStore, resolve_out  # noqa: F401  (resolve_out: the engine's API)
from .threats import THREATS

@contextlib.contextmanager
def autocast(device: str, dtype: str) -> Iterator[None]:
    """bf16 autocast when the run asks for it, else nothing (fp32)."""
    if DTYPES[dtype] is None:
        yield
        return
    with torch.autocast(device_type=torch.device(device).type, dtype=DTYPES[dtype]):
        yield


def _progress(enabled: bool):
    if not enabled:
        return None
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, \
        TimeRemainingColumn

    return Progress(TextColumn("{task.description:<30}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                    TextColumn("ETA"), TimeRemainingColumn(), console=Console(stderr=True), transient=False)


class Evaluator:
    """Runs an :class:`EvalConfig`; ``classifier`` / data may be passed in (else loaded from the config)."""

    def __init__(self, config: EvalConfig, *, data_dir: str | os.PathLike | None = None,
                 classifier: nn.Module | None = None, model_info: dict | None = None,
                 data: tuple[torch.Tensor, torch.Tensor] | None = None, data_info: dict | None = None) -> None:
        self.config = config
        self.data_dir = data_dir
        self._classifier = classifier
        self._model_info = model_info
        self._data = data
        self._data_info = data_info
        self.batches_computed = 0
        self.batches_resumed = 0
        self.reused = False  # run() found this run's finished record and returned it
        self._prepared = False

    # -- inputs --------------------------------------------------------------------------------------------------
    def load(self) -> None:
        from .classifiers import load_classifier
        from .data import DATASETS, load_data, slice_sha256

        c = self.config
        if self._classifier is None:
            model, info = load_classifier(c.model, c.dataset, THREATS[c.threat], checkpoint=c.checkpoint,
                                          model_dir=c.model_dir, device=c.device, return_info=True)
            self._classifier, self._model_info = model, info.to_dict()
        if c.recipe is None and (self._model_info or {}).get("recipe"):
            c.recipe = self._model_info["recipe"]  # a registered classifier brings its training recipe
        if self._data is None:
            n_load = None if c.data_seed is not None else c.n_ex
            x, y, info = load_data(c.dataset, c.split, n=n_load, data_dir=self.data_dir, return_info=True)
            if c.data_seed is not None:
                if c.n_ex > len(x):
                    raise UserError(f"asked for n_ex={c.n_ex} but the {c.dataset} {c.split} split has {len(x)}")
                g = torch.Generator().manual_seed(c.data_seed)
                idx = torch.randperm(len(x), generator=g)[: c.n_ex].sort().values
                x, y = x[idx], y[idx]
                info = {**info.to_dict(), "n": len(x), "sha256": slice_sha256(x, y), "data_seed": c.data_seed}
                self.indices = idx
            else:
                info = info.to_dict()
                self.indices = torch.arange(len(x))
            self._data, self._data_info = (x, y), info
        else:
            from .attacks.base import Attack

            Attack.validate_inputs(*self._data)
            self.indices = torch.arange(len(self._data[0]))
            if self._data_info is None:
                self._data_info = {"source": "in-memory", "n": len(self._data[0]),
                                   "sha256": slice_sha256(*self._data)}
        if c.channels_last:
            self._classifier = self._classifier.to(memory_format=torch.channels_last)
        x, y = self._data
        num_classes = DATASETS[c.dataset]["num_classes"]
        with torch.no_grad():
            out = self._classifier(x[:2].to(c.device))
        if out.ndim != 2 or out.shape[1] != num_classes:
            raise UserError(f"the classifier outputs {tuple(out.shape[1:])} logits but {c.dataset} has "
                            f"{num_classes} classes")

    def prepare(self) -> None:
        """Load and validate everything (classifier, data, defenses, attacks against their targets), probe
        determinism and compute the run's keys. Writes nothing."""
        if self._prepared:
            return
        from .attacks import make_attack
        from .estimators import probe_deterministic

        c = self.config
        self.load()
        x_all = self._data[0]
        # Transfer: every variant purifies the same inputs, so variants with the same coarse stage (C and C-F,
        # authors and calibrated) share it exactly (defense.CoarseCache).
        from .defense import CoarseCache

        self.coarse_cache = CoarseCache() if c.setting == "transfer" else None
        self.defenses = {d.key: d.build(self._classifier, c.seed, c.dtype, c.channels_last, self.coarse_cache)
                         for d in c.defenses}
        probe_x = x_all[: min(4, len(x_all))].to(c.device)
        with autocast(c.device, c.dtype):  # two passes, bit-identical outputs => deterministic
            self.deterministic = {k: probe_deterministic(d, probe_x) for k, d in self.defenses.items()}
            self.bare_deterministic = probe_deterministic(self._classifier, probe_x)
        # Build every attack on its target once: bad parameters and wrong targets fail here, not mid-run.
        targets = {"bare": self._classifier} if c.setting == "transfer" else self.defenses
        for spec in c.attacks:
            params = spec.resolved(c.eps, c.threat)
            for t in targets.values():
                make_attack(spec.name, t, eps=c.eps, norm=c.norm, seed=c.seed, **params)
        self.attack_keys, self.key_without_eps = {}, {}
        for i, spec in enumerate(c.attacks):
            key, bare_key = self._column(spec, True), self._column(spec, False)
            self.attack_keys[i] = key
            self.key_without_eps[key] = bare_key
        resolved_defenses = [self.defense_config(k) for k in self.defenses]
        mi = self._model_info or {}
        model_id = {"arch": mi.get("arch", c.model), "checkpoint_sha256": mi.get("checkpoint_sha256")}
        if model_id["checkpoint_sha256"] is None:
            model_id["name"] = c.model
        self.comparison = comparison_key(
            dataset=c.dataset, split=c.split, threat=c.threat, eps=c.eps, setting=c.setting,
            attacks=[{"name": a.name, "params": a.resolved(c.eps, c.threat)} for a in c.attacks],
            defenses=resolved_defenses, data_sha256=self._data_info.get("sha256"), model=model_id, seed=c.seed,
            estimator=c.estimator, estimator_n=c.estimator_n, dtype=c.dtype, cascade=c.cascade)
        self.resume = resume_key(self.comparison, c.batch_size, code_version())
        self._prepared = True

    def _column(self, spec: AttackSpec, with_eps: bool) -> str:
        """An attack's column: adaptive attacks are named per target (a target's determinism may change what
        runs), one name for all when they agree, else the attack's mixed name."""
        c = self.config
        if c.setting != "adaptive":
            return spec.key_for(c.eps, c.threat, with_eps=with_eps)
        per = {spec.key_for(c.eps, c.threat, self.deterministic[k], with_eps=with_eps) for k in self.defenses}
        if len(per) == 1:
            return per.pop()
        return spec.cls.mixed_label(spec.resolved(c.eps, c.threat), c.eps, c.norm, with_eps=with_eps)

    def defense_config(self, key: str) -> dict:
        """The resolved configuration of defense variant ``key`` (what its record block says it ran)."""
        d = self.defenses[key]
        return dict(d.config()) if hasattr(d, "config") else {"name": "none"}

    # -- what the engine loaded (read-only views for reports that recompute a few examples) -------------------
    @property
    def classifier(self) -> nn.Module:
        self.load_if_needed()
        return self._classifier

    @property
    def model_info(self) -> dict | None:
        self.load_if_needed()
        return self._model_info

    @property
    def data(self) -> tuple[torch.Tensor, torch.Tensor]:
        self.load_if_needed()
        return self._data

    @property
    def data_info(self) -> dict:
        self.load_if_needed()
        return self._data_info

    def load_if_needed(self) -> None:
        if not self._prepared:
            self.prepare()

    def default_name(self) -> str:
        """``<dataset>-<threat>-<model>-<setting>-<hash>.json``; the hash covers the comparison key and the batch
        size (no path), so the same run gets the same name on any machine and checkout."""
        self.prepare()
        c = self.config
        model = Path(c.model).name.replace("/", "_")
        h = digest({"comparison": self.comparison, "batch_size": c.batch_size})
        return f"{c.dataset}-{c.threat}-{model}-{c.setting}-{h}.json"

    # -- one batch -----------------------------------------------------------------------------------------------
    def run_batch(self, xb: torch.Tensor, yb: torch.Tensor, idx: torch.Tensor,
                  on_attack_done: Callable[[str, int], None] | None = None, keep_inputs: bool = False) -> dict:
        """Attack and judge one batch (``idx``: its dataset indices, which seed it): the batch file's content.
        ``keep_inputs``: also return the attacks' inputs under ``"inputs"[attack key][variant | "bare"]`` (tensors,
        not saved), for reports that show or recompute a few examples exactly as the run made them."""
        from .attacks.base import PassCounter

        self.load_if_needed()
        c = self.config
        clf = self._classifier
        res: dict[str, Any] = {"index": idx.tolist(), "cost": {}, "notes": {}, "variants": {}, "bare_adv_correct": {}}
        inputs: dict[str, dict[str, torch.Tensor]] = {}
        with torch.no_grad(), autocast(c.device, c.dtype):
            res["clean_correct"] = (clf(xb).argmax(1) == yb).tolist()
        bypass = self.coarse_cache.bypass() if self.coarse_cache is not None else contextlib.nullcontext()
        with bypass:  # every variant's own passes are counted here, so none reuses another's coarse stage
            for k in self.defenses:
                counter = PassCounter()
                with counter.attach(clf):
                    dclean = self._judge(k, xb, yb, idx)
                res["variants"][k] = {"defended_clean_correct": dclean.tolist(),
                                      "forward_passes_per_prediction": counter.forward / max(1, len(xb)),
                                      "adv_correct": {}, "adv_final_correct": {}, "first_broken_step": {},
                                      "final_counts": {}}
        for i, spec in enumerate(c.attacks):
            key = self.attack_keys[i]
            t0 = time.perf_counter()
            cost = {"forward_passes": 0, "backward_passes": 0}
            run = self._transfer_attack if c.setting == "transfer" else self._adaptive_attack
            inputs[key] = run(spec, key, xb, yb, idx, res, cost)
            cost["seconds"] = time.perf_counter() - t0
            res["cost"][key] = cost
            if on_attack_done is not None:
                on_attack_done(key, len(idx))
        if keep_inputs:
            res["inputs"] = inputs
        return res

    def _judge(self, key: str, x_in: torch.Tensor, yb: torch.Tensor, idx: torch.Tensor) -> torch.Tensor:
        """Defense ``key`` right on ``x_in``, per example (the run's estimator; one call if deterministic)."""
        from .estimators import predict

        c = self.config
        n_calls = 1 if self.deterministic[key] else c.estimator_n  # the run-level probe already decided
        with autocast(c.device, c.dtype):
            pred = predict(self.defenses[key], x_in, c.estimator, n_calls, batch_size=c.batch_size, probe=False,
                           indices=idx.to(x_in.device))
        return pred.to(yb.device) == yb

    def _transfer_attack(self, spec: AttackSpec, key: str, xb: torch.Tensor, yb: torch.Tensor, idx: torch.Tensor,
                         res: dict, cost: dict) -> dict[str, torch.Tensor]:
        """Craft once on the bare classifier; every variant purifies the same input."""
        from .attacks import make_attack

        c, clf = self.config, self._classifier
        atk = make_attack(spec.name, clf, eps=c.eps, norm=c.norm, seed=c.seed, **spec.resolved(c.eps, c.threat))
        with autocast(c.device, c.dtype):
            x_adv = atk(xb, yb, idx)
        cost["forward_passes"] += atk.last_info.get("forward_passes", 0)
        cost["backward_passes"] += atk.last_info.get("backward_passes", 0)
        with torch.no_grad(), autocast(c.device, c.dtype):
            res["bare_adv_correct"][key] = (clf(x_adv).argmax(1) == yb).tolist()
        for k in self.defenses:
            res["variants"][k]["adv_correct"][key] = self._judge(k, x_adv, yb, idx).tolist()
        res["notes"][key] = {"bare_classifier_deterministic": self.bare_deterministic, **attack_notes(atk.last_info)}
        return {"bare": x_adv}

    def _adaptive_attack(self, spec: AttackSpec, key: str, xb: torch.Tensor, yb: torch.Tensor, idx: torch.Tensor,
                         res: dict, cost: dict) -> dict[str, torch.Tensor]:
        """Craft against each defended model; iterative attacks also judge their last iterate and keep, per
        example, the first step that broke it. In a cascade, only the examples no earlier attack broke are
        attacked; the others stay broken (from step 0 of this attack's curve) and ``attacked`` says which."""
        c = self.config
        res["notes"][key] = {}
        out = {}
        for k, d in self.defenses.items():
            v = res["variants"][k]
            alive = torch.ones(len(xb), dtype=torch.bool)
            if c.cascade:
                for prev in v["adv_correct"].values():  # the earlier attacks, in order
                    alive &= torch.tensor(prev, dtype=torch.bool)
                v.setdefault("attacked", {})[key] = alive.tolist()
            sel = alive.nonzero().flatten()
            x_adv = xb.clone()
            ok = torch.zeros(len(xb), dtype=torch.bool)
            final = torch.zeros(len(xb), dtype=torch.bool)
            per_step = None
            if len(sel):
                sub = sel.to(xb.device)
                info, x_sub = self._attack_one(spec, d, xb[sub], yb[sub], idx[sel], cost)
                x_adv[sub] = x_sub
                ok[sel] = self._judge(k, x_sub, yb[sub], idx[sel]).cpu()
                broken = info.get("broken_any_step")
                if broken is not None:
                    ok[sel] &= ~torch.as_tensor(broken, dtype=torch.bool).cpu()
                if info.get("x_final") is not None:  # iterative: judge the attack's own last iterate
                    final[sel] = self._judge(k, info["x_final"], yb[sub], idx[sel]).cpu()
                if info.get("broken_per_step") is not None and len(info["broken_per_step"]):
                    steps = info["broken_per_step"].to(torch.bool).cpu()
                    per_step = torch.ones(steps.shape[0], len(xb), dtype=torch.bool)  # not attacked: broken
                    per_step[:, sel] = steps
                res["notes"][key][k] = {**attack_notes(info), "target_deterministic": self.deterministic[k]}
            else:  # every example is broken already: nothing left to attack
                res["notes"][key][k] = {"attacked": 0, "target_deterministic": self.deterministic[k]}
                if spec.cls.iterates:
                    per_step = torch.ones(int(spec.resolved(c.eps, c.threat)["steps"]) + 1, len(xb), dtype=torch.bool)
            out[k] = x_adv
            v["adv_correct"][key] = ok.tolist()
            if spec.cls.iterates:
                v["adv_final_correct"][key] = final.tolist()
            if per_step is not None:
                dclean = torch.tensor(v["defended_clean_correct"], dtype=torch.bool)
                alive_t = ~per_step  # [steps + 1, n]
                first = torch.where(per_step.any(0), per_step.to(torch.int64).argmax(0), -1)
                v["first_broken_step"][key] = [None if f < 0 else int(f) for f in first.tolist()]
                v["final_counts"][key] = {"robust": (alive_t & dclean).sum(1).tolist(), "adv": alive_t.sum(1).tolist()}
        return out

    def _attack_one(self, spec: AttackSpec, target: nn.Module, x: torch.Tensor, y: torch.Tensor, idx: torch.Tensor,
                    cost: dict) -> tuple[dict, torch.Tensor]:
        """One attack on one defended model; its classifier passes are added to ``cost``."""
        from .attacks import make_attack

        c = self.config
        atk = make_attack(spec.name, target, eps=c.eps, norm=c.norm, seed=c.seed, **spec.resolved(c.eps, c.threat))
        with autocast(c.device, c.dtype):
            x_adv = atk(x, y, idx)
        cost["forward_passes"] += atk.last_info.get("forward_passes", 0)
        cost["backward_passes"] += atk.last_info.get("backward_passes", 0)
        return atk.last_info, x_adv

    # -- the run -------------------------------------------------------------------------------------------------
    def plan(self) -> list[tuple[int, int]]:
        """(batch number, first row) of every batch: fixed by n and the batch size alone, so any split of the
        batches over processes computes exactly what one process would."""
        n = len(self._data[0])
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
        store = RunStore(resolve_out(out, self.default_name()), self.resume, len(plan))
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
        return min(self.config.batch_size, len(self._data[0]) - start)

    def _compute(self, mine: list[tuple[int, int]], store: RunStore | None, progress: bool, worker: str,
                 sharded: bool) -> dict[int, dict]:
        """This process's batches: read back where finished (a damaged file is recomputed), else computed and
        saved."""
        c = self.config
        x_all, y_all = self._data
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
                        advance(key, len(got["index"]))
                    continue
                xb = x_all[s: s + c.batch_size].to(c.device)
                yb = y_all[s: s + c.batch_size].to(c.device)
                idx = self.indices[s: s + c.batch_size]
                results[b] = self.run_batch(xb, yb, idx, advance)
                results[b]["computed_by"] = {"worker": worker, "pid": os.getpid()}
                self.batches_computed += 1
                if store is not None:
                    store.write_batch(b, results[b])
        return results

    # -- the record ---------------------------------------------------------------------------------------------
    def facts(self) -> RunFacts:
        """What the record needs of this run besides its batches (:func:`zeropur_bench.records.assemble_record`)."""
        return RunFacts(config=self.config, attack_keys=[self.attack_keys[i] for i in range(len(self.config.attacks))],
                        key_without_eps=dict(self.key_without_eps),
                        defense_configs={k: self.defense_config(k) for k in self.defenses},
                        calibrations={k: getattr(d, "calibration", None) for k, d in self.defenses.items()},
                        deterministic=dict(self.deterministic), bare_deterministic=self.bare_deterministic,
                        comparison=self.comparison, resume=self.resume, model_info=self._model_info,
                        data_info=self._data_info, batches_computed=self.batches_computed,
                        batches_resumed=self.batches_resumed)


def evaluate(config: EvalConfig, out: str | os.PathLike | None = None, *, data_dir: str | os.PathLike | None = None,
             progress: bool = False, write: bool = True, **kwargs: Any) -> dict:
    """Run ``config`` and return its record (also written to ``out`` unless ``write=False``)."""
    return Evaluator(config, data_dir=data_dir, **kwargs).run(out=out, progress=progress, write=write)
