"""ONNX export (aedfast.export, `aedfast export`, docs/design.md §10): the file run in
onnxruntime on the CPU against PyTorch (the Detector's own step, `StepCore`, and a whole
`Detector.score_video`), at batch sizes other than the traced one; the options; the CLI; the
README's "Export" snippet, executed."""

from __future__ import annotations

import copy
import json
import os
import re
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

if os.environ.get("AEDFAST_TEST_GPU", "0") == "1":
    # the GPU check installs aedfast without its extras: skip there, never in the CPU suite
    ort = pytest.importorskip("onnxruntime")
    onnx = pytest.importorskip("onnx")
else:
    import onnx
    import onnxruntime as ort

from aedfast import export
from aedfast.cli import main
from aedfast.detector import Detector
from aedfast.export import OPSET, export_onnx, stack_video
from aedfast.model import AEDMAE
from aedfast.scoring import Smoothing
from aedfast.step import StepCore, frame_noise
from tests.detector_fixtures import rel

README = Path(__file__).resolve().parents[1] / "README.md"
TINY = (64, 128)
L = 8 * 16  # tiny preset tokens
RTOL = 1e-4  # the bound: onnxruntime vs PyTorch, relative


def session(path) -> ort.InferenceSession:
    return ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])


def step_core(model: AEDMAE, protocol: str = "paper", smoothing: Smoothing = Smoothing(),
              dataset: str = "avenue") -> StepCore:
    """The Detector's step on the CPU fast path (backend "torch": folded BatchNorm, SDPA)."""
    m = copy.deepcopy(model).eval().set_backend("torch")
    return StepCore(m, protocol, smoothing, dataset, seed=0, dtype=torch.float32)


def batch(b: int, start: int, seed: int = 1) -> tuple[torch.Tensor, torch.Tensor]:
    """Random frames uint8 [b, 3, H, W, 3] and the frame indices start, start + 5, ..."""
    g = torch.Generator().manual_seed(seed + b)
    frames = torch.randint(0, 256, (b, 3, *TINY, 3), generator=g, dtype=torch.uint8)
    return frames, torch.arange(start, start + 5 * b, 5, dtype=torch.int64)


def core_inputs(frames: torch.Tensor) -> torch.Tensor:
    """[B, 3, H, W, 3] -> StepCore's [B, 9, H, W] (t-3 BGR, t BGR, t+3 BGR)."""
    return frames.permute(0, 1, 4, 2, 3).reshape(frames.shape[0], 9, *TINY)


@pytest.fixture(scope="module")
def exported(model, tmp_path_factory):
    """The tiny model (non-trivial BatchNorm statistics) exported at batch 2, both outputs."""
    path = tmp_path_factory.mktemp("onnx") / "tiny.onnx"
    info = export_onnx(model, path, example_batch=2)
    return info, path


def test_onnxruntime_matches_pytorch_at_other_batch_sizes(model, exported):
    info, path = exported
    sess = session(path)
    assert [i.name for i in sess.get_inputs()] == ["frames", "noise"]
    assert [o.name for o in sess.get_outputs()] == ["maps", "scores"]
    assert sess.get_inputs()[0].shape == ["batch", 3, *TINY, 3]
    assert sess.get_inputs()[0].type == "tensor(uint8)"
    assert sess.get_inputs()[1].type == "tensor(double)"
    assert {(o.domain, o.version) for o in onnx.load(str(path)).opset_import} >= {("", OPSET)}
    assert info.max_rel_diff is not None and info.max_rel_diff <= RTOL
    core = step_core(model)
    for b in (1, 3):  # traced at 2
        frames, tids = batch(b, start=11)
        noise = frame_noise(0, tids, L)
        maps, scores = sess.run(None, {"frames": frames.numpy(), "noise": noise.numpy()})
        with torch.no_grad():
            want_maps, want_raw = core(core_inputs(frames), tids)
        assert maps.shape == (b, *TINY) and scores.shape == (b,)
        assert maps.dtype == np.float32 and scores.dtype == np.float32
        assert rel(maps, want_maps.numpy()) <= RTOL
        assert rel(scores, want_raw.numpy()) <= RTOL
        # the noise is an input, not a constant: another frame's noise moves the outputs
        other = sess.run(["scores"], {"frames": frames.numpy(),
                                      "noise": frame_noise(0, tids + 1, L).numpy()})[0]
        assert not np.allclose(other, scores)


def test_onnx_equals_detector_on_a_video(model, video, exported):
    """Frames t-3, t, t+3 stacked as the Detector stacks them (`stack_video`) and the
    Detector's noise give its raw scores and maps, borders included."""
    _, path = exported
    v = np.stack([cv2.resize(f, TINY[::-1], interpolation=cv2.INTER_LINEAR) for f in video])
    det = Detector(model, device="cpu", compile=False, batch_size=8)
    assert det.backend == "torch"
    res = det.score_video(v, return_maps=True)
    T = len(v)
    stacked = stack_video(v)
    assert stacked.shape == (T, 3, *TINY, 3)
    np.testing.assert_array_equal(stacked[0, 0], v[0])  # no frame -3: frame 0 stands in
    np.testing.assert_array_equal(stacked[T - 1, 2], v[T - 1])
    np.testing.assert_array_equal(stacked[5], v[[2, 5, 8]])
    noise = frame_noise(det.seed, torch.arange(T), L).numpy()
    maps, scores = session(path).run(None, {"frames": stacked, "noise": noise})
    assert rel(scores, res.raw_scores) <= RTOL
    assert rel(maps, res.maps) <= RTOL


