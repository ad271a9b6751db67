"""What every figure shares: its inputs (run records and sanity reports), its output (figure + sidecar CSV, written
atomically), the matplotlib canvas and the caption line that lets one image stand on its own.

Records are read only through :class:`~zeropur_bench.records.RecordView`; sanity reports
(``zeropur-bench/sanity/v2``), which are not run records, through :func:`read_sanity`.
"""
from __future__ import annotations

import csv
import io
import json
import math
import os
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Sequence

from ...errors import UserError
from ...fmt import fmt_value
from ...fsio import claim, file_kind, write_bytes_atomic
from ...keys import canon, describe_diff
from ...marks import figure_metadata, is_marked, mark_line
from ...records import SCHEMA as RECORD_SCHEMA
from ...records.view import DISPLAY_NAMES
from ...records import RecordError, RecordView, VariantView

FIG_SUFFIXES = (".png", ".svg", ".pdf")
SANITY_SCHEMA = "zeropur-bench/sanity/v2"


# -- inputs ----------------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class SanityReport:
    """The fields of a sanity report (``zeropur-bench sanity``) that figures use: its eps sweep and what it ran."""

    raw: dict
    n: int
    variant: str
    dataset: str | None
    threat: str
    split: str | None
    model: str | None
    arch: str | None  # the config's
    recipe: str | None
    data_seed: int | None
    model_info: dict
    defense: dict  # the defended variant's block in the config (its last defense)
    attack: str  # the adaptive attack's key
    attack_without_eps: str
    sweep: list[dict] | None  # the eps-sweep check's rows, None without one


def read_sanity(obj: dict) -> SanityReport:
    """A ``zeropur-bench/sanity/v2`` report (already parsed JSON) as a :class:`SanityReport`.

    The eps-free attack names are the report's fields ``params.attack.key_without_eps`` and the eps-sweep rows'
    ``bare_attack_without_eps`` (``benchmarks/migrate_records.py`` added them to older reports)."""
    c = obj.get("config") or {}
    attack = ((obj.get("params") or {}).get("attack") or {})
    key = attack.get("key", "adaptive attack")
    check = next((ch for ch in obj.get("checks", []) if ch.get("name") == "eps-sweep"), None)
    sweep = (check or {}).get("details", {}).get("sweep") or None
    return SanityReport(
        raw=obj, n=obj["n"], variant=obj.get("variant", "defended"), dataset=c.get("dataset"), threat=c["threat"],
        split=c.get("split"), model=c.get("model"), arch=c.get("arch"), recipe=c.get("recipe"),
        data_seed=c.get("data_seed"), model_info=(obj.get("provenance") or {}).get("model") or {},
        defense=(c.get("defenses") or [{}])[-1], attack=key,
        attack_without_eps=attack.get("key_without_eps") or key,
        sweep=sweep)


def bare_attack_without_eps(row: dict) -> str:
    """A sanity eps-sweep row's bare-classifier attack without its eps."""
    return row.get("bare_attack_without_eps") or row["bare_attack"]


@dataclass(frozen=True)
class Source:
    """One input file: a run record (``record``) or a sanity report (``sanity``)."""

    path: str
    kind: str  # "record" | "sanity"
    record: RecordView | None = None
    sanity: SanityReport | None = None

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


def _source(path: Path, obj: dict, kind: str) -> Source:
    if kind == "record":
        return Source(str(path), kind, record=RecordView.from_dict(obj, path))
    return Source(str(path), kind, sanity=read_sanity(obj))


def _kinds(accept: Sequence[str], record_word: str) -> str:
    return " and ".join("sanity reports" if a == "sanity" else record_word for a in accept)


