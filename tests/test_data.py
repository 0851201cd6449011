"""Dataset readers: small fake trees in every layout (frames written with OpenCV, labels as
.npy, .mat via scipy.io, .txt), lazy access, random access against sequential decoding, and
clear errors on malformed trees."""

from __future__ import annotations

import pickle
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
    open_ubnormal,
)

H, W = 24, 32


def frame(i: int, seed: int = 0) -> np.ndarray:
    """A flat frame whose colour encodes its index i < 100 and `seed` in steps of 24 grey
    levels (robust to MJPG/JPEG loss)."""
    assert 0 <= i < 100
    return np.full((H, W, 3), (20 + 24 * (i % 10), 40 + 20 * seed, 20 + 24 * (i // 10)),
                   np.uint8)


def level(img: np.ndarray) -> int:
    """The frame index encoded by `frame` (decoded from the mean colour)."""
    b, _, r = img.reshape(-1, 3).mean(0)
    return int(round((b - 20) / 24)) + 10 * int(round((r - 20) / 24))


def write_avi(path: Path, n: int, seed: int = 0) -> list[np.ndarray]:
    path.parent.mkdir(parents=True, exist_ok=True)
    frames = [frame(i, seed) for i in range(n)]
    w = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 25, (W, H))
    assert w.isOpened()
    for f in frames:
        w.write(f)
    w.release()
    return frames


def write_frames(folder: Path, n: int, ext: str = ".jpg", fmt: str = "{:03d}", seed: int = 0,
                 gray: bool = False) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(n):
        f = frame(i, seed)
        cv2.imwrite(str(folder / (fmt.format(i) + ext)), f[..., 0] if gray else f)


def box_masks(n: int, on: list[int]) -> np.ndarray:
    m = np.zeros((n, H, W), np.uint8)
    for t in on:
        m[t, 5 + t % 4: 12 + t % 4, 8:15] = 1
    return m


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


def test_video_file_random_access_matches_sequential(tmp_path):
    src = write_avi(tmp_path / "v.avi", 90)
    v = VideoFileVideo(tmp_path / "v.avi", cache_size=4)
    assert len(v) == 90 and v.shape == (H, W)
    seq = [level(f) for f in v.frames()]
    assert seq == [level(f) for f in src]
    order = [50, 3, 3, 89, 0, 60, 61, 62, 10, -1, 88, 12, 70]  # back, forth, far, near, cached
    for i in order:
        f = v[i]
        assert f.dtype == np.uint8 and f.shape == (H, W, 3)
        assert level(f) == seq[i]
    assert [level(f) for f in v.frames(20, 25)] == seq[20:25]
    f = v[7]
    f[:] = 0  # writing into a returned frame leaves the cache intact
    assert level(v[7]) == seq[7]
    with pytest.raises(IndexError):
        v[90]
    with pytest.raises(TypeError):
        v[1.5]
    # picklable (DataLoader workers) with the decoder dropped
    v2 = pickle.loads(pickle.dumps(v))
    assert level(v2[33]) == seq[33] and level(v[34]) == seq[34]
    v.close()
    assert level(v[5]) == seq[5]


# ----------------------------------------------------------------------------- ShanghaiTech


def make_shanghaitech(root: Path, pixel: bool = True) -> dict[str, np.ndarray]:
    write_avi(root / "training/videos/01_001.avi", 11)
    gt = {}
    for name, n in (("01_0014", 9), ("02_0161", 7)):
        write_frames(root / "testing/frames" / name, n, ".jpg", "{:03d}")
        m = box_masks(n, [1, 2] if name == "01_0014" else [6])
        (root / "testing/test_frame_mask").mkdir(parents=True, exist_ok=True)
        np.save(root / "testing/test_frame_mask" / f"{name}.npy",
                m.reshape(n, -1).any(1).astype(np.int64))
        if pixel:
            (root / "testing/test_pixel_mask").mkdir(parents=True, exist_ok=True)
            np.save(root / "testing/test_pixel_mask" / f"{name}.npy", m)
        gt[name] = m
    return gt


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


def test_lazy_open_and_clear_decode_error(tmp_path):
    write_frames(tmp_path / "v", 5, ".jpg")
    (tmp_path / "v/003.jpg").write_bytes(b"not a jpeg")
    ds = open_dataset(tmp_path, "folder")  # opening decodes nothing
    v = ds.test[0]
    assert level(v[2]) == level(frame(2))
    with pytest.raises(DatasetError, match="003.jpg"):
        v[3]


def test_unreadable_video_file(tmp_path):
    (tmp_path / "bad.avi").write_bytes(b"\0" * 100)
    with pytest.raises(DatasetError, match="bad.avi"):
        open_dataset(tmp_path, "folder")


# ----------------------------------------------------------------------------- UBnormal


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


def test_npy_masks_pickle_by_path(tmp_path):
    gt = make_shanghaitech(tmp_path)
    v = open_dataset(tmp_path, "shanghaitech").test[0]
    blob = pickle.dumps(v)
    assert len(blob) < 2000  # the mask array is not copied into the pickle
    v2 = pickle.loads(blob)
    np.testing.assert_array_equal(v2.mask(1), gt[v.name][1] != 0)
    np.testing.assert_array_equal(v2.labels, v.labels)
