"""The built-in defenses in the registry (:mod:`zeropur_bench.defenses`): ZeroPur behind its own factory (its
profiles, its calibration and the coarse-stage memo its variants share), the blur alone, and ``none``.

ZeroPur's records predate the registry: a variant's record keeps ZeroPur's first fields (``profile``, ``stages``,
``blur``, ``overrides``, ``calibration``) beside ``options``, and its resolved settings
(:meth:`ZeroPur.config`) keep their format, so comparison keys do not change.
"""
from __future__ import annotations

from typing import Any

from torch import nn

from ..defenses import BuildContext, VariantOptions, register_defense
from ..errors import UserError
from ..params import Param
from ..profile_names import DEFAULT_PROFILE
from .blur import make_blur
from .blur_only import BlurOnly, NoDefense
from .calibration import DEFAULT_RULE, load_calibration, weights_sha256
from .coarse_cache import CoarseCache
from .profiles import OPTIONS, PROFILES, check_request
from .zeropur import ZeroPur

# ZeroPur's own options, beside those of its profiles table (the run owns dtype, channels_last and the seed)
_MAIN = ("profile", "stages", "blur", "calibration")
_DEFAULTS = {"profile": DEFAULT_PROFILE, "stages": "cf", "blur": "median:3"}
_SPECS: dict[str, Param | None] = {
    "profile": Param("word", choices=tuple(PROFILES)), "stages": Param("word", choices=("c", "cf")),
    "blur": None, "calibration": None, "layers": None, "grad_mode": None,
    **{k: None for k in OPTIONS if k not in ("dtype", "channels_last")},
}


