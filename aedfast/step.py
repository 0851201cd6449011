"""The model step: uint8 frames in a frame store -> maps and raw frame scores, compiled once
and, on CUDA, captured as CUDA graphs. All compile and CUDA-graph state lives in `StepRunner`.

A step gathers frames t-3, t, t+3 of each frame t from a frame store (uint8 [C, 3, H, W], a
ring buffer per video or per stream), scales them as (v - 127.5) / 127.5, draws the masking
noise from the frame indices, runs the model and turns its outputs into maps
(`aedfast.scoring`). `StepCore` is that computation as one module; `StepRunner` compiles it
with ``torch.compile(fullgraph=True)`` (a graph break fails loudly instead of silently
slowing the step) and, on CUDA, captures one CUDA graph per (frame store, batch bucket),
padding the last partial batch to the next bucket.

Masking noise (docs/design.md §2 step 2, §9): half of the tokens are masked at inference too.
The noise of frame t is a counter-based hash of (seed, t, token) computed on the device
(`frame_noise`), not a draw from a generator's running state: scoring the same video twice
gives identical scores, the scores do not depend on the batch size or on how frames are
grouped into steps, a stream's scores equal the offline scores of the same frames, and the
CUDA graphs need no generator state. Keys are distinct per token, so argsort has no ties.
"""

from __future__ import annotations

import weakref
from collections.abc import Callable, Sequence

import numpy as np
import torch
import torch.nn as nn

from .model import AEDMAE, patchify
from .scoring import Smoothing, anomaly_maps, official_frame_scores

__all__ = [
    "DEFAULT_BUCKETS", "OFFSET", "StepCore", "StepRunner", "frame_noise", "gather_frames",
    "stack_indices",
]

OFFSET = 3  # frames t-3 and t+3 are stacked with frame t (docs/design.md §2)
DEFAULT_BUCKETS = (1, 8, 64, 256)
_M32 = 0xFFFFFFFF


# ----------------------------------------------------------------------------- noise


def _mix32(x: torch.Tensor) -> torch.Tensor:
    """A 32-bit integer hash (xor-shift-multiply) on int64 tensors holding values < 2^32;
    the constant is < 2^27, so no product overflows int64."""
    x = (((x >> 16) ^ x) * 0x45D9F3B) & _M32
    x = (((x >> 16) ^ x) * 0x45D9F3B) & _M32
    return (x >> 16) ^ x


def frame_noise(seed: int, frames: torch.Tensor, num_tokens: int) -> torch.Tensor:
    """Masking noise of frames `frames` [B] (int64 frame indices): float64 [B, L] in [0, 1).

    noise[b, l] = (hash32(seed, frames[b], l) * 2^20 + l) / 2^52: a pseudo-random key per
    token, all keys of a frame distinct (so argsort is tie-free and identical on every
    backend), a function of (seed, frame index, token) only.
    """
    if num_tokens >= 1 << 20:
        raise ValueError(f"at most 2^20 tokens per frame, got {num_tokens}")
    f = frames.to(torch.int64)
    s = _mix32(torch.full_like(f, int(seed) & _M32))
    key = _mix32((f & _M32) ^ s)
    l = torch.arange(num_tokens, device=f.device, dtype=torch.int64)
    h = _mix32(key[:, None] ^ ((l * 0x9E3779B1) & _M32)[None, :])
    return (h.to(torch.float64) * float(1 << 20) + l.to(torch.float64)) * (2.0 ** -52)


# ----------------------------------------------------------------------------- frame indices


def stack_indices(t: np.ndarray, last: np.ndarray | int,
                  slot: Callable[[np.ndarray], np.ndarray]) -> np.ndarray:
    """Store slots of frames t-3, t, t+3 for frame indices t [n]: int64 [n, 3]. A neighbour
    outside [0, last] is replaced by frame t (docs/design.md §2); `slot` maps frame indices to
    store slots."""
    prev = np.where(t - OFFSET >= 0, t - OFFSET, t)
    nxt = np.where(t + OFFSET <= last, t + OFFSET, t)
    return np.stack([slot(prev), slot(t), slot(nxt)], axis=1)


def gather_frames(store: torch.Tensor, idx: torch.Tensor) -> torch.Tensor:
    """store uint8 [C, 3, H, W], idx int64 [B, 3] slots of frames t-3, t, t+3 -> uint8
    [B, 9, H, W] (channels: t-3 BGR, t BGR, t+3 BGR)."""
    B = idx.shape[0]
    return store.index_select(0, idx.reshape(-1)).reshape(B, 9, *store.shape[-2:])


