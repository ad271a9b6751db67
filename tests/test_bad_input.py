"""Issue 33: bad input and faults, round three. One matrix holding the 18 groups of the issue (beside the earlier
rounds in tests/test_cli.py), each case a real ``zeropur-bench`` subprocess in a fresh folder, asserting:

* the exit status (2 for a refusal; 0 for a record skipped with a warning);
* a single line on stderr (``error: ...`` naming what is wrong, or one ``warning: ...``), and no traceback;
* the disk before and after (:func:`clirun.snapshot`): no new, changed or replaced file, each file's mode and
  type compared, so a device stays the same device; a warning case may only add the table it writes.

Devices need root (``mknod NODE c 1 3``, as CI runs); a FIFO and a symlink to /dev/null are among the cases, and
every case runs under pytest-timeout and a subprocess timeout, so a FIFO opened by mistake fails, never hangs.
"""
from __future__ import annotations

import json
import os
import stat
from pathlib import Path
from typing import Callable

import numpy as np
import pytest

from clirun import ENOSPC_SITE, snapshot, zb

ROOT = Path(__file__).resolve().parents[1]
RECORD = ROOT / "results" / "cifar10-linf-resnet20-cifar10-vanilla-transfer-e18f3dbbc495670b.json"
BASELINE = ROOT / "results" / "baselines" / "cifar10-resnet20-transfer.json"
# the issue's set-up (fewer steps: a case that gets as far as the engine still does little)
R = ["run", "--model", "resnet20-cifar10-public", "--n-ex", "4", "--batch-size", "2", "--stages", "c",
     "--no-progress", "--zp", "coarse_steps=2", "--attack", "pgd:steps=2"]


# -- what a case lays out before the command (nothing here is compared: the snapshot is taken after it) ------------
def device(tmp: Path, name: str = "NODE") -> None:
    """A character device like /dev/null (c 1 3): needs root (and CAP_MKNOD), as CI has."""
    if os.geteuid() != 0:
        pytest.skip("a device node needs root")
    try:
        os.mknod(tmp / name, stat.S_IFCHR | 0o666, os.makedev(1, 3))
    except PermissionError:
        pytest.skip("this container may not make device nodes (no CAP_MKNOD)")


def fifo(tmp: Path, name: str = "FIFO") -> None:
    os.mkfifo(tmp / name)


def devnull_link(tmp: Path, name: str = "LNK") -> None:
    os.symlink("/dev/null", tmp / name)


def users_file(rel: str, text: str = "my own notes\n") -> Callable[[Path], None]:
    def make(tmp: Path) -> None:
        (tmp / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp / rel).write_text(text)
        (tmp / rel).chmod(0o640)
    return make


def users_png(rel: str) -> Callable[[Path], None]:
    """A PNG that another program made (its metadata names that program)."""
    def make(tmp: Path) -> None:
        from matplotlib.figure import Figure

        (tmp / rel).parent.mkdir(parents=True, exist_ok=True)
        Figure(figsize=(1, 1)).savefig(tmp / rel, format="png")
    return make


def npz(x: Callable[[np.ndarray], np.ndarray] = lambda x: x, y: Callable[[np.ndarray], np.ndarray] = lambda y: y):
    """data/cifar10_test.npz: 16 real CIFAR-10 test images and labels, changed by ``x`` / ``y``."""
    def make(tmp: Path) -> None:
        with np.load(Path(os.environ["ZEROPUR_BENCH_DATA"]) / "cifar10_test.npz") as d:
            xs, ys = d["x"][:16], d["y"][:16]
        (tmp / "data").mkdir()
        np.savez(tmp / "data" / "cifar10_test.npz", x=x(xs), y=y(ys))
    return make


def baseline(change: Callable[[dict], None]) -> Callable[[Path], None]:
    def make(tmp: Path) -> None:
        b = json.loads(BASELINE.read_text())
        change(b)
        (tmp / "b.json").write_text(json.dumps(b))
    return make


def results_with(change: Callable[[dict], None]) -> Callable[[Path], None]:
    """results/r.json: a committed record, changed."""
    def make(tmp: Path) -> None:
        rec = json.loads(RECORD.read_text())
        change(rec)
        (tmp / "results").mkdir()
        (tmp / "results" / "r.json").write_text(json.dumps(rec))
    return make


