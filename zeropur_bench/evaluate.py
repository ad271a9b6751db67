"""The evaluation engine: classifier + defense variants + attacks on a data slice → one record.

* ``transfer`` setting (paper Tables 2–5): each attack is crafted once on the bare classifier; the same
  adversarial set is then purified by every defense variant ("craft once, purify many").
* ``adaptive`` setting (Table 6, Figure 5): each attack is crafted against each defended model. Attacks that
  track their iterates report "any step" (headline: an image broken at any iterate stays broken, Hill et al.)
  and "final x_adv only" beside it.

Per example: bare clean correct, defended clean correct, robust correct per attack, worst case over attacks.
Summary: accuracies with Wilson 95% intervals. The run is resumable at batch granularity: each finished batch is
saved under ``<record>.partial/`` and the record is assembled (atomically) at the end.
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
from .records import SCHEMA, config_hash, environment, write_json_atomic
from .stats import wilson

SETTINGS = ("transfer", "adaptive")
THREATS = {"linf": "Linf", "l2": "L2"}
DTYPES = {"fp32": None, "bf16": torch.bfloat16}


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


@dataclass
class AttackSpec:
    """An attack by registry name with its parameters; ``label`` names its column (default: the name)."""

    name: str
    params: dict[str, Any] = field(default_factory=dict)
    label: str | None = None

    @property
    def key(self) -> str:
        if self.label:
            return self.label
        if not self.params:
            return self.name
        return self.name + "[" + ",".join(f"{k}={v}" for k, v in sorted(self.params.items())) + "]"


@dataclass
class DefenseSpec:
    """A defense variant: ``zeropur`` with profile / stages / blur / overrides, or ``none``."""

    name: str = "zeropur"
    profile: str = "authors"
    stages: str = "cf"
    blur: str = "median:3"
    overrides: dict[str, Any] = field(default_factory=dict)
    label: str | None = None

    @property
    def key(self) -> str:
        if self.label:
            return self.label
        if self.name == "none":
            return "none"
        return f"zeropur-{self.stages}"

    def build(self, classifier: nn.Module, seed: int, dtype: str = "fp32", channels_last: bool = False) -> nn.Module:
        if self.name == "none":
            return classifier
        if self.name != "zeropur":
            raise UserError(f"unknown defense '{self.name}'; known: zeropur, none")
        from .defense import ZeroPur

        return ZeroPur(classifier, profile=self.profile, stages=self.stages, blur=self.blur, seed=seed,
                       dtype=dtype, channels_last=channels_last, **self.overrides)


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
        self.attacks = [a if isinstance(a, AttackSpec) else AttackSpec(**a) for a in self.attacks]
        self.defenses = [d if isinstance(d, DefenseSpec) else DefenseSpec(**d) for d in self.defenses]
        self.threat = str(self.threat).lower()
        if self.threat not in THREATS:
            raise UserError(f"unknown threat model '{self.threat}'; known: {', '.join(THREATS)}")
        if self.setting not in SETTINGS:
            raise UserError(f"unknown setting '{self.setting}'; known: {', '.join(SETTINGS)}")
        if self.eps is None:
            self.eps = default_eps(self.dataset, self.threat)
        limit = 1.0 if self.threat == "linf" else 64.0
        if not (isinstance(self.eps, (int, float)) and math.isfinite(self.eps) and 0 < self.eps <= limit):
            raise UserError(f"eps must be in (0, {limit:g}] for {self.threat}, got {self.eps}"
                            + (" (give Linf eps as a fraction of 1, e.g. 8/255)" if self.eps > limit else ""))
        if self.dtype not in DTYPES:
            raise UserError(f"unknown dtype '{self.dtype}'; known: {', '.join(DTYPES)}")
        if self.n_ex <= 0 or self.batch_size <= 0:
            raise UserError("n_ex and batch_size must be positive")
        if not self.attacks:
            raise UserError("give at least one attack")
        if not self.defenses:
            raise UserError("give at least one defense variant (or 'none')")
        for specs, what in ((self.attacks, "attack"), (self.defenses, "defense")):
            keys = [s.key for s in specs]
            if len(set(keys)) != len(keys):
                raise UserError(f"two {what}s share the name {sorted(k for k in keys if keys.count(k) > 1)[0]!r}; "
                                "give them distinct labels")
        from .attacks import ATTACKS

        for a in self.attacks:
            if a.name not in ATTACKS:
                raise UserError(f"unknown attack '{a.name}'; known: {', '.join(sorted(ATTACKS))}")
            if self.setting == "transfer" and (ATTACKS[a.name].needs_defense or ATTACKS[a.name].adaptive_only):
                raise UserError(f"attack '{a.name}' attacks the defense itself: use --setting adaptive")

    def to_dict(self) -> dict:
        d = asdict(self)
        d["attacks"] = [{**asdict(a), "key": a.key} for a in self.attacks]
        d["defenses"] = [{**asdict(v), "key": v.key} for v in self.defenses]
        d["eps_str"] = eps_str(self.eps, self.threat)
        return d


def _acc_block(correct: dict[str, list[bool]]) -> tuple[dict[str, float], dict[str, list[float]]]:
    acc, ci = {}, {}
    for k, v in correct.items():
        n = len(v)
        acc[k] = sum(v) / n if n else float("nan")
        ci[k] = list(wilson(sum(v), n)) if n else [float("nan"), float("nan")]
    return acc, ci


def summarize(clean: list[bool], defended_clean: list[bool], robust: dict[str, list[bool]],
              extra: dict[str, dict[str, list[bool]]] | None = None) -> tuple[dict, list[bool]]:
    """Summary block (accuracies as fractions, Wilson 95% intervals) and the worst-case vector."""
    n = len(clean)
    worst = [all(v[i] for v in robust.values()) for i in range(n)] if robust else list(defended_clean)
    base, base_ci = _acc_block({"clean_acc": clean, "defended_clean_acc": defended_clean, "worst_case_acc": worst})
    racc, rci = _acc_block(robust)
    summary = {"n": n, **base, "robust_acc": racc, "ci95": {**base_ci, "robust_acc": rci}}
    for name, block in (extra or {}).items():
        acc, ci = _acc_block(block)
        summary[name] = acc
        summary["ci95"][name] = ci
    return summary, worst


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
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, \
        TimeRemainingColumn
    from rich.console import Console

    return Progress(TextColumn("{task.description:<28}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                    TextColumn("ETA"), TimeRemainingColumn(), console=Console(stderr=True), transient=False)


def default_out(config: EvalConfig, results_dir: str | os.PathLike = "results") -> Path:
    cfg = config.to_dict()
    model = Path(config.model).name.replace("/", "_")
    return Path(results_dir) / f"{config.dataset}-{config.threat}-{model}-{config.setting}-{config_hash(cfg)}.json"


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

    # -- inputs --------------------------------------------------------------------------------------------------
    def load(self) -> None:
        from .classifiers import load_classifier
        from .data import DATASETS, load_data, slice_sha256

        c = self.config
        if self._classifier is None:
            model, info = load_classifier(c.model, c.dataset, THREATS[c.threat], checkpoint=c.checkpoint,
                                          model_dir=c.model_dir, device=c.device, return_info=True)
            self._classifier, self._model_info = model, info.to_dict()
        if self._data is None:
            n_load = None if c.data_seed is not None else c.n_ex
            x, y, info = load_data(c.dataset, c.split, n=n_load, data_dir=self.data_dir, return_info=True)
            if c.data_seed is not None:
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

    # -- one batch -----------------------------------------------------------------------------------------------
    def _attack_kwargs(self, spec: AttackSpec, target_deterministic: bool) -> tuple[dict, dict]:
        """Attack parameters and notes: EOT repeats collapse to 1 against a deterministic target."""
        from .attacks import ATTACKS

        params = dict(spec.params)
        notes: dict[str, Any] = {}
        cls = ATTACKS[spec.name]
        if spec.name == "autoattack" and params.get("version", cls.defaults.get("version")) == "rand":
            if target_deterministic and "eot_iter" not in params:
                params["eot_iter"] = 1
                notes["eot_iter_collapsed"] = "target is deterministic: EOT 20 -> 1 (same trajectory, 1/20 work)"
        return params, notes

    def _run_batch(self, xb: torch.Tensor, yb: torch.Tensor, idx: torch.Tensor, defenses: dict[str, nn.Module],
                   deterministic: dict[str, bool], on_attack_done: Callable[[str, int], None]) -> dict:
        from .attacks import make_attack
        from .estimators import predict

        c = self.config
        clf = self._classifier
        res: dict[str, Any] = {"index": idx.tolist(), "cost": {}, "notes": {}}
        with torch.no_grad(), _autocast(c.device, c.dtype):
            res["clean_correct"] = (clf(xb).argmax(1) == yb).tolist()

        def judge(key: str, x_in: torch.Tensor) -> torch.Tensor:
            d = defenses[key]
            n_calls = 1 if deterministic[key] else c.estimator_n  # the run-level probe already decided
            with _autocast(c.device, c.dtype):
                pred = predict(d, x_in, c.estimator, n_calls, batch_size=c.batch_size, probe=False,
                               indices=idx.to(x_in.device))
            return pred.to(yb.device) == yb

        res["variants"] = {k: {"defended_clean_correct": judge(k, xb).tolist(), "robust_correct": {},
                               "robust_final_correct": {}} for k in defenses}
        res["bare_robust_correct"] = {}
        eps, norm = c.eps, THREATS[c.threat]
        for spec in c.attacks:
            t0 = time.perf_counter()
            cost = {"forward_passes": 0, "backward_passes": 0}
            if c.setting == "transfer":
                params, notes = self._attack_kwargs(spec, target_deterministic=True)
                atk = make_attack(spec.name, clf, eps=eps, norm=norm, seed=c.seed, **params)
                with _autocast(c.device, c.dtype):
                    x_adv = atk(xb, yb, idx)
                cost["forward_passes"] += atk.last_info.get("forward_passes", 0)
                cost["backward_passes"] += atk.last_info.get("backward_passes", 0)
                with torch.no_grad(), _autocast(c.device, c.dtype):
                    res["bare_robust_correct"][spec.key] = (clf(x_adv).argmax(1) == yb).tolist()
                for k in defenses:
                    ok = judge(k, x_adv)
                    res["variants"][k]["robust_correct"][spec.key] = ok.tolist()
                res["notes"][spec.key] = {**notes, **_jsonable(atk.last_info)}
            else:
                res["notes"][spec.key] = {}
                for k, d in defenses.items():
                    params, notes = self._attack_kwargs(spec, target_deterministic=deterministic[k])
                    atk = make_attack(spec.name, d, eps=eps, norm=norm, seed=c.seed, **params)
                    with _autocast(c.device, c.dtype):
                        x_adv = atk(xb, yb, idx)
                    cost["forward_passes"] += atk.last_info.get("forward_passes", 0)
                    cost["backward_passes"] += atk.last_info.get("backward_passes", 0)
                    final = judge(k, x_adv)
                    any_step = final
                    broken = atk.last_info.get("broken_any_step")
                    if broken is not None:
                        any_step = final & ~torch.as_tensor(broken, dtype=torch.bool, device=final.device)
                    res["variants"][k]["robust_correct"][spec.key] = any_step.tolist()
                    res["variants"][k]["robust_final_correct"][spec.key] = final.tolist()
                    res["notes"][spec.key][k] = {**notes, **_jsonable(atk.last_info),
                                                 "target_deterministic": deterministic[k]}
            cost["seconds"] = time.perf_counter() - t0
            res["cost"][spec.key] = cost
            on_attack_done(spec.key, len(idx))
        return res

    # -- the run -------------------------------------------------------------------------------------------------
    def run(self, out: str | os.PathLike | None = None, progress: bool = True, write: bool = True) -> dict:
        c = self.config
        self.load()
        x_all, y_all = self._data
        cfg = c.to_dict()
        chash = config_hash(cfg)
        out_path = Path(out) if out is not None else default_out(c)
        partial = out_path.with_name(out_path.name + ".partial")
        # Build (and so validate) every defense before anything is written.
        defenses = {d.key: d.build(self._classifier, c.seed, c.dtype, c.channels_last) for d in c.defenses}
        if write:
            partial.mkdir(parents=True, exist_ok=True)
            meta_file = partial / "config.json"
            if meta_file.exists():
                old = json.loads(meta_file.read_text())
                if old.get("config_hash") != chash or old.get("data_sha256") != self._data_info.get("sha256"):
                    raise UserError(f"'{partial}' holds partial results of a different configuration; "
                                    f"remove it or choose another --out")
            else:
                write_json_atomic(meta_file, {"config_hash": chash, "data_sha256": self._data_info.get("sha256")})

        from .estimators import probe_deterministic

        probe_x = x_all[: min(4, len(x_all))].to(c.device)
        with _autocast(c.device, c.dtype):  # two passes, bit-identical outputs => deterministic
            deterministic = {k: probe_deterministic(d, probe_x) for k, d in defenses.items()}

        n = len(x_all)
        starts = list(range(0, n, c.batch_size))
        bars = _progress(progress)
        tasks: dict[str, Any] = {}
        batches: list[dict] = []
        t_start = time.perf_counter()
        with (bars or contextlib.nullcontext()):
            if bars is not None:
                for spec in c.attacks:
                    tasks[spec.key] = bars.add_task(f"{spec.key} ({c.setting})", total=n)

            def advance(key: str, k: int) -> None:
                if bars is not None:
                    bars.update(tasks[key], advance=k)

            for b, s in enumerate(starts):
                f = partial / f"batch-{b:05d}.json"
                if write and f.exists():
                    res = json.loads(f.read_text())
                    self.batches_resumed += 1
                    for spec in c.attacks:
                        advance(spec.key, len(res["index"]))
                else:
                    xb = x_all[s: s + c.batch_size].to(c.device)
                    yb = y_all[s: s + c.batch_size].to(c.device)
                    idx = self.indices[s: s + c.batch_size]
                    res = self._run_batch(xb, yb, idx, defenses, deterministic, advance)
                    self.batches_computed += 1
                    if write:
                        write_json_atomic(f, res)
                batches.append(res)
        record = self._assemble(batches, deterministic, defenses, time.perf_counter() - t_start)
        if write:
            write_json_atomic(out_path, record)
            shutil.rmtree(partial, ignore_errors=True)
            record["_path"] = str(out_path)
        return record

    def _assemble(self, batches: list[dict], deterministic: dict[str, bool], defenses: dict[str, nn.Module],
                  wall: float) -> dict:
        c = self.config
        cat = lambda key: [v for b in batches for v in b[key]]  # noqa: E731
        index = [int(i) for i in cat("index")]
        clean = cat("clean_correct")
        akeys = [a.key for a in c.attacks]
        variants = {}
        for d in c.defenses:
            k = d.key
            dclean = [v for b in batches for v in b["variants"][k]["defended_clean_correct"]]
            robust = {a: [v for b in batches for v in b["variants"][k]["robust_correct"][a]] for a in akeys}
            extra = {}
            if c.setting == "adaptive":
                extra["robust_final_acc"] = {a: [v for b in batches for v in b["variants"][k]["robust_final_correct"][a]]
                                             for a in akeys}
            summary, worst = summarize(clean, dclean, robust, extra)
            examples = {"index": index, "clean_correct": clean, "defended_clean_correct": dclean,
                        "robust_correct": robust, "worst_case_correct": worst}
            if extra:
                examples["robust_final_correct"] = extra["robust_final_acc"]
            dcfg = defenses[k].config() if hasattr(defenses[k], "config") else {"name": "none"}
            variants[k] = {"defense": {**asdict(d), "key": k, "resolved": _jsonable(dcfg),
                                       "deterministic": deterministic[k]},
                           "summary": summary, "examples": examples}
        bare = None
        if c.setting == "transfer":
            bare_robust = {a: [v for b in batches for v in b["bare_robust_correct"][a]] for a in akeys}
            bare, _ = summarize(clean, clean, bare_robust)
        n = len(index)
        cost = {a: {"forward_passes_per_image": sum(b["cost"][a]["forward_passes"] for b in batches) / max(n, 1),
                    "backward_passes_per_image": sum(b["cost"][a]["backward_passes"] for b in batches) / max(n, 1),
                    "seconds_per_image": sum(b["cost"][a]["seconds"] for b in batches) / max(n, 1)}
                for a in akeys}
        cost["_run"] = {"wall_seconds_this_call": wall, "batches_computed": self.batches_computed,
                        "batches_resumed": self.batches_resumed, "device": c.device, "dtype": c.dtype,
                        "channels_last": c.channels_last, "threads": torch.get_num_threads()}
        primary = c.defenses[-1].key
        notes = {a: [b["notes"].get(a) for b in batches] for a in akeys}
        record = {
            "schema": SCHEMA,
            "config": {**c.to_dict(), "config_hash": config_hash(c.to_dict()), "primary_variant": primary,
                       "arch": (self._model_info or {}).get("arch", c.model)},
            "summary": variants[primary]["summary"],
            "examples": variants[primary]["examples"],
            "variants": variants,
            "bare_classifier": bare,
            "estimator": {"name": c.estimator, "n": c.estimator_n,
                          "adaptive_headline": "any-step" if c.setting == "adaptive" else None},
            "attack_notes": notes,
            "provenance": {"data": self._data_info, "model": self._model_info},
            "cost": cost,
            "environment": environment(),
        }
        record["model_info"] = model_info_block(record)
        return record


def model_info_block(record: dict) -> dict:
    """A RobustBench-style ``model_info`` entry. ``clean_acc`` is the DEFENDED model's clean accuracy (as
    RobustBench means it); ``autoattack_acc`` only when AutoAttack ran adaptively against the defense, else null
    with the transfer number under ``external`` and a footnote."""
    c = record["config"]
    primary = c["primary_variant"]
    v = record["variants"][primary]
    pct = lambda a: f"{100 * a:.2f}"  # noqa: E731
    aa_keys = [a["key"] for a in c["attacks"] if a["name"] == "autoattack"]
    aa = v["summary"]["robust_acc"][aa_keys[0]] if aa_keys else None
    adaptive = c["setting"] == "adaptive"
    resolved = v["defense"].get("resolved") or {}
    passes = resolved.get("forward_passes_per_image")
    footnote = None
    if aa is not None and not adaptive:
        footnote = ("AutoAttack crafted on the bare classifier (transfer setting), then purified; not an adaptive "
                    "evaluation of the defended model.")
    return {
        "name": f"ZeroPur ({v['defense'].get('profile')}, {primary}, {v['defense'].get('blur')}) on {c['model']}"
        if v["defense"]["name"] == "zeropur" else c["model"],
        "link": None,
        "authors": None,
        "additional_data": False,
        "number_forward_passes": passes,
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
