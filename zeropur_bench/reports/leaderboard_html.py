"""The static HTML leaderboard: one page per dataset × threat model, in RobustBench's column layout, offline.

Columns: rank, method, clean, AutoAttack, best known (the worst case, the ranking key), "evaluation potentially
unreliable", architecture, classifier passes per prediction, records. Rows are ranked by the best known robust
accuracy (:mod:`.leaderboard`); every column sorts on a click (plain JavaScript in the page, no CDN, works from the
file system). Transfer-only entries are listed in a separate section, "transfer only: not a robustness claim",
never ranked. Each eps has its own ranked table. Links point to the record files, relative to the page.
"""
from __future__ import annotations

import html
import os
from collections import defaultdict
from pathlib import Path

from ..errors import UserError
from ..fsio import refuse_foreign, write_text_atomic
from .leaderboard import Entry

GENERATOR = "zeropur-bench leaderboard"
TRANSFER_HEADING = "transfer only: not a robustness claim"
_DATASETS = {"cifar10": "CIFAR-10", "cifar100": "CIFAR-100", "imagenet": "ImageNet"}
_THREATS = {"Linf": "L<sub>&infin;</sub>", "L2": "L<sub>2</sub>"}

_CSS = """
body{font-family:system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;margin:2rem auto;max-width:1250px;color:#222;padding:0 1rem}
h1{font-size:1.5rem;margin-bottom:.2rem} h2{font-size:1.2rem;margin-top:2rem} .lead{color:#555;margin-top:0}
table{border-collapse:collapse;width:100%;font-size:.9rem;margin:.5rem 0 1.5rem}
th{background:#2c3e50;color:#fff;padding:.45rem .5rem;text-align:left;cursor:pointer;user-select:none;vertical-align:bottom}
th:focus{outline:2px solid #f1c40f} th.sorted-asc::after{content:" \\25B2"} th.sorted-desc::after{content:" \\25BC"}
td{padding:.4rem .5rem;border-bottom:1px solid #ddd;vertical-align:top} tr:nth-child(even) td{background:#f6f8fa}
td.num{text-align:right;font-variant-numeric:tabular-nums;white-space:nowrap} td.best{font-weight:600}
.note{color:#666;font-size:.78rem;margin-top:.2rem} .records a{display:block;font-size:.78rem}
table.transfer th{background:#7f8c8d} .warn{background:#fdf2e9;border-left:4px solid #e67e22;padding:.5rem .8rem}
footer{color:#777;font-size:.8rem;margin-top:2rem}
"""

_JS = """
document.querySelectorAll("table.sortable").forEach(function (table) {
  table.querySelectorAll("th").forEach(function (th, col) {
    function sort() {
      var desc = !th.classList.contains("sorted-desc");
      table.querySelectorAll("th").forEach(function (h) { h.classList.remove("sorted-asc", "sorted-desc");
        h.removeAttribute("aria-sort"); });
      th.classList.add(desc ? "sorted-desc" : "sorted-asc");
      th.setAttribute("aria-sort", desc ? "descending" : "ascending");
      var body = table.tBodies[0], rows = Array.prototype.slice.call(body.rows);
      function key(row) {
        var cell = row.cells[col], v = cell.hasAttribute("data-sort") ? cell.getAttribute("data-sort") : cell.textContent.trim();
        if (v === "") { return null; }
        var f = parseFloat(v);
        return isNaN(f) ? v.toLowerCase() : f;
      }
      rows.sort(function (a, b) {
        var x = key(a), y = key(b);
        if (x === null || y === null) { return x === y ? 0 : (x === null ? 1 : -1); }
        var c = (typeof x === "number" && typeof y === "number") ? x - y : String(x).localeCompare(String(y));
        return desc ? -c : c;
      });
      rows.forEach(function (r) { body.appendChild(r); });
    }
    th.tabIndex = 0;
    th.addEventListener("click", sort);
    th.addEventListener("keydown", function (e) { if (e.key === "Enter" || e.key === " ") { e.preventDefault(); sort(); } });
  });
});
"""

