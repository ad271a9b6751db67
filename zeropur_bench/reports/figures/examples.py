"""Figures of a few recomputed examples: embedding similarity over coarse shifting (``cosine``, the paper's
Fig. 3) and clean / adversarial / coarse / purified images (``images``, Figs. 4, 7–9).

Only these two kinds compute anything, and only for the examples they show (:class:`.Reproduction`).
"""
from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Any, Sequence

from ...errors import UserError
from .common import (Source, caption, check_out, defense_desc, figure, integer_x, join, legend, save_figure,
                     set_caption, uniq)
from .reproduction import Reproduction

CIFAR10_CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")
CIFAR100_CLASSES = (
    "apple", "aquarium_fish", "baby", "bear", "beaver", "bed", "bee", "beetle", "bicycle", "bottle", "bowl", "boy",
    "bridge", "bus", "butterfly", "camel", "can", "castle", "caterpillar", "cattle", "chair", "chimpanzee", "clock",
    "cloud", "cockroach", "couch", "crab", "crocodile", "cup", "dinosaur", "dolphin", "elephant", "flatfish",
    "forest", "fox", "girl", "hamster", "house", "kangaroo", "keyboard", "lamp", "lawn_mower", "leopard", "lion",
    "lizard", "lobster", "man", "maple_tree", "motorcycle", "mountain", "mouse", "mushroom", "oak_tree", "orange",
    "orchid", "otter", "palm_tree", "pear", "pickup_truck", "pine_tree", "plain", "plate", "poppy", "porcupine",
    "possum", "rabbit", "raccoon", "ray", "road", "rocket", "rose", "sea", "seal", "shark", "shrew", "skunk",
    "skyscraper", "snail", "snake", "spider", "squirrel", "streetcar", "sunflower", "sweet_pepper", "table", "tank",
    "telephone", "television", "tiger", "tractor", "train", "trout", "tulip", "turtle", "wardrobe", "whale",
    "willow_tree", "wolf", "woman", "worm")
CLASS_NAMES = {"cifar10": CIFAR10_CLASSES, "cifar100": CIFAR100_CLASSES}
RIGHT, WRONG = "#1a9850", "#d73027"


def class_name(dataset: str, label: int) -> str:
    names = CLASS_NAMES.get(dataset)
    return names[label] if names and 0 <= label < len(names) else str(label)


def _check_n(n: Any) -> None:
    if not isinstance(n, int) or n < 1:
        raise UserError(f"--n must be a positive integer, got {n!r}")


# -- cosine ----------------------------------------------------------------------------------------------------------
def _embed(zp: Any, x: Any) -> Any:
    import torch

    with torch.no_grad():
        return zp.stage_features(x)["embedding"].float()


def cosine_curves(repro: Reproduction, n: int, indices: Sequence[int] | None = None) -> dict:
    """cos(f(x_t), f(x_nat)) and cos(f(g(x_t)), f(x_nat)) per example over the coarse iterates x_0 .. x_K
    (:meth:`ZeroPur.coarse_iterates`, x_0 the record's adversarial input)."""
    import torch
    import torch.nn.functional as F

    chosen = list(indices) if indices else repro.record.indices[:n]
    got = repro.run(repro.positions(chosen))
    zp = repro.defense
    its = zp.coarse_iterates(got["x_adv"], got["indices"].to(got["x_adv"].device))
    f_nat = _embed(zp, got["x"])
    with torch.no_grad():
        xt = [F.cosine_similarity(_embed(zp, it), f_nat, dim=1) for it in its]
        gt = [F.cosine_similarity(_embed(zp, zp.blur(it)), f_nat, dim=1) for it in its]
    return {"indices": chosen, "x_t": torch.stack(xt).tolist(), "g_x_t": torch.stack(gt).tolist(),
            "steps": len(its) - 1, "adv_correct": got["adv_correct"].tolist()}


def _stats(values: Sequence[float]) -> tuple[float, float]:
    m = sum(values) / len(values)
    sd = math.sqrt(sum((v - m) ** 2 for v in values) / (len(values) - 1)) if len(values) > 1 else 0.0
    return m, sd


def _cosine_rows(label: str, s: Source, repro: Reproduction, cur: dict) -> list[dict]:
    rows = []
    for series, key in (("x_t", "x_t"), ("g(x_t)", "g_x_t")):
        for t, vals in enumerate(cur[key]):
            m, sd = _stats(vals)
            rows.append({"line": label, "record": s.name, "variant": repro.variant, "attack": repro.attack,
                         "input": series, "t": t, "mean_cos": m, "sd_cos": sd, "n": len(vals),
                         "examples": " ".join(str(i) for i in cur["indices"])})
    return rows


