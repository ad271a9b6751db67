"""The training-free purifiers of issue 34, one file each, registered by name with their papers' settings as
defaults (a name carries its paper only with the paper's settings; other options name the variant, e.g.
``bit-depth[bits=4]``):

========================  ==========================================================  =============  =============
name                      paper (setting)                                             randomness     gradients
========================  ==========================================================  =============  =============
``bit-depth``             Xu et al. 2018, feature squeezing (CIFAR-10: 5 bits)        none           bpda
``median-smoothing``      Xu et al. 2018, feature squeezing (CIFAR-10: 2×2 median)    none           bpda, full
``jpeg``                  Das et al. 2017 / Guo et al. 2018 (quality 75)              none           bpda, full*
``tvm``                   Guo et al. 2018, TV minimisation (keep 0.5, λ_TV 0.03)      pixel mask     bpda, full
``random-resize-pad``     Xie et al. 2018 (299→[299, 331) scaled to 32→[32, 35))      size, offset   full
``mixup-inference``       Pang et al. 2020, MI-OL (λ 0.5, N 30, training images)      partners       full
``anti-adversary``        Alfarra et al. 2022 (K 2, α 0.15)                           none           bpda, full
========================  ==========================================================  =============  =============

\\* ``jpeg``'s full gradient is that of kornia's differentiable JPEG (surrogate ``diff-jpeg``), the forward value
the real codec's.
"""
from . import anti_adversary, bit_depth, jpeg, median, mixup_inference, resize_pad, tvm  # noqa: F401 (registers)
from .anti_adversary import AntiAdversary
from .bit_depth import BitDepth
from .jpeg import Jpeg
from .median import MedianSmoothing
from .mixup_inference import MixupInference, TrainingPool
from .resize_pad import RandomResizePad
from .tvm import TVMinimization

__all__ = ["AntiAdversary", "BitDepth", "Jpeg", "MedianSmoothing", "MixupInference", "TrainingPool",
           "RandomResizePad", "TVMinimization"]