def test_token_maps_with_the_cls_term(model, tmp_path):
    """output="maps" at token resolution with weights (a, b, c, d) = (1, 1, 0, 0.5); the
    official protocol is exported in test_export_command."""
    sm = Smoothing(resolution="token", d=0.5, c=0.0)
    info = export_onnx(model, tmp_path / "m.onnx", example_batch=3, output="maps",
                       smoothing={"resolution": "token", "d": 0.5, "c": 0.0})
    assert list(info.outputs) == ["maps"] and info.outputs["maps"][1] == ["batch", 8, 16]
    sess = session(tmp_path / "m.onnx")
    assert [o.name for o in sess.get_outputs()] == ["maps"]
    frames, tids = batch(2, start=0)
    (maps,) = sess.run(None, {"frames": frames.numpy(),
                              "noise": frame_noise(0, tids, L).numpy()})
    with torch.no_grad():
        want = step_core(model, "paper", sm)(core_inputs(frames), tids)[0]
    assert maps.shape == (2, 8, 16) == tuple(want.shape)
    assert rel(maps, want.numpy()) <= RTOL


def test_export_errors_and_a_failed_check_leaves_no_file(model, tmp_path, monkeypatch):
    with pytest.raises(ValueError, match="official protocol has frame scores only"):
        export_onnx(model, tmp_path / "x.onnx", protocol="official", output="maps")
    with pytest.raises(ValueError, match="output must be one of"):
        export_onnx(model, tmp_path / "x.onnx", output="heatmaps")
    with pytest.raises(ValueError, match=r"\.onnx"):
        export_onnx(model, tmp_path / "x.pt")
    with pytest.raises(ValueError, match="example_batch"):
        export_onnx(model, tmp_path / "x.onnx", example_batch=1)
    monkeypatch.setattr(export, "RTOL", -1.0)  # no difference can pass
    with pytest.raises(RuntimeError, match="differs from PyTorch"):
        export_onnx(model, tmp_path / "x.onnx")
    assert list(tmp_path.iterdir()) == []  # neither the file nor a temporary


def test_export_command(model, tmp_path, capsys):
    ckpt = model.save(tmp_path / "tiny.safetensors")
    out = tmp_path / "out" / "tiny.onnx"
    assert main(["export", str(ckpt), "--onnx", str(out), "--output", "scores"]) == 0
    cap = capsys.readouterr()
    line = cap.out.strip()
    assert len(line.splitlines()) == 1 and line.startswith(f"wrote {out}")
    assert f"frames uint8 [batch, 3, {TINY[0]}, {TINY[1]}, 3]" in line
    assert f"noise float64 [batch, {L}]" in line and f"opset {OPSET}" in line
    assert "onnxruntime matches PyTorch" in line
    frames, tids = batch(2, start=3)
    (scores,) = session(out).run(None, {"frames": frames.numpy(),
                                        "noise": frame_noise(0, tids, L).numpy()})
    with torch.no_grad():
        assert rel(scores, step_core(model)(core_inputs(frames), tids)[1].numpy()) <= RTOL
    assert main(["export", str(ckpt), "--onnx", str(tmp_path / "o.onnx"), "--protocol",
                 "official", "--no-verify", "--json"]) == 0
    payload = json.loads(capsys.readouterr().out)
    assert payload["opset"] == OPSET and list(payload["outputs"]) == ["scores"]
    assert payload["max_rel_diff"] is None and payload["protocol"] == "official"
    meta = {p.key: p.value for p in onnx.load(str(tmp_path / "o.onnx")).metadata_props}
    assert meta["protocol"] == "official" and meta["preset"] == "tiny"
    frames, tids = batch(3, start=0)  # the official token-mean scores, at another batch size
    (scores,) = session(tmp_path / "o.onnx").run(None, {
        "frames": frames.numpy(), "noise": frame_noise(0, tids, L).numpy()})
    core = step_core(model, "official", Smoothing.official("avenue"))
    with torch.no_grad():
        assert rel(scores, core(core_inputs(frames), tids)[1].numpy()) <= RTOL
    assert main(["export", str(ckpt), "--onnx", str(tmp_path / "m.onnx"), "--protocol",
                 "official", "--output", "maps"]) == 1
    assert "scores only" in capsys.readouterr().err


def readme_export_snippet() -> str:
    """The first fenced python block under the README's "## Export" heading."""
    text = README.read_text()
    m = re.search(r"^## Export\n(.*?)(?=^## )", text, flags=re.S | re.M)
    assert m, "README.md has no '## Export' section"
    block = re.search(r"```python\n(.*?)```", m.group(1), flags=re.S)
    assert block, "the README's Export section has no python block"
    return block.group(1)


def test_readme_export_snippet_runs(model, tmp_path, monkeypatch, capsys):
    ckpt = model.save(tmp_path / "tiny.safetensors")
    monkeypatch.setenv("AEDFAST_CHECKPOINT", str(ckpt))
    monkeypatch.chdir(tmp_path)
    ns: dict = {"__name__": "readme_export"}
    exec(compile(readme_export_snippet(), str(README) + ":Export", "exec"), ns)
    assert (tmp_path / "aed.onnx").is_file()
    assert ns["maps"].shape[1:] == TINY and ns["scores"].shape == (ns["maps"].shape[0],)
    assert "opset" in capsys.readouterr().out  # the snippet prints the export's summary
