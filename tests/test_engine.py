"""Tests of aedfast.engine: pre-processing, offline scoring, streaming, bad input, memory.

All on the CPU with the tiny preset (or a smaller custom config); the compiled path is
compiled once per module (fixture). Independent checks: cv2.resize for the resize, numpy for
the pixel maps and the official temporal filter (SPEC §5), direct model calls for the step.
"""

from __future__ import annotations

import gc
import os
import warnings
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from aedfast.engine import (
    Detector,
    DetectorStream,
    Smoothing,
    VideoResult,
    _ChunkFilter,
    frame_noise,
)
from aedfast.frames import cv2_resize, list_frame_files
from aedfast.kernels.smoothing import smooth_scores
from aedfast.model import AEDMAE, AEDConfig, unpatchify

FRAME = (72, 136)  # source frames: not the tiny preset's 64 x 128, so every path resizes


def _perturb_bn(model: AEDMAE, seed: int = 0) -> AEDMAE:
    """Non-trivial BatchNorm statistics, so that folding them is actually tested."""
    g = torch.Generator().manual_seed(seed)
    for m in model.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.copy_(torch.rand(m.running_mean.shape, generator=g) * 0.2 - 0.1)
            m.running_var.copy_(torch.rand(m.running_var.shape, generator=g) + 0.5)
            m.weight.data.copy_(torch.rand(m.weight.shape, generator=g) + 0.5)
    return model.eval()


@pytest.fixture(scope="module")
def model() -> AEDMAE:
    torch.manual_seed(0)
    return _perturb_bn(AEDMAE.from_preset("tiny"))


@pytest.fixture(scope="module")
def video() -> np.ndarray:
    """A moving square over noise: 23 BGR frames of FRAME size."""
    rng = np.random.default_rng(0)
    T = 23
    v = rng.integers(0, 60, (T, *FRAME, 3), dtype=np.uint8)
    for t in range(T):
        v[t, 20:40, 4 * t:4 * t + 20] = (200, 120, 30)
    return v


@pytest.fixture(scope="module")
def eager(model) -> Detector:
    return Detector(model, backend="eager", compile=False, batch_size=8)


@pytest.fixture(scope="module")
def eager_result(eager, video) -> VideoResult:
    return eager.score_video(video, return_maps=True)


@pytest.fixture(scope="module")
def compiled(model) -> Detector:
    """The CPU fast path: "torch" backend compiled by inductor (compiled once per module)."""
    return Detector(model, compile=True, batch_size=8)


def _rel(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.abs(a - b).max() / max(np.abs(b).max(), 1e-12))


# ----------------------------------------------------------------------------- noise


def test_frame_noise_properties():
    t = torch.tensor([0, 1, 2, 1000, 2**31 + 5])
    n = frame_noise(7, t, 800)
    assert n.shape == (5, 800) and n.dtype == torch.float64
    assert float(n.min()) >= 0.0 and float(n.max()) < 1.0
    for row in n:  # keys of one frame are all distinct: argsort is tie-free
        assert torch.unique(row).numel() == 800
    # a function of (seed, frame, token) only: batch composition does not matter
    assert torch.equal(frame_noise(7, t[2:4], 800), n[2:4])
    assert not torch.equal(frame_noise(8, t, 800), n)
    assert not torch.equal(n[0], n[1])
    # roughly uniform, and the kept half is a different set for different frames
    many = frame_noise(0, torch.arange(200), 128)
    assert abs(float(many.mean()) - 0.5) < 0.01
    keep = torch.argsort(many, dim=1)[:, :64]
    same = (torch.sort(keep[0]).values == torch.sort(keep[1]).values).all()
    assert not bool(same)


# ----------------------------------------------------------------------------- pre-processing


@pytest.mark.parametrize("size,out", [((72, 136), (64, 128)), ((64, 128), (64, 128)),
                                      ((50, 90), (64, 128)), ((120, 300), (64, 128)),
                                      ((33, 257), (64, 128)), ((360, 640), (320, 640)),
                                      ((480, 856), (160, 320)), ((240, 360), (320, 640))])
