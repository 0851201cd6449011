"""The device-side batch of the objective (aedfast.training.objective.prepare_batch)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from aedfast.kernels import motion_token_weights
from aedfast.model import get_preset, patchify
from aedfast.training import prepare_batch

from .training_support import SMALL, make_videos, stream_dataset


@pytest.fixture(scope="module")
def videos():
    return make_videos()


def test_prepare_batch_targets_and_weights(videos):
    ds, _ = stream_dataset(videos, prob=1.0, stop=1)
    parts = [mb for _, _, mb in ds]
    batch = {k: torch.cat([torch.as_tensor(p[k]) for p in parts]) for k in parts[0]}
    cfg = get_preset("tiny", **SMALL)
    x, target, weights, label = prepare_batch(batch, cfg, torch.device("cpu"))
    B = len(label)
    fr = batch["frames"].float()
    assert x.shape == (B, 9, 32, 64)
    # channels: t-3, t, t+3, each B, G, R, scaled to [-1, 1]
    assert torch.allclose(x[:, 3:6], (fr[:, 2].permute(0, 3, 1, 2) - 127.5) / 127.5)
    assert torch.allclose(x[:, 6:9], (fr[:, 4].permute(0, 3, 1, 2) - 127.5) / 127.5)
    tgt = torch.cat([batch["clean"].permute(0, 3, 1, 2).float(),
                     batch["mask"][:, None].float() * 255], 1)
    assert torch.equal(target, patchify((tgt - 127.5) / 127.5, 8))
    mask4 = target.reshape(B, -1, 4)[..., 3]
    assert set(mask4.unique().tolist()) <= {-1.0, 1.0}
    want = motion_token_weights(batch["frames"][:, 1], batch["frames"][:, 3], 8,
                                anomaly_map=batch["mask"].float())
    assert torch.equal(weights, want)
    assert torch.allclose(weights.sum(1), torch.ones(B))
    # the pasted object pulls weight towards its tokens
    plain = motion_token_weights(batch["frames"][:, 1], batch["frames"][:, 3], 8)
    tok = patchify(batch["mask"][:, None].float(), 8).amax(-1) > 0
    hit = label.bool()
    assert (weights[hit][tok[hit]].sum() > plain[hit][tok[hit]].sum())


@pytest.mark.parametrize("strength", [0.0, 0.3])
def test_motion_strength_mixes_uniform_weights(videos, strength):
    ds, _ = stream_dataset(videos, prob=0.5, stop=1)
    parts = [mb for _, _, mb in ds]
    batch = {k: torch.cat([torch.as_tensor(p[k]) for p in parts]) for k in parts[0]}
    cfg = get_preset("tiny", **SMALL)
    full = prepare_batch(batch, cfg, torch.device("cpu"))[2]
    mixed = prepare_batch(batch, cfg, torch.device("cpu"), motion_strength=strength)[2]
    L = full.shape[1]
    # independent form: a convex combination of the per-sample uniform and motion weights
    want = np.full(full.shape, 1.0 / L) * (1 - strength) + strength * full.double().numpy()
    np.testing.assert_allclose(mixed.double().numpy(), want, rtol=1e-6, atol=1e-9)
    assert torch.allclose(mixed.sum(1), torch.ones(len(mixed)))
    if strength == 0.0:
        assert torch.allclose(mixed, torch.full_like(mixed, 1.0 / L))
    # the motion weights are not uniform on these videos, so the mix changes them
    assert not torch.allclose(mixed, full)
