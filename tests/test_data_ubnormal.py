"""UBnormal reader: both layouts (video files beside the annotations, extracted frame folders),
object tracks with and without a tracks file, and clear errors."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from aedfast.data import DatasetError, open_ubnormal

from .data_trees import H, W, frame, level, write_avi, write_frames


def write_id_masks(folder: Path, n: int, name: str) -> np.ndarray:
    """Object 3 in frames 1..4 (moving right), object 5 in frames 3..6 and again at 9."""
    folder.mkdir(parents=True, exist_ok=True)
    ids = np.zeros((n, H, W), np.uint8)
    for t in range(1, 5):
        ids[t, 4:10, 2 + t: 8 + t] = 3
    for t in (3, 4, 5, 6, 9):
        ids[t, 14:20, 20:26] = 5
    for t in range(n):
        m = np.repeat(ids[t][..., None], 3, axis=2)  # UBnormal masks are colour PNGs
        cv2.imwrite(str(folder / f"{name}_{t:04d}_gt.png"), m)
    return ids


def test_ubnormal_original_layout(tmp_path):
    name = "abnormal_scene_1_scenario_1"
    scene = tmp_path / "Scene1"
    n = 10
    scene.mkdir()
    vw = cv2.VideoWriter(str(scene / f"{name}.mp4"), cv2.VideoWriter_fourcc(*"mp4v"), 25, (W, H))
    if not vw.isOpened():  # pragma: no cover - codec missing in this OpenCV build
        vw = cv2.VideoWriter(str(scene / f"{name}.avi"), cv2.VideoWriter_fourcc(*"MJPG"), 25,
                             (W, H))
    for i in range(n):
        vw.write(frame(i))
    vw.release()
    ann = scene / f"{name}_annotations"
    ids = write_id_masks(ann / f"{name}_gt", n, name)
    (ann / f"{name}_tracks.txt").write_text("3,1,5\n5,3,7\n")
    # a normal video (ignored by default) and its annotations
    write_avi(scene / "normal_scene_1_scenario_1.avi", n)
    write_id_masks(scene / "normal_scene_1_scenario_1_annotations", n, "x")
    ub = open_ubnormal(tmp_path)
    assert len(ub) == 1 and ub.videos[0].name == name
    seqs = list(ub.sequences())
    assert [(s.object_id, s.start, s.stop) for s in seqs] == [(3, 1, 5), (5, 3, 7)]
    f, m = seqs[0].load()
    assert f.shape == (4, H, W, 3) and m.shape == (4, H, W) and m.dtype == bool
    np.testing.assert_array_equal(m, ids[1:5] == 3)
    assert level(f[0]) == pytest.approx(level(frame(1)), abs=3)
    fc, mc = seqs[0].load(crop=True, pad=0)
    assert fc.shape == (4, 6, 9, 3) and mc.shape == (4, 6, 9)  # union box of the moving square
    assert mc.sum() == m.sum()
    f2, _ = seqs[1].load(min_area=1)
    assert len(f2) == 4
    assert "2 anomalous object tracks" in ub.summary()
    assert len(open_ubnormal(tmp_path, only_abnormal=False)) == 2


def test_ubnormal_extracted_frames_without_tracks(tmp_path):
    name = "abnormal_scene_2_scenario_3"
    n = 11
    write_frames(tmp_path / "train/frames" / name, n, ".jpg", "{:d}")
    write_id_masks(tmp_path / "train/annotations" / f"{name}_annotations", n, name)
    ub = open_ubnormal(tmp_path)
    tracks = [(s.object_id, s.start, s.stop) for s in ub.sequences()]
    assert tracks == [(3, 1, 5), (5, 3, 7), (5, 9, 10)]  # runs of consecutive frames
    assert [(s.object_id, s.start) for s in ub.sequences(min_length=2)] == [(3, 1), (5, 3)]
    seq = next(ub.sequences())
    assert seq.mask(0).sum() == 36 and level(seq.frame(0)) == level(frame(1))


def test_ubnormal_errors(tmp_path):
    with pytest.raises(DatasetError, match="no annotated"):
        open_ubnormal(tmp_path)
    name = "abnormal_scene_3_scenario_1"
    write_id_masks(tmp_path / "Scene3" / f"{name}_annotations" / f"{name}_gt", 10, name)
    with pytest.raises(DatasetError, match=f"{name}.mp4"):
        open_ubnormal(tmp_path)
    write_frames(tmp_path / "Scene3" / name, 6, ".jpg")
    with pytest.raises(DatasetError, match="10 mask images for 6 frames"):
        open_ubnormal(tmp_path)
    write_frames(tmp_path / "Scene3" / name, 10, ".jpg")
    (tmp_path / "Scene3" / f"{name}_annotations" / f"{name}_tracks.txt").write_text("3 x 4\n")
    with pytest.raises(DatasetError, match="tracks.txt:1"):
        open_ubnormal(tmp_path)