def registry(change: Callable[[str], str]) -> Callable[[Path], None]:
    """weights/registry.json: the package's, changed (for $ZEROPUR_BENCH_WEIGHTS)."""
    def make(tmp: Path) -> None:
        (tmp / "weights").mkdir()
        (tmp / "weights" / "registry.json").write_text(change((ROOT / "zeropur_bench/weights/registry.json").read_text()))
    return make


def full_disk(tmp: Path) -> None:
    (tmp / "site").mkdir()
    (tmp / "site" / "sitecustomize.py").write_text(ENOSPC_SITE)
    (tmp / "out").mkdir()


def _set(path: str, value) -> Callable[[dict], None]:
    def change(d: dict) -> None:
        *parents, last = path.split("/")
        for p in parents:
            d = d[p]
        d[last] = value
    return change


def _unknown_entry_key(text: str) -> str:
    reg = json.loads(text)
    reg["classifiers"][0]["colour"] = "red"
    return json.dumps(reg)


class Case:
    """One reproduction: ``setup`` lays out its inputs; ``args`` is the command (``{root}`` is this repository);
    ``code`` and ``needle`` what it must end in; ``new``: the only files a case that exits 0 may add."""

    def __init__(self, group: int, name: str, args: list[str], needle: str, *setup: Callable[[Path], None],
                 code: int = 2, new: tuple[str, ...] = (), env: dict | None = None, data: bool = False,
                 absent: str | None = None) -> None:
        self.group, self.name, self.args, self.needle, self.setup = group, name, args, needle, setup
        self.code, self.new, self.env, self.data, self.absent = code, set(new), env or {}, data, absent

    @property
    def id(self) -> str:
        return f"{self.group:02d} {self.name}"


