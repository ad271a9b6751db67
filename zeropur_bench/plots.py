"""Figures from records (issue 15): ``zeropur-bench plot KIND --results DIR|FILE... --out FILE.png|.svg|.pdf``.

Every figure is drawn from run records (``zeropur-bench/record/v2``) or sanity reports
(``zeropur-bench/sanity/v2``) with matplotlib's object-oriented API on the Agg canvas (no display, no pyplot
state), written atomically, with a sidecar CSV (same path, ``.csv``) that holds exactly the numbers plotted
(accuracies as the record's fractions, full precision), and a caption line naming dataset, threat model and eps,
model, defense variant(s), attack(s), n and setting, so one image stands on its own.

Kinds:

* ``steps``: robust accuracy (95% Wilson band) against one purification parameter (``coarse_steps`` /
  ``fine_steps``, or any other ZeroPur knob), one line per attack, plus the defended clean accuracy (paper
  Fig. 5). The points are defense variants of one transfer sweep record, or adaptive records made one per value
  (``zeropur-bench sweep``); everything else must be identical, or the plot is refused.
* ``grid``: heat maps of robust accuracy over coarse × fine steps, one panel per attack plus defended clean
  (paper Fig. 6), from a two-axis sweep.
* ``attack-curve``: robust accuracy against the attack's iteration for adaptive iterative attacks: any step
  (solid; an image broken at any iterate stays broken) and the iterate itself ("final only", dashed), so an
  oscillating attack is visible (``summary["curves"]``).
* ``eps``: robust accuracy against eps from sanity reports (eps sweep; defended and bare classifier) and/or
  records at several eps.
* ``cosine``: cos(f(x_t), f(x_nat)) over the coarse-shifting iterates x_t (solid) and their blurred copies
  g(x_t) (dashed), starting from the record's adversarial inputs, one colour per record (paper Fig. 3).
* ``images``: rows of examples, columns clean / adversarial / coarse / purified with true and predicted class,
  framed green (right) or red (wrong) (paper Figs. 4, 7–9).

Only ``cosine`` and ``images`` compute anything, and only for the examples they show: they re-run the record's
attack on every whole batch such an example is in (the record's batch size and seed: per-batch seeding makes that
exact), purify the shown examples, and refuse (one line) when the recomputed outcome differs from the record's.
"""
from __future__ import annotations

import csv
import dataclasses
import io
import json
import math
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Sequence

import click

from .errors import UserError, friendly as _friendly
from .keys import strip_eps

KINDS = ("steps", "grid", "attack-curve", "eps", "cosine", "images")
FIG_SUFFIXES = (".png", ".svg", ".pdf")
RECORD_SCHEMA = "zeropur-bench/record/v2"
SANITY_SCHEMA = "zeropur-bench/sanity/v2"
STEP_PARAMS = ("coarse_steps", "fine_steps")
DERIVED = {"coarse_steps": "coarse_step", "fine_steps": "fine_step"}  # step size = eps / steps unless set

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


def class_name(dataset: str, label: int) -> str:
    names = CLASS_NAMES.get(dataset)
    return names[label] if names and 0 <= label < len(names) else str(label)


# -- inputs ----------------------------------------------------------------------------------------------------------
@dataclass
class Source:
    """One input file: a run record or a sanity report."""

    path: str
    data: dict
    kind: str  # "record" | "sanity"

    @property
    def name(self) -> str:
        return Path(self.path).name


def _read_json(path: Path) -> dict:
    try:
        with open(path) as f:
            obj = json.load(f)
    except OSError as exc:
        raise UserError(f"cannot read '{path}': {exc.strerror or exc}") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise UserError(f"'{path}' is not JSON ({exc}); give run records (results/*.json) or sanity reports") \
            from None
    if not isinstance(obj, dict):
        raise UserError(f"'{path}' is not a run record or sanity report (a JSON object)")
    return obj


def _classify(path: Path, obj: dict) -> str | None:
    schema = obj.get("schema")
    if schema == RECORD_SCHEMA:
        return "record"
    if schema == SANITY_SCHEMA:
        return "sanity"
    if schema == "zeropur-bench/record/v1":
        raise UserError(f"'{path}' is a zeropur-bench/record/v1 record, made before robust accuracy required the "
                        "clean image right too; re-make it with the same command")
    if isinstance(schema, str) and schema.startswith("zeropur-bench/sanity/"):
        raise UserError(f"'{path}' is a {schema} sanity report; re-make it with `zeropur-bench sanity`")
    return None


def load_sources(paths: Sequence[str | os.PathLike], accept: Sequence[str] = ("record",),
                 what: str = "this plot") -> list[Source]:
    """Records / sanity reports from files and folders (a folder: its ``*.json`` files, not recursive; files of
    other kinds in a folder are skipped, a named file of the wrong kind is refused)."""
    if not paths:
        raise UserError(f"give the records to plot with --results DIR|FILE (for {what})")
    found: list[Source] = []
    seen: set[str] = set()
    for p in paths:
        path = Path(p)
        if path.is_dir():
            for f in sorted(path.glob("*.json")):
                if not f.is_file() or f.name.startswith(".tmp-"):
                    continue
                try:
                    obj = _read_json(f)
                    kind = _classify(f, obj)
                except UserError:
                    continue  # an unreadable or old file in a folder is not one the user asked for
                if kind in accept and str(f.resolve()) not in seen:
                    seen.add(str(f.resolve()))
                    found.append(Source(str(f), obj, kind))
        elif path.is_file():
            obj = _read_json(path)
            kind = _classify(path, obj)
            if kind is None:
                raise UserError(f"'{path}' is neither a {RECORD_SCHEMA} record nor a {SANITY_SCHEMA} report")
            if kind not in accept:
                raise UserError(f"'{path}' is a {'sanity report' if kind == 'sanity' else 'run record'}; {what} "
                                f"reads {' and '.join('sanity reports' if a == 'sanity' else 'run records' for a in accept)}")
            if str(path.resolve()) not in seen:
                seen.add(str(path.resolve()))
                found.append(Source(str(path), obj, kind))
        else:
            raise UserError(f"--results '{path}' does not exist")
    if not found:
        kinds = " or ".join("sanity reports" if a == "sanity" else f"{RECORD_SCHEMA} records" for a in accept)
        raise UserError(f"no {kinds} found in {', '.join(str(p) for p in paths)} (for {what})")
    return found


# -- output ----------------------------------------------------------------------------------------------------------
def check_out(out: str | os.PathLike) -> tuple[Path, Path]:
    """(figure path, sidecar CSV path); the suffix chooses the format. Checked before any work."""
    path = Path(out)
    if path.suffix.lower() not in FIG_SUFFIXES:
        raise UserError(f"--out '{out}': give a figure file ending in {', '.join(FIG_SUFFIXES)}")
    if path.is_dir():
        raise UserError(f"--out '{out}' is a folder; give a file name such as {path / 'figure.png'}")
    probe = path.parent if str(path.parent) else Path(".")
    while not probe.exists() and probe != probe.parent:
        probe = probe.parent
    if not probe.is_dir() or not os.access(probe, os.W_OK | os.X_OK):
        raise UserError(f"cannot write '{out}': no writable folder '{probe}'")
    return path, path.with_suffix(".csv")


def _atomic_bytes(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".tmp-", suffix=path.suffix, dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def _csv_value(v: Any) -> Any:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, float):
        return repr(v) if math.isfinite(v) else ""
    return "" if v is None else v


