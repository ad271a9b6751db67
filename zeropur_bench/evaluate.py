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
import json
import math
import os
import shutil
import time
from dataclasses import asdict, dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import Any, Callable, Iterator

import torch
from torch import nn

from .errors import UserError
from .keys import code_version, comparison_key, describe_diff, digest, resume_key
from .records import SCHEMA, environment, git_commit, per_example, step_curves, summarize, write_json_atomic

SETTINGS = ("transfer", "adaptive")
THREATS = {"linf": "Linf", "l2": "L2"}
DTYPES = {"fp32": None, "bf16": torch.bfloat16}
# ZeroPur options the run owns: a per-variant override would contradict the run's own setting.
RUN_OWNED_DEFENSE_KEYS = {"dtype": "--dtype", "channels_last": "--channels-last", "seed": "--seed"}
# Paper names an attack's column may carry only with that paper's / library's settings (see Attack.label).
RESERVED_LABELS = ("pgd-20", "pgd20", "autoattack")


def default_eps(dataset: str, threat: str) -> float:
    """Paper App. A.2: Linf 8/255 on CIFAR, 4/255 on ImageNet; L2 0.5."""
    if threat == "l2":
        return 0.5
    return 4 / 255 if dataset == "imagenet" else 8 / 255


def eps_str(eps: float, threat: str) -> str:
    if threat == "linf":
        frac = Fraction(eps * 255).limit_denominator(8)
        if abs(float(frac) / 255 - eps) < 1e-9:
            return f"{frac}/255"
    return f"{eps:g}"


def check_device(device: str) -> torch.device:
    """``device`` as a torch.device that exists on this machine, else a UserError saying what to use."""
    try:
        d = torch.device(device)
    except (RuntimeError, TypeError):
        raise UserError(f"unknown device '{device}'; use cpu, cuda or cuda:N") from None
    if d.type == "cuda":
        if not torch.cuda.is_available():
            raise UserError(f"device '{device}': no CUDA GPU is available here (torch.cuda.is_available() is "
                            "False); use --device cpu")
        if d.index is not None and d.index >= torch.cuda.device_count():
            raise UserError(f"device '{device}': this machine has {torch.cuda.device_count()} CUDA device(s), "
                            f"numbered from 0")
    elif d.type != "cpu":
        raise UserError(f"device '{device}' is not supported; use cpu, cuda or cuda:N")
    return d


@dataclass
class AttackSpec:
    """An attack by registry name with its parameters. Its column name (``key_for``) follows the resolved
    parameters: a paper's name (PGD-20, AutoAttack) only with that paper's settings; ``label`` overrides it,
    but may not claim a paper's name the settings do not earn."""

    name: str
    params: dict[str, Any] = field(default_factory=dict)
    label: str | None = None

    @property
    def cls(self) -> Any:
        from .attacks import ATTACKS

        if self.name not in ATTACKS:
            raise UserError(f"unknown attack '{self.name}'; known: {', '.join(sorted(ATTACKS))}")
        return ATTACKS[self.name]

    def resolved(self, eps: float, threat: str) -> dict[str, Any]:
        """Parameters with defaults filled in and ``step`` resolved (what the attack runs with)."""
        return self.cls.resolve_params(dict(self.params), eps, THREATS[threat])

    def key_for(self, eps: float, threat: str, deterministic_target: bool | None = None) -> str:
        """The column name (and record key) of this attack at ``eps`` / ``threat``."""
        params = self.resolved(eps, threat)
        if self.name == "autoattack-bpda" and params.get("version") == "rand" and deterministic_target:
            params["version"] = "standard"  # what AutoAttackBPDA runs against a deterministic defense
        auto = self.cls.label(params, eps, THREATS[threat])
        if not self.label:
            return auto
        norm = self.label.lower().replace(" ", "")
        if norm.startswith(RESERVED_LABELS) and self.label != auto:
            raise UserError(f"label '{self.label}' names a paper's attack, but these settings make '{auto}'; "
                            "choose another label")
        return self.label


DEFENSES = ("zeropur", "blur", "none")


