"""Video decoding (aedfast.decode, docs/design.md §12): torchcodec's CPU decoder against
OpenCV on real encoded clips, frame by frame (count, order, pixels); the Detector's scores
from both decoders; the `--decode` flag; the "auto" fallback notice; bad inputs.

The clips are written by the tests with OpenCV (MPEG-4 Part 2 in .mp4, and MJPEG in .avi as
the synthetic benchmark stores its training videos), from the synthetic benchmark's scene
with a frame counter drawn in: 8 bits of the frame index as black / white 8 x 8 blocks along
the top edge, read back from each decoded frame, so the order is checked against the index
written into the frame, not only decoder against decoder.
"""

from __future__ import annotations

import json
import logging
import sys

import cv2
import numpy as np
import pytest
import torch

from aedfast.cli import main
from aedfast.decode import DECODE_CHOICES, open_frames, to_bgr, torchcodec_problem
from aedfast.detector import Detector
from aedfast.model import AEDMAE

from .detector_fixtures import perturb_bn, rel

T = 40
SIZE = (72, 136)  # not multiples of 16: the codecs pad, the decoders crop
BITS = 8
# Bound on |OpenCV - torchcodec| per pixel (grey levels): both convert YUV 4:2:0 to BGR with
# libswscale's default BT.601 limited-range matrices, and the decoders are the same FFmpeg
# ones, so the pixels are equal here (measured: max 0). OpenCV's wheel bundles its own FFmpeg
# build while torchcodec uses the system's: an MPEG-4 Part 2 IDCT or a swscale rounding of
# another version may differ by a level or two on some pixels, which this bound allows.
MAX_DIFF, MEAN_DIFF = 2, 0.05
# Scores from the two decoders: the frames are the same, so only float summation order may
# differ (none on one CPU run of the same model); 1e-5 relative.
SCORE_TOL = 1e-5

TORCHCODEC = torchcodec_problem()
needs_torchcodec = pytest.mark.skipif(TORCHCODEC is not None, reason=str(TORCHCODEC))


def _draw_counter(frame: np.ndarray, t: int) -> None:
    for b in range(BITS):
        frame[0:8, 8 * b:8 * b + 8] = 255 if (t >> b) & 1 else 0


def read_counter(frame: np.ndarray) -> int:
    """The frame index drawn by `_draw_counter` (BGR uint8 [H, W, 3])."""
    bits = [frame[2:6, 8 * b + 2:8 * b + 6].mean() > 127 for b in range(BITS)]
    return int(sum(int(v) << b for b, v in enumerate(bits)))


def _write(path, frames: np.ndarray, fourcc: str) -> None:
    H, W = frames.shape[1:3]
    w = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*fourcc), 25.0, (W, H))
    assert w.isOpened(), f"OpenCV cannot write {fourcc} to {path}"
    for f in frames:
        w.write(f)
    w.release()


@pytest.fixture(scope="module")
def source_frames() -> np.ndarray:
    from aedfast.data.synthetic import render_video
    from aedfast.data.synthetic_scene import make_scene

    frames, _ = render_video(make_scene(3, *SIZE), np.random.default_rng(3), T, ["running"])
    for t in range(T):
        _draw_counter(frames[t], t)
    return frames


@pytest.fixture(scope="module", params=[("mp4v", ".mp4"), ("MJPG", ".avi")],
                ids=["mpeg4", "mjpeg"])
def clip(request, source_frames, tmp_path_factory):
    fourcc, ext = request.param
    path = tmp_path_factory.mktemp("clip") / f"clip_{fourcc}{ext}"
    _write(path, source_frames, fourcc)
    return path


def opencv_frames(path) -> np.ndarray:
    """Every frame of `path` by cv2.VideoCapture directly: the reference."""
    cap = cv2.VideoCapture(str(path))
    out = []
    while True:
        ok, f = cap.read()
        if not ok:
            break
        out.append(f)
    cap.release()
    return np.stack(out)


