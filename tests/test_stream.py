"""Tests of aedfast.stream: DetectorStream (streams equal offline scores, join and leave,
batched input, bad frames, the official protocol, flat memory) and the StreamingSmoother
(equal to the offline smooth_scores for any chunking, ring reuse, batched form, errors)."""

import gc
import os
import random
import warnings

import cv2
import numpy as np
import pytest
import torch

from aedfast.detector import Detector
from aedfast.kernels import smooth_scores
from aedfast.model import AEDMAE, AEDConfig
from aedfast.scoring import subtract_floor
from aedfast.stream import DetectorStream, StreamingSmoother
from tests.detector_fixtures import collect
from tests.test_smoothing import random_maps


def test_stream_equals_offline_with_join_and_leave(eager, video):
    video = np.concatenate([video, video[::-1]])  # longer than the delay
    offline = eager.score_video(video)
    stream = eager.stream(2)
    assert isinstance(stream, DetectorStream)
    sm = eager.smoothing  # the default scoring
    assert stream.delay == 3 + sm.window[0] // 2 + sm.support // 2 == 3 + 2 + 10
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
        collect(got, out)
        if first_score_step is None and out.get(0):
            first_score_step = step
            assert out[0][0][0] == 0
        if step == lengths[1] - 1:
            collect(got, {1: stream.remove(1)})
    # frame 0 is scored when frame `delay` arrives
    assert first_score_step == stream.delay
    collect(got, stream.close())
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
            collect(got, stream.step(frames))
        if step == 4:
            assert set(stream.last_errors) == {1, 7}
            assert "uint8" in stream.last_errors[1]
            assert len(caught) == 2
        else:
            assert stream.last_errors == {}
        collect(want, ref.step({0: f}))
    assert len(got[0]) == steps - stream.delay
    collect(got, stream.close())
    collect(want, ref.close())
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
    det = Detector(model, device="cpu", backend="eager", compile=False, protocol="official")
    s = det.stream(1)
    got: dict = {}
    for f in video:
        collect(got, s.step([f]))
    collect(got, s.close())
    np.testing.assert_allclose([v for _, v in sorted(got[0])], det.score_video(video).scores,
                               rtol=1e-5, atol=1e-7)
    st = Detector(model, device="cpu", backend="eager", compile=False, protocol="official",
                  official_dataset="shanghaitech")
    with pytest.raises(ValueError, match="min-max"):
        st.stream(1)


def test_stream_memory_flat():
    """10,000 steps of a micro model on the CPU: resident memory must not grow."""
    cfg = AEDConfig(name="micro", img_size=(16, 32), patch_size=8, embed_dim=16, depth=1,
                    num_heads=2, decoder_embed_dim=16, decoder_depth=1, decoder_num_heads=2)
    torch.manual_seed(0)
    det = Detector(AEDMAE(cfg).eval(), device="cpu", backend="eager", compile=False,
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




# ----------------------------------------------------------------------------- the smoother


@pytest.mark.parametrize("protocol,floor", [("centered", None), ("official", None),
                                            ("centered", 6.0)])
@pytest.mark.parametrize("kind", ["box", "gaussian"])
def test_streaming_equals_offline_any_chunking(device, protocol, kind, floor):
    rng = random.Random(11)
    h, w = 5, 6
    kw = {"window": (5, 3, 3), "window_kind": kind, "sigma": 2.5, "support": 7,
          "protocol": protocol}
    lengths = {"a": 17, "b": 1, "c": 4, "d": 11}
    videos = {sid: random_maps(n, h, w, seed=20 + i) for i, (sid, n) in enumerate(lengths.items())}
    sm = StreamingSmoother(h, w, device=device, floor=floor, **kw)
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
        if floor is not None:  # the offline floor over the whole video (one [T] loop)
            want = subtract_floor(want, floor)[0]
        np.testing.assert_allclose([s for _, s in got[sid]], want, rtol=1e-5, atol=1e-6)


def test_streaming_batched_step_flush_and_errors():
    sm = StreamingSmoother(3, 4, window=(3, 1, 1), sigma=None, support=None)
    assert sm.delay == 1
    for sid in ("x", "y"):
        sm.add_stream(sid)
    with pytest.raises(ValueError):
        sm.add_stream("x")
    frames = random_maps(2, 3, 4, seed=30)
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


def test_streaming_ring_reuses_slots():
    """Streams that leave free their ring rows for the next ones: the ring grows with the
    most streams open at once, not with the streams ever seen."""
    sm = StreamingSmoother(4, 4, window=(3, 3, 3), sigma=None, support=None)
    for i in range(5):
        sm.add_stream(i)
    rows = sm._ring.shape[0]
    assert rows >= 5 and sm._ring.shape[1:] == (3, 4, 4)
    for rnd in range(20):
        sm.step(random_maps(5, 4, 4, seed=rnd), ids=sm.streams)
        gone = sm.streams[0]
        sm.remove_stream(gone)
        sm.add_stream(100 + rnd)
    assert sm._ring.shape[0] == rows


def test_streaming_batched_form_checks():
    """The batched form ([S, h, w] + ids) names the bad stream and changes no state on error."""
    sm = StreamingSmoother(3, 4, window=(3, 3, 3), sigma=2.0, support=5)
    for sid in ("a", "b", "c"):
        sm.add_stream(sid)
    frames = random_maps(3, 3, 4, seed=50)
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
    video = random_maps(12, 3, 4, seed=51)
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
