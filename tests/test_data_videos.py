"""Lazy videos: random access against sequential decoding, the frame cache, pickling, and
clear errors on undecodable frames and video files."""

from __future__ import annotations

import pickle

import numpy as np
import pytest

from aedfast.data import DatasetError, VideoFileVideo, open_dataset

from .data_trees import H, W, frame, level, write_avi, write_frames


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
