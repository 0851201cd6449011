"""AED-MAE: the self-distilled masked auto-encoder (Ristea et al., CVPR 2024), docs/design.md §2.

The module names and the forward pass follow the official implementation exactly, quirks
included, so that its checkpoints load and give the same numbers:

- the encoder's depthwise convolutions run on the kept tokens laid, in their shuffled
  order, row-major into an h x int(w * (1 - r)) grid (docs/design.md §2 step 3);
- attention scores are scaled by D^-0.5 with D the block's full width, not the head width;
- the MLP passes the cls row through unchanged, so the block adds LN2(y)_cls to y_cls;
- the student branch leaves the teacher decoder after its first block.

Backends (`set_backend`): "eager" follows the official op structure (separate depthwise
convs, BatchNorm with running statistics, einsum attention) and is the baseline every fast
path is checked against; "torch" (folded BatchNorm, SDPA) and "triton" (fused kernels)
come from aedfast.kernels.cvt.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Mapping
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import NamedTuple

import torch
import torch.nn as nn
import torch.nn.functional as F

from .checkpoint import (
    OFFICIAL_IGNORED,
    CheckpointError,
    check_state,
    read_native,
    read_official,
    write_native,
)

# ----------------------------------------------------------------------------- presets


@dataclass(frozen=True)
class AEDConfig:
    """Sizes of one AED-MAE. Presets are plain instances of it (PRESETS)."""

    name: str = "custom"
    img_size: tuple[int, int] = (320, 640)
    patch_size: int = 16
    in_chans: int = 9
    out_chans: int = 4
    embed_dim: int = 256
    depth: int = 3
    num_heads: int = 4
    decoder_embed_dim: int = 128
    decoder_depth: int = 3
    decoder_num_heads: int = 4
    mlp_ratio: float = 2.0
    mask_ratio: float = 0.5

    @property
    def grid(self) -> tuple[int, int]:
        """Token grid (h, w) = (H / p, W / p)."""
        return self.img_size[0] // self.patch_size, self.img_size[1] // self.patch_size

    @property
    def num_tokens(self) -> int:
        h, w = self.grid
        return h * w

    @property
    def patch_dim(self) -> int:
        """Values per output token: p * p * out_chans."""
        return self.patch_size * self.patch_size * self.out_chans

    def to_dict(self) -> dict:
        d = asdict(self)
        d["img_size"] = list(self.img_size)
        return d

    @classmethod
    def from_dict(cls, d: dict) -> AEDConfig:
        known = {f for f in cls.__dataclass_fields__}
        unknown = set(d) - known
        if unknown:
            raise ValueError(f"unknown config keys: {sorted(unknown)}")
        d = dict(d)
        if "img_size" in d:
            d["img_size"] = tuple(int(v) for v in d["img_size"])
        return cls(**d)


PRESETS: dict[str, AEDConfig] = {
    # The official configurations (docs/design.md §2).
    "avenue": AEDConfig(name="avenue", img_size=(320, 640), patch_size=16),
    "shanghaitech": AEDConfig(name="shanghaitech", img_size=(160, 320), patch_size=8),
    # Small enough to train on 2 CPU cores in a few minutes: an 8 x 16 token grid.
    "tiny": AEDConfig(
        name="tiny", img_size=(64, 128), patch_size=8, embed_dim=96, depth=2, num_heads=4,
        decoder_embed_dim=64, decoder_depth=2, decoder_num_heads=4,
    ),
}


def get_preset(name: str, **overrides) -> AEDConfig:
    """The preset `name` with fields replaced by `overrides`."""
    if name not in PRESETS:
        raise ValueError(f"unknown preset {name!r}; choose one of {sorted(PRESETS)}")
    cfg = PRESETS[name]
    if overrides:
        bad = set(overrides) - set(AEDConfig.__dataclass_fields__)
        if bad:
            raise ValueError(f"unknown preset fields: {sorted(bad)}")
        if "img_size" in overrides:
            overrides["img_size"] = tuple(int(v) for v in overrides["img_size"])
        cfg = replace(cfg, **overrides)
    return cfg


# ----------------------------------------------------------------------------- patchify


def patchify(imgs: torch.Tensor, patch: int) -> torch.Tensor:
    """[B, C, H, W] -> [B, h*w, p*p*C], token (i, j) holding its pixels as (p, p, C)."""
    B, C, H, W = imgs.shape
    if H % patch or W % patch:
        raise ValueError(f"image size {H}x{W} is not divisible by the patch size {patch}")
    h, w = H // patch, W // patch
    x = imgs.reshape(B, C, h, patch, w, patch)
    x = torch.einsum("nchpwq->nhwpqc", x)
    return x.reshape(B, h * w, patch * patch * C)


def unpatchify(x: torch.Tensor, patch: int, grid: tuple[int, int]) -> torch.Tensor:
    """[B, h*w, p*p*C] -> [B, C, H, W]; the inverse of `patchify` for any grid."""
    B, L, D = x.shape
    h, w = grid
    if L != h * w:
        raise ValueError(f"{L} tokens do not fill a {h}x{w} grid")
    if D % (patch * patch):
        raise ValueError(f"token width {D} is not a multiple of patch*patch = {patch * patch}")
    C = D // (patch * patch)
    x = x.reshape(B, h, w, patch, patch, C)
    x = torch.einsum("nhwpqc->nchpwq", x)
    return x.reshape(B, C, h * patch, w * patch)


# ----------------------------------------------------------------------------- masking


class Masking(NamedTuple):
    ids_keep: torch.Tensor  # [B, K] int64: original positions of the kept tokens, shuffled
    ids_restore: torch.Tensor  # [B, L] int64: argsort of the shuffle
    mask: torch.Tensor  # [B, L] float: 1 removed, 0 kept, original order


def random_masking(noise: torch.Tensor, mask_ratio: float) -> Masking:
    """docs/design.md §2 step 2: the kept/removed split drawn from `noise` [B, L] in [0, 1)."""
    B, L = noise.shape
    len_keep = int(L * (1 - mask_ratio))
    ids_shuffle = torch.argsort(noise, dim=1)
    ids_restore = torch.argsort(ids_shuffle, dim=1)
    ids_keep = ids_shuffle[:, :len_keep]
    mask = torch.ones(B, L, device=noise.device, dtype=noise.dtype)
    mask[:, :len_keep] = 0
    mask = torch.gather(mask, 1, ids_restore)
    return Masking(ids_keep, ids_restore, mask)


def encoder_grid(grid: tuple[int, int], mask_ratio: float) -> tuple[int, int]:
    """The grid the encoder's convolutions see: h rows by int(w * (1 - r)) columns."""
    h, w = grid
    rows, cols = h, int(w * (1 - mask_ratio))
    keep = int(h * w * (1 - mask_ratio))
    if rows * cols != keep:
        raise ValueError(
            f"mask ratio {mask_ratio} keeps {keep} of {h * w} tokens, which do not fill the "
            f"encoder's {rows}x{cols} grid (official layout); choose a ratio r with w*(1-r) whole"
        )
    return rows, cols


