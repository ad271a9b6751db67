"""The paper's Tables 2–6: what each table holds (:data:`TABLES`) and its reference rows (``leaderboards/``).

Which record fills which table (the paper's settings, Sec. 4 and App. A.2):

| table | dataset | threat, eps | setting | metrics |
|---|---|---|---|---|
| 2 | cifar10 | linf 8/255 | transfer | PGD-20 (key ``PGD-20``), AutoAttack (key ``AutoAttack-rand``); + adaptive BPDA+EOT |
| 3 | cifar10 | l2 0.5 | transfer | as Table 2 (its adaptive column from an L2 adaptive record) |
| 4 | cifar100 | linf 8/255 | transfer | as Table 2, without the adaptive column |
| 5 | imagenet | linf 4/255 | transfer | Natural (defended clean accuracy), AutoAttack (key ``AutoAttack-rand``) |
| 6 | any | linf 8/255 | adaptive | BPDA+EOT = family ``bpda-eot``, any settings (one row per such attack) |

A column carries a paper's or a library's name only when the attack ran with their settings: the PGD-20 column
takes the record's attack whose key is exactly ``PGD-20`` (App. A.2's settings), the AutoAttack column the one whose
key is exactly ``AutoAttack-rand`` (AutoAttack's own settings, the 'rand' version the paper reports).
"""
from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from ..errors import UserError

NOT_REPORTED = "-"  # the paper's own mark for a number its source did not report


@dataclass(frozen=True)
class Metric:
    """A paper metric: its leaderboard column, its header, and what measures it.

    ``kind``: "attack" (the record's attack with key ``key``), "natural" (defended clean accuracy) or "bpda"
    (Table 6: any attack of family ``bpda-eot``). ``family``: attack families of this kind, so that a near miss
    (e.g. ``pgd[steps=10]``) is named in the missing list."""

    name: str
    ref_col: str
    kind: str
    key: str | None = None
    family: tuple[str, ...] = ()
    attack_arg: str = ""  # what to pass to ``--attack`` to measure it
    settings: str = ""  # whose settings the column name stands for


PGD20 = Metric("PGD-20", "pgd20", "attack", "PGD-20", ("pgd",), "pgd", "App. A.2's PGD-20")
AUTOATTACK = Metric("AutoAttack", "autoattack", "attack", "AutoAttack-rand", ("autoattack",),
                    "autoattack:version=rand", "AutoAttack 'rand' with AutoAttack's own settings")
NATURAL = Metric("Natural", "natural", "natural")
BPDA = Metric("BPDA+EOT", "bpda_eot", "bpda", None, ("bpda-eot",), "bpda-eot")


# The fixed columns of a flat layout, by what fills them: the paper row's method / architecture, a ✓/✗ mark from
# its leaderboard column, its leaderboard text, or the purification model a method requires.
COLUMNS = {"Method": "method", "Arch": "arch", "Training Required": "mark:training_required",
           "Purification": "text:purification", "Model Required": "model_required"}


@dataclass(frozen=True)
class TableSpec:
    """One of the paper's tables: what fills it, how its rows are matched and laid out, what it adds.

    ``method``: the registered defense whose paper rows the table reports (a variant of another defense has no
    paper row and goes to "Measured purifiers"). ``columns``: the fixed columns of a flat layout (:data:`COLUMNS`);
    ``grouped``: the architectures side by side instead, rows paired by their position (Table 2). ``row_per_family``:
    one measured row per attack of this family (Table 6: per BPDA+EOT attack); ``drop_superseded``: leave out a row
    another row measured on a superset of its examples. ``match_recipe``: a measured row stands under the paper row
    of its recipe and stages (else under the table's one row of the method: Table 5). ``suite``: the worst case over
    the adaptive suite and the attack cost (Table 6); ``paired``: paired McNemar comparisons; ``notes``: legend
    lines of its own."""

    number: int
    title: str
    dataset: str | None  # None: any dataset (Table 6)
    threat: str
    eps: float
    setting: str
    metrics: tuple[Metric, ...]
    default_dataset: str
    # Tables 2 and 3: BPDA+EOT any-step from an adaptive record of the same classifier, defense, threat and eps (the
    # paper's tables have no such column; issue 30 asks for it beside Table 3's transfer cells as well)
    adaptive_column: bool = False
    method: str = "zeropur"
    columns: tuple[str, ...] = ("Method", "Training Required", "Arch")
    grouped: bool = False
    row_per_family: str | None = None
    drop_superseded: bool = False
    match_recipe: bool = True
    suite: bool = False
    paired: bool = True
    notes: tuple[str, ...] = ()

    @property
    def attack_args(self) -> list[str]:
        return [m.attack_arg for m in self.metrics if m.attack_arg]

    @property
    def leaderboard(self) -> str:
        """The file of its paper rows in ``leaderboards/``."""
        return f"table{self.number}.csv"


