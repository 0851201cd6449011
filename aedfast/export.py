"""ONNX export of the model step: a batch of uint8 frames t-3, t, t+3 and the masking noise in,
per-pixel anomaly maps and/or raw frame scores out (docs/design.md §10).

The exported graph is the per-frame part of what `Detector` computes, `aedfast.step.StepCore`,
with the masking noise as an input instead of computed from frame indices:

    inputs   frames  uint8   [batch, 3, H, W, 3]   frames t-3, t, t+3 of each of `batch` frames
                                                   t, each H x W x BGR (OpenCV's layout),
                                                   already resized to the preset's size
             noise   float64 [batch, L]            masking noise in [0, 1), L = h * w tokens
    outputs  maps    float32 [batch, H', W']       paper protocol: the anomaly maps
                                                   (H' x W' = H x W, or h x w with
                                                   resolution "token")
             scores  float32 [batch]               the raw frame scores (`VideoResult.raw_scores`)

`batch` is dynamic. With ``noise = aedfast.step.frame_noise(seed, t, L)`` (t the frame
indices, seed the Detector's, 0 by default) the outputs equal the Detector's maps and
raw scores of those frames. The smoothing across frames (3D filter, temporal Gaussian;
`aedfast.scoring`) needs neighbouring frames' maps and stays outside the graph.

The graph is traced from the model's "eager" backend in float32 on the CPU: the pure-PyTorch
op structure of the official implementation (depthwise convolutions, BatchNorm, einsum
attention). The "torch" and "triton" backends run their CvT blocks as custom ops
(``aedfast::cvt_qkv``, ``aedfast::cvt_out_mlp``) that ONNX exporters cannot translate; the
eager path equals them to float32 rounding, and the exporter folds BatchNorm into constants.
The exporter is torch's TorchScript one (``dynamo=False``): it traces this model with a
dynamic batch axis and needs only the `onnx` package; the torch.export-based exporter would
add `onnxscript` as a dependency for no gain here.
"""

from __future__ import annotations

import copy
import logging
import os
import warnings
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn

from .checkpoint import atomic_path, package_version
from .model import AEDMAE, load_model
from .scoring import PROTOCOLS, Smoothing, resolve_smoothing
from .step import StepCore, frame_noise, stack_indices

__all__ = ["OPSET", "OUTPUTS", "ExportedStep", "OnnxExport", "example_inputs", "export_onnx",
           "stack_video"]

logger = logging.getLogger(__name__)

# ONNX opset 17: the first with a LayerNormalization operator (the model has 15 LayerNorms;
# without it each becomes a chain of ReduceMean/Sub/Pow/Sqrt/Div nodes), supported by the
# TorchScript exporter and by onnxruntime from 1.14 on (the `export` extra's lower bound), so
# runtimes a few years old still load the file. Nothing else in the graph needs a newer
# opset: TopK for the masking argsort (11), GatherElements (11), Einsum (12).
OPSET = 17
OUTPUTS = ("maps", "scores", "both")
RTOL = 1e-4  # verification bound: onnxruntime vs PyTorch, relative to the largest output


class ExportedStep(nn.Module):
    """The exported computation: (frames uint8 [B, 3, H, W, 3], noise float64 [B, L]) ->
    maps float32 [B, H', W'] and/or scores float32 [B] (module docstring; docs/design.md §10).

    The frames are stacked as 9 channels (t-3 BGR, t BGR, t+3 BGR) and handed to
    `aedfast.step.StepCore.forward_noise`, the Detector's own step after its noise: the
    model, then `anomaly_maps` (+ d * sigmoid(cls logit)) and the frame max ("paper"), or
    `official_frame_scores` ("official").
    """

    def __init__(self, model: AEDMAE, protocol: str, smoothing: Smoothing, dataset: str,
                 output: str):
        super().__init__()
        self.core = StepCore(model, protocol, smoothing, dataset, seed=0, dtype=torch.float32)
        self.protocol = protocol
        self.output = output

    def forward(self, frames: torch.Tensor, noise: torch.Tensor
                ) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        B, _, H, W, _ = frames.shape
        x_u8 = frames.permute(0, 1, 4, 2, 3).reshape(B, 3 * 3, H, W)
        maps, scores = self.core.forward_noise(x_u8, noise)
        if self.protocol == "official":
            return scores
        if self.output == "maps":
            return maps
        return scores if self.output == "scores" else (maps, scores)