TABLE_OUT = ("t", "t/table2.md", "t/table2.csv")
CASES = [
    # 1. a device (or a FIFO, or a symlink to /dev/null) at --out is refused, never replaced
    Case(1, "table --format csv --out NODE", ["table", "--table", "2", "--format", "csv", "--out", "NODE",
                                              "--results", "{root}/results"], "is a character device", device),
    Case(1, "check --update --baseline NODE", ["check", "--baseline", "NODE", "--record", str(RECORD), "--update"],
         "is a character device", device),
    Case(1, "table --out FIFO", ["table", "--table", "2", "--out", "FIFO", "--results", "{root}/results"],
         "is a FIFO", fifo),
    Case(1, "table --out symlink to /dev/null", ["table", "--table", "2", "--out", "LNK", "--results",
                                                 "{root}/results"], "a symlink to '/dev/null'", devnull_link),
    Case(1, "check --baseline FIFO", ["check", "--baseline", "FIFO", "--no-progress"], "is a FIFO", fifo),
    Case(1, "run --out FIFO", R + ["--out", "FIFO"], "is a FIFO", fifo, data=True),
    Case(1, "run --out NODE", R + ["--out", "NODE"], "is a character device", device, data=True),
    Case(1, "plot --out symlink to /dev/null", ["plot", "steps", str(RECORD), "--out", "LNK.png"],
         "a symlink to '/dev/null'", lambda tmp: devnull_link(tmp, "LNK.png")),
    Case(1, "calibrate --out NODE", ["calibrate", "--model", "resnet20-cifar10-public", "--out", "NODE"],
         "is a character device", device),
    Case(1, "sanity --out FIFO", ["sanity", "--model", "resnet20-cifar10-public", "--profile", "authors", "--n-ex",
                                  "4", "--out", "FIFO"], "is a FIFO", fifo, data=True),
    Case(1, "train --out NODE", ["train", "--dataset", "cifar10", "--arch", "resnet20", "--aug", "standard",
                                 "--epochs", "1", "--out", "NODE"], "is a character device", device),
    Case(1, "train --out holding a user's model.pt", ["train", "--dataset", "cifar10", "--arch", "resnet20", "--aug",
                                                     "standard", "--epochs", "1", "--out", "run"],
         "'run/model.pt' exists and is not a file of a `zeropur-bench train` run", users_file("run/model.pt")),
    # 2. a user's table2.md, or table2.csv beside it
    Case(2, "table over a user's table2.md", ["table", "--out", "d/table2.md", "--results", "{root}/results"],
         "'d/table2.md' exists and is not a table made by `zeropur-bench table`", users_file("d/table2.md")),
    Case(2, "table beside a user's table2.csv", ["table", "--out", "d/table2.md", "--results", "{root}/results"],
         "the CSV beside --out, 'd/table2.csv' exists and is not a table", users_file("d/table2.csv")),
    # 3. a user's fig.csv beside the figure (or a PNG another program made)
    Case(3, "plot images beside a user's fig.csv", ["plot", "images", str(RECORD), "--out", "d/fig.png"],
         "the CSV beside --out, 'd/fig.csv' exists and is not the CSV of a figure", users_file("d/fig.csv")),
    Case(3, "plot over another program's PNG", ["plot", "steps", str(RECORD), "--out", "d/fig.png"],
         "'d/fig.png' exists and is not a figure made by `zeropur-bench plot`", users_png("d/fig.png")),
    # 4. a full disk when the run starts: one line, no empty config.json (nor an empty partial folder)
    Case(4, "full disk at the run's start", R + ["--out", "out/r.json"], "no space left on the device", full_disk,
         env={"ZP_ENOSPC_DIR": "{tmp}/out", "PYTHONPATH": "{tmp}/site" + os.pathsep + os.environ.get("PYTHONPATH", "")},
         data=True),
    # 5-7, 12. data checked on load, before any work, naming the file
    Case(5, "labels all 99", R + ["--data-dir", "data", "--out", "r.json"],
         "data file 'data/cifar10_test.npz': label 99 is not a cifar10 class", npz(y=lambda y: np.full_like(y, 99))),
    Case(5, "labels all -1", R + ["--data-dir", "data", "--out", "r.json"], "label -1 is not a cifar10 class",
         npz(y=lambda y: np.full_like(y, -1))),
    Case(6, "2 labels for 16 images", R + ["--data-dir", "data", "--out", "r.json"], "2 labels for 16 images",
         npz(y=lambda y: y[:2])),
    Case(7, "images 16x32x32x1", R + ["--data-dir", "data", "--out", "r.json"],
         "x must be uint8 N×32×32×3 (RGB cifar10 images), got uint8 16×32×32×1", npz(x=lambda x: x[..., :1])),
    Case(7, "images 28x28", R + ["--data-dir", "data", "--out", "r.json"], "got uint8 16×28×28×3",
         npz(x=lambda x: np.ascontiguousarray(x[:, :28, :28]))),
    Case(12, "labels shaped (16, 1)", R + ["--data-dir", "data", "--out", "r.json"],
         "y must hold one label per image (shape N), got shape 16×1", npz(y=lambda y: y[:, None])),
    Case(12, "--merge-only into a new folder", R + ["--merge-only", "--out", "new/r.json"],
         "cannot assemble 'new/r.json': 2 of 2 batches are not finished", data=True),
    # 8. a damaged baseline: one line naming the field, exit 2 (exit 1 is a regression)
    Case(8, "baseline.alpha 'abc'", ["check", "--baseline", "b.json", "--no-progress"],
         "baseline 'b.json' is damaged: baseline.alpha must be a number in (0, 1), got 'abc'",
         baseline(_set("baseline/alpha", "abc"))),
    Case(8, "a floor 'high'", ["check", "--baseline", "b.json", "--no-progress"],
         "baseline.floors.zeropur-c.PGD-20 must be a number in [0, 1], got 'high'",
         baseline(_set("baseline/floors/zeropur-c/PGD-20", "high"))),
    Case(8, "floors as a list", ["check", "--baseline", "b.json", "--no-progress"],
         "baseline.floors must be an object", baseline(_set("baseline/floors", [0.5, 0.6]))),
    Case(8, "an empty per-example vector", ["check", "--baseline", "b.json", "--no-progress"],
         "variants.zeropur-c.examples.robust_correct.PGD-20 must be a list of 500 true/false values",
         baseline(_set("variants/zeropur-c/examples/robust_correct/PGD-20", []))),
    # 9-11. numbers: overflow, a 64-bit seed, a key given twice
    Case(9, "--eps 1e400", R + ["--eps", "1e400", "--out", "r.json"], "--eps must be a finite number, got '1e400'"),
    Case(9, "pgd:steps=1e400", R + ["--attack", "pgd:steps=1e400", "--out", "r.json"],
         "--attack pgd:steps=1e400: steps must be a finite number, got '1e400'"),
    Case(9, "--zp coarse_eps=1e400", R + ["--zp", "coarse_eps=1e400", "--out", "r.json"],
         "--zp: coarse_eps must be a finite number, got '1e400'"),
    Case(9, "--zp coarse_eps=nan", R + ["--zp", "coarse_eps=nan", "--out", "r.json"],
         "--zp: coarse_eps must be a finite number, got 'nan'"),
    Case(10, "--data-seed 99999999999999999999", R + ["--data-seed", "99999999999999999999", "--out", "r.json"],
         "data_seed (--data-seed) must be an integer in"),
    Case(11, "pgd:steps=2,steps=3", R + ["--attack", "pgd:steps=2,steps=3", "--out", "r.json"],
         "--attack pgd:steps=2,steps=3: steps is given twice"),
    Case(11, "--zp coarse_steps=2,coarse_steps=9", R + ["--zp", "coarse_steps=2,coarse_steps=9", "--out", "r.json"],
         "--zp: coarse_steps is given twice"),
    # 13-15. table on bad records
    Case(13, "table --results /no/such/dir", ["table", "--out", "t/table2.md", "--results", "/no/such/dir"],
         "results folder '/no/such/dir' does not exist"),
    Case(13, "table on a folder without records", ["table", "--out", "t/table2.md", "--results", "empty"],
         "no run records in 'empty'", lambda tmp: (tmp / "empty").mkdir(), code=0, new=TABLE_OUT),
    Case(14, "a summary 'high'", ["table", "--out", "t/table2.md", "--results", "results"],
         "results/r.json is damaged (field variants.zeropur-c-authors.summary.defended_clean_acc is 'high'",
         results_with(_set("variants/zeropur-c-authors/summary/defended_clean_acc", "high")), code=0, new=TABLE_OUT,
         absent="results/r.json"),
    Case(14, "a summary NaN", ["table", "--out", "t/table2.md", "--results", "results"],
         "field variants.zeropur-c-authors.summary.defended_clean_acc is nan",
         results_with(_set("variants/zeropur-c-authors/summary/defended_clean_acc", float("nan"))), code=0, new=TABLE_OUT,
         absent="results/r.json"),
    Case(15, "a record of schema v3", ["table", "--out", "t/table2.md", "--results", "results"],
         "results/r.json: field schema is 'zeropur-bench/record/v3'",
         results_with(_set("schema", "zeropur-bench/record/v3")), code=0, new=TABLE_OUT, absent="results/r.json"),
    # 16-17. a damaged or foreign registry, whichever command reads it
    Case(16, "list with a truncated registry", ["list"], "classifier registry '{tmp}/weights/registry.json' is damaged",
         registry(lambda t: t[:300]), env={"ZEROPUR_BENCH_WEIGHTS": "{tmp}/weights"}),
    Case(16, "run with a truncated registry", R + ["--out", "r.json"], "registry.json' is damaged",
         registry(lambda t: t[:300]), env={"ZEROPUR_BENCH_WEIGHTS": "{tmp}/weights"}),
    Case(17, "an entry with an unknown key", ["list"], "entry 1 ('resnet20-cifar100-vanilla') has unknown field(s) colour",
         registry(_unknown_entry_key), env={"ZEROPUR_BENCH_WEIGHTS": "{tmp}/weights"}),
    # 18. train's mistakes look like every other command's
    Case(18, "train --arch nosuch", ["train", "--dataset", "cifar10", "--arch", "nosuch", "--aug", "standard",
                                     "--epochs", "1", "--out", "run"], "argument --arch: invalid choice: 'nosuch'"),
    Case(18, "train --seed 99999999999999999999", ["train", "--dataset", "cifar10", "--arch", "resnet20", "--aug",
                                                  "standard", "--epochs", "1", "--out", "run", "--seed",
                                                  "99999999999999999999"], "--seed must be an integer in"),
]


