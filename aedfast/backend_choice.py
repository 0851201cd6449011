"""Which CvT backend runs: the request (argument, AEDFAST_BACKEND, "auto"), what the device
allows, and on CUDA a choice by measurement, cached on disk (docs/design.md §7).

Nobody knows in advance whether the fused Triton CvT kernels beat the "torch" backend's
reference ops (cuBLAS matmuls, cuDNN depthwise convolutions, flash attention through
torch.compile) on a given GPU, at a given shape and precision. So the library does not guess:
with backend "auto" on CUDA the Detector times both candidates at its own shapes (its largest
batch bucket, its precision, CUDA-graph captured when its step is) and runs the faster one.

Request (`requested_backend`): the Detector argument ``backend`` when given, else the
environment variable AEDFAST_BACKEND, else "auto". Values: "auto", "triton", "torch", "eager".

Device rules (`plan_backend`), one per request, so `Detector.describe()` says what runs:
- "eager" runs eager; "torch" runs the torch reference ops everywhere.
- "triton" on CUDA needs triton installed; on the CPU it exists only under the Triton
  interpreter (TRITON_INTERPRET=1, the test suite's set-up). Elsewhere the custom ops would
  dispatch to the torch reference anyway, so the request is resolved to "torch" with a
  one-line RuntimeWarning: the reported backend is the one that runs, never the one asked for.
- "auto" on the CPU is "torch", without timing (no Triton fast path without a GPU): the CPU
  default is unchanged. "auto" on CUDA without triton is "torch". "auto" on CUDA with triton
  is measured (`choose_by_measurement`).

Granularity: one choice per *part*, "encoder" (the encoder's blocks) and "decoder" (the
teacher decoder's blocks and the student block, which share width and grid). Per block is
the natural unit: `kernels.cvt.FusedBlock` runs both of its custom ops (q/k/v and out-proj +
MLP) on one backend, and every block of a part has the same shapes, so one representative
block per part is timed and the choice applies to all of them. Per op (q/k/v on Triton, MLP on
torch) would need a block class with two flags, for a difference the block-level timing
already bounds; the two parts differ in width and token count (encoder: D = embed_dim on the
kept tokens; decoder: decoder_embed_dim on the full grid), which is where one backend could
win on one part and lose on the other.

How a candidate is timed (`cuda_timer`): one representative block of the part, on a random
[B, T, D] input at the Detector's largest batch bucket and precision; warm-up runs on a side
stream (Triton autotuning, cuDNN and cuBLAS set-up), then captured as a CUDA graph when the
Detector uses CUDA graphs (launch overhead then counts as it does in the Detector: not at
all), and timed with CUDA events, the best of a few rounds. The block is not wrapped in
torch.compile: both candidates' work happens inside the custom ops `aedfast::cvt_qkv` and
`aedfast::cvt_out_mlp`, which are opaque to torch.compile (docs/design.md §7), so in the
compiled step they run exactly as they do here; what inductor would compile around them (the
SDPA call, free views) is the same for both candidates. Compiling each candidate would only
cost seconds and add dynamo cache entries to the shared `FusedBlock.forward` (with
fullgraph=True, a hard error at dynamo's recompile limit). A candidate that raises is skipped
with a warning; the choice, and why, is cached either way. The timing function is injectable
(tests use a fake).

Cache: a small JSON file, $XDG_CACHE_HOME/aedfast/backend_choice.json (default
~/.cache/aedfast/backend_choice.json), written atomically (`aedfast.checkpoint.atomic_write`).
Keyed by device name, torch and triton versions, part, shapes (batch, tokens, width, heads,
MLP width, grid), dtype and CUDA graphs: an upgrade of torch or triton, another GPU, another
batch or precision re-measures. A file that does not parse is ignored with
a warning and rewritten. Two processes measuring at once may drop each other's new entries
(last rename wins); those keys are measured again next time.
"""

from __future__ import annotations

import json
import math
import os
import time
import warnings
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import torch

from . import kernels
from .checkpoint import atomic_write
from .model import AEDMAE, encoder_grid

__all__ = [
    "CANDIDATES", "CHOICES", "ENV_VAR", "BackendPlan", "ChoiceCache", "PartShape", "Timer",
    "choice_key", "choose_by_measurement", "cuda_timer", "default_cache_path", "device_name",
    "part_shapes",
    "plan_backend", "requested_backend", "triton_runs_on", "versions",
]

