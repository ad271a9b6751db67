"""ZeroPur purification defense: blur operators, layer hooks, the purifier module."""
from .blur import BLURS, make_blur
from .layers import FeatureTap, LayerSpec, detect_layers
from .zeropur import GRAD_MODES, PROFILES, ZeroPur, load_defended_model

__all__ = ["ZeroPur", "PROFILES", "GRAD_MODES", "make_blur", "BLURS", "detect_layers", "FeatureTap", "LayerSpec",
           "load_defended_model"]
