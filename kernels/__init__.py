"""aedfast.kernels: the Triton kernel families, each beside its torch reference.

- motion: frame differencing, 3x3 median, patch max/mean -> token weights (docs/design.md §3)
- cvt: fused CvT block projections and MLP, BatchNorm folding (docs/design.md §2 step 4)
- smoothing: 3D filter + frame max, temporal Gaussian (docs/design.md §5)
"""

from ._triton import HAS_TRITON, INTERPRET
from .cvt import FusedBlock, cvt_block, cvt_out_mlp, cvt_qkv, fold_block, fold_conv_bn
from .motion import motion_gradient, motion_token_weights
from .smoothing import smooth_scores

__all__ = ["HAS_TRITON", "INTERPRET"]
__all__ += ["FusedBlock", "cvt_block", "cvt_out_mlp", "cvt_qkv", "fold_block", "fold_conv_bn"]
__all__ += ["motion_gradient", "motion_token_weights"]
__all__ += ["smooth_scores"]