def test_every_group_of_the_issue_is_covered() -> None:
    assert {c.group for c in CASES} == set(range(1, 19))


@pytest.mark.timeout(240)
@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_bad_input_round_three(case: Case, tmp_path: Path, data_dir: str) -> None:
    tmp = tmp_path / "work"
    tmp.mkdir()
    for make in case.setup:
        make(tmp)
    before = snapshot(tmp)
    fill = {"{tmp}": str(tmp), "{root}": str(ROOT)}

    def sub(text: str) -> str:
        for k, v in fill.items():
            text = text.replace(k, v)
        return text

    env = {k: sub(v) for k, v in case.env.items()}
    r = zb([sub(a) for a in case.args] + (["--data-dir", data_dir] if case.data else []), tmp, env, timeout=180)
    lines = r.stderr.strip().splitlines()
    assert "Traceback" not in r.stdout + r.stderr, r.stderr[-3000:]
    assert r.returncode == case.code, (r.returncode, r.stderr[-3000:])
    if case.code == 2:
        assert len(lines) == 1 and lines[0].startswith("error: "), r.stderr[-3000:]
        assert sub(case.needle) in lines[0], lines[0]
    else:  # one warning; the other lines say where the table went
        warns = [ln for ln in lines if ln.startswith("warning: ")]
        assert len(warns) == 1 and sub(case.needle) in warns[0], r.stderr
        assert not any(ln.startswith("error") for ln in lines), r.stderr
    after = snapshot(tmp)
    assert set(after) - set(before) == case.new, sorted(set(after) - set(before))  # nothing else new
    assert {k: v for k, v in after.items() if k in before} == before  # nothing changed, replaced, retyped, removed
    if case.absent:  # the record skipped, never a row of "–"
        assert case.absent not in (tmp / "t" / "table2.md").read_text()
    if case.group == 4:  # once the disk has room again, the same command runs
        r = zb([sub(a) for a in case.args] + ["--data-dir", data_dir], tmp, timeout=180)
        assert r.returncode == 0 and (tmp / "out" / "r.json").is_file(), r.stderr[-3000:]


