"""Calibration without labels (aedfast.calibration, docs/design.md §13): the event-count curve
against a direct count, the threshold rule, false-alarm rates measured on held-out normal
video (noise and the synthetic benchmark), the file and its checks."""

from __future__ import annotations

import json
import math
import warnings

import numpy as np
import pytest

from aedfast.alarms import EventRule
from aedfast.calibration import (
    Calibration,
    calibrate,
    calibrate_scores,
    container_fps,
    event_count_curve,
    parse_rate,
)
from aedfast.detector import Detector

from .alarm_support import (
    FAST_SMOOTHING,
    direct_events,
    normal_videos,
    one_thread,  # noqa: F401
    small_model,
)

Z = 3.29  # two-sided 99.9% normal quantile


def test_parse_rate():
    assert parse_rate("1/h") == ("1/h", 1.0)
    assert parse_rate("10/h")[1] == 10.0
    assert parse_rate("5/min")[1] == 300.0
    assert parse_rate("0.5/s")[1] == 1800.0
    assert parse_rate("2/day")[1] == pytest.approx(2 / 24)
    assert parse_rate(3) == ("3/h", 3.0)
    assert parse_rate("4") == ("4/h", 4.0)
    for bad in ("1/week", "x/h", "0/h", "-1/h", ""):
        with pytest.raises(ValueError, match="rate"):
            parse_rate(bad)


@pytest.mark.parametrize("min_length,merge_gap", [(1, 0), (1, 2), (3, 1), (2, 4)])
def test_event_count_curve_equals_a_direct_count(min_length, merge_gap):
    rng = np.random.default_rng(min_length * 10 + merge_gap)
    rule = EventRule(min_length, merge_gap)
    for _ in range(20):
        videos = [np.round(rng.normal(size=int(rng.integers(1, 40))), 1)
                  for _ in range(int(rng.integers(1, 4)))]
        levels, counts = event_count_curve(videos, rule)
        assert np.all(np.diff(levels) < 0)
        np.testing.assert_array_equal(levels, np.unique(np.concatenate(videos))[::-1])
        for lev, n in zip(levels, counts):
            th = np.nextafter(lev, -np.inf)  # the frames with score >= lev are alarms
            assert n == sum(len(direct_events(v, th, min_length, merge_gap)) for v in videos)


def test_threshold_is_the_lowest_level_within_the_rate():
    """For every rate: at the threshold and above, the calibration videos raise at most
    rate x hours events; one level lower (frames at the threshold switched on) they raise
    more, unless every frame is already an alarm."""
    rng = np.random.default_rng(1)
    videos = [np.convolve(rng.normal(size=400), np.ones(5) / 5, "same") for _ in range(6)]
    rule = EventRule(2, 3)
    fps = [10.0] * 6
    hours = 2400 / 10 / 3600
    rates = [b / hours for b in (1, 3, 10, 30)]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # few events: uncertain thresholds
        cal = calibrate_scores(videos, fps, rates, rule)
    every = np.unique(np.concatenate(videos))
    for label, th in cal.thresholds.items():
        budget = cal.rates[label] * hours

        def count(t):
            return sum(len(direct_events(v, t, 2, 3)) for v in videos)

        assert count(th) == cal.observed[label] <= budget + 1e-9
        assert all(count(t) <= budget + 1e-9 for t in every[every > th])
        assert count(np.nextafter(th, -np.inf)) > budget
        assert cal.threshold(label) == th


def _ar_noise(rng, n, frames, phi=0.8):
    out = []
    for _ in range(n):
        e = rng.normal(size=frames)
        x = np.empty(frames)
        x[0] = e[0]
        for t in range(1, frames):
            x[t] = phi * x[t - 1] + e[t]
        out.append(x)
    return out


def test_false_alarm_rate_on_held_out_noise():
    """Calibrate on 1.1 h of AR(1) noise (25 fps), count events on another 1.1 h.

    Tolerance: with events roughly Poisson, the calibration count N_A ~ rate x H_A fixes the
    threshold to a relative error ~1/sqrt(rate H_A) and the held-out count has its own Poisson
    error, so |N_B / H_B - rate| <= 3.29 sqrt(rate / H_A + rate / H_B) (99.9%, two-sided):
    here about +-23% of the 400 events expected."""
    rng = np.random.default_rng(7)
    calib, held = _ar_noise(rng, 50, 2000), _ar_noise(rng, 50, 2000)
    rule = EventRule(2, 3)
    hours = 50 * 2000 / 25 / 3600
    rate = 400 / hours
    cal = calibrate_scores(calib, [25.0] * 50, [rate], rule)
    th = cal.threshold()
    n_b = sum(len(direct_events(v, th, 2, 3)) for v in held)
    tol = Z * math.sqrt(rate / hours + rate / hours)
    assert abs(n_b / hours - rate) <= tol, (n_b, rate * hours, tol * hours)
    assert cal.observed[next(iter(cal.observed))] <= 400