def save_figure(fig: Any, out: str | os.PathLike, columns: Sequence[str], rows: Iterable[dict]) -> tuple[Path, Path]:
    """Write ``fig`` (format from the suffix) and the sidecar CSV (``columns``; floats at full precision)."""
    path, csv_path = check_out(out)
    buf = io.BytesIO()
    fmt = path.suffix.lower()[1:]
    fig.savefig(buf, format=fmt, dpi=150, bbox_inches="tight",
                metadata={("Software" if fmt == "png" else "Creator"): "zeropur-bench plot"})
    text = io.StringIO()
    w = csv.DictWriter(text, fieldnames=list(columns), lineterminator="\n")
    w.writeheader()
    for r in rows:
        w.writerow({c: _csv_value(r.get(c)) for c in columns})
    _atomic_bytes(path, buf.getvalue())
    _atomic_bytes(csv_path, text.getvalue().encode())
    return path, csv_path


def _figure(width: float, height: float) -> Any:
    from matplotlib.figure import Figure  # the OO API: no pyplot, no display, no global backend

    return Figure(figsize=(width, height), layout="constrained")


def _percent_axis(ax: Any, axis: str = "y") -> None:
    from matplotlib.ticker import PercentFormatter

    getattr(ax, f"{axis}axis").set_major_formatter(PercentFormatter(xmax=1.0, decimals=0))


def _legend(fig: Any, ax: Any, title: str | None = None) -> None:
    """In the axes when short, else below them (long labels would squeeze the plot)."""
    handles, labels = ax.get_legend_handles_labels()
    if len(labels) <= 4 and max((len(t) for t in labels), default=0) <= 45:
        ax.legend(fontsize=7, title=title, title_fontsize=7)
    else:
        fig.legend(handles, labels, loc="outside lower center", fontsize=7, title=title, title_fontsize=7,
                   ncols=1 if max(len(t) for t in labels) > 60 else 2)


def _wrap(text: str, width: int = 110) -> str:
    import textwrap

    return "\n".join(textwrap.wrap(text, width=width, break_long_words=False, break_on_hyphens=False))


def _set_caption(fig: Any, title: str, caption: str) -> None:
    fig.suptitle(title + "\n" + _wrap(caption), fontsize=9)


# -- describing records ----------------------------------------------------------------------------------------------
def _uniq(values: Iterable[Any]) -> list[Any]:
    return list(dict.fromkeys(v for v in values if v is not None))


def _join(values: Iterable[Any], sep: str = ", ") -> str:
    vals = [str(v) for v in _uniq(values)]
    return sep.join(vals) if vals else "?"


def _fmt_num(v: Any) -> str:
    from .attacks.base import _fmt_value

    return _fmt_value(v)


def defense_desc(d: dict, skip: Sequence[str] = ()) -> str:
    """``ZeroPur-cf (authors, blur median:3, coarse_steps=2)`` from a variant's ``defense`` block; ``skip``:
    overrides not to list (the swept ones)."""
    if d.get("name") == "none":
        return "none (bare classifier)"
    over = {k: v for k, v in (d.get("overrides") or {}).items() if k not in skip}
    extra = "".join(f", {k}={_fmt_num(v)}" for k, v in sorted(over.items()))
    return f"ZeroPur-{d.get('stages')} ({d.get('profile')}, blur {d.get('blur')}{extra})"


def model_desc(cfg: dict) -> str:
    recipe = f", recipe {cfg['recipe']}" if cfg.get("recipe") else ""
    arch = f" ({cfg['arch']}{recipe})" if cfg.get("arch") and cfg.get("arch") != cfg.get("model") else \
        (f" ({recipe[2:]})" if recipe else "")
    return f"{cfg.get('model')}{arch}"


def _record_n(r: dict) -> int:
    return int(r["summary"]["n"])


def caption(records: Sequence[dict], *, defense: str | None = None, attacks: Sequence[str] | None = None,
            eps: str | None = None, setting: str | None = None, extra: str | None = None) -> str:
    """One line: dataset threat eps | model | defense | attack(s) | n | setting (several values joined)."""
    cfgs = [r["config"] for r in records]
    eps = eps or _join(c.get("eps_str") for c in cfgs)
    setting = setting or _join(c["setting"] for c in cfgs)
    parts = [f"{_join(c['dataset'] for c in cfgs)} {_join(c['threat'] for c in cfgs)} eps={eps}",
             f"model {_join(model_desc(c) for c in cfgs)}",
             f"defense {defense or _join(v['defense']['key'] for r in records for v in r['variants'].values())}",
             f"attack {_join(attacks or [a['key'] for c in cfgs for a in c['attacks']])}",
             f"n={_join(_record_n(r) for r in records)}",
             f"setting {setting}" + (" (robust = any step)" if setting == "adaptive" else "")]
    if extra:
        parts.append(extra)
    return " | ".join(parts)


def _canon(obj: Any) -> Any:
    from .keys import _canon as canon

    return canon(obj)


def _diff(a: dict, b: dict) -> str:
    from .keys import describe_diff

    return describe_diff(a, b)


def record_context(r: dict, attacks: Sequence[str] | None = None) -> dict:
    """What must agree between records plotted as one family: data, model, threat, eps, setting, seed, estimator,
    dtype and the drawn attacks with their resolved parameters."""
    c = r["config"]
    prov = r.get("provenance") or {}
    model = prov.get("model") or {}
    atk = {a["key"]: a.get("resolved", a.get("params")) for a in c["attacks"]}
    if attacks is not None:
        atk = {k: atk.get(k, "(not run)") for k in attacks}
    return _canon({
        "dataset": c.get("dataset"), "split": c.get("split"), "threat": c.get("threat"), "eps": float(c["eps"]),
        "setting": c.get("setting"), "seed": c.get("seed"), "estimator": c.get("estimator"),
        "estimator_n": c.get("estimator_n"), "dtype": c.get("dtype"),
        "model": {"arch": c.get("arch", c.get("model")), "checkpoint_sha256": model.get("checkpoint_sha256"),
                  **({"name": c.get("model")} if not model.get("checkpoint_sha256") else {})},
        "data": (prov.get("data") or {}).get("sha256"), "n": _record_n(r), "attacks": atk,
    })


def _drop_swept(d: dict, swept: Sequence[str]) -> dict:
    """A variant's defense without the swept parameters (and the step sizes derived from them)."""
    gone = set(swept) | {DERIVED[p] for p in swept if p in DERIVED}
    spec = {k: d.get(k) for k in ("name", "profile", "stages", "blur")}
    spec["overrides"] = {k: v for k, v in (d.get("overrides") or {}).items() if k not in gone}
    res = {k: v for k, v in (d.get("resolved") or {}).items() if k not in gone and k != "channels_last"}
    return _canon({"spec": spec, "resolved": res})


# -- points of a parameter sweep ---------------------------------------------------------------------------------------
@dataclass
class Point:
    source: Source
    key: str  # the defense variant
    variant: dict

    @property
    def resolved(self) -> dict:
        return self.variant["defense"].get("resolved") or {}

    @property
    def label(self) -> str:
        return f"{self.source.name}:{self.key}"


def sweep_points(sources: Sequence[Source], stages: str | None, variants: Sequence[str] | None) -> list[Point]:
    pts = []
    for s in sources:
        for k, v in s.data["variants"].items():
            d = v["defense"]
            if d.get("name") == "none" or (stages and d.get("stages") != stages) or (variants and k not in variants):
                continue
            pts.append(Point(s, k, v))
    if not pts:
        what = f" with stages {stages}" if stages else (f" named {', '.join(variants)}" if variants else "")
        raise UserError(f"no ZeroPur variants{what} in {', '.join(s.name for s in sources)}")
    return pts


def _scalar(v: Any) -> bool:
    return isinstance(v, (int, float, str, bool)) or v is None