def test_cv2_resize_is_bit_exact(size, out):
    """The device resize reproduces cv2.resize(INTER_LINEAR) exactly (the official pipeline's
    pre-processing), up- and down-scaling, including the two official frame sizes."""
    rng = np.random.default_rng(1)
    frames = rng.integers(0, 256, (2, *size, 3), dtype=np.uint8)
    frames[0] = cv2.GaussianBlur(frames[0], (5, 5), 2)
    got = cv2_resize(torch.from_numpy(frames).permute(0, 3, 1, 2), out).permute(0, 2, 3, 1)
    for i in range(2):
        ref = cv2.resize(frames[i], (out[1], out[0]), interpolation=cv2.INTER_LINEAR)
        np.testing.assert_array_equal(got[i].numpy(), ref)


def test_preprocess_resizes_like_cv2(eager, video):
    out = eager.preprocess(video[:3]).numpy()
    assert out.dtype == np.uint8 and out.shape == (3, 3, 64, 128)
    for i in range(3):
        ref = cv2.resize(video[i], (128, 64), interpolation=cv2.INTER_LINEAR)
        np.testing.assert_array_equal(out[i].transpose(1, 2, 0), ref)


def test_host_and_tensor_resize_agree(eager, video):
    """The CPU path resizes with OpenCV on the host; the device path with `cv2_resize`: same
    bytes, so CPU and GPU runs see the same input."""
    host = eager.preprocess(video[:3])
    dev = cv2_resize(torch.from_numpy(video[:3]).permute(0, 3, 1, 2), (64, 128))
    assert torch.equal(host, dev)


def test_preprocess_channels(eager):
    rng = np.random.default_rng(2)
    bgr = rng.integers(0, 256, (2, *FRAME, 3), dtype=np.uint8)
    grey = bgr[..., 0]
    ref_grey = eager.preprocess(np.repeat(grey[..., None], 3, axis=-1))
    assert torch.equal(eager.preprocess(grey), ref_grey)
    assert torch.equal(eager.preprocess(grey[..., None]), ref_grey)
    bgra = np.concatenate([bgr, np.full((2, *FRAME, 1), 255, np.uint8)], axis=-1)
    assert torch.equal(eager.preprocess(bgra), eager.preprocess(bgr))
    rgb = np.ascontiguousarray(bgr[..., ::-1])
    assert torch.equal(eager.preprocess(rgb, channel_order="rgb"), eager.preprocess(bgr))
    with pytest.raises(TypeError, match="uint8"):
        eager.preprocess(bgr.astype(np.float32))
    with pytest.raises(ValueError, match="T, H, W, 3"):
        eager.preprocess(bgr[..., :2])


# ----------------------------------------------------------------------------- offline scoring


def _numpy_reference(model: AEDMAE, video: np.ndarray, seed: int = 0) -> tuple[np.ndarray, ...]:
    """Pixel maps and raw scores computed directly: cv2 resize, the SPEC §2 stack, one model
    call with the engine's noise, the o_t formula in numpy (a = b = c = 1)."""
    H, W = model.config.img_size
    p = model.config.patch_size
    T = len(video)
    frames = np.stack([cv2.resize(f, (W, H), interpolation=cv2.INTER_LINEAR) for f in video])
    x = (frames.astype(np.float32) - 127.5) / 127.5  # [T, H, W, 3]
    x = torch.from_numpy(x).permute(0, 3, 1, 2)
    stack = []
    for t in range(T):
        prev = t - 3 if t >= 3 else t
        nxt = t + 3 if t + 3 < T else t
        stack.append(torch.cat([x[prev], x[t], x[nxt]]))
    with torch.inference_mode():
        noise = frame_noise(seed, torch.arange(T), model.config.num_tokens)
        out = model(torch.stack(stack), noise=noise)
    grid = model.config.grid
    tea = unpatchify(out.teacher, p, grid).numpy()
    stu = unpatchify(out.student, p, grid).numpy()
    tgt = x.numpy()
    e_rec = ((tgt - tea[:, :3]) ** 2).mean(1)
    e_dis = ((tea[:, :3] - stu[:, :3]) ** 2).mean(1)
    y = np.clip((tea[:, 3] + 1) / 2, 0, 1)
    maps = e_rec + e_dis + y
    return maps, maps.max(axis=(1, 2)), out