# ----------------------------------------------------------------------------- blocks


class ConvProjection(nn.Module):
    """Depthwise 3x3 conv (no bias) + BatchNorm: one of a CvT attention's q/k/v projections."""

    def __init__(self, dim: int):
        super().__init__()
        self.conv = nn.Conv2d(dim, dim, 3, padding=1, groups=dim, bias=False)
        self.bn = nn.BatchNorm2d(dim)

    def forward(self, grid: torch.Tensor) -> torch.Tensor:
        return self.bn(self.conv(grid))


class Attention(nn.Module):
    """CvT attention with convolutional projections; the cls row skips the convolutions."""

    def __init__(self, dim: int, num_heads: int):
        super().__init__()
        self.num_heads = num_heads
        self.scale = dim**-0.5  # official quirk: the full width, not the head width
        self.conv_proj_q = ConvProjection(dim)
        self.conv_proj_k = ConvProjection(dim)
        self.conv_proj_v = ConvProjection(dim)
        self.proj_q = nn.Linear(dim, dim)
        self.proj_k = nn.Linear(dim, dim)
        self.proj_v = nn.Linear(dim, dim)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor, h: int, w: int) -> torch.Tensor:
        B, T, C = x.shape
        cls, tokens = x[:, :1], x[:, 1:]
        grid = tokens.transpose(1, 2).reshape(B, C, h, w)

        def project(conv: ConvProjection, linear: nn.Linear) -> torch.Tensor:
            y = conv(grid).flatten(2).transpose(1, 2)
            y = linear(torch.cat([cls, y], dim=1))
            return y.reshape(B, T, self.num_heads, C // self.num_heads).transpose(1, 2)

        q = project(self.conv_proj_q, self.proj_q)
        k = project(self.conv_proj_k, self.proj_k)
        v = project(self.conv_proj_v, self.proj_v)
        attn = torch.einsum("bhld,bhtd->bhlt", q, k) * self.scale
        attn = attn.softmax(dim=-1)
        out = torch.einsum("bhlt,bhtd->bhld", attn, v)
        out = out.transpose(1, 2).reshape(B, T, C)
        return self.proj(out)


class Mlp(nn.Module):
    """Pointwise-conv MLP; the cls row is returned unchanged (official quirk)."""

    def __init__(self, dim: int, hidden: int, drop: float = 0.1):
        super().__init__()
        self.net = nn.Sequential(
            nn.Conv2d(dim, hidden, 1), nn.GELU(), nn.Dropout(drop), nn.Conv2d(hidden, dim, 1)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        B, T, C = x.shape
        cls, tokens = x[:, :1], x[:, 1:]
        # 1x1 convs are pointwise: any [B, C, T-1, 1] layout is the same as the grid.
        y = self.net(tokens.transpose(1, 2).unsqueeze(-1)).squeeze(-1).transpose(1, 2)
        return torch.cat([cls, y], dim=1)


class Block(nn.Module):
    """y = x + Attn(LN1(x)); out = y + Mlp(LN2(y)) on a cls row + an h x w token grid."""

    def __init__(self, dim: int, num_heads: int, mlp_ratio: float):
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, eps=1e-6)
        self.attn = Attention(dim, num_heads)
        self.norm2 = nn.LayerNorm(dim, eps=1e-6)
        self.mlp = Mlp(dim, int(dim * mlp_ratio))
        self.fused: nn.Module | None = None  # set by AEDMAE.set_backend for "torch"/"triton"

    def forward(self, x: torch.Tensor, h: int, w: int) -> torch.Tensor:
        if self.fused is not None:
            return self.fused(x, h, w)
        x = x + self.attn(self.norm1(x), h, w)
        return x + self.mlp(self.norm2(x))


class PatchEmbed(nn.Module):
    """Conv2d with kernel = stride = patch, then LayerNorm over channels."""

    def __init__(self, in_chans: int, dim: int, patch: int):
        super().__init__()
        self.proj = nn.Conv2d(in_chans, dim, patch, stride=patch)
        self.norm = nn.LayerNorm(dim, eps=1e-6)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.norm(self.proj(x).flatten(2).transpose(1, 2))

    def embed_kept(self, x: torch.Tensor, ids_keep: torch.Tensor) -> torch.Tensor:
        """The embeddings of the kept tokens only, [B, K, D], in `ids_keep` order.

        Same values as gathering `forward(x)`, at 1 - r of its cost: the patches of removed
        tokens are never multiplied (their embeddings are discarded by the encoder anyway).
        """
        B, C, H, W = x.shape
        p = self.proj.kernel_size[0]
        w = W // p
        grid = x.reshape(B, C, H // p, p, w, p).permute(0, 2, 4, 1, 3, 5)  # view [B,h,w,C,p,p]
        rows = torch.div(ids_keep, w, rounding_mode="floor")
        patches = grid[torch.arange(B, device=x.device)[:, None], rows, ids_keep - rows * w]
        weight = self.proj.weight.reshape(self.proj.out_channels, -1)
        return self.norm(F.linear(patches.reshape(B, ids_keep.shape[1], -1), weight,
                                  self.proj.bias))


# ----------------------------------------------------------------------------- model


class AEDOutput(NamedTuple):
    """What one forward pass returns. L = h*w tokens, P = p*p*4 values per token."""

    teacher: torch.Tensor  # [B, L, P] teacher reconstruction, patchified (h, w, p, p, C)
    student: torch.Tensor  # [B, L, P] student reconstruction
    mask: torch.Tensor  # [B, L] 1 = removed, 0 = kept
    cls_logit: torch.Tensor  # [B] synthetic-anomaly logit from the final cls token
    ids_keep: torch.Tensor  # [B, K] kept token positions, in shuffled order
    ids_restore: torch.Tensor  # [B, L]


BACKENDS = ("eager", "torch", "triton")
BLOCK_PARTS = ("encoder", "decoder")  # the units a backend can be chosen for (set_backend)


class AEDMAE(nn.Module):
    """The AED-MAE of docs/design.md §2: CvT encoder, teacher decoder, student branch, cls head."""

    def __init__(self, config: AEDConfig | None = None):
        super().__init__()
        cfg = config or PRESETS["avenue"]
        H, W = cfg.img_size
        if H % cfg.patch_size or W % cfg.patch_size:
            raise ValueError(f"image size {H}x{W} is not divisible by patch {cfg.patch_size}")
        if cfg.embed_dim % cfg.num_heads or cfg.decoder_embed_dim % cfg.decoder_num_heads:
            raise ValueError("embedding widths must be divisible by their head counts")
        if cfg.decoder_depth < 1:
            raise ValueError("the student branches after the first decoder block: depth >= 1")
        self.config = cfg
        D, Dd = cfg.embed_dim, cfg.decoder_embed_dim
        self.patch_embed = PatchEmbed(cfg.in_chans, D, cfg.patch_size)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, D))
        self.blocks = nn.ModuleList(
            Block(D, cfg.num_heads, cfg.mlp_ratio) for _ in range(cfg.depth)
        )
        self.norm = nn.LayerNorm(D, eps=1e-6)
        # docs/design.md §1; absent from the official implementation (then untrained: scoring
        # leaves out its term d unless asked, docs/design.md §9)
        self.cls_head = nn.Linear(D, 1)
        self.cls_head_trained = True

        self.decoder_embed = nn.Linear(D, Dd)
        self.mask_token = nn.Parameter(torch.zeros(1, 1, Dd))
        self.decoder_blocks = nn.ModuleList(
            Block(Dd, cfg.decoder_num_heads, cfg.mlp_ratio) for _ in range(cfg.decoder_depth)
        )
        self.decoder_norm = nn.LayerNorm(Dd, eps=1e-6)
        self.decoder_pred = nn.Linear(Dd, cfg.patch_dim)

        self.decoder_student_block = Block(Dd, cfg.decoder_num_heads, cfg.mlp_ratio)
        self.decoder_student_norm = nn.LayerNorm(Dd, eps=1e-6)
        self.decoder_student_pred = nn.Linear(Dd, cfg.patch_dim)

        self.backend = "eager"  # set_backend: a name of BACKENDS, or "mixed" (per part)
        self.block_backends = dict.fromkeys(BLOCK_PARTS, "eager")
        self._init_weights()

    # ------------------------------------------------------------------ construction

    def _init_weights(self) -> None:
        nn.init.normal_(self.cls_token, std=0.02)
        nn.init.normal_(self.mask_token, std=0.02)
        w = self.patch_embed.proj.weight
        nn.init.xavier_uniform_(w.view(w.shape[0], -1))
        for m in self.modules():
            if isinstance(m, nn.Linear):
                nn.init.xavier_uniform_(m.weight)
                nn.init.zeros_(m.bias)
            elif isinstance(m, nn.LayerNorm):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)

    @classmethod
    def from_preset(cls, name: str, **overrides) -> AEDMAE:
        """A freshly initialised model of preset `name` ("avenue", "shanghaitech", "tiny")."""
        return cls(get_preset(name, **overrides))

    @classmethod
    def from_official(
        cls, teacher_path: str | os.PathLike, student_path: str | os.PathLike | None = None,
        preset: str = "avenue", **overrides,
    ) -> AEDMAE:
        """Load the official implementation's checkpoints (docs/design.md §2).

        The teacher (everything but keys containing "student") comes from `teacher_path`
        (checkpoint-best.pth); keys containing "student" from `student_path`
        (checkpoint-best-student.pth) when given, else from the teacher file. The cls head
        is not in official weights: it stays untrained, with a warning.
        """
        model = cls.from_preset(preset, **overrides)
        teacher = read_official(teacher_path)
        state = {k: v for k, v in teacher.items() if "student" not in k}
        if student_path is not None:
            student = read_official(student_path)
            state.update({k: v for k, v in student.items() if "student" in k})
        else:
            state.update({k: v for k, v in teacher.items() if "student" in k})
            warnings.warn(
                "no student checkpoint given: the student branch comes from the teacher file",
                stacklevel=2,
            )
        state = {k: v for k, v in state.items() if not k.startswith(OFFICIAL_IGNORED)}
        own = model.state_dict()
        skip = {k for k in own if k.startswith("cls_head.")}
        check_state(state, own, skip=skip, source=str(teacher_path))
        model.load_state_dict(state, strict=False)
        warnings.warn("official checkpoints have no classification head: cls_head is untrained",
                      stacklevel=2)
        model.cls_head_trained = False  # scoring leaves its term out (docs/design.md §9)
        return model.eval()

    # ------------------------------------------------------------------ native checkpoints

    def save(self, path: str | os.PathLike, extra: dict | None = None) -> Path:
        """Write weights + config as one safetensors file, atomically. Returns the path."""
        return write_native(path, self.state_dict(), self.config.to_dict(), extra)

    @classmethod
    def load(cls, path: str | os.PathLike, map_location: str | torch.device = "cpu") -> AEDMAE:
        """Load a native checkpoint written by `save` (exactly: every key, every shape)."""
        config, state, extra = read_checkpoint(path, map_location)
        model = cls(config)
        check_state(state, model.state_dict(), skip=set(), source=str(path))
        model.load_state_dict(state, strict=True)
        model.cls_head_trained = "converted_from" not in extra  # `aedfast convert` output
        return model.eval()

    # ------------------------------------------------------------------ backends

    def part_blocks(self, part: str) -> list[Block]:
        """The CvT blocks of a part: "encoder", or "decoder" (teacher decoder + student)."""
        if part not in BLOCK_PARTS:
            raise ValueError(f"unknown part {part!r}; choose one of {BLOCK_PARTS}")
        if part == "encoder":
            return list(self.blocks)
        return [*self.decoder_blocks, self.decoder_student_block]

    def set_backend(self, name: str | Mapping[str, str], *, refold: bool = True) -> AEDMAE:
        """Choose how CvT blocks run: "eager" (official op structure), "torch" (folded
        BatchNorm + SDPA, the CPU fast path) or "triton" (fused kernels), or {part: "torch" |
        "triton"} for each of BLOCK_PARTS (a choice by measurement, aedfast.backend_choice;
        `backend` is then "mixed", `block_backends` holds each part's). Weights are folded
        here, once; call again after changing weights or BatchNorm statistics. refold=False
        only switches fused blocks between "torch" and "triton", keeping their folded weights
        in whatever dtype the model was cast to since (the Detector folds in float32)."""
        parts = dict.fromkeys(BLOCK_PARTS, name) if isinstance(name, str) else dict(name)
        fused = set(parts.values()) <= {"torch", "triton"}
        if set(parts) != set(BLOCK_PARTS) or not (fused or set(parts.values()) == {"eager"}):
            raise ValueError(f"unknown backend {name!r}: one of {BACKENDS}, or 'torch' / "
                             f"'triton' for each of {BLOCK_PARTS}")
        if self.training and fused:
            raise RuntimeError(f"backend {name!r} folds BatchNorm running statistics "
                               "(inference only): call model.eval() first")
        from .kernels import cvt

        for part, be in parts.items():
            for b in self.part_blocks(part):
                if not fused:
                    b.fused = None
                elif refold:
                    b.fused = cvt.FusedBlock.from_block(b, backend=be)
                elif b.fused is None:
                    raise RuntimeError("refold=False needs fused blocks: set one first")
                else:
                    b.fused = cvt.FusedBlock(b.fused.weights(), b.fused.num_heads, backend=be,
                                             has_cls=b.fused.has_cls)
        names = set(parts.values())
        self.backend = names.pop() if len(names) == 1 else "mixed"
        self.block_backends = parts
        return self

    def train(self, mode: bool = True) -> AEDMAE:
        if mode and self.backend != "eager":
            self.set_backend("eager")  # folded weights would go stale while training
        return super().train(mode)

    # ------------------------------------------------------------------ forward

    def make_noise(self, batch: int, device: torch.device | str | None = None,
                   generator: torch.Generator | None = None) -> torch.Tensor:
        """Masking noise [batch, L] uniform in [0, 1)."""
        device = device if device is not None else self.cls_token.device
        return torch.rand(batch, self.config.num_tokens, device=device, generator=generator)

    def check_input(self, x: torch.Tensor, noise: torch.Tensor | None) -> None:
        cfg = self.config
        if x.dim() != 4:
            raise ValueError(
                f"expected input [B, {cfg.in_chans}, H, W], got shape {tuple(x.shape)}"
            )
        if x.shape[1] != cfg.in_chans:
            raise ValueError(
                f"expected {cfg.in_chans} input channels (frames t-3, t, t+3 x BGR), "
                f"got {x.shape[1]}"
            )
        H, W = x.shape[-2:]
        if H % cfg.patch_size or W % cfg.patch_size:
            raise ValueError(f"input size {H}x{W} is not divisible by the patch {cfg.patch_size}")
        if (H, W) != tuple(cfg.img_size):
            raise ValueError(f"input size {H}x{W} differs from the model's {cfg.img_size}")
        if noise is not None and tuple(noise.shape) != (x.shape[0], cfg.num_tokens):
            raise ValueError(
                f"noise must have shape [B, L] = {[x.shape[0], cfg.num_tokens]}, "
                f"got {list(noise.shape)}"
            )

    def forward_encoder(self, x: torch.Tensor, masking: Masking, mask_ratio: float
                        ) -> torch.Tensor:
        """[B, 9, H, W] -> [B, 1 + K, D]: cls row + kept tokens in shuffled order, normed."""
        B = x.shape[0]
        if self.backend == "eager":  # the official op structure: embed all, then gather
            tokens = self.patch_embed(x)
            D = tokens.shape[-1]
            kept = torch.gather(tokens, 1, masking.ids_keep.unsqueeze(-1).expand(-1, -1, D))
        else:
            kept = self.patch_embed.embed_kept(x, masking.ids_keep)
        h, w = encoder_grid(self.config.grid, mask_ratio)
        out = torch.cat([self.cls_token.expand(B, -1, -1).to(kept.dtype), kept], dim=1)
        for blk in self.blocks:
            out = blk(out, h, w)
        return self.norm(out)

    def forward_decoder(self, latent: torch.Tensor, ids_restore: torch.Tensor
                        ) -> tuple[torch.Tensor, torch.Tensor]:
        """Teacher and student predictions [B, L, p*p*4] from the encoder output."""
        x = self.decoder_embed(latent)
        B, K1, Dd = x.shape
        L = ids_restore.shape[1]
        mask_tokens = self.mask_token.to(x.dtype).expand(B, L + 1 - K1, -1)
        body = torch.cat([x[:, 1:], mask_tokens], dim=1)
        body = torch.gather(body, 1, ids_restore.unsqueeze(-1).expand(-1, -1, Dd))
        x = torch.cat([x[:, :1], body], dim=1)
        h, w = self.config.grid
        branch = x
        for i, blk in enumerate(self.decoder_blocks):
            x = blk(x, h, w)
            if i == 0:
                branch = x
        teacher = self.decoder_pred(self.decoder_norm(x))[:, 1:]
        s = self.decoder_student_block(branch, h, w)
        student = self.decoder_student_pred(self.decoder_student_norm(s))[:, 1:]
        return teacher, student

    def forward(self, x: torch.Tensor, mask_ratio: float | None = None,
                noise: torch.Tensor | None = None) -> AEDOutput:
        """x [B, 9, H, W] float scaled to [-1, 1] (docs/design.md §2) -> AEDOutput.

        `noise` [B, L] fixes the masking (docs/design.md §2 step 2); drawn here when absent.
        `mask_ratio` defaults to the preset's.
        """
        self.check_input(x, noise)
        r = self.config.mask_ratio if mask_ratio is None else float(mask_ratio)
        if noise is None:
            noise = self.make_noise(x.shape[0], x.device)
        masking = random_masking(noise, r)
        latent = self.forward_encoder(x, masking, r)
        teacher, student = self.forward_decoder(latent, masking.ids_restore)
        cls_logit = self.cls_head(latent[:, 0]).squeeze(-1)
        return AEDOutput(teacher, student, masking.mask.to(teacher.dtype), cls_logit,
                         masking.ids_keep, masking.ids_restore)


