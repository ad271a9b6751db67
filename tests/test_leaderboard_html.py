"""Issue 32, item 3: ``zeropur-bench leaderboard --out DIR`` renders the committed records as static, offline HTML in
RobustBench's column layout. The page's tables are parsed and checked against the records, number by number (CI
installs with pip only, so no browser here)."""
from __future__ import annotations

import json
import os
from html.parser import HTMLParser
from pathlib import Path

import pytest
from click.testing import CliRunner

from zeropur_bench.cli import main

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "results"
RANKED_HEAD = ["Rank", "Method", "Clean accuracy", "AutoAttack robust accuracy",
               "Best known robust accuracy (worst case)", "Evaluation potentially unreliable", "Architecture",
               "Classifier passes per prediction", "Records"]


class _Page(HTMLParser):
    """Tables (class, header texts, rows of cells with class / data-sort / text / links), h2 texts, scripts."""

    def __init__(self) -> None:
        super().__init__()
        self.tables: list[dict] = []
        self.h2: list[str] = []
        self.external: list[str] = []
        self.scripts: list[str] = []
        self._cell: dict | None = None
        self._in: list[str] = []

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        self._in.append(tag)
        if tag == "table":
            self.tables.append({"class": a.get("class", "").split(), "eps": a.get("data-eps"), "head": [],
                                "rows": []})
        elif tag == "tr" and self.tables and "tbody" in self._in:
            self.tables[-1]["rows"].append({"id": a.get("data-id"), "cells": []})
        elif tag in ("td", "th") and self.tables:
            self._cell = {"class": a.get("class", "").split(), "sort": a.get("data-sort"), "text": "", "links": []}
            (self.tables[-1]["rows"][-1]["cells"] if tag == "td" else self.tables[-1]["head"]).append(self._cell)
        elif tag == "a" and self._cell is not None:
            self._cell["links"].append(a)
        elif tag == "h2":
            self.h2.append("")
        elif tag in ("script", "link", "img", "iframe") and (a.get("src") or tag == "link"):
            self.external.append(f"{tag} {a}")

    def handle_endtag(self, tag):
        if tag in ("td", "th"):
            self._cell = None
        while self._in and self._in.pop() != tag:
            pass

    def handle_data(self, data):
        if self._cell is not None:
            self._cell["text"] += data
        if self._in and self._in[-1] == "h2":
            self.h2[-1] += data
        if self._in and self._in[-1] == "script":
            self.scripts.append(data)


