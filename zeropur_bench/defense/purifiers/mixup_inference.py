"""Mixup Inference (Pang, Xu & Zhu 2020, "Mixup Inference: Better Exploiting Mixup to Defend Adversarial Attacks",
ICLR), MI-OL: predict ŷ = argmax F(x); then N = 30 times draw a class y_s ≠ ŷ uniformly and a clean image x_s of
that class, and classify λx + (1 − λ)x_s with λ = 0.5; the prediction is the average of the N softmax outputs (the
authors' ``attack_resnet_mixuptest_OL.py``). MI-PL (``variant=pl``) draws x_s of class ŷ instead.

The partners are clean TRAINING images only (the first ``pool_size`` rows of the training split, a fixed sample
of every class): the authors' script builds its pool of 10,000 from the test split, which mixes test images into
the prediction of test images."""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from ...defenses import BuildContext, register_defense
from ...errors import UserError
from ...params import Param
from ...purifier import Purifier

DEFAULTS: dict[str, Any] = {"variant": "ol", "lam": 0.5, "samples": 30, "pool_size": 10000}
VARIANTS = ("ol", "pl")


@dataclass(frozen=True)
class TrainingPool:
    """Clean training images to mix with: ``x`` uint8 NCHW sorted by class, ``y`` their labels, and ``spec`` (what
    a record keeps: dataset, split, n, sha256 of the slice)."""

    x: torch.Tensor
    y: torch.Tensor
    spec: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def load(cls, dataset: str, n: int, data_dir: str | None = None) -> "TrainingPool":
        """The first ``n`` images of ``dataset``'s training split."""
        from ...data import load_data

        x, y, info = load_data(dataset, "train", n=n, data_dir=data_dir, return_info=True)
        return cls.from_images(x, y, {"dataset": dataset, "split": "train", "n": len(x), "sha256": info.sha256})

    @classmethod
    def from_images(cls, x: torch.Tensor, y: torch.Tensor, spec: dict[str, Any] | None = None) -> "TrainingPool":
        """A pool of [0, 1] training images ``x`` with labels ``y`` (kept as uint8, sorted by class); its spec
        always names the slice (n, sha256)."""
        from ...data import slice_sha256

        spec = dict(spec or {})
        if "sha256" not in spec:
            spec["sha256"] = slice_sha256(x, y)
        order = torch.argsort(y, stable=True)
        return cls(torch.round(x[order] * 255).to(torch.uint8), y[order].to(torch.int64), {"n": len(x), **spec})


class MixupInference(Purifier):
    """Mixup Inference (Pang et al. 2020): MI-OL with λ 0.5 and N 30 (the authors' defaults), partners drawn from
    clean training images.

    Randomized: each example's N partner classes and images are drawn from (seed, dataset index)
    (:meth:`Purifier.example_uniform`), so an example is mixed with the same partners in any batch, shard or resume,
    and each resubmission draws fresh ones. Not ``classifier(purify(x))``: it overrides ``predict`` (the log of the
    averaged softmax, whose argmax is MI's decision) and ``differentiable_predict`` (through the mixing and the
    classifier; ŷ and the draws are discrete), so it offers the full gradient only. ``purify`` returns the first of
    the N mixed images."""

    name = "mixup-inference"
    randomized = True
    gradients = ("full",)

    def __init__(self, classifier: nn.Module, pool: TrainingPool, variant: str = "ol", lam: float = 0.5,
                 samples: int = 30, seed: int = 0) -> None:
        super().__init__(classifier, seed)
        if variant not in VARIANTS:
            raise UserError(f"mixup-inference: variant must be one of {', '.join(VARIANTS)}, got {variant!r}")
        counts = torch.bincount(pool.y)
        if len(counts) < 2 or bool((counts == 0).any()):
            raise UserError(f"mixup-inference: the training pool must hold every class; it holds {len(pool.y)} "
                            f"images with class counts {counts.tolist()} (give a larger pool_size)")
        self.variant, self.lam, self.samples = variant, float(lam), int(samples)
        self.pool = pool
        device = next((p.device for p in classifier.parameters()), torch.device("cpu"))
        self.register_buffer("pool_x", pool.x.to(device), persistent=False)
        self.register_buffer("pool_start", (torch.cumsum(counts, 0) - counts).to(device), persistent=False)
        self.register_buffer("pool_count", counts.to(device), persistent=False)

    def mixed(self, x: torch.Tensor, indices: torch.Tensor | None = None) -> torch.Tensor:
        """The N mixed images of every input, (N, B, C, H, W): λx + (1 − λ)x_s."""
        with torch.no_grad():
            pred = self.classifier(x.detach()).argmax(1)
        k = len(self.pool_count)
        if len(pred) and pred.max() >= k:
            raise UserError(f"mixup-inference: the classifier predicts class {int(pred.max())} but the training pool "
                            f"has {k} classes")
        u = self.example_uniform(indices, (self.samples, 2), x.device, n=len(x)).to(torch.float64)
        pred = pred.view(-1, 1)
        if self.variant == "ol":  # a class other than ŷ, uniformly (the authors' rejection loop)
            other = (u[..., 0] * (k - 1)).long()
            cls = other + (other >= pred).long()
        else:
            cls = pred.expand(-1, self.samples)
        image = self.pool_start[cls] + (u[..., 1] * self.pool_count[cls].to(torch.float64)).long()
        partners = self.pool_x[image.t()].to(x.dtype) / 255  # (N, B, C, H, W)
        return self.lam * x.unsqueeze(0) + (1 - self.lam) * partners

    def purify(self, x: torch.Tensor, indices: torch.Tensor | None = None) -> torch.Tensor:
        return self.mixed(x, indices)[0]

    def predict(self, x: torch.Tensor, indices: torch.Tensor | None = None) -> torch.Tensor:
        """log of the N softmax outputs' average (MI's prediction; its argmax is MI's label)."""
        mixed = self.mixed(x, indices)
        logits = self.classifier(mixed.flatten(0, 1)).float().view(self.samples, len(x), -1)
        return torch.logsumexp(F.log_softmax(logits, dim=-1), dim=0) - math.log(self.samples)

    def differentiable_predict(self, x: torch.Tensor, indices: torch.Tensor | None = None,
                               surrogate: str | None = None) -> torch.Tensor:
        if surrogate is not None:
            raise UserError(f"defense {self.name!r} offers no gradient surrogate (asked for {surrogate!r})")
        with torch.enable_grad():
            return self.predict(x, indices)

    def extra_repr(self) -> str:
        return f"variant={self.variant}, lam={self.lam:g}, samples={self.samples}, pool={self.pool.spec}"


def build_mixup_inference(classifier: nn.Module, ctx: BuildContext, options: dict[str, Any]) -> MixupInference:
    """Mixup Inference from registry options: its pool loaded from the run's dataset and data folder."""
    o = {**DEFAULTS, **options}
    pool = TrainingPool.load(ctx.dataset, int(o.pop("pool_size")), ctx.data_dir)
    return MixupInference(classifier, pool, seed=ctx.seed, **o)


register_defense("mixup-inference", factory=build_mixup_inference, defaults=DEFAULTS,
                 option_specs={"variant": Param("word", choices=VARIANTS),
                               "lam": Param("number", low=0, high=1, open_low=True, open_high=True),
                               "samples": Param("int", low=1), "pool_size": Param("int", low=1)},
                 summary="Mixup Inference (Pang et al. 2020), MI-OL: the average of 30 predictions of 0.5·x + "
                         "0.5·x_s, x_s a clean training image of another class")
