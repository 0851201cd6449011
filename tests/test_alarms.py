"""Events from scores (aedfast.alarms, docs/design.md §13): the rule against a direct reading,
pieces against whole, when a stream raises an event, the Detector's alarms and events (map
peaks checked against the maps), streams equal to offline, the calibration file beside the
checkpoint, and the `calibrate` / `score` commands."""

from __future__ import annotations

import csv
import json
import warnings

import numpy as np
import pytest

from aedfast.alarms import (
    Event,
    EventRule,
    EventTracker,
    alarm_mask,
    events_csv,
    find_events,
    write_events,
)
from aedfast.calibration import calibrate_scores, calibration_path, detector_signature
from aedfast.cli import main
from aedfast.detector import Detector

from .alarm_support import FAST_SMOOTHING, direct_events, one_thread, small_model  # noqa: F401


def _key(events):
    return [(e.start, e.end, e.peak_frame, e.peak_score) for e in events]


@pytest.mark.parametrize("min_length,merge_gap", [(1, 0), (1, 3), (4, 0), (3, 2)])
def test_find_events_equals_a_direct_reading(min_length, merge_gap):
    rng = np.random.default_rng(min_length + 7 * merge_gap)
    rule = EventRule(min_length, merge_gap)
    for _ in range(50):
        s = np.round(np.convolve(rng.normal(size=int(rng.integers(1, 120))), np.ones(3) / 3,
                                 "same"), 2)
        th = float(rng.normal(0.3, 0.3))
        locs = rng.integers(0, 50, (len(s), 2))
        ev = find_events(s, th, rule, locs)
        assert _key(ev) == direct_events(s, th, min_length, merge_gap)
        for e in ev:
            assert (e.peak_row, e.peak_col) == tuple(locs[e.peak_frame])
            assert e.length == e.end - e.start + 1 >= min_length
        mask = alarm_mask(ev, len(s))
        assert mask.sum() == sum(e.length for e in ev)
        assert all(mask[e.start] and mask[e.end] for e in ev)


def test_tracker_in_pieces_equals_whole():
    rng = np.random.default_rng(5)
    s = rng.normal(size=500)
    rule = EventRule(2, 4)
    whole = find_events(s, 0.8, rule)
    tr = EventTracker(0.8, rule)
    got, i = [], 0
    while i < len(s):
        k = int(rng.integers(1, 9))
        got += tr.push(s[i:i + k])
        i += k
    got += tr.finish()
    assert got == whole and len(whole) > 10


def test_an_event_closes_merge_gap_plus_one_frames_after_its_last_alarm():
    tr = EventTracker(1.0, EventRule(min_length=2, merge_gap=2))
    seq = [0, 5, 3, 0, 0, 2, 0, 0, 0, 4, 0]  # frames 1-2 and 5 merge (gap 2); 9 is alone
    closed_at = {}
    for t, v in enumerate(seq):
        for e in tr.push([v]):
            closed_at[t] = e
    assert list(closed_at) == [8]  # last alarm frame 5, then frames 6, 7, 8 below
    assert closed_at[8] == Event(1, 5, 1, 5.0)
    assert tr.finish() == []  # frame 9's event is 1 frame long: below min_length


def test_events_csv_and_json(tmp_path):
    ev = [Event(3, 9, 5, 1.25, 4, 7), Event(20, 20, 20, 2.0)]
    write_events(tmp_path / "e.json", tmp_path / "e.csv", ev, {"threshold": 1.0})
    rows = list(csv.DictReader((tmp_path / "e.csv").open()))
    assert rows[0] == {"start": "3", "end": "9", "length": "7", "peak_frame": "5",
                       "peak_score": "1.25", "peak_row": "4", "peak_col": "7"}
    assert rows[1]["peak_row"] == "" and rows[1]["length"] == "1"
    data = json.loads((tmp_path / "e.json").read_text())
    assert data["threshold"] == 1.0 and data["events"][0]["peak_col"] == 7
    assert events_csv(ev[:1], ["v"]).splitlines()[1] == "v,3,9,7,5,1.25,4,7"


def _flash_video(frames: int = 72) -> np.ndarray:
    """A square moving over noise, with bright flashes: the random model's scores jump."""
    rng = np.random.default_rng(0)
    v = rng.integers(0, 60, (frames, 40, 72, 3), dtype=np.uint8)
    for t in range(frames):
        v[t, 10:22, (t % 50):(t % 50) + 12] = (200, 120, 30)
    v[20:24, 5:20, 30:60] = 255
    v[50:53, 20:35, 5:25] = 255
    return v


@pytest.fixture(scope="module")
def calibrated():
    """(model, calibration, video): a calibration of the small model's own scores of the
    flash video at 1 fps, for 3 events in its 72 s."""
    model = small_model(1)
    video = _flash_video()
    det = Detector(model, device="cpu", compile=False, batch_size=16, calibration=None,
                   smoothing=FAST_SMOOTHING)
    scores = det.score_video(video).scores
    # calibrated on this very video, the threshold would sit exactly on one of its scores,
    # where last-bit rounding decides the alarm (streams equal offline scores up to float
    # rounding); the curve of slightly raised scores keeps the threshold off every score
    shifted = scores.astype(np.float64) + 1e-5 * float(np.abs(scores).max())
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        cal = calibrate_scores([shifted], [1.0], [3 / (72 / 3600)], EventRule(2, 2),
                               detector_signature(det))
    return model, cal, video