def decoded(path, decode: str, chunk: int = 7, **kw) -> np.ndarray:
    src = open_frames(path, decode=decode, chunk=chunk, **kw)
    parts = [torch.as_tensor(c).numpy() for c in src.chunks()]
    return np.concatenate(parts)


@needs_torchcodec
def test_torchcodec_cpu_equals_opencv_frame_by_frame(clip):
    ref = opencv_frames(clip)
    got = decoded(clip, "cpu")  # chunks of 7: the last one is partial
    assert ref.shape == got.shape == (T, *SIZE, 3) and got.dtype == np.uint8
    assert [read_counter(f) for f in ref] == list(range(T))
    assert [read_counter(f) for f in got] == list(range(T))
    diff = np.abs(ref.astype(np.int16) - got.astype(np.int16))
    print(f"{clip.name}: |opencv - torchcodec| max {diff.max()}, mean {diff.mean():.5f}")
    assert diff.max() <= MAX_DIFF and diff.mean() <= MEAN_DIFF
    # the same through open_frames' OpenCV path (the Detector's reference reader)
    assert np.array_equal(decoded(clip, "opencv"), ref)


def test_to_bgr_swaps_the_channels_of_any_layout():
    rgb = torch.randint(0, 256, (3, 5, 7, 3), dtype=torch.uint8, generator=torch.Generator()
                        .manual_seed(0))
    want = rgb.numpy()[..., ::-1].copy()
    assert np.array_equal(to_bgr(rgb.clone()).numpy(), want)
    strided = rgb.permute(0, 2, 1, 3)  # not contiguous: converted on a contiguous copy
    assert np.array_equal(to_bgr(strided).numpy(), want.transpose(0, 2, 1, 3))


@needs_torchcodec
def test_max_frames_and_source_fields(clip):
    src = open_frames(clip, decode="cpu", chunk=4, max_frames=10)
    assert src.total == 10 and src.decoder.startswith("torchcodec") and src.name == str(clip)
    frames = np.concatenate([c.numpy() for c in src.chunks()])
    assert [read_counter(f) for f in frames] == list(range(10)) and not src.truncated


@needs_torchcodec
def test_truncated_file_decodes_what_opencv_decodes(source_frames, tmp_path):
    full = tmp_path / "full.avi"
    _write(full, source_frames, "MJPG")
    cut = tmp_path / "cut.avi"
    data = full.read_bytes()
    cut.write_bytes(data[: int(len(data) * 0.6)])
    ref = opencv_frames(cut)
    src = open_frames(cut, decode="cpu", chunk=8)
    with pytest.warns(RuntimeWarning, match="decoded"):
        got = np.concatenate([c.numpy() for c in src.chunks()])
    assert 0 < len(got) == len(ref) < T and src.truncated
    assert [read_counter(f) for f in got] == list(range(len(got)))


@pytest.fixture(scope="module")
def model() -> AEDMAE:
    torch.manual_seed(0)
    return perturb_bn(AEDMAE.from_preset("tiny"))


@pytest.fixture(scope="module")
def detector(model) -> Detector:
    return Detector(model, device="cpu", compile=False, batch_size=8)


@pytest.fixture(scope="module")
def short_clip(source_frames, tmp_path_factory):
    """The first 16 frames as MPEG-4 (scoring on a shared 2-core CPU is the slow part)."""
    path = tmp_path_factory.mktemp("short") / "short.mp4"
    _write(path, source_frames[:16], "mp4v")
    return path


@needs_torchcodec
def test_detector_scores_from_both_decoders_agree(detector, short_clip):
    a = detector.score_video(short_clip, decode="opencv")
    b = detector.score_video(short_clip, decode="cpu")
    assert a.info["decoder"] == "opencv" and b.info["decoder"].startswith("torchcodec")
    assert a.frames == b.frames == 16
    assert rel(b.scores, a.scores) <= SCORE_TOL and rel(b.raw_scores, a.raw_scores) <= SCORE_TOL


