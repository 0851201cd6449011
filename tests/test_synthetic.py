"""The synthetic surveillance benchmark: layout readable by the ShanghaiTech reader, exact
ground truth, determinism, idempotent atomic writes, visible anomalies, speed."""

from __future__ import annotations

import json
import shutil
import time

import numpy as np
import pytest

from aedfast.data import open_dataset
from aedfast.data.synthetic import (
    ANOMALY_KINDS,
    GENERATOR_VERSION,
    SPLITS,
    generate,
    load_manifest,
    make_scene,
    open_validation,
    render_video,
    video_seed,
)
from aedfast.data.synthetic_agents import WALK

SMALL = {"n_train": 2, "n_test": 3, "n_val": 2, "frames": 90, "size": (48, 96), "progress": False}


@pytest.fixture(scope="module")
def small_tree(tmp_path_factory):
    root = tmp_path_factory.mktemp("syn") / "bench"
    return generate(root, seed=5, **SMALL)


def test_layout_and_ground_truth(small_tree):
    ds = open_dataset(small_tree, "shanghaitech")
    assert [len(v) for v in ds.train] == [90, 90]
    assert [v.name for v in ds.test] == ["01_0001", "01_0002", "01_0003"]
    man = load_manifest(small_tree)
    assert man["complete"] and man["params"]["seed"] == 5
    for v in ds.test:
        assert v[0].shape == (48, 96, 3) and ds.train[0][0].shape == (48, 96, 3)
        lab = v.labels
        # exact: a frame is anomalous iff its pixel mask is not empty
        np.testing.assert_array_equal(lab, [v.mask(t).any() for t in range(len(v))])
        info = man["test_videos"][v.name]
        assert info["anomalous_frames"] == int(lab.sum())
        assert 1 <= len(info["intervals"]) <= 2
        for a, b in info["intervals"]:
            assert lab[a:b].all() and (a == 0 or lab[a - 1] == 0)
        assert set(info["kinds"]) <= set(ANOMALY_KINDS)
        assert 0.15 < lab.mean() < 0.7
    assert not any(p.name.startswith(".") for p in small_tree.parent.iterdir())  # no temp dirs


def test_deterministic_and_idempotent(small_tree, tmp_path):
    again = generate(tmp_path / "copy", seed=5, **SMALL)
    for sub in ("testing/test_pixel_mask/01_0002.npy", "testing/frames/01_0003/047.jpg",
                "training/videos/01_002.avi"):
        assert (again / sub).read_bytes() == (small_tree / sub).read_bytes()
    other = generate(tmp_path / "other", seed=6, **SMALL)
    assert (other / "testing/test_pixel_mask/01_0001.npy").read_bytes() != \
        (small_tree / "testing/test_pixel_mask/01_0001.npy").read_bytes()
    # same parameters: reused without rewriting
    m = (again / "manifest.json").stat().st_mtime_ns
    t = time.perf_counter()
    assert generate(tmp_path / "copy", seed=5, **SMALL) == again
    assert time.perf_counter() - t < 0.5 and (again / "manifest.json").stat().st_mtime_ns == m
    # other parameters on an existing tree: refused unless overwrite
    with pytest.raises(FileExistsError):
        generate(tmp_path / "copy", seed=7, **SMALL)
    generate(tmp_path / "copy", seed=7, overwrite=True, **SMALL)
    assert load_manifest(tmp_path / "copy")["params"]["seed"] == 7
    assert sorted(p.name for p in tmp_path.iterdir()) == ["copy", "other"]


def test_video_i_independent_of_counts(small_tree, tmp_path):
    fewer = generate(tmp_path / "fewer", seed=5,
                     **{**SMALL, "n_test": 1, "n_train": 1, "n_val": 1})
    for sub in ("testing/test_pixel_mask/01_0001.npy", "validation/pixel_mask/val_0001.npy"):
        assert (fewer / sub).read_bytes() == (small_tree / sub).read_bytes()


def test_validation_split(small_tree, tmp_path):
    """Its own labelled videos, from seeds no training or test video uses; adding it leaves
    the training and test splits byte-identical."""
    val = open_validation(small_tree)
    assert [v.name for v in val.test] == ["val_0001", "val_0002"] and val.train == []
    man = load_manifest(small_tree)
    for v in val.test:
        assert len(v) == 90 and v[0].shape == (48, 96, 3)
        lab = v.labels
        np.testing.assert_array_equal(lab, [v.mask(t).any() for t in range(len(v))])
        info = man["validation_videos"][v.name]
        assert info["anomalous_frames"] == int(lab.sum()) and 0.15 < lab.mean() < 0.7
        assert set(info["kinds"]) <= set(ANOMALY_KINDS)
    seeds = {s: {tuple(x) for x in man["seeds"][s]} for s in SPLITS}
    assert [len(seeds[s]) for s in SPLITS] == [2, 3, 2]
    assert seeds["validation"] == {tuple(video_seed(5, "validation", i)) for i in range(2)}
    assert not seeds["validation"] & (seeds["train"] | seeds["test"])
    assert not seeds["train"] & seeds["test"]
    assert [info["seed"] for info in man["validation_videos"].values()] == \
        [list(s) for s in sorted(seeds["validation"])]
    # different seeds, different videos: validation video i is not test video i
    test_first = open_dataset(small_tree, "shanghaitech").test[0]
    assert not np.array_equal(val.test[0][10], test_first[10])
    # no validation split: the same training and test bytes
    none = generate(tmp_path / "noval", seed=5, **{**SMALL, "n_val": 0})
    for sub in ("testing/frames/01_0003/047.jpg", "testing/test_pixel_mask/01_0002.npy",
                "training/videos/01_002.avi"):
        assert (none / sub).read_bytes() == (small_tree / sub).read_bytes()
    assert not any((none / "validation/frames").iterdir())