def test_detector_events_and_their_map_peaks(calibrated, one_thread):  # noqa: F811
    model, cal, video = calibrated
    det = Detector(model, device="cpu", compile=False, batch_size=16, calibration=cal,
                   smoothing=FAST_SMOOTHING)
    res = det.score_video(video, return_maps=True)
    th = cal.threshold()
    assert det.alarm_threshold == th
    assert _key(res.events) == direct_events(res.scores, th, 2, 2)
    assert 1 <= len(res.events) <= 3
    for e in res.events:  # the peak frame's unfiltered map, its largest value
        row, col = np.unravel_index(np.argmax(res.maps[e.peak_frame]), res.maps.shape[1:])
        assert (e.peak_row, e.peak_col) == (row, col)
    np.testing.assert_array_equal(res.alarms, alarm_mask(res.events, len(video)))
    plain = Detector(model, device="cpu", compile=False, calibration=None,
                     smoothing=FAST_SMOOTHING).score_video(video[:10])
    assert plain.alarms is None and plain.events is None


def test_stream_raises_the_offline_events(calibrated, one_thread):  # noqa: F811
    model, cal, video = calibrated
    det = Detector(model, device="cpu", compile=False, batch_size=16, calibration=cal,
                   smoothing=FAST_SMOOTHING)
    offline = det.score_video(video).events
    stream = det.stream(1)
    got, when = [], []
    for t, frame in enumerate(video):
        step = stream.step({0: frame})
        assert step.events == stream.last_events
        for e in step.events.get(0, []):
            got.append(e)
            when.append(t)
    got += stream.close().events[0]
    assert [(e.start, e.end, e.peak_frame, e.peak_row, e.peak_col) for e in got] == \
        [(e.start, e.end, e.peak_frame, e.peak_row, e.peak_col) for e in offline]
    np.testing.assert_allclose([e.peak_score for e in got], [e.peak_score for e in offline],
                               rtol=1e-5)
    for e, t in zip(got, when):  # raised once merge_gap + 1 frames below the threshold are in
        assert t == e.end + cal.rule.merge_gap + 1 + stream.delay


def test_calibration_beside_the_checkpoint(tmp_path, calibrated, one_thread):  # noqa: F811
    model, cal, video = calibrated
    ck = model.save(tmp_path / "m.safetensors")
    assert calibration_path(ck) == tmp_path / "m.calibration.json"
    cal.save(calibration_path(ck))
    det = Detector(ck, device="cpu", compile=False, smoothing=FAST_SMOOTHING)
    assert det.calibration == cal
    with pytest.warns(RuntimeWarning, match=r"m\.calibration\.json not used.*smoothing\.sigma"):
        other = Detector(ck, device="cpu", compile=False)  # default smoothing: another scorer
    assert other.calibration is None
    with pytest.raises(ValueError, match="made for another scorer: .*seed: 0 .calibration. vs 1"):
        Detector(ck, device="cpu", compile=False, smoothing=FAST_SMOOTHING, seed=1,
                 calibration=calibration_path(ck))
    with pytest.raises(ValueError, match="alarm_rate needs a calibration"):
        Detector(model, device="cpu", compile=False, alarm_rate="1/h")


def test_calibrate_and_score_commands(tmp_path, capsys, one_thread):  # noqa: F811
    from aedfast.data.synthetic import generate

    ck = small_model(2).save(tmp_path / "m.safetensors")
    root = generate(tmp_path / "syn", n_train=2, n_test=1, n_val=0, frames=60, size=(32, 64),
                    progress=False)
    base = ["--no-compile", "--device", "cpu", "-q"]
    assert main(["calibrate", str(ck), *base]) == 1
    assert "does not record where its training videos are" in capsys.readouterr().err
    assert main(["calibrate", str(ck), str(root / "training/videos"), "--rates", "1/h",
                 *base]) == 1
    assert "rate 1/h cannot be calibrated" in capsys.readouterr().err
    with pytest.warns(RuntimeWarning, match="uncertain"):
        rc = main(["calibrate", str(ck), str(root), "--dataset", "shanghaitech", "--rates",
                   "30/min,45/min", "--min-length", "1", "--merge-gap", "3", *base])
    assert rc == 0
    out = capsys.readouterr().out
    assert "calibrated on 2 normal videos, 120 frames (5 s of video)" in out
    cal_file = tmp_path / "m.calibration.json"
    data = json.loads(cal_file.read_text())
    assert list(data["thresholds"]) == ["30/min", "45/min"] and data["fps"] == [25.0, 25.0]
    video = next((root / "training/videos").glob("*.avi"))
    assert main(["score", str(video), "-c", str(ck), "--out", str(tmp_path / "o"),
                 "--alarm-rate", "45/min", *base]) == 0
    got = json.loads((tmp_path / "o" / f"{video.stem}_events.json").read_text())
    assert got["threshold"] == data["thresholds"]["45/min"]
    det = Detector(ck, device="cpu", compile=False, alarm_rate="45/min")
    want = det.score_video(str(video)).events
    assert want
    assert [e["start"] for e in got["events"]] == [e.start for e in want]
    rows = list(csv.DictReader((tmp_path / "o" / f"{video.stem}_events.csv").open()))
    assert [int(r["peak_frame"]) for r in rows] == [e.peak_frame for e in want]
