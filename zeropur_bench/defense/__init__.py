"""The built-in defenses (ZeroPur, the blur alone, none) as purifiers, registered by name (:mod:`.factory`); the
training-free purifiers of the literature (:mod:`.purifiers`: bit depth, median, JPEG, TVM, random resize-and-pad,
Mixup Inference, anti-adversary); blur operators, layer hooks, ZeroPur's calibration. ``registered(name)`` is the registry's entry, built-ins included."""
from .blur import BLURS, make_blur
from .blur_only import BlurOnly, NoDefense
from .calibrate import calibrate, feature_scale
from .calibration import Calibration, load_calibration
from .layers import FeatureTap, LayerSpec, detect_layers
from .zeropur import GRAD_MODES, PROFILES, CoarseCache, ZeroPur, load_defended_model
from . import factory  # noqa: F401,E402  (registers the built-in defenses)
from . import purifiers  # noqa: F401,E402  (registers the training-free purifiers of issue 34)
from ..defenses import DEFENSES, DefenseEntry, get_defense, load_plugin as _load_plugin_file


def registered(name: str) -> DefenseEntry:
    """The registry's entry ``name`` (built-ins and installed plugins loaded); a :class:`UserError` if unknown."""
    return get_defense(name)


def load_plugin(path: str) -> list[str]:
    """Import a plugin file that registers defenses (the built-in ones are registered first); the names it adds."""
    return _load_plugin_file(path)


def all_defenses() -> dict[str, DefenseEntry]:
    """Every registered defense (built-ins, installed plugins, plugin files loaded so far), by name."""
    get_defense("none")  # loads the installed plugins
    return dict(DEFENSES)


__all__ = ["ZeroPur", "PROFILES", "GRAD_MODES", "make_blur", "BLURS", "detect_layers", "FeatureTap", "LayerSpec",
           "load_defended_model", "Calibration", "calibrate", "feature_scale", "load_calibration", "CoarseCache",
           "BlurOnly", "NoDefense", "registered", "all_defenses", "load_plugin"]