@dataclass
class OnnxExport:
    """What `export_onnx` wrote. inputs / outputs: {name: (dtype, shape)}, "batch" the dynamic
    axis; max_rel_diff: onnxruntime against PyTorch on the example batch (largest absolute
    difference over the largest magnitude), None when not verified."""

    path: Path
    inputs: dict[str, tuple[str, list]]
    outputs: dict[str, tuple[str, list]]
    opset: int
    protocol: str
    img_size: tuple[int, int]
    num_tokens: int
    max_rel_diff: float | None = None
    metadata: dict[str, str] = field(default_factory=dict)

    def summary(self) -> str:
        """One line: the file, its inputs and outputs with dtypes and shapes, the opset."""

        def fmt(d: dict) -> str:
            return ", ".join(f"{n} {t} [{', '.join(str(s) for s in shape)}]"
                             for n, (t, shape) in d.items())

        text = (f"wrote {self.path}: inputs {fmt(self.inputs)}; outputs {fmt(self.outputs)}; "
                f"opset {self.opset}")
        if self.max_rel_diff is not None:
            text += f"; onnxruntime matches PyTorch to {self.max_rel_diff:.1e} relative"
        return text

    def as_dict(self) -> dict:
        return {"path": str(self.path), "inputs": self.inputs, "outputs": self.outputs,
                "opset": self.opset, "protocol": self.protocol,
                "img_size": list(self.img_size), "num_tokens": self.num_tokens,
                "max_rel_diff": self.max_rel_diff, "metadata": dict(self.metadata)}


def _need(module: str):
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError:
        raise ImportError(f"ONNX export needs the {module!r} package: "
                          "pip install 'aedfast[export]'") from None