@dataclass
class DefenseSpec:
    """A defense variant: ``zeropur`` with profile / stages / blur / overrides (``calibration``: a calibration
    dict for profile ``calibrated``; None = the shipped one), ``blur`` (the blur alone, g(x): the paper's Table 1
    baseline) or ``none``."""

    name: str = "zeropur"
    profile: str = "authors"
    stages: str = "cf"
    blur: str = "median:3"
    overrides: dict[str, Any] = field(default_factory=dict)
    label: str | None = None
    calibration: dict[str, Any] | None = None

    @property
    def key(self) -> str:
        if self.label:
            return self.label
        if self.name in ("none", "blur"):
            return self.name
        return f"zeropur-{self.stages}"

    def check(self) -> None:
        if self.name not in DEFENSES:
            raise UserError(f"unknown defense '{self.name}'; known: {', '.join(DEFENSES)}")
        owned = sorted(set(self.overrides) & set(RUN_OWNED_DEFENSE_KEYS))
        if owned:
            raise UserError(f"ZeroPur option(s) {', '.join(owned)} are set for the whole run: use "
                            f"{', '.join(RUN_OWNED_DEFENSE_KEYS[k] for k in owned)} instead of --zp")

    def build(self, classifier: nn.Module, seed: int, dtype: str = "fp32", channels_last: bool = False,
              coarse_cache: Any = None) -> nn.Module:
        self.check()
        if self.name == "none":
            return classifier
        if self.name == "blur":
            from .defense import BlurOnly

            return BlurOnly(classifier, self.blur)
        from .defense import ZeroPur

        return ZeroPur(classifier, profile=self.profile, stages=self.stages, blur=self.blur, seed=seed,
                       dtype=dtype, channels_last=channels_last, calibration=self.calibration,
                       coarse_cache=coarse_cache, **self.overrides)