def test_older_version_tree_is_regenerated(tmp_path):
    """A version-1 tree (no validation split) with otherwise the same parameters is replaced
    without `overwrite`: same test videos, and now a validation split."""
    args = {**SMALL, "n_train": 1, "n_test": 1, "n_val": 1, "frames": 60}
    root = generate(tmp_path / "old", seed=2, **args)
    before = (root / "testing/test_pixel_mask/01_0001.npy").read_bytes()
    man = load_manifest(root)
    del man["params"]["n_val"], man["validation_videos"]
    man["params"]["version"] = 1
    (root / "manifest.json").write_text(json.dumps(man))
    shutil.rmtree(root / "validation")
    generate(root, seed=2, **args)
    assert load_manifest(root)["params"]["version"] == GENERATOR_VERSION
    assert (root / "testing/test_pixel_mask/01_0001.npy").read_bytes() == before
    assert len(open_validation(root).test) == 1
    # other parameters than the version's own: still refused
    man = load_manifest(root)
    man["params"].update(version=1, frames=61)
    (root / "manifest.json").write_text(json.dumps(man))
    with pytest.raises(FileExistsError):
        generate(root, seed=2, **args)


@pytest.mark.parametrize("kind", ANOMALY_KINDS)
def test_each_anomaly_kind_visible(kind):
    scene = make_scene(0, 64, 128)
    frames, masks = render_video(scene, np.random.default_rng(11), 140, [kind])
    lab = masks.reshape(len(masks), -1).any(1)
    assert 0.1 < lab.mean() < 0.8
    bg = scene.background.astype(np.float32)
    diffs, areas = [], []
    for t in np.nonzero(lab)[0]:
        m = masks[t] > 0
        diffs.append(np.abs(frames[t].astype(np.float32) - bg)[m].mean())
        areas.append(m.sum())
    # the anomalous pixels clearly differ from the empty scene (noise sigma is 2.5)
    assert np.median(diffs) > 20, np.median(diffs)
    assert np.median(areas) >= 4


def test_anomalies_move_faster_than_walkers():
    scene = make_scene(0, 64, 128)
    for kind, min_ratio in (("running", 2.8), ("vehicle", 3.5), ("cyclist", 2.8)):
        _, masks = render_video(scene, np.random.default_rng(2), 140, [kind])
        speeds = []
        for t in range(len(masks) - 1):
            a, b = masks[t] > 0, masks[t + 1] > 0
            # fully visible in both frames: not touching the image sides
            if a.sum() > 20 and b.sum() > 20 and not (a[:, [0, -1]].any() or b[:, [0, -1]].any()):
                ys, xs = np.nonzero(a)
                ys2, xs2 = np.nonzero(b)
                h = ys.max() - ys.min() + 1
                speeds.append(abs(xs2.mean() - xs.mean()) / h)
        assert speeds, kind
        # walkers move WALK body heights per frame; object height ~ person height
        assert np.median(speeds) > min_ratio * WALK * 0.8, (kind, np.median(speeds) / WALK)


def test_train_videos_have_no_anomalies_and_people_move():
    scene = make_scene(1, 64, 128)
    frames, masks = render_video(scene, np.random.default_rng(0), 60, [])
    assert masks is None
    diff = np.abs(frames[1:].astype(np.int16) - frames[:-1]).max(axis=(1, 2, 3))
    assert (diff > 40).mean() > 0.5  # moving people in most frames, not just sensor noise


def test_argument_checks(tmp_path):
    with pytest.raises(ValueError, match="kinds"):
        generate(tmp_path / "x", kinds=["alien"], progress=False)
    with pytest.raises(ValueError, match="size"):
        generate(tmp_path / "x", size=(8, 8), progress=False)
    with pytest.raises(ValueError, match="frames"):
        generate(tmp_path / "x", frames=10, progress=False)
    (tmp_path / "busy").mkdir()
    (tmp_path / "busy/file.txt").write_text("x")
    with pytest.raises(FileExistsError):
        generate(tmp_path / "busy", progress=False)


def test_default_size_is_fast(tmp_path):
    # CPU time, not wall time: the cost of generating, whatever else shares the machine
    t = time.process_time()
    root = generate(tmp_path / "default", progress=False)
    dt = time.process_time() - t
    ds = open_dataset(root, "shanghaitech")
    assert len(ds.train) == 8 and len(ds.test) == 6 and len(ds.test[0]) == 250
    val = open_validation(root)
    assert len(val.test) == 7 and len(val.test[0]) == 250
    assert ds.test[0][0].shape == (64, 128, 3)
    fr = np.mean([v.labels.mean() for v in ds.test])
    assert 0.3 <= fr <= 0.55, fr
    # 21 videos (8 training, 6 test, 7 validation): about 7 s of CPU
    assert dt < 20, f"default generation took {dt:.1f} s of CPU"