def detect_swept(pts: Sequence[Point], want: int, given: Sequence[str | None]) -> list[str]:
    """The swept parameters: ``given`` (``--param``/``--param2``) or those resolved values that vary."""
    given = [g for g in given if g]
    if given:
        for g in given:
            if any(g not in p.resolved for p in pts):
                raise UserError(f"--param {g} is not a ZeroPur setting of these records; known: "
                                f"{', '.join(sorted(k for k, v in pts[0].resolved.items() if _scalar(v)))}")
        if len(given) != want:
            raise UserError(f"this plot sweeps {want} parameter(s); got {len(given)} ({', '.join(given)})")
        return list(given)
    keys = [k for k, v in pts[0].resolved.items() if _scalar(v)]
    varying = [k for k in keys if len({json.dumps(p.resolved.get(k)) for p in pts}) > 1]
    for p, step in DERIVED.items():  # a step size derived from the step count moves with it
        if p in varying and step in varying:
            varying.remove(step)
    if want == 2 and set(STEP_PARAMS) <= set(varying):
        varying = list(STEP_PARAMS) + [k for k in varying if k not in STEP_PARAMS]
    if len(varying) < want:
        raise UserError(f"the records hold {len(pts)} defense variant(s) that do not vary in "
                        f"{'two parameters' if want == 2 else 'any parameter'} ({', '.join(p.label for p in pts[:4])}"
                        f"{' ...' if len(pts) > 4 else ''}); make them with `zeropur-bench sweep --param ...`"
                        + (" --param2 ..." if want == 2 else ""))
    if len(varying) > want:
        raise UserError(f"the records vary in {', '.join(varying)}; a {'grid' if want == 2 else 'steps'} plot "
                        f"sweeps {want}: choose with --param{' and --param2' if want == 2 else ''}, or filter the "
                        "variants with --stages / --variant")
    return varying


def check_family(pts: Sequence[Point], swept: Sequence[str], attacks: Sequence[str]) -> None:
    """Refuse points that differ in anything but the swept parameters (one line naming the difference)."""
    ref = pts[0]
    ctx0, def0 = record_context(ref.source.data, attacks), _drop_swept(ref.variant["defense"], swept)
    for p in pts[1:]:
        ctx = record_context(p.source.data, attacks)
        if ctx != ctx0:
            raise UserError(f"mismatched records: {p.source.name} and {ref.source.name} differ in more than "
                            f"{'/'.join(swept)} ({_diff(ctx0, ctx)}); plot records of one sweep")
        d = _drop_swept(p.variant["defense"], swept)
        if d != def0:
            raise UserError(f"mismatched defense variants: {p.label} and {ref.label} differ in more than "
                            f"{'/'.join(swept)} ({_diff(def0, d)}); filter with --stages / --variant, or plot one "
                            "sweep")
    seen: dict[tuple, str] = {}
    for p in pts:
        at = tuple(json.dumps(p.resolved.get(s)) for s in swept)
        if at in seen:
            where = ", ".join(f"{s}={p.resolved.get(s)}" for s in swept)
            raise UserError(f"two records for {where}: {seen[at]} and {p.label}; give one per value")
        seen[at] = p.label


def _attacks_of(pts: Sequence[Point], attacks: Sequence[str] | None) -> list[str]:
    have = list(pts[0].variant["summary"]["robust_acc"])
    if attacks:
        missing = [a for a in attacks if any(a not in p.variant["summary"]["robust_acc"] for p in pts)]
        if missing:
            raise UserError(f"attack {missing[0]!r} is not in every record; the records ran: {', '.join(have)}")
        return list(attacks)
    return have


def _acc_row(p: Point, series: str, attack: str | None) -> dict:
    s = p.variant["summary"]
    if attack is None:
        acc, ci = s["defended_clean_acc"], s["ci95"]["defended_clean_acc"]
    else:
        acc, ci = s["robust_acc"][attack], s["ci95"]["robust_acc"][attack]
    return {"series": series, "attack": attack or "", "acc": acc, "ci95_lo": ci[0], "ci95_hi": ci[1],
            "n": s["n"], "variant": p.key, "record": p.source.name}


def _sort_key(v: Any) -> Any:
    return (0, float(v)) if isinstance(v, (int, float)) and not isinstance(v, bool) else (1, str(v))


def plot_steps(sources: Sequence[Source], out: str | os.PathLike, *, param: str | None = None,
               attacks: Sequence[str] | None = None, stages: str | None = None,
               variants: Sequence[str] | None = None, clean: bool = True) -> dict:
    """Robust accuracy against one purification parameter (paper Fig. 5)."""
    check_out(out)
    pts = sweep_points(sources, stages, variants)
    (swept,) = detect_swept(pts, 1, [param])
    atk = _attacks_of(pts, attacks)
    check_family(pts, [swept], atk)
    pts = sorted(pts, key=lambda p: _sort_key(p.resolved[swept]))
    rows = []
    series = ([("defended clean", None)] if clean else []) + [(a, a) for a in atk]
    for name, a in series:
        for p in pts:
            rows.append({"param": swept, "value": p.resolved[swept], **_acc_row(p, name, a)})
    setting = pts[0].source.data["config"]["setting"]
    fig = _figure(6.8, 5.0)
    ax = fig.add_subplot(1, 1, 1)
    numeric = all(isinstance(p.resolved[swept], (int, float)) for p in pts)
    for i, (name, _) in enumerate(series):
        rs = [r for r in rows if r["series"] == name]
        xs = [r["value"] for r in rs] if numeric else list(range(len(rs)))
        style = dict(color="0.45", linestyle=":", marker="s") if name == "defended clean" else \
            dict(color=f"C{i}", marker="o")
        label = name if name == "defended clean" else f"{name}" + (" (any step)" if setting == "adaptive" else "")
        ax.plot(xs, [r["acc"] for r in rs], label=label, **style)
        ax.fill_between(xs, [r["ci95_lo"] for r in rs], [r["ci95_hi"] for r in rs], color=style["color"],
                        alpha=0.15, linewidth=0)
    if numeric:
        ax.set_xticks([p.resolved[swept] for p in pts], [_fmt_num(p.resolved[swept]) for p in pts])
    else:
        ax.set_xticks(range(len(pts)), [str(p.resolved[swept]) for p in pts])
    ax.set_xlabel(swept.replace("_", " "))
    ax.set_ylabel("robust accuracy (clean ∧ adversarial)")
    ax.set_ylim(-0.02, 1.02)
    _percent_axis(ax)
    ax.grid(alpha=0.3)
    _legend(fig, ax, title="95% Wilson bands")
    recs = _uniq_records(pts)
    _set_caption(fig, f"Robust accuracy vs {swept.replace('_', ' ')}",
                 caption(recs, defense=defense_desc(pts[0].variant["defense"], [swept]) + f", {swept} swept",
                         attacks=atk))
    path, csv_path = save_figure(fig, out, ["series", "attack", "param", "value", "acc", "ci95_lo", "ci95_hi", "n",
                                            "variant", "record"], rows)
    return {"figure": str(path), "csv": str(csv_path), "rows": rows, "param": swept}


def _uniq_records(pts: Sequence[Point]) -> list[dict]:
    out, seen = [], set()
    for p in pts:
        if id(p.source.data) not in seen:
            seen.add(id(p.source.data))
            out.append(p.source.data)
    return out