def _split(options: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """(ZeroPur's main options with defaults, the profile overrides)."""
    main = {**_DEFAULTS, **{k: options[k] for k in _MAIN if k in options}}
    return main, {k: v for k, v in options.items() if k not in _MAIN}


def _validate(options: dict[str, Any]) -> None:
    """ZeroPur's own checks (same messages as its constructor), before anything is loaded."""
    main, overrides = _split(options)
    check_request(main["profile"], main["stages"], {k: v for k, v in overrides.items()
                                                     if k not in ("layers", "grad_mode")})
    make_blur(main["blur"])
    if main.get("calibration") is not None and main["profile"] != "calibrated":
        raise UserError("--calibration is for --profile calibrated")


def _calibration(classifier: nn.Module, blur: str, ctx: BuildContext) -> Any:
    """For profile 'calibrated' without a given calibration: None where the classifier's shipped one exists (the
    defense finds it by the weights' sha256), else one fitted now on clean training images, said through
    ``ctx.echo`` and shared by the run's variants with the same blur; never a silent fall back to 1e-4."""
    from .. import registry
    from .calibrate import calibrate

    spec = make_blur(blur).spec
    sha = weights_sha256(classifier)
    if registry.calibration_for(sha, spec, DEFAULT_RULE) is not None:
        return None
    memo = ctx.shared.setdefault("zeropur.calibrations", {})
    if (sha, spec) not in memo:
        ctx.echo(f"profile calibrated: this classifier has no shipped calibration for blur {spec}; calibrating now "
                 f"(rule {DEFAULT_RULE}, clean {ctx.dataset} training images; save one with `zeropur-bench "
                 "calibrate` and pass --calibration to skip this)")
        memo[(sha, spec)] = calibrate(classifier, ctx.dataset, blur=blur, data_dir=ctx.data_dir, echo=ctx.echo).to_dict()
    return memo[(sha, spec)]


def zeropur_variants(options: dict[str, Any], run: VariantOptions) -> list[tuple[dict[str, Any], str | None]]:
    """``--defense zeropur[:k=v]`` with the run-wide ``--blur``, ``--profile``, ``--stages``, ``--zp`` and
    ``--calibration``: one variant per blur, profile and stages (C and C-F by default), in display order. C under
    'calibrated' is C under 'authors' (the calibration only changes the fine stage), so with both profiles it is
    made once, as the authors'. An option given with the name fixes that setting for every variant."""
    blurs = [options["blur"]] if "blur" in options else list(run.blurs) or [_DEFAULTS["blur"]]
    profiles = [options["profile"]] if "profile" in options else list(run.profiles) or [_DEFAULTS["profile"]]
    stages = [options["stages"]] if "stages" in options else list(run.stages) or ["c", "cf"]
    for b in blurs:  # blur specs fail here, before any work
        make_blur(b)
    _, own = _split(options)
    overrides = {**run.overrides, **own}
    given = options.get("calibration")
    if run.calibration_file is not None:
        given = load_calibration(run.calibration_file).to_dict()
    many_b, many_p = len(blurs) > 1, len(profiles) > 1
    out = []
    for b in blurs:
        for p in profiles:
            for st in stages:
                if st == "c" and p == "calibrated" and "authors" in profiles:
                    continue
                label = f"zeropur-{st}" + (f"-{p}" if many_p else "") + (f"-{b}" if many_b else "")
                opts = {"profile": p, "stages": st, "blur": b, **overrides}
                if p == "calibrated" and given is not None:
                    opts["calibration"] = given
                out.append((opts, label))
    return out


def blur_variants(options: dict[str, Any], run: VariantOptions) -> list[tuple[dict[str, Any], str | None]]:
    """The blur alone: one variant per ``--blur`` (named ``blur``, or ``blur-<spec>`` beside others)."""
    blurs = [options["blur"]] if "blur" in options else list(run.blurs) or ["median:3"]
    for b in blurs:
        make_blur(b)
    return [({"blur": b}, "blur" + (f"-{b}" if len(blurs) > 1 else "")) for b in blurs]


def build_zeropur(classifier: nn.Module, ctx: BuildContext, options: dict[str, Any]) -> ZeroPur:
    """ZeroPur from registry options: profile, stages, blur, calibration and any profile override."""
    main, overrides = _split(options)
    calibration = main.get("calibration")
    if main["profile"] == "calibrated" and calibration is None:
        calibration = _calibration(classifier, main["blur"], ctx)
    # Transfer: every variant purifies the same inputs, so variants with the same coarse stage (C and C-F, authors
    # and calibrated) share it exactly
    cache = ctx.shared.setdefault("zeropur.coarse_cache", CoarseCache()) if ctx.setting == "transfer" else None
    return ZeroPur(classifier, profile=main["profile"], stages=main["stages"], blur=main["blur"], seed=ctx.seed,
                   dtype=ctx.dtype, channels_last=ctx.channels_last, calibration=calibration, coarse_cache=cache,
                   **overrides)


def zeropur_record_fields(options: dict[str, Any]) -> dict[str, Any]:
    """The fields ZeroPur's records have always had (beside ``options``)."""
    main, overrides = _split(options)
    return {"profile": main["profile"], "stages": main["stages"], "blur": main["blur"], "overrides": overrides,
            "calibration": main.get("calibration")}


def zeropur_from_record_fields(fields: dict[str, Any]) -> dict[str, Any]:
    """Options from ZeroPur's first fields (a record or baseline made before the registry)."""
    out = {k: fields[k] for k in ("profile", "stages", "blur") if fields.get(k) is not None}
    out.update(fields.get("overrides") or {})
    if fields.get("calibration") is not None:
        out["calibration"] = fields["calibration"]
    return out


register_defense("zeropur", factory=build_zeropur, option_specs=_SPECS, defaults=_DEFAULTS, open_options=True,
                 summary="ZeroPur (arXiv 2406.03143): coarse shifting + fine alignment on the classifier's features",
                 label=lambda o: f"zeropur-{o.get('stages', 'cf')}", record_fields=zeropur_record_fields,
                 from_record_fields=zeropur_from_record_fields, validate=_validate, expand=zeropur_variants)
register_defense("blur", summary="the blur alone, classifier(g(x)): the paper's Table 1 baseline", label=lambda o: "blur", record_fields=lambda o: {"blur": o.get("blur", "median:3")},
                 from_record_fields=lambda f: {"blur": f["blur"]} if f.get("blur") is not None else {},
                 expand=blur_variants, order=1)(BlurOnly)
register_defense("none", summary="the bare classifier (purify is the identity)", label=lambda o: "none", record_fields=lambda o: {}, from_record_fields=lambda f: {},
                 order=0)(NoDefense)