ENV_VAR = "AEDFAST_BACKEND"
CHOICES = ("auto", "triton", "torch", "eager")
CANDIDATES = ("torch", "triton")  # timed in this order; a tie goes to the first
CACHE_FORMAT = 1

Timer = Callable[[str, str, Callable[[], object]], float]
"""timer(part, backend, run) -> seconds per call of `run` (one block forward)."""


# ----------------------------------------------------------------------------- request


def requested_backend(argument: str | None, env: Mapping[str, str] | None = None
                      ) -> tuple[str, str]:
    """(request, where it came from): the argument when not None ("argument"), else the
    environment variable AEDFAST_BACKEND when set and not empty ("AEDFAST_BACKEND"), else
    ("auto", "default"). ValueError for a value outside CHOICES."""
    env = os.environ if env is None else env
    if argument is not None:
        value, source = argument, "argument"
    elif env.get(ENV_VAR, "").strip():
        value, source = env[ENV_VAR].strip().lower(), ENV_VAR
    else:
        value, source = "auto", "default"
    if value not in CHOICES:
        raise ValueError(f"backend ({source}) must be one of {CHOICES}, got {value!r}")
    return value, source


def triton_runs_on(device: torch.device) -> bool:
    """Whether the fused ops' Triton path really runs on `device`: CUDA with triton
    installed, or the CPU under the Triton interpreter (TRITON_INTERPRET=1)."""
    if not kernels.HAS_TRITON:
        return False
    return device.type == "cuda" or bool(kernels.INTERPRET)


@dataclass
class BackendPlan:
    """What a request becomes on a device.

    requested, source: the request and where it came from (`requested_backend`).
    backend: the backend to set ("eager", "torch", "triton"); for a measured plan, the one
        set until the measurement (both fused candidates share its folded weights).
    measure: True when the backend is chosen by measurement (auto on CUDA with triton).
    reason: why this backend, in a few words (reported by `Detector.describe()`).
    """

    requested: str
    source: str
    backend: str
    measure: bool = False
    reason: str = ""


def plan_backend(requested: str, source: str, device: torch.device) -> BackendPlan:
    """The device rules of the module docstring. A "triton" request that cannot run Triton
    here warns once (RuntimeWarning) and becomes "torch"."""
    if requested in ("eager", "torch"):
        return BackendPlan(requested, source, requested, reason=source)
    if requested == "triton":
        if triton_runs_on(device):
            how = source + ("; Triton interpreter" if device.type == "cpu" else "")
            return BackendPlan(requested, source, "triton", reason=how)
        why = ("triton is not installed" if not kernels.HAS_TRITON
               else "the CPU has no Triton path without TRITON_INTERPRET=1")
        warnings.warn(f"backend 'triton' on {device}: {why}; running the torch reference "
                      "('torch')", RuntimeWarning, stacklevel=3)
        return BackendPlan(requested, source, "torch", reason=f"{source}; {why}")
    if device.type != "cuda":
        return BackendPlan(requested, source, "torch", reason=f"{source}; auto on the CPU")
    if not kernels.HAS_TRITON:
        return BackendPlan(requested, source, "torch",
                           reason=f"{source}; auto without triton installed")
    return BackendPlan(requested, source, "torch", measure=True,
                       reason=f"{source}; not measured yet (first use or warm_up())")


# ----------------------------------------------------------------------------- keys


@dataclass(frozen=True)
class PartShape:
    """The input of every block of one part: [batch, tokens, width] on a grid of `grid`
    (tokens = 1 + rows * columns: the cls row first), `heads` heads, an MLP of `hidden`."""

    part: str
    batch: int
    tokens: int
    width: int
    heads: int
    hidden: int
    grid: tuple[int, int]


def part_shapes(model: AEDMAE, batch: int) -> dict[str, PartShape]:
    """The shape of each part (BLOCK_PARTS) of `model` at `batch` frames per step."""
    cfg = model.config
    enc = encoder_grid(cfg.grid, cfg.mask_ratio)
    dec = cfg.grid
    return {
        "encoder": PartShape("encoder", batch, 1 + enc[0] * enc[1], cfg.embed_dim,
                             cfg.num_heads, int(cfg.embed_dim * cfg.mlp_ratio), enc),
        "decoder": PartShape("decoder", batch, 1 + dec[0] * dec[1], cfg.decoder_embed_dim,
                             cfg.decoder_num_heads, int(cfg.decoder_embed_dim * cfg.mlp_ratio),
                             dec),
    }