def plot_grid(sources: Sequence[Source], out: str | os.PathLike, *, param: str | None = None,
              param2: str | None = None, attacks: Sequence[str] | None = None, stages: str | None = None,
              variants: Sequence[str] | None = None, clean: bool = True) -> dict:
    """Heat maps of robust accuracy over two parameters, coarse × fine steps by default (paper Fig. 6)."""
    check_out(out)
    pts = sweep_points(sources, stages, variants)
    given = [param, param2] if (param or param2) else [None, None]
    pa, pb = detect_swept(pts, 2, given)
    atk = _attacks_of(pts, attacks)
    check_family(pts, [pa, pb], atk)
    av = sorted(_uniq(p.resolved[pa] for p in pts), key=_sort_key)
    bv = sorted(_uniq(p.resolved[pb] for p in pts), key=_sort_key)
    cell = {(p.resolved[pa], p.resolved[pb]): p for p in pts}
    missing = [(a, b) for a in av for b in bv if (a, b) not in cell]
    if missing:
        shown = "; ".join(f"{pa}={a}, {pb}={b}" for a, b in missing[:4]) + (" ..." if len(missing) > 4 else "")
        raise UserError(f"the {pa} × {pb} grid is incomplete: no record for {shown}; finish the sweep "
                        f"(`zeropur-bench sweep ... --param {pa} --param2 {pb}` resumes)")
    series = ([("defended clean", None)] if clean else []) + [(a, a) for a in atk]
    rows = []
    for name, a in series:
        for x in av:
            for y in bv:
                rows.append({pa: x, pb: y, **_acc_row(cell[(x, y)], name, a)})
    fig = _figure(3.3 * len(series) + 0.8, 3.6)
    axes = fig.subplots(1, len(series), squeeze=False)[0]
    im = None
    for ax, (name, _) in zip(axes, series):
        m = [[next(r["acc"] for r in rows if r["series"] == name and r[pa] == x and r[pb] == y) for y in bv]
             for x in av]
        im = ax.imshow(m, vmin=0.0, vmax=1.0, cmap="viridis", origin="lower", aspect="auto")
        for i in range(len(av)):
            for j in range(len(bv)):
                ax.text(j, i, f"{100 * m[i][j]:.1f}", ha="center", va="center", fontsize=8,
                        color="white" if m[i][j] < 0.6 else "black")
        ax.set_xticks(range(len(bv)), [str(v) for v in bv])
        ax.set_yticks(range(len(av)), [str(v) for v in av])
        ax.set_xlabel(pb.replace("_", " "))
        ax.set_ylabel(pa.replace("_", " "))
        ax.set_title(name if name == "defended clean" else f"{name}", fontsize=9)
    if im is not None:
        cb = fig.colorbar(im, ax=list(axes), shrink=0.85)
        cb.set_label("accuracy")
        _percent_axis(cb.ax)
    recs = _uniq_records(pts)
    _set_caption(fig, f"Robust accuracy (%) over {pa.replace('_', ' ')} × {pb.replace('_', ' ')}",
                 caption(recs, defense=defense_desc(pts[0].variant["defense"], [pa, pb]) + f", {pa} × {pb} swept",
                         attacks=atk))
    path, csv_path = save_figure(fig, out, ["series", "attack", pa, pb, "acc", "ci95_lo", "ci95_hi", "n", "variant",
                                            "record"], rows)
    return {"figure": str(path), "csv": str(csv_path), "rows": rows, "params": [pa, pb]}


# -- attack curves -------------------------------------------------------------------------------------------------------
def plot_attack_curve(sources: Sequence[Source], out: str | os.PathLike, *, attacks: Sequence[str] | None = None,
                      variants: Sequence[str] | None = None) -> dict:
    """Any-step and final-only robust accuracy against the attack's iteration (adaptive records)."""
    check_out(out)
    rows, lines, recs = [], [], []
    for s in sources:
        r = s.data
        got = False
        for k, v in r["variants"].items():
            if variants and k not in variants:
                continue
            for a, curve in (v["summary"].get("curves") or {}).items():
                if attacks and a not in attacks:
                    continue
                got = True
                lines.append((s, k, a))
                for t, (any_, fin) in enumerate(zip(curve["robust_any_step"], curve["robust_final"])):
                    rows.append({"record": s.name, "variant": k, "attack": a, "t": t, "robust_any_step": any_,
                                 "robust_final": fin, "n": v["summary"]["n"]})
        if got:
            recs.append(r)
    if not lines:
        settings = _join(s.data["config"]["setting"] for s in sources)
        raise UserError(f"no per-step attack curves in {', '.join(s.name for s in sources)} (setting {settings}"
                        f"{'; filtered by --attack/--variant' if attacks or variants else ''}); attack-curve needs "
                        "adaptive records of iterative attacks, e.g. `zeropur-bench run --setting adaptive --attack "
                        "bpda-eot:steps=10`")
    pairs = [(k, a) for _, k, a in lines]
    models = _uniq(model_desc(s.data["config"]) for s, _, _ in lines)
    fig = _figure(6.8, 5.0)
    ax = fig.add_subplot(1, 1, 1)
    for i, (s, k, a) in enumerate(lines):
        rs = [r for r in rows if r["record"] == s.name and r["variant"] == k and r["attack"] == a]
        name = f"{k} · {a}" + (f" ({model_desc(s.data['config'])})" if len(models) > 1 else "") \
            + (f" [{Path(s.name).stem[-8:]}]" if pairs.count((k, a)) > 1 else "")
        ts = [r["t"] for r in rs]
        ax.plot(ts, [r["robust_any_step"] for r in rs], color=f"C{i}", marker="o", markersize=3,
                label=f"{name}: any step")
        ax.plot(ts, [r["robust_final"] for r in rs], color=f"C{i}", linestyle="--", marker="x", markersize=3,
                label=f"{name}: this iterate only")
    from matplotlib.ticker import MaxNLocator

    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlabel("attack iteration t (0 = start)")
    ax.set_ylabel("robust accuracy (clean ∧ adversarial)")
    ax.set_ylim(-0.02, 1.02)
    _percent_axis(ax)
    ax.grid(alpha=0.3)
    _legend(fig, ax)
    _set_caption(fig, "Robust accuracy over the attack's iterations: any step (solid) vs the iterate itself (dashed)",
                 caption(recs, defense=_join([f"{k}: {defense_desc(s.data['variants'][k]['defense'])}"
                                              for s, k, _ in lines], "; "),
                         attacks=[a for _, _, a in lines], setting=_join(r["config"]["setting"] for r in recs)))
    path, csv_path = save_figure(fig, out, ["record", "variant", "attack", "t", "robust_any_step", "robust_final",
                                            "n"], rows)
    return {"figure": str(path), "csv": str(csv_path), "rows": rows}


# -- eps -------------------------------------------------------------------------------------------------------------------
def _eps_context(s: Source) -> dict:
    d = s.data
    c = d["config"]
    model = ((d.get("provenance") or {}).get("model") or {})
    n = d["n"] if s.kind == "sanity" else _record_n(d)
    return _canon({"dataset": c.get("dataset"), "threat": c.get("threat"), "split": c.get("split"),
                   "model": {"arch": model.get("arch") or c.get("arch") or c.get("model"),
                             "checkpoint_sha256": model.get("checkpoint_sha256"),
                             **({"name": c.get("model")} if not model.get("checkpoint_sha256") else {})},
                   "n": n, "data_seed": c.get("data_seed")})