def example_inputs(batch: int, img_size: tuple[int, int], num_tokens: int, seed: int = 0,
                   start: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Random uint8 frames [batch, 3, H, W, 3] and the Detector's noise of frames start ..
    start + batch - 1 (`frame_noise(seed, ...)`, float64 [batch, L])."""
    g = torch.Generator().manual_seed(seed + start)
    frames = torch.randint(0, 256, (batch, 3, *img_size, 3), generator=g, dtype=torch.uint8)
    t = torch.arange(start, start + batch, dtype=torch.int64)
    return frames, frame_noise(seed, t, num_tokens)


def stack_video(frames: np.ndarray) -> np.ndarray:
    """A whole video's frames uint8 [T, H, W, 3] (BGR, at the preset's size) -> the graph's
    `frames` input [T, 3, H, W, 3]: frames t-3, t, t+3 of every t, frame t standing in for a
    neighbour outside the video (the Detector's rule, `aedfast.step.stack_indices`)."""
    frames = np.asarray(frames)
    if frames.dtype != np.uint8 or frames.ndim != 4 or frames.shape[-1] != 3:
        raise ValueError(f"frames must be uint8 [T, H, W, 3], got {frames.dtype} "
                         f"{list(frames.shape)}")
    T = frames.shape[0]
    return frames[stack_indices(np.arange(T, dtype=np.int64), T - 1, lambda t: t)]


def export_onnx(model_or_checkpoint: AEDMAE | str | os.PathLike | tuple,
                path: str | os.PathLike, *, output: str | None = None,
                protocol: str = "paper", smoothing: Smoothing | Mapping | None | str = "default",
                official_dataset: str | None = None, preset: str = "avenue",
                opset: int = OPSET, example_batch: int = 2, verify: bool = True) -> OnnxExport:
    """Write the model step as an ONNX file (docs/design.md §10), atomically.

    model_or_checkpoint: an AEDMAE (copied; the caller's is untouched), a native .safetensors
        checkpoint, an official .pth teacher or a (teacher.pth, student.pth) pair
        (`aedfast.model.load_model`; `preset` names an official checkpoint's preset).
    output: "maps", "scores" or "both" (default "both" for the paper protocol; the official
        protocol has scores only).
    protocol, smoothing, official_dataset: as for `Detector`; the graph uses the map weights
        a, b, c, d and the resolution of the smoothing, not its filters (those span frames).
    opset: the ONNX opset (17 by default, see OPSET).
    example_batch: the batch traced (>= 2; the batch axis is dynamic either way).
    verify: run the written file in onnxruntime (CPU) on the example batch and raise
        RuntimeError when it differs from PyTorch by more than 1e-4 relative; the file is
        renamed into place only after that check.
    Returns an `OnnxExport` (path, input and output names with dtypes and shapes, opset,
    the verified difference). Needs the `onnx` package (and `onnxruntime` to verify):
    ``pip install 'aedfast[export]'``.
    """
    if protocol not in PROTOCOLS:
        raise ValueError(f"protocol must be one of {PROTOCOLS}, got {protocol!r}")
    if output is None:
        output = "scores" if protocol == "official" else "both"
    if output not in OUTPUTS:
        raise ValueError(f"output must be one of {OUTPUTS}, got {output!r}")
    if protocol == "official" and output != "scores":
        raise ValueError("the official protocol has frame scores only: output='scores'")
    if int(example_batch) < 2:
        raise ValueError(f"example_batch must be >= 2, got {example_batch}")
    path = Path(path)
    if path.suffix != ".onnx":
        raise ValueError(f"{path}: the output file must end in .onnx")
    onnx = _need("onnx")
    ort = _need("onnxruntime") if verify else None

    model = copy.deepcopy(load_model(model_or_checkpoint, preset=preset)).eval()
    model = model.to(device="cpu", dtype=torch.float32).set_backend("eager")
    for prm in model.parameters():
        prm.requires_grad_(False)
    cfg = model.config
    dataset = official_dataset or ("shanghaitech" if cfg.name == "shanghaitech" else "avenue")
    if dataset not in ("avenue", "shanghaitech"):
        raise ValueError("official_dataset must be 'avenue' or 'shanghaitech'")
    sm = resolve_smoothing(smoothing, protocol, dataset, getattr(model, "cls_head_trained", True))
    step = ExportedStep(model, protocol, sm, dataset, output).eval()

    names = {"maps": ["maps"], "scores": ["scores"], "both": ["maps", "scores"]}[output]
    H, W = cfg.img_size
    mh, mw = cfg.grid if sm.resolution == "token" else (H, W)
    out_shapes = {"maps": ("float32", ["batch", mh, mw]), "scores": ("float32", ["batch"])}
    result = OnnxExport(
        path=path,
        inputs={"frames": ("uint8", ["batch", 3, H, W, 3]),
                "noise": ("float64", ["batch", cfg.num_tokens])},
        outputs={n: out_shapes[n] for n in names}, opset=int(opset), protocol=protocol,
        img_size=(H, W), num_tokens=cfg.num_tokens,
        metadata={"aedfast_version": package_version(), "preset": cfg.name,
                  "protocol": protocol, "official_dataset": dataset,
                  "weights_abcd": ",".join(str(v) for v in (sm.a, sm.b, sm.c, sm.d)),
                  "resolution": sm.resolution,
                  "frames": "uint8 [batch, 3, H, W, 3]: frames t-3, t, t+3, BGR",
                  "noise": "float64 [batch, L]: aedfast.step.frame_noise(seed, t, L)"},
    )
    args = example_inputs(int(example_batch), (H, W), cfg.num_tokens)
    dynamic = {n: {0: "batch"} for n in ("frames", "noise", *names)}
    with atomic_path(path) as tmp:
        with warnings.catch_warnings(), torch.no_grad():
            # the tracer warns about the model's shape checks, which hold for every batch
            warnings.simplefilter("ignore", torch.jit.TracerWarning)
            # the TorchScript exporter is chosen on purpose (module docstring): its
            # deprecation notices, from the call and from inside torch.onnx, are not news
            warnings.filterwarnings("ignore", message=".*legacy TorchScript-based ONNX",
                                    category=DeprecationWarning)
            warnings.filterwarnings("ignore", category=DeprecationWarning,
                                    module=r"torch\.onnx")
            torch.onnx.export(step, args, str(tmp), dynamo=False, opset_version=int(opset),
                              input_names=["frames", "noise"], output_names=names,
                              dynamic_axes=dynamic, do_constant_folding=True)
        proto = onnx.load(str(tmp))
        onnx.helper.set_model_props(proto, result.metadata)
        onnx.checker.check_model(proto)
        onnx.save(proto, str(tmp))
        if ort is not None:
            result.max_rel_diff = _verify(ort, tmp, step, args, names)
    logger.debug("%s", result.summary())
    return result


def _verify(ort, file: Path, step: ExportedStep, args: tuple, names: list[str]) -> float:
    """Largest relative difference of onnxruntime's outputs against the module's; raises
    RuntimeError above RTOL."""
    sess = ort.InferenceSession(str(file), providers=["CPUExecutionProvider"])
    got = sess.run(names, {"frames": args[0].numpy(), "noise": args[1].numpy()})
    with torch.no_grad():
        want = step(*args)
    want = [want] if isinstance(want, torch.Tensor) else list(want)
    worst = 0.0
    for name, g, w in zip(names, got, want):
        w = w.numpy()
        if g.shape != w.shape:
            raise RuntimeError(f"{file}: onnxruntime's {name} has shape {list(g.shape)}, "
                               f"PyTorch's {list(w.shape)}")
        worst = max(worst, float(np.abs(g - w).max() / max(np.abs(w).max(), 1e-12)))
    if not worst <= RTOL:
        raise RuntimeError(f"{file}: onnxruntime differs from PyTorch by {worst:.2e} relative "
                           f"(more than {RTOL:g})")
    return worst