def test_score_video_matches_direct_computation(model, video, eager_result):
    res = eager_result
    T = len(video)
    assert isinstance(res, VideoResult) and res.frames == T and len(res) == T
    assert res.scores.shape == (T,) and res.raw_scores.shape == (T,)
    assert np.isfinite(res.scores).all() and res.fps > 0
    maps, raw, _ = _numpy_reference(model, video)
    assert res.maps.shape == (T, 64, 128)
    np.testing.assert_allclose(res.maps, maps, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(res.raw_scores, raw, rtol=1e-5)
    # the smoothed scores are smooth_scores over the whole volume of maps (chunking exact)
    ref = smooth_scores(torch.from_numpy(res.maps)).numpy()
    np.testing.assert_allclose(res.scores, ref, rtol=1e-5, atol=1e-6)


def test_cls_head_term_adds_its_probability(model, video, eager_result):
    """Smoothing.d adds d * sigmoid(cls_logit) to every pixel of a frame's map."""
    det = Detector(model, backend="eager", compile=False, smoothing={"d": 2.0})
    res = det.score_video(video, return_maps=True)
    _, raw, out = _numpy_reference(model, video)
    prob = 1 / (1 + np.exp(-out.cls_logit.numpy()))
    np.testing.assert_allclose(res.raw_scores, raw + 2.0 * prob, rtol=1e-5)
    np.testing.assert_allclose(res.maps - eager_result.maps, np.broadcast_to(
        2.0 * prob[:, None, None], res.maps.shape), rtol=1e-4, atol=1e-5)


def test_same_video_twice_and_batch_size_independent(model, video, eager_result):
    again = Detector(model, backend="eager", compile=False, batch_size=8).score_video(video)
    np.testing.assert_array_equal(again.scores, eager_result.scores)
    np.testing.assert_array_equal(again.raw_scores, eager_result.raw_scores)
    odd = Detector(model, backend="eager", compile=False, batch_size=3).score_video(video)
    np.testing.assert_allclose(odd.raw_scores, eager_result.raw_scores, rtol=1e-5)
    other_seed = Detector(model, backend="eager", compile=False, seed=1).score_video(video)
    assert not np.allclose(other_seed.raw_scores, eager_result.raw_scores)


@pytest.mark.parametrize("n", [17, 40, 64, 100])
@pytest.mark.parametrize("window", [(9, 9, 9), (3, 5, 5), (1, 3, 3), None])
def test_chunk_filter_equals_whole_volume(n, window):
    maps = torch.rand(n, 6, 10, generator=torch.Generator().manual_seed(n))
    sm = Smoothing(window=window)
    f = _ChunkFilter(sm, "paper", min_chunk=5)
    rng = np.random.default_rng(n)
    i = 0
    while i < n:
        k = int(rng.integers(1, 12))
        f.push(maps[i:i + k])
        i += k
    got = f.finish()
    ref = smooth_scores(maps, window=window, sigma=None)
    assert got.shape == (n,)
    torch.testing.assert_close(got, ref, rtol=1e-6, atol=1e-6)


def test_torch_backend_and_compiled_equal_eager(model, video, eager_result, compiled):
    fast = Detector(model, compile=False, batch_size=8)
    assert fast.backend == "torch"
    r = fast.score_video(video)
    assert _rel(r.raw_scores, eager_result.raw_scores) <= 1e-4
    assert _rel(r.scores, eager_result.scores) <= 1e-4
    assert compiled.compiled and compiled.backend == "torch"
    rc = compiled.score_video(video)
    assert _rel(rc.raw_scores, eager_result.raw_scores) <= 1e-4
    assert _rel(rc.scores, eager_result.scores) <= 1e-4
    # a partial last batch is padded to a bucket; padding never leaks into the scores
    rc2 = compiled.score_video(video[:11])
    ref = Detector(model, backend="eager", compile=False).score_video(video[:11])
    assert _rel(rc2.raw_scores, ref.raw_scores) <= 1e-4


def test_bf16_within_tolerance(model, video, eager_result):
    """bf16 (weights and activations; float32 accumulation): documented tolerance 2e-2
    relative on frame scores for the tiny preset on the CPU."""
    r = Detector(model, compile=False, precision="bf16").score_video(video)
    assert r.info["precision"] == "bf16"
    assert _rel(r.raw_scores, eager_result.raw_scores) < 2e-2
    assert _rel(r.scores, eager_result.scores) < 2e-2


def test_official_protocol(model, video):
    det = Detector(model, backend="eager", compile=False, protocol="official")
    res = det.score_video(video)
    _, _, out = _numpy_reference(model, video)
    p = model.config.patch_size
    H, W = model.config.img_size
    frames = np.stack([cv2.resize(f, (W, H), interpolation=cv2.INTER_LINEAR) for f in video])
    x = (frames.astype(np.float32) - 127.5) / 127.5
    tgt = np.concatenate([x, -np.ones_like(x[..., :1])], axis=-1)  # [T, H, W, 4]
    h, w = model.config.grid
    tgt = tgt.reshape(-1, h, p, w, p, 4).transpose(0, 1, 3, 2, 4, 5).reshape(len(video), h * w, -1)
    tea, stu = out.teacher.numpy(), out.student.numpy()
    raw = (((tgt - tea) ** 2).mean(-1) + ((tea - stu) ** 2).mean(-1)).mean(-1)
    np.testing.assert_allclose(res.raw_scores, raw, rtol=1e-5)
    # SPEC §5 filt(scores, 38, 11), written out with numpy: zero padding, 'valid' correlate
    R, S = 38, 11
    support = np.arange(1, R)
    c = support[len(support) // 2 - 1]
    g = np.exp(-0.5 * ((support - c) / S) ** 2) / (S * np.sqrt(2 * np.pi))
    pad = len(g) // 2
    s = np.concatenate([np.zeros(pad), res.raw_scores.astype(np.float64), np.zeros(pad)])
    ref = np.correlate(s, g, "valid")
    np.testing.assert_allclose(res.scores, ref, rtol=1e-5, atol=1e-7)
    # the shanghaitech rule: teacher L1 only, min-max per video before the filter
    st = Detector(model, backend="eager", compile=False, protocol="official",
                  official_dataset="shanghaitech").score_video(video)
    raw_st = np.abs(tgt - tea).mean(-1).mean(-1)
    np.testing.assert_allclose(st.raw_scores, raw_st, rtol=1e-5)
    mm = (st.raw_scores - st.raw_scores.min()) / (st.raw_scores.max() - st.raw_scores.min())
    assert np.isfinite(st.scores).all() and st.scores.shape == (len(video),)
    assert st.scores.max() <= mm.max() + 1e-6
    with pytest.raises(ValueError, match="paper"):
        det.score_video(video, return_maps=True)


def test_no_smoothing_and_token_maps(model, video):
    det = Detector(model, backend="eager", compile=False, smoothing=None)
    r = det.score_video(video)
    np.testing.assert_array_equal(r.scores, r.raw_scores)
    tok = Detector(model, backend="eager", compile=False, smoothing={"resolution": "token"})
    rt = tok.score_video(video, return_maps=True)
    assert rt.maps.shape == (len(video), 8, 16) and np.isfinite(rt.scores).all()
    with pytest.raises(ValueError):
        Detector(model, compile=False, smoothing={"window": (4, 4, 4)})
    with pytest.raises(ValueError):
        Detector(model, compile=False, protocol="nope")
    with pytest.raises(ValueError):
        Detector(model, compile=False, precision="fp8")


# ----------------------------------------------------------------------------- sources


def _write_video(path: Path, frames: np.ndarray) -> None:
    h, w = frames.shape[1:3]
    vw = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 25.0, (w, h))
    assert vw.isOpened()
    for f in frames:
        vw.write(f)
    vw.release()


def _decode(path: Path) -> np.ndarray:
    cap = cv2.VideoCapture(str(path))
    out = []
    while True:
        ok, f = cap.read()
        if not ok:
            break
        out.append(f)
    return np.stack(out)


def test_real_video_file_end_to_end(tmp_path, eager, video):
    path = tmp_path / "clip.avi"
    _write_video(path, video)
    res = eager.score_video(path, progress=False)
    assert res.frames == len(video)
    assert np.isfinite(res.scores).all() and np.isfinite(res.raw_scores).all()
    ref = eager.score_video(_decode(path))  # same frames as OpenCV decodes them
    np.testing.assert_allclose(res.scores, ref.scores, rtol=1e-6)
    part = eager.score_video(str(path), max_frames=9)
    assert part.frames == 9
    cam = eager.score_camera(str(path), max_frames=5)
    assert cam.frames == 5


def test_folder_of_frames_and_iterable(tmp_path, eager, video):
    folder = tmp_path / "frames"
    folder.mkdir()
    for i, f in enumerate(video):  # natural order: 2.png before 10.png
        cv2.imwrite(str(folder / f"{i}.png"), f)
    (folder / "notes.txt").write_text("not a frame")
    assert [f.name for f in list_frame_files(folder)][:3] == ["0.png", "1.png", "2.png"]
    ref = eager.score_video(video)
    np.testing.assert_allclose(eager.score_video(folder).scores, ref.scores, rtol=1e-6)
    np.testing.assert_allclose(eager.score_video(iter(list(video))).scores, ref.scores,
                               rtol=1e-6)
    np.testing.assert_allclose(eager.score_video(torch.from_numpy(video)).scores, ref.scores,
                               rtol=1e-6)


def test_bad_inputs(tmp_path, eager, video):
    bad = tmp_path / "garbage.avi"
    bad.write_bytes(os.urandom(3000))
    with pytest.raises(ValueError, match="cannot open video"):
        eager.score_video(bad)
    with pytest.raises(FileNotFoundError):
        eager.score_video(tmp_path / "missing.avi")
    with pytest.raises(ValueError, match="no frames"):
        eager.score_video(np.zeros((0, *FRAME, 3), np.uint8))
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(ValueError, match="no frame images"):
        eager.score_video(empty)
    with pytest.raises(TypeError, match="uint8"):
        eager.score_video(video.astype(np.float32))
    with pytest.raises(TypeError, match="uint8"):
        eager.score_video(torch.from_numpy(video).float())
    with pytest.raises(ValueError, match="T, H, W, 3"):
        eager.score_video(video[..., :2])
    with pytest.raises(TypeError):
        eager.score_video(3.5)
    broken = tmp_path / "frames"
    broken.mkdir()
    cv2.imwrite(str(broken / "0.png"), video[0])
    (broken / "1.png").write_bytes(b"not a png")
    with pytest.raises(ValueError, match="cannot read image"):
        eager.score_video(broken)


def test_truncated_video(tmp_path, eager, video):
    path = tmp_path / "clip.avi"
    long = np.concatenate([video, video])
    _write_video(path, long)
    data = path.read_bytes()
    cut = tmp_path / "cut.avi"
    cut.write_bytes(data[: len(data) // 2])
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            res = eager.score_video(cut)
        except ValueError as e:  # a container OpenCV refuses to open at all: a clear error
            assert "cannot open" in str(e) or "no frames" in str(e)
            return
    assert 0 < res.frames < len(long)
    assert np.isfinite(res.scores).all()
    assert any("truncated" in str(w.message) for w in caught)
    assert res.info["truncated"]


@pytest.mark.parametrize("T", [1, 2, 4])
def test_short_videos(eager, video, T):
    res = eager.score_video(video[:T])
    assert res.scores.shape == (T,) and np.isfinite(res.scores).all()


def test_grey_and_bgra_videos(eager, video):
    grey = video[..., 1]
    ref = eager.score_video(np.repeat(grey[..., None], 3, -1))
    np.testing.assert_array_equal(eager.score_video(grey).scores, ref.scores)
    bgra = np.concatenate([video, np.zeros_like(video[..., :1])], -1)
    np.testing.assert_array_equal(eager.score_video(bgra).scores,
                                  eager.score_video(video).scores)


# ----------------------------------------------------------------------------- streaming


def _collect(acc: dict, out: dict) -> None:
    for sid, items in out.items():
        acc.setdefault(sid, []).extend(items)


def test_stream_equals_offline_with_join_and_leave(eager, video):
    video = np.concatenate([video, video[::-1]])  # longer than the delay
    offline = eager.score_video(video)
    stream = eager.stream(2)
    assert isinstance(stream, DetectorStream)
    assert stream.delay == 3 + 4 + 18
    lengths = {0: len(video), 1: 15}
    got: dict = {}
    late = None
    first_score_step = None
    for step in range(len(video)):
        frames = {0: video[step]}
        if step < lengths[1]:
            frames[1] = video[step][..., ::-1].copy()  # a different stream content
        if step == 5:
            late = stream.add("late")
        if late is not None and step >= 5:
            frames[late] = video[step - 5]
        out = stream.step(frames)
        _collect(got, out)
        if first_score_step is None and out.get(0):
            first_score_step = step
            assert out[0][0][0] == 0
        if step == lengths[1] - 1:
            _collect(got, {1: stream.remove(1)})
    # frame 0 is scored when frame `delay` arrives
    assert first_score_step == stream.delay
    _collect(got, stream.close())
    assert len(stream) == 0
    s0 = np.array([s for _, s in sorted(got[0])])
    assert [t for t, _ in got[0]] == list(range(len(video)))
    np.testing.assert_allclose(s0, offline.scores, rtol=1e-5, atol=1e-6)
    s1 = np.array([s for _, s in sorted(got[1])])
    ref1 = eager.score_video(video[:lengths[1]][..., ::-1].copy()).scores
    np.testing.assert_allclose(s1, ref1, rtol=1e-5, atol=1e-6)
    sl = np.array([s for _, s in sorted(got["late"])])
    ref_late = eager.score_video(video[:len(video) - 5]).scores
    np.testing.assert_allclose(sl, ref_late, rtol=1e-5, atol=1e-6)


def test_stream_batch_input_and_growth(eager, video):
    stream = eager.stream(1, max_streams=1)
    stream.add()
    stream.add()  # grows the frame store past max_streams
    assert stream.ids == [0, 1, 2]
    batch = np.stack([video[0]] * 3)
    out = stream.step(batch)
    assert set(out) == {0, 1, 2} and all(v == [] for v in out.values())
    out = stream.step(torch.from_numpy(batch[:2]), ids=[2, 0])
    assert set(out) == {0, 2}
    with pytest.raises(ValueError, match="frames for"):
        stream.step(batch[:2])
    with pytest.raises(ValueError, match="already exists"):
        stream.add(0)


def test_stream_bad_frames_other_streams_keep_going(eager, video):
    stream = eager.stream(3)
    ref = eager.stream(1)
    got, want = {}, {}
    steps = 30  # longer than the delay, so scores come out during the steps too
    for step in range(steps):
        f = video[step % len(video)]
        frames = {0: f, 1: f, 2: f}
        if step == 4:
            frames[1] = f.astype(np.float32)  # wrong dtype
            frames[2] = cv2.resize(f, (200, 100))  # another size: resized
            frames[7] = f  # unknown stream
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            _collect(got, stream.step(frames))
        if step == 4:
            assert set(stream.last_errors) == {1, 7}
            assert "uint8" in stream.last_errors[1]
            assert len(caught) == 2
        else:
            assert stream.last_errors == {}
        _collect(want, ref.step({0: f}))
    assert len(got[0]) == steps - stream.delay
    _collect(got, stream.close())
    _collect(want, ref.close())
    # stream 0 is unaffected (batching with other streams moves only float rounding)
    assert [t for t, _ in got[0]] == [t for t, _ in want[0]]
    np.testing.assert_allclose([v for _, v in got[0]], [v for _, v in want[0]], rtol=1e-5)
    assert len(got[0]) == steps and len(got[2]) == steps
    assert len(got[1]) == steps - 1  # stream 1 lost one frame, no more
    assert np.isfinite([s for _, s in got[1] + got[2]]).all()
    strict = eager.stream(2, strict=True)
    with pytest.raises(TypeError, match="uint8"):
        strict.step({0: video[0], 1: video[0].astype(np.int16)})
    assert strict._states[0].received == 0  # nothing ingested


def test_stream_official_protocol(model, video):
    det = Detector(model, backend="eager", compile=False, protocol="official")
    s = det.stream(1)
    got: dict = {}
    for f in video:
        _collect(got, s.step([f]))
    _collect(got, s.close())
    np.testing.assert_allclose([v for _, v in sorted(got[0])], det.score_video(video).scores,
                               rtol=1e-5, atol=1e-7)
    st = Detector(model, backend="eager", compile=False, protocol="official",
                  official_dataset="shanghaitech")
    with pytest.raises(ValueError, match="min-max"):
        st.stream(1)


def test_stream_memory_flat():
    """10,000 steps of a micro model on the CPU: resident memory must not grow."""
    cfg = AEDConfig(name="micro", img_size=(16, 32), patch_size=8, embed_dim=16, depth=1,
                    num_heads=2, decoder_embed_dim=16, decoder_depth=1, decoder_num_heads=2)
    torch.manual_seed(0)
    det = Detector(AEDMAE(cfg).eval(), backend="eager", compile=False,
                   smoothing={"resolution": "token"})
    stream = det.stream(1)
    frames = np.random.default_rng(0).integers(0, 256, (1, 16, 32, 3), dtype=np.uint8)

    def rss_mb() -> float:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20

    n_scores = 0
    for _ in range(1000):  # warm-up: allocator pools, caches
        n_scores += sum(len(v) for v in stream.step(frames).values())
    gc.collect()
    start = rss_mb()
    for _ in range(9000):
        n_scores += sum(len(v) for v in stream.step(frames).values())
    gc.collect()
    growth = rss_mb() - start
    assert n_scores == 10000 - stream.delay
    assert growth < 20.0, f"resident memory grew by {growth:.1f} MB over 9000 steps"


# ----------------------------------------------------------------------------- CUDA


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_fast_paths_equal_eager(model, video, eager_result):
    """triton backend + torch.compile + CUDA graphs (fp32) equal the eager path on the same
    noise within 1e-4 relative; bf16 within the documented 2e-2; the stream equals offline."""
    old = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False
    try:
        eager = Detector(model, device="cuda", backend="eager", compile=False,
                         cuda_graphs=False, precision="fp32", batch_size=8)
        ref = eager.score_video(video)
        assert _rel(ref.raw_scores, eager_result.raw_scores) <= 1e-4  # CUDA eager = CPU eager
        fast = Detector(model, device="cuda", precision="fp32", batch_size=8)
        assert fast.backend == "triton" and fast.cuda_graphs and fast.compiled
        for src in (video, torch.from_numpy(video).cuda()):
            r = fast.score_video(src)
            assert _rel(r.raw_scores, ref.raw_scores) <= 1e-4
            assert _rel(r.scores, ref.scores) <= 1e-4
        short = fast.score_video(video[:11])  # partial batch, padded to a bucket
        assert _rel(short.raw_scores, eager.score_video(video[:11]).raw_scores) <= 1e-4
        again = fast.score_video(video)
        np.testing.assert_array_equal(again.scores, fast.score_video(video).scores)
        bf16 = Detector(model, device="cuda", batch_size=8)
        assert bf16.precision == "bf16"
        rb = bf16.score_video(video)
        assert _rel(rb.raw_scores, ref.raw_scores) < 2e-2
        assert _rel(rb.scores, ref.scores) < 2e-2
        stream = fast.stream(2)
        got: dict = {}
        for f in video:
            _collect(got, stream.step([f, torch.from_numpy(f).cuda()]))
        _collect(got, stream.close())
        for sid in (0, 1):
            np.testing.assert_allclose([v for _, v in sorted(got[sid])], ref.scores,
                                       rtol=1e-4, atol=1e-6)
    finally:
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = old