# ----------------------------------------------------------------------------- checkpoint io


def read_checkpoint(path: str | os.PathLike, map_location: str | torch.device = "cpu"
                    ) -> tuple[AEDConfig, dict[str, torch.Tensor], dict]:
    """(config, state dict, extra metadata) of a native aedfast checkpoint."""
    config, state, extra = read_native(path, map_location)
    try:
        return AEDConfig.from_dict(config), state, extra
    except (ValueError, TypeError) as e:
        raise CheckpointError(f"{path}: bad config: {e}") from None


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def load_model(spec: str | os.PathLike | AEDMAE | tuple, preset: str = "avenue") -> AEDMAE:
    """An AEDMAE from a model, a native .safetensors path, or official (teacher[, student])
    .pth paths."""
    if isinstance(spec, AEDMAE):
        return spec
    if isinstance(spec, (tuple, list)):
        if not 1 <= len(spec) <= 2:
            raise ValueError("official checkpoints: (teacher_path,) or (teacher_path, student)")
        return AEDMAE.from_official(*spec, preset=preset)
    p = Path(spec)
    if p.suffix == ".safetensors":
        return AEDMAE.load(p)
    if p.suffix in (".pth", ".pt"):
        return AEDMAE.from_official(p, preset=preset)
    raise ValueError(f"{p}: expected an aedfast .safetensors or official .pth checkpoint")


__all__ = [
    "AEDConfig", "AEDMAE", "AEDOutput", "BACKENDS", "BLOCK_PARTS", "CheckpointError", "Masking",
    "PRESETS", "count_parameters", "encoder_grid", "get_preset", "load_model", "patchify",
    "random_masking", "read_checkpoint", "unpatchify",
]