_RANKED_COLUMNS = ("Rank", "Method", "Clean accuracy", "AutoAttack robust accuracy",
                   "Best known robust accuracy (worst case)", "Evaluation potentially unreliable", "Architecture",
                   "Classifier passes per prediction", "Records")
_TRANSFER_COLUMNS = ("Method", "Clean accuracy", "Accuracy under transfer attacks (not robustness)",
                     "Evaluation potentially unreliable", "Architecture", "Classifier passes per prediction",
                     "Records")


def page_name(dataset: str, threat: str) -> str:
    return f"{dataset}-{threat}.html"


def _e(text: object) -> str:
    return html.escape(str(text), quote=True)


def _num(value: str | None, cls: str = "num") -> str:
    if value is None:
        return f'<td class="{cls}" data-sort="">&ndash;</td>'
    return f'<td class="{cls}" data-sort="{_e(value)}">{_e(value)}%</td>'


def _method(entry: Entry) -> str:
    info = entry.info
    name = _e(info["name"])
    if info.get("link", "N/A") != "N/A":
        name = f'<a href="{_e(info["link"])}">{name}</a>'
    return f'<td data-sort="{_e(info["name"])}">{name}<div class="note">{_e(info.get("footnote", ""))}</div></td>'


def _records(entry: Entry, page_dir: Path) -> str:
    links = []
    for ev in sorted(entry.evaluations, key=lambda e: (e is not entry.best, e.record.path or "", e.variant.key)):
        label = f"{ev.record.setting}, n={ev.variant.n}, {ev.variant.key}" + (" (numbers shown)" if ev is entry.best else "")
        if ev.record.path:
            href = Path(os.path.relpath(Path(ev.record.path).resolve(), page_dir.resolve())).as_posix()
            links.append(f'<a class="record" href="{_e(href)}" title="{_e(Path(ev.record.path).as_posix())}" '
                         f'data-variant="{_e(ev.variant.key)}" data-best="{str(ev is entry.best).lower()}">{_e(label)}</a>')
        else:
            links.append(_e(label))
    return f'<td class="records" data-sort="{len(links)}">{"".join(links)}</td>'


def _common(entry: Entry) -> str:
    info = entry.info
    unreliable = "yes" if info.get("unreliable") else "no"
    passes = info.get("number_forward_passes")
    return (f'<td class="unreliable">{unreliable}</td><td class="arch">{_e(info["architecture"])}</td>'
            f'<td class="num passes" data-sort="{_e(passes if passes is not None else "")}">'
            f'{_e(passes if passes is not None else "N/A")}</td>')


def _ranked_table(entries: list[Entry], page_dir: Path, eps: str) -> str:
    head = "".join(f"<th>{c}</th>" for c in _RANKED_COLUMNS)
    rows = []
    for rank, e in enumerate(entries, 1):
        rows.append(f'<tr data-id="{_e(e.id)}"><td class="num rank" data-sort="{rank}">{rank}</td>{_method(e)}'
                    f'{_num(e.info["clean_acc"], "num clean")}{_num(e.info.get("autoattack_acc"), "num autoattack")}'
                    f'{_num(e.info["external"], "num best")}{_common(e)}{_records(e, page_dir)}</tr>')
    return (f'<table class="sortable ranked" data-eps="{_e(eps)}"><thead><tr>{head}</tr></thead>'
            f'<tbody>{"".join(rows)}</tbody></table>')


def _transfer_value(entry: Entry) -> str:
    return f"{100 * float(entry.best.variant.summary['worst_case_acc']):.2f}"


def _transfer_table(entries: list[Entry], page_dir: Path, eps: str) -> str:
    head = "".join(f"<th>{c}</th>" for c in _TRANSFER_COLUMNS)
    rows = [f'<tr data-id="{_e(e.id)}">{_method(e)}{_num(e.info["clean_acc"], "num clean")}'
            f'{_num(_transfer_value(e), "num transfer")}{_common(e)}{_records(e, page_dir)}</tr>' for e in entries]
    return (f'<table class="sortable transfer" data-eps="{_e(eps)}"><thead><tr>{head}</tr></thead>'
            f'<tbody>{"".join(rows)}</tbody></table>')


