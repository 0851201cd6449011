"""Small fake data set trees for the data tests: flat frames whose colour encodes their index
(robust to MJPG/JPEG loss), written as .avi files or frame folders, box masks and the
ShanghaiTech layout."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

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
