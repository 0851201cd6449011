"""Score smoothing: Triton kernels (interpreted on the CPU) and the torch reference against
scipy.ndimage + numpy + an independent numpy version of docs/design.md §5's filter; streaming
against offline; the pixel/token map function against numpy."""

from __future__ import annotations

import os

import numpy as np
import pytest
import scipy.ndimage as ndi
import torch

from aedfast.kernels import smooth_scores
from aedfast.kernels.smoothing import filter_frame_max_reference, filter_frame_max_triton
from aedfast.kernels.temporal import temporal_gaussian_reference, temporal_gaussian_triton
from aedfast.stream import StreamingSmoother

ON_GPU = os.environ.get("AEDFAST_TEST_GPU", "0") == "1"
# GPU: FMA contraction and other summation orders than the interpreter's numpy (float32).
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
    """docs/design.md §5 written out: g over support 1..R-1, centre at index len//2 - 1, zero
    padding of len(g)//2 and a 'valid' correlation."""
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


def random_maps(n: int, h: int, w: int, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    # signed values: the max must not rely on maps being >= 0
    return torch.randn(n, h, w, generator=g) - 0.2


def _close(a: torch.Tensor, b: np.ndarray) -> None:
    np.testing.assert_allclose(a.detach().cpu().double().numpy(), b, **TOL)


# -- 3D filter + frame max ---------------------------------------------------------------

@pytest.mark.parametrize("kind", ["box", "gaussian"])
@pytest.mark.parametrize("window", [(3, 3, 3), (5, 3, 7), (1, 5, 1), (1, 1, 1)])
def test_filter_max_triton_and_reference_vs_scipy(device, kind, window):
    maps = random_maps(sum(LENGTHS), 6, 11)
    lens = torch.tensor(LENGTHS)
    want = np_filter_max(maps.numpy(), LENGTHS, window, kind)
    _close(filter_frame_max_reference(maps, lens, window, kind), want)
    _close(filter_frame_max_triton(maps.to(device), lens.to(device), window, kind), want)


@pytest.mark.parametrize("kind", ["box", "gaussian"])
def test_filter_max_triton_many_tiles_and_chunks(device, kind):
    # Small forced tiles/chunks: tile seams, chunk seams inside a video, windows wider than
    # the map (13 > 9 rows... columns), a video shorter than the temporal window.
    lengths = [7, 2, 1, 5]
    maps = random_maps(sum(lengths), 20, 9, seed=1)
    lens = torch.tensor(lengths)
    window = (5, 7, 13)
    want = np_filter_max(maps.numpy(), lengths, window, kind)
    got = filter_frame_max_triton(maps.to(device), lens.to(device), window, kind,
                                  tiles=(16, 16), chunk=3)
    _close(got, want)


@pytest.mark.parametrize("shape", [(1, 9), (7, 1), (1, 1)])
def test_filter_max_triton_degenerate_frames(device, shape):
    # one-row / one-column / one-pixel maps (sizes of 1 are specialised by the compiler)
    maps = random_maps(4, *shape, seed=12)
    want = np_filter_max(maps.numpy(), [3, 1], (3, 3, 5), "box")
    _close(filter_frame_max_triton(maps.to(device), torch.tensor([3, 1], device=device),
                                   (3, 3, 5)), want)
    got = temporal_gaussian_triton(maps[:1, 0, :1].reshape(1).to(device),
                                   torch.tensor([1], device=device), 1, 1.0, "official")
    _close(got, np_temporal(maps[:1, 0, :1].reshape(1).numpy(), [1], 1, 1.0, "official"))


@pytest.mark.parametrize("kind", ["box", "gaussian"])
def test_filter_max_centre_only(device, kind):
    # The streaming form: one packed window per video, only its middle frame filtered.
    maps = random_maps(15, 5, 8, seed=2)
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


def _blocks() -> list[tuple[int, int]]:
    """The distinct (BRH, BCH) blocks of the fused filter's autotune list."""
    from aedfast.kernels.smoothing import FILTER_CONFIGS

    return sorted({(c.kwargs["BRH"], c.kwargs["BCH"]) for c in FILTER_CONFIGS})


def test_filter_autotune_pruning():
    """What the autotuner may time (with more than one entry: on a GPU): blocks that leave at
    least half for outputs and are no larger than the whole map needs (or the smallest)."""
    from aedfast.kernels.smoothing import FILTER_CONFIGS, prune_filter_configs

    def kept(h, w, k):
        cfgs = prune_filter_configs(FILTER_CONFIGS, {"H": h, "W": w}, KT=k, KH=k, KW=k)
        return sorted({(c.kwargs["BRH"], c.kwargs["BCH"]) for c in cfgs})

    assert kept(20, 40, 9) == [(16, 64), (32, 64)]  # token maps: 28 x 48 with the halo
    assert kept(320, 640, 9) == _blocks()
    assert kept(320, 640, 17) == [(32, 64), (32, 128), (64, 64), (64, 128)]
    assert kept(1, 1, 3) == [(16, 64)]  # the smallest block
    assert kept(320, 640, 41) == [(32, 64)]  # none fits: the launcher pins its own block


@pytest.mark.parametrize("tiles", _blocks(), ids=lambda t: f"{t[0]}x{t[1]}")
def test_filter_max_triton_every_autotune_block(device, tiles):
    # Whichever block the autotuner picks: row and column tiles of a 40 x 140 map, ragged
    # edges, a chunk seam inside a video (the running sum restarts), a one-frame video.
    lengths = [3, 1]
    maps = random_maps(sum(lengths), 40, 140, seed=30)
    lens = torch.tensor(lengths)
    for kind, window in (("box", (3, 9, 9)), ("gaussian", (1, 5, 9))):
        want = np_filter_max(maps.numpy(), lengths, window, kind)
        _close(filter_frame_max_triton(maps.to(device), lens.to(device), window, kind,
                                       tiles=tiles, chunk=2), want)


@pytest.mark.parametrize("kind", ["box", "gaussian"])
@pytest.mark.parametrize("size,tiles", [((20, 40), None), ((320, 640), (64, 128))],
                         ids=["tokens_20x40", "pixels_320x640"])
def test_filter_max_triton_production_shapes(device, kind, size, tiles):
    """Avenue's map sizes at the production window 9x9x9: token maps through the autotuned
    launcher (under the interpreter its first entry, the 32 x 64 block the pruning keeps for
    them), pixel maps with a 64 x 128 block (56 x 120 outputs per tile, 6 x 6 tiles, ragged
    last ones); few frames (interpreter time), two videos, against the reference and scipy."""
    lengths = [2, 1] if size[0] > 100 else [5, 2]
    g = torch.Generator().manual_seed(size[0])
    maps = torch.rand(sum(lengths), *size, generator=g)  # anomaly maps are >= 0
    lens = torch.tensor(lengths)
    want = np_filter_max(maps.numpy(), lengths, (9, 9, 9), kind)
    _close(filter_frame_max_reference(maps, lens, (9, 9, 9), kind), want)
    _close(filter_frame_max_triton(maps.to(device), lens.to(device), (9, 9, 9), kind,
                                   tiles=tiles), want)


def test_filter_max_triton_window_wider_than_every_block(device):
    # no autotune entry leaves half a block for outputs: the launcher pins a block itself
    maps = random_maps(3, 30, 50, seed=31)
    want = np_filter_max(maps.numpy(), [3], (3, 21, 35), "box")
    _close(filter_frame_max_triton(maps.to(device), torch.tensor([3], device=device),
                                   (3, 21, 35)), want)


@pytest.mark.filterwarnings("ignore::RuntimeWarning")  # the interpreter's numpy on inf
@pytest.mark.parametrize("kind", ["box", "gaussian"])
def test_filter_max_triton_flags_non_finite_in_any_tile(device, kind):
    # one bad pixel in the last tile of the last chunk, and a float32 overflow of the box
    maps = random_maps(7, 20, 70, seed=32)
    maps[6, 19, 69] = float("nan")
    with pytest.raises(ValueError, match="NaN or inf"):
        filter_frame_max_triton(maps.to(device), torch.tensor([2, 5], device=device),
                                (3, 3, 5), kind, tiles=(16, 32), chunk=2)
    if kind == "box":
        huge = torch.full((3, 4, 4), 3e37)  # finite; its 27-term sums are not
        with pytest.raises(ValueError, match="overflows"):
            filter_frame_max_triton(huge.to(device), torch.tensor([3], device=device),
                                    (3, 3, 3))


@pytest.mark.filterwarnings("ignore::RuntimeWarning")  # the interpreter's numpy on inf
@pytest.mark.parametrize("bad", [float("nan"), float("inf")])
def test_filter_max_check_false_gives_nan_scores_instead_of_raising(device, bad):
    """check=False (the Detector's loop: no host read) folds NaN/inf into the scores: every
    score of the call is NaN, for both implementations and through smooth_scores."""
    maps = random_maps(7, 20, 70, seed=33)
    clean = filter_frame_max_reference(maps, [2, 5], (3, 3, 5), "box", check=False)
    assert torch.isfinite(clean).all()  # clean maps: the same scores as with check
    _close(clean, filter_frame_max_reference(maps, [2, 5], (3, 3, 5), "box"))
    maps[6, 19, 69] = bad
    ref = filter_frame_max_reference(maps, [2, 5], (3, 3, 5), "box", check=False)
    got = filter_frame_max_triton(maps.to(device), [2, 5], (3, 3, 5), "box", check=False,
                                  tiles=(16, 32), chunk=2)
    assert torch.isnan(ref).all() and torch.isnan(got.cpu()).all()
    assert torch.isnan(smooth_scores(maps, [2, 5], window=3, check=False)).all()
    with pytest.raises(ValueError, match="NaN or inf"):
        smooth_scores(maps, [2, 5], window=3)


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
    maps = random_maps(sum(LENGTHS), 6, 7, seed=4)
    want = np_smooth(maps.numpy(), LENGTHS, (3, 5, 3), kind, 2.0, 5, protocol)
    got = smooth_scores(maps, LENGTHS, window=(3, 5, 3), window_kind=kind, sigma=2.0,
                        support=5, protocol=protocol)
    assert got.dtype == torch.float32 and got.shape == (sum(LENGTHS),)
    np.testing.assert_allclose(got.double().numpy(), want, rtol=1e-5, atol=2e-6)


def test_smooth_scores_defaults_and_switches():
    maps = random_maps(30, 8, 8, seed=5)
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
    a, b = random_maps(6, 5, 5, seed=6), random_maps(4, 5, 5, seed=7) + 3.0
    both = smooth_scores(torch.cat([a, b]), [6, 4], window=(5, 3, 3), support=5, sigma=2.0)
    np.testing.assert_allclose(both[:6].numpy(), smooth_scores(a, window=(5, 3, 3), support=5,
                                                               sigma=2.0).numpy(), rtol=1e-6)
    np.testing.assert_allclose(both[6:].numpy(), smooth_scores(b, window=(5, 3, 3), support=5,
                                                               sigma=2.0).numpy(), rtol=1e-6)


@pytest.mark.filterwarnings("ignore::RuntimeWarning")  # the interpreter's numpy on inf
@pytest.mark.parametrize("bad", [float("nan"), float("inf"), float("-inf")])
def test_non_finite_maps_raise(device, bad):
    maps = random_maps(6, 4, 5)
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
        smooth_scores(random_maps(8, 4, 4), **kwargs)


def test_smooth_scores_rejects_bad_maps():
    with pytest.raises(ValueError):
        smooth_scores(torch.zeros(4, 4))
    with pytest.raises(ValueError):
        smooth_scores(torch.zeros(4, 4, 4, dtype=torch.int64))
    with pytest.raises(TypeError):
        smooth_scores(np.zeros((4, 4, 4)))


def test_smooth_scores_torch_compile_fullgraph():
    """Lengths are host ints (the ops' schema is int[]: no device read), so a compiled
    caller passes them as ints; the result equals the eager call with a lengths tensor."""
    maps = random_maps(12, 6, 6, seed=8)
    lens = [5, 7]

    def fn(m, ln):
        return smooth_scores(m, ln, window=(3, 3, 3), sigma=2.0, support=5, protocol="official")

    compiled = torch.compile(fn, fullgraph=True, backend="aot_eager")  # fakes traced
    np.testing.assert_allclose(compiled(maps, lens).numpy(),
                               fn(maps, torch.tensor(lens)).numpy())


# -- streaming -------------------------------------------------------------------------------


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


@pytest.mark.parametrize("centre_only", [False, True])
def test_reference_batches_videos_of_equal_length(monkeypatch, centre_only):
    """Videos of equal length are filtered in batches; any batch size gives the per-video
    result (numpy), in the videos' order, with lengths interleaved."""
    import aedfast.kernels.smoothing as sm_mod

    lengths = [3, 5, 3, 1, 5, 3]
    maps = random_maps(sum(lengths), 6, 7, seed=41)
    lens = torch.tensor(lengths)
    want = np_filter_max(maps.numpy(), lengths, (3, 3, 3), "gaussian")
    if centre_only:
        starts = np.cumsum([0] + lengths[:-1])
        want = want[[s + n // 2 for s, n in zip(starts, lengths)]]
    for batch_values in (1, 6 * 7 * 5 * 2, 1 << 24):
        monkeypatch.setattr(sm_mod, "_BATCH_VALUES", batch_values)
        got = filter_frame_max_reference(maps, lens, (3, 3, 3), "gaussian", centre_only)
        _close(got, want)


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
