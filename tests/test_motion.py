"""Motion gradients and token weights (docs/design.md §3): the Triton kernels (under the
interpreter on the CPU), the torch reference, and an independent OpenCV/numpy pipeline must all
agree."""

from __future__ import annotations

import time

import cv2
import numpy as np
import pytest
import torch
from numpy.lib.stride_tricks import sliding_window_view

from aedfast.kernels import motion_gradient, motion_token_weights
from aedfast.kernels.motion import (
    _ROWS_CONFIGS,
    _rows_path,
    launch_motion,
    motion_gradient_reference,
    motion_gradient_triton,
    motion_token_weights_reference,
    motion_token_weights_triton,
)

RTOL = 1e-6  # weights: within 1e-6 relative (sum orders differ); gradients: exact

# ----------------------------------------------------------------------------- independent pipeline


def _hwc_frames(x: torch.Tensor) -> list[np.ndarray]:
    """Per-frame HxWxC numpy arrays (uint8 as is; float [B, C, H, W] -> float32 HWC)."""
    if x.dtype != torch.uint8:
        x = x.permute(0, 2, 3, 1).float()
    return [np.ascontiguousarray(f) for f in x.cpu().numpy()]


def _cv_median(img: np.ndarray) -> np.ndarray:
    out = cv2.medianBlur(img, 3)  # ksize 3: BORDER_REPLICATE (checked below)
    return out.reshape(img.shape)  # OpenCV drops a single channel axis


def cv_gradient(prev: torch.Tensor, nxt: torch.Tensor, median: bool = True) -> list[np.ndarray]:
    """HxWxC float32 gradients: cv2.medianBlur, then numpy absolute difference."""
    out = []
    for p, n in zip(_hwc_frames(prev), _hwc_frames(nxt)):
        if median:
            p, n = _cv_median(p), _cv_median(n)
        out.append(np.abs(n.astype(np.float32) - p.astype(np.float32)))
    return out