def _positive_int(value: Any, what: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise UserError(f"{what} must be a positive integer, got {value!r}")
    return value


@dataclass
class EvalConfig:
    """Everything that determines a run's results (and how to rerun it)."""

    model: str
    dataset: str = "cifar10"
    threat: str = "linf"
    eps: float | None = None
    setting: str = "transfer"
    attacks: list[AttackSpec] = field(default_factory=lambda: [AttackSpec("pgd")])
    defenses: list[DefenseSpec] = field(default_factory=lambda: [DefenseSpec(stages="c"), DefenseSpec(stages="cf")])
    checkpoint: str | None = None
    model_dir: str | None = None
    n_ex: int = 200
    split: str = "test"
    data_seed: int | None = None  # None: the first n_ex (as RobustBench); else a seeded random subset
    seed: int = 0  # attack and defense randomness, kept apart from the data seed
    estimator: str = "one-shot"
    estimator_n: int = 1
    batch_size: int = 100
    device: str = "cpu"
    dtype: str = "fp32"
    channels_last: bool = False
    recipe: str | None = None  # how the classifier was trained, for tables (e.g. "standard")

    def __post_init__(self) -> None:
        from .data import check_dataset
        from .estimators import ESTIMATORS

        self.attacks = [a if isinstance(a, AttackSpec) else AttackSpec(**a) for a in self.attacks]
        self.defenses = [d if isinstance(d, DefenseSpec) else DefenseSpec(**d) for d in self.defenses]
        check_dataset(self.dataset, self.split)
        self.threat = str(self.threat).lower()
        if self.threat not in THREATS:
            raise UserError(f"unknown threat model '{self.threat}'; known: {', '.join(THREATS)}")
        if self.setting not in SETTINGS:
            raise UserError(f"unknown setting '{self.setting}'; known: {', '.join(SETTINGS)}")
        if self.eps is None:
            self.eps = default_eps(self.dataset, self.threat)
        limit = 1.0 if self.threat == "linf" else 64.0
        if not (isinstance(self.eps, (int, float)) and not isinstance(self.eps, bool) and math.isfinite(self.eps)
                and 0 < self.eps <= limit):
            raise UserError(f"eps must be in (0, {limit:g}] for {self.threat}, got {self.eps}"
                            + (" (give Linf eps as a fraction of 1, e.g. 8/255)" if isinstance(self.eps, (int, float))
                               and self.eps > limit else ""))
        if self.dtype not in DTYPES:
            raise UserError(f"unknown dtype '{self.dtype}'; known: {', '.join(DTYPES)}")
        _positive_int(self.n_ex, "n_ex (--n-ex)")
        _positive_int(self.batch_size, "batch_size (--batch-size)")
        if self.data_seed is not None and (isinstance(self.data_seed, bool) or not isinstance(self.data_seed, int)):
            raise UserError(f"data_seed must be an integer, got {self.data_seed!r}")
        if isinstance(self.seed, bool) or not isinstance(self.seed, int):
            raise UserError(f"seed must be an integer, got {self.seed!r}")
        if self.estimator not in ESTIMATORS:
            raise UserError(f"unknown estimator '{self.estimator}'; known: {', '.join(ESTIMATORS)}")
        _positive_int(self.estimator_n, "estimator_n (--estimator-n)")
        if self.estimator == "one-shot" and self.estimator_n != 1:
            raise UserError(f"the one-shot estimator makes one call; --estimator-n {self.estimator_n} needs "
                            "--estimator logit-avg or majority")
        check_device(self.device)
        if not self.attacks:
            raise UserError("give at least one attack")
        if not self.defenses:
            raise UserError("give at least one defense variant (or 'none')")
        for d in self.defenses:
            d.check()
        keys = [d.key for d in self.defenses]
        if len(set(keys)) != len(keys):
            raise UserError(f"two defense variants share the name {sorted(k for k in keys if keys.count(k) > 1)[0]!r}; "
                            "give them distinct labels")
        adaptive_defended = any(d.name != "none" for d in self.defenses)
        for a in self.attacks:
            cls = a.cls
            if (cls.needs_defense or cls.adaptive_only) and self.setting == "transfer":
                raise UserError(f"attack '{a.name}' attacks the defense itself: use --setting adaptive")
            if (cls.needs_defense or cls.adaptive_only) and not adaptive_defended:
                raise UserError(f"attack '{a.name}' attacks a defense, but the only variant is 'none'; "
                                "use --defense zeropur or a transfer attack such as pgd")
            a.resolved(self.eps, self.threat)  # unknown or run-owned keys fail here, before any work
        akeys = [a.key_for(self.eps, self.threat) for a in self.attacks]
        if len(set(akeys)) != len(akeys):
            raise UserError(f"two attacks share the column {sorted(k for k in akeys if akeys.count(k) > 1)[0]!r}; "
                            "give them different parameters or labels")

    @property
    def norm(self) -> str:
        return THREATS[self.threat]

    def to_dict(self) -> dict:
        d = asdict(self)
        d["attacks"] = [{**asdict(a), "key": a.key_for(self.eps, self.threat),
                         "resolved": a.resolved(self.eps, self.threat)} for a in self.attacks]
        d["defenses"] = [{**asdict(v), "key": v.key} for v in self.defenses]
        d["eps_str"] = eps_str(self.eps, self.threat)
        if d.get("checkpoint"):
            from .data import portable_path

            d["checkpoint"] = portable_path(d["checkpoint"]) if os.path.isabs(d["checkpoint"]) else d["checkpoint"]
        return d


@contextlib.contextmanager
def _autocast(device: str, dtype: str) -> Iterator[None]:
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


def resolve_out(out: str | os.PathLike | None, default_name: str, results_dir: str | os.PathLike = "results") -> Path:
    """Where a record goes: ``out``; an existing folder or a path ending in '/' means "that folder, default name";
    None means ``results/<default name>``. The location must be writable (checked, nothing created)."""
    if out is None:
        path = Path(results_dir) / default_name
    else:
        text = os.fspath(out)
        path = Path(text)
        if text.endswith(("/", os.sep)) or path.is_dir():
            path = path / default_name
    if path.is_dir():
        raise UserError(f"output '{path}' is a folder; give a file name or a folder ending in '/'")
    probe = path.parent
    while not probe.exists():
        if probe == probe.parent:
            break
        probe = probe.parent
    if not probe.is_dir():
        raise UserError(f"cannot write '{path}': '{probe}' is a file, not a folder")
    if not os.access(probe, os.W_OK | os.X_OK):
        raise UserError(f"cannot write '{path}': no write permission in '{probe}'")
    return path


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
        with _autocast(c.device, c.dtype):  # two passes, bit-identical outputs => deterministic
            self.deterministic = {k: probe_deterministic(d, probe_x) for k, d in self.defenses.items()}
            self.bare_deterministic = probe_deterministic(self._classifier, probe_x)
        # Build every attack on its target once: bad parameters and wrong targets fail here, not mid-run.
        targets = {"bare": self._classifier} if c.setting == "transfer" else self.defenses
        for spec in c.attacks:
            params = spec.resolved(c.eps, c.threat)
            for t in targets.values():
                make_attack(spec.name, t, eps=c.eps, norm=c.norm, seed=c.seed, **params)
        self.attack_keys = {}
        for i, spec in enumerate(c.attacks):
            if c.setting == "adaptive" and spec.name == "autoattack-bpda":
                per = {spec.key_for(c.eps, c.threat, self.deterministic[k]) for k in self.defenses}
                key = per.pop() if len(per) == 1 else spec.cls.label(spec.resolved(c.eps, c.threat), c.eps, c.norm) \
                    .replace("-rand", "-rand/standard")
            else:
                key = spec.key_for(c.eps, c.threat)
            self.attack_keys[i] = key
        resolved_defenses = [self._defense_config(k) for k in self.defenses]
        mi = self._model_info or {}
        model_id = {"arch": mi.get("arch", c.model), "checkpoint_sha256": mi.get("checkpoint_sha256")}
        if model_id["checkpoint_sha256"] is None:
            model_id["name"] = c.model
        self.comparison = comparison_key(
            dataset=c.dataset, split=c.split, threat=c.threat, eps=c.eps, setting=c.setting,
            attacks=[{"name": a.name, "params": a.resolved(c.eps, c.threat)} for a in c.attacks],
            defenses=resolved_defenses, data_sha256=self._data_info.get("sha256"), model=model_id, seed=c.seed,
            estimator=c.estimator, estimator_n=c.estimator_n, dtype=c.dtype)
        self.resume = resume_key(self.comparison, c.batch_size, code_version())
        self._prepared = True

    def _defense_config(self, key: str) -> dict:
        d = self.defenses[key]
        return dict(d.config()) if hasattr(d, "config") else {"name": "none"}

    def default_name(self) -> str:
        """``<dataset>-<threat>-<model>-<setting>-<hash>.json``; the hash covers the comparison key and the batch
        size (no path), so the same run gets the same name on any machine and checkout."""
        self.prepare()
        c = self.config
        model = Path(c.model).name.replace("/", "_")
        h = digest({"comparison": self.comparison, "batch_size": c.batch_size})
        return f"{c.dataset}-{c.threat}-{model}-{c.setting}-{h}.json"

    # -- one batch -----------------------------------------------------------------------------------------------
    def _run_batch(self, xb: torch.Tensor, yb: torch.Tensor, idx: torch.Tensor,
                   on_attack_done: Callable[[str, int], None]) -> dict:
        from .attacks import make_attack
        from .attacks.base import PassCounter
        from .estimators import predict

        c = self.config
        clf = self._classifier
        defenses = self.defenses
        res: dict[str, Any] = {"index": idx.tolist(), "cost": {}, "notes": {}}
        with torch.no_grad(), _autocast(c.device, c.dtype):
            res["clean_correct"] = (clf(xb).argmax(1) == yb).tolist()

        def judge(key: str, x_in: torch.Tensor) -> torch.Tensor:
            n_calls = 1 if self.deterministic[key] else c.estimator_n  # the run-level probe already decided
            with _autocast(c.device, c.dtype):
                pred = predict(defenses[key], x_in, c.estimator, n_calls, batch_size=c.batch_size, probe=False,
                               indices=idx.to(x_in.device))
            return pred.to(yb.device) == yb

        res["variants"] = {}
        bypass = self.coarse_cache.bypass() if self.coarse_cache is not None else contextlib.nullcontext()
        with bypass:  # every variant's own passes are counted here, so none reuses another's coarse stage
            for k in defenses:
                counter = PassCounter()
                with counter.attach(clf):
                    dclean = judge(k, xb)
                res["variants"][k] = {"defended_clean_correct": dclean.tolist(),
                                      "forward_passes_per_prediction": counter.forward / max(1, len(xb)),
                                      "adv_correct": {}, "adv_final_correct": {}, "first_broken_step": {},
                                      "final_counts": {}}
        res["bare_adv_correct"] = {}
        for i, spec in enumerate(c.attacks):
            key = self.attack_keys[i]
            params = spec.resolved(c.eps, c.threat)
            t0 = time.perf_counter()
            cost = {"forward_passes": 0, "backward_passes": 0}
            if c.setting == "transfer":
                atk = make_attack(spec.name, clf, eps=c.eps, norm=c.norm, seed=c.seed, **params)
                with _autocast(c.device, c.dtype):
                    x_adv = atk(xb, yb, idx)
                cost["forward_passes"] += atk.last_info.get("forward_passes", 0)
                cost["backward_passes"] += atk.last_info.get("backward_passes", 0)
                with torch.no_grad(), _autocast(c.device, c.dtype):
                    res["bare_adv_correct"][key] = (clf(x_adv).argmax(1) == yb).tolist()
                for k in defenses:
                    res["variants"][k]["adv_correct"][key] = judge(k, x_adv).tolist()
                res["notes"][key] = {"bare_classifier_deterministic": self.bare_deterministic,
                                     **_notes(atk.last_info)}
            else:
                res["notes"][key] = {}
                for k, d in defenses.items():
                    atk = make_attack(spec.name, d, eps=c.eps, norm=c.norm, seed=c.seed, **params)
                    with _autocast(c.device, c.dtype):
                        x_adv = atk(xb, yb, idx)
                    info = atk.last_info
                    cost["forward_passes"] += info.get("forward_passes", 0)
                    cost["backward_passes"] += info.get("backward_passes", 0)
                    v = res["variants"][k]
                    ok = judge(k, x_adv)
                    broken = info.get("broken_any_step")
                    if broken is not None:
                        ok = ok & ~torch.as_tensor(broken, dtype=torch.bool, device=ok.device)
                    v["adv_correct"][key] = ok.tolist()
                    if info.get("x_final") is not None:  # iterative: judge the attack's own last iterate
                        v["adv_final_correct"][key] = judge(k, info["x_final"]).tolist()
                    per_step = info.get("broken_per_step")
                    if per_step is not None and len(per_step):
                        dclean = torch.tensor(v["defended_clean_correct"], dtype=torch.bool)
                        alive = ~per_step.to(torch.bool)  # [steps + 1, n]
                        first = torch.where(per_step.any(0), per_step.to(torch.int64).argmax(0), -1)
                        v["first_broken_step"][key] = [None if f < 0 else int(f) for f in first.tolist()]
                        v["final_counts"][key] = {"robust": (alive & dclean).sum(1).tolist(),
                                                  "adv": alive.sum(1).tolist()}
                    res["notes"][key][k] = {**_notes(info), "target_deterministic": self.deterministic[k]}
            cost["seconds"] = time.perf_counter() - t0
            res["cost"][key] = cost
            on_attack_done(key, len(idx))
        return res

    # -- the run -------------------------------------------------------------------------------------------------
    def plan(self) -> list[tuple[int, int]]:
        """(batch number, first row) of every batch: fixed by n and the batch size alone, so any split of the
        batches over processes computes exactly what one process would."""
        n = len(self._data[0])
        return [(b, s) for b, s in enumerate(range(0, n, self.config.batch_size))]

    def _open_partial(self, partial: Path) -> None:
        """Create ``partial`` with the resume key, or check that an existing one was made by this configuration
        and this code (several processes may do this at once: the first writer wins, the rest compare)."""
        meta = {"resume_key": self.resume, "resume_hash": digest(self.resume), "code_version": code_version(),
                "git_commit": git_commit(), "n_batches": len(self.plan())}
        partial.mkdir(parents=True, exist_ok=True)
        meta_file = partial / "config.json"
        try:
            fd = os.open(meta_file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        except FileExistsError:
            for _ in range(100):  # another process may be writing it right now
                try:
                    old = json.loads(meta_file.read_text())
                    break
                except (json.JSONDecodeError, OSError):
                    time.sleep(0.05)
            else:
                raise UserError(f"'{meta_file}' is unreadable; remove '{partial}' to start over")
            if old.get("resume_hash") == meta["resume_hash"]:
                return
            ok = old.get("resume_key") or {}
            if ok.get("comparison") == self.resume["comparison"] and ok.get("batch_size") == self.resume["batch_size"]:
                raise UserError(f"'{partial}' holds batches made by different code (version {old.get('code_version')}"
                                f", commit {old.get('git_commit')}; now {code_version()}); batches of two code "
                                f"versions are never mixed: remove '{partial}' to start over, or finish it with "
                                "the code that started it")
            diff = describe_diff(ok, self.resume) if ok else "unknown"
            raise UserError(f"'{partial}' holds partial results of a different configuration ({diff}); remove it or "
                            "choose another --out")
        with os.fdopen(fd, "w") as f:
            json.dump(meta, f, indent=1)
            f.flush()
            os.fsync(f.fileno())

    def run(self, out: str | os.PathLike | None = None, progress: bool = True, write: bool = True,
            shard: tuple[int, int] | None = None, merge_only: bool = False,
            barrier: Callable[[], None] | None = None, assemble: bool = True, worker: str | None = None) -> dict:
        """Run (or resume) and return the record, also written to ``out`` unless ``write=False``.

        ``shard=(k, n)``: compute only batches ``b % n == k``. ``merge_only``: compute nothing. ``barrier`` is
        called after this process's batches (distributed runs); ``assemble=False`` returns a status instead of
        the record (a shard that leaves the assembly to another process). ``worker`` names this process in the
        batch files and the progress bar (e.g. "rank 1/4")."""
        worker = worker or ("single" if shard is None else f"shard {shard[0]}/{shard[1]}")
        c = self.config
        self.prepare()
        out_path = resolve_out(out, self.default_name())
        partial = out_path.with_name(out_path.name + ".partial")
        plan = self.plan()
        if shard is not None:
            k, n_shards = shard
            if not (isinstance(k, int) and isinstance(n_shards, int) and 0 <= k < n_shards):
                raise UserError(f"shard must be K/N with 0 <= K < N, got {k}/{n_shards}")
        if (shard is not None or merge_only or barrier is not None) and not write:
            raise UserError("sharded and merged runs keep their batches on disk: they need write=True")
        mine = [(b, s) for b, s in plan if shard is None or b % shard[1] == shard[0]]
        if merge_only:
            mine = []
        if write:
            self._open_partial(partial)
        x_all, y_all = self._data
        bars = _progress(progress)
        tasks: dict[str, Any] = {}
        results: dict[int, dict] = {}
        t_start = time.perf_counter()
        total = sum(min(c.batch_size, len(x_all) - s) for _, s in mine)
        with (bars or contextlib.nullcontext()):
            if bars is not None and mine:
                for key in self.attack_keys.values():
                    share = "" if shard is None else f" [{worker}: its share]"
                    tasks[key] = bars.add_task(f"{key} ({c.setting}){share}", total=total)

            def advance(key: str, k: int) -> None:
                if bars is not None and key in tasks:
                    bars.update(tasks[key], advance=k)

            for b, s in mine:
                f = partial / f"batch-{b:05d}.json"
                if write and f.exists():
                    results[b] = json.loads(f.read_text())
                    self.batches_resumed += 1
                    for key in self.attack_keys.values():
                        advance(key, len(results[b]["index"]))
                    continue
                xb = x_all[s: s + c.batch_size].to(c.device)
                yb = y_all[s: s + c.batch_size].to(c.device)
                idx = self.indices[s: s + c.batch_size]
                results[b] = self._run_batch(xb, yb, idx, advance)
                results[b]["computed_by"] = {"worker": worker, "pid": os.getpid()}
                self.batches_computed += 1
                if write:
                    write_json_atomic(f, results[b])
        wall = time.perf_counter() - t_start
        if barrier is not None:
            barrier()
        if not assemble:
            return {"status": "shard-done", "computed": self.batches_computed, "resumed": self.batches_resumed,
                    "partial": str(partial)}
        missing = []
        for b, _ in plan:
            if b in results:
                continue
            f = partial / f"batch-{b:05d}.json"
            if write and f.exists():
                results[b] = json.loads(f.read_text())
            else:
                missing.append(b)
        if missing:
            shown = ", ".join(str(b) for b in missing[:12]) + (" ..." if len(missing) > 12 else "")
            raise UserError(f"cannot assemble '{out_path}': {len(missing)} of {len(plan)} batches are not finished "
                            f"(missing: {shown}); run the remaining shards, or rerun without --shard/--merge-only")
        record = self._assemble([results[b] for b, _ in plan], wall)
        if write:
            write_json_atomic(out_path, record)
            shutil.rmtree(partial, ignore_errors=True)
            record["_path"] = str(out_path)
        return record

    # -- the record ----------------------------------------------------------------------------------------------
    def _assemble(self, batches: list[dict], wall: float) -> dict:
        c = self.config
        cat = lambda get: [v for b in batches for v in get(b)]  # noqa: E731
        index = [int(i) for i in cat(lambda b: b["index"])]
        clean = cat(lambda b: b["clean_correct"])
        akeys = [self.attack_keys[i] for i in range(len(c.attacks))]
        variants = {}
        for d in c.defenses:
            k = d.key
            vb = lambda b: b["variants"][k]  # noqa: E731
            dclean = cat(lambda b: vb(b)["defended_clean_correct"])
            adv = {a: cat(lambda b: vb(b)["adv_correct"][a]) for a in akeys}
            final_keys = [a for a in akeys if a in batches[0]["variants"][k]["adv_final_correct"]]
            adv_final = {a: cat(lambda b: vb(b)["adv_final_correct"][a]) for a in final_keys}
            examples = {"index": index, **per_example(clean, dclean, adv, adv_final or None)}
            summary = summarize(examples)
            curve_keys = [a for a in akeys if a in batches[0]["variants"][k]["first_broken_step"]]
            if curve_keys:
                examples["first_broken_step"] = {}
                summary["curves"] = {}
                for a in curve_keys:
                    first = cat(lambda b: vb(b)["first_broken_step"][a])
                    counts = [vb(b)["final_counts"][a] for b in batches]
                    sum_at = lambda which: [sum(cnt[which][t] for cnt in counts)  # noqa: E731
                                            for t in range(len(counts[0][which]))]
                    examples["first_broken_step"][a] = first
                    summary["curves"][a] = step_curves(dclean, first, sum_at("robust"), sum_at("adv"))
            passes = sum(vb(b)["forward_passes_per_prediction"] * len(b["index"]) for b in batches) / max(1, len(index))
            cal = getattr(self.defenses[k], "calibration", None)
            variants[k] = {"defense": {**asdict(d), "key": k, "resolved": _jsonable(self._defense_config(k)),
                                       "calibration": _jsonable(cal.to_dict()) if cal is not None else None,
                                       "deterministic": self.deterministic[k],
                                       "forward_passes_per_prediction": passes},
                           "summary": summary, "examples": examples}
        bare = None
        if c.setting == "transfer":
            bare_adv = {a: cat(lambda b: b["bare_adv_correct"][a]) for a in akeys}
            bare_ex = {"index": index, **per_example(clean, clean, bare_adv)}
            bare = {**summarize(bare_ex), "deterministic": self.bare_deterministic, "examples": bare_ex}
        n = len(index)
        cost = {a: {"forward_passes_per_image": sum(b["cost"][a]["forward_passes"] for b in batches) / max(n, 1),
                    "backward_passes_per_image": sum(b["cost"][a]["backward_passes"] for b in batches) / max(n, 1),
                    "seconds_per_image": sum(b["cost"][a]["seconds"] for b in batches) / max(n, 1)}
                for a in akeys}
        cost["_run"] = {"wall_seconds_this_call": wall, "batches_computed": self.batches_computed,
                        "batches_resumed": self.batches_resumed, "device": c.device, "dtype": c.dtype,
                        "channels_last": c.channels_last, "threads": torch.get_num_threads(),
                        "computed_by": [(b.get("computed_by") or {}).get("worker") for b in batches]}
        primary = c.defenses[-1].key
        notes = {a: [b["notes"].get(a) for b in batches] for a in akeys}
        # Who decided each example: the judge always; an attack's own verification where it marked a break.
        verification = {}
        for i, spec in enumerate(c.attacks):
            params = spec.resolved(c.eps, c.threat)
            if c.setting == "adaptive" and ("verify_estimator" in params or "judge_reps" in params):
                used = {}
                for k in self.defenses:
                    reps = {nb.get(k, {}).get("verify_reps", nb.get(k, {}).get("judge_reps"))
                            for nb in notes[akeys[i]] if nb}
                    used[k] = sorted(r for r in reps if r is not None)
                verification[akeys[i]] = {
                    "estimator": params.get("verify_estimator", "logit-avg"),
                    "reps_requested": params.get("verify_reps", params.get("judge_reps")), "reps_used": used,
                    "decides": "breaks the attack marked at its iterates (any-step column); the judge re-judges "
                               "the returned and the last iterate"}
        cfg = c.to_dict()
        for i, a in enumerate(cfg["attacks"]):
            a["key"] = akeys[i]
        record = {
            "schema": SCHEMA,
            "config": {**cfg, "primary_variant": primary, "arch": (self._model_info or {}).get("arch", c.model)},
            "keys": {"comparison": self.comparison, "comparison_hash": digest(self.comparison),
                     "batch_size": c.batch_size, "code_version": code_version(),
                     "resume_hash": digest(self.resume)},
            "summary": variants[primary]["summary"],
            "examples": variants[primary]["examples"],
            "variants": variants,
            "bare_classifier": bare,
            "estimator": {"judge": {"estimator": c.estimator, "n_requested": c.estimator_n,
                                    "n_used": {k: (1 if (self.deterministic[k] or c.estimator == "one-shot")
                                                   else c.estimator_n) for k in self.defenses}},
                          "attack_verification": verification,
                          "adaptive_headline": "any-step" if c.setting == "adaptive" else None},
            "attack_notes": notes,
            "provenance": {"data": self._data_info, "model": _portable_model_info(self._model_info)},
            "cost": cost,
            "environment": environment(),
        }
        record["model_info"] = model_info_block(record)
        return record


def _portable_model_info(info: dict | None) -> dict | None:
    if not info or not info.get("checkpoint"):
        return info
    from .data import portable_path

    return {**info, "checkpoint": portable_path(info["checkpoint"])}


def _notes(info: dict) -> dict:
    """The attack's ``last_info`` without per-example tensors (those live in the record's vectors)."""
    out = {}
    for k, v in info.items():
        if k in ("x_final", "broken_per_step"):
            continue
        if k in ("broken_any_step", "broken_final") and torch.is_tensor(v):
            out[k + "_count"] = int(v.sum())
            continue
        out[k] = _jsonable(v)
    return out


def model_info_block(record: dict) -> dict:
    """A RobustBench-style ``model_info`` entry. ``clean_acc`` is the DEFENDED model's clean accuracy (as
    RobustBench means it); ``autoattack_acc`` only when AutoAttack itself (its own settings) ran adaptively
    against the defense, else null, with a transfer AutoAttack number under ``external`` and a footnote.
    ``number_forward_passes``: the classifier passes per prediction of the defended model, measured."""
    c = record["config"]
    primary = c["primary_variant"]
    v = record["variants"][primary]
    pct = lambda a: f"{100 * a:.2f}"  # noqa: E731
    aa_keys = [a["key"] for a in c["attacks"] if a["key"].startswith("AutoAttack-")]
    aa = v["summary"]["robust_acc"][aa_keys[0]] if aa_keys else None
    adaptive = c["setting"] == "adaptive"
    passes = v["defense"].get("forward_passes_per_prediction")
    footnote = None
    if aa is not None and not adaptive:
        footnote = (f"{aa_keys[0]} crafted on the bare classifier (transfer setting), then purified; not an adaptive "
                    "evaluation of the defended model.")
    return {
        "name": f"ZeroPur ({v['defense'].get('profile')}, {primary}, {v['defense'].get('blur')}) on {c['model']}"
        if v["defense"]["name"] == "zeropur" else c["model"],
        "link": None,
        "authors": None,
        "additional_data": False,
        "number_forward_passes": round(passes) if passes is not None else None,
        "dataset": c["dataset"],
        "venue": None,
        "architecture": c.get("arch", c["model"]),
        "eps": c["eps_str"],
        "clean_acc": pct(v["summary"]["defended_clean_acc"]),
        "reported": None,
        "autoattack_acc": pct(aa) if (aa is not None and adaptive) else None,
        "external": pct(aa) if (aa is not None and not adaptive) else None,
        "footnote": footnote,
        "unreliable": False,
    }


def _jsonable(obj: Any) -> Any:
    if isinstance(obj, dict):
        return {str(k): _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_jsonable(v) for v in obj]
    if torch.is_tensor(obj):
        return obj.tolist() if obj.numel() > 1 or obj.dim() > 0 else obj.item()
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    if isinstance(obj, (str, int, float, bool)) or obj is None:
        return obj
    return str(obj)


def evaluate(config: EvalConfig, out: str | os.PathLike | None = None, *, data_dir: str | os.PathLike | None = None,
             progress: bool = False, write: bool = True, **kwargs: Any) -> dict:
    """Run ``config`` and return its record (also written to ``out`` unless ``write=False``)."""
    return Evaluator(config, data_dir=data_dir, **kwargs).run(out=out, progress=progress, write=write)