# -- the pieces under the matrix, on their own ------------------------------------------------------------------------
def test_number_parsing_keeps_every_value_it_accepted() -> None:
    """The parsers refuse more, but every value they took before is the same number now (no key, no record
    changes): decimals as float() reads them (== float(Fraction)), fractions as fractions, integers as int."""
    from fractions import Fraction

    from zeropur_bench.errors import UserError
    from zeropur_bench.parsing import parse_kv, parse_number, parse_value

    for t in ("8/255", "4/255", "0.031", "1e-3", "7.1e-5", "1e-4", "0.5", "1.2", "2", "-0.25", "1e-400"):
        assert parse_number(t) == float(Fraction(t))
    assert parse_value("20") == 20 and isinstance(parse_value("20"), int)
    assert parse_value("0.1|1|10") == [0.1, 1, 10] and parse_value("rand") == "rand" and parse_value("NONE") is None
    assert parse_kv("coarse-steps=5,fine_steps=20", "--zp") == {"coarse_steps": 5, "fine_steps": 20}
    for bad in ("1e400", "-1e400", "nan", "inf", "-Infinity", "1" + "0" * 400 + "/3"):
        with pytest.raises(UserError, match="finite number"):
            parse_number(bad)
    with pytest.raises(UserError, match="64 bits"):
        parse_value(str(2 ** 63))
    with pytest.raises(UserError, match="given twice"):
        parse_kv("coarse-steps=2,coarse_steps=9", "--zp")  # the same key, spelled two ways


def test_exclusive_write_is_whole_and_first(tmp_path: Path) -> None:
    """The run store's config.json: created whole or not at all; a second writer finds the first's."""
    from zeropur_bench.fsio import write_json_atomic

    target = tmp_path / "p" / "config.json"
    write_json_atomic(target, {"first": 1}, exclusive=True)
    with pytest.raises(FileExistsError):
        write_json_atomic(target, {"second": 2}, exclusive=True)
    assert json.loads(target.read_text()) == {"first": 1} and os.listdir(target.parent) == ["config.json"]


@pytest.mark.parametrize("fmt, name", [("markdown", "t.md"), ("csv", "t.csv"), ("latex", "t.tex")])
def test_marks_tell_own_outputs_from_a_users(tmp_path: Path, fmt: str, name: str) -> None:
    from zeropur_bench.marks import add_mark, is_marked, strip_mark

    text = "| a | b |\n|---|---|\n| 1 | 2 |\n"
    (tmp_path / name).write_text(add_mark(text, "table", fmt))
    assert is_marked(tmp_path / name, "table") and not is_marked(tmp_path / name, "plot")
    assert strip_mark((tmp_path / name).read_text()) == text
    (tmp_path / name).write_text(text)  # the same table without the mark: a user's copy
    assert not is_marked(tmp_path / name, "table")
