"""What a stage trains and how: the device-side batch, the objective, the trainable parameters.

Stage 1 trains the encoder, the teacher decoder and the cls head: the motion-weighted
reconstruction loss on 4-channel targets (docs/design.md §2 step 8, §3) plus `cls_weight` x
binary cross entropy of the cls head against "this sample has a pasted anomaly". Stage 2 freezes
everything but the student branch (frozen modules in eval mode, so their BatchNorm statistics
stay put) and trains it to reproduce the detached teacher on the masked tokens
(docs/design.md §3).

On the device: the 9-channel input (t-3, t, t+3, BGR, (v - 127.5) / 127.5), the token weights
from the motion op (aedfast.kernels.motion_token_weights on frames t-1, t+1 with the pasted
object's mask as anomaly map) and the target (clean frame t + mask channel).
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from ..model import AEDMAE, AEDConfig, patchify
from .config import TrainConfig

__all__ = ["Objective", "make_optimizer", "prepare_batch", "set_stage"]


def prepare_batch(batch: dict[str, torch.Tensor], config: AEDConfig, device: torch.device,
                  median: bool = True, targets: bool = True, motion_strength: float = 1.0
                  ) -> tuple[torch.Tensor | None, ...]:
    """A loader batch -> (x [B, 9, H, W], target [B, L, p*p*4], weights [B, L], label [B]).

    batch: frames uint8 [B, 5, H, W, 3] (offsets -3, -1, 0, 1, 3; BGR, anomalies pasted),
    clean uint8 [B, H, W, 3] (frame t without them), mask uint8 [B, H, W] (0/1 pasted
    pixels at t), label float [B], index int [B, 2] (video, frame). All float outputs are
    float32. targets=False (the student stage) skips target and weights (None).
    motion_strength s mixes the motion op's token weights w (each sample's sum 1) with uniform
    ones: (1 - s) / L + s * w (1: the paper's weighting; 0: a plain mean over tokens).
    """
    nb = device.type == "cuda"
    frames = batch["frames"].to(device, non_blocking=nb)
    clean = batch["clean"].to(device, non_blocking=nb)
    amap = batch["mask"].to(device, non_blocking=nb).float()
    label = batch["label"].to(device, non_blocking=nb).float()
    B, _, H, W, _ = frames.shape
    x = frames[:, [0, 2, 4]].permute(0, 1, 4, 2, 3).reshape(B, 9, H, W).float()
    x = (x - 127.5) / 127.5
    if not targets:
        return x, None, None, label
    from ..kernels import motion_token_weights

    weights = motion_token_weights(frames[:, 1], frames[:, 3], config.patch_size, median=median,
                                   anomaly_map=amap)
    if motion_strength != 1.0:
        weights = (1.0 - motion_strength) / weights.shape[1] + motion_strength * weights
    tgt = torch.cat([clean.permute(0, 3, 1, 2).float(), amap[:, None] * 255.0], dim=1)
    target = patchify((tgt - 127.5) / 127.5, config.patch_size)
    return x, target, weights, label


class Objective(nn.Module):
    """Stage 1: sum_L w * MSE(teacher, target) (mean over the batch) + cls_weight * BCE.
    Stage 2: mean over masked tokens of the squared student - teacher.detach() difference.
    Inputs as `prepare_batch` makes them, noise float [B, L] (the masking noise). Returns
    (loss, detached parts): a float32 scalar and float32 [2] (reconstruction, cls) in stage 1,
    [1] (student,) in stage 2."""

    def __init__(self, model: AEDMAE, stage: int, cls_weight: float):
        super().__init__()
        self.model = model
        self.stage = stage
        self.cls_weight = float(cls_weight)

    def forward(self, x: torch.Tensor, target: torch.Tensor | None,
                weights: torch.Tensor | None, label: torch.Tensor, noise: torch.Tensor
                ) -> tuple[torch.Tensor, torch.Tensor]:
        out = self.model(x, noise=noise)
        if self.stage == 1:
            per_token = (out.teacher.float() - target).pow(2).mean(-1)
            rec = (per_token * weights).sum(1).mean()
            cls = F.binary_cross_entropy_with_logits(out.cls_logit.float(), label)
            return rec + self.cls_weight * cls, torch.stack([rec.detach(), cls.detach()])
        per_token = (out.student.float() - out.teacher.detach().float()).pow(2).mean(-1)
        mask = out.mask.float()
        loss = (per_token * mask).sum() / mask.sum().clamp_min(1.0)
        return loss, loss.detach()[None]


def _student_modules(model: AEDMAE) -> list[nn.Module]:
    return [model.decoder_student_block, model.decoder_student_norm, model.decoder_student_pred]


def _is_student(name: str) -> bool:
    return name.startswith("decoder_student_")


def set_stage(model: AEDMAE, stage: int) -> list[tuple[str, nn.Parameter]]:
    """requires_grad and train/eval modes for a stage; returns the trainable parameters.
    Stage 1: all but the student train (the student sits in eval mode, untouched). Stage 2:
    only the student trains; the rest is in eval mode so its BatchNorm statistics and dropout
    stay off."""
    model.train(stage == 1)
    for m in _student_modules(model):
        m.train(stage == 2)
    params = []
    for n, p in model.named_parameters():
        p.requires_grad_(_is_student(n) == (stage == 2))
        if p.requires_grad:
            params.append((n, p))
    return params


def make_optimizer(params: list[tuple[str, nn.Parameter]], cfg: TrainConfig
                   ) -> torch.optim.AdamW:
    """AdamW over (name, parameter) pairs: `cfg.weight_decay` on weight matrices, none on
    biases, norms and the cls/mask tokens."""
    decay, no_decay = [], []
    for n, p in params:
        skip = p.ndim <= 1 or n.endswith(".bias") or n in ("cls_token", "mask_token")
        (no_decay if skip else decay).append(p)
    groups = [{"params": decay, "weight_decay": cfg.weight_decay},
              {"params": no_decay, "weight_decay": 0.0}]
    return torch.optim.AdamW(groups, lr=cfg.lr, betas=cfg.betas)
