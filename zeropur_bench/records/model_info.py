"""The RobustBench ``model_info`` view of a record: derived from the record's measured fields, never measured itself.

RobustBench's semantics (``robustbench/model_info/<dataset>/<threat>/<Name>.json``, read by its
``generate_leaderboard``, ``get_leaderboard_latex`` and ``get_leaderboard_bibtex``):

* ``clean_acc``: the DEFENDED model's clean accuracy.
* ``autoattack_acc``: only where AutoAttack with its own settings (a column named ``AutoAttack-<version>``) ran
  adaptively against the defended model on every image it classified right; not in a cascade where it saw only
  the survivors of earlier attacks.
* ``external``: RobustBench's "best known" robust accuracy and its ranking key: here the per-example worst case over
  every adaptive attack the record ran. Absent otherwise.
* Ranked numbers only for an adaptive evaluation on test images. A transfer evaluation (attacks crafted on the bare
  classifier) or one on training images has no ``autoattack_acc`` / ``external``, ``unreliable: true`` and a
  footnote saying why.
* Keys are absent rather than null; text fields without a value are ``"N/A"``; accuracies are percent strings with
  two decimals; ``architecture`` is spelled RobustBench's way ("ResNet-20"); ``id`` names the defended model
  (classifier, defense settings, dataset, threat, eps) and is the file name of an export.
"""
from __future__ import annotations

import re
from typing import Any

from ..keys import digest
from ..profile_names import SAME_C_PROFILES
from .view import DISPLAY_NAMES

NA = "N/A"
ZEROPUR_LINK = "https://arxiv.org/abs/2406.03143"
# the paper of a registered defense, by its registry name (RobustBench's ``link``; "N/A" for the others)
LINKS = {"zeropur": ZEROPUR_LINK}

# What RobustBench's readers rank by, in their order of preference (robustbench.utils.ACC_FIELDS).
RANKED_FIELDS = ("external", "autoattack_acc")
# Resolved ZeroPur settings that do not change what the defended model computes (numerics and gradients aside).
_IGNORED = ("dtype", "channels_last", "seed", "grad_mode", "surrogate", "calibration")
# ZeroPur-C runs no fine stage: under 'authors' and 'calibrated' (which differ only there) it is one defense.
_FINE_ONLY = ("profile", "ila_weight", "ila_reduce", "ila_norm", "lpips_weight")
_SAME_C = SAME_C_PROFILES


def robustbench_architecture(arch: str) -> str:
    """``resnet20`` → "ResNet-20", ``preact-resnet18`` → "PreActResNet-18", ``wrn-28-10`` → "WideResNet-28-10";
    anything else unchanged."""
    low = str(arch).lower()  # registry names start with the architecture: "resnet20-cifar10-public"
    m = re.match(r"(preact-?)?resnet-?(\d+)(?![\d])", low)
    if m:
        return f"{'PreActResNet' if m.group(1) else 'ResNet'}-{m.group(2)}"
    m = re.match(r"(?:wrn|wideresnet)-?(\d+)-(\d+)(?![\d])", low)
    if m:
        return f"WideResNet-{m.group(1)}-{m.group(2)}"
    return str(arch)


def _pct(acc: float) -> str:
    return f"{100 * float(acc):.2f}"


def _variant(record: dict, variant: str | None) -> tuple[str, dict]:
    key = variant or record["config"]["primary_variant"]
    return key, record["variants"][key]


def _classifier(record: dict) -> str:
    """The classifier's name: its registry name where the checkpoint is a registered one."""
    prov = (record.get("provenance") or {}).get("model") or {}
    return str(prov.get("registered_as") or record["config"]["model"])


def _arch(record: dict) -> str:
    prov = (record.get("provenance") or {}).get("model") or {}
    return str(prov.get("arch") or record["config"].get("arch") or record["config"]["model"])


def _defense_identity(defense: dict) -> dict:
    """The settings that make two variants one defended model (as ``reports.match.same_defense`` compares them)."""
    resolved = dict(defense.get("resolved") or {})
    if not resolved:
        resolved = {k: defense.get(k) for k in ("name", "profile", "stages", "blur", "overrides")}
    out = {k: v for k, v in resolved.items() if k not in _IGNORED}
    # C runs no fine stage: under 'calibrated' it is C under 'authors' (a defense with stages is ZeroPur-like)
    if defense.get("stages") == "c" and defense.get("profile") in _SAME_C:
        out = {k: v for k, v in out.items() if k not in _FINE_ONLY}
    return out


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9.-]+", "-", str(text)).strip("-")


def _defense_words(defense: dict) -> tuple[str, str]:
    """(name of the defense, file-name prefix): "ZeroPur-C-F (calibrated (clean-guard), blur gaussian:1.2)",
    "ZeroPur_CF_calibrated"."""
    name = defense.get("name") or "zeropur"
    if name == "none":
        return "No defense", "NoDefense"
    if name == "blur":
        return f"Blur only ({defense.get('blur')})", "BlurOnly"
    stages, profile = defense.get("stages"), defense.get("profile")
    if stages is None:  # a defense without stages (a plugin's purifier): its variant's name
        key = str(defense.get("key") or name)
        return key, _slug(key)
    same_c = stages == "c" and profile in _SAME_C
    rule = (defense.get("calibration") or {}).get("rule") if profile == "calibrated" else None
    words = ([] if same_c else [f"{profile} ({rule})" if rule else str(profile)]) + [f"blur {defense.get('blur')}"]
    words += [f"{k}={v}" for k, v in sorted((defense.get("overrides") or {}).items())]
    shown = DISPLAY_NAMES.get(name, name)
    label = f"{shown}-C" if stages == "c" else f"{shown}-C-F"
    prefix = f"{shown}_C" if stages == "c" else f"{shown}_CF"
    return f"{label} ({', '.join(words)})", prefix if same_c else f"{prefix}_{profile}"


