"""ZeroPur purification defense: blur operators, layer hooks, the purifier module, its calibration."""
from .blur import BLURS, make_blur
from .calibrate import calibrate, feature_scale
from .calibration import Calibration, load_calibration
from .layers import FeatureTap, LayerSpec, detect_layers
from .blur_only import BlurOnly, NoDefense
from .zeropur import GRAD_MODES, PROFILES, CoarseCache, ZeroPur, load_defended_model

__all__ = ["ZeroPur", "PROFILES", "GRAD_MODES", "make_blur", "BLURS", "detect_layers", "FeatureTap", "LayerSpec",
           "load_defended_model", "Calibration", "calibrate", "feature_scale", "load_calibration", "CoarseCache", "BlurOnly",
           "NoDefense"]
