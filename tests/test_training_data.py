"""The streaming training data (aedfast.training.data): each frame decoded once per epoch,
every sample once, neighbours and anomalies right, all reproducible."""

from __future__ import annotations

import numpy as np
import pytest

from aedfast.anomalies import SAMPLE_OFFSETS

from .training_support import ArrayVideo, make_videos, stream_dataset


@pytest.fixture(scope="module")
def videos():
    return make_videos()


class _Counting(ArrayVideo):
    counts: dict = {}

    def __getitem__(self, i):
        key = (self.name, int(i))
        _Counting.counts[key] = _Counting.counts.get(key, 0) + 1
        return super().__getitem__(i)


def test_each_frame_decoded_at_most_once_per_epoch(videos):
    counting = [_Counting(v.name, v.data) for v in videos]
    # small pools: a stream crosses pool boundaries, whose margin frames are carried over
    ds, plan = stream_dataset(counting, pool=8)
    steps = plan.epoch(1, 0).steps
    assert steps == 20
    _Counting.counts.clear()
    n = 0
    for step, _lane, mb in ds:
        assert step < steps
        n += len(mb["index"])
    assert n == steps * 8
    assert max(_Counting.counts.values()) == 1
    assert len(_Counting.counts) == 160  # and every frame was read


def test_every_sample_once_per_epoch_and_shuffled(videos):
    ds, plan = stream_dataset(videos)
    seen = [tuple(i) for _, _, mb in ds for i in mb["index"]]
    assert len(seen) == len(set(seen)) == 160
    first = [tuple(i) for i in next(iter(ds))[2]["index"]]
    assert first != sorted(first)
    # the next epoch is another permutation
    ds2, _ = stream_dataset(videos, start=20, stop=40)
    seen2 = [tuple(i) for _, _, mb in ds2 for i in mb["index"]]
    assert sorted(seen2) == sorted(seen) and seen2 != seen


def test_sample_frames_and_edges(videos):
    ds, _ = stream_dataset(videos)
    t0 = SAMPLE_OFFSETS.index(0)
    checked_edge = False
    for _, _, mb in ds:
        for k, (v, t) in enumerate(mb["index"]):
            data = videos[v].data
            for q, d in enumerate(SAMPLE_OFFSETS):
                want = data[t + d] if 0 <= t + d < len(data) else data[t]  # edges: frame t
                assert np.array_equal(mb["frames"][k, q], want)
                checked_edge |= not 0 <= t + d < len(data)
            assert np.array_equal(mb["clean"][k], data[t])
            assert mb["label"][k] == 0 and not mb["mask"][k].any()
        assert np.array_equal(mb["frames"][:, t0], mb["clean"])
    assert checked_edge


def test_anomaly_samples_consistent(videos):
    ds, _ = stream_dataset(videos, prob=1.0)
    t0 = SAMPLE_OFFSETS.index(0)
    n_anom = 0
    for _, _, mb in ds:
        for k, (v, t) in enumerate(mb["index"]):
            clean = videos[v].data[t]
            assert np.array_equal(mb["clean"][k], clean), "the clean target must be untouched"
            m = mb["mask"][k].astype(bool)
            assert bool(mb["label"][k]) == m.any()
            diff = (mb["frames"][k, t0] != clean).any(-1)
            assert not diff[~m].any(), "input frame t changed outside the anomaly mask"
            n_anom += int(m.any())
    assert n_anom > 100


def test_anomalies_reproducible(videos):
    a = [mb for _, _, mb in stream_dataset(videos, prob=0.5, stop=3)[0]]
    b = [mb for _, _, mb in stream_dataset(videos, prob=0.5, stop=3)[0]]
    c = [mb for _, _, mb in stream_dataset(videos, prob=0.5, stop=3, seed=1)[0]]
    assert all(np.array_equal(x["frames"], y["frames"]) for x, y in zip(a, b))
    assert not all(np.array_equal(x["frames"], y["frames"]) for x, y in zip(a, c))


def test_make_paster_takes_the_size_range():
    from aedfast.training import resolve_config
    from aedfast.training.data import make_paster

    paster, _ = make_paster(resolve_config(anomaly_size=(0.05, 0.1), anomaly_prob=0.3))
    assert paster.size == (0.05, 0.1) and paster.prob == 0.3


def test_jitter_gains():
    from aedfast.training import data as tdata

    rng = np.random.default_rng(0)
    frames = rng.integers(20, 120, (5, 6, 7, 3), dtype=np.uint8)
    assert np.array_equal(tdata.jitter_gains(frames, np.random.default_rng(1), 0.0), frames)
    out = tdata.jitter_gains(frames, np.random.default_rng(1), 0.1)
    assert out.dtype == np.uint8 and out.shape == frames.shape
    # one gain per frame: out / in is constant within a frame up to rounding
    ratio = out.astype(np.float64) / frames
    spread = ratio.reshape(5, -1).max(1) - ratio.reshape(5, -1).min(1)
    assert (spread < 2 * 0.5 / 20 + 1e-9).all()
    per_frame = np.median(ratio.reshape(5, -1), 1)
    assert len(np.unique(np.round(per_frame, 3))) == 5, "the frames flicker independently"
    assert np.array_equal(out, tdata.jitter_gains(frames, np.random.default_rng(1), 0.1))
    bright = np.full((5, 2, 2, 3), 250, np.uint8)
    hi = tdata.jitter_gains(bright, np.random.default_rng(3), 0.5)
    assert hi.max() <= 255 and (hi == 255).any()  # clipped, not wrapped
    # the gains' spread follows sigma: log-gains of many samples, common + per-frame parts
    logs = np.array([np.log(np.median(tdata.jitter_gains(np.full((5, 1, 1, 3), 100, np.uint8),
                                                         np.random.default_rng(s), 0.05)
                                      .reshape(5, -1), 1) / 100.0) for s in range(400)])
    assert abs(logs.std() - np.hypot(0.1, 0.05)) < 0.015
    with pytest.raises(ValueError, match="sigma"):
        tdata.jitter_gains(frames, rng, 0.9)
    with pytest.raises(ValueError, match="uint8"):
        tdata.jitter_gains(frames.astype(np.float32), rng, 0.1)


def test_photometric_samples(videos):
    ds, _ = stream_dataset(videos, photometric=0.1, stop=4)
    t0 = SAMPLE_OFFSETS.index(0)
    changed = 0
    for _, _, mb in ds:
        # the target is frame t as the model sees it, jittered alike
        assert np.array_equal(mb["frames"][:, t0], mb["clean"])
        for k, (v, t) in enumerate(mb["index"]):
            changed += not np.array_equal(mb["clean"][k], videos[v].data[t])
    assert changed > 0
    plain = [mb for _, _, mb in stream_dataset(videos, stop=4)[0]]
    again = [mb for _, _, mb in stream_dataset(videos, photometric=0.1, stop=4)[0]]
    jittered = [mb for _, _, mb in ds]
    assert all(np.array_equal(x["index"], y["index"]) for x, y in zip(plain, jittered))
    assert all(np.array_equal(x["frames"], y["frames"]) for x, y in zip(again, jittered))