def defended_model_id(record: dict, variant: str | None = None) -> str:
    """One id per defended model: records of the same classifier and defense settings on the same dataset,
    split, threat and eps share it (whatever attacks or images they ran)."""
    c = record["config"]
    key, v = _variant(record, variant)
    d = v["defense"]
    model = ((record.get("keys") or {}).get("comparison") or {}).get("model") or {}
    identity = {"dataset": c["dataset"], "split": c.get("split", "test"), "threat": c["threat"],
                "eps": float(c["eps"]), "classifier": model.get("checkpoint_sha256") or model or c["model"],
                "defense": _defense_identity(d)}
    if d.get("deterministic") is False:  # a randomised defense predicts through its estimator
        identity["estimator"] = [c.get("estimator", "one-shot"), c.get("estimator_n", 1)]
    return f"{_defense_words(d)[1]}_{_slug(_classifier(record))}_{digest(identity, 8)}"


def _autoattack_keys(record: dict, v: dict) -> tuple[list[str], list[str]]:
    """(AutoAttack columns with AutoAttack's own settings that attacked every image the defended model classified
    right, those that ran only on a cascade's survivors)."""
    c = record["config"]
    if c["setting"] != "adaptive":
        return [], []
    ex = v["examples"]
    full, partial = [], []
    for a in c["attacks"]:
        if a.get("family", a["name"]) != "autoattack" or not str(a["key"]).startswith("AutoAttack-"):
            continue
        attacked = (ex.get("attacked") or {}).get(a["key"])
        if attacked is None or all(t or not ok for t, ok in zip(attacked, ex["defended_clean_correct"])):
            full.append(a["key"])
        else:
            partial.append(a["key"])
    return full, partial


def _images(record: dict, n: int) -> str:
    c = record["config"]
    which = f"the first {n}" if c.get("data_seed") is None else f"{n} (data seed {c['data_seed']})"
    return f"{which} {c['dataset']} {c.get('split', 'test')} images"


def model_info_block(record: dict, variant: str | None = None) -> dict[str, Any]:
    """The ``model_info`` entry of one defense variant of a record (default: its primary variant)."""
    c = record["config"]
    key, v = _variant(record, variant)
    d, s = v["defense"], v["summary"]
    n = int(s["n"])
    ranked = c["setting"] == "adaptive" and c.get("split", "test") == "test"
    defense_name = _defense_words(d)[0]
    info: dict[str, Any] = {
        "link": LINKS.get(d.get("name") or "zeropur", NA),
        "name": f"{defense_name} on {_classifier(record)}",
        "authors": NA,
        "additional_data": False,
    }
    passes = d.get("forward_passes_per_prediction")
    if isinstance(passes, (int, float)):
        info["number_forward_passes"] = round(passes)
    info.update(dataset=c["dataset"], venue=NA, architecture=robustbench_architecture(_arch(record)),
                eps=str(c.get("eps_str") or c["eps"]), clean_acc=_pct(s["defended_clean_acc"]))
    attacks = [a["key"] for a in c["attacks"]]
    cascade = ", run as a cascade (each attack on the survivors of the ones before)" if c.get("cascade") else ""
    if ranked:
        full, partial = _autoattack_keys(record, v)
        if full:
            info["autoattack_acc"] = _pct(min(s["robust_acc"][a] for a in full))
        info["external"] = _pct(s["worst_case_acc"])
        note = (f"Best known = per-example worst case over {len(attacks)} adaptive attack(s) ({', '.join(attacks)})"
                f"{cascade}, on {_images(record, n)}, not RobustBench's full test set.")
        if partial:
            note += f" {', '.join(partial)} ran only on the survivors of earlier attacks, so no AutoAttack accuracy of its own is given."
        randomized = d.get("deterministic") is False
        if randomized:
            note += f" Randomised defense, judged with the {c.get('estimator', 'one-shot')} estimator."
        info["footnote"] = note
        info["unreliable"] = randomized
    else:
        if c["setting"] == "transfer":
            note = (f"Transfer evaluation only: {', '.join(attacks)} crafted on the bare classifier, then purified; "
                    f"{_pct(s['worst_case_acc'])}% of {_images(record, n)} survived all of them. Not an adaptive "
                    "evaluation of the defended model and not a robustness claim: no ranked number.")
        else:
            note = f"Adaptive evaluation on {_images(record, n)}, not test images: no ranked number."
        info["footnote"] = note
        info["unreliable"] = True
    info["id"] = defended_model_id(record, key)
    return info


def ranked_value(info: dict) -> float | None:
    """The number RobustBench's readers rank an entry by (``external``, else ``autoattack_acc``), in percent."""
    for k in RANKED_FIELDS:
        if k in info:
            return float(info[k])
    return None
