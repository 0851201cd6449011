"""The moving objects of the synthetic benchmark (see `aedfast.data.synthetic`): walkers and the
anomalous objects as `Agent`s with per-frame positions, and the plans of one video, normal
people arriving at random and the anomalies of a test video placed in one or two intervals.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from .synthetic_draw import VIVID, Painter, draw_person, random_look
from .synthetic_scene import Scene

ANOMALY_KINDS = ("running", "vehicle", "wrong_way", "thrown", "cart", "cyclist", "falling")
LONG_KINDS = frozenset({"wrong_way", "cart"})  # one crossing fills a whole interval
WALK = 0.033  # walking speed in body heights per frame (1.4 m/s for 1.7 m at 25 fps)


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
            draw_person(p, x, y, h, ph, self.look, facing=self.facing)
        elif k == "running":
            draw_person(p, x, y - 0.04 * h * abs(math.sin(ph)), h, ph, self.look,
                         facing=self.facing, amp=1.7, lean=1.0)
        elif k == "wrong_way":
            draw_person(p, x, y, h, ph, self.look, frontal=True)
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
            draw_person(p, x, y, h, ph, self.look, facing=self.facing, arms_forward=True)
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
                 look if look is not None else random_look(rng))


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
        return Agent("wrong_way", True, t0, np.asarray(xs), y, h, phase, 1, random_look(rng))
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
        return Agent("cart", True, t0, np.asarray(xs), y_, h, phase, facing, random_look(rng),
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


def normal_people(scene: Scene, rng: np.random.Generator, T: int,
                  density: float = 1.0) -> list[Agent]:
    """Walkers arriving as a Poisson process (`density` times 0.010-0.018 per frame), started
    early so the scene is already busy at frame 0; only those visible in [0, T) are kept."""
    rate = float(rng.uniform(0.010, 0.018)) * density
    if rate <= 0:
        return []
    warm = int(scene.W / (WALK * scene.height_at(scene.walk_band[0]) * 0.8)) + 5
    people = []
    t = -warm + rng.exponential(1 / rate)
    while t < T:
        a = _walk_along(scene, rng, "walker", 1.0, int(t), anomalous=False)
        if a.t1 > 0:
            people.append(a)
        t += rng.exponential(1 / rate)
    return people


def plan_anomalies(scene: Scene, rng: np.random.Generator, T: int,
                   kinds: list[str]) -> list[Agent]:
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
