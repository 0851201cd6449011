"""Metrics: the official temporal filter and micro/macro AUC (docs/design.md §5) against
hand-computed values, scikit-learn and an independent loop; pixel AUC, exact and streamed
(`PixelAUC` within its error bound and 1e-3 of scikit-learn); the mask-derived RBDC/TBDC on
hand-built cases and, streamed video by video (`MaskDetectionAccumulator`), against an
independent reference (the paper's RBDC/TBDC: tests/test_region_metrics.py)."""

from __future__ import annotations

import math

import cv2
import numpy as np
import pytest
from scipy import ndimage
from sklearn.metrics import auc, roc_auc_score, roc_curve

from aedfast.metrics import (
    OFFICIAL_PROTOCOL,
    MaskDetectionAccumulator,
    PixelAUC,
    curve_area,
    default_thresholds,
    frame_pairs,
    mask_detection_curves,
    mask_rbdc_tbdc,
    micro_macro_auc,
    official_auc,
    official_filter,
    official_kernel,
    pixel_auc,
)


def phi(z: float, s: float = 1.0) -> float:
    return math.exp(-0.5 * (z / s) ** 2) / (s * math.sqrt(2 * math.pi))


def filter_loop(x: np.ndarray, R: int, S: float) -> np.ndarray:
    """Independent implementation: out[i] = sum_k g[k] x[i - pad + k], zeros outside."""
    support = list(range(1, R))
    c = support[len(support) // 2 - 1]
    g = [phi(s - c, S) for s in support]
    pad = len(g) // 2
    out = []
    for i in range(len(x)):
        acc = 0.0
        for k, gk in enumerate(g):
            j = i - pad + k
            if 0 <= j < len(x):
                acc += gk * x[j]
        out.append(acc)
    return np.asarray(out)


# ----------------------------------------------------------------------------- filter


def test_official_filter_hand_case():
    # R = 4: support [1, 2, 3], centre support[0] = 1 -> g = [phi(0), phi(1), phi(2)], pad 1
    np.testing.assert_allclose(official_kernel(4, 1.0), [phi(0), phi(1), phi(2)])
    out = official_filter(np.array([1.0, 0.0, 0.0]), 4, 1.0)
    np.testing.assert_allclose(out, [phi(1), phi(0), 0.0])


@pytest.mark.parametrize("R,S,T", [(38, 11, 120), (38, 11, 5), (900, 282, 1300), (900, 282, 40),
                                   (7, 2.0, 30), (2, 1.0, 9)])
def test_official_filter_matches_loop(R, S, T):
    x = np.random.default_rng(R + T).random(T)
    out = official_filter(x, R, S)
    assert out.shape == (T,) and out.dtype == np.float64
    np.testing.assert_allclose(out, filter_loop(x, R, S), rtol=1e-12, atol=1e-15)


def test_official_filter_one_sample_off_centre():
    # the official kernel peaks one sample left of the support's middle: for R = 38 the
    # support 1..37 has 37 samples, middle index 18, peak at index 17
    g = official_kernel(38, 11)
    assert len(g) == 37 and int(np.argmax(g)) == 17
    x = np.zeros(101)
    x[50] = 1.0
    out = official_filter(x, 38, 11)
    assert int(np.argmax(out)) == 51  # so an impulse's response peaks one frame late


def test_official_filter_errors():
    with pytest.raises(ValueError):
        official_filter(np.zeros((2, 2)), 38, 11)
    with pytest.raises(ValueError):
        official_filter(np.zeros(3), 1, 11)
    with pytest.raises(ValueError):
        official_filter(np.zeros(3), 38, 0)
    assert official_filter(np.zeros(0), 38, 11).shape == (0,)


# ----------------------------------------------------------------------------- frame AUC


def test_micro_macro_hand_case():
    scores = [np.array([0.1, 0.2, 0.3, 0.4]), np.array([0.5, 0.2, 0.9])]
    labels = [np.array([0, 0, 1, 1]), np.array([0, 1, 0])]
    micro, macro = micro_macro_auc(scores, labels)
    # video 1 padded: perfect -> 1. video 2 padded: labels [0,0,1,0,1], scores [0,.5,.2,.9,1]:
    # positives {.2, 1} vs negatives {0, .5, .9}: 1 + 3 wins of 6 -> 2/3
    assert macro == pytest.approx((1 + 2 / 3) / 2)
    # micro, no padding: positives {.3, .4, .2} vs negatives {.1, .2, .5, .9}: 2 + 2 + 1.5 of 12
    assert micro == pytest.approx(5.5 / 12)
    assert micro == pytest.approx(roc_auc_score(np.concatenate(labels), np.concatenate(scores)))


def test_micro_macro_matches_official_recipe():
    rng = np.random.default_rng(0)
    scores, labels = [], []
    for n in (80, 120, 60, 95):
        lab = np.zeros(n, int)
        a = int(rng.integers(5, n // 2))
        lab[a: a + n // 4] = 1
        scores.append(lab * 0.5 + rng.random(n))
        labels.append(lab)
    labels[2][:] = 0  # a video without anomalies: padding keeps its AUC defined
    for R, S, norm in ((38, 11, False), (900, 282, True)):
        micro, macro = micro_macro_auc(scores, labels, smooth=(R, S), normalize=norm)
        # the official recipe written out independently
        aucs, fp, fl = [], [], []
        for s, lab in zip(scores, labels):
            p = filter_loop(s, R, S)
            if norm:
                p = (p - p.min()) / (p.max() - p.min())
            fp.append(p)
            fl.append(lab)
            fpr, tpr, _ = roc_curve(np.r_[0, lab, 1], np.r_[0, p, 1])
            aucs.append(auc(fpr, tpr))
        fpr, tpr, _ = roc_curve(np.concatenate(fl), np.concatenate(fp))
        assert macro == pytest.approx(np.nanmean(aucs), abs=1e-12)
        assert micro == pytest.approx(auc(fpr, tpr), abs=1e-12)
    p = OFFICIAL_PROTOCOL["shanghaitech"]
    assert official_auc(scores, labels, "shanghai") == pytest.approx(
        micro_macro_auc(scores, labels, smooth=(p["R"], p["S"]), normalize=True))


def test_micro_macro_edge_cases():
    # NaN scores count as 0 (official nan_to_num)
    micro, macro = micro_macro_auc([np.array([np.nan, 0.9, 0.8])], [np.array([0, 1, 1])])
    assert micro == 1.0 and macro == 1.0
    # a single class over all frames: micro undefined, macro still defined by the padding
    micro, macro = micro_macro_auc([np.array([0.3, 0.2])], [np.array([0, 0])])
    assert math.isnan(micro) and macro == pytest.approx(1.0)
    with pytest.raises(ValueError, match="3 scores for 2 labels"):
        micro_macro_auc([np.zeros(3)], [np.zeros(2)])
    with pytest.raises(ValueError, match="0/1"):
        micro_macro_auc([np.zeros(2)], [np.array([0, 2])])
    with pytest.raises(ValueError, match="score arrays"):
        micro_macro_auc([np.zeros(2)], [])
    with pytest.raises(TypeError):
        micro_macro_auc(np.zeros(4), np.zeros(4))


# ----------------------------------------------------------------------------- pixel AUC


def test_pixel_auc_against_sklearn_and_subsampling():
    rng = np.random.default_rng(1)
    masks = [rng.random((5, 16, 20)) < 0.1, rng.random((3, 16, 20)) < 0.2]
    maps = [m * 0.3 + rng.random(m.shape) for m in masks]
    ref = roc_auc_score(np.concatenate([m.ravel() for m in masks]),
                        np.concatenate([m.ravel() for m in maps]))
    assert pixel_auc(maps, masks) == pytest.approx(ref)
    sub = pixel_auc(maps, masks, max_pixels=1000)
    assert sub == pixel_auc(maps, masks, max_pixels=1000)  # deterministic
    assert sub != pytest.approx(ref, abs=1e-9) and abs(sub - ref) < 0.06
    # maps at half resolution are resized to the masks
    small = [np.stack([m[::2, ::2] for m in v]) for v in maps]
    assert 0.5 < pixel_auc(small, masks) < 1.0
    # a single [T, H, W] array and a perfect map
    assert pixel_auc(masks[0].astype(float), masks[0]) == 1.0
    assert math.isnan(pixel_auc(np.zeros((2, 4, 4)), np.zeros((2, 4, 4))))
    with pytest.raises(ValueError, match="5 maps for 3 masks"):
        pixel_auc([maps[0]], [masks[1]])


# ------------------------------------------------------------------ mask-derived RBDC / TBDC


def square(shape, y, x, s, value=1.0):
    a = np.zeros(shape)
    a[y: y + s, x: x + s] = value
    return a


def two_track_video(T=6, shape=(20, 30)):
    """Track A: a 4x4 square at the left in frames 0-2; track B: at the right in frames 3-5."""
    gt = np.zeros((T,) + shape, bool)
    for t in range(3):
        gt[t] = square(shape, 5, 2 + t, 4) > 0  # moving by 1 px: consecutive regions overlap
    for t in range(3, 6):
        gt[t] = square(shape, 10, 20, 4) > 0
    return gt


def test_rbdc_tbdc_perfect_detection():
    gt = two_track_video()
    rb, tb = mask_rbdc_tbdc([gt.astype(float)], [gt], thresholds=[0.5])
    assert rb == 1.0 and tb == 1.0
    c = mask_detection_curves([gt.astype(float)], [gt], thresholds=[0.5])
    assert c["n_regions"] == 6 and c["n_tracks"] == 2 and c["n_frames"] == 6


def test_rbdc_tbdc_partial_and_false_positives():
    gt = two_track_video()
    maps = np.zeros(gt.shape)
    maps[0][gt[0]] = 1.0  # only track A's first region at a high score
    rb, tb = mask_rbdc_tbdc([maps], [gt], thresholds=[0.5])
    # RBDR 1/6 at FP 0, flat to FP/frame 1; track A (1/3 >= 10% of its regions) detected
    assert rb == pytest.approx(1 / 6) and tb == pytest.approx(0.5)
    # add all GT regions and 2 false blobs in frames 1, 3, 5 at a lower score
    for t in range(6):
        maps[t][gt[t] & (maps[t] == 0)] = 0.3
    for t in (1, 3, 5):
        maps[t] += square(gt.shape[1:], 15, 2, 2, 0.3) + square(gt.shape[1:], 0, 25, 2, 0.3)
    c = mask_detection_curves([maps], [gt], thresholds=[0.5, 0.2])
    np.testing.assert_allclose(c["fp_per_frame"], [0.0, 1.0])
    np.testing.assert_allclose(c["rbdr"], [1 / 6, 1.0])
    np.testing.assert_allclose(c["tbdr"], [0.5, 1.0])
    rb, tb = mask_rbdc_tbdc([maps], [gt], thresholds=[0.5, 0.2])
    assert rb == pytest.approx((1 / 6 + 1) / 2) and tb == pytest.approx((0.5 + 1) / 2)
    # 4 false blobs per frame: FP/frame 2 at the low threshold, interpolated at 1
    for t in (1, 3, 5):
        maps[t] += square(gt.shape[1:], 17, 10, 2, 0.3) + square(gt.shape[1:], 0, 10, 2, 0.3)
    rb, _ = mask_rbdc_tbdc([maps], [gt], thresholds=[0.5, 0.2])
    at1 = 1 / 6 + (1 - 1 / 6) / 2
    assert rb == pytest.approx((1 / 6 + at1) / 2)


def test_rbdc_overlap_threshold():
    shape = (20, 20)
    gt = (square(shape, 8, 8, 2) > 0)[None]  # 4 pixels
    big = square(shape, 5, 5, 8)[None]  # 64 pixels containing it: IoU 4/64 = 0.0625
    c = mask_detection_curves([big], [gt], thresholds=[0.5])
    assert c["rbdr"][0] == 0.0 and c["fp_per_frame"][0] == 1.0
    c = mask_detection_curves([big], [gt], thresholds=[0.5], overlap=0.05)
    assert c["rbdr"][0] == 1.0 and c["fp_per_frame"][0] == 0.0


def test_tracks_linked_by_overlap_across_frames_and_videos():
    shape = (12, 40)
    jump = np.zeros((4,) + shape, bool)
    jump[0] = square(shape, 2, 0, 4) > 0
    jump[1] = square(shape, 2, 3, 4) > 0  # overlaps frame 0: same track
    jump[2] = square(shape, 2, 20, 4) > 0  # no overlap: a new track
    jump[3] = (square(shape, 2, 21, 4) > 0) | (square(shape, 8, 0, 3) > 0)  # + a third track
    c = mask_detection_curves([jump.astype(float), jump.astype(float)], [jump, jump],
                              thresholds=[0.5])
    assert c["n_regions"] == 10 and c["n_tracks"] == 6  # tracks never span two videos
    # detecting one region of a 2-region track detects the track (50% >= 10%); with
    # track_fraction 0.6 it does not
    maps = np.zeros(jump.shape)
    maps[0][jump[0]] = 1
    c = mask_detection_curves([maps], [jump], thresholds=[0.5], track_fraction=0.6)
    assert c["tbdr"][0] == 0.0
    c = mask_detection_curves([maps], [jump], thresholds=[0.5])
    assert c["tbdr"][0] == pytest.approx(1 / 3)


def test_curve_area_against_sklearn_auc():
    x = np.array([0.1, 0.3, 0.55, 0.8, 1.0])
    y = np.array([0.2, 0.4, 0.5, 0.7, 0.9])
    assert curve_area(x, y) == pytest.approx(auc(np.r_[0, x], np.r_[0, y]))
    # beyond max_fp: interpolated and cut; normalised by max_fp
    assert curve_area(np.array([2.0]), np.array([1.0])) == pytest.approx(0.25)
    assert curve_area(np.array([0.0]), np.array([0.5]), max_fp=0.5) == pytest.approx(0.5)


def test_rbdc_default_thresholds_and_resize():
    gt = two_track_video(shape=(20, 32))
    rng = np.random.default_rng(3)
    maps = gt * 1.0 + 0.2 * rng.random(gt.shape)
    rb, tb = mask_rbdc_tbdc([maps], [gt])
    assert 0.7 < rb <= 1.0 and 0.7 < tb <= 1.0
    small = maps[:, ::2, ::2]  # half-resolution maps are resized to the masks
    rb2, _ = mask_rbdc_tbdc([small], [gt])
    assert 0.5 < rb2 <= 1.0
    noise = rng.random(gt.shape)
    rb3, tb3 = mask_rbdc_tbdc([noise], [gt])
    assert rb3 < rb and tb3 <= tb
    assert all(math.isnan(v) for v in mask_rbdc_tbdc([noise], [np.zeros_like(gt)]))


def test_curve_area_running_max():
    # a lower threshold with fewer FPs but a worse rate does not fold the curve back
    assert curve_area(np.array([0.0, 0.5]), np.array([1.0, 0.2])) == pytest.approx(1.0)


def test_rbdc_at_reduced_size():
    gt = two_track_video(shape=(20, 32))
    rb, tb = mask_rbdc_tbdc([gt.astype(float)], [gt], thresholds=[0.5], size=(10, 16))
    assert rb == 1.0 and tb == 1.0
    c = mask_detection_curves([gt.astype(float)], [gt], thresholds=[0.5], size=(10, 16))
    assert c["n_regions"] == 6 and c["n_tracks"] == 2


# ----------------------------------------------------------------------------- streamed pixel AUC


def _blurred(rng, shape, sigma=2.0):
    """float32 [T, H, W]: noise blurred per frame (smooth, continuous values like real maps)."""
    noise = rng.random(shape).astype(np.float32)
    return np.stack([cv2.GaussianBlur(f, (0, 0), sigma) for f in noise])


def _pixel_cases() -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Maps [T, H, W] and masks of several shapes of value distribution."""
    rng = np.random.default_rng(7)
    shape = (12, 48, 64)
    gt = np.zeros(shape, bool)
    for t in range(shape[0]):
        y, x = rng.integers(0, 30), rng.integers(0, 40)
        gt[t, y: y + rng.integers(4, 18), x: x + rng.integers(4, 22)] = True
    blob = np.stack([cv2.GaussianBlur(g.astype(np.float32), (0, 0), 3) for g in gt])
    u = rng.random(shape).astype(np.float32)
    lab = rng.random(shape) < u * 0.3  # labels more likely at high values
    return {
        "smooth, weak anomalies": (_blurred(rng, shape) + 0.05 * blob, gt),
        "smooth, strong anomalies": (_blurred(rng, shape) + 0.8 * blob, gt),
        "heavy tail (lognormal)": (np.exp(rng.normal(0, 3, shape) + 0.4 * lab)
                                   .astype(np.float32), lab),
        "both signs": (rng.normal(0, 1, shape).astype(np.float32) + 0.3 * lab, lab),
        "far from 0 (1000 + 1e-2 x)": (1000 + 1e-2 * _blurred(rng, shape) + 1e-3 * blob, gt),
        "narrow (0.5 + 1e-4 x)": ((0.5 + 1e-4 * u + 2e-5 * lab).astype(np.float32), lab),
        "ten levels (ties)": (np.round(u * 10) / 10, lab),
        "uniform": (u, lab),
    }


@pytest.mark.parametrize("case", sorted(_pixel_cases()))
def test_pixel_auc_streamed_matches_sklearn(case):
    maps, masks = _pixel_cases()[case]
    exact = roc_auc_score(masks.ravel(), maps.ravel())
    acc = PixelAUC()
    for m, k in zip(maps, masks):
        acc.add_frame(m, k)
    err = abs(acc.result() - exact)
    assert err <= 1e-3
    assert err <= acc.error_bound() + 1e-12  # the bound holds
    if case == "ten levels (ties)":
        assert acc.result() == pytest.approx(exact, abs=1e-12)  # distinct levels: exact
    elif case != "far from 0 (1000 + 1e-2 x)":  # there float32 ties inflate the bound
        assert acc.error_bound() <= 1e-3
    # video by video (here: halves) is the same histogram
    two = PixelAUC()
    two.add([maps[:5], maps[5:]], [masks[:5], masks[5:]])
    assert two.result() == acc.result() and two.error_bound() == acc.error_bound()


def test_pixel_auc_streamed_resizes_and_bits():
    maps, masks = _pixel_cases()["smooth, weak anomalies"]
    small = maps[:, ::2, ::2]
    acc = PixelAUC()
    acc.add(small, masks)  # maps resized to the masks, as pixel_auc does
    assert abs(acc.result() - pixel_auc(small, masks)) <= acc.error_bound() <= 1e-3
    exact = roc_auc_score(masks.ravel(), maps.ravel())
    errs = []
    for bits in (6, 12, 18):
        b = PixelAUC(bits)
        b.add(maps, masks)
        errs.append(b.error_bound())
        assert abs(b.result() - exact) <= b.error_bound() + 1e-12
    assert errs[0] > errs[1] > errs[2]  # finer bins, smaller bound


def test_pixel_auc_streamed_edge_cases():
    acc = PixelAUC()
    with pytest.raises(ValueError, match="no frames"):
        acc.result()
    acc.add_frame(np.array([[-0.0, 0.0], [1.0, np.inf]], np.float32),
                  np.array([[1, 0], [0, 1]]))
    # positives {-0.0, inf} vs negatives {0.0, 1.0}: -0.0 ties 0.0 (1/2), inf beats both
    assert acc.result() == 2.5 / 4
    one_class = PixelAUC()
    one_class.add_frame(np.ones((3, 3)), np.zeros((3, 3)))
    assert math.isnan(one_class.result()) and math.isnan(one_class.error_bound())
    with pytest.raises(ValueError, match="NaN"):
        acc.add_frame(np.full((2, 2), np.nan), np.zeros((2, 2)))
    with pytest.raises(ValueError, match="differ in size"):
        acc.add_frame(np.zeros((2, 2)), np.zeros((2, 3)))
    with pytest.raises(ValueError, match="5 maps for 3 masks"):
        acc.add(np.zeros((5, 4, 4)), np.zeros((3, 4, 4)))
    with pytest.raises(ValueError):
        PixelAUC(bits=0)


# ----------------------------------------------------------------------------- streamed RBDC


def reference_counts(maps_per_video, masks_per_video, thresholds, overlap=0.1,
                     track_fraction=0.1):
    """Independent RBDC/TBDC counts by the module docstring's rules: scipy labelling, IoU by
    mask arithmetic region by region, tracks by a search over linked regions."""
    eight = np.ones((3, 3), int)
    K = len(thresholds)
    fp = np.zeros(K, int)
    region_hits: list[list[bool]] = []  # per GT region: detected per threshold
    links: dict[int, set[int]] = {}
    n_frames = 0
    for maps, masks in zip(maps_per_video, masks_per_video):
        prev: list[tuple[int, np.ndarray]] = []  # (region id, pixels) of the previous frame
        for m, k in zip(maps, masks):
            n_frames += 1
            g, n_g = ndimage.label(k, structure=eight)
            gts = []
            for r in range(1, n_g + 1):
                rid = len(region_hits)
                region_hits.append([False] * K)
                links[rid] = set()
                gts.append((rid, g == r))
                for pid, ppix in prev:  # share a pixel with a region of the previous frame
                    if (ppix & (g == r)).any():
                        links[rid].add(pid)
                        links[pid].add(rid)
            prev = gts
            for j, t in enumerate(thresholds):
                d, n_d = ndimage.label(m > t, structure=eight)
                for r in range(1, n_d + 1):
                    dpix = d == r
                    tp = False
                    for rid, gpix in gts:
                        inter = int((dpix & gpix).sum())
                        iou = inter / (int(dpix.sum()) + int(gpix.sum()) - inter)
                        if iou >= overlap:
                            tp = True
                            region_hits[rid][j] = True
                    fp[j] += not tp
    tracks, seen = [], set()
    for rid in links:
        if rid in seen:
            continue
        stack, comp = [rid], []
        seen.add(rid)
        while stack:
            a = stack.pop()
            comp.append(a)
            for b in links[a] - seen:
                seen.add(b)
                stack.append(b)
        tracks.append(comp)
    hits = np.array(region_hits, bool).reshape(-1, K)
    det_tracks = [sum(hits[c].mean(axis=0)[j] >= track_fraction for c in tracks)
                  for j in range(K)]
    return {"fp": fp, "det_regions": hits.sum(axis=0), "det_tracks": np.array(det_tracks),
            "n_regions": hits.shape[0], "n_tracks": len(tracks), "n_frames": n_frames}


def random_videos(seed: int, n: int = 3, shape=(24, 32)) -> tuple[list, list]:
    """Videos whose GT regions move, split, vanish and come back; maps = smooth noise plus
    bumps over the GT, whose height grows from video to video."""
    rng = np.random.default_rng(seed)
    maps, masks = [], []
    for v in range(n):
        T = int(rng.integers(4, 9))
        gt = np.zeros((T,) + shape, bool)
        y, x = int(rng.integers(2, 12)), int(rng.integers(2, 14))
        for t in range(T):
            if rng.random() < 0.8:
                gt[t, y: y + 6, x + t: x + t + 5] = True
            if rng.random() < 0.4:
                gt[t, 18:22, 24 + t % 3: 28 + t % 3] = True
        bump = np.stack([cv2.GaussianBlur(g.astype(np.float32), (0, 0), 1.5) for g in gt])
        maps.append(_blurred(rng, gt.shape, 1.0) + (0.3 + 0.4 * v) * bump)
        masks.append(gt)
    return maps, masks


@pytest.mark.parametrize("overlap,track_fraction", [(0.1, 0.1), (0.3, 0.5), (0.05, 0.0)])
def test_detection_accumulator_matches_reference(overlap, track_fraction):
    maps, masks = random_videos(11)
    thr = [0.45, 0.5, 0.55, 0.6, 0.8]
    acc = MaskDetectionAccumulator(thr, overlap=overlap, track_fraction=track_fraction)
    for m, k in zip(maps, masks):  # video by video, as evaluate feeds it
        acc.add(m, k)
    ref = reference_counts(maps, masks, thr, overlap, track_fraction)
    assert ref["n_tracks"] >= 4 and ref["det_regions"].max() > 0 and ref["fp"].max() > 0
    for key in ("fp", "det_regions", "det_tracks", "n_regions", "n_tracks", "n_frames"):
        np.testing.assert_array_equal(getattr(acc, key), ref[key], err_msg=key)
    # the all-in-memory functions are the same counts
    c = mask_detection_curves(maps, masks, thresholds=thr, overlap=overlap,
                              track_fraction=track_fraction)
    np.testing.assert_array_equal(c["fp_per_frame"], ref["fp"] / ref["n_frames"])
    np.testing.assert_array_equal(c["rbdr"], ref["det_regions"] / ref["n_regions"])
    np.testing.assert_array_equal(c["tbdr"], ref["det_tracks"] / ref["n_tracks"])
    assert acc.result() == mask_rbdc_tbdc(maps, masks, thresholds=thr, overlap=overlap,
                                          track_fraction=track_fraction)


def test_detection_accumulator_frame_by_frame():
    maps, masks = random_videos(12)
    whole = MaskDetectionAccumulator([0.5, 0.6])
    whole.add(maps, masks)
    frames = MaskDetectionAccumulator([0.5, 0.6])
    for m_v, k_v in zip(maps, masks):
        frames.start_video(m_v)
        for m, k in frame_pairs(m_v, k_v):
            frames.add_frame(m, k)
        frames.end_video()
    assert frames.curves().keys() == whole.curves().keys()
    for key, val in whole.curves().items():
        np.testing.assert_array_equal(frames.curves()[key], val)
    with pytest.raises(RuntimeError, match="start_video"):
        MaskDetectionAccumulator([0.5]).add_frame(maps[0][0], masks[0][0])
    with pytest.raises(ValueError, match="no frames"):
        MaskDetectionAccumulator([0.5]).curves()
    with pytest.raises(ValueError, match="no thresholds"):
        MaskDetectionAccumulator([])


def test_streamed_default_thresholds_exact_for_every_video():
    """Without thresholds: the first video's default thresholds, extended upwards by later
    videos with higher values. Each added threshold lies above every value counted before it,
    so the streamed counts equal an all-in-memory count at the final thresholds."""
    maps, masks = random_videos(13, n=4)
    acc = MaskDetectionAccumulator()
    for m, k in zip(maps, masks):
        acc.add(m, k)
    thr = acc.thresholds
    first = default_thresholds(maps[0], max_samples=65536)
    assert np.array_equal(thr[: first.size], first) and thr.size > first.size  # extended
    assert np.all(np.diff(thr) > 0) and thr[-1] <= max(float(m.max()) for m in maps)
    assert thr.size <= first.size + 16 * (len(maps) - 1)
    full = mask_detection_curves(maps, masks, thresholds=thr)
    for key, val in acc.curves().items():
        np.testing.assert_array_equal(val, full[key], err_msg=key)
    # the threshold cap holds
    capped = MaskDetectionAccumulator(max_thresholds=first.size + 3)
    capped.add(maps, masks)
    assert capped.thresholds.size == first.size + 3
    # track_fraction 0: tracks count as detected at any threshold, the added ones included
    zero = MaskDetectionAccumulator(track_fraction=0.0)
    zero.add(maps, masks)
    np.testing.assert_array_equal(zero.det_tracks, zero.n_tracks)