def versions() -> dict[str, str]:
    """The versions a measurement depends on: torch, triton ("none" when absent)."""
    out = {"torch": torch.__version__, "triton": "none"}
    if kernels.HAS_TRITON:
        import triton

        out["triton"] = str(triton.__version__)
    return out


def device_name(device: torch.device) -> str:
    """The GPU's name (e.g. "NVIDIA H200"), or the device type for the CPU."""
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return device.type


def choice_key(device: str, shape: PartShape, dtype: torch.dtype, *, cuda_graphs: bool,
               versions: Mapping[str, str]) -> str:
    """One cache key: device name, versions, part and shapes, dtype, step settings."""
    vs = ",".join(f"{k}={versions[k]}" for k in sorted(versions))
    return (f"{device}|{vs}|{shape.part}|B={shape.batch},T={shape.tokens},D={shape.width},"
            f"heads={shape.heads},hidden={shape.hidden},grid={shape.grid[0]}x{shape.grid[1]}"
            f"|{str(dtype).removeprefix('torch.')}|cuda_graphs={bool(cuda_graphs)}")


# ----------------------------------------------------------------------------- cache file


def default_cache_path(env: Mapping[str, str] | None = None) -> Path:
    """$XDG_CACHE_HOME/aedfast/backend_choice.json (an absolute XDG_CACHE_HOME only, as the
    XDG spec says), else ~/.cache/aedfast/backend_choice.json."""
    env = os.environ if env is None else env
    base = env.get("XDG_CACHE_HOME", "")
    root = Path(base) if base and os.path.isabs(base) else Path.home() / ".cache"
    return root / "aedfast" / "backend_choice.json"


@dataclass
class ChoiceCache:
    """The measured choices on disk: {"format": 1, "choices": {key: entry}}, entry =
    {"backend": ..., "seconds": {candidate: seconds or null}, "measured_at": ISO time}.
    Read once, lazily; a file that does not parse (or has the wrong layout) is ignored with
    a RuntimeWarning and rewritten on the next `put`. A failing write warns and is skipped."""

    path: Path = field(default_factory=default_cache_path)
    _entries: dict[str, dict] | None = field(default=None, init=False, repr=False)

    def entries(self) -> dict[str, dict]:
        """All entries (read from the file on first use)."""
        if self._entries is None:
            self._entries = self._read()
        return self._entries

    def _read(self) -> dict[str, dict]:
        try:
            text = Path(self.path).read_text()
        except FileNotFoundError:
            return {}
        except OSError as e:
            warnings.warn(f"cannot read the backend-choice cache {self.path}: {e}",
                          RuntimeWarning, stacklevel=4)
            return {}
        try:
            data = json.loads(text)
            choices = data["choices"]
            if data.get("format") != CACHE_FORMAT or not isinstance(choices, dict):
                raise ValueError(f"not a format-{CACHE_FORMAT} choice file")
            for k, v in choices.items():
                if not isinstance(v, dict) or v.get("backend") not in CANDIDATES:
                    raise ValueError(f"bad entry {k!r}")
        except (ValueError, KeyError, TypeError, AttributeError) as e:
            warnings.warn(f"ignoring the corrupt backend-choice cache {self.path} "
                          f"({type(e).__name__}: {e}); it will be rewritten",
                          RuntimeWarning, stacklevel=4)
            return {}
        return dict(choices)

    def get(self, key: str) -> dict | None:
        """The entry of `key`, or None."""
        return self.entries().get(key)

    def put(self, key: str, entry: dict) -> None:
        """Store `entry` under `key` and rewrite the file atomically."""
        entries = self.entries()
        entries[key] = entry
        data = {"format": CACHE_FORMAT, "choices": entries}
        text = json.dumps(data, indent=1, sort_keys=True)
        try:
            atomic_write(self.path, lambda tmp: Path(tmp).write_text(text))
        except OSError as e:
            warnings.warn(f"cannot write the backend-choice cache {self.path}: {e}",
                          RuntimeWarning, stacklevel=3)


# ----------------------------------------------------------------------------- timing


