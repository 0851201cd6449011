"""The `aedfast train` arguments (aedfast.training.cli)."""

from __future__ import annotations

import argparse

import cv2
import numpy as np
import pytest

from aedfast.model import AEDMAE
from aedfast.training import add_train_arguments, run_from_args

from .training_support import make_videos, write_folder


@pytest.fixture(scope="module")
def videos():
    return make_videos()


def test_cli_arguments(videos, tmp_path, capsys):
    root = tmp_path / "data"
    for v in videos[:2]:
        write_folder(root, v.name, np.stack([cv2.resize(f, (128, 64)) for f in v.data]))
    p = argparse.ArgumentParser()
    add_train_arguments(p)
    p.add_argument("--quiet", action="store_true")
    args = p.parse_args([str(root), "--dataset", "folder", "--out", str(tmp_path / "o"),
                         "--steps", "2", "--batch-size", "4", "--streams", "2", "--workers", "0",
                         "--name", "m", "--quiet", "--checkpoint-every", "1"])
    path = run_from_args(args)
    assert path == tmp_path / "o" / "m.safetensors" and path.exists()
    assert AEDMAE.load(path).config.name == "tiny"
    with pytest.raises(SystemExit):
        p.parse_args([str(root), "--epochs", "1", "--steps", "2"])
    a = p.parse_args([str(root), "--anomaly-size", "0.05,0.4", "--motion-strength", "0.5",
                      "--photometric", "0.1"])
    assert a.anomaly_size == (0.05, 0.4) and a.motion_strength == 0.5 and a.photometric == 0.1
    for bad in ("0.4,0.1", "0.1", "x,0.2"):
        with pytest.raises(SystemExit):
            p.parse_args([str(root), "--anomaly-size", bad])
    assert "need 0 < lo <= hi" in capsys.readouterr().err
