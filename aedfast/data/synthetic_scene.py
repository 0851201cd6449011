"""The synthetic benchmark's camera (see `aedfast.data.synthetic`): scene geometry and the
static background, a building with windows and a door, a lawn with trees and a bench, and a
paved walkway crossing the image, seen in linear perspective. The keyword arguments of
`make_scene` are the scene knobs of `aedfast.data.synthetic_variants.Variant`; their defaults
draw today's scene.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np


@dataclass
class Scene:
    """Scene geometry and the static background of one camera (image size H x W)."""

    H: int
    W: int
    background: np.ndarray  # uint8 [H, W, 3] BGR
    y_vanish: float  # a person standing at feet row y is height_at(y) tall
    y_ground: float  # where the ground (lawn) starts below the building
    walk_band: tuple[float, float]  # feet rows of the walkway's usable width
    door_x: float
    slope: float = 0.525  # person height gained per row further down

    def height_at(self, y: float) -> float:
        """Person height in pixels for feet at row y (linear perspective)."""
        return max(self.slope * (y - self.y_vanish), 0.5)


def _smooth_noise(rng: np.random.Generator, H: int, W: int, cells: int, ch: int = 1) -> np.ndarray:
    """Low-frequency noise in about [-1, 1]: random values on a coarse grid, cubic upsampling."""
    ch_ = max(2, int(round(H / cells)))
    cw = max(2, int(round(W / cells)))
    small = rng.standard_normal((ch_ + 3, cw + 3, ch)).astype(np.float32)
    big = cv2.resize(small, (W + 3 * W // cw, H + 3 * H // ch_), interpolation=cv2.INTER_CUBIC)
    big = big.reshape(big.shape[0], big.shape[1], ch)
    return big[H // ch_: H // ch_ + H, W // cw: W // cw + W] / 1.5


# palette styles: BGR factors on the sky, facade, ground (lawn) and paving colours
_STYLES = {"plaza": ((1, 1, 1), (1.05, 1.0, 0.95), (1.9, 1.05, 1.7), (0.8, 0.85, 0.9)),
           "autumn": ((0.9, 0.95, 1.05), (0.9, 0.95, 1.0), (0.55, 0.8, 1.9), (1, 1, 1)),
           "dusk": ((0.45, 0.4, 0.5), (0.5, 0.5, 0.55), (0.45, 0.45, 0.45), (0.5, 0.5, 0.55)),
           "overcast": ((1.0, 1.02, 1.1), (0.95, 0.95, 0.95), (1.3, 0.9, 1.2), (1.05, 1.05, 1.05))}


def make_scene(seed: int, H: int, W: int, *, style: str = "default", texture: float = 1.0,
               horizon: float = 0.30, walkway: tuple[float, float] = (0.60, 0.90),
               vanish: float = 0.2) -> Scene:
    """The static scene of `seed` at H x W (deterministic). style: a palette ("default" or
    one of `_STYLES`); texture: texture amplitude factor; horizon: row fraction where the
    building meets the lawn; walkway: row fractions of the paved band (people walk with their
    feet in its middle two thirds); vanish: row fraction where a person would be 0 px tall,
    a person's height at row 0.76 H (the centre of today's walkway) staying today's."""
    rng = np.random.default_rng([seed, 7919])
    u = H / 64.0
    y_sky, y_ground = 0.07 * H, horizon * H
    band_top, band_bot = walkway[0] * H, walkway[1] * H
    if tuple(walkway) == (0.60, 0.90):
        walk_band = (0.66 * H, 0.86 * H)
    else:
        bw = band_bot - band_top
        walk_band = (band_top + 0.2 * bw, band_bot - 0.13 * bw)
    yv = vanish * H
    slope = 0.525 * ((0.76 - 0.2) / (0.76 - vanish))  # 0.525 at vanish 0.2
    img = np.zeros((H, W, 3), np.float32)
    rows = np.arange(H, dtype=np.float32)[:, None, None]
    # sky, building facade, lawn, walkway (BGR)
    sky = np.array([215, 190, 160], np.float32) + rng.uniform(-15, 15, 3)
    facade = np.array([150, 165, 180], np.float32) + rng.uniform(-25, 25, 3)
    grass = np.array([60, 125, 75], np.float32) + rng.uniform(-12, 12, 3)
    paving = np.array([150, 150, 148], np.float32) + rng.uniform(-15, 15, 3)
    if style != "default":
        sky, facade, grass, paving = (np.clip(c * np.float32(f), 0, 255) for c, f in
                                      zip((sky, facade, grass, paving), _STYLES[style]))
    img[:] = grass
    img[rows[:, 0, 0] < y_ground] = facade
    img[rows[:, 0, 0] < y_sky] = sky
    walk = (rows[:, 0, 0] >= band_top) & (rows[:, 0, 0] < band_bot)
    img[walk] = paving
    # texture: low-frequency blotches and fine grain, stronger on grass
    lo = _smooth_noise(rng, H, W, 6)
    fine = rng.standard_normal((H, W, 1)).astype(np.float32)
    amp = np.where(walk[:, None, None], 6.0, 12.0).astype(np.float32)
    amp[rows[:, 0, 0] < y_ground] = 5.0
    if texture != 1.0:
        amp *= np.float32(texture)
    img += amp * lo + 0.5 * amp * fine
    img = np.clip(img, 0, 255).astype(np.uint8)
    # windows: a grid on the facade, some lit
    ny, nx = 2, max(4, int(W / (10 * u)))
    wh, ww = 0.06 * H, 0.55 * W / nx
    for i in range(ny):
        for j in range(nx):
            x0 = (j + 0.22) * W / nx
            y0 = y_sky + (i + 0.25) * (y_ground - y_sky) / ny
            c = (200, 225, 235) if rng.random() < 0.25 else (85, 75, 70)
            c = tuple(int(v + rng.integers(-10, 10)) for v in c)
            cv2.rectangle(img, (int(x0), int(y0)), (int(x0 + ww), int(y0 + wh)), c, -1)
    door_x = float(rng.uniform(0.3, 0.7) * W)
    dh, dw = 0.11 * H, 0.05 * W
    cv2.rectangle(img, (int(door_x - dw / 2), int(y_ground - dh)), (int(door_x + dw / 2),
                  int(y_ground) - 1), (40, 50, 60), -1)
    # walkway joints converging towards a vanishing point
    xc = W / 2
    for k in range(-12, 13):
        xb = xc + k * 0.12 * W
        xt = xc + (xb - xc) * (band_top - yv) / (band_bot - yv)
        cv2.line(img, (int(xt), int(band_top)), (int(xb), int(band_bot)), (120, 120, 120), 1)
    for y in np.geomspace(band_top - yv, band_bot - yv, 5)[1:-1] + yv:
        cv2.line(img, (0, int(y)), (W, int(y)), (125, 125, 125), 1)
    cv2.line(img, (0, int(band_top)), (W, int(band_top)), (100, 110, 110), max(1, int(u)))
    # trees and a bench on the lawn between building and walkway, away from the door
    for _ in range(int(rng.integers(2, 4))):
        for _try in range(10):
            tx = float(rng.uniform(0.05, 0.95) * W)
            if abs(tx - door_x) > 0.15 * W:
                break
        ty = float(rng.uniform(0.42, 0.55) * H)
        th = slope * (ty - yv) * 1.8
        cv2.line(img, (int(tx), int(ty)), (int(tx), int(ty - 0.5 * th)), (40, 60, 90),
                 max(1, int(0.08 * th)))
        green = (int(rng.integers(30, 60)), int(rng.integers(90, 130)), int(rng.integers(40, 70)))
        cv2.circle(img, (int(tx), int(ty - 0.7 * th)), max(2, int(0.3 * th)), green, -1,
                   cv2.LINE_AA)
    bx, by = float(rng.uniform(0.1, 0.8) * W), 0.55 * H
    cv2.rectangle(img, (int(bx), int(by - 2 * u)), (int(bx + 10 * u), int(by)), (50, 80, 110), -1)
    return Scene(H, W, img, yv, y_ground, walk_band, door_x, slope)