def _draw_cosine(ax: Any, labels: Sequence[str], rows: Sequence[dict]) -> None:
    for i, label in enumerate(labels):
        for series, style in (("x_t", "-"), ("g(x_t)", "--")):
            rs = [r for r in rows if r["line"] == label and r["input"] == series]
            ts = [r["t"] for r in rs]
            m = [r["mean_cos"] for r in rs]
            ax.plot(ts, m, linestyle=style, color=f"C{i}", marker="o" if series == "x_t" else None, markersize=3,
                    label=f"{label}: {'x_t' if series == 'x_t' else 'g(x_t) (blurred)'}")
            ax.fill_between(ts, [a - r["sd_cos"] for a, r in zip(m, rs)], [a + r["sd_cos"] for a, r in zip(m, rs)],
                            color=f"C{i}", alpha=0.08 if series == "x_t" else 0.05, linewidth=0)
    integer_x(ax)
    ax.set_xlabel("coarse-shifting step t (0 = adversarial input)")
    ax.set_ylabel("cos(f(·), f(x_nat))  (mean ± 1 sd)")
    ax.grid(alpha=0.3)


def plot_cosine(sources: Sequence[Source], out: str | os.PathLike, *, n: int = 8, indices: Sequence[int] | None = None,
                attack: str | None = None, variant: str | None = None, data_dir: str | os.PathLike | None = None,
                checkpoint: str | None = None, device: str | None = None) -> dict:
    """Paper Fig. 3: mean cosine to the natural image's embedding over the coarse-shifting iterates x_t (solid) and
    their blurred copies g(x_t) (dashed), from the record's adversarial inputs, one colour per record."""
    check_out(out)
    _check_n(n)
    if len(sources) > 1 and checkpoint:
        raise UserError("--checkpoint applies to one record; with several records each must find its own")
    rows: list[dict] = []
    labels: list[str] = []
    recs, attacks, variants = [], [], []
    for s in sources:
        repro = Reproduction(s, attack=attack, variant=variant, data_dir=data_dir, checkpoint=checkpoint,
                             device=device)
        cur = cosine_curves(repro, n, indices)
        label = s.record.model
        if label in labels:
            label = f"{label} · {repro.variant}"
        if label in labels:
            label = f"{label} [{Path(s.name).stem[-8:]}]"
        labels.append(label)
        recs.append(s.record)
        attacks.append(repro.attack)
        variants.append(f"{repro.variant}: {defense_desc(s.record.variants[repro.variant])}")
        rows += _cosine_rows(label, s, repro, cur)
    fig = figure(6.8, 5.0)
    ax = fig.add_subplot(1, 1, 1)
    _draw_cosine(ax, labels, rows)
    legend(fig, ax)
    ns = uniq(r["n"] for r in rows)
    set_caption(fig, "Embedding similarity to the natural image over coarse shifting (solid x_t, dashed g(x_t))",
                caption(recs, defense=join(variants, "; "), attacks=attacks,
                        extra=f"{join(ns)} examples shown (n={join(r.n for r in recs)} in the record)"))
    path, csv_path = save_figure(fig, out, ["line", "record", "variant", "attack", "input", "t", "mean_cos", "sd_cos",
                                            "n", "examples"], rows)
    return {"figure": str(path), "csv": str(csv_path), "rows": rows}


# -- images ----------------------------------------------------------------------------------------------------------
def _pick(repro: Reproduction, pick: str, n: int) -> list[int]:
    ex = repro.record.variants[repro.variant].examples
    robust = ex["robust_correct"][repro.attack]
    want = pick == "successes"
    chosen = [int(i) for i, ok in zip(ex["index"], robust) if bool(ok) == want]
    if not chosen:
        raise UserError(f"no {pick} in the record for {repro.variant} under {repro.attack} (robust accuracy "
                        f"{sum(map(bool, robust))}/{len(robust)})")
    return chosen[:n]


