"""The paper's Tables 2–6: what each table holds (:data:`TABLES`) and its reference rows (``leaderboards/``).

Which record fills which table (the paper's settings, Sec. 4 and App. A.2):

| table | dataset | threat, eps | setting | metrics |
|---|---|---|---|---|
| 2 | cifar10 | linf 8/255 | transfer | PGD-20 (key ``PGD-20``), AutoAttack (key ``AutoAttack-rand``); + adaptive BPDA+EOT |
| 3 | cifar10 | l2 0.5 | transfer | as Table 2, without the adaptive column |
| 4 | cifar100 | linf 8/255 | transfer | as Table 3 |
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


@dataclass(frozen=True)
class TableSpec:
    number: int
    title: str
    dataset: str | None  # None: any dataset (Table 6)
    threat: str
    eps: float
    setting: str
    metrics: tuple[Metric, ...]
    default_dataset: str
    adaptive_column: bool = False  # Table 2: BPDA+EOT any-step from a matching adaptive record

    @property
    def attack_args(self) -> list[str]:
        return [m.attack_arg for m in self.metrics if m.attack_arg]


TABLES: dict[int, TableSpec] = {
    2: TableSpec(2, "Robust accuracy (%) against PGD-20 and AutoAttack, ℓ∞ (ε = 8/255), CIFAR-10",
                 "cifar10", "linf", 8 / 255, "transfer", (PGD20, AUTOATTACK), "cifar10", adaptive_column=True),
    3: TableSpec(3, "Robust accuracy (%) against PGD-20 and AutoAttack, ℓ2 (ε = 0.5), CIFAR-10",
                 "cifar10", "l2", 0.5, "transfer", (PGD20, AUTOATTACK), "cifar10"),
    4: TableSpec(4, "Robust accuracy (%) against PGD-20 and AutoAttack, ℓ∞ (ε = 8/255), CIFAR-100",
                 "cifar100", "linf", 8 / 255, "transfer", (PGD20, AUTOATTACK), "cifar100"),
    5: TableSpec(5, "Natural and robust accuracy (%) against AutoAttack, ℓ∞ (ε = 4/255), ImageNet",
                 "imagenet", "linf", 4 / 255, "transfer", (NATURAL, AUTOATTACK), "imagenet"),
    6: TableSpec(6, "Robust accuracy (%) against BPDA+EOT (adaptive), ℓ∞ (ε = 8/255)",
                 None, "linf", 8 / 255, "adaptive", (BPDA,), "cifar10"),
}


def check_table(n: int) -> TableSpec:
    if n not in TABLES:
        raise UserError(f"table {n} is not one of the paper's tables this tool renders; choose 2, 3, 4, 5 or 6")
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
    path = path / f"table{table}.csv"
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