def load_sources(paths: Sequence[str | os.PathLike], accept: Sequence[str] = ("record",),
                 what: str = "this plot") -> list[Source]:
    """Records / sanity reports from files and folders (a folder: its ``*.json`` files, not recursive; files of
    other kinds in a folder are skipped, a damaged record there with a warning; a named file of the wrong kind
    is refused)."""
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
                    if kind in accept and str(f.resolve()) not in seen:
                        found.append(_source(f, obj, kind))
                        seen.add(str(f.resolve()))
                except RecordError as exc:
                    warnings.warn(f"{exc} (skipped)", stacklevel=2)
                except UserError:
                    continue  # an unreadable or old file in a folder is not one the user asked for
        elif path.is_file():
            obj = _read_json(path)
            kind = _classify(path, obj)
            if kind is None:
                raise UserError(f"'{path}' is neither a {RECORD_SCHEMA} record nor a {SANITY_SCHEMA} report")
            if kind not in accept:
                raise UserError(f"'{path}' is a {'sanity report' if kind == 'sanity' else 'run record'}; {what} "
                                f"reads {_kinds(accept, 'run records')}")
            if str(path.resolve()) not in seen:
                seen.add(str(path.resolve()))
                found.append(_source(path, obj, kind))
        elif file_kind(path) is not None:  # a FIFO or a device is never opened
            raise UserError(f"--results '{path}' is {file_kind(path)}, not a record file or a folder of records")
        else:
            raise UserError(f"--results '{path}' does not exist")
    if not found:
        kinds = " or ".join("sanity reports" if a == "sanity" else f"{RECORD_SCHEMA} records" for a in accept)
        raise UserError(f"no {kinds} found in {', '.join(str(p) for p in paths)} (for {what})")
    return found


# -- output ----------------------------------------------------------------------------------------------------------
def _ours(path: Path) -> bool:
    return is_marked(path, "plot")


def check_out(out: str | os.PathLike) -> tuple[Path, Path]:
    """(figure path, sidecar CSV path); the suffix chooses the format. Checked before any work: each of the two
    is missing or a file this command made (its mark), never a device, a FIFO or a user's file."""
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
    claim(path, _ours, "a figure made by `zeropur-bench plot`")
    claim(path.with_suffix(".csv"), _ours, "the CSV of a figure made by `zeropur-bench plot`",
          option="the CSV beside --out,")
    return path, path.with_suffix(".csv")


def _csv_value(v: Any) -> Any:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, float):
        return repr(v) if math.isfinite(v) else ""  # full precision: the record's own number
    return "" if v is None else v


def save_figure(fig: Any, out: str | os.PathLike, columns: Sequence[str], rows: Iterable[dict]) -> tuple[Path, Path]:
    """Write ``fig`` (format from the suffix) and the sidecar CSV (``columns``; floats at full precision)."""
    path, csv_path = check_out(out)
    buf = io.BytesIO()
    fmt = path.suffix.lower()[1:]
    fig.savefig(buf, format=fmt, dpi=150, bbox_inches="tight", metadata=figure_metadata("plot", fmt))
    text = io.StringIO()
    text.write(mark_line("plot", "csv") + "\n")
    w = csv.DictWriter(text, fieldnames=list(columns), lineterminator="\n")
    w.writeheader()
    for r in rows:
        w.writerow({c: _csv_value(r.get(c)) for c in columns})
    write_bytes_atomic(path, buf.getvalue())
    write_bytes_atomic(csv_path, text.getvalue().encode())
    return path, csv_path


def figure(width: float, height: float) -> Any:
    """A matplotlib Figure on the Agg canvas (the OO API: no pyplot, no display, no global backend)."""
    from matplotlib.figure import Figure

    return Figure(figsize=(width, height), layout="constrained")


def percent_axis(ax: Any, axis: str = "y") -> None:
    from matplotlib.ticker import PercentFormatter

    getattr(ax, f"{axis}axis").set_major_formatter(PercentFormatter(xmax=1.0, decimals=0))


def integer_x(ax: Any) -> None:
    from matplotlib.ticker import MaxNLocator

    ax.xaxis.set_major_locator(MaxNLocator(integer=True))


def accuracy_axis(ax: Any) -> None:
    """The y axis of every accuracy line plot: robust accuracy in percent, 0–100%, with a grid."""
    ax.set_ylabel("robust accuracy (clean ∧ adversarial)")
    ax.set_ylim(-0.02, 1.02)
    percent_axis(ax)
    ax.grid(alpha=0.3)


def legend(fig: Any, ax: Any, title: str | None = None) -> None:
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


def set_caption(fig: Any, title: str, caption_line: str) -> None:
    fig.suptitle(title + "\n" + _wrap(caption_line), fontsize=9)


# -- describing records ----------------------------------------------------------------------------------------------
def uniq(values: Iterable[Any]) -> list[Any]:
    return list(dict.fromkeys(v for v in values if v is not None))


