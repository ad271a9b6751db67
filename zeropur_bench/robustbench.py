"""RobustBench's own ``benchmark()`` and ``generate_leaderboard()`` on this package's models and exports, with only
what robustbench 1.1.1 cannot do from PyPI adapted, at its boundary (nothing of RobustBench or AutoAttack is
copied; the adaptations apply only during the call):

* **AutoAttack's API** (robustbench issue #211): robustbench imports the GitHub ``autoattack`` and calls its API,
  ``AutoAttack(model, norm=, eps=, version=, device=, log_path=)`` and ``run_standard_evaluation(x, y, bs=,
  state_path=)`` returning ``x_adv``. PyPI ships ``pyautoattack`` (keyword-only, ``batch_size=``, returns
  ``(x_adv, y_adv)``, no ``log_path``). :class:`GitHubAutoAttack` gives robustbench the GitHub API over
  pyautoattack; the ``autoattack`` import name itself is aliased by :mod:`zeropur_bench._compat`.
* **CIFAR data offline**: robustbench loads CIFAR through torchvision, which md5-checks the original archive files
  and downloads them when absent; the shared data holds the same images decoded (``prepare.py``:
  ``<data_dir>/cifar10_test.npz``). Where that file is in ``data_dir`` and its first ``n_examples`` rows are
  RobustBench's first ``n_examples`` test images (CIFAR-10: n ≤ 1000 or all 10,000; CIFAR-100: n ≤ 20 or all),
  they come from it (:func:`zeropur_bench.data.load_data`); otherwise robustbench's own loader runs. ImageNet and
  the corruption datasets always use robustbench's own loaders.
* **The leaderboard template**: robustbench 1.1.1's wheel and sdist do not ship ``leaderboard/leaderboard.html.j2``,
  so its ``generate_leaderboard`` raises ``TemplateNotFound`` on any input. :func:`generate_leaderboard` runs it with
  a minimal template of the same fields (written here) used only where the package's own is missing.

What ``benchmark(ZeroPur(...), ...)`` measures is AutoAttack ('standard', RobustBench's setting) against the
defended model; with ZeroPur's default ``grad_mode='bpda'`` its gradient is the straight-through BPDA one.
"""
from __future__ import annotations

import contextlib
import logging
import os
from pathlib import Path
from typing import Any, Callable, Iterator, Optional

import torch
from torch import nn

from ._compat import import_robustbench

__all__ = ["benchmark", "generate_leaderboard", "GitHubAutoAttack", "robustbench_adapted"]

_TEST_SIZE = 10000
_ORIGINAL_ORDER = {"cifar10": 1000, "cifar100": 20}  # rows of prepare.py's test split in the original order


class GitHubAutoAttack:
    """The GitHub AutoAttack constructor and ``run_standard_evaluation`` that robustbench 1.1.1 calls, running
    ``pyautoattack.AutoAttack``. ``log_path`` gets AutoAttack's log lines (the ``auto-attack`` logger)."""

    def __init__(self, model: nn.Module, norm: str = "Linf", eps: float = 0.3, seed: Optional[int] = None,
                 verbose: bool = True, attacks_to_run: Optional[list[str]] = None, version: str = "standard",
                 is_tf_model: bool = False, device: Any = "cuda", log_path: Optional[str] = None) -> None:
        from pyautoattack import AutoAttack

        if is_tf_model:
            raise NotImplementedError("pyautoattack runs PyTorch models only")
        self.log_path = log_path
        self.attack = AutoAttack(model, norm=norm, eps=eps, seed=seed, version=version, device=device,
                                 attacks=list(attacks_to_run) if attacks_to_run and version == "custom" else None)
        self.attack.verbose = verbose

    def __getattr__(self, name: str) -> Any:  # apgd, fab, square, attacks_to_run ... as on the GitHub object
        attack = self.__dict__.get("attack")
        if attack is None:
            raise AttributeError(name)
        return getattr(attack, name)

    def run_standard_evaluation(self, x_orig: torch.Tensor, y_orig: torch.Tensor, bs: int = 250,
                                return_labels: bool = False, state_path: Optional[Path] = None) -> Any:
        log = logging.getLogger("auto-attack")
        handler = logging.FileHandler(self.log_path) if self.log_path else None
        old_level = log.level
        if handler is not None:
            log.addHandler(handler)
            log.setLevel(logging.DEBUG)
        try:
            x_adv, y_adv = self.attack.run_standard_evaluation(x_orig, y_orig, batch_size=bs, state_path=state_path)
        finally:
            if handler is not None:
                log.removeHandler(handler)
                handler.close()
                log.setLevel(old_level)
        return (x_adv, y_adv) if return_labels else x_adv


def _robustbench_images(name: str, n: Optional[int]) -> bool:
    """Whether the first ``n`` rows of prepare.py's test split are RobustBench's first ``n`` test images: its first
    1000 (CIFAR-10) / 20 (CIFAR-100) rows are in the original order, the rest in a fixed random order
    (../shared/data/README.md), so only those prefixes, or the whole split, are the same images."""
    return n is None or n >= _TEST_SIZE or n <= _ORIGINAL_ORDER[name]