def cuda_timer(device: torch.device, *, cuda_graphs: bool, warmup: int = 3, repeats: int = 20,
               rounds: int = 3) -> Timer:
    """The default timer on CUDA: warm-up on a side stream, CUDA-graph capture when
    `cuda_graphs`, then `rounds` x `repeats` calls timed with CUDA events; the best round's
    seconds per call."""

    def timer(part: str, backend: str, run: Callable[[], object]) -> float:
        cur = torch.cuda.current_stream(device)
        side = torch.cuda.Stream(device)
        side.wait_stream(cur)
        with torch.cuda.stream(side):
            for _ in range(warmup):
                run()
        cur.wait_stream(side)
        step = run
        if cuda_graphs:
            graph = torch.cuda.CUDAGraph()
            with torch.cuda.graph(graph, capture_error_mode="thread_local"):
                run()
            step = graph.replay
        step()
        best = math.inf
        for _ in range(rounds):
            start = torch.cuda.Event(enable_timing=True)
            end = torch.cuda.Event(enable_timing=True)
            start.record(cur)
            for _ in range(repeats):
                step()
            end.record(cur)
            end.synchronize()
            best = min(best, start.elapsed_time(end) / 1e3 / repeats)
        return best

    return timer


def _candidate(model: AEDMAE, shape: PartShape, backend: str, device: torch.device,
               dtype: torch.dtype) -> Callable[[], object]:
    """A call of one block of `shape.part` on `backend` (sharing the model's folded weights)
    on a fixed random input."""
    from .kernels.cvt import FusedBlock

    fused = model.part_blocks(shape.part)[0].fused
    if fused is None:
        raise RuntimeError("measuring needs the fused blocks: set_backend('torch') first")
    block = FusedBlock(fused.weights(), fused.num_heads, backend=backend, has_cls=True)
    gen = torch.Generator(device="cpu").manual_seed(0)
    x = torch.randn(shape.batch, shape.tokens, shape.width, generator=gen).to(device, dtype)
    h, w = shape.grid

    def run() -> object:
        with torch.inference_mode():
            return block(x, h, w)

    return run


def choose_by_measurement(model: AEDMAE, device: torch.device, batch: int,
                          dtype: torch.dtype, *, cuda_graphs: bool,
                          timer: Timer | None = None, cache: ChoiceCache | None = None,
                          device_label: str | None = None,
                          version_info: Mapping[str, str] | None = None
                          ) -> tuple[dict[str, str], dict[str, str]]:
    """The faster fused backend of each part of `model` (whose blocks are fused already, in
    `dtype` on `device`): ({part: backend}, {part: "measured" | "cached"}).

    Cached choices (same key: `choice_key`) are reused without timing; new ones are timed with
    `timer` (default `cuda_timer`) and written to `cache` (default: the file at
    `default_cache_path()`). `device_label` and `version_info` default to the device's name
    and `versions()`; tests pass their own.
    """
    cache = cache if cache is not None else ChoiceCache()
    label = device_label if device_label is not None else device_name(device)
    vers = dict(version_info) if version_info is not None else versions()
    choice: dict[str, str] = {}
    how: dict[str, str] = {}
    for part, shape in part_shapes(model, batch).items():
        key = choice_key(label, shape, dtype, cuda_graphs=cuda_graphs, versions=vers)
        hit = cache.get(key)
        if hit is not None:
            choice[part], how[part] = hit["backend"], "cached"
            continue
        if timer is None:
            timer = cuda_timer(device, cuda_graphs=cuda_graphs)
        seconds: dict[str, float | None] = {}
        for cand in CANDIDATES:
            try:
                run = _candidate(model, shape, cand, device, dtype)
                seconds[cand] = float(timer(part, cand, run))
            except Exception as e:  # a candidate that cannot run here loses, loudly
                warnings.warn(f"backend {cand!r} failed on the {part} blocks "
                              f"({type(e).__name__}: {e}); not a candidate", RuntimeWarning,
                              stacklevel=2)
                seconds[cand] = None
        ok = {c: s for c, s in seconds.items() if s is not None and math.isfinite(s)}
        best = min(ok, key=lambda c: ok[c]) if ok else "torch"
        choice[part], how[part] = best, "measured"
        cache.put(key, {"backend": best, "seconds": seconds,
                        "measured_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())})
    return choice, how
