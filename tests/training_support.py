"""Shared pieces of the training tests: small settings, in-memory videos, output readers."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import torch

from aedfast.anomalies import AnomalyPaster, ShapeSource
from aedfast.model import read_checkpoint
from aedfast.training import LOG_NAME
from aedfast.training.data import StreamDataset, TrainingData
from aedfast.training.plan import Plan

SMALL = dict(img_size=(32, 64), patch_size=8, embed_dim=32, depth=1, num_heads=2,
             decoder_embed_dim=32, decoder_depth=2, decoder_num_heads=2)
BASE = dict(preset="tiny", model_overrides=SMALL, batch_size=8, streams=2, workers=0, lr=2e-3,
            warmup_steps=0, lr_schedule="constant", log_every=1)


class ArrayVideo:
    """An in-memory video (the reader protocol: name, len, [i], frames(start, stop))."""

    def __init__(self, name: str, frames: np.ndarray):
        self.name = name
        self.data = frames

    def __len__(self) -> int:
        return len(self.data)

    def __getitem__(self, i: int) -> np.ndarray:
        return self.data[i].copy()

    def frames(self, start: int = 0, stop: int | None = None):
        stop = len(self) if stop is None else min(stop, len(self))
        for i in range(max(0, start), stop):
            yield self[i]


def make_videos(n: int = 4, T_: int = 40, H: int = 32, W: int = 64, seed: int = 0
                ) -> list[ArrayVideo]:
    """A static textured scene with two blocks walking across it, per video."""
    rng = np.random.default_rng(seed)
    bg = cv2.resize(rng.integers(40, 140, (H // 4, W // 4, 3), dtype=np.uint8), (W, H),
                    interpolation=cv2.INTER_LINEAR)
    vids = []
    for v in range(n):
        frames = np.empty((T_, H, W, 3), np.uint8)
        for t in range(T_):
            f = bg.copy()
            for k, (y, speed, col) in enumerate([(6, 1.0, 200), (18, -1.5, 30)]):
                x = int((v * 7 + k * 20 + speed * t) % (W - 6))
                f[y:y + 10, x:x + 6] = (col, 255 - col, (col + 90) % 256)
            noise = rng.integers(-3, 4, f.shape)
            frames[t] = np.clip(f.astype(int) + noise, 0, 255).astype(np.uint8)
        vids.append(ArrayVideo(f"v{v}", frames))
    return vids


def final_weights(path: Path) -> dict[str, torch.Tensor]:
    """The state dict of a native checkpoint file."""
    return read_checkpoint(path)[1]


def read_log(out: Path) -> list[dict]:
    """The records of OUT/train_log.jsonl."""
    return [json.loads(x) for x in (out / LOG_NAME).read_text().splitlines()]


def write_folder(root: Path, name: str, frames: np.ndarray, ext: str = ".png") -> Path:
    """`frames` as image files root/name/000.png, 001.png, ..."""
    d = root / name
    d.mkdir(parents=True)
    for i, f in enumerate(frames):
        cv2.imwrite(str(d / f"{i:03d}{ext}"), f)
    return d


def stream_dataset(videos, *, streams=2, batch=8, pool=1000, start=0, stop=20, prob=0.0, stage=1,
                   seed=0, photometric=0.0) -> tuple[StreamDataset, Plan]:
    """A one-rank stream dataset over `videos` (anomalies with probability `prob`, gain jitter
    sigma `photometric`) and its plan."""
    lengths = [len(v) for v in videos]
    sizes = [v[0].shape[:2] for v in videos]
    plan = Plan(lengths, streams, 1, batch, seed, pool)
    paster = AnomalyPaster(sources=[ShapeSource(size=16)], prob=prob) if prob else None
    data = TrainingData(videos, lengths, sizes, plan, sizes[0], seed, paster, False, photometric)
    return StreamDataset(data, stage, start, stop, 0), plan
