"""A seeded, deterministic synthetic surveillance benchmark: the demo's data and the library's
accuracy yardstick.

One fixed camera looks at a scene: a building with windows (a door nobody uses in training), a
lawn with trees and a bench, and a paved walkway crossing the image. Frames get per-pixel sensor
noise and a slow lighting drift. People (articulated stick figures of varied size, build and
clothing colours, scaled by perspective) walk along the walkway in both directions at normal
walking speed (about 0.033 body heights per frame at 25 fps, i.e. 1.4 m/s), entering and
leaving at the image sides.

Test videos add anomalies, each in one or two intervals covering about 30-50% of the frames:

- ``running``: a person running along the walkway at 4x walking speed, faster gait;
- ``cyclist``: a cyclist at 4x walking speed;
- ``vehicle``: a car of a vivid colour at 5x walking speed on the walkway;
- ``thrown``: a ball thrown across the scene on a parabola, bouncing on the ground;
- ``falling``: a crate falling from the top of the image, bouncing, lying for a moment;
- ``wrong_way``: a person leaving the building's door and walking down across the lawn and
  the walkway towards the camera (where and in a direction nobody walks in training);
- ``cart``: a person pushing a large, brightly coloured cart, leaving the walkway
  diagonally towards the camera.

In videos shorter than about 200 frames an anomaly that would take more than half of the
video is sped up (at most 3x) to fit in about 40% of it.

Ground truth is exact: the pixel mask of a frame holds the visible pixels of the anomalous
objects (normal people in front of them occlude the mask), and a frame is anomalous iff its mask
is not empty.

`generate(root, ...)` writes the ShanghaiTech layout read by
``aedfast.data.open_dataset(root, "shanghaitech")``::

    root/manifest.json                         parameters, per-test-video intervals and kinds
    root/background.png                        the empty scene
    root/training/videos/01_001.avi ...        MJPG (lossy, like the real data sets' videos)
    root/testing/frames/01_0001/000.jpg ...    one image per frame
    root/testing/test_frame_mask/01_0001.npy   uint8 [T] frame labels
    root/testing/test_pixel_mask/01_0001.npy   uint8 [T, H, W] pixel masks (0/1)

The tree is written to a temporary folder beside `root` and renamed into place; calling again
with the same parameters reuses the existing tree. Every video is drawn from its own generator
seeded by (seed, split, index), so video i is the same whatever n_train / n_test are.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np

ANOMALY_KINDS = ("running", "vehicle", "wrong_way", "thrown", "cart", "cyclist", "falling")
LONG_KINDS = frozenset({"wrong_way", "cart"})  # one crossing fills a whole interval
GENERATOR_VERSION = 1
WALK = 0.033  # walking speed in body heights per frame (1.4 m/s for 1.7 m at 25 fps)
_SHIFT = 4  # cv2 drawing with 4 fractional bits: sub-pixel positions for smooth slow motion
_ONE = 1 << _SHIFT


# ----------------------------------------------------------------------------- geometry


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

    def height_at(self, y: float) -> float:
        """Person height in pixels for feet at row y (linear perspective)."""
        return max(0.525 * (y - self.y_vanish), 0.5)


def _smooth_noise(rng: np.random.Generator, H: int, W: int, cells: int, ch: int = 1) -> np.ndarray:
    """Low-frequency noise in about [-1, 1]: random values on a coarse grid, cubic upsampling."""
    ch_ = max(2, int(round(H / cells)))
    cw = max(2, int(round(W / cells)))
    small = rng.standard_normal((ch_ + 3, cw + 3, ch)).astype(np.float32)
    big = cv2.resize(small, (W + 3 * W // cw, H + 3 * H // ch_), interpolation=cv2.INTER_CUBIC)
    big = big.reshape(big.shape[0], big.shape[1], ch)
    return big[H // ch_: H // ch_ + H, W // cw: W // cw + W] / 1.5


def make_scene(seed: int, H: int, W: int) -> Scene:
    """The static scene of `seed` at H x W (deterministic)."""
    rng = np.random.default_rng([seed, 7919])
    u = H / 64.0
    y_sky, y_ground = 0.07 * H, 0.30 * H
    band_top, band_bot = 0.60 * H, 0.90 * H
    img = np.zeros((H, W, 3), np.float32)
    rows = np.arange(H, dtype=np.float32)[:, None, None]
    # sky, building facade, lawn, walkway (BGR)
    sky = np.array([215, 190, 160], np.float32) + rng.uniform(-15, 15, 3)
    facade = np.array([150, 165, 180], np.float32) + rng.uniform(-25, 25, 3)
    grass = np.array([60, 125, 75], np.float32) + rng.uniform(-12, 12, 3)
    paving = np.array([150, 150, 148], np.float32) + rng.uniform(-15, 15, 3)
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
    xc, yv = W / 2, 0.2 * H
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
        th = 0.525 * (ty - 0.2 * H) * 1.8
        cv2.line(img, (int(tx), int(ty)), (int(tx), int(ty - 0.5 * th)), (40, 60, 90),
                 max(1, int(0.08 * th)))
        green = (int(rng.integers(30, 60)), int(rng.integers(90, 130)), int(rng.integers(40, 70)))
        cv2.circle(img, (int(tx), int(ty - 0.7 * th)), max(2, int(0.3 * th)), green, -1,
                   cv2.LINE_AA)
    bx, by = float(rng.uniform(0.1, 0.8) * W), 0.55 * H
    cv2.rectangle(img, (int(bx), int(by - 2 * u)), (int(bx + 10 * u), int(by)), (50, 80, 110), -1)
    return Scene(H, W, img, 0.2 * H, y_ground, (0.66 * H, 0.86 * H), door_x)


# ----------------------------------------------------------------------------- drawing


class Painter:
    """Draws on a frame and, with the same shapes, on the anomaly mask: anomalous objects
    write 255 into the mask, normal ones 0 (they occlude anomalies behind them)."""

    def __init__(self, frame: np.ndarray, mask: np.ndarray | None):
        self.frame = frame
        self.mask = mask
        self.mval = 0
        self.active = False  # whether the mask has anything to occlude yet

    def begin(self, anomalous: bool) -> None:
        self.mval = 255 if anomalous else 0
        self.active = self.active or anomalous

    def _both(self, fn: Callable, color) -> None:
        fn(self.frame, color)
        if self.mask is not None and self.active:
            fn(self.mask, self.mval)

    @staticmethod
    def _p(x: float, y: float) -> tuple[int, int]:
        return int(round(x * _ONE)), int(round(y * _ONE))

    def circle(self, x: float, y: float, r: float, color) -> None:
        c, rr = self._p(x, y), max(int(round(r * _ONE)), _ONE // 2)
        self._both(lambda im, col: cv2.circle(im, c, rr, col, -1, cv2.LINE_AA, _SHIFT), color)

    def ring(self, x: float, y: float, r: float, th: float, color) -> None:
        c, rr, t = self._p(x, y), max(int(round(r * _ONE)), _ONE), max(1, int(round(th)))
        self._both(lambda im, col: cv2.circle(im, c, rr, col, t, cv2.LINE_AA, _SHIFT), color)

    def line(self, x0: float, y0: float, x1: float, y1: float, th: float, color) -> None:
        a, b, t = self._p(x0, y0), self._p(x1, y1), max(1, int(round(th)))
        self._both(lambda im, col: cv2.line(im, a, b, col, t, cv2.LINE_AA, _SHIFT), color)

    def poly(self, pts: np.ndarray, color) -> None:
        p = np.round(np.asarray(pts) * _ONE).astype(np.int32)[None]
        self._both(lambda im, col: cv2.fillPoly(im, p, col, cv2.LINE_AA, _SHIFT), color)

    def rect(self, x0: float, y0: float, x1: float, y1: float, color) -> None:
        self.poly(np.array([[x0, y0], [x1, y0], [x1, y1], [x0, y1]]), color)


def _draw_person(p: Painter, x: float, y: float, h: float, phase: float, look: dict, *,
                 facing: int = 1, amp: float = 1.0, lean: float = 0.0, frontal: bool = False,
                 arms_forward: bool = False) -> None:
    """A stick figure with feet at (x, y), height h, gait `phase` (radians); `facing` +1/-1
    (walking right/left); `frontal`: walking towards the camera (legs alternate up and down)."""
    b = look["build"]
    s = math.sin(phase)
    hip = (x + facing * lean * 0.1 * h, y - 0.47 * h)
    neck = (x + facing * lean * 0.25 * h, y - 0.80 * h)
    leg_w, arm_w = max(1.0, 0.10 * h * b), max(1.0, 0.07 * h * b)
    if frontal:
        feet = [(x - 0.07 * h, y - max(0.0, s) * 0.06 * h),
                (x + 0.07 * h, y - max(0.0, -s) * 0.06 * h)]
    else:
        dx = 0.2 * h * amp * s
        lift = 0.05 * h * amp
        feet = [(x + dx, y - lift * max(0.0, math.cos(phase))),
                (x - dx, y - lift * max(0.0, -math.cos(phase)))]
    for fx, fy in feet:
        p.line(hip[0], hip[1], fx, fy, leg_w, look["pants"])
    p.line(neck[0], neck[1], hip[0], hip[1], max(2.0, 0.22 * h * b), look["shirt"])
    shoulder = (neck[0], neck[1] + 0.05 * h)
    if arms_forward:
        hands = [(shoulder[0] + facing * 0.3 * h, y - 0.55 * h)] * 2
    elif frontal:
        hands = [(x - 0.16 * h, y - 0.48 * h - 0.03 * h * s),
                 (x + 0.16 * h, y - 0.48 * h + 0.03 * h * s)]
    else:
        ax = 0.14 * h * amp * s
        hands = [(shoulder[0] - ax, y - 0.48 * h), (shoulder[0] + ax, y - 0.48 * h)]
    for hx, hy in hands:
        p.line(shoulder[0], shoulder[1], hx, hy, arm_w, look["shirt"])
    p.circle(neck[0], neck[1] - 0.1 * h, 0.1 * h, look["skin"])
    if look.get("hair") is not None:
        p.circle(neck[0], neck[1] - 0.13 * h, 0.085 * h, look["hair"])


def _random_look(rng: np.random.Generator) -> dict:
    def hsv(hh, ss, vv):
        c = cv2.cvtColor(np.uint8([[[hh, ss, vv]]]), cv2.COLOR_HSV2BGR)[0, 0]
        return tuple(int(v) for v in c)

    skins = [(170, 200, 235), (120, 160, 210), (80, 110, 160), (60, 80, 110), (150, 185, 225)]
    pants = [(60, 40, 30), (40, 40, 40), (110, 80, 50), (90, 90, 95), (40, 60, 90), (150, 150, 150)]
    return {
        "shirt": hsv(int(rng.integers(0, 180)), int(rng.integers(40, 200)),
                     int(rng.integers(60, 230))),
        "pants": pants[int(rng.integers(len(pants)))],
        "skin": skins[int(rng.integers(len(skins)))],
        "hair": (20, 25, 35) if rng.random() < 0.6 else None,
        "build": float(rng.uniform(0.85, 1.2)),
    }


VIVID = [(30, 30, 230), (20, 200, 250), (0, 140, 255), (220, 60, 20), (200, 40, 200),
         (40, 230, 60)]


# ----------------------------------------------------------------------------- agents


@dataclass
class Agent:
    """A moving object: per-frame state arrays over frames t0 .. t0 + len(x) - 1."""

    kind: str
    anomalous: bool
    t0: int
    x: np.ndarray  # float [n]: feet / ground-contact x
    y: np.ndarray  # float [n]: feet row (also the drawing depth)
    h: np.ndarray  # float [n]: person-height scale at that depth
    phase: np.ndarray  # float [n]: gait phase or rotation
    facing: int
    look: dict
    extra: dict = field(default_factory=dict)

    @property
    def t1(self) -> int:
        return self.t0 + len(self.x)

    def draw(self, p: Painter, t: int) -> None:
        i = t - self.t0
        x, y, h, ph = float(self.x[i]), float(self.y[i]), float(self.h[i]), float(self.phase[i])
        p.begin(self.anomalous)
        k = self.kind
        if k == "walker":
            _draw_person(p, x, y, h, ph, self.look, facing=self.facing)
        elif k == "running":
            _draw_person(p, x, y - 0.04 * h * abs(math.sin(ph)), h, ph, self.look,
                         facing=self.facing, amp=1.7, lean=1.0)
        elif k == "wrong_way":
            _draw_person(p, x, y, h, ph, self.look, frontal=True)
        elif k == "cyclist":
            r = 0.2 * h
            xb, xf = x - self.facing * 0.33 * h, x + self.facing * 0.33 * h
            dark = (30, 30, 30)
            p.ring(xb, y - r, r, max(1.0, 0.05 * h), dark)
            p.ring(xf, y - r, r, max(1.0, 0.05 * h), dark)
            seat = (x - self.facing * 0.08 * h, y - 0.55 * h)
            crank = (x, y - r)
            bar = (xf - self.facing * 0.05 * h, y - 0.62 * h)
            col = self.extra["frame"]
            w = max(1.0, 0.05 * h)
            for a, b in ((xb, y - r), crank), (crank, seat), (seat, (xb, y - r)), \
                    (crank, (xf, y - r)), ((xf, y - r), bar):
                p.line(a[0], a[1], b[0], b[1], w, col)
            hip = seat
            for sgn in (1, -1):
                px_ = crank[0] + sgn * 0.12 * h * math.cos(ph)
                py_ = crank[1] + sgn * 0.12 * h * math.sin(ph)
                kx, ky = (hip[0] + px_) / 2 + self.facing * 0.12 * h, (hip[1] + py_) / 2 - 0.03 * h
                p.line(hip[0], hip[1], kx, ky, max(1.0, 0.09 * h), self.look["pants"])
                p.line(kx, ky, px_, py_, max(1.0, 0.08 * h), self.look["pants"])
            neck = (x + self.facing * 0.1 * h, y - 0.95 * h)
            p.line(hip[0], hip[1], neck[0], neck[1], max(2.0, 0.2 * h), self.look["shirt"])
            p.line(neck[0], neck[1] + 0.04 * h, bar[0], bar[1], max(1.0, 0.06 * h),
                   self.look["shirt"])
            p.circle(neck[0], neck[1] - 0.1 * h, 0.1 * h, self.look["skin"])
        elif k == "vehicle":
            L, body = 2.4 * h, 0.42 * h
            x0, x1 = x - L / 2, x + L / 2
            col = self.extra["color"]
            p.rect(x0, y - 0.12 * h - body, x1, y - 0.12 * h, col)
            cab0 = x - self.facing * 0.55 * h
            cab1 = x + self.facing * 0.35 * h
            cx0, cx1 = min(cab0, cab1), max(cab0, cab1)
            p.poly(np.array([[cx0, y - 0.12 * h - body], [cx0 + 0.12 * h, y - 0.85 * h],
                             [cx1 - 0.12 * h, y - 0.85 * h], [cx1, y - 0.12 * h - body]]), col)
            p.rect(cx0 + 0.15 * h, y - 0.78 * h, cx1 - 0.15 * h, y - 0.12 * h - body - 0.03 * h,
                   (90, 70, 60))
            for wx in (x0 + 0.45 * h, x1 - 0.45 * h):
                p.circle(wx, y - 0.13 * h, 0.14 * h, (25, 25, 25))
        elif k == "thrown":
            p.circle(x, float(self.extra["yb"][i]), max(1.2, 0.09 * h), self.extra["color"])
        elif k == "falling":
            s = max(1.5, 0.16 * h)
            cy = float(self.extra["yb"][i]) - s
            c, sn = math.cos(ph), math.sin(ph)
            corners = np.array([[-s, -s], [s, -s], [s, s], [-s, s]]) @ np.array([[c, sn], [-sn, c]])
            p.poly(corners + [x, cy], self.extra["color"])
            p.line(x - 0.7 * s * c, cy - 0.7 * s * sn, x + 0.7 * s * c, cy + 0.7 * s * sn,
                   max(1.0, 0.2 * s), (40, 40, 40))
        elif k == "cart":
            _draw_person(p, x, y, h, ph, self.look, facing=self.facing, arms_forward=True)
            cx0 = x + self.facing * 0.3 * h
            cx1 = x + self.facing * 1.2 * h
            a, b = min(cx0, cx1), max(cx0, cx1)
            p.rect(a, y - 0.75 * h, b, y - 0.12 * h, self.extra["color"])
            p.circle(a + 0.12 * h, y - 0.07 * h, 0.07 * h, (30, 30, 30))
            p.circle(b - 0.12 * h, y - 0.07 * h, 0.07 * h, (30, 30, 30))
        else:  # pragma: no cover - kinds are fixed above
            raise ValueError(k)


def _extent(kind: str) -> tuple[float, float]:
    """(half width, height) of an object in units of its person-height scale h."""
    return {"walker": (0.35, 1.0), "running": (0.45, 1.0), "wrong_way": (0.3, 1.0),
            "cyclist": (0.6, 1.05), "vehicle": (1.25, 0.9), "cart": (1.3, 1.0),
            "thrown": (0.15, 0.2), "falling": (0.3, 0.4)}[kind]


def _onscreen(scene: Scene, kind: str, x: np.ndarray, y: np.ndarray, h: np.ndarray) -> np.ndarray:
    hw, ht = _extent(kind)
    return (x + hw * h > -1) & (x - hw * h < scene.W + 1) & (y > -1) & (y - ht * h < scene.H + 1)


def _walk_along(scene: Scene, rng: np.random.Generator, kind: str, speed_mult: float,
                t0: int, *, anomalous: bool, y: float | None = None,
                facing: int | None = None, look: dict | None = None) -> Agent:
    """An object moving horizontally along the walkway at `speed_mult` x walking speed,
    entering at one side at frame t0 and leaving at the other."""
    facing = facing if facing is not None else (1 if rng.random() < 0.5 else -1)
    y = y if y is not None else float(rng.uniform(*scene.walk_band))
    h = scene.height_at(y) * float(rng.uniform(0.88, 1.12))
    hw = _extent(kind)[0] * h
    v = WALK * h * speed_mult * float(rng.uniform(0.85, 1.15))
    n = int(math.ceil((scene.W + 2 * hw + 2) / v)) + 1
    s = np.arange(n, dtype=np.float64)
    x = (-hw - 1 + v * s) if facing > 0 else (scene.W + hw + 1 - v * s)
    period = {"walker": 27.0, "running": 17.0, "cart": 27.0, "cyclist": 20.0}.get(kind, 27.0)
    period /= float(rng.uniform(0.9, 1.1))
    phase = float(rng.uniform(0, 2 * np.pi)) + 2 * np.pi * s / period
    sway = 0.6 * scene.H / 64 * np.sin(2 * np.pi * s / float(rng.uniform(150, 400)))
    ys = y + (sway if kind == "walker" else np.zeros(n))
    return Agent(kind, anomalous, t0, x, ys, np.full(n, h), phase, facing,
                 look if look is not None else _random_look(rng))


def _anomaly(scene: Scene, rng: np.random.Generator, kind: str, t0: int, hold: int,
             speed: float = 1.0) -> Agent:
    """One anomalous object of `kind` appearing at frame t0. `hold`: frames a fallen crate
    lies on the ground before it is picked up; `speed`: a speed factor (so that one crossing
    fits a short video; not for "falling")."""
    H, W = scene.H, scene.W
    u = H / 64.0
    if kind == "running":
        return _walk_along(scene, rng, "running", 4.0 * speed, t0, anomalous=True)
    if kind == "cyclist":
        a = _walk_along(scene, rng, "cyclist", 4.0 * speed, t0, anomalous=True)
        a.extra["frame"] = VIVID[int(rng.integers(len(VIVID)))]
        return a
    if kind == "vehicle":
        a = _walk_along(scene, rng, "vehicle", 5.0 * speed, t0, anomalous=True,
                        y=float(rng.uniform(scene.walk_band[0] + 0.3 * (scene.walk_band[1] -
                                scene.walk_band[0]), scene.walk_band[1])))
        a.extra["color"] = VIVID[int(rng.integers(len(VIVID)))]
        return a
    if kind == "thrown":
        facing = 1 if rng.random() < 0.5 else -1
        yg = float(rng.uniform(*scene.walk_band))
        hg = scene.height_at(yg)
        vx = 3.0 * u * speed * float(rng.uniform(0.85, 1.15))
        vy, g = -float(rng.uniform(1.0, 1.6)) * u, 0.06 * u
        r = 0.1 * hg + 1
        xs, ybs = [], []
        x, yb = (-r if facing > 0 else W + r), yg - 0.55 * hg
        while -r - 1 <= x <= W + r + 1:
            xs.append(x)
            ybs.append(yb)
            x += facing * vx
            vy += g
            yb += vy
            if yb > yg - r:  # bounce, losing energy
                yb = 2 * (yg - r) - yb
                vy = -0.55 * abs(vy)
        n = len(xs)
        return Agent("thrown", True, t0, np.asarray(xs), np.full(n, yg), np.full(n, hg),
                     np.zeros(n), facing, {}, {"yb": np.asarray(ybs),
                                               "color": VIVID[int(rng.integers(len(VIVID)))]})
    if kind == "falling":
        yg = float(rng.uniform(scene.y_ground + 0.25 * H, scene.walk_band[1]))
        hg = scene.height_at(yg)
        x = float(rng.uniform(0.15, 0.85) * W)
        yb, vy, g, ang, w = -1.0, 0.0, 0.1 * u, 0.0, float(rng.uniform(0.08, 0.2))
        ybs, angs, bounces = [], [], 0
        while True:
            ybs.append(yb)
            angs.append(ang)
            vy += g
            yb += vy
            ang += w
            if yb >= yg:
                yb = yg - (yb - yg)
                vy = -0.3 * abs(vy)
                w *= 0.5
                bounces += 1
                if bounces >= 2 or abs(vy) < 0.2 * u:
                    break
        ybs += [yg] * hold
        angs += [angs[-1]] * hold
        n = len(ybs)
        return Agent("falling", True, t0, np.full(n, x), np.full(n, yg), np.full(n, hg),
                     np.asarray(angs), 1, {}, {"yb": np.asarray(ybs),
                                               "color": VIVID[int(rng.integers(len(VIVID)))]})
    if kind == "wrong_way":
        x0 = scene.door_x
        ys, xs = [scene.y_ground - 0.5], [x0]
        drift = float(rng.uniform(-0.15, 0.15))
        while True:
            h = scene.height_at(ys[-1])
            if ys[-1] - h > H + 1 or not -h < xs[-1] < W + h:
                break
            v = WALK * h * 1.5 * speed
            ys.append(ys[-1] + v)
            xs.append(xs[-1] + drift * v)
        y = np.asarray(ys)
        n = len(y)
        h = np.array([scene.height_at(v) for v in y])
        phase = float(rng.uniform(0, 6.3)) + 2 * np.pi * np.arange(n) / 22.0
        return Agent("wrong_way", True, t0, np.asarray(xs), y, h, phase, 1, _random_look(rng))
    if kind == "cart":
        facing = 1 if rng.random() < 0.5 else -1
        y, xs, ys = float(scene.walk_band[0]), [], []
        hw = _extent("cart")[0]
        x = -hw * scene.height_at(y) - 1 if facing > 0 else W + hw * scene.height_at(y) + 1
        ang = math.radians(float(rng.uniform(20, 30)))
        while True:
            h = scene.height_at(y)
            xs.append(x)
            ys.append(y)
            if y - h > H + 1 or (facing > 0 and x - hw * h > W + 1) or (
                    facing < 0 and x + hw * h < -1):
                break
            v = WALK * h * 1.4 * speed
            x += facing * v * math.cos(ang)
            y += v * math.sin(ang)
        y_ = np.asarray(ys)
        n = len(y_)
        h = np.array([scene.height_at(v) for v in y_])
        phase = float(rng.uniform(0, 6.3)) + 2 * np.pi * np.arange(n) / 25.0
        return Agent("cart", True, t0, np.asarray(xs), y_, h, phase, facing, _random_look(rng),
                     {"color": VIVID[int(rng.integers(len(VIVID)))]})
    raise ValueError(f"unknown anomaly kind {kind!r}; choose from {ANOMALY_KINDS}")


def _visible_span(scene: Scene, a: Agent) -> tuple[int, int]:
    """First and one-past-last frame (absolute) in which agent `a` is on screen."""
    vis = _onscreen(scene, a.kind, a.x, a.y if a.kind not in ("thrown", "falling")
                    else a.extra["yb"], a.h)
    idx = np.nonzero(vis)[0]
    if idx.size == 0:
        return a.t0, a.t0
    return a.t0 + int(idx[0]), a.t0 + int(idx[-1]) + 1


def _normal_people(scene: Scene, rng: np.random.Generator, T: int) -> list[Agent]:
    """Walkers arriving as a Poisson process, started early so the scene is already busy at
    frame 0; only those visible in [0, T) are kept."""
    rate = float(rng.uniform(0.010, 0.018))
    warm = int(scene.W / (WALK * scene.height_at(scene.walk_band[0]) * 0.8)) + 5
    people = []
    t = -warm + rng.exponential(1 / rate)
    while t < T:
        a = _walk_along(scene, rng, "walker", 1.0, int(t), anomalous=False)
        if a.t1 > 0:
            people.append(a)
        t += rng.exponential(1 / rate)
    return people


def _plan_anomalies(scene: Scene, rng: np.random.Generator, T: int, kinds: list[str]
                    ) -> list[Agent]:
    """Anomalous agents for one test video: one or two intervals of the given kinds covering
    about 30-50% of the T frames (exact extents follow from the rendered masks)."""
    target = float(rng.uniform(0.3, 0.45)) * T
    per_event = target / len(kinds)
    events: list[list[Agent]] = []
    for kind in kinds:
        agents: list[Agent] = []
        t = 0
        while True:
            hold = int(rng.integers(6, 16))
            state = rng.bit_generator.state
            a = _anomaly(scene, rng, kind, t, hold)
            s, e = _visible_span(scene, a)
            if e - s > 0.5 * T and kind != "falling":
                # a short video: the same crossing, faster, in about 40% of it (at most 3x)
                rng.bit_generator.state = state
                a = _anomaly(scene, rng, kind, t, hold, min(3.0, (e - s) / (0.4 * T)))
                s, e = _visible_span(scene, a)
            a.t0 -= s - t  # start exactly when it becomes visible
            agents.append(a)
            t = e - (s - t) - 2  # the next one enters as this one leaves
            if kind in LONG_KINDS or t >= per_event * 0.7 or len(agents) >= 4:
                break
        events.append(agents)
    spans = [(min(_visible_span(scene, a)[0] for a in ev),
              max(_visible_span(scene, a)[1] for a in ev)) for ev in events]
    lengths = [e - s for s, e in spans]
    while len(events) > 1 and (sum(lengths) > 0.55 * T or sum(lengths) + 12 * len(events) + 8
                               > T):
        events.pop()
        lengths.pop()
    slack = max(0, T - sum(lengths) - 10 * (len(events) + 1))
    cuts = np.sort(rng.uniform(0, slack, len(events)))
    out, pos = [], 0
    for k, ev in enumerate(events):
        start = 10 + int(cuts[k]) + pos
        shift = start - spans[k][0]
        for a in ev:
            a.t0 += shift
        out.extend(ev)
        pos += lengths[k] + 10
    return out


# ----------------------------------------------------------------------------- rendering


def render_video(scene: Scene, rng: np.random.Generator, T: int, anomaly_kinds: list[str],
                 *, noise: float = 2.5) -> tuple[np.ndarray, np.ndarray | None]:
    """Render T frames. Returns (frames uint8 [T, H, W, 3] BGR, masks uint8 [T, H, W] 0/1 or None
    when there are no anomalies)."""
    H, W = scene.H, scene.W
    agents = _normal_people(scene, rng, T)
    if anomaly_kinds:
        agents += _plan_anomalies(scene, rng, T, anomaly_kinds)
    # slow lighting drift: a per-channel gain oscillating over several hundred frames
    amp = float(rng.uniform(0.04, 0.08))
    period = float(rng.uniform(300, 900))
    ph0 = float(rng.uniform(0, 2 * np.pi))
    tint = rng.uniform(0.9, 1.1, 3)
    tt = np.arange(T)[:, None]
    gain = (1.0 + amp * tint[None] * np.sin(2 * np.pi * tt / period + ph0)).astype(np.float32)
    frames = np.empty((T, H, W, 3), np.uint8)
    masks = np.zeros((T, H, W), np.uint8) if anomaly_kinds else None
    for t in range(T):
        canvas = scene.background.copy()
        mask = masks[t] if masks is not None else None
        p = Painter(canvas, mask)
        live = [a for a in agents if a.t0 <= t < a.t1]
        live.sort(key=lambda a: float(a.y[t - a.t0]))  # far (small y) first
        for a in live:
            a.draw(p, t)
        f = canvas.astype(np.float32) * gain[t]
        f += rng.standard_normal((H, W, 3), dtype=np.float32) * noise
        np.clip(f, 0, 255, out=f)
        frames[t] = f.astype(np.uint8)
    if masks is not None:
        masks = (masks > 0).astype(np.uint8)
    return frames, masks


def _intervals(labels: np.ndarray) -> list[list[int]]:
    d = np.diff(np.concatenate(([0], labels.astype(np.int8), [0])))
    return [[int(a), int(b)] for a, b in zip(np.nonzero(d == 1)[0], np.nonzero(d == -1)[0])]


def _test_kinds(i: int, kinds: list[str], rng: np.random.Generator) -> list[str]:
    """Anomaly kinds of test video i, one per interval: kinds[i % n]; a long kind fills one
    interval; a short kind gets a second interval, of another short kind (from the other half
    of the list) in two of three videos, else of the same kind."""
    n = len(kinds)
    first = kinds[i % n]
    if first in LONG_KINDS:
        return [first]
    if rng.random() < 0.67:
        for j in range(n - 1):
            cand = kinds[(i + n // 2 + j) % n]
            if cand not in LONG_KINDS and cand != first:
                return [first, cand]
    return [first, first]


def _write_video(path: Path, frames: np.ndarray, fps: float) -> None:
    H, W = frames.shape[1:3]
    fourcc = cv2.VideoWriter_fourcc(*"MJPG")
    w = cv2.VideoWriter(str(path), cv2.CAP_OPENCV_MJPEG, fourcc, fps, (W, H))
    if w.isOpened():
        w.set(cv2.VIDEOWRITER_PROP_QUALITY, 95)
    else:  # OpenCV built without its own MJPEG writer: let it choose a backend
        w = cv2.VideoWriter(str(path), fourcc, fps, (W, H))
    if not w.isOpened():
        raise RuntimeError(f"OpenCV cannot write an MJPG .avi at {path}")
    for f in frames:
        w.write(f)
    w.release()


def _params(seed: int, n_train: int, n_test: int, frames: int, size: tuple[int, int],
            fps: float, image_ext: str, kinds: list[str], noise: float) -> dict:
    return {"generator": "aedfast.data.synthetic", "version": GENERATOR_VERSION, "seed": seed,
            "n_train": n_train, "n_test": n_test, "frames": frames, "size": list(size),
            "fps": fps, "image_ext": image_ext, "kinds": kinds, "noise": noise}


def load_manifest(root: str | os.PathLike) -> dict | None:
    """The manifest of a generated tree, or None if there is none (or it is unreadable)."""
    p = Path(root) / "manifest.json"
    try:
        return json.loads(p.read_text())
    except (OSError, ValueError):
        return None


def generate(root: str | os.PathLike, *, seed: int = 0, n_train: int = 8, n_test: int = 6,
             frames: int = 250, size: tuple[int, int] = (64, 128), fps: float = 25.0,
             image_ext: str = ".jpg", kinds: tuple[str, ...] | list[str] = ANOMALY_KINDS,
             noise: float = 2.5, overwrite: bool = False, progress: bool = True) -> Path:
    """Write the synthetic benchmark to `root` (ShanghaiTech layout, see the module docstring)
    and return `root`.

    size: (H, W) of the frames; frames: T per video; kinds: anomaly kinds used, cycled over the
    test videos; image_ext: ".jpg" (quality 95) or ".png" for the test frames; noise: sensor
    noise sigma in grey levels. If `root` already holds a complete tree generated with the same
    parameters it is reused; a different tree there raises FileExistsError unless `overwrite`.
    """
    root = Path(root).expanduser()
    H, W = (int(size[0]), int(size[1]))
    if H < 32 or W < 32:
        raise ValueError(f"size must be at least 32 x 32, got {size}")
    if frames < 60:
        raise ValueError(f"frames must be >= 60 (anomaly intervals need room), got {frames}")
    if n_train < 0 or n_test < 0 or n_train + n_test == 0:
        raise ValueError("need n_train >= 0, n_test >= 0 and at least one video")
    if image_ext not in (".jpg", ".png"):
        raise ValueError(f"image_ext must be '.jpg' or '.png', got {image_ext!r}")
    kinds = list(kinds)
    bad = [k for k in kinds if k not in ANOMALY_KINDS]
    if bad or not kinds:
        raise ValueError(f"unknown anomaly kinds {bad}; choose from {ANOMALY_KINDS}")
    params = _params(seed, n_train, n_test, frames, (H, W), float(fps), image_ext, kinds,
                     float(noise))
    if root.exists():
        man = load_manifest(root)
        if man is not None and man.get("complete") and man.get("params") == params:
            return root
        if not overwrite and (root.is_file() or any(root.iterdir())):
            raise FileExistsError(f"{root} exists and is not a synthetic tree with these "
                                  "parameters; pass overwrite=True or choose another path")
    root.parent.mkdir(parents=True, exist_ok=True)
    tmp = root.parent / f".{root.name}.tmp-{os.getpid()}-{uuid.uuid4().hex[:8]}"
    try:
        _generate_into(tmp, params, progress)
        if root.exists():
            old = root.parent / f".{root.name}.old-{uuid.uuid4().hex[:8]}"
            os.replace(root, old)
            shutil.rmtree(old, ignore_errors=True)
        os.replace(tmp, root)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return root


def _generate_into(out: Path, params: dict, progress: bool) -> None:
    from tqdm.auto import tqdm

    seed, T = params["seed"], params["frames"]
    H, W = params["size"]
    scene = make_scene(seed, H, W)
    (out / "training/videos").mkdir(parents=True)
    for sub in ("frames", "test_frame_mask", "test_pixel_mask"):
        (out / "testing" / sub).mkdir(parents=True)
    cv2.imwrite(str(out / "background.png"), scene.background)
    test_info = {}
    jobs = [("train", i) for i in range(params["n_train"])] + \
        [("test", i) for i in range(params["n_test"])]
    with tqdm(jobs, desc="synthetic benchmark", unit="video", disable=not progress) as bar:
        for split, i in bar:
            rng = np.random.default_rng([seed, 0 if split == "train" else 1, i])
            if split == "train":
                f, _ = render_video(scene, rng, T, [], noise=params["noise"])
                _write_video(out / "training/videos" / f"01_{i + 1:03d}.avi", f, params["fps"])
                continue
            kinds = _test_kinds(i, params["kinds"], rng)
            f, m = render_video(scene, rng, T, kinds, noise=params["noise"])
            name = f"01_{i + 1:04d}"
            vdir = out / "testing/frames" / name
            vdir.mkdir()
            enc = [cv2.IMWRITE_JPEG_QUALITY, 95] if params["image_ext"] == ".jpg" else \
                [cv2.IMWRITE_PNG_COMPRESSION, 1]
            for t in range(T):
                if not cv2.imwrite(str(vdir / f"{t:03d}{params['image_ext']}"), f[t], enc):
                    raise RuntimeError(f"cannot write {vdir / f'{t:03d}'}")
            labels = m.reshape(T, -1).any(axis=1).astype(np.uint8)
            np.save(out / "testing/test_frame_mask" / f"{name}.npy", labels)
            np.save(out / "testing/test_pixel_mask" / f"{name}.npy", m)
            test_info[name] = {"kinds": kinds, "intervals": _intervals(labels),
                               "anomalous_frames": int(labels.sum())}
    manifest = {"params": params, "complete": True, "test_videos": test_info}
    (out / "manifest.json").write_text(json.dumps(manifest, indent=1))


__all__ = ["ANOMALY_KINDS", "Scene", "generate", "load_manifest", "make_scene", "render_video"]