def _page(dataset: str, threat: str, entries: list[Entry], page_dir: Path) -> str:
    title = f"{_DATASETS.get(dataset, dataset)}, {_THREATS.get(threat, _e(threat))}"
    by_eps: dict[str, list[Entry]] = defaultdict(list)
    for e in entries:
        by_eps[e.eps].append(e)
    body = []
    for eps in sorted(by_eps, key=lambda s: by_eps[s][0].best.record.eps):
        ranked = [e for e in by_eps[eps] if e.ranked]
        transfer = [e for e in by_eps[eps] if not e.ranked]
        body.append(f'<h2>&epsilon; = {_e(eps)}: ranked by best known robust accuracy</h2>')
        body.append(_ranked_table(ranked, page_dir, eps) if ranked else
                    "<p>No adaptive evaluation at this eps: nothing is ranked.</p>")
        if transfer:
            body.append(f'<h2 class="transfer-heading">&epsilon; = {_e(eps)}, {TRANSFER_HEADING}</h2>')
            body.append('<p class="warn">Attacks crafted on the bare classifier, then purified. These rows are never '
                        "ranked: a transfer number says nothing about an attacker who knows the defense.</p>")
            body.append(_transfer_table(transfer, page_dir, eps))
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><meta name="generator" content="{GENERATOR}">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>ZeroPur leaderboard: {_DATASETS.get(dataset, dataset)}, {_e(threat)}</title><style>{_CSS}</style></head>
<body><h1>ZeroPur leaderboard: {title}</h1>
<p class="lead">From the run records (RobustBench's column layout). <b>Best known</b> is the per-example worst case over
the adaptive attacks of a record, the lowest over the records of the same defended model; rows are ranked by it.
<b>AutoAttack</b> is shown only where AutoAttack with its own settings attacked every image the defended model
classified right. Numbers are on the first n test images of each record (see the notes), not RobustBench's full
test set. Click a column to sort. <a href="index.html">All leaderboards</a>.</p>
{"".join(body)}
<footer>Generated by zeropur-bench from {sum(len(e.evaluations) for e in entries)} record variant(s).</footer>
<script>{_JS}</script></body></html>
"""


def _index(pages: dict[tuple[str, str], list[Entry]]) -> str:
    items = "".join(f'<li><a href="{_e(page_name(d, t))}">{_DATASETS.get(d, d)}, {_THREATS.get(t, _e(t))}</a>: '
                    f'{sum(e.ranked for e in es)} ranked, {sum(not e.ranked for e in es)} transfer only</li>'
                    for (d, t), es in sorted(pages.items()))
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><meta name="generator" content="{GENERATOR}">
<title>ZeroPur leaderboards</title><style>{_CSS}</style></head>
<body><h1>ZeroPur leaderboards</h1><ul>{items}</ul></body></html>
"""


def _is_ours(text: str) -> bool:
    return f'<meta name="generator" content="{GENERATOR}">' in text


def render_leaderboard(entries: list[Entry], out_dir: str | os.PathLike) -> list[Path]:
    """Write ``index.html`` and one page per dataset × threat into ``out_dir``; returns the paths. A file there
    that this command did not write is never overwritten (checked before anything is written)."""
    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise UserError(f"--out '{out}' is a file; give a folder for the leaderboard pages (e.g. site/)")
    pages: dict[tuple[str, str], list[Entry]] = defaultdict(list)
    for e in entries:
        pages[(e.dataset, e.threat)].append(e)
    plan = {out / page_name(d, t): _page(d, t, es, out) for (d, t), es in sorted(pages.items())}
    plan[out / "index.html"] = _index(pages)
    for path in plan:
        refuse_foreign(path, _is_ours, "a page written by zeropur-bench leaderboard", parse=lambda s: s)
    for path, text in plan.items():
        write_text_atomic(path, text)
    return list(plan)