def plot_eps(sources: Sequence[Source], out: str | os.PathLike, *, attacks: Sequence[str] | None = None,
             variants: Sequence[str] | None = None, bare: bool = True) -> dict:
    """Robust accuracy against eps: each defense variant and the bare classifier."""
    from .evaluate import eps_str

    check_out(out)
    ctx0 = _eps_context(sources[0])
    for s in sources[1:]:
        ctx = _eps_context(s)
        if ctx != ctx0:
            raise UserError(f"mismatched inputs: {s.name} and {sources[0].name} differ ({_diff(ctx0, ctx)}); an eps "
                            "plot compares one model on one data slice")
    rows: list[dict] = []

    def add(sid: tuple, series: str, kind: str, eps: float, threat: str, acc: float, ci: Sequence[float], n: int,
            src: str, attack: str) -> None:
        rows.append({"_sid": sid, "series": series, "kind": kind, "attack": attack, "eps": float(eps),
                     "eps_str": eps_str(float(eps), threat), "acc": acc, "ci95_lo": ci[0], "ci95_hi": ci[1], "n": n,
                     "source": src})

    def wanted(key: str) -> bool:
        return not attacks or key in attacks or strip_eps(key) in attacks

    for s in sources:
        d = s.data
        if s.kind == "sanity":
            check = next((c for c in d.get("checks", []) if c.get("name") == "eps-sweep"), None)
            sweep = (check or {}).get("details", {}).get("sweep")
            if not sweep:
                raise UserError(f"{s.name}: the sanity report has no eps sweep (checks[0].details.sweep)")
            var = d.get("variant", "defended")
            if variants and var not in variants:
                continue
            akey = (d.get("params") or {}).get("attack", {}).get("key", "adaptive attack")
            if not wanted(akey):
                continue
            threat = d["config"]["threat"]
            for r in sweep:
                add(("sanity", s.path, "defended"), f"{var} · {strip_eps(akey)} (adaptive, any step)", "defended",
                    r["eps"], threat, r["robust_acc"], r["ci95"], d["n"], s.name, akey)
                if bare and "bare_robust_acc" in r:
                    add(("sanity", s.path, "bare"), f"bare classifier · {strip_eps(r['bare_attack'])}", "bare",
                        r["eps"], threat, r["bare_robust_acc"], r["bare_ci95"], d["n"], s.name, r["bare_attack"])
        else:
            c = d["config"]
            ident = {a["key"]: (a["name"], json.dumps(a.get("params") or {}, sort_keys=True, default=str))
                     for a in c["attacks"]}
            for k, v in d["variants"].items():
                if variants and k not in variants:
                    continue
                for a, acc in v["summary"]["robust_acc"].items():
                    if not wanted(a):
                        continue
                    add(("record", c["setting"], k, ident.get(a, a)),
                        f"{k} · {strip_eps(a)} ({c['setting']}{', any step' if c['setting'] == 'adaptive' else ''})",
                        "defended", c["eps"], c["threat"], acc, v["summary"]["ci95"]["robust_acc"][a],
                        v["summary"]["n"], s.name, a)
            b = d.get("bare_classifier")
            if bare and b:
                for a, acc in b["robust_acc"].items():
                    if not wanted(a):
                        continue
                    add(("bare", ident.get(a, a)), f"bare classifier · {strip_eps(a)}", "bare", c["eps"],
                        c["threat"], acc, b["ci95"]["robust_acc"][a], b["n"], s.name, a)
    if not rows:
        raise UserError("nothing to plot: --attack / --variant left no series")
    rows.sort(key=lambda r: r["eps"])
    label = {}
    for r in rows:  # a series is named after its smallest eps (attack names may say the eps they ran at)
        label.setdefault(r["_sid"], r["series"])
    names = list(label.values())
    for sid, name in list(label.items()):
        if names.count(name) > 1:
            label[sid] = f"{name} [{' '.join(str(t) for t in sid[1:2])}]"
    seen: dict[tuple, str] = {}
    for r in rows:
        r["series"] = label[r["_sid"]]
        k = (r["_sid"], round(r["eps"], 12))
        if k in seen:
            raise UserError(f"two results for {r['series']} at eps {r['eps_str']} ({seen[k]} and {r['source']}); "
                            "give one per eps")
        seen[k] = r["source"]
    if len(_uniq(round(r["eps"], 12) for r in rows)) < 2:
        raise UserError(f"all inputs are at one eps ({rows[0]['eps_str']}); an eps plot needs a sanity report's eps "
                        "sweep or records at several eps")
    rows.sort(key=lambda r: (r["kind"] == "bare", r["series"], r["eps"]))
    threat = sources[0].data["config"]["threat"]
    fig = _figure(6.8, 5.0)
    ax = fig.add_subplot(1, 1, 1)
    scale = 255.0 if threat == "linf" else 1.0
    for i, name in enumerate(_uniq(r["series"] for r in rows)):
        rs = [r for r in rows if r["series"] == name]
        xs = [r["eps"] * scale for r in rs]
        is_bare = rs[0]["kind"] == "bare"
        color = "0.35" if is_bare else f"C{i}"
        ax.plot(xs, [r["acc"] for r in rs], marker="o", color=color, linestyle="--" if is_bare else "-", label=name)
        ax.fill_between(xs, [r["ci95_lo"] for r in rs], [r["ci95_hi"] for r in rs], color=color, alpha=0.12,
                        linewidth=0)
    ticks = sorted(_uniq(r["eps"] for r in rows))
    ax.set_xticks([t * scale for t in ticks], [eps_str(t, threat) for t in ticks])
    ax.set_xlabel("eps" + (" (L∞)" if threat == "linf" else " (L2)"))
    ax.set_ylabel("robust accuracy (clean ∧ adversarial)")
    ax.set_ylim(-0.02, 1.02)
    _percent_axis(ax)
    ax.grid(alpha=0.3)
    _legend(fig, ax, title="95% Wilson bands")
    cfgs = [s.data["config"] for s in sources]
    defenses = []
    for s in sources:
        if s.kind == "sanity":
            defenses.append(f"{s.data.get('variant')}: " + defense_desc((s.data["config"].get("defenses") or [{}])[-1]))
        else:
            defenses += [f"{k}: {defense_desc(v['defense'])}" for k, v in s.data["variants"].items()
                         if not variants or k in variants]
    ns = _uniq(r["n"] for r in rows)
    cap = " | ".join([f"{_join(c['dataset'] for c in cfgs)} {threat} eps swept",
                      f"model {_join(model_desc(c) for c in cfgs)}", f"defense {_join(defenses, '; ')}",
                      f"attack {_join(r['attack'] for r in rows)}", f"n={_join(ns)}",
                      "setting " + _join(["adaptive (sanity eps sweep)" if s.kind == "sanity" else
                                          s.data["config"]["setting"] for s in sources])])
    _set_caption(fig, "Robust accuracy vs eps (defended; bare classifier dashed)", cap)
    path, csv_path = save_figure(fig, out, ["series", "kind", "attack", "eps", "eps_str", "acc", "ci95_lo", "ci95_hi",
                                            "n", "source"], rows)
    return {"figure": str(path), "csv": str(csv_path), "rows": rows}