# ----------------------------------------------------------------------------- the step


class StepCore(nn.Module):
    """One model step on gathered frames: uint8 [B, 9, H, W] + frame indices int64 [B] ->
    (maps float32 [B, h', w'], raw frame scores float32 [B]). This is what gets compiled.

    protocol "paper": maps = `anomaly_maps` (+ d * sigmoid(cls logit)), raw = their frame max;
    protocol "official": raw = `official_frame_scores`, maps = raw as [B, 1, 1].
    """

    def __init__(self, model: AEDMAE, protocol: str, smoothing: Smoothing, dataset: str,
                 seed: int, dtype: torch.dtype):
        super().__init__()
        self.model = model
        self.protocol = protocol
        self.smoothing = smoothing
        self.dataset = dataset
        self.seed = int(seed)
        self.dtype = dtype

    def forward(self, x_u8: torch.Tensor, tids: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        noise = frame_noise(self.seed, tids, self.model.config.num_tokens)
        return self.forward_noise(x_u8, noise)

    def forward_noise(self, x_u8: torch.Tensor, noise: torch.Tensor
                      ) -> tuple[torch.Tensor, torch.Tensor]:
        """The step after the masking noise: uint8 [B, 9, H, W] + noise float64 [B, L] ->
        (maps, raw) as `forward` (also what the ONNX export traces, docs/design.md §10)."""
        cfg = self.model.config
        p = cfg.patch_size
        x = (x_u8.float() - 127.5) / 127.5
        out = self.model(x.to(self.dtype), noise=noise)
        teacher, student = out.teacher.float(), out.student.float()
        frame = x[:, 3:6]
        if self.protocol == "official":
            target = torch.cat([frame, torch.full_like(frame[:, :1], -1.0)], dim=1)
            raw = official_frame_scores(patchify(target, p), (teacher, student),
                                        dataset=self.dataset)
            return raw.reshape(-1, 1, 1), raw
        sm = self.smoothing
        maps = anomaly_maps(patchify(frame, p), teacher, student, grid=cfg.grid, patch=p,
                            a=sm.a, b=sm.b, c=sm.c, resolution=sm.resolution)
        if sm.d:
            maps = maps + sm.d * torch.sigmoid(out.cls_logit.float())[:, None, None]
        return maps, maps.amax(dim=(1, 2))


class _Graph:
    """A captured step for one (frame store, bucket): its static inputs and outputs."""

    def __init__(self, graph, idx, tids, maps, raw):
        self.graph, self.idx, self.tids, self.maps, self.raw = graph, idx, tids, maps, raw


def _drop_graphs(graphs: dict, key0: tuple) -> None:
    for k in [k for k in graphs if k[:2] == key0]:
        del graphs[k]


def bucket_sizes(batch_size: int, buckets: Sequence[int] | None) -> tuple[int, ...]:
    """The batch sizes that get their own compiled step / CUDA graph: `buckets` (default
    1, 8, 64, 256) up to `batch_size`, plus `batch_size`; sorted."""
    base = DEFAULT_BUCKETS if buckets is None else tuple(int(b) for b in buckets)
    if any(b < 1 for b in base):
        raise ValueError(f"buckets must be positive, got {base}")
    return tuple(sorted({b for b in base if b <= batch_size} | {batch_size}))


class StepRunner:
    """Runs `StepCore` over frame stores: compiled, bucketed, CUDA-graph captured on CUDA.

    run(store, idx, tids): model steps for n frames (idx int64 [n, 3] store slots of frames
    t-3, t, t+3; tids int64 [n] frame indices) -> (maps [n, h', w'], raw [n]) on the device,
    in batches of at most `batch_size` frames. With compile or CUDA graphs a partial batch is
    padded to the next bucket (so every bucket compiles and captures once).
    forget(store) drops the graphs captured on a store before it is freed; `track(owner,
    store)` does that automatically when `owner` is garbage-collected.
    """

    def __init__(self, core: StepCore, device: torch.device, *, compile: bool,
                 cuda_graphs: bool, batch_size: int, buckets: Sequence[int] | None = None):
        self.core = core
        self.device = device
        self.compiled = bool(compile)
        self.cuda_graphs = bool(cuda_graphs) and device.type == "cuda"
        self._bucket_spec = buckets
        self.batch_size = batch_size
        # fullgraph: a graph break is an error, not a silent slow path. dynamic=None: the
        # first bucket compiles static, a second one once with a symbolic batch that serves
        # every later bucket (each bucket still gets its own CUDA graph)
        self.step = torch.compile(core, fullgraph=True) if compile else core
        self._graphs: dict[tuple, _Graph] = {}
        self._pool = None
        self.replays = 0  # CUDA-graph replays so far (evidence that the graphs run)

    @property
    def batch_size(self) -> int:
        return self._batch_size

    @batch_size.setter
    def batch_size(self, value: int) -> None:
        if int(value) < 1:
            raise ValueError(f"batch_size must be >= 1, got {value}")
        self._batch_size = int(value)
        self.buckets = bucket_sizes(self._batch_size, self._bucket_spec)

    @property
    def graphs_captured(self) -> int:
        """How many CUDA graphs are held (one per frame store and bucket used)."""
        return len(self._graphs)

    def bucket(self, n: int) -> int:
        """The smallest bucket that holds n frames (the largest bucket for more)."""
        for b in self.buckets:
            if b >= n:
                return b
        return self.buckets[-1]

    def _capture(self, store: torch.Tensor, bucket: int) -> _Graph:
        dev = self.device
        idx = torch.zeros(bucket, 3, dtype=torch.int64, device=dev)
        tids = torch.zeros(bucket, dtype=torch.int64, device=dev)
        if self._pool is None:
            self._pool = torch.cuda.graph_pool_handle()
        side = torch.cuda.Stream(dev)
        side.wait_stream(torch.cuda.current_stream(dev))
        with torch.cuda.stream(side):
            for _ in range(2):  # compile + warm-up outside the capture
                self.step(gather_frames(store, idx), tids)
        torch.cuda.current_stream(dev).wait_stream(side)
        g = torch.cuda.CUDAGraph()
        # thread_local: the reader thread may allocate pinned memory meanwhile
        with torch.cuda.graph(g, pool=self._pool, capture_error_mode="thread_local"):
            maps, raw = self.step(gather_frames(store, idx), tids)
        return _Graph(g, idx, tids, maps, raw)

    def run(self, store: torch.Tensor, idx: np.ndarray, tids: np.ndarray
            ) -> tuple[torch.Tensor, torch.Tensor]:
        """Model steps for n frames (see the class docstring)."""
        n = idx.shape[0]
        top = self.buckets[-1]
        maps_out, raw_out = [], []
        for s in range(0, n, top):
            i_np, t_np = idx[s:s + top], tids[s:s + top]
            k = i_np.shape[0]
            pad = self.bucket(k) - k if (self.compiled or self.cuda_graphs) else 0
            if pad:
                i_np = np.concatenate([i_np, np.repeat(i_np[-1:], pad, 0)])
                t_np = np.concatenate([t_np, np.repeat(t_np[-1:], pad, 0)])
            i_t = torch.from_numpy(np.ascontiguousarray(i_np, dtype=np.int64))
            t_t = torch.from_numpy(np.ascontiguousarray(t_np, dtype=np.int64))
            if self.cuda_graphs:
                key = (store.data_ptr(), tuple(store.shape), k + pad)
                g = self._graphs.get(key)
                if g is None:
                    g = self._graphs[key] = self._capture(store, k + pad)
                g.idx.copy_(i_t, non_blocking=True)
                g.tids.copy_(t_t, non_blocking=True)
                g.graph.replay()
                self.replays += 1
                maps, raw = g.maps[:k].clone(), g.raw[:k].clone()
            else:
                # pageable sources: staged at once, no wait for the GPU (docs/design.md §7)
                i_t = i_t.to(self.device, non_blocking=True)
                t_t = t_t.to(self.device, non_blocking=True)
                maps, raw = self.step(gather_frames(store, i_t), t_t)
                maps, raw = maps[:k], raw[:k]
            maps_out.append(maps)
            raw_out.append(raw)
        if len(maps_out) == 1:
            return maps_out[0], raw_out[0]
        return torch.cat(maps_out), torch.cat(raw_out)

    def forget(self, store: torch.Tensor) -> None:
        """Drop the CUDA graphs captured on `store` (before it is freed or replaced)."""
        _drop_graphs(self._graphs, (store.data_ptr(), tuple(store.shape)))

    def track(self, owner: object, store: torch.Tensor) -> weakref.finalize:
        """Forget `store`'s graphs when `owner` is garbage-collected; call the returned
        finalizer to forget them earlier (when the owner replaces its store)."""
        return weakref.finalize(owner, _drop_graphs, self._graphs,
                                (store.data_ptr(), tuple(store.shape)))