def join(values: Iterable[Any], sep: str = ", ") -> str:
    vals = [str(v) for v in uniq(values)]
    return sep.join(vals) if vals else "?"


# how a caption names a defense of the registry (its registry name otherwise)
CAPTION_NAMES = {**DISPLAY_NAMES, "blur": "blur only", "none": "none (bare classifier)"}


def _describe(name: Any, stages: Any, profile: Any, blur: Any, overrides: dict, skip: Sequence[str],
              key: str = "") -> str:
    shown = CAPTION_NAMES.get(str(name), str(name))
    if stages is None:  # a defense without stages: the bare classifier, the blur alone, a plugin's purifier
        if name == "blur":
            return f"{shown} ({blur})"
        return shown if name in CAPTION_NAMES else (key or shown)
    over = {k: v for k, v in overrides.items() if k not in skip}
    extra = "".join(f", {k}={fmt_value(v)}" for k, v in sorted(over.items()))
    return f"{shown}-{stages} ({profile}, blur {blur}{extra})"


def defense_desc(v: VariantView, skip: Sequence[str] = ()) -> str:
    """``ZeroPur-cf (authors, blur median:3, coarse_steps=2)`` for a defense variant, ``blur only (median:3)``,
    a plugin's variant by its name; ``skip``: overrides not to list (the swept ones)."""
    return _describe(v.name, v.stages, v.profile, v.blur, v.overrides, skip, v.key)


def sanity_defense_desc(s: SanityReport) -> str:
    """:func:`defense_desc` of a sanity report's defended variant (its config's defense block)."""
    d = s.defense
    return _describe(d.get("name"), d.get("stages"), d.get("profile"), d.get("blur"), d.get("overrides") or {}, ())


def model_desc(model: Any, arch: Any, recipe: Any) -> str:
    """``resnet20 (recipe standard)`` / ``name (arch, recipe r)`` from a config's model, arch and recipe."""
    rec = f", recipe {recipe}" if recipe else ""
    shown = f" ({arch}{rec})" if arch and arch != model else (f" ({rec[2:]})" if rec else "")
    return f"{model}{shown}"


def record_model_desc(rv: RecordView) -> str:
    return model_desc(rv.model, rv.arch, rv.recipe)


def caption(records: Sequence[RecordView], *, defense: str | None = None, attacks: Sequence[str] | None = None,
            eps: str | None = None, setting: str | None = None, extra: str | None = None) -> str:
    """One line: dataset threat eps | model | defense | attack(s) | n | setting (several values joined)."""
    eps = eps or join(r.eps_str for r in records)
    setting = setting or join(r.setting for r in records)
    parts = [f"{join(r.dataset for r in records)} {join(r.threat for r in records)} eps={eps}",
             f"model {join(record_model_desc(r) for r in records)}",
             f"defense {defense or join(k for r in records for k in r.variants)}",
             f"attack {join(attacks or [a.key for r in records for a in r.attacks])}",
             f"n={join(r.n for r in records)}",
             f"setting {setting}" + (" (robust = any step)" if setting == "adaptive" else "")]
    if extra:
        parts.append(extra)
    return " | ".join(parts)


def diff(a: dict, b: dict) -> str:
    return describe_diff(a, b)


def model_id(rv_arch: Any, model_info: dict, name: Any) -> dict:
    """A classifier's identity for a family check: arch and checkpoint sha256 (the name when there is none)."""
    sha = model_info.get("checkpoint_sha256")
    return {"arch": rv_arch, "checkpoint_sha256": sha, **({"name": name} if not sha else {})}


def record_context(rv: RecordView, attacks: Sequence[str] | None = None) -> dict:
    """What must agree between records plotted as one family: data, model, threat, eps, setting, seed, estimator,
    dtype and the drawn attacks with their resolved parameters."""
    atk: dict[str, Any] = {a.key: a.params for a in rv.attacks}
    if attacks is not None:
        atk = {k: atk.get(k, "(not run)") for k in attacks}
    return canon({
        "dataset": rv.dataset, "split": rv.split, "threat": rv.threat, "eps": rv.eps, "setting": rv.setting,
        "seed": rv.seed, "estimator": rv.estimator, "estimator_n": rv.estimator_n,
        "dtype": rv.dtype, "model": model_id(rv.arch, rv.model_info, rv.model),
        "data": rv.data_info.get("sha256"), "n": rv.n, "attacks": atk,
    })