def _load_clean_dataset(upstream: Callable[..., Any]) -> Callable[..., Any]:
    """robustbench's ``load_clean_dataset(dataset, n_examples, data_dir, prepr)``, reading the decoded CIFAR test
    split from ``<data_dir>/<dataset>_test.npz`` where it exists and holds RobustBench's images; otherwise
    robustbench's own loader (torchvision: the original archives in ``data_dir``, downloaded when absent)."""
    def load(dataset: Any, n_examples: Optional[int], data_dir: str, prepr: Any) -> tuple[torch.Tensor, torch.Tensor]:
        name = getattr(dataset, "value", dataset)
        if name in _ORIGINAL_ORDER and (Path(data_dir) / f"{name}_test.npz").is_file() \
                and _robustbench_images(name, n_examples):
            from .data import load_data

            n = None if n_examples is None or n_examples >= _TEST_SIZE else n_examples
            return load_data(name, "test", n=n, data_dir=data_dir)
        return upstream(dataset, n_examples, data_dir, prepr)

    return load


@contextlib.contextmanager
def robustbench_adapted() -> Iterator[Any]:
    """``robustbench.eval`` with the GitHub AutoAttack API over pyautoattack and offline CIFAR data, restored after."""
    import_robustbench()
    import robustbench.eval as rb_eval

    saved = {"AutoAttack": rb_eval.AutoAttack, "load_clean_dataset": rb_eval.load_clean_dataset}
    rb_eval.AutoAttack = GitHubAutoAttack
    rb_eval.load_clean_dataset = _load_clean_dataset(saved["load_clean_dataset"])
    try:
        yield rb_eval
    finally:
        for k, v in saved.items():
            setattr(rb_eval, k, v)


def benchmark(model: nn.Module, n_examples: int = 10000, dataset: Any = "cifar10", threat_model: Any = "Linf",
              to_disk: bool = False, model_name: Optional[str] = None, data_dir: str = "./data",
              corruptions_data_dir: Optional[str] = None, device: Any = None, batch_size: int = 32,
              eps: Optional[float] = None, log_path: Optional[str] = None, preprocessing: Any = None,
              aa_state_path: Optional[Path] = None) -> tuple[float, float]:
    """``robustbench.eval.benchmark`` with RobustBench's signature and defaults, run as is under
    :func:`robustbench_adapted`. Returns ``(clean accuracy, robust accuracy)`` as fractions."""
    with robustbench_adapted() as rb_eval:
        return rb_eval.benchmark(model, n_examples=n_examples, dataset=dataset, threat_model=threat_model,
                                 to_disk=to_disk, model_name=model_name, data_dir=data_dir,
                                 corruptions_data_dir=corruptions_data_dir, device=device, batch_size=batch_size,
                                 eps=eps, log_path=log_path, preprocessing=preprocessing,
                                 aa_state_path=aa_state_path)


# Used only where robustbench's own leaderboard.html.j2 is missing (1.1.1 does not ship it): the fields its
# generate_leaderboard passes (models sorted by its own key, acc_field), in a plain table.
_FALLBACK_TEMPLATE = """<table class="leaderboard">
<thead><tr><th>Rank</th><th>Method</th><th>Clean accuracy</th><th>Robust accuracy</th><th>Extra data</th>
<th>Architecture</th><th>Venue</th></tr></thead>
<tbody>
{% for m in models %}<tr><td>{{ loop.index }}</td><td><a href="{{ m.link }}">{{ m.name }}</a>{% if m.footnote is defined %}<br><small>{{ m.footnote }}</small>{% endif %}</td>
<td>{{ m.clean_acc }}%</td><td>{{ m.external if m.external is defined else m[acc_field] }}%</td><td>{{ "yes" if m.additional_data else "no" }}</td><td>{{ m.architecture }}</td><td>{{ m.venue }}</td></tr>
{% endfor %}</tbody>
</table>
"""


def generate_leaderboard(dataset: Any, threat_model: Any, models_folder: str | os.PathLike = "model_info") -> str:
    """``robustbench.leaderboard.template.generate_leaderboard`` (it reads ``<models_folder>/<dataset>/<threat>``,
    sorts by ``external`` else ``autoattack_acc`` and prints the HTML table), with the template fallback above."""
    import_robustbench()
    import jinja2
    from robustbench.leaderboard import template as rb_template

    upstream = rb_template.PackageLoader

    def loader(package: str, path: str) -> jinja2.BaseLoader:
        return jinja2.ChoiceLoader([upstream(package, path),
                                    jinja2.DictLoader({"leaderboard.html.j2": _FALLBACK_TEMPLATE})])

    rb_template.PackageLoader = loader
    try:
        return rb_template.generate_leaderboard(dataset, threat_model, str(models_folder))
    finally:
        rb_template.PackageLoader = upstream
