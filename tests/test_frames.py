"""Tests of aedfast.frames: the one frame lister, OpenCV-exact resizes, frame preparation."""

import cv2
import numpy as np
import pytest
import torch

from aedfast.frames import (
    FrameSource,
    check_frames_array,
    cv2_resize,
    list_frame_files,
    prepare_frames,
    resize_frame,
)
from tests.detector_fixtures import FRAME


def _prep(frames, **kw) -> torch.Tensor:
    """Frames as the tiny preset's model step reads them, on the CPU."""
    return prepare_frames(frames, (64, 128), torch.device("cpu"), **kw)


# ----------------------------------------------------------------------------- the lister


def test_list_frame_files_natural_order_hidden_and_dominant_extension(tmp_path):
    for name in ["10.jpg", "2.jpg", "1.jpg", "thumb.png", ".0.jpg", "_meta.jpg", "notes.txt"]:
        (tmp_path / name).write_bytes(b"x")
    (tmp_path / "sub.jpg").mkdir()  # a folder named like an image is not a frame
    assert [p.name for p in list_frame_files(tmp_path)] == ["1.jpg", "2.jpg", "10.jpg"]
    empty = tmp_path / "empty"
    empty.mkdir()
    assert list_frame_files(empty) == []


def test_one_lister_for_scoring_and_data_sets(tmp_path):
    """The data set readers and the Detector read a folder through the same lister, so a
    stray file cannot make them see different frames."""
    from aedfast.data.readers import FrameFolderVideo

    rng = np.random.default_rng(0)
    for i in range(5):
        cv2.imwrite(str(tmp_path / f"{i}.png"), rng.integers(0, 255, (8, 8, 3), np.uint8))
    cv2.imwrite(str(tmp_path / ".hidden.png"), np.zeros((8, 8, 3), np.uint8))
    cv2.imwrite(str(tmp_path / "x.jpg"), np.zeros((8, 8, 3), np.uint8))
    video = FrameFolderVideo.from_folder(tmp_path)
    src = FrameSource(tmp_path, chunk=16, pin=False, max_frames=None)
    frames = np.concatenate(list(src.chunks()))
    assert len(video) == src.total == len(frames) == 5
    for i in range(5):
        np.testing.assert_array_equal(video[i], frames[i])


def test_resize_frame_is_cv2_and_identity_at_size():
    f = np.random.default_rng(1).integers(0, 255, (30, 50, 3), np.uint8)
    np.testing.assert_array_equal(resize_frame(f, (16, 24)),
                                  cv2.resize(f, (24, 16), interpolation=cv2.INTER_LINEAR))
    assert resize_frame(f, (30, 50)) is f


def test_check_frames_array_errors():
    check_frames_array(np.zeros((2, 4, 4, 3), np.uint8))
    with pytest.raises(TypeError, match="uint8"):
        check_frames_array(np.zeros((2, 4, 4, 3), np.float32))
    with pytest.raises(ValueError, match="empty frame size"):
        check_frames_array(np.zeros((2, 0, 4, 3), np.uint8))


# ----------------------------------------------------------------------------- resizes


@pytest.fixture(scope="module")
def video() -> np.ndarray:
    rng = np.random.default_rng(0)
    return rng.integers(0, 255, (4, *FRAME, 3), dtype=np.uint8)


@pytest.mark.parametrize("size,out", [((72, 136), (64, 128)), ((64, 128), (64, 128)),
                                      ((50, 90), (64, 128)), ((120, 300), (64, 128)),
                                      ((33, 257), (64, 128)), ((360, 640), (320, 640)),
                                      ((480, 856), (160, 320)), ((240, 360), (320, 640))])
def test_cv2_resize_is_bit_exact(size, out):
    """The device resize reproduces cv2.resize(INTER_LINEAR) exactly (the official pipeline's
    pre-processing), up- and down-scaling, including the two official frame sizes."""
    rng = np.random.default_rng(1)
    frames = rng.integers(0, 256, (2, *size, 3), dtype=np.uint8)
    frames[0] = cv2.GaussianBlur(frames[0], (5, 5), 2)
    got = cv2_resize(torch.from_numpy(frames).permute(0, 3, 1, 2), out).permute(0, 2, 3, 1)
    for i in range(2):
        ref = cv2.resize(frames[i], (out[1], out[0]), interpolation=cv2.INTER_LINEAR)
        np.testing.assert_array_equal(got[i].numpy(), ref)


def test_prepare_frames_resizes_like_cv2(video):
    out = _prep(video[:3]).numpy()
    assert out.dtype == np.uint8 and out.shape == (3, 3, 64, 128)
    for i in range(3):
        ref = cv2.resize(video[i], (128, 64), interpolation=cv2.INTER_LINEAR)
        np.testing.assert_array_equal(out[i].transpose(1, 2, 0), ref)


def test_host_and_tensor_resize_agree(video):
    """The CPU path resizes with OpenCV on the host; the device path with `cv2_resize`: same
    bytes, so CPU and GPU runs see the same input."""
    host = _prep(video[:3])
    dev = cv2_resize(torch.from_numpy(video[:3]).permute(0, 3, 1, 2), (64, 128))
    assert torch.equal(host, dev)


def test_prepare_frames_channels():
    rng = np.random.default_rng(2)
    bgr = rng.integers(0, 256, (2, *FRAME, 3), dtype=np.uint8)
    grey = bgr[..., 0]
    ref_grey = _prep(np.repeat(grey[..., None], 3, axis=-1))
    assert torch.equal(_prep(grey), ref_grey)
    assert torch.equal(_prep(grey[..., None]), ref_grey)
    bgra = np.concatenate([bgr, np.full((2, *FRAME, 1), 255, np.uint8)], axis=-1)
    assert torch.equal(_prep(bgra), _prep(bgr))
    rgb = np.ascontiguousarray(bgr[..., ::-1])
    assert torch.equal(_prep(rgb, channel_order="rgb"), _prep(bgr))
    with pytest.raises(TypeError, match="uint8"):
        _prep(bgr.astype(np.float32))
    with pytest.raises(ValueError, match="T, H, W, 3"):
        _prep(bgr[..., :2])