@needs_torchcodec
def test_cli_decode_flag(model, short_clip, tmp_path, capsys):
    ck = model.save(tmp_path / "tiny.safetensors")
    out = {}
    for dec in ("opencv", "cpu"):
        code = main(["score", str(short_clip), "-c", str(ck), "--device", "cpu",
                     "--no-compile", "--json", "--quiet", "--decode", dec])
        assert code == 0
        out[dec] = json.loads(capsys.readouterr().out)
    assert out["opencv"]["decoder"] == "opencv"
    assert out["cpu"]["decoder"].startswith("torchcodec")
    assert rel(np.array(out["cpu"]["scores"]), np.array(out["opencv"]["scores"])) <= SCORE_TOL


def test_cli_rejects_an_unknown_decoder(tmp_path, capsys):
    with pytest.raises(SystemExit) as e:
        main(["score", str(tmp_path), "-c", "x.safetensors", "--decode", "nvdec"])
    assert e.value.code == 2 and "nvdec" in capsys.readouterr().err


def _hide_torchcodec(monkeypatch) -> None:
    """Make `import torchcodec` fail, as on a machine without it."""
    for name in [m for m in sys.modules if m == "torchcodec" or m.startswith("torchcodec.")]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, "torchcodec", None)
    monkeypatch.setitem(sys.modules, "torchcodec.decoders", None)


def test_auto_falls_back_to_opencv_with_one_notice(source_frames, tmp_path, monkeypatch,
                                                    caplog):
    path = tmp_path / "clip.avi"
    _write(path, source_frames[:6], "MJPG")
    _hide_torchcodec(monkeypatch)
    assert "torchcodec is not usable" in torchcodec_problem()
    with caplog.at_level(logging.INFO, logger="aedfast.decode"):
        # a CUDA Detector without torchcodec: OpenCV, with a warning naming why (nothing
        # touches CUDA until chunks are read, so this runs on a CPU machine too)
        src = open_frames(path, decode="auto", device=torch.device("cuda"))
    assert src.decoder == "opencv"
    notes = [r for r in caplog.records if r.name == "aedfast.decode"]
    assert len(notes) == 1 and notes[0].levelno == logging.WARNING
    assert "using OpenCV" in notes[0].getMessage() and "torchcodec" in notes[0].getMessage()
    assert "\n" not in notes[0].getMessage()
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="aedfast.decode"):  # a CPU Detector: INFO
        src = open_frames(path, decode="auto", device="cpu")
        frames = np.concatenate(list(src.chunks()))
    notes = [r for r in caplog.records if r.name == "aedfast.decode"]
    assert len(notes) == 1 and notes[0].levelno == logging.INFO and "OpenCV" in notes[0].message
    assert [read_counter(f) for f in frames] == list(range(6))
    with pytest.raises(RuntimeError, match="torchcodec is not usable.*pip install"):
        open_frames(path, decode="cpu")


def test_bad_inputs_name_the_problem(source_frames, tmp_path, detector):
    video = tmp_path / "clip.avi"
    _write(video, source_frames[:4], "MJPG")
    for decode in DECODE_CHOICES:
        with pytest.raises(FileNotFoundError, match="missing.mp4"):
            open_frames(tmp_path / "missing.mp4", decode=decode)
    with pytest.raises(ValueError, match="decode must be one of opencv, cpu, gpu, auto; got "
                                         "'nvdec'"):
        open_frames(video, decode="nvdec")
    with pytest.raises(ValueError, match="reads video files.*folder"):
        open_frames(tmp_path, decode="cpu")
    with pytest.raises(ValueError, match="reads video files"):
        open_frames(source_frames, decode="gpu")
    with pytest.raises(ValueError, match="CUDA device; this one runs on cpu"):
        open_frames(video, decode="gpu", device="cpu")
    det = detector
    with pytest.raises(ValueError, match="decode must be one of"):
        det.score_video(video, decode="NVDEC")
    text = tmp_path / "notes.mp4"
    text.write_text("not a video\n")
    with pytest.raises(ValueError, match="notes.mp4"):
        det.score_video(text)
    if TORCHCODEC is None:
        with pytest.raises(ValueError, match=r"cannot open video .*notes\.mp4 with torchcodec"):
            det.score_video(text, decode="cpu")
