"""Score smoothing: Triton kernels (interpreted on the CPU) and the torch reference against
scipy.ndimage + numpy + an independent numpy version of SPEC §5's filter; streaming against
offline; the pixel/token map function against numpy."""

from __future__ import annotations

import math
import os
import random

import numpy as np
import pytest
import scipy.ndimage as ndi
import torch

from aedfast.kernels import smooth_scores
from aedfast.kernels.smoothing import (
    filter_frame_max_reference,
    filter_frame_max_triton,
    temporal_gaussian_reference,
    temporal_gaussian_triton,
)
from aedfast.scoring import anomaly_maps
from aedfast.stream import StreamingSmoother

ON_GPU = os.environ.get("AEDFAST_TEST_GPU", "0") == "1"
# tl.dot runs as 3xTF32 on a GPU: float32 accuracy up to a few ulps of the sums.
TOL = {"rtol": 1e-4, "atol": 2e-5} if ON_GPU else {"rtol": 1e-5, "atol": 2e-6}

# Ragged: a single-frame video, videos shorter than the filters, a longer one.
LENGTHS = [1, 3, 9, 2]


# -- independent numpy versions ----------------------------------------------------------

def np_filter_max(maps: np.ndarray, lengths, window, kind: str) -> np.ndarray:
    """scipy.ndimage filter (mode 'nearest') per video, then the numpy max per frame."""
    out = []
    for v in np.split(maps.astype(np.float64), np.cumsum(lengths)[:-1]):
        if window is None:
            f = v
        elif kind == "box":
            f = ndi.uniform_filter(v, size=window, mode="nearest")
        else:
            f = ndi.gaussian_filter(v, sigma=[k / 6 for k in window],
                                    radius=[k // 2 for k in window], mode="nearest")
        out.append(f.max(axis=(1, 2)))
    return np.concatenate(out)


def np_official_filt(scores: np.ndarray, r: int, mu: float) -> np.ndarray:
    """SPEC §5 written out: g over support 1..R-1, centre at index len//2 - 1, zero padding
    of len(g)//2 and a 'valid' correlation."""
    support = np.arange(1, r)
    c = support[len(support) // 2 - 1]
    g = np.exp(-0.5 * ((support - c) / mu) ** 2) / (mu * np.sqrt(2 * np.pi))
    pad = len(g) // 2
    padded = np.concatenate([np.zeros(pad), scores, np.zeros(pad)])
    return np.correlate(padded, g, "valid")


def np_centered(scores: np.ndarray, support: int, sigma: float) -> np.ndarray:
    half = support // 2
    x = np.arange(-half, half + 1)
    g = np.exp(-0.5 * (x / sigma) ** 2)
    g /= g.sum()
    return np.correlate(np.pad(scores, half, mode="edge"), g, "valid")


def np_temporal(scores: np.ndarray, lengths, support, sigma, protocol) -> np.ndarray:
    out = []
    for v in np.split(scores.astype(np.float64), np.cumsum(lengths)[:-1]):
        if protocol == "official":
            out.append(np_official_filt(v, support + 1, sigma))
        else:
            out.append(np_centered(v, support, sigma))
    return np.concatenate(out)


def np_smooth(maps, lengths, window, kind, sigma, support, protocol):
    s = np_filter_max(maps, lengths, window, kind)
    if sigma is None or support is None:
        return s
    return np_temporal(s, lengths, support, sigma, protocol)


def _maps(n: int, h: int, w: int, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    # signed values: the max must not rely on maps being >= 0
    return torch.randn(n, h, w, generator=g) - 0.2


def _close(a: torch.Tensor, b: np.ndarray) -> None:
    np.testing.assert_allclose(a.detach().cpu().double().numpy(), b, **TOL)


# -- 3D filter + frame max ---------------------------------------------------------------

@pytest.mark.parametrize("kind", ["box", "gaussian"])
@pytest.mark.parametrize("window", [(3, 3, 3), (5, 3, 7), (1, 5, 1), (1, 1, 1)])
def test_filter_max_triton_and_reference_vs_scipy(device, kind, window):
    maps = _maps(sum(LENGTHS), 6, 11)
    lens = torch.tensor(LENGTHS)
    want = np_filter_max(maps.numpy(), LENGTHS, window, kind)
    _close(filter_frame_max_reference(maps, lens, window, kind), want)
    _close(filter_frame_max_triton(maps.to(device), lens.to(device), window, kind), want)


@pytest.mark.parametrize("kind", ["box", "gaussian"])
def test_filter_max_triton_many_tiles_and_chunks(device, kind):
    # Small forced tiles/chunks: tile seams, chunk seams inside a video, windows wider than
    # the map (13 > 9 rows... columns), a video shorter than the temporal window.
    lengths = [7, 2, 1, 5]
    maps = _maps(sum(lengths), 20, 9, seed=1)
    lens = torch.tensor(lengths)
    window = (5, 7, 13)
    want = np_filter_max(maps.numpy(), lengths, window, kind)
    got = filter_frame_max_triton(maps.to(device), lens.to(device), window, kind,
                                  tiles=(16, 16), chunk=3)
    _close(got, want)


@pytest.mark.parametrize("shape", [(1, 9), (7, 1), (1, 1)])
def test_filter_max_triton_degenerate_frames(device, shape):
    # one-row / one-column / one-pixel maps (sizes of 1 are specialised by the compiler)
    maps = _maps(4, *shape, seed=12)
    want = np_filter_max(maps.numpy(), [3, 1], (3, 3, 5), "box")
    _close(filter_frame_max_triton(maps.to(device), torch.tensor([3, 1], device=device),
                                   (3, 3, 5)), want)
    got = temporal_gaussian_triton(maps[:1, 0, :1].reshape(1).to(device),
                                   torch.tensor([1], device=device), 1, 1.0, "official")
    _close(got, np_temporal(maps[:1, 0, :1].reshape(1).numpy(), [1], 1, 1.0, "official"))


@pytest.mark.parametrize("kind", ["box", "gaussian"])
def test_filter_max_centre_only(device, kind):
    # The streaming form: one packed window per video, only its middle frame filtered.
    maps = _maps(15, 5, 8, seed=2)
    lens = torch.tensor([5, 5, 5])
    want = np_filter_max(maps.numpy(), [5, 5, 5], (5, 3, 3), kind)[[2, 7, 12]]
    _close(filter_frame_max_reference(maps, lens, (5, 3, 3), kind, centre_only=True), want)
    got = filter_frame_max_triton(maps.to(device), lens.to(device), (5, 3, 3), kind,
                                  centre_only=True)
    _close(got, want)
    # what StreamingSmoother calls after its temporal pass: one-frame videos, a 2-D window
    ones = torch.ones(15, dtype=torch.int64)
    want2 = np_filter_max(maps.numpy(), [1] * 15, (1, 3, 5), kind)
    _close(filter_frame_max_reference(maps, ones, (1, 3, 5), kind, centre_only=True), want2)
    _close(filter_frame_max_triton(maps.to(device), ones.to(device), (1, 3, 5), kind,
                                   centre_only=True), want2)


# -- temporal Gaussian -------------------------------------------------------------------

@pytest.mark.parametrize("protocol", ["centered", "official"])
@pytest.mark.parametrize("support,sigma", [(37, 11.0), (5, 1.5), (1, 1.0)])
def test_temporal_triton_and_reference_vs_numpy(device, protocol, support, sigma):
    lengths = [1, 4, 40, 12]  # single frame, shorter than the support, longer
    g = torch.Generator().manual_seed(3)
    scores = torch.rand(sum(lengths), generator=g) * 3 - 1
    lens = torch.tensor(lengths)
    want = np_temporal(scores.numpy(), lengths, support, sigma, protocol)
    _close(temporal_gaussian_reference(scores, lens, support, sigma, protocol), want)
    got = temporal_gaussian_triton(scores.to(device), lens.to(device), support, sigma, protocol)
    _close(got, want)


def test_official_protocol_is_one_sample_off_centre():
    # An impulse in the middle of a long video: the official kernel's peak sits one sample
    # before its centre, so the response peaks one frame late; it sums to less than 1
    # (it is not normalised).
    s = torch.zeros(101)
    s[50] = 1.0
    out = temporal_gaussian_reference(s, torch.tensor([101]), 37, 11.0, "official")
    assert int(out.argmax()) == 51
    assert 0.85 < float(out.sum()) < 0.95
    np.testing.assert_allclose(out.numpy(), np_official_filt(s.numpy(), 38, 11.0), atol=1e-7)


# -- public function -----------------------------------------------------------------------

@pytest.mark.parametrize("protocol", ["centered", "official"])
@pytest.mark.parametrize("kind", ["box", "gaussian"])
def test_smooth_scores_vs_numpy(protocol, kind):
    maps = _maps(sum(LENGTHS), 6, 7, seed=4)
    want = np_smooth(maps.numpy(), LENGTHS, (3, 5, 3), kind, 2.0, 5, protocol)
    got = smooth_scores(maps, LENGTHS, window=(3, 5, 3), window_kind=kind, sigma=2.0,
                        support=5, protocol=protocol)
    assert got.dtype == torch.float32 and got.shape == (sum(LENGTHS),)
    np.testing.assert_allclose(got.double().numpy(), want, rtol=1e-5, atol=2e-6)


def test_smooth_scores_defaults_and_switches():
    maps = _maps(30, 8, 8, seed=5)
    want = np_smooth(maps.numpy(), [30], (9, 9, 9), "box", 11.0, 37, "centered")
    np.testing.assert_allclose(smooth_scores(maps).numpy(), want, rtol=1e-5, atol=2e-6)
    # no filter, no temporal smoothing: the plain frame max
    plain = smooth_scores(maps, torch.tensor([10, 20]), window=None, sigma=None)
    np.testing.assert_allclose(plain.numpy(), maps.amax(dim=(1, 2)).numpy())
    # int window, no temporal Gaussian, float64 input
    got = smooth_scores(maps.double(), [30], window=3, support=None)
    np.testing.assert_allclose(got.numpy(), np_filter_max(maps.numpy(), [30], (3, 3, 3), "box"),
                               rtol=1e-5, atol=2e-6)


def test_smooth_scores_videos_do_not_mix():
    a, b = _maps(6, 5, 5, seed=6), _maps(4, 5, 5, seed=7) + 3.0
    both = smooth_scores(torch.cat([a, b]), [6, 4], window=(5, 3, 3), support=5, sigma=2.0)
    np.testing.assert_allclose(both[:6].numpy(), smooth_scores(a, window=(5, 3, 3), support=5,
                                                               sigma=2.0).numpy(), rtol=1e-6)
    np.testing.assert_allclose(both[6:].numpy(), smooth_scores(b, window=(5, 3, 3), support=5,
                                                               sigma=2.0).numpy(), rtol=1e-6)


@pytest.mark.filterwarnings("ignore::RuntimeWarning")  # the interpreter's numpy on inf
@pytest.mark.parametrize("bad", [float("nan"), float("inf"), float("-inf")])
def test_non_finite_maps_raise(device, bad):
    maps = _maps(6, 4, 5)
    maps[3, 1, 2] = bad
    with pytest.raises(ValueError, match="NaN or inf"):
        smooth_scores(maps)
    with pytest.raises(ValueError, match="NaN or inf"):
        filter_frame_max_triton(maps.to(device), torch.tensor([6], device=device), (3, 3, 3))
    sm = StreamingSmoother(4, 5, window=(3, 3, 3), support=5, sigma=2.0)
    sm.add_stream("a")
    with pytest.raises(ValueError, match="NaN or inf"):
        sm.step({"a": maps})


@pytest.mark.parametrize("kwargs,err", [
    ({"window": (4, 3, 3)}, ValueError),
    ({"window": (3, 3)}, ValueError),
    ({"window_kind": "median"}, ValueError),
    ({"protocol": "paper"}, ValueError),
    ({"support": 38}, ValueError),
    ({"sigma": -1.0}, ValueError),
    ({"lengths": [3, 3]}, ValueError),
    ({"lengths": [8, 0]}, ValueError),
    ({"lengths": torch.tensor([5, 4])}, ValueError),
    ({"lengths": torch.tensor([4.0, 4.0])}, TypeError),
])
def test_smooth_scores_rejects_bad_arguments(kwargs, err):
    with pytest.raises(err):
        smooth_scores(_maps(8, 4, 4), **kwargs)


def test_smooth_scores_rejects_bad_maps():
    with pytest.raises(ValueError):
        smooth_scores(torch.zeros(4, 4))
    with pytest.raises(ValueError):
        smooth_scores(torch.zeros(4, 4, 4, dtype=torch.int64))
    with pytest.raises(TypeError):
        smooth_scores(np.zeros((4, 4, 4)))


def test_smooth_scores_torch_compile_fullgraph():
    maps = _maps(12, 6, 6, seed=8)
    lens = torch.tensor([5, 7])

    def fn(m, ln):
        return smooth_scores(m, ln, window=(3, 3, 3), sigma=2.0, support=5, protocol="official")

    compiled = torch.compile(fn, fullgraph=True, backend="aot_eager")  # fakes traced
    np.testing.assert_allclose(compiled(maps, lens).numpy(), fn(maps, lens).numpy())


# -- streaming -------------------------------------------------------------------------------

@pytest.mark.parametrize("protocol", ["centered", "official"])
@pytest.mark.parametrize("kind", ["box", "gaussian"])
def test_streaming_equals_offline_any_chunking(device, protocol, kind):
    rng = random.Random(11)
    h, w = 5, 6
    kw = {"window": (5, 3, 3), "window_kind": kind, "sigma": 2.5, "support": 7,
          "protocol": protocol}
    lengths = {"a": 17, "b": 1, "c": 4, "d": 11}
    videos = {sid: _maps(n, h, w, seed=20 + i) for i, (sid, n) in enumerate(lengths.items())}
    sm = StreamingSmoother(h, w, device=device, **kw)
    assert sm.delay == 5 // 2 + 7 // 2
    got: dict[str, list] = {sid: [] for sid in videos}
    pos = dict.fromkeys(videos, 0)
    start = {"a": 0, "b": 2, "c": 1, "d": 3}  # streams join at different steps
    step = 0
    while any(pos[s] < lengths[s] for s in videos) or sm.streams:
        feed = {}
        for sid in videos:
            if step == start[sid]:
                sm.add_stream(sid)
            if sid in sm.streams and pos[sid] < lengths[sid]:
                k = rng.choice([1, 1, 2, 3])  # chunks of any size
                feed[sid] = videos[sid][pos[sid]:pos[sid] + k].to(device)
                if feed[sid].shape[0] == 1 and rng.random() < 0.5:
                    feed[sid] = feed[sid][0]  # a single [h, w] frame
                pos[sid] += feed[sid].reshape(-1, h, w).shape[0]
        if feed:
            for sid, out in sm.step(feed).items():
                got[sid] += out
                # scores come out exactly `delay` frames late
                assert len(got[sid]) == max(0, pos[sid] - sm.delay)
        for sid in list(sm.streams):
            if pos[sid] == lengths[sid] and sid not in feed:
                got[sid] += sm.remove_stream(sid)  # flushes
        step += 1
    for sid, v in videos.items():
        idx = [f for f, _ in got[sid]]
        assert idx == list(range(lengths[sid]))
        want = smooth_scores(v, **kw).numpy()
        np.testing.assert_allclose([s for _, s in got[sid]], want, rtol=1e-5, atol=1e-6)


def test_streaming_batched_step_flush_and_errors():
    sm = StreamingSmoother(3, 4, window=(3, 1, 1), sigma=None, support=None)
    assert sm.delay == 1
    for sid in ("x", "y"):
        sm.add_stream(sid)
    with pytest.raises(ValueError):
        sm.add_stream("x")
    frames = _maps(2, 3, 4, seed=30)
    out = sm.step(frames, ids=["x", "y"])
    assert out == {"x": [], "y": []}
    out = sm.step(frames, ids=["x", "y"])
    assert [f for f, _ in out["x"]] == [0]
    rest = sm.flush("x")
    want = smooth_scores(frames[[0, 0]], window=(3, 1, 1), support=None)
    assert [f for f, _ in rest] == [1]
    assert rest[0][1] == pytest.approx(float(want[1]), rel=1e-6)
    with pytest.raises(ValueError, match="flushed"):
        sm.step({"x": frames[0]})
    assert sm.remove_stream("x") == []
    assert sm.remove_stream("y", flush=False) == []
    with pytest.raises(KeyError):
        sm.step({"y": frames[0]})
    sm.add_stream("z")
    with pytest.raises(ValueError):
        sm.step({"z": torch.zeros(4, 3)})


# -- pixel / token maps ------------------------------------------------------------------------

def np_maps(target, teacher, student, h, w, p, a, b, c, resolution):
    bsz = teacher.shape[0]
    ct = target.shape[2] // (p * p)
    # un-patchify to [B, H, W, C] with loops over tokens, independent of the reshape trick
    def unpatch(x, ch):
        img = np.zeros((bsz, h * p, w * p, ch))
        for i in range(h):
            for j in range(w):
                img[:, i * p:(i + 1) * p, j * p:(j + 1) * p, :] = \
                    x[:, i * w + j].reshape(bsz, p, p, ch)
        return img
    tg, te, st = unpatch(target, ct), unpatch(teacher, 4), unpatch(student, 4)
    o = (a * ((tg[..., :3] - te[..., :3]) ** 2).mean(-1)
         + b * ((te[..., :3] - st[..., :3]) ** 2).mean(-1)
         + c * np.clip((te[..., 3] + 1) / 2, 0, 1))
    if resolution == "token":
        return o.reshape(bsz, h, p, w, p).mean(axis=(2, 4))
    return o


@pytest.mark.parametrize("resolution", ["pixel", "token"])
@pytest.mark.parametrize("target_channels", [3, 4])
def test_anomaly_maps_vs_numpy(resolution, target_channels):
    g = torch.Generator().manual_seed(9)
    bsz, h, w, p = 2, 3, 4, 2
    target = torch.rand(bsz, h * w, p * p * target_channels, generator=g) * 2 - 1
    teacher = torch.rand(bsz, h * w, p * p * 4, generator=g) * 2.4 - 1.2  # y beyond [-1, 1]
    student = torch.rand(bsz, h * w, p * p * 4, generator=g) * 2 - 1
    got = anomaly_maps(target, teacher, student, grid=(h, w), patch=p, a=0.7, b=1.3, c=0.5,
                       resolution=resolution)
    want = np_maps(target.double().numpy(), teacher.double().numpy(),
                   student.double().numpy(), h, w, p, 0.7, 1.3, 0.5, resolution)
    assert got.dtype == torch.float32
    assert got.shape == ((bsz, h * p, w * p) if resolution == "pixel" else (bsz, h, w))
    np.testing.assert_allclose(got.double().numpy(), want, rtol=1e-5, atol=1e-6)


def test_anomaly_maps_rejects_bad_shapes():
    t = torch.zeros(1, 6, 16)
    with pytest.raises(ValueError):
        anomaly_maps(t, t, t, grid=(2, 2), patch=2)  # L = 6 != 4
    with pytest.raises(ValueError):
        anomaly_maps(t, t, t, grid=(2, 3), patch=3)  # 16 != 3*3*4
    with pytest.raises(ValueError):
        anomaly_maps(t, t, t, grid=(2, 3), patch=2, resolution="frame")


def test_maps_to_scores_pipeline():
    # the two stages together: token maps feed smooth_scores
    g = torch.Generator().manual_seed(10)
    tea = torch.rand(6, 8, 16, generator=g) * 2 - 1
    maps = anomaly_maps(tea[..., :12], tea, tea * 0.9, grid=(2, 4), patch=2,
                        resolution="token")
    scores = smooth_scores(maps, [4, 2], window=(3, 1, 3), support=3, sigma=1.0)
    want = np_smooth(maps.numpy(), [4, 2], (3, 1, 3), "box", 1.0, 3, "centered")
    np.testing.assert_allclose(scores.numpy(), want, rtol=1e-5, atol=1e-6)
    assert math.isfinite(float(scores.sum()))


def test_streaming_ring_reuses_slots():
    """Streams that leave free their ring rows for the next ones: the ring grows with the
    most streams open at once, not with the streams ever seen."""
    sm = StreamingSmoother(4, 4, window=(3, 3, 3), sigma=None, support=None)
    for i in range(5):
        sm.add_stream(i)
    rows = sm._ring.shape[0]
    assert rows >= 5 and sm._ring.shape[1:] == (3, 4, 4)
    for rnd in range(20):
        sm.step(_maps(5, 4, 4, seed=rnd), ids=sm.streams)
        gone = sm.streams[0]
        sm.remove_stream(gone)
        sm.add_stream(100 + rnd)
    assert sm._ring.shape[0] == rows


@pytest.mark.parametrize("centre_only", [False, True])
def test_reference_batches_videos_of_equal_length(monkeypatch, centre_only):
    """Videos of equal length are filtered in batches; any batch size gives the per-video
    result (numpy), in the videos' order, with lengths interleaved."""
    import aedfast.kernels.smoothing as sm_mod

    lengths = [3, 5, 3, 1, 5, 3]
    maps = _maps(sum(lengths), 6, 7, seed=41)
    lens = torch.tensor(lengths)
    want = np_filter_max(maps.numpy(), lengths, (3, 3, 3), "gaussian")
    if centre_only:
        starts = np.cumsum([0] + lengths[:-1])
        want = want[[s + n // 2 for s, n in zip(starts, lengths)]]
    for batch_values in (1, 6 * 7 * 5 * 2, 1 << 24):
        monkeypatch.setattr(sm_mod, "_BATCH_VALUES", batch_values)
        got = filter_frame_max_reference(maps, lens, (3, 3, 3), "gaussian", centre_only)
        _close(got, want)


def test_streaming_batched_form_checks():
    """The batched form ([S, h, w] + ids) names the bad stream and changes no state on error."""
    sm = StreamingSmoother(3, 4, window=(3, 3, 3), sigma=2.0, support=5)
    for sid in ("a", "b", "c"):
        sm.add_stream(sid)
    frames = _maps(3, 3, 4, seed=50)
    with pytest.raises(ValueError, match="twice"):
        sm.step(frames, ids=["a", "a", "b"])
    bad = frames.clone()
    bad[1, 0, 0] = float("nan")
    with pytest.raises(ValueError, match="'b'.*NaN"):
        sm.step(bad, ids=["a", "b", "c"])
    with pytest.raises(ValueError, match=r"\[S, 3, 4\]"):
        sm.step(frames[:, :2], ids=["a", "b", "c"])
    # nothing advanced: batched and per-stream feeding from here give the same scores
    twin = StreamingSmoother(3, 4, window=(3, 3, 3), sigma=2.0, support=5)
    for sid in ("a", "b", "c"):
        twin.add_stream(sid)
    video = _maps(12, 3, 4, seed=51)
    seen: dict[str, list] = {sid: [] for sid in "abc"}
    for t in range(12):
        x = video[t:t + 1].expand(3, 3, 4) * torch.tensor([1.0, 2.0, 3.0])[:, None, None]
        got = sm.step(x, ids=["a", "b", "c"])
        want = twin.step({sid: x[i] for i, sid in enumerate("abc")})
        assert got == want
        for sid, scores in got.items():
            seen[sid] += scores
    for sid in "abc":
        seen[sid] += sm.remove_stream(sid)
    # and the batched form equals the offline result (stream b saw 2x the video)
    offline = smooth_scores(video * 2.0, window=(3, 3, 3), sigma=2.0, support=5).numpy()
    assert [f for f, _ in seen["b"]] == list(range(12))
    np.testing.assert_allclose([v for _, v in seen["b"]], offline, rtol=1e-5, atol=1e-6)


# -- preset sizes (CUDA) -----------------------------------------------------------------


def _preset_map_sizes() -> list[tuple[int, int]]:
    """The presets' anomaly-map sizes: 20x40 tokens, 320x640 and 160x320 pixels."""
    from aedfast.model import get_preset

    sizes = []
    for preset in ("avenue", "shanghaitech"):
        cfg = get_preset(preset)
        sizes += [s for s in (cfg.grid, cfg.img_size) if s not in sizes]
    return sizes


@pytest.mark.gpu  # CUDA-only (no `device` fixture): tests/conftest.py skips it elsewhere
@pytest.mark.parametrize("kind", ["box", "gaussian"])
@pytest.mark.parametrize("size", _preset_map_sizes(), ids=lambda s: f"{s[0]}x{s[1]}")
def test_kernels_at_preset_sizes(size, kind):
    """The fused 3D filter + frame max with its default (production) tiles, and the temporal
    Gaussian, on CUDA at the presets' map sizes, window 9x9x9 and support 37 (the defaults),
    against the torch references on the same device; and smooth_scores, which dispatches to
    them, against the references chained."""
    h, w = size
    g = torch.Generator(device="cuda").manual_seed(h)
    lengths = torch.tensor([300, 157], device="cuda")
    maps = torch.rand(int(lengths.sum()), h, w, device="cuda", generator=g)
    want = filter_frame_max_reference(maps, lengths, (9, 9, 9), kind)
    got = filter_frame_max_triton(maps, lengths, (9, 9, 9), kind)
    torch.testing.assert_close(got, want, **TOL)
    for protocol in ("centered", "official"):
        torch.testing.assert_close(temporal_gaussian_triton(want, lengths, 37, 11.0, protocol),
                                   temporal_gaussian_reference(want, lengths, 37, 11.0, protocol),
                                   **TOL)
    smoothed = smooth_scores(maps, lengths, window=(9, 9, 9), window_kind=kind, sigma=11.0,
                             support=37)
    torch.testing.assert_close(smoothed, temporal_gaussian_reference(want, lengths, 37, 11.0),
                               **TOL)
