"""The engine's inputs, loaded once: data slice, classifier, defenses (built through the registry), the
determinism probes, every attack checked against its targets, and the run's keys. Nothing is loaded while options
are parsed: :class:`RunInputs` is where a run first touches a file or a model.
"""
from __future__ import annotations

import contextlib
import os
import sys
from pathlib import Path
from typing import Any, Callable, Iterator

import torch
from torch import nn

from .config import DTYPES, AttackSpec, EvalConfig
from .errors import UserError
from .keys import code_version, comparison_key, digest, resume_key
from .threats import THREATS


@contextlib.contextmanager
def autocast(device: str, dtype: str) -> Iterator[None]:
    """bf16 autocast when the run asks for it, else nothing (fp32)."""
    if DTYPES[dtype] is None:
        yield
        return
    with torch.autocast(device_type=torch.device(device).type, dtype=DTYPES[dtype]):
        yield


class RunInputs:
    """Everything a run works on, loaded and checked once (:meth:`load`), before anything is written.

    ``classifier`` / ``model_info`` / ``data`` / ``data_info`` may be given (a sweep shares one classifier; a study
    passes in-memory images); ``echo`` receives messages (a calibration fitted now)."""

    def __init__(self, config: EvalConfig, *, data_dir: str | os.PathLike | None = None,
                 classifier: nn.Module | None = None, model_info: dict | None = None,
                 data: tuple[torch.Tensor, torch.Tensor] | None = None, data_info: dict | None = None,
                 echo: Callable[[str], None] | None = None) -> None:
        self.config = config
        self.data_dir = data_dir
        self.classifier = classifier
        self.model_info = model_info
        self.data = data
        self.data_info = data_info
        self.echo = echo or (lambda message: print(message, file=sys.stderr))
        self.recipe = config.recipe
        self.indices = torch.zeros(0, dtype=torch.long)
        self.defenses: dict[str, nn.Module] = {}
        self.deterministic: dict[str, bool] = {}
        self.bare_deterministic = True
        self.attack_keys: dict[int, str] = {}
        self.key_without_eps: dict[str, str] = {}
        self.comparison: dict[str, Any] = {}
        self.resume: dict[str, Any] = {}

    # -- loading --------------------------------------------------------------------------------------------------
    def load(self) -> "RunInputs":
        """Classifier, data, defenses, probes, attacks and keys (idempotent per object)."""
        if self.attack_keys:
            return self
        self.load_keys()
        self._probe()
        self._check_attacks()
        return self

    def load_keys(self) -> dict[str, Any]:
        """Only what the comparison key needs (classifier, data, defenses: no probe, no attack built); the key."""
        if not self.comparison:
            self._load_classifier()
            self._load_data()
            self._check_classifier()
            self._build_defenses()
            self._compute_keys()
        return self.comparison

    def _load_classifier(self) -> None:
        from .classifiers import load_classifier

        c = self.config
        if self.classifier is None:
            model, info = load_classifier(c.model, c.dataset, THREATS[c.threat], checkpoint=c.checkpoint,
                                          model_dir=c.model_dir, device=c.device, return_info=True)
            self.classifier, self.model_info = model, info.to_dict()
        if self.recipe is None and (self.model_info or {}).get("recipe"):
            self.recipe = self.model_info["recipe"]  # a registered classifier brings its training recipe
        if c.channels_last:
            self.classifier = self.classifier.to(memory_format=torch.channels_last)

    def _check_classifier(self) -> None:
        from .data import DATASETS

        c = self.config
        num_classes = DATASETS[c.dataset]["num_classes"]
        with torch.no_grad():
            out = self.classifier(self.data[0][:2].to(c.device))
        if out.ndim != 2 or out.shape[1] != num_classes:
            raise UserError(f"the classifier outputs {tuple(out.shape[1:])} logits but {c.dataset} has "
                            f"{num_classes} classes")

    def _load_data(self) -> None:
        from .attacks.base import Attack
        from .data import load_data, slice_sha256

        c = self.config
        if self.data is not None:
            Attack.validate_inputs(*self.data)
            self.indices = torch.arange(len(self.data[0]))
            if self.data_info is None:
                self.data_info = {"source": "in-memory", "n": len(self.data[0]), "sha256": slice_sha256(*self.data)}
            return
        n_load = None if c.data_seed is not None else c.n_ex
        x, y, info = load_data(c.dataset, c.split, n=n_load, data_dir=self.data_dir, return_info=True)
        if c.data_seed is None:
            self.data, self.data_info, self.indices = (x, y), info.to_dict(), torch.arange(len(x))
            return
        if c.n_ex > len(x):
            raise UserError(f"asked for n_ex={c.n_ex} but the {c.dataset} {c.split} split has {len(x)}")
        g = torch.Generator().manual_seed(c.data_seed)
        idx = torch.randperm(len(x), generator=g)[: c.n_ex].sort().values
        x, y = x[idx], y[idx]
        self.data, self.indices = (x, y), idx
        self.data_info = {**info.to_dict(), "n": len(x), "sha256": slice_sha256(x, y), "data_seed": c.data_seed}

    def _build_defenses(self) -> None:
        from .defenses import BuildContext

        c = self.config
        ctx = BuildContext(seed=c.seed, dtype=c.dtype, channels_last=c.channels_last, setting=c.setting,
                           dataset=c.dataset, data_dir=None if self.data_dir is None else str(self.data_dir),
                           echo=self.echo)
        self.defenses = {d.key: d.build(self.classifier, ctx) for d in c.defenses}

    def _probe(self) -> None:
        from .estimators import probe_deterministic

        c = self.config
        x = self.data[0]
        probe_x = x[: min(4, len(x))].to(c.device)
        with autocast(c.device, c.dtype):  # two passes, bit-identical outputs => deterministic
            self.deterministic = {k: probe_deterministic(d, probe_x) for k, d in self.defenses.items()}
            self.bare_deterministic = probe_deterministic(self.classifier, probe_x)

    def _check_attacks(self) -> None:
        """Build every attack on its target once: bad parameters and wrong targets fail here, not mid-run."""
        from .attacks import make_attack

        c = self.config
        targets = [self.classifier] if c.setting == "transfer" else list(self.defenses.values())
        for spec in c.attacks:
            params = spec.resolved(c.eps, c.threat)
            for t in targets:
                make_attack(spec.name, t, eps=c.eps, norm=c.norm, seed=c.seed, **params)
        for i, spec in enumerate(c.attacks):
            key = self._column(spec, True)
            self.attack_keys[i] = key
            self.key_without_eps[key] = self._column(spec, False)

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

    def _compute_keys(self) -> None:
        c = self.config
        mi = self.model_info or {}
        model_id = {"arch": mi.get("arch", c.model), "checkpoint_sha256": mi.get("checkpoint_sha256")}
        if model_id["checkpoint_sha256"] is None:
            model_id["name"] = c.model
        self.comparison = comparison_key(
            dataset=c.dataset, split=c.split, threat=c.threat, eps=c.eps, setting=c.setting,
            attacks=[{"name": a.name, "params": a.resolved(c.eps, c.threat)} for a in c.attacks],
            defenses=[self.defense_config(k) for k in self.defenses], data_sha256=self.data_info.get("sha256"),
            model=model_id, seed=c.seed, estimator=c.estimator, estimator_n=c.estimator_n, dtype=c.dtype,
            cascade=c.cascade)
        self.resume = resume_key(self.comparison, c.batch_size, code_version())

    # -- what the run knows ---------------------------------------------------------------------------------------
    def defense_config(self, key: str) -> dict:
        """The resolved configuration of defense variant ``key`` (what its record block says it ran)."""
        return dict(self.defenses[key].config())

    def default_name(self) -> str:
        """``<dataset>-<threat>-<model>-<setting>-<hash>.json``; the hash covers the comparison key and the batch
        size (no path), so the same run gets the same name on any machine and checkout."""
        c = self.config
        model = Path(c.model).name.replace("/", "_")
        h = digest({"comparison": self.comparison, "batch_size": c.batch_size})
        return f"{c.dataset}-{c.threat}-{model}-{c.setting}-{h}.json"