def _columns(repro: Reproduction, got: dict) -> list[tuple[str, Any, Any]]:
    """(title, images, predictions) of each column: clean, adversarial, coarse, purified (C-F only)."""
    import torch

    zp = repro.defense
    stages = zp.purify_stages(got["x_adv"], got["indices"].to(got["x_adv"].device))
    with torch.no_grad():
        pred_coarse = repro.classifier(stages["coarse"]).argmax(1).cpu()
        pred_pur = repro.classifier(stages["purified"]).argmax(1).cpu()
    cols = [("clean", got["x"], got["bare_clean_pred"]), ("adversarial", got["x_adv"], got["bare_adv_pred"]),
            ("coarse (x')", stages["coarse"], pred_coarse)]
    if zp.stages == "cf":
        cols.append(("purified (fine)", stages["purified"], pred_pur))
    else:
        cols[-1] = ("coarse = purified", stages["coarse"], pred_coarse)
    return cols


def _image_rows(repro: Reproduction, chosen: Sequence[int], pos: Sequence[int], got: dict,
                cols: Sequence[tuple[str, Any, Any]]) -> list[dict]:
    dataset = repro.record.dataset
    vex = repro.record.variants[repro.variant].examples
    rows = []
    for j, i in enumerate(chosen):
        y = int(got["y"][j])
        for name, imgs, preds in cols:
            pr = int(preds[j])
            d = (imgs[j].float() - got["x"][j].float()).abs().max().item()
            rows.append({"index": i, "column": name, "true": y, "true_name": class_name(dataset, y), "pred": pr,
                         "pred_name": class_name(dataset, pr), "correct": pr == y, "linf_to_clean": d,
                         "record_adv_correct": bool(vex["adv_correct"][repro.attack][pos[j]]),
                         "record_robust_correct": bool(vex["robust_correct"][repro.attack][pos[j]])})
    return rows


def _draw_images(fig: Any, chosen: Sequence[int], cols: Sequence[tuple[str, Any, Any]], rows: Sequence[dict]) -> None:
    axes = fig.subplots(len(chosen), len(cols), squeeze=False)
    for j, i in enumerate(chosen):
        for k, (name, imgs, _) in enumerate(cols):
            ax = axes[j][k]
            row = rows[j * len(cols) + k]
            ax.imshow(imgs[j].detach().float().cpu().clamp(0, 1).permute(1, 2, 0).numpy(), interpolation="nearest")
            ax.set_xticks([])
            ax.set_yticks([])
            color = RIGHT if row["correct"] else WRONG
            for sp in ax.spines.values():
                sp.set_edgecolor(color)
                sp.set_linewidth(3)
            ax.set_title(f"pred: {row['pred_name']}", fontsize=7, color=color, pad=3)
            if j == 0:
                ax.text(0.5, 1.13, name, transform=ax.transAxes, ha="center", va="bottom", fontsize=8,
                        fontweight="bold")
            if k == 0:
                ax.set_ylabel(f"#{i}\ntrue: {row['true_name']}", fontsize=7)


def plot_images(source: Source, out: str | os.PathLike, *, indices: Sequence[int] | None = None,
                pick: str | None = None, n: int = 4, attack: str | None = None, variant: str | None = None,
                data_dir: str | os.PathLike | None = None, checkpoint: str | None = None,
                device: str | None = None) -> dict:
    """A grid of examples: clean / adversarial / coarse / purified, true and predicted class, framed green
    (right) or red (wrong) (paper Figs. 4, 7–9)."""
    check_out(out)
    if indices and pick:
        raise UserError("give either --index or --pick, not both")
    _check_n(n)
    repro = Reproduction(source, attack=attack, variant=variant, data_dir=data_dir, checkpoint=checkpoint,
                         device=device)
    if indices:
        chosen = [int(i) for i in indices]
    elif pick:
        chosen = _pick(repro, pick, n)
    else:
        chosen = repro.record.indices[:n]
    pos = repro.positions(chosen)
    got = repro.run(pos)
    cols = _columns(repro, got)
    rows = _image_rows(repro, chosen, pos, got, cols)
    fig = figure(1.75 * len(cols) + 0.4, 1.95 * len(chosen) + 0.9)
    _draw_images(fig, chosen, cols, rows)
    pick_text = f"picked: {pick} (first {len(chosen)})" if pick else f"examples {', '.join(map(str, chosen))}"
    shown = f"{repro.variant}: {defense_desc(repro.record.variants[repro.variant])}"
    set_caption(fig, "Clean / adversarial / coarse / purified (frame: green right, red wrong)",
                caption([repro.record], defense=shown, attacks=[repro.attack], extra=pick_text))
    path, csv_path = save_figure(fig, out, ["index", "column", "true", "true_name", "pred", "pred_name", "correct",
                                            "linf_to_clean", "record_adv_correct", "record_robust_correct"], rows)
    return {"figure": str(path), "csv": str(csv_path), "rows": rows}
