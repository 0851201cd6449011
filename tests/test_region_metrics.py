"""RBDC / TBDC as the paper computes them (aedfast.region_metrics, docs/design.md §11): IoU
against pixel counting, hand-computed curves (a perfect detector, known fractions, the cut at
one false positive per frame, alpha and beta at their boundaries), the whole sweep against a
brute-force reference, detections from maps against scipy.ndimage, and the track files."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage
from sklearn.metrics import auc

from aedfast.data.errors import DatasetError
from aedfast.region_metrics import (
    box_iou,
    criterion_area,
    detection_curves,
    detections_from_maps,
    match_tracks,
    rbdc_tbdc,
    read_box_tracks,
    read_detections,
    read_track_file,
    write_detections,
)


def raster(box, shape=(64, 64)) -> np.ndarray:
    """bool mask of an inclusive-coordinate box (x_min, y_min, x_max, y_max)."""
    m = np.zeros(shape, bool)
    x0, y0, x1, y1 = (int(v) for v in box)
    m[y0:y1 + 1, x0:x1 + 1] = True
    return m


def pixel_iou(a, b) -> float:
    ma, mb = raster(a), raster(b)
    return (ma & mb).sum() / (ma | mb).sum()


def test_box_iou_against_pixel_counting():
    rng = np.random.default_rng(0)
    xy = rng.integers(0, 40, (60, 2))
    wh = rng.integers(0, 20, (60, 2))
    boxes = np.concatenate([xy, xy + wh], axis=1)
    got = box_iou(boxes[:30], boxes[30:])
    want = np.array([[pixel_iou(a, b) for b in boxes[30:]] for a in boxes[:30]])
    np.testing.assert_allclose(got, want, rtol=0, atol=1e-12)
    assert (want > 0).sum() > 10  # the sample has overlaps, not only disjoint boxes
    # touching inclusive boxes do not overlap; a box with itself is 1
    assert box_iou([[0, 0, 1, 1]], [[2, 0, 3, 1]])[0, 0] == 0.0
    assert box_iou([[3, 4, 9, 9]], [[3, 4, 9, 9]])[0, 0] == 1.0


def two_tracks() -> dict[str, np.ndarray]:
    """Video "a": track 0 at frames 0-3, track 1 at frames 4-7 (4 regions each)."""
    rows = [[0, t, 5 + t, 5, 14 + t, 14] for t in range(4)]
    rows += [[1, t, 40, 30, 49, 39] for t in range(4, 8)]
    return {"a": np.array(rows, float)}


def as_detections(gt_rows: np.ndarray, score: float) -> np.ndarray:
    return np.column_stack([gt_rows[:, 1:6], np.full(len(gt_rows), score)])


def test_perfect_detector_gives_one():
    gt = two_tracks()
    gt["b"] = np.array([[7, 2, 0, 0, 3, 3]], float)
    det = {k: as_detections(v, 0.9) for k, v in gt.items()}
    assert rbdc_tbdc(gt, det, {"a": 10, "b": 5}) == (1.0, 1.0)
    c = detection_curves(gt, det, 15)
    assert c["n_regions"] == 9 and c["n_tracks"] == 3 and c["n_frames"] == 15
    np.testing.assert_array_equal(c["fp_per_frame"], [0, 0])
    # the same through maps: the ground-truth boxes drawn at half the frame size
    maps = np.zeros((10, 32, 32), np.float32)
    for _, t, x0, y0, x1, y1 in gt["a"].astype(int):
        maps[t, y0 // 2:(y1 + 1) // 2, x0 // 2:(x1 + 1) // 2] = 1.0
    # region 0 spans x 5..14: x 2..6 on the half grid -> frame x 4..13, still IoU 0.8 >= 0.1
    det_maps = {"a": detections_from_maps(maps, threshold=0.5, frame_size=(64, 64))}
    assert det_maps["a"].shape == (8, 6)
    assert rbdc_tbdc({"a": gt["a"]}, det_maps, {"a": 10}) == (1.0, 1.0)


def test_half_the_regions_at_zero_false_positives():
    gt = two_tracks()
    det = {"a": as_detections(gt["a"][:4], 1.0)}  # all of track 0, nothing of track 1
    # RBDR 4/8 from FP/frame 0 to 1; TBDR 1/2: areas 0.5 and 0.5
    assert rbdc_tbdc(gt, det, 10) == (0.5, 0.5)


def test_known_fraction_with_false_positives():
    gt = two_tracks()
    fp = np.array([[f, 60, 60, 63, 63, 0.5] for f in range(5)], float)  # no region there
    det = {"a": np.concatenate([as_detections(gt["a"][:4], 1.0),  # track 0 at score 1
                                as_detections(gt["a"][4:5], 0.5),  # one region of track 1
                                fp])}
    c = detection_curves(gt, det, 10)
    np.testing.assert_array_equal(c["thresholds"], [np.inf, 1.0, 0.5])
    np.testing.assert_allclose(c["fp_per_frame"], [0, 0, 0.5])
    np.testing.assert_allclose(c["rbdr"], [0, 0.5, 5 / 8])
    np.testing.assert_allclose(c["tbdr"], [0, 0.5, 1.0])  # 1 of 4 regions = 25% >= 10%
    # by hand: RBDC = 0.5 * (0.5 + 0.625) / 2 + 0.5 * 0.625; TBDC = 0.5 * 1.5 / 2 + 0.5 * 1
    rb, tb = rbdc_tbdc(gt, det, 10)
    assert rb == pytest.approx(0.59375) and tb == pytest.approx(0.875)


def test_points_past_one_fp_per_frame_are_cut_not_interpolated():
    gt = {"v": np.array([[0, 0, 0, 0, 9, 9], [0, 1, 0, 0, 9, 9]], float)}
    fps = [[1, 20, 20, 25, 25, 0.5]] * 4  # 4 false positives in 2 frames: FP/frame 2
    det = {"v": np.array([[0, 0, 0, 9, 9, 1.0], [1, 0, 0, 9, 9, 0.5]] + fps)}
    c = detection_curves(gt, det, 2)
    np.testing.assert_allclose(c["fp_per_frame"], [0, 0, 2])
    # RBDR 0.5 up to FP/frame 1 (interpolating towards (2, 1) would give 0.625)
    assert rbdc_tbdc(gt, det, 2)[0] == pytest.approx(0.5)
    assert criterion_area(np.array([0.0, 0.25, 1.0]), np.array([0.0, 0.5, 1.0])) == \
        pytest.approx(auc([0, 0.25, 1.0], [0, 0.5, 1.0]))


def test_alpha_and_beta_at_their_boundaries():
    track = np.array([[3, t, 0, 0, 9, 9] for t in range(20)], float)
    one = {"v": as_detections(track[:1], 1.0)}
    two = {"v": as_detections(track[:2], 1.0)}
    assert detection_curves({"v": track}, one, 20)["tbdr"][-1] == 0.0  # 1/20 < 0.1
    assert detection_curves({"v": track}, two, 20)["tbdr"][-1] == 1.0  # 2/20 >= 0.1
    gt = {"v": np.array([[0, 0, 0, 0, 9, 9]], float)}  # 100 pixels
    exact = {"v": np.array([[0, 0, 0, 9, 0, 1.0]])}  # 10 pixels inside: IoU 0.1
    short = {"v": np.array([[0, 0, 0, 8, 0, 1.0]])}  # 9 pixels: IoU 0.09
    c = detection_curves(gt, exact, 1)
    assert (c["rbdr"][-1], c["fp_per_frame"][-1]) == (1.0, 0.0)
    c = detection_curves(gt, short, 1)
    assert (c["rbdr"][-1], c["fp_per_frame"][-1]) == (0.0, 1.0)
    assert detection_curves(gt, short, 1, beta=0.09)["rbdr"][-1] == 1.0


def test_duplicate_and_shared_detections():
    gt = {"v": np.array([[0, 0, 0, 0, 9, 9], [1, 0, 10, 0, 19, 9]], float)}
    twice = {"v": np.array([[0, 0, 0, 9, 9, 0.9], [0, 1, 1, 9, 9, 0.8]])}
    c = detection_curves(gt, twice, 4)
    # the second detection of region 0 adds no detection and is no false positive
    np.testing.assert_allclose(c["rbdr"], [0, 0.5, 0.5])
    np.testing.assert_allclose(c["fp_per_frame"], [0, 0, 0])
    both = {"v": np.array([[0, 0, 0, 19, 9, 0.9]])}  # IoU 0.5 with each region
    c = detection_curves(gt, both, 4)
    assert c["rbdr"][-1] == 1.0 and c["tbdr"][-1] == 1.0 and c["fp_per_frame"][-1] == 0


def brute_force(gt, det, n_frames, alpha=0.1, beta=0.1):
    """The definitions literally, one threshold at a time, IoU by pixel counting."""
    scores = np.unique(np.concatenate([d[:, 5] for d in det.values()]))[::-1]
    fpr, rbdr, tbdr = [0.0], [0.0], [0.0]
    n_regions = sum(len(g) for g in gt.values())
    n_tracks = sum(len(np.unique(g[:, 0])) for g in gt.values())
    for s in scores:
        fp = hit_regions = hit_tracks = 0
        for name in set(gt) | set(det):
            g = gt.get(name, np.zeros((0, 6)))
            d = det.get(name, np.zeros((0, 6)))
            d = d[d[:, 5] >= s]
            hits = np.zeros(len(g), bool)
            for row in d:
                ious = [pixel_iou(row[1:5], r[2:6]) if r[1] == row[0] else 0.0 for r in g]
                ok = np.asarray(ious) >= beta
                fp += not ok.any()
                hits |= ok
            hit_regions += hits.sum()
            for tid in np.unique(g[:, 0]):
                sel = g[:, 0] == tid
                hit_tracks += hits[sel].sum() / sel.sum() >= alpha
        fpr.append(fp / n_frames)
        rbdr.append(hit_regions / n_regions)
        tbdr.append(hit_tracks / n_tracks)
    return np.array(fpr), np.array(rbdr), np.array(tbdr)


def area_by_rule(x, y):
    keep = x <= 1
    x, y = list(x[keep]), list(y[keep])
    if x[-1] < 1:
        x, y = x + [1.0], y + [y[-1]]
    return auc(x, y)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_sweep_against_brute_force(seed):
    rng = np.random.default_rng(seed)
    gt, det = {}, {}
    for name in ("v0", "v1", "v2"):
        rows = []
        for tid in range(rng.integers(0, 3)):
            start, x, y = rng.integers(0, 6), rng.integers(0, 40), rng.integers(0, 40)
            for t in range(start, start + rng.integers(1, 5)):
                rows.append([tid, t, x + t, y, x + t + rng.integers(3, 12), y + 8])
        gt[name] = np.array(rows, float).reshape(-1, 6)
        drows = []
        for r in gt[name]:  # jittered copies of some regions, and random boxes
            if rng.random() < 0.6:
                j = rng.integers(-3, 4, 4)
                box = np.clip(r[2:6] + j, 0, 60)
                box[2:] = np.maximum(box[2:], box[:2])
                drows.append([r[1], *box, rng.choice([0.2, 0.5, 0.7, 0.9])])
        for _ in range(rng.integers(0, 8)):
            x, y = rng.integers(0, 50, 2)
            drows.append([rng.integers(0, 10), x, y, x + rng.integers(0, 10),
                          y + rng.integers(0, 10), rng.choice([0.1, 0.5, 0.8])])
        det[name] = np.array(drows, float).reshape(-1, 6)
    n_frames = 12
    c = detection_curves(gt, det, n_frames)
    fpr, rbdr, tbdr = brute_force(gt, det, n_frames)
    np.testing.assert_allclose(c["fp_per_frame"], fpr)
    np.testing.assert_allclose(c["rbdr"], rbdr)
    np.testing.assert_allclose(c["tbdr"], tbdr)
    rb, tb = rbdc_tbdc(gt, det, n_frames)
    assert rb == pytest.approx(area_by_rule(fpr, rbdr))
    assert tb == pytest.approx(area_by_rule(fpr, tbdr))


def test_no_regions_no_detections_and_frame_checks():
    gt = two_tracks()
    assert rbdc_tbdc(gt, {}, 10) == (0.0, 0.0)
    assert all(np.isnan(v) for v in rbdc_tbdc({}, {"a": as_detections(gt["a"], 1.0)}, 10))
    with pytest.raises(ValueError, match="video 'a'.*frame 5 .*has 5 frames"):
        rbdc_tbdc(gt, {}, {"a": 5})
    with pytest.raises(ValueError, match="'a'.*not among"):
        rbdc_tbdc(gt, {}, {"b": 10})


def test_detections_from_maps_two_blobs_against_scipy():
    rng = np.random.default_rng(4)
    m = rng.random((24, 40)).astype(np.float32) * 0.2
    m[3:9, 4:12] = 0.6 + 0.1 * rng.random((6, 8))
    m[9, 12] = 0.7  # diagonal neighbour: joins the first blob under 8-connectivity
    m[14:20, 25:33] = 0.9
    m[16, 28] = 1.5
    det = detections_from_maps([m], threshold=0.5, first_frame=7)
    lab, n = ndimage.label(m > 0.5, structure=np.ones((3, 3)))
    assert n == 2 and det.shape == (2, 6)
    want = []
    for i, (sy, sx) in enumerate(ndimage.find_objects(lab), 1):
        want.append([7, sx.start, sy.start, sx.stop - 1, sy.stop - 1,
                     ndimage.maximum(m, lab, i)])
    order = np.lexsort((det[:, 1], det[:, 2]))
    np.testing.assert_allclose(det[order], np.array(want)[np.lexsort((np.array(want)[:, 1],
                                                                      np.array(want)[:, 2]))],
                               rtol=1e-6)
    # relative: half of the frame's maximum (1.5) keeps only the second blob's 0.9 region
    rel = detections_from_maps([m], relative=0.5)
    np.testing.assert_allclose(rel[:, :5], [[0, 25, 14, 32, 19]])
    # scaled to a frame twice as large: the pixel span doubles
    big = detections_from_maps([m], relative=0.5, frame_size=(48, 80))
    np.testing.assert_allclose(big[:, 1:5], [[50, 28, 65, 39]])
    assert detections_from_maps(np.zeros((3, 5, 5)), relative=0.5).shape == (0, 6)
    with pytest.raises(ValueError, match="exactly one"):
        detections_from_maps([m], threshold=0.5, relative=0.5)


def test_read_box_tracks_both_layouts(tmp_path):
    folder = tmp_path / "tracks"
    folder.mkdir()
    (folder / "01_0014.txt").write_text("1,5,10,10,20,20\n0,3,1,2,3,4\n0,2,1,2,3,4\n\n")
    (folder / "Test001_gt.txt").write_text("0001.jpg 0 20.5 30 10 8\n0002.jpg 0 3 3 10 10\n")
    (folder / "readme.txt").write_text("not a track file")
    tracks = read_box_tracks(folder)
    assert set(tracks) == {"01_0014", "Test001"}
    np.testing.assert_array_equal(tracks["01_0014"], [[0, 2, 1, 2, 3, 4], [0, 3, 1, 2, 3, 4],
                                                      [1, 5, 10, 10, 20, 20]])
    # centre 20.5, 30, size 10 x 8, frame 1 (1-based): x 15..25, y 26..34 at frame 0; the
    # second box is clipped at 0
    np.testing.assert_array_equal(tracks["Test001"], [[0, 0, 15, 26, 25, 34],
                                                      [0, 1, 0, 0, 8, 8]])
    clipped = read_track_file(folder / "Test001_gt.txt", frame_size=(30, 24))
    np.testing.assert_array_equal(clipped[0], [0, 0, 15, 26, 23, 29])
    (folder / "bad.txt").write_text("0,1,2,3,4,5\n0,1,2,3\n")
    with pytest.raises(DatasetError, match=r"bad\.txt, line 2: expected 6 fields"):
        read_box_tracks(folder)
    (tmp_path / "ambiguous.txt").write_text("0 1 2 3 4 5\n")
    with pytest.raises(DatasetError, match="layout"):
        read_track_file(tmp_path / "ambiguous.txt")
    assert read_track_file(tmp_path / "ambiguous.txt", layout="aed").shape == (1, 6)
    (tmp_path / "empty_box.txt").write_text("0,1,5,5,4,9\n")
    with pytest.raises(DatasetError, match="line 1.*empty"):
        read_track_file(tmp_path / "empty_box.txt")


def test_detections_files_round_trip_and_track_matching(tmp_path):
    det = {"01": np.array([[0, 1, 2, 3, 4, 0.25], [5, 6, 7, 8, 9, 1e-3]]),
           "02": np.zeros((0, 6))}
    paths = write_detections(tmp_path / "det", det)
    assert [p.name for p in paths] == ["01.txt", "02.txt"]
    back = read_detections(tmp_path / "det")
    np.testing.assert_array_equal(back["01"], det["01"])
    assert back["02"].shape == (0, 6)
    t = np.array([[0, 0, 1, 1, 2, 2]], float)
    got = match_tracks({"Test001": t, "02": t}, ["01", "02", "03"])
    assert got["01"] is not None and len(got["01"]) == 1 and len(got["02"]) == 1
    assert got["03"].shape == (0, 6)
    with pytest.raises(DatasetError, match="'Test009' match no test video"):
        match_tracks({"Test009": t}, ["01", "02"])