# -- recomputing a few examples (cosine, images) ------------------------------------------------------------------------
class Reproduction:
    """Rebuild a record's classifier, data, one attack and one defense variant; re-run the attack on the whole
    batches that hold the chosen examples (the engine's batches and per-batch seeds) and check the outcome."""

    def __init__(self, source: Source, *, attack: str | None = None, variant: str | None = None,
                 data_dir: str | os.PathLike | None = None, checkpoint: str | None = None,
                 device: str | None = None) -> None:
        from .check import config_from_record
        from .evaluate import Evaluator

        r = source.data
        self.source, self.record = source, r
        cfg_dict = r["config"]
        keys = [a["key"] for a in cfg_dict["attacks"]]
        self.attack = attack or keys[0]
        if self.attack not in keys:
            raise UserError(f"{source.name} has no attack {self.attack!r}; it ran: {', '.join(keys)}")
        self.variant = variant or cfg_dict.get("primary_variant") or list(r["variants"])[-1]
        if self.variant not in r["variants"]:
            raise UserError(f"{source.name} has no defense variant {self.variant!r}; it has: "
                            f"{', '.join(r['variants'])}")
        vblock = r["variants"][self.variant]
        if vblock["defense"].get("name") == "none":
            raise UserError(f"variant {self.variant!r} of {source.name} is the bare classifier; choose a ZeroPur "
                            "variant with --variant")
        try:
            cfg = config_from_record(cfg_dict)
        except (KeyError, TypeError) as exc:
            raise UserError(f"{source.name}: cannot rebuild its configuration ({exc})") from None
        spec = cfg.attacks[keys.index(self.attack)]
        vspec = next(d for d in cfg.defenses if d.key == self.variant)
        changes: dict[str, Any] = {"attacks": [spec], "defenses": [vspec]}
        if checkpoint:
            changes["checkpoint"] = checkpoint
        if device:
            changes["device"] = device
        self.config = dataclasses.replace(cfg, **changes)
        self.ev = Evaluator(self.config, data_dir=data_dir)
        self.ev.prepare()
        self._check_inputs()

    def _check_inputs(self) -> None:
        from .keys import _canon as canon

        r, ev = self.record, self.ev
        prov = r.get("provenance") or {}
        want_model = (prov.get("model") or {}).get("checkpoint_sha256")
        got_model = (ev._model_info or {}).get("checkpoint_sha256")
        if want_model and got_model != want_model:
            raise UserError(f"the classifier loaded now (checkpoint sha256 {str(got_model)[:12]}) is not the one "
                            f"{self.source.name} was made with ({want_model[:12]}); pass its checkpoint with "
                            "--checkpoint")
        want_data = (prov.get("data") or {}).get("sha256")
        if want_data and ev._data_info.get("sha256") != want_data:
            raise UserError(f"the data slice loaded now (sha256 {str(ev._data_info.get('sha256'))[:12]}) differs "
                            f"from {self.source.name}'s ({want_data[:12]}); point --data-dir at the same data")
        if [int(i) for i in ev.indices.tolist()] != [int(i) for i in r["examples"]["index"]]:
            raise UserError(f"the examples loaded now are not {self.source.name}'s")
        want_def = {k: v for k, v in (r["variants"][self.variant]["defense"].get("resolved") or {}).items()
                    if k != "channels_last"}
        got_def = {k: v for k, v in ev._defense_config(self.variant).items() if k != "channels_last"}
        if canon(json.loads(json.dumps(got_def, default=str))) != canon(want_def):
            raise UserError(f"{self.variant} rebuilt now differs from {self.source.name}'s ({_diff(want_def, got_def)})"
                            "; the defense code changed since the record was made")
        if ev.attack_keys[0] != self.attack:
            raise UserError(f"the attack rebuilt now is named {ev.attack_keys[0]!r}, the record's {self.attack!r}")

    @property
    def defense(self) -> Any:
        return self.ev.defenses[self.variant]

    @property
    def classifier(self) -> Any:
        return self.ev._classifier

    def positions(self, indices: Sequence[int]) -> list[int]:
        """Dataset indices → positions in the record."""
        where = {int(i): p for p, i in enumerate(self.record["examples"]["index"])}
        bad = [i for i in indices if int(i) not in where]
        if bad:
            lo, hi = min(where), max(where)
            raise UserError(f"example {bad[0]} is not in {self.source.name} (it holds {len(where)} examples, dataset "
                            f"indices {lo}..{hi})")
        return [where[int(i)] for i in indices]

    def run(self, positions: Sequence[int]) -> dict:
        """Re-run the attack on the batches holding ``positions``; returns x, y, indices, x_adv of those
        examples and the recomputed judgements; refuses if they differ from the record."""
        import torch

        from .attacks import make_attack
        from .estimators import predict
        from .evaluate import _autocast

        c, ev = self.config, self.ev
        x_all, y_all = ev._data
        bs = c.batch_size
        spec = c.attacks[0]
        params = spec.resolved(c.eps, c.threat)
        target = ev._classifier if c.setting == "transfer" else self.defense
        want = sorted(set(positions))
        rows: dict[int, dict] = {}
        for b, s in ev.plan():
            inside = [p for p in want if s <= p < s + bs]
            if not inside:
                continue
            xb, yb = x_all[s: s + bs].to(c.device), y_all[s: s + bs].to(c.device)
            idx = ev.indices[s: s + bs]
            atk = make_attack(spec.name, target, eps=c.eps, norm=c.norm, seed=c.seed, **params)
            with _autocast(c.device, c.dtype):
                x_adv = atk(xb, yb, idx)
            broken = atk.last_info.get("broken_any_step")
            for p in inside:
                rows[p] = {"x": xb[p - s], "y": yb[p - s], "index": idx[p - s], "x_adv": x_adv[p - s],
                           "broken": bool(broken[p - s]) if broken is not None else False}
        order = list(positions)
        x = torch.stack([rows[p]["x"] for p in order])
        y = torch.stack([rows[p]["y"] for p in order])
        idx = torch.stack([rows[p]["index"] for p in order])
        x_adv = torch.stack([rows[p]["x_adv"] for p in order])
        broken = torch.tensor([rows[p]["broken"] for p in order], dtype=torch.bool)
        n_calls = 1 if ev.deterministic[self.variant] else c.estimator_n
        with _autocast(c.device, c.dtype):
            pred = predict(self.defense, x_adv, c.estimator, n_calls, batch_size=bs, probe=False,
                           indices=idx.to(x_adv.device)).cpu()
            with torch.no_grad():
                bare_adv = self.classifier(x_adv).argmax(1).cpu()
                bare_clean = self.classifier(x).argmax(1).cpu()
        adv_ok = (pred == y.cpu()) & ~broken
        self._verify(order, adv_ok, bare_adv == y.cpu(), bare_clean == y.cpu())
        return {"positions": order, "x": x, "y": y, "indices": idx, "x_adv": x_adv, "adv_correct": adv_ok,
                "defended_pred": pred, "bare_adv_pred": bare_adv, "bare_clean_pred": bare_clean}

    def _verify(self, order: Sequence[int], adv_ok: Any, bare_adv_ok: Any, clean_ok: Any) -> None:
        r = self.record
        ex = r["variants"][self.variant]["examples"]
        checks = [("adv_correct", f"{self.variant} on the adversarial input", ex["adv_correct"][self.attack], adv_ok),
                  ("clean_correct", "the bare classifier on the clean image", ex["clean_correct"], clean_ok)]
        bare = r.get("bare_classifier")
        if bare and self.attack in ((bare.get("examples") or {}).get("adv_correct") or {}):
            checks.append(("bare adv_correct", "the bare classifier on the adversarial input",
                           bare["examples"]["adv_correct"][self.attack], bare_adv_ok))
        for name, what, recorded, now in checks:
            for j, p in enumerate(order):
                if bool(recorded[p]) != bool(now[j]):
                    i = r["examples"]["index"][p]
                    raise UserError(f"example {i} does not reproduce: {self.source.name} records {name}="
                                    f"{bool(recorded[p])} for {what} ({self.attack}), recomputed here "
                                    f"{bool(now[j])} (other hardware kernels, dtype or code version?); the figure "
                                    "would not show the recorded outcome")


def coarse_iterates(zp: Any, x_adv: Any, indices: Any) -> list[Any]:
    """Every iterate x_0 .. x_K of ZeroPur's coarse shifting (``ZeroPur._coarse``, which hands them over), checked
    against the defense's own result: x_K must equal ``purify_stages(x_adv)['coarse']`` bit for bit."""
    import torch

    zp._check_input(x_adv)
    indices = torch.as_tensor(indices, device=x_adv.device)
    out = [x_adv.detach().clone()]
    if zp.coarse_steps > 0:
        with zp._session(x_adv) as x0:
            zp._coarse(x0, indices, graph=False, on_iterate=lambda x: out.append(x.detach().clone()))
        ref = zp.purify_stages(x_adv, indices)["coarse"]
        if not torch.equal(ref, out[-1]):
            raise UserError("the coarse iterates recorded here do not reproduce ZeroPur's own result (max difference "
                            f"{float((ref - out[-1]).abs().max()):.3g})")
    return out


