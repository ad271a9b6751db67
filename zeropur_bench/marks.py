"""The mark by which a command knows its own non-JSON outputs from a user's files (JSON outputs carry a schema).

Tables (markdown, CSV, LaTeX) and the CSV beside every figure start with one comment line naming the command that
made them (``<!-- made by zeropur-bench table; ... -->``, ``# made by zeropur-bench plot; ...``, ``% ...``);
figures carry it in their metadata (PNG ``Software``, SVG / PDF ``Creator``: ``zeropur-bench plot``). A command
replaces a file only when it carries that command's mark (:func:`is_marked`, used through
:func:`zeropur_bench.fsio.claim`), so a colleague's ``table2.csv`` beside ``table2.md`` is never overwritten.

Readers skip the comment line (``pandas.read_csv(path, skiprows=1)``); a markdown viewer does not
show an HTML comment, LaTeX ignores a ``%`` line.
"""
from __future__ import annotations

import os
import struct
from pathlib import Path

COMMENTS = {"markdown": ("<!-- ", " -->"), "csv": ("# ", ""), "latex": ("% ", "")}
_PNG = b"\x89PNG\r\n\x1a\n"
_MAX_SCAN = 64 * 2 ** 20  # an SVG / PDF figure is far smaller; a larger file is not one of ours


def tag(command: str) -> str:
    """``zeropur-bench table``: what every mark of ``command`` holds (a figure's metadata value)."""
    return f"zeropur-bench {command}"


def mark_line(command: str, fmt: str) -> str:
    """The first line of a text output of ``command`` in ``fmt`` (markdown, csv, latex)."""
    pre, post = COMMENTS[fmt]
    return f"{pre}made by {tag(command)}; rerunning it replaces this file{post}"


def add_mark(text: str, command: str, fmt: str) -> str:
    """``text`` with ``command``'s mark as its first line."""
    return mark_line(command, fmt) + "\n" + text


def strip_mark(text: str) -> str:
    """``text`` without a mark line (what the command rendered); text without one is returned as it is."""
    first, sep, rest = text.partition("\n")
    return rest if sep and _is_mark_line(first, None) else text


def figure_metadata(command: str, fmt: str) -> dict[str, str]:
    """matplotlib ``savefig(metadata=...)`` that marks a figure of ``command`` (png: Software; svg, pdf: Creator)."""
    return {("Software" if fmt == "png" else "Creator"): tag(command)}


def _is_mark_line(line: str, command: str | None) -> bool:
    line = line.rstrip("\r")
    for pre, post in COMMENTS.values():
        if line.startswith(pre + "made by zeropur-bench ") and line.endswith(post):
            body = line[len(pre):len(line) - len(post)]
            return command is None or body.startswith(f"made by {tag(command)};")
    return False


def _png_text(path: Path) -> dict[str, str]:
    """The tEXt chunks of a PNG file (keyword → text), read chunk by chunk without decoding the image."""
    out: dict[str, str] = {}
    with open(path, "rb") as f:
        if f.read(8) != _PNG:
            return out
        while True:
            head = f.read(8)
            if len(head) < 8:
                return out
            length, kind = struct.unpack(">I4s", head)
            if kind == b"tEXt" and length < 1 << 16:
                key, _, value = f.read(length).partition(b"\0")
                out[key.decode("latin-1")] = value.decode("latin-1")
                f.seek(4, os.SEEK_CUR)
            elif kind == b"IEND":
                return out
            else:
                f.seek(length + 4, os.SEEK_CUR)


def is_marked(path: str | os.PathLike, command: str) -> bool:
    """Whether the regular file at ``path`` is an output of ``command`` (its mark: the first line of a text
    output, the metadata of a figure). Only called on regular files (:func:`zeropur_bench.fsio.claim`)."""
    path = Path(path)
    with open(path, "rb") as f:
        head = f.read(4096)
    if head.startswith(_PNG):
        return _png_text(path).get("Software") == tag(command)
    if head.startswith(b"%PDF") or b"<svg" in head:
        if path.stat().st_size > _MAX_SCAN:
            return False
        needle = tag(command).encode()
        data = path.read_bytes()
        return (b"/Creator (" + needle + b")" in data) if head.startswith(b"%PDF") else \
            (b"<dc:title>" + needle + b"</dc:title>" in data)
    first = head.split(b"\n", 1)[0]
    try:
        return _is_mark_line(first.decode("utf-8"), command)
    except UnicodeDecodeError:
        return False


__all__ = ["COMMENTS", "add_mark", "figure_metadata", "is_marked", "mark_line", "strip_mark", "tag"]
