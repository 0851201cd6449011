"""An independent, literal reading of docs/design.md §2, written from the text and not from
aedfast.model: plain functions over an official-layout state dict, float64, explicit loops
over heads and tokens where the spec describes them. Slow on purpose; used only in tests.
"""

from __future__ import annotations

import math

import torch


def layer_norm(x, w, b, eps=1e-6):
    mu = x.mean(-1, keepdim=True)
    var = ((x - mu) ** 2).mean(-1, keepdim=True)
    return (x - mu) / torch.sqrt(var + eps) * w + b


def batch_norm_eval(x, sd, prefix, eps=1e-5):
    """x [B, C, h, w] with running statistics."""
    mean = sd[prefix + "running_mean"][None, :, None, None]
    var = sd[prefix + "running_var"][None, :, None, None]
    w = sd[prefix + "weight"][None, :, None, None]
    b = sd[prefix + "bias"][None, :, None, None]
    return (x - mean) / torch.sqrt(var + eps) * w + b


def depthwise3x3(grid, weight):
    """grid [B, C, h, w], weight [C, 1, 3, 3]; zero padding 1, cross-correlation."""
    B, C, h, w = grid.shape
    padded = torch.zeros(B, C, h + 2, w + 2, dtype=grid.dtype)
    padded[:, :, 1:-1, 1:-1] = grid
    out = torch.zeros_like(grid)
    for di in range(3):
        for dj in range(3):
            out += padded[:, :, di:di + h, dj:dj + w] * weight[:, 0, di, dj][None, :, None, None]
    return out


def gelu_exact(x):
    return 0.5 * x * (1 + torch.erf(x / math.sqrt(2)))


def block(x, sd, p, heads, rows, cols):
    """One CvT block on x [B, 1 + rows*cols, D] (cls row first)."""
    B, T, D = x.shape
    y = layer_norm(x, sd[p + "norm1.weight"], sd[p + "norm1.bias"])
    cls = y[:, 0:1, :]
    # tokens -> grid, row-major: token n sits at (n // cols, n % cols)
    grid = torch.zeros(B, D, rows, cols, dtype=x.dtype)
    for n in range(T - 1):
        grid[:, :, n // cols, n % cols] = y[:, 1 + n, :]
    projected = {}
    for name in ("q", "k", "v"):
        c = depthwise3x3(grid, sd[p + f"attn.conv_proj_{name}.conv.weight"])
        c = batch_norm_eval(c, sd, p + f"attn.conv_proj_{name}.bn.")
        seq = torch.cat([cls, c.reshape(B, D, -1).permute(0, 2, 1)], dim=1)
        lin = seq @ sd[p + f"attn.proj_{name}.weight"].T + sd[p + f"attn.proj_{name}.bias"]
        projected[name] = lin
    d = D // heads
    merged = torch.zeros(B, T, D, dtype=x.dtype)
    for hh in range(heads):
        sl = slice(hh * d, (hh + 1) * d)
        q, k, v = (projected[n][:, :, sl] for n in ("q", "k", "v"))
        scores = q @ k.transpose(1, 2) * D ** -0.5  # the block's full width, not d
        scores = scores - scores.max(-1, keepdim=True).values
        e = torch.exp(scores)
        merged[:, :, sl] = (e / e.sum(-1, keepdim=True)) @ v
    attn_out = merged @ sd[p + "attn.proj.weight"].T + sd[p + "attn.proj.bias"]
    x = x + attn_out
    z = layer_norm(x, sd[p + "norm2.weight"], sd[p + "norm2.bias"])
    w0 = sd[p + "mlp.net.0.weight"][:, :, 0, 0]
    w3 = sd[p + "mlp.net.3.weight"][:, :, 0, 0]
    hidden = gelu_exact(z[:, 1:] @ w0.T + sd[p + "mlp.net.0.bias"])
    body = hidden @ w3.T + sd[p + "mlp.net.3.bias"]
    mlp_out = torch.cat([z[:, :1], body], dim=1)  # cls row returned unchanged
    return x + mlp_out


def forward(sd, x, noise, *, patch, heads, dec_heads, depth, dec_depth, mask_ratio):
    """Teacher and student [B, L, p*p*4] and mask [B, L], float64."""
    sd = {k: v.double() for k, v in sd.items()}
    x = x.double()
    B, _, H, W = x.shape
    h, w = H // patch, W // patch
    L = h * w
    # patch embedding as an explicit sum over each patch's pixels
    wpe = sd["patch_embed.proj.weight"]
    D = wpe.shape[0]
    tokens = torch.zeros(B, L, D, dtype=torch.float64)
    for i in range(h):
        for j in range(w):
            pix = x[:, :, i * patch:(i + 1) * patch, j * patch:(j + 1) * patch]
            tokens[:, i * w + j] = torch.einsum("bcpq,dcpq->bd", pix, wpe)
    tokens = tokens + sd["patch_embed.proj.bias"]
    tokens = layer_norm(tokens, sd["patch_embed.norm.weight"], sd["patch_embed.norm.bias"])
    # masking
    keep = int(L * (1 - mask_ratio))
    ids_shuffle = torch.argsort(noise, dim=1)
    mask = torch.ones(B, L, dtype=torch.float64)
    kept = torch.zeros(B, keep, D, dtype=torch.float64)
    for b in range(B):
        for n in range(keep):
            kept[b, n] = tokens[b, ids_shuffle[b, n]]
            mask[b, ids_shuffle[b, n]] = 0
    cols = int(w * (1 - mask_ratio))
    z = torch.cat([sd["cls_token"].expand(B, 1, D), kept], dim=1)
    for n in range(depth):
        z = block(z, sd, f"blocks.{n}.", heads, h, cols)
    z = layer_norm(z, sd["norm.weight"], sd["norm.bias"])
    # decoder: embed, fill mask tokens, un-shuffle
    e = z @ sd["decoder_embed.weight"].T + sd["decoder_embed.bias"]
    Dd = e.shape[-1]
    full = torch.zeros(B, 1 + L, Dd, dtype=torch.float64)
    full[:, 0] = e[:, 0]
    for b in range(B):
        for n in range(L):
            pos = ids_shuffle[b, n]
            full[b, 1 + pos] = e[b, 1 + n] if n < keep else sd["mask_token"][0, 0]
    t = full
    branch = None
    for n in range(dec_depth):
        t = block(t, sd, f"decoder_blocks.{n}.", dec_heads, h, w)
        if n == 0:
            branch = t
    t = layer_norm(t, sd["decoder_norm.weight"], sd["decoder_norm.bias"])
    teacher = (t @ sd["decoder_pred.weight"].T + sd["decoder_pred.bias"])[:, 1:]
    s = block(branch, sd, "decoder_student_block.", dec_heads, h, w)
    s = layer_norm(s, sd["decoder_student_norm.weight"], sd["decoder_student_norm.bias"])
    student = (s @ sd["decoder_student_pred.weight"].T + sd["decoder_student_pred.bias"])[:, 1:]
    return teacher, student, mask


def patchify_loop(img, patch):
    """[B, C, H, W] -> [B, L, p*p*C] with token (i, j) = pixels (r, c, channel) in that order."""
    B, C, H, W = img.shape
    h, w = H // patch, W // patch
    out = torch.zeros(B, h * w, patch * patch * C, dtype=img.dtype)
    for i in range(h):
        for j in range(w):
            idx = 0
            for r in range(patch):
                for c in range(patch):
                    for ch in range(C):
                        out[:, i * w + j, idx] = img[:, ch, i * patch + r, j * patch + c]
                        idx += 1
    return out