def test_false_alarm_rate_on_held_out_synthetic_normal_videos(one_thread):  # noqa: F811
    """The synthetic benchmark's normal videos (training-split seeds, rendered at 32 x 64),
    scored by a small random-weight model (the rate property holds for any fixed scorer):
    calibrate on 20 videos of 100 frames at 25 fps, count events on 20 others.
    Tolerance as in the noise test: |N_B / H - r| <= 3.29 sqrt(2 r / H) (99.9%, Poisson)."""
    videos = normal_videos(0, 40, 100)
    det = Detector(small_model(), device="cpu", compile=False, batch_size=64,
                   smoothing=FAST_SMOOTHING, calibration=None)
    rule = EventRule(1, 3)
    hours = 20 * 100 / 25 / 3600
    budgets = (8, 25)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        cal = calibrate(det, videos[:20], rates=[b / hours for b in budgets], fps=25.0,
                        rule=rule)
    for label, budget in zip(cal.thresholds, budgets):
        rate = budget / hours
        alarmed = Detector(small_model(), device="cpu", compile=False, batch_size=64,
                           smoothing=FAST_SMOOTHING, calibration=cal, alarm_rate=label)
        assert alarmed.alarm_threshold == cal.thresholds[label]
        n_b = sum(len(alarmed.score_video(v).events) for v in videos[20:])
        tol = Z * math.sqrt(2 * rate / hours)
        assert abs(n_b / hours - rate) <= tol, (label, n_b, budget, tol * hours)
        assert 0 < cal.observed[label] <= budget


def test_rates_the_normal_video_cannot_measure():
    videos = [np.sin(np.arange(250) / 7.0)] * 4  # 40 s of video at 25 fps
    with pytest.raises(ValueError, match=r"rate 1/h cannot be calibrated on 0\.01111 h"):
        calibrate_scores(videos, [25.0] * 4, ["1/h"])
    with pytest.warns(RuntimeWarning, match="uncertain"):
        calibrate_scores(videos, [25.0] * 4, ["3/min"])  # 2 events expected
    with pytest.raises(ValueError, match="frame rates must be positive"):
        calibrate_scores(videos, [0.0] * 4, ["1/s"])
    with pytest.raises(ValueError, match="NaN"):
        calibrate_scores([np.array([0.0, np.nan])], [25.0], ["1/s"])


def test_file_round_trip_and_curve_thresholds(tmp_path):
    rng = np.random.default_rng(3)
    videos = _ar_noise(rng, 10, 500)
    hours = 5000 / 25 / 3600
    cal = calibrate_scores(videos, [25.0] * 10, [20 / hours, "50/min"], EventRule(1, 2),
                           detector={"preset": "tiny", "seed": 0})
    path = cal.save(tmp_path / "ck.calibration.json")
    back = Calibration.load(path)
    assert back == cal
    assert json.loads(path.read_text())["format"] == "aedfast-calibration-1"
    # a rate not asked is read from the stored curve, equal to calibrating it directly
    other = calibrate_scores(videos, [25.0] * 10, [35 / hours], EventRule(1, 2))
    assert back.threshold(35 / hours) == other.threshold()
    assert back.threshold("50/min") == cal.thresholds["50/min"]
    d = cal.to_dict()
    with pytest.raises(ValueError, match="not an aedfast calibration"):
        Calibration.from_dict({**d, "format": "x"}, source="f.json")
    del d["thresholds"]
    with pytest.raises(ValueError, match=r"f\.json: missing fields \['thresholds'\]"):
        Calibration.from_dict(d, source="f.json")
    assert cal.mismatch({"preset": "tiny", "seed": 0}) == []
    assert cal.mismatch({"preset": "tiny", "seed": 1}) == ["seed: 0 (calibration) vs 1"]


def test_calibrate_refuses_what_it_cannot_calibrate(tmp_path, one_thread):  # noqa: F811
    from aedfast.data.synthetic import generate

    model = small_model()
    st = Detector(model, device="cpu", compile=False, protocol="official",
                  official_dataset="shanghaitech", calibration=None)
    with pytest.raises(ValueError, match="min-max normalises each video"):
        calibrate(st, [np.zeros((8, 32, 64, 3), np.uint8)], fps=25.0)
    det = Detector(model, device="cpu", compile=False, calibration=None)
    with pytest.raises(ValueError, match="source 0: its frame rate is unknown"):
        calibrate(det, [np.zeros((8, 32, 64, 3), np.uint8)])
    root = generate(tmp_path / "syn", n_train=1, n_test=0, n_val=0, frames=60,
                    size=(32, 64), fps=10.0, progress=False)
    avi = next((root / "training/videos").glob("*.avi"))
    assert container_fps(avi) == 10.0
    assert container_fps(root / "training") is None