TABLES: dict[int, TableSpec] = {
    2: TableSpec(2, "Robust accuracy (%) against PGD-20 and AutoAttack, ℓ∞ (ε = 8/255), CIFAR-10",
                 "cifar10", "linf", 8 / 255, "transfer", (PGD20, AUTOATTACK), "cifar10", adaptive_column=True,
                 grouped=True),
    3: TableSpec(3, "Robust accuracy (%) against PGD-20 and AutoAttack, ℓ2 (ε = 0.5), CIFAR-10",
                 "cifar10", "l2", 0.5, "transfer", (PGD20, AUTOATTACK), "cifar10", adaptive_column=True),
    4: TableSpec(4, "Robust accuracy (%) against PGD-20 and AutoAttack, ℓ∞ (ε = 8/255), CIFAR-100",
                 "cifar100", "linf", 8 / 255, "transfer", (PGD20, AUTOATTACK), "cifar100",
                 notes=("CIFAR-100 rows 20+ of the shared test split are a fixed class-balanced sample, not the "
                        "original order.",)),
    5: TableSpec(5, "Natural and robust accuracy (%) against AutoAttack, ℓ∞ (ε = 4/255), ImageNet",
                 "imagenet", "linf", 4 / 255, "transfer", (NATURAL, AUTOATTACK), "imagenet",
                 columns=("Method", "Model Required", "Training Required"), match_recipe=False),
    6: TableSpec(6, "Robust accuracy (%) against BPDA+EOT (adaptive), ℓ∞ (ε = 8/255)",
                 None, "linf", 8 / 255, "adaptive", (BPDA,), "cifar10", columns=("Method", "Purification"),
                 row_per_family="bpda-eot", drop_superseded=True, suite=True, paired=False),
}


def check_table(n: int) -> TableSpec:
    if n not in TABLES:
        raise UserError(f"table {n} is not one of the paper's tables this tool renders; choose "
                        f"{', '.join(map(str, TABLES))}")
    return TABLES[n]


def infer_table_number(path: str | os.PathLike) -> int:
    """The table number in a file name: ``results/table4.md`` → 4."""
    m = re.search(r"table[\s_-]*(\d+)", Path(path).name, flags=re.IGNORECASE)
    if not m:
        raise UserError(f"cannot infer the table number from '{path}'; name the file tableN.md (N = 2..6) "
                        "or pass --table N")
    n = int(m.group(1))
    check_table(n)
    return n


def default_leaderboards_dir() -> Path:
    """``$ZEROPUR_BENCH_LEADERBOARDS``, else the repository's ``leaderboards/``."""
    env = os.environ.get("ZEROPUR_BENCH_LEADERBOARDS")
    return Path(env) if env else Path(__file__).resolve().parents[2] / "leaderboards"


def load_leaderboard(table: int, leaderboards_dir: str | os.PathLike | None = None) -> pd.DataFrame:
    """The paper's rows of Table ``table``, as strings (the paper's formatting, "59.00", kept exactly)."""
    path = Path(leaderboards_dir) if leaderboards_dir is not None else default_leaderboards_dir()
    path = path / check_table(table).leaderboard
    if not path.is_file():
        raise UserError(f"reference rows not found: '{path}'; pass the leaderboards/ folder of the zeropur-bench "
                        "repository (or set ZEROPUR_BENCH_LEADERBOARDS)")
    return pd.read_csv(path, dtype=str, keep_default_na=False)


def norm_key(s: Any) -> str:
    return re.sub(r"[^a-z0-9]", "", str(s).lower())


def arch_key(name: str) -> str:
    """A normalised architecture name: "WideResNet-28-10" and "WRN-28-10" → "wrn2810"."""
    key = norm_key(name).replace("wideresnet", "wrn")
    return {"standardr50": "resnet50"}.get(key, key)  # RobustBench's 'Standard_R50' is the paper's ResNet-50


@dataclass(frozen=True)
class PaperRow:
    """One row of the paper's table. ZeroPur rows carry ``recipe`` and ``stages`` ("" where the paper does not
    say); ``position`` is its place in the table (Table 2: the row index within its architecture group)."""

    method: str
    arch: str
    recipe: str
    stages: str
    blur: str
    values: dict[str, str]  # leaderboard metric column -> number as printed ("" = not reported)
    group: int  # architecture group, in the paper's order (Table 2: 0 = ResNet-18, 1 = WideResNet-28-10)
    position: int
    zeropur: bool
    raw: dict[str, str]

    @property
    def arch_key(self) -> str:
        return arch_key(self.arch)

    def number(self, m: Metric) -> float | None:
        try:
            return float(self.values.get(m.ref_col, ""))
        except ValueError:
            return None

    def printed(self, m: Metric) -> str:
        return self.values.get(m.ref_col, "") or NOT_REPORTED


def paper_rows(ref: pd.DataFrame) -> list[PaperRow]:
    """Every row of the leaderboard, in the paper's order, with its architecture group and position."""
    groups: list[str] = []
    seen: dict[str, int] = {}
    out = []
    for _, r in ref.iterrows():
        arch = r.get("architecture", "")
        if arch not in groups:
            groups.append(arch)
        pos = seen.get(arch, 0)
        seen[arch] = pos + 1
        values = {c: r[c] for c in ("pgd20", "autoattack", "natural", "bpda_eot") if c in r.index}
        out.append(PaperRow(method=r["method"], arch=arch, recipe=r.get("classifier_recipe", ""),
                            stages=r.get("stages", ""), blur=r.get("blur", ""), values=values,
                            group=groups.index(arch), position=pos, zeropur=r.get("citation") == "this paper",
                            raw=dict(r)))
    return out