def _embed(zp: Any, x: Any) -> Any:
    import torch

    with torch.no_grad():
        return zp.stage_features(x)["embedding"].float()


def cosine_curves(repro: Reproduction, n: int, indices: Sequence[int] | None = None) -> dict:
    """cos(f(x_t), f(x_nat)) and cos(f(g(x_t)), f(x_nat)) per example over the coarse iterates."""
    import torch
    import torch.nn.functional as F

    recorded = repro.record["examples"]["index"]
    chosen = list(indices) if indices else [int(i) for i in recorded[:n]]
    pos = repro.positions(chosen)
    got = repro.run(pos)
    zp = repro.defense
    x_nat = got["x"]
    its = coarse_iterates(zp, got["x_adv"], got["indices"])
    f_nat = _embed(zp, x_nat)
    with torch.no_grad():
        xt = [F.cosine_similarity(_embed(zp, it), f_nat, dim=1) for it in its]
        gt = [F.cosine_similarity(_embed(zp, zp.blur(it)), f_nat, dim=1) for it in its]
    return {"indices": chosen, "x_t": torch.stack(xt).tolist(), "g_x_t": torch.stack(gt).tolist(),
            "steps": len(its) - 1, "adv_correct": got["adv_correct"].tolist()}


def _stats(values: Sequence[float]) -> tuple[float, float]:
    m = sum(values) / len(values)
    sd = math.sqrt(sum((v - m) ** 2 for v in values) / (len(values) - 1)) if len(values) > 1 else 0.0
    return m, sd


def plot_cosine(sources: Sequence[Source], out: str | os.PathLike, *, n: int = 8, indices: Sequence[int] | None = None,
                attack: str | None = None, variant: str | None = None, data_dir: str | os.PathLike | None = None,
                checkpoint: str | None = None, device: str | None = None) -> dict:
    """Paper Fig. 3: mean cosine to the natural image's embedding over the coarse-shifting steps, per record."""
    check_out(out)
    if not isinstance(n, int) or n < 1:
        raise UserError(f"--n must be a positive integer, got {n!r}")
    if len(sources) > 1 and checkpoint:
        raise UserError("--checkpoint applies to one record; with several records each must find its own")
    rows, lines, recs, attacks, variants = [], [], [], [], []
    for s in sources:
        repro = Reproduction(s, attack=attack, variant=variant, data_dir=data_dir, checkpoint=checkpoint,
                             device=device)
        cur = cosine_curves(repro, n, indices)
        label = s.data["config"]["model"]
        if label in [l for l, _ in lines]:
            label = f"{label} · {repro.variant}"
        if label in [l for l, _ in lines]:
            label = f"{label} [{Path(s.name).stem[-8:]}]"
        lines.append((label, cur))
        recs.append(s.data)
        attacks.append(repro.attack)
        variants.append(f"{repro.variant}: {defense_desc(s.data['variants'][repro.variant]['defense'])}")
        for series, key in (("x_t", "x_t"), ("g(x_t)", "g_x_t")):
            for t, vals in enumerate(cur[key]):
                m, sd = _stats(vals)
                rows.append({"line": label, "record": s.name, "variant": repro.variant, "attack": repro.attack,
                             "input": series, "t": t, "mean_cos": m, "sd_cos": sd, "n": len(vals),
                             "examples": " ".join(str(i) for i in cur["indices"])})
    fig = _figure(6.8, 5.0)
    ax = fig.add_subplot(1, 1, 1)
    for i, (label, _) in enumerate(lines):
        for series, style in (("x_t", "-"), ("g(x_t)", "--")):
            rs = [r for r in rows if r["line"] == label and r["input"] == series]
            ts = [r["t"] for r in rs]
            m = [r["mean_cos"] for r in rs]
            ax.plot(ts, m, linestyle=style, color=f"C{i}", marker="o" if series == "x_t" else None, markersize=3,
                    label=f"{label}: {'x_t' if series == 'x_t' else 'g(x_t) (blurred)'}")
            ax.fill_between(ts, [a - r["sd_cos"] for a, r in zip(m, rs)], [a + r["sd_cos"] for a, r in zip(m, rs)],
                            color=f"C{i}", alpha=0.08 if series == "x_t" else 0.05, linewidth=0)
    from matplotlib.ticker import MaxNLocator

    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlabel("coarse-shifting step t (0 = adversarial input)")
    ax.set_ylabel("cos(f(·), f(x_nat))  (mean ± 1 sd)")
    ax.grid(alpha=0.3)
    _legend(fig, ax)
    ns = _uniq(r["n"] for r in rows)
    _set_caption(fig, "Embedding similarity to the natural image over coarse shifting (solid x_t, dashed g(x_t))",
                 caption(recs, defense=_join(variants, "; "), attacks=attacks,
                         extra=f"{_join(ns)} examples shown (n={_join(_record_n(r) for r in recs)} in the record)"))
    path, csv_path = save_figure(fig, out, ["line", "record", "variant", "attack", "input", "t", "mean_cos", "sd_cos",
                                            "n", "examples"], rows)
    return {"figure": str(path), "csv": str(csv_path), "rows": rows}


def _pick(record: dict, variant: str, attack: str, pick: str, n: int) -> list[int]:
    ex = record["variants"][variant]["examples"]
    robust = ex["robust_correct"][attack]
    want = pick == "successes"
    chosen = [int(i) for i, ok in zip(ex["index"], robust) if bool(ok) == want]
    if not chosen:
        raise UserError(f"no {pick} in the record for {variant} under {attack} (robust accuracy "
                        f"{sum(map(bool, robust))}/{len(robust)})")
    return chosen[:n]


def plot_images(source: Source, out: str | os.PathLike, *, indices: Sequence[int] | None = None,
                pick: str | None = None, n: int = 4, attack: str | None = None, variant: str | None = None,
                data_dir: str | os.PathLike | None = None, checkpoint: str | None = None,
                device: str | None = None) -> dict:
    """A grid of examples: clean / adversarial / coarse / purified, true and predicted class, framed green
    (right) or red (wrong) (paper Figs. 4, 7–9)."""
    import torch

    check_out(out)
    if indices and pick:
        raise UserError("give either --index or --pick, not both")
    if not isinstance(n, int) or n < 1:
        raise UserError(f"--n must be a positive integer, got {n!r}")
    repro = Reproduction(source, attack=attack, variant=variant, data_dir=data_dir, checkpoint=checkpoint,
                         device=device)
    r = source.data
    if indices:
        chosen = [int(i) for i in indices]
    elif pick:
        chosen = _pick(r, repro.variant, repro.attack, pick, n)
    else:
        chosen = [int(i) for i in r["examples"]["index"][:n]]
    pos = repro.positions(chosen)
    got = repro.run(pos)
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
    dataset = r["config"]["dataset"]
    vex = r["variants"][repro.variant]["examples"]
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
    fig = _figure(1.75 * len(cols) + 0.4, 1.95 * len(chosen) + 0.9)
    axes = fig.subplots(len(chosen), len(cols), squeeze=False)
    for j, i in enumerate(chosen):
        for k, (name, imgs, preds) in enumerate(cols):
            ax = axes[j][k]
            row = rows[j * len(cols) + k]
            ax.imshow(imgs[j].detach().float().cpu().clamp(0, 1).permute(1, 2, 0).numpy(), interpolation="nearest")
            ax.set_xticks([])
            ax.set_yticks([])
            color = "#1a9850" if row["correct"] else "#d73027"
            for sp in ax.spines.values():
                sp.set_edgecolor(color)
                sp.set_linewidth(3)
            ax.set_title(f"pred: {row['pred_name']}", fontsize=7, color=color, pad=3)
            if j == 0:
                ax.text(0.5, 1.13, name, transform=ax.transAxes, ha="center", va="bottom", fontsize=8,
                        fontweight="bold")
            if k == 0:
                ax.set_ylabel(f"#{i}\ntrue: {row['true_name']}", fontsize=7)
    pick_text = f"picked: {pick} (first {len(chosen)})" if pick else f"examples {', '.join(map(str, chosen))}"
    _set_caption(fig, "Clean / adversarial / coarse / purified (frame: green right, red wrong)",
                 caption([r], defense=f"{repro.variant}: {defense_desc(r['variants'][repro.variant]['defense'])}",
                         attacks=[repro.attack], extra=pick_text))
    path, csv_path = save_figure(fig, out, ["index", "column", "true", "true_name", "pred", "pred_name", "correct",
                                            "linf_to_clean", "record_adv_correct", "record_robust_correct"], rows)
    return {"figure": str(path), "csv": str(csv_path), "rows": rows}


