"""Data set layouts: small fake trees in every layout (frames written with OpenCV, labels as
.npy, .mat via scipy.io, .txt), what `open_dataset` finds in them, and clear errors on malformed
trees."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest
import scipy.io

from aedfast.data import (
    DatasetError,
    FrameFolderVideo,
    VideoFileVideo,
    detect_kind,
    open_dataset,
)

from .data_trees import (
    H,
    W,
    box_masks,
    frame,
    level,
    make_shanghaitech,
    write_avi,
    write_frames,
)

# ----------------------------------------------------------------------------- Avenue


def make_avenue(root: Path, lengths=(10, 8)) -> dict[str, np.ndarray]:
    write_avi(root / "training_videos/01.avi", 12)
    write_avi(root / "training_videos/02.avi", 9, seed=1)
    gt = {}
    mdir = root / "ground_truth_demo/testing_label_mask"
    mdir.mkdir(parents=True)
    for k, n in enumerate(lengths, 1):
        write_avi(root / f"testing_videos/{k:02d}.avi", n, seed=k)
        m = box_masks(n, [2, 3, 4] if k == 1 else [0, n - 1])
        cell = np.empty((1, n), dtype=object)
        for t in range(n):
            cell[0, t] = m[t].astype(np.float64)  # MATLAB masks are often double
        scipy.io.savemat(str(mdir / f"{k}_label.mat"), {"volLabel": cell})
        gt[f"{k:02d}"] = m
    return gt


def test_avenue(tmp_path):
    gt = make_avenue(tmp_path)
    ds = open_dataset(tmp_path, "avenue")
    assert [v.name for v in ds.train] == ["01", "02"]
    assert [len(v) for v in ds.train] == [12, 9]
    assert [v.name for v in ds.test] == ["01", "02"]
    assert all(isinstance(v, VideoFileVideo) for v in ds.train + ds.test)
    for v in ds.test:
        m = gt[v.name]
        np.testing.assert_array_equal(v.labels, m.reshape(len(m), -1).any(1).astype(np.uint8))
        assert v.labels.dtype == np.uint8
        for t in range(len(v)):
            mk = v.mask(t)
            assert mk.dtype == bool and mk.shape == (H, W)
            np.testing.assert_array_equal(mk, m[t] != 0)
        assert len(v.masks) == len(v)
    assert ds.train[0].labels is None and ds.train[0].mask(0) is None
    s = ds.summary()
    assert "train: 2 videos, 21 frames" in s and "test: 2 videos, 18 frames" in s
    assert "5 anomalous" in s and "pixel masks for 2/2" in s
    assert "avenue" in repr(ds) and "train=2 videos/21 frames" in repr(ds)
    assert open_dataset(tmp_path).kind == "avenue" and detect_kind(tmp_path) == "avenue"


def test_avenue_missing_and_malformed_mat(tmp_path):
    make_avenue(tmp_path)
    (tmp_path / "ground_truth_demo/testing_label_mask/2_label.mat").unlink()
    with pytest.raises(DatasetError, match="2_label.mat"):
        open_dataset(tmp_path, "avenue")
    # wrong length
    cell = np.empty((1, 5), dtype=object)
    for t in range(5):
        cell[0, t] = np.zeros((H, W))
    scipy.io.savemat(str(tmp_path / "ground_truth_demo/testing_label_mask/2_label.mat"),
                     {"volLabel": cell})
    with pytest.raises(DatasetError, match="volLabel has 5 frames.*has 8"):
        open_dataset(tmp_path, "avenue")
    # wrong variable
    scipy.io.savemat(str(tmp_path / "ground_truth_demo/testing_label_mask/2_label.mat"),
                     {"gt": np.zeros(3)})
    with pytest.raises(DatasetError, match="no variable 'volLabel'"):
        open_dataset(tmp_path, "avenue")
    # MATLAB v7.3 (HDF5) files: scipy cannot read them, the error says so and names h5py
    p = tmp_path / "ground_truth_demo/testing_label_mask/2_label.mat"
    p.write_bytes(b"MATLAB 7.3 MAT-file, Platform: GLNXA64, Created on: ..." + b"\0" * 200)
    with pytest.raises(DatasetError, match="h5py"):
        open_dataset(tmp_path, "avenue")


def test_avenue_without_ground_truth(tmp_path):
    write_avi(tmp_path / "training_videos/01.avi", 5)
    write_avi(tmp_path / "testing_videos/01.avi", 5)
    with pytest.raises(DatasetError, match="testing_label_mask"):
        open_dataset(tmp_path, "avenue")


# ----------------------------------------------------------------------------- ShanghaiTech
# (the tree: tests/data_trees.make_shanghaitech)


def test_shanghaitech(tmp_path):
    gt = make_shanghaitech(tmp_path)
    ds = open_dataset(tmp_path, "shanghai")
    assert ds.kind == "shanghaitech" and detect_kind(tmp_path) == "shanghaitech"
    assert [v.name for v in ds.train] == ["01_001"] and len(ds.train[0]) == 11
    assert [v.name for v in ds.test] == ["01_0014", "02_0161"]
    for v in ds.test:
        assert isinstance(v, FrameFolderVideo)
        m = gt[v.name]
        np.testing.assert_array_equal(v.labels, m.reshape(len(m), -1).any(1))
        np.testing.assert_array_equal(v.mask(2), m[2] != 0)
        assert [level(f) for f in v.frames()] == [level(frame(i)) for i in range(len(v))]
    assert "3 anomalous" in ds.summary()


def test_shanghaitech_variants_and_errors(tmp_path):
    make_shanghaitech(tmp_path, pixel=False)
    ds = open_dataset(tmp_path, "shanghaitech")
    assert ds.test[0].masks is None and ds.test[0].mask(0) is None
    assert ds.test[0].labels.sum() == 2
    # labels with the wrong length name the file
    np.save(tmp_path / "testing/test_frame_mask/02_0161.npy", np.zeros(3))
    with pytest.raises(DatasetError, match=r"02_0161\.npy: 3 frame labels.*7 frames"):
        open_dataset(tmp_path, "shanghaitech")
    (tmp_path / "testing/test_frame_mask/02_0161.npy").unlink()
    with pytest.raises(DatasetError, match=r"test_frame_mask/02_0161\.npy"):
        open_dataset(tmp_path, "shanghaitech")


def test_shanghaitech_labels_from_pixel_masks_only(tmp_path):
    gt = make_shanghaitech(tmp_path / "ShanghaiTech")  # archive unpacked one level down
    for p in (tmp_path / "ShanghaiTech/testing/test_frame_mask").iterdir():
        p.unlink()
    ds = open_dataset(tmp_path, "shanghaitech")
    v = ds.test[1]
    np.testing.assert_array_equal(v.labels, gt[v.name].reshape(len(v), -1).any(1))
    bad = np.zeros((4, H, W), np.uint8)
    np.save(tmp_path / "ShanghaiTech/testing/test_pixel_mask/01_0014.npy", bad)
    with pytest.raises(DatasetError, match="4 pixel masks"):
        open_dataset(tmp_path, "shanghaitech")


# ----------------------------------------------------------------------------- Ped2


def make_ped2(root: Path) -> dict[str, np.ndarray]:
    for k in (1, 2):
        write_frames(root / f"Train/Train{k:03d}", 6, ".tif", "{:03d}", gray=True)
    gt = {}
    for k, n in ((1, 8), (2, 6)):
        write_frames(root / f"Test/Test{k:03d}", n, ".tif", "{:03d}", gray=True, seed=k)
        m = box_masks(n, [3, 4, 5] if k == 1 else [1])
        g = root / f"Test/Test{k:03d}_gt"
        g.mkdir(parents=True)
        for t in range(n):
            cv2.imwrite(str(g / f"{t + 1:03d}.bmp"), m[t] * 255)
        gt[f"Test{k:03d}"] = m
    return gt


def test_ped2(tmp_path):
    gt = make_ped2(tmp_path)
    ds = open_dataset(tmp_path / "", "ped2")
    assert [v.name for v in ds.train] == ["Train001", "Train002"]
    assert [v.name for v in ds.test] == ["Test001", "Test002"]  # _gt folders are not videos
    f = ds.train[0][0]
    assert f.shape == (H, W, 3) and f.dtype == np.uint8  # grey .tif -> BGR
    for v in ds.test:
        np.testing.assert_array_equal(v.labels, gt[v.name].reshape(len(v), -1).any(1))
        np.testing.assert_array_equal(v.mask(3), gt[v.name][3] != 0)
    assert detect_kind(tmp_path) == "ped2"


def test_ped2_m_file_fallback_and_errors(tmp_path):
    make_ped2(tmp_path)
    import shutil

    shutil.rmtree(tmp_path / "Test/Test002_gt")
    with pytest.raises(DatasetError, match="Test002_gt"):
        open_dataset(tmp_path, "ped2")
    (tmp_path / "Test/UCSDped2.m").write_text(
        "TestVideoFile = {};\nnote=1;\n"
        "TestVideoFile{end+1}.gt_frame = [4:6];\n"
        "TestVideoFile{end+1}.gt_frame = [1:2, 5];\n")
    ds = open_dataset(tmp_path, "ped2")
    v = ds.test[1]
    np.testing.assert_array_equal(v.labels, [1, 1, 0, 0, 1, 0])
    assert v.masks is None
    assert ds.test[0].masks is not None  # Test001 keeps its pixel masks
    (tmp_path / "Test/Test001_gt/008.bmp").unlink()
    with pytest.raises(DatasetError, match="7 mask images.*8 frames"):
        open_dataset(tmp_path, "ped2")


# ----------------------------------------------------------------------------- official


def test_official_layout_numeric_sort_and_lenient_labels(tmp_path):
    write_frames(tmp_path / "train/frames/01", 12, ".jpg", "{:d}")
    write_frames(tmp_path / "test/frames/01", 12, ".jpg", "{:d}", seed=2)
    write_frames(tmp_path / "test/frames/02", 5, ".png", "{:d}", seed=3)
    (tmp_path / "test/labels").mkdir()
    lab1 = np.array([0, 0, 1, 1, 1, 0, 0, 0, 0, 1, 1, 0])
    (tmp_path / "test/labels/01.txt").write_text("\n".join(map(str, lab1)) + "\n")
    (tmp_path / "test/02.txt").write_text("0 1 1\n0 0")
    ds = open_dataset(tmp_path, "official")
    v = ds.test[0]
    # numeric order: 0, 1, ..., 9, 10, 11 (not 0, 1, 10, 11, 2, ...)
    assert [p.name for p in v.paths][:4] == ["0.jpg", "1.jpg", "2.jpg", "3.jpg"]
    assert v.paths[-1].name == "11.jpg"
    assert [level(f) for f in v.frames()] == [level(frame(i, 2)) for i in range(12)]
    np.testing.assert_array_equal(v.labels, lab1)
    np.testing.assert_array_equal(ds.test[1].labels, [0, 1, 1, 0, 0])
    assert ds.test[1].masks is None
    assert detect_kind(tmp_path) == "official"
    (tmp_path / "test/02.txt").write_text("0 1 2 0 0")
    with pytest.raises(DatasetError, match="0/1"):
        open_dataset(tmp_path, "official")
    (tmp_path / "test/02.txt").unlink()
    with pytest.raises(DatasetError, match="02.txt"):
        open_dataset(tmp_path, "official")
    gtdir = tmp_path / "elsewhere"
    gtdir.mkdir()
    (gtdir / "02.txt").write_text("1\n1\n1\n1\n1\n")
    ds = open_dataset(tmp_path, "official", labels_dir=gtdir)
    assert ds.test[1].labels.sum() == 5


# ----------------------------------------------------------------------------- folder


def test_folder(tmp_path):
    write_avi(tmp_path / "cam/a.avi", 7)
    write_frames(tmp_path / "cam/b", 4, ".png")
    (tmp_path / "cam/notes.txt").write_text("ignored")
    ds = open_dataset(tmp_path / "cam", "folder")
    assert [v.name for v in ds.test] == ["a", "b"]
    assert ds.train is ds.test
    assert all(v.labels is None and v.masks is None for v in ds.test)
    assert "no labels" in ds.summary()
    single = open_dataset(tmp_path / "cam/a.avi", "folder")
    assert len(single.test) == 1 and len(single.test[0]) == 7
    frames_only = open_dataset(tmp_path / "cam/b")
    assert frames_only.kind == "folder" and len(frames_only.test[0]) == 4
    (tmp_path / "empty").mkdir()
    with pytest.raises(DatasetError, match="found none"):
        open_dataset(tmp_path / "empty", "folder")
    with pytest.raises(DatasetError, match="no such"):
        open_dataset(tmp_path / "missing", "folder")
    with pytest.raises(ValueError, match="unknown data set kind"):
        open_dataset(tmp_path, "kitti")