@pytest.fixture(scope="module")
def site(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("site")
    res = CliRunner().invoke(main, ["leaderboard", "--out", str(out), "--results", str(RESULTS)])
    assert res.exit_code == 0, res.output
    return out


def _parse(path: Path) -> _Page:
    p = _Page()
    p.feed(path.read_text(encoding="utf-8"))
    return p


def _pct(acc: float) -> str:
    return f"{100 * acc:.2f}"


def _cell(row: dict, cls: str) -> dict:
    return next(c for c in row["cells"] if cls in c["class"])


def _linked(page: Path, row: dict) -> list[tuple[dict, dict, bool]]:
    """(record, variant block, is the one the numbers come from) for every record a row links to."""
    out = []
    for a in _cell(row, "records")["links"]:
        raw = json.loads((page.parent / a["href"]).resolve().read_text())
        out.append((raw, raw["variants"][a["data-variant"]], a["data-best"] == "true"))
    return out


def _own_autoattack(raw: dict, v: dict) -> list[float]:
    if raw["config"]["setting"] != "adaptive":
        return []
    out = []
    for a in raw["config"]["attacks"]:
        attacked = (v["examples"].get("attacked") or {}).get(a["key"])
        full = attacked is None or all(t or not d for t, d in zip(attacked, v["examples"]["defended_clean_correct"]))
        if a["family"] == "autoattack" and a["key"].startswith("AutoAttack-") and full:
            out.append(v["summary"]["robust_acc"][a["key"]])
    return out


def test_one_offline_page_per_dataset_and_threat(site):
    pages = sorted(p.name for p in site.glob("*.html"))
    assert pages == ["cifar10-L2.html", "cifar10-Linf.html", "cifar100-Linf.html", "index.html"]
    for name in pages:
        page = _parse(site / name)
        assert page.external == []  # no CDN, no external script or stylesheet: works from the file system
        if name != "index.html":
            js = "".join(page.scripts)
            assert 'addEventListener("click"' in js and "rows.sort" in js  # plain-JS column sort
            assert all(t["head"] for t in page.tables)


def test_ranked_table_matches_the_records_number_by_number(site):
    page_path = site / "cifar10-Linf.html"
    page = _parse(page_path)
    ranked = [t for t in page.tables if "ranked" in t["class"]]
    assert len(ranked) == 1 and ranked[0]["eps"] == "8/255"
    table = ranked[0]
    assert [h["text"] for h in table["head"]] == RANKED_HEAD
    assert len(table["rows"]) >= 10
    previous = float("inf")
    for rank, row in enumerate(table["rows"], 1):
        linked = _linked(page_path, row)
        best = [(raw, v) for raw, v, b in linked if b]
        assert len(best) == 1
        raw, v = best[0]
        adaptive = [(r, vv) for r, vv, _ in linked if r["config"]["setting"] == "adaptive"]
        assert adaptive and all(r["config"]["split"] == "test" for r, _ in adaptive)
        worst = min(float(_pct(vv["summary"]["worst_case_acc"])) for _, vv in adaptive)
        assert _cell(row, "rank")["text"] == str(rank)
        assert _cell(row, "best")["sort"] == f"{worst:.2f}" and _cell(row, "best")["text"] == f"{worst:.2f}%"
        assert _cell(row, "best")["sort"] == _pct(v["summary"]["worst_case_acc"])  # from the linked record
        assert worst <= previous  # ranked by the worst case, high to low
        previous = worst
        assert _cell(row, "clean")["text"] == f"{_pct(v['summary']['defended_clean_acc'])}%"
        aa = [a for r, vv, _ in linked for a in _own_autoattack(r, vv)]
        assert _cell(row, "autoattack")["sort"] == (_pct(min(aa)) if aa else "")
        assert _cell(row, "passes")["text"] == str(round(v["defense"]["forward_passes_per_prediction"]))
        assert _cell(row, "arch")["text"] == "ResNet-20"
        assert _cell(row, "unreliable")["text"] == ("yes" if v["defense"]["deterministic"] is False else "no")
        # no ranked number above the worst case any linked adaptive record measured
        assert all(worst <= 100 * vv["summary"]["worst_case_acc"] + 1e-9 for _, vv in adaptive)


def test_transfer_rows_are_a_separate_unranked_section(site):
    for name in ("cifar10-L2.html", "cifar10-Linf.html", "cifar100-Linf.html"):
        page_path = site / name
        page = _parse(page_path)
        transfer = [t for t in page.tables if "transfer" in t["class"]]
        assert len(transfer) == 1 and transfer[0]["rows"]
        assert any("transfer only: not a robustness claim" in h for h in page.h2)
        assert "Rank" not in [h["text"] for h in transfer[0]["head"]]
        for row in transfer[0]["rows"]:
            assert not any("rank" in c["class"] or "best" in c["class"] for c in row["cells"])
            linked = _linked(page_path, row)
            assert all(r["config"]["setting"] == "transfer" for r, _, _ in linked)  # never an adaptive one here
            (raw, v), = [(r, vv) for r, vv, b in linked if b]
            assert _cell(row, "transfer")["sort"] == _pct(v["summary"]["worst_case_acc"])
            assert _cell(row, "clean")["sort"] == _pct(v["summary"]["defended_clean_acc"])
            assert _cell(row, "unreliable")["text"] == "yes"
    for name in ("cifar10-L2.html", "cifar100-Linf.html"):  # transfer records only: nothing ranked
        assert not [t for t in _parse(site / name).tables if "ranked" in t["class"]]


def test_every_record_variant_is_on_exactly_one_row(site):
    seen = []
    for name in ("cifar10-L2.html", "cifar10-Linf.html", "cifar100-Linf.html"):
        for table in _parse(site / name).tables:
            for row in table["rows"]:
                for a in _cell(row, "records")["links"]:
                    seen.append((str((site / a["href"]).resolve()), a["data-variant"]))
    expected = []
    for p in RESULTS.rglob("*.json"):
        raw = json.loads(p.read_text())
        if isinstance(raw, dict) and raw.get("schema") == "zeropur-bench/record/v2":
            expected += [(str(p.resolve()), k) for k in raw["variants"]]
    assert sorted(seen) == sorted(expected)


def test_leaderboard_refuses_foreign_files_and_bad_input(tmp_path):
    out = tmp_path / "site"
    out.mkdir()
    (out / "index.html").write_text("<html>my own page</html>")
    res = CliRunner().invoke(main, ["leaderboard", "--out", str(out), "--results", str(RESULTS)])
    assert res.exit_code == 2 and len(res.stderr.strip().splitlines()) == 1
    assert "refusing to overwrite" in res.stderr and "Traceback" not in res.output
    assert (out / "index.html").read_text() == "<html>my own page</html>" and not list(out.glob("cifar*.html"))
    empty = tmp_path / "empty"
    empty.mkdir()
    res = CliRunner().invoke(main, ["leaderboard", "--out", str(tmp_path / "x"), "--results", str(empty)])
    assert res.exit_code == 2 and "no run records found" in res.stderr
    res = CliRunner().invoke(main, ["leaderboard", "--out", str(out / "index.html"), "--results", str(RESULTS)])
    assert res.exit_code == 2 and "is a file" in res.stderr
    # a second run over its own output is fine
    ok = tmp_path / "ok"
    for _ in range(2):
        assert CliRunner().invoke(main, ["leaderboard", "--out", str(ok), "--results", str(RESULTS)]).exit_code == 0
    assert os.path.getsize(ok / "cifar10-Linf.html") > 0