# -- the command ------------------------------------------------------------------------------------------------------------
def _int_list(text: str | None, what: str) -> list[int] | None:
    if not text:
        return None
    try:
        vals = [int(t) for t in text.replace(" ", "").split(",") if t]
    except ValueError:
        raise UserError(f"{what} must be comma-separated integers, e.g. 3,17; got '{text}'") from None
    if not vals or any(v < 0 for v in vals):
        raise UserError(f"{what} must be comma-separated integers >= 0, got '{text}'")
    return vals


@click.command("plot")
@click.argument("kind", type=click.Choice(KINDS))
@click.argument("paths", nargs=-1)
@click.option("--results", "results", multiple=True, help="Record / sanity report files, or folders of them "
              "(their *.json). Repeatable; paths may also follow KIND.")
@click.option("--out", required=True, help="Figure file: .png, .svg or .pdf; the numbers plotted go to the same "
              "path with .csv.")
@click.option("--attack", "attacks", multiple=True, help="Attack column(s) to draw, as in the record (e.g. "
              "'pgd'). Default: all (cosine/images: the record's first).")
@click.option("--variant", "variants", multiple=True, help="Defense variant(s) to draw, e.g. zeropur-cf. Default: "
              "all (cosine/images: the record's primary variant).")
@click.option("--stages", type=click.Choice(["c", "cf"]), default=None,
              help="steps/grid: only the variants with these stages.")
@click.option("--param", default=None, help="steps/grid: the swept parameter (default: the one that varies).")
@click.option("--param2", default=None, help="grid: the second parameter (default: coarse_steps × fine_steps).")
@click.option("--no-clean", is_flag=True, help="steps/grid: leave out the defended clean accuracy.")
@click.option("--no-bare", is_flag=True, help="eps: leave out the bare classifier.")
@click.option("--n", "n", type=int, default=None, help="cosine: examples averaged (default 8); images: rows "
              "(default 4).")
@click.option("--index", default=None, help="cosine/images: dataset indices of the examples, e.g. 3,17.")
@click.option("--pick", type=click.Choice(["failures", "successes"]), default=None,
              help="images: the first --n examples that are not robust (failures) or robust (successes) in the "
                   "record.")
@click.option("--data-dir", default=None, help="cosine/images: data folder (default: $ZEROPUR_BENCH_DATA, else "
              "./data).")
@click.option("--checkpoint", default=None, help="cosine/images: the classifier's checkpoint when the record's "
              "path does not resolve here (its sha256 must match the record's).")
@click.option("--device", default=None, help="cosine/images: device for the recomputation (default: the "
              "record's).")
@_friendly
def plot_cmd(kind: str, paths: tuple[str, ...], results: tuple[str, ...], out: str, attacks: tuple[str, ...],
             variants: tuple[str, ...], stages: str | None, param: str | None, param2: str | None, no_clean: bool,
             no_bare: bool, n: int | None, index: str | None, pick: str | None, data_dir: str | None,
             checkpoint: str | None, device: str | None) -> None:
    """Draw a figure from records, with a sidecar CSV of exactly the numbers plotted.

    \b
    KIND: steps (robust accuracy vs purification steps, Fig. 5), grid (coarse × fine heat map, Fig. 6),
    attack-curve (any-step vs final-only over attack iterations), eps (robust accuracy vs eps), cosine
    (embedding similarity over coarse shifting, Fig. 3), images (clean / adversarial / coarse / purified).
    Only cosine and images recompute, and only the examples they show (checked against the record).

    \b
    Examples:
      zeropur-bench sweep --model resnet20-cifar10-public --n-ex 32 --attack pgd \\
          --param fine_steps --values 0,10,25,50 --out-dir results/sweeps/
      zeropur-bench plot steps --results results/sweeps/ --out results/figures/steps.png
      zeropur-bench plot attack-curve --results results/adaptive.json --out curve.png
      zeropur-bench plot eps --results results/sanity/cifar10-resnet20-c.json --out eps.png
      zeropur-bench plot images --results results/run.json --pick failures --n 4 --out fails.png
    """
    from .evaluate import check_device

    check_out(out)
    files = list(results) + list(paths)
    a, v = list(attacks) or None, list(variants) or None
    if device:
        check_device(device)
    recompute_only = {"index": index, "pick": pick, "data-dir": data_dir, "checkpoint": checkpoint,
                      "device": device, "n": n}
    if kind not in ("cosine", "images"):
        used = [k for k, val in recompute_only.items() if val is not None]
        if used:
            raise UserError(f"--{used[0]} applies to cosine and images only, not to {kind}")
    if kind not in ("steps", "grid") and (stages or param or param2 or no_clean):
        raise UserError(f"--stages/--param/--param2/--no-clean apply to steps and grid only, not to {kind}")
    if kind != "eps" and no_bare:
        raise UserError("--no-bare applies to eps only")
    if kind == "steps":
        if param2:
            raise UserError("--param2 is for grid; a steps plot sweeps one parameter")
        res = plot_steps(load_sources(files, what="a steps plot"), out, param=param, attacks=a, stages=stages,
                         variants=v, clean=not no_clean)
    elif kind == "grid":
        res = plot_grid(load_sources(files, what="a grid plot"), out, param=param, param2=param2, attacks=a,
                        stages=stages, variants=v, clean=not no_clean)
    elif kind == "attack-curve":
        res = plot_attack_curve(load_sources(files, what="an attack-curve plot"), out, attacks=a, variants=v)
    elif kind == "eps":
        res = plot_eps(load_sources(files, ("record", "sanity"), what="an eps plot"), out, attacks=a, variants=v,
                       bare=not no_bare)
    else:
        if (a and len(a) > 1) or (v and len(v) > 1):
            raise UserError(f"{kind} recomputes one attack and one defense variant: give at most one --attack and "
                            "one --variant")
        idx = _int_list(index, "--index")
        srcs = load_sources(files, what=f"a {kind} plot")
        common = dict(attack=a[0] if a else None, variant=v[0] if v else None, data_dir=data_dir,
                      checkpoint=checkpoint, device=device)
        if kind == "cosine":
            if pick:
                raise UserError("--pick applies to images; cosine takes the first --n examples or --index")
            res = plot_cosine(srcs, out, n=n or 8, indices=idx, **common)
        else:
            if len(srcs) > 1:
                raise UserError(f"images draws examples of one record; got {len(srcs)} "
                                f"({', '.join(s.name for s in srcs[:3])}{' ...' if len(srcs) > 3 else ''})")
            res = plot_images(srcs[0], out, indices=idx, pick=pick, n=n or 4, **common)
    click.echo(f"figure written to {res['figure']} (numbers: {res['csv']})")
