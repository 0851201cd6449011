"""BatchNorm folding for the fused CvT block (docs/design.md §2 step 4, §7): the official
block's depthwise conv + eval-mode BatchNorm pairs become one conv each, and the block's
weights are re-laid out for the kernels and torch reference of kernels/cvt.py, which
re-exports everything here.

Public API:
    fold_conv_bn(conv_weight, bn_weight, bn_bias, running_mean, running_var, eps=1e-5)
        -> (weight [D, 3, 3], bias [D])
    fold_block(block) -> dict of the folded, re-laid-out weights (names: WEIGHT_NAMES)
"""

from __future__ import annotations

import torch
import torch.nn as nn

__all__ = ["MLP_NAMES", "QKV_NAMES", "WEIGHT_NAMES", "fold_block", "fold_conv_bn"]

# the folded weights, in the argument order of the two custom ops
QKV_NAMES = ("ln1_w", "ln1_b", "conv_w", "conv_b", "qkv_w", "qkv_b")
MLP_NAMES = ("proj_w", "proj_b", "ln2_w", "ln2_b", "fc1_w", "fc1_b", "fc2_w", "fc2_b")
WEIGHT_NAMES = QKV_NAMES + MLP_NAMES


def fold_conv_bn(conv_weight: torch.Tensor, bn_weight: torch.Tensor, bn_bias: torch.Tensor,
                 running_mean: torch.Tensor, running_var: torch.Tensor, eps: float = 1e-5
                 ) -> tuple[torch.Tensor, torch.Tensor]:
    """Depthwise conv [D, 1, 3, 3] (no bias) followed by eval-mode BatchNorm -> one conv.

    BN(conv(g)) = conv(g) * s + (beta - mu * s) with s = gamma / sqrt(var + eps), per channel;
    computed in float64, returned in float32: (weight [D, 3, 3], bias [D]).
    """
    s = bn_weight.double() / torch.sqrt(running_var.double() + eps)
    weight = conv_weight.double()[:, 0] * s[:, None, None]
    bias = bn_bias.double() - running_mean.double() * s
    return weight.float(), bias.float()


def fold_block(block: nn.Module) -> dict[str, torch.Tensor]:
    """The folded, re-laid-out weights of an aedfast.model.Block (official structure), in the
    block's dtype and device. Layouts (D = width, Hd = MLP hidden width):

    ln1_w, ln1_b, ln2_w, ln2_b [D]; conv_w [D, 3, 9] (channel, q/k/v, tap dy*3+dx), which is
    also the grouped-conv weight [3D, 1, 3, 3] of output channel 3c + j; conv_b [D, 3];
    qkv_w [3, D, D] and qkv_b [3, D] (proj_q, proj_k, proj_v, nn.Linear layout);
    proj_w [D, D], proj_b [D]; fc1_w [Hd, D], fc1_b [Hd]; fc2_w [D, Hd], fc2_b [D].
    """
    attn, mlp = block.attn, block.mlp
    ref = attn.proj_q.weight
    convs = [attn.conv_proj_q, attn.conv_proj_k, attn.conv_proj_v]
    folded = [fold_conv_bn(c.conv.weight, c.bn.weight, c.bn.bias, c.bn.running_mean,
                           c.bn.running_var, c.bn.eps) for c in convs]
    for c in convs:
        if c.bn.running_mean is None or c.conv.bias is not None:
            raise ValueError("expected depthwise convs without bias and BatchNorms with "
                             "running statistics (the official CvT projection)")
    D = ref.shape[0]
    fc1, fc2 = mlp.net[0], mlp.net[3]
    w = {
        "ln1_w": block.norm1.weight, "ln1_b": block.norm1.bias,
        "conv_w": torch.stack([f[0].reshape(D, 9) for f in folded], dim=1),
        "conv_b": torch.stack([f[1] for f in folded], dim=1),
        "qkv_w": torch.stack([attn.proj_q.weight, attn.proj_k.weight, attn.proj_v.weight]),
        "qkv_b": torch.stack([attn.proj_q.bias, attn.proj_k.bias, attn.proj_v.bias]),
        "proj_w": attn.proj.weight, "proj_b": attn.proj.bias,
        "ln2_w": block.norm2.weight, "ln2_b": block.norm2.bias,
        "fc1_w": fc1.weight.reshape(fc1.weight.shape[0], -1), "fc1_b": fc1.bias,
        "fc2_w": fc2.weight.reshape(fc2.weight.shape[0], -1), "fc2_b": fc2.bias,
    }
    return {k: v.detach().to(device=ref.device, dtype=ref.dtype).contiguous()
            for k, v in w.items()}
