"""Bad training input (aedfast.training.videos, .plan, .config): errors that say what to
change."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from aedfast.training import TrainingDataError, resolve_config, train

from .training_support import BASE, ArrayVideo, make_videos, write_folder


@pytest.fixture(scope="module")
def videos():
    return make_videos()


def test_empty_training_folder(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="found none|no training videos"):
        train(tmp_path / "empty", dataset="folder", out=tmp_path / "o", steps=1,
                progress=False, **BASE)
    with pytest.raises(TrainingDataError, match="no training videos"):
        train([], out=tmp_path / "o", steps=1, progress=False, **BASE)


def test_unreadable_frame(videos, tmp_path):
    root = tmp_path / "data"
    for v in videos[:2]:
        write_folder(root, v.name, v.data)
    bad = root / videos[1].name / "007.png"
    bad.write_bytes(b"not an image at all")
    with pytest.raises(TrainingDataError, match="007.png"):
        train(root, dataset="folder", out=tmp_path / "o", teacher_steps=10, student_steps=0,
                progress=False, **BASE)


def test_mixed_resolutions(videos, tmp_path):
    big = [ArrayVideo("big", np.stack([cv2.resize(f, (96, 48)) for f in videos[0].data]))]
    with pytest.raises(TrainingDataError, match="mixed resolutions.*allow_mixed_sizes"):
        train(videos[:1] + big, out=tmp_path / "o", steps=1, progress=False, **BASE)
    # allowed on request: every frame is resized to the model's input
    train(videos[:1] + big, out=tmp_path / "ok", steps=1, progress=False,
            allow_mixed_sizes=True, **BASE)
    # inside one video it is always an error
    frames = list(videos[0].data)
    frames[20] = cv2.resize(frames[20], (96, 48))
    odd = ArrayVideo("odd", np.empty(len(frames), dtype=object))
    odd.data[:] = frames
    with pytest.raises(TrainingDataError, match="'odd' frame 20.*inside one video"):
        train([odd, videos[1]], out=tmp_path / "o2", steps=10, progress=False, **BASE)


def test_too_few_frames_and_bad_config(videos, tmp_path):
    short = [ArrayVideo("s", videos[0].data[:5])]
    with pytest.raises(TrainingDataError, match="cannot fill one batch"):
        train(short, out=tmp_path / "o", steps=1, progress=False, **BASE)
    with pytest.raises(ValueError, match="lr_schedule"):
        resolve_config(lr_schedule="linear")
    with pytest.raises(ValueError, match="motion_strength"):
        resolve_config(motion_strength=1.5)
    with pytest.raises(ValueError, match="photometric"):
        resolve_config(photometric=0.9)
    with pytest.raises(ValueError, match="size range 0.5,0.1: need"):
        resolve_config(anomaly_size=(0.5, 0.1))
    with pytest.raises(ValueError, match="two numbers"):
        resolve_config(anomaly_size=(0.1,))
    cfg = resolve_config(anomaly_size=[0.05, 0.5], motion_strength=0.5)
    assert cfg.anomaly_size == (0.05, 0.5) and cfg.to_dict()["anomaly_size"] == [0.05, 0.5]
    with pytest.raises(ValueError, match="unknown preset"):
        train(videos, out=tmp_path / "o", steps=1, progress=False,
                **dict(BASE, preset="huge"))