def cv_weights(prev, nxt, patch, median=True, anomaly_map=None, normalize=True) -> np.ndarray:
    """[B, L] float64 token weights: numpy max-pooling, channel mean, anomaly term, sum to 1."""
    rows = []
    for b, g in enumerate(cv_gradient(prev, nxt, median)):
        g = g.astype(np.float64)
        H, W, C = g.shape
        if anomaly_map is not None:
            g = g + anomaly_map[b].cpu().double().numpy()[..., None] * max(128.0, g.max())
        w = g.reshape(H // patch, patch, W // patch, patch, C).max(axis=(1, 3)).mean(-1).ravel()
        if normalize:
            w = w / w.sum() if w.sum() > 0 else np.full_like(w, 1.0 / w.size)
        rows.append(w)
    return np.stack(rows)


# ----------------------------------------------------------------------------- frames


def random_frames(B, H, W, C, seed):
    g = torch.Generator().manual_seed(seed)
    return [torch.randint(0, 256, (B, H, W, C), dtype=torch.uint8, generator=g) for _ in range(2)]


def shape_frames(B, H, W, C, seed, step=3):
    """A textured static background with a rectangle and a disc that move by `step` pixels."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:H, :W]
    prev, nxt = [], []
    for _ in range(B):
        bg = (40 + 2 * yy + xx)[..., None] % 200 + rng.integers(0, 8, (H, W, C))
        frames = []
        for k in (0, 2):  # frames t-1 and t+1
            f = np.ascontiguousarray(bg.astype(np.uint8))
            r0, c0 = H // 4 + k * step // 2, W // 5 + k * step
            cv2.rectangle(f, (c0, r0), (c0 + W // 4, r0 + H // 3), (230, 30, 120)[:C], -1)
            centre = (3 * W // 4 - k * step, H // 2 + k)
            cv2.circle(f, centre, max(2, H // 6), (10, 250, 60)[:C], -1)
            frames.append(f.reshape(H, W, C))
        prev.append(frames[0])
        nxt.append(frames[1])
    return torch.from_numpy(np.stack(prev)), torch.from_numpy(np.stack(nxt))


def to_float(x: torch.Tensor, seed: int) -> torch.Tensor:
    """uint8 [B, H, W, C] -> float32 [B, C, H, W] with fractional parts."""
    g = torch.Generator().manual_seed(seed)
    x = x.permute(0, 3, 1, 2).float()
    return (x + 0.5 * torch.rand(x.shape, generator=g)).contiguous()


def blob_map(B, H, W, seed):
    """Synthetic anomaly maps: values in [0, 1] inside a rectangle, 0 elsewhere."""
    g = torch.Generator().manual_seed(seed)
    m = torch.zeros(B, H, W)
    m[:, H // 3: H // 3 + max(1, H // 4), W // 2: W // 2 + max(1, W // 5)] = 1.0
    return m * torch.rand(B, H, W, generator=g)


def check_weights(prev, nxt, patch, device, *, median=True, anomaly_map=None, normalize=True):
    """Triton == reference == OpenCV/numpy within RTOL; returns the Triton weights."""
    want = torch.from_numpy(cv_weights(prev, nxt, patch, median, anomaly_map, normalize))
    am = None if anomaly_map is None else anomaly_map.to(device)
    got = motion_token_weights_triton(prev.to(device), nxt.to(device), patch, median, am,
                                      normalize).cpu()
    ref = motion_token_weights_reference(prev, nxt, patch, median, anomaly_map, normalize)
    assert got.dtype == ref.dtype == torch.float32
    assert got.shape == ref.shape == want.shape
    assert torch.isfinite(got).all()
    torch.testing.assert_close(ref.double(), want, rtol=RTOL, atol=RTOL * want.abs().max())
    torch.testing.assert_close(got.double(), want, rtol=RTOL, atol=RTOL * want.abs().max())
    return got


# ----------------------------------------------------------------------------- tests


@pytest.mark.parametrize("dtype", [np.uint8, np.float32])
@pytest.mark.parametrize("C", [1, 3])
def test_cv2_median_border_is_replicate(dtype, C):
    """The premise of the independent pipeline: cv2.medianBlur(ksize 3) replicates borders."""
    img = np.random.default_rng(C).integers(0, 256, (9, 13, C)).astype(dtype)
    padded = np.pad(img, ((1, 1), (1, 1), (0, 0)), mode="edge")
    want = np.median(sliding_window_view(padded, (3, 3), axis=(0, 1)), axis=(-2, -1))
    assert np.array_equal(_cv_median(img), want.astype(dtype))
    reflect = np.median(sliding_window_view(np.pad(img, ((1, 1), (1, 1), (0, 0)), mode="reflect"),
                                            (3, 3), axis=(0, 1)), axis=(-2, -1))
    assert not np.array_equal(_cv_median(img), reflect.astype(dtype))  # the check can fail


@pytest.mark.parametrize("anomaly", [False, True], ids=["plain", "anomaly"])
@pytest.mark.parametrize("dtype", ["uint8", "float"])
@pytest.mark.parametrize("B", [1, 3])
@pytest.mark.parametrize("H,W,patch", [(32, 48, 16), (24, 40, 8)])
@pytest.mark.parametrize("kind", ["random", "shapes"])
def test_weights_match_opencv(kind, H, W, patch, B, dtype, anomaly, device):
    seed = H * 7 + W + B + patch
    make = random_frames if kind == "random" else shape_frames
    prev, nxt = make(B, H, W, 3, seed)
    if dtype == "float":
        prev, nxt = to_float(prev, seed), to_float(nxt, seed + 1)
    amap = blob_map(B, H, W, seed) if anomaly else None
    w = check_weights(prev, nxt, patch, device, anomaly_map=amap)
    torch.testing.assert_close(w.sum(1), torch.ones(B), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("median", [True, False])
@pytest.mark.parametrize("dtype", ["uint8", "float"])
@pytest.mark.parametrize("H,W,C", [(16, 24, 3), (13, 21, 3), (10, 17, 1)])
def test_gradient_exact(H, W, C, dtype, median, device):
    """The median/difference stage is exact, at any size (no patch constraint)."""
    prev, nxt = shape_frames(2, H, W, C, seed=H + W)
    if dtype == "float":
        prev, nxt = to_float(prev, 1), to_float(nxt, 2)
    want = np.stack(cv_gradient(prev, nxt, median))  # [B, H, W, C]
    if dtype == "float":
        want = want.transpose(0, 3, 1, 2)
    got = motion_gradient_triton(prev.to(device), nxt.to(device), median).cpu()
    ref = motion_gradient_reference(prev, nxt, median)
    assert got.dtype == ref.dtype == torch.float32 and got.shape == prev.shape
    assert np.array_equal(ref.numpy(), want)
    assert np.array_equal(got.numpy(), want)


@pytest.mark.parametrize("patch", [8, 16])
def test_no_median_and_unnormalized(patch, device):
    """median=False (as the official pre-computed gradients) and raw (unnormalised) weights."""
    prev, nxt = shape_frames(2, 2 * patch, 3 * patch, 3, seed=patch)
    for normalize in (False, True):
        check_weights(prev, nxt, patch, device, median=False, normalize=normalize)
    raw = check_weights(prev, nxt, patch, device, median=True, normalize=False)
    assert raw.max() > 1.0  # raw gradients are on the 0..255 scale


@pytest.mark.parametrize("dtype", ["uint8", "float"])
def test_static_frames_uniform(dtype, device):
    """Zero motion everywhere: finite weights, uniform when normalised, zero when not."""
    frame = torch.full((2, 16, 32, 3), 77, dtype=torch.uint8)
    frame[:, 4:9, 3:20] = 200
    prev = nxt = frame if dtype == "uint8" else to_float(frame, 0)
    w = check_weights(prev, nxt, 8, device)
    assert torch.equal(w, torch.full((2, 8), 1.0 / 8))
    raw = check_weights(prev, nxt, 8, device, normalize=False)
    assert torch.equal(raw, torch.zeros(2, 8))
    # static frames + an anomaly map: the floor of 128 gives the pasted object all the weight
    amap = blob_map(2, 16, 32, 3)
    w = check_weights(prev, nxt, 8, device, anomaly_map=amap)
    assert w[:, 0].eq(0).all() and w.sum(1).sub(1).abs().max() < 1e-6


@pytest.mark.parametrize("dtype", ["uint8", "float"])
@pytest.mark.parametrize("patch", [8, 16])
def test_single_patch(patch, dtype, device):
    prev, nxt = random_frames(3, patch, patch, 3, seed=patch)
    if dtype == "float":
        prev, nxt = to_float(prev, 0), to_float(nxt, 1)
    assert torch.equal(check_weights(prev, nxt, patch, device), torch.ones(3, 1))
    check_weights(prev, nxt, patch, device, normalize=False)
    amap = blob_map(3, patch, patch, 0)
    check_weights(prev, nxt, patch, device, normalize=False, anomaly_map=amap)


@pytest.mark.slow  # ~10 s under the interpreter; the GPU check's rehearsal leaves it out
def test_avenue_full_size(device):
    """The avenue preset's frame: 320x640, patch 16, batch 1, through the Triton kernel."""
    prev, nxt = shape_frames(1, 320, 640, 3, seed=5, step=6)
    t0 = time.perf_counter()
    w = check_weights(prev, nxt, 16, device)
    assert w.shape == (1, 800)
    assert w[0, 0] < 0.2 * w.max()  # the top-left patch is static background, far from shapes
    assert time.perf_counter() - t0 < 300


@pytest.mark.parametrize("block_b", sorted({c.kwargs["BLOCK_B"] for c in _ROWS_CONFIGS}))
def test_rows_kernel_every_config(block_b, device):
    """Every row-segment width in the contiguous-uint8 kernel's autotune list (the interpreter's
    autotuner keeps only the first entry; warps and stages do not change the numbers), at a
    frame split into several row segments with a partial last one: weights (plain,
    unnormalised, anomaly) = reference = OpenCV/numpy, gradient exact (with a partial patch
    row), and the same numbers as the strided kernel on channels-first frames."""
    B, H, W, patch = 1, 8, 90 * 8, 8
    prev, nxt = random_frames(B, H, W, 3, seed=7)
    prev, nxt = prev.to(device), nxt.to(device)
    assert _rows_path(prev, 3, patch)
    config = {"BLOCK_B": block_b, "STAGES": 2}
    ref = motion_token_weights_reference(prev.cpu(), nxt.cpu(), patch, normalize=False)
    want = torch.from_numpy(cv_weights(prev.cpu(), nxt.cpu(), patch, normalize=False))
    raw, pmax = launch_motion(prev, nxt, patch, True, config=config)
    assert torch.equal(raw.cpu(), ref)  # integer maxima: sums of three are exact
    torch.testing.assert_close(raw.cpu().double(), want, rtol=RTOL, atol=0)
    if block_b == _ROWS_CONFIGS[0].kwargs["BLOCK_B"]:  # strided kernel, channels-first storage
        pf, nf = (x.permute(0, 3, 1, 2).contiguous().permute(0, 2, 3, 1) for x in (prev, nxt))
        assert not _rows_path(pf, 3, patch)
        raw_s, pmax_s = launch_motion(pf, nf, patch, True)
        assert torch.equal(raw, raw_s) and torch.equal(pmax, pmax_s)
    amap = blob_map(B, H, W, seed=3).to(device)
    scale = pmax.amax(dim=1).clamp_min(128.0).contiguous()
    raw_a, _ = launch_motion(prev, nxt, patch, True, amap, scale, config=config)
    want_a = cv_weights(prev.cpu(), nxt.cpu(), patch, anomaly_map=amap.cpu(), normalize=False)
    torch.testing.assert_close(raw_a.cpu().double(), torch.from_numpy(want_a), rtol=RTOL, atol=0)
    for median in (True, False):
        grad = torch.empty(prev.shape, device=device, dtype=torch.float32)
        launch_motion(prev[:, :7], nxt[:, :7], 16, median, grad=grad[:, :7], config=config)
        assert np.array_equal(grad[:, :7].cpu().numpy(), np.stack(
            cv_gradient(prev[:, :7].cpu(), nxt[:, :7].cpu(), median)))


def test_avenue_production_tile(device):
    """The avenue preset's frame (320x640, patch 16, batch 1) through the contiguous-uint8
    kernel at its production tile (BLOCK_B 1024: 20 patches, two row segments per patch row),
    random frames (every branch of the median network): patch means and maxima equal the
    reference and OpenCV/numpy exactly."""
    config = dict(_ROWS_CONFIGS[0].kwargs)
    assert config["BLOCK_B"] == 1024
    prev, nxt = random_frames(1, 320, 640, 3, seed=11)
    assert _rows_path(prev, 3, 16)
    t0 = time.perf_counter()
    raw, pmax = launch_motion(prev.to(device), nxt.to(device), 16, True, config=config)
    elapsed = time.perf_counter() - t0
    assert raw.shape == pmax.shape == (1, 800)
    want = motion_token_weights_reference(prev, nxt, 16, normalize=False)
    assert torch.equal(raw.cpu(), want)  # integer maxima: the channel means are exact
    cv = np.stack(cv_gradient(prev, nxt)).reshape(1, 20, 16, 40, 16, 3).max(axis=(2, 4))
    assert np.array_equal(raw.cpu().numpy(), (cv.sum(-1) / 3).astype(np.float32).reshape(1, 800))
    assert np.array_equal(pmax.cpu().numpy(), cv.max(-1).reshape(1, 800))
    assert elapsed < 60  # ~8 s of CPU under the interpreter


def test_non_contiguous_inputs(device):
    """Slices of a clip (strided batch), channel-last views as [B, C, H, W], column steps."""
    g = torch.Generator().manual_seed(0)
    clip = torch.randint(0, 256, (2, 3, 16, 64, 3), dtype=torch.uint8, generator=g)
    prev, nxt = clip[:, 0], clip[:, 2]  # [B, H, W, C] with batch stride 3 frames
    assert not prev.is_contiguous()
    amap = torch.rand(2, 16, 64, generator=g)[:, :, ::2]  # non-contiguous map too
    pc, nc = prev[:, :, ::2], nxt[:, :, ::2]  # every other column: [2, 16, 32, 3]
    w = check_weights(pc, nc, 8, device, anomaly_map=amap)
    torch.testing.assert_close(w, motion_token_weights_reference(
        pc.contiguous(), nc.contiguous(), 8, anomaly_map=amap.contiguous()), rtol=RTOL, atol=1e-9)
    fp, fn = prev.permute(0, 3, 1, 2).float(), nxt.permute(0, 3, 1, 2).float()  # strided BCHW
    assert not fp.is_contiguous()
    check_weights(fp, fn, 16, device)
    grad = motion_gradient_triton(fp.to(device), fn.to(device)).cpu()
    assert torch.equal(grad, motion_gradient_reference(fp.contiguous(), fn.contiguous()))


def test_public_api_and_errors():
    prev, nxt = random_frames(2, 16, 24, 3, seed=1)
    w = motion_token_weights(prev, nxt, 8)
    torch.testing.assert_close(w.double(), torch.from_numpy(cv_weights(prev, nxt, 8)),
                               rtol=RTOL, atol=1e-9)
    assert motion_gradient(prev, nxt).shape == (2, 16, 24, 3)
    with pytest.raises(ValueError, match="not a multiple of the patch size 16"):
        motion_token_weights(prev, nxt, 16)  # 16x24
    with pytest.raises(ValueError, match="patch"):
        motion_token_weights(prev, nxt, 0)
    with pytest.raises(TypeError, match="dtype"):
        motion_token_weights(prev.int(), nxt.int(), 8)
    with pytest.raises(ValueError, match="4-D"):
        motion_token_weights(prev[0], nxt[0], 8)
    with pytest.raises(ValueError, match="differ"):
        motion_token_weights(prev, nxt[:1], 8)
    with pytest.raises(ValueError, match="anomaly_map"):
        motion_token_weights(prev, nxt, 8, anomaly_map=torch.zeros(2, 16, 16))
    with pytest.raises(TypeError, match="anomaly_map"):
        motion_token_weights(prev, nxt, 8, anomaly_map=torch.zeros(2, 16, 24, dtype=torch.uint8))


def test_torch_compile_fullgraph(device):
    """torch.compile sees one custom op per call: no graph break, same numbers."""
    prev, nxt = shape_frames(2, 16, 32, 3, seed=2)
    prev, nxt, amap = prev.to(device), nxt.to(device), blob_map(2, 16, 32, 2).to(device)

    def fn(p, n, m):
        return motion_token_weights(p, n, 8, anomaly_map=m), motion_gradient(p, n)

    torch._dynamo.reset()
    w, g = torch.compile(fn, fullgraph=True)(prev, nxt, amap)
    w_eager, g_eager = fn(prev, nxt, amap)
    torch.testing.assert_close(w, w_eager, rtol=RTOL, atol=1e-9)
    assert torch.equal(g, g_eager)
    torch.testing.assert_close(w.cpu().double(), torch.from_numpy(
        cv_weights(prev.cpu(), nxt.cpu(), 8, anomaly_map=amap.cpu())), rtol=RTOL, atol=1e-9)


# ----------------------------------------------------------------------------- preset sizes (CUDA)


@pytest.mark.gpu  # CUDA-only (no `device` fixture): tests/conftest.py skips it elsewhere
@pytest.mark.parametrize("anomaly", [False, True], ids=["plain", "anomaly"])
@pytest.mark.parametrize("preset", ["avenue", "shanghaitech"])
def test_kernel_at_preset_sizes(preset, anomaly):
    """The Triton kernel on CUDA at the presets' frames (avenue 320x640 patch 16,
    shanghaitech 160x320 patch 8), with the block width the autotuner picks there, equals the
    reference and the OpenCV/numpy pipeline (the autotune key does not hold the batch)."""
    from aedfast.model import get_preset

    cfg = get_preset(preset)
    (H, W), patch = cfg.img_size, cfg.patch_size
    prev, nxt = shape_frames(8, H, W, 3, seed=H, step=5)
    amap = blob_map(8, H, W, seed=W) if anomaly else None
    w = check_weights(prev, nxt, patch, torch.device("cuda"), anomaly_map=amap)
    assert w.shape == (8, (H // patch) * (W // patch))
