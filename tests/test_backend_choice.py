"""Tests of aedfast.backend_choice (docs/design.md §7): the request and its overrides, the
device rules, the choice by measurement with a fake timer, its cache (reuse, keys, a corrupt
file), per-part backends in `AEDMAE.set_backend`, and what `Detector.describe()` reports on the
CPU. Nothing here times a real kernel: the timer is injected."""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import pytest
import torch

from aedfast import backend_choice as choice
from aedfast import kernels
from aedfast.detector import Detector
from aedfast.model import AEDMAE

CPU = torch.device("cpu")
VERSIONS = {"torch": "9.9", "triton": "9.9"}


class FakeTimer:
    """Seconds per (part, backend) from a table; records every call, never runs anything."""

    def __init__(self, table: dict[tuple[str, str], float]):
        self.table = table
        self.calls: list[tuple[str, str]] = []

    def __call__(self, part: str, backend: str, run) -> float:
        self.calls.append((part, backend))
        value = self.table[(part, backend)]
        if isinstance(value, Exception):
            raise value
        return value


ENC_TRITON = {("encoder", "triton"): 1.0, ("encoder", "torch"): 2.0,
              ("decoder", "triton"): 3.0, ("decoder", "torch"): 1.5}


@pytest.fixture(scope="module")
def fused() -> AEDMAE:
    """A tiny model with folded ("torch") blocks, as the Detector leaves it before measuring."""
    torch.manual_seed(0)
    return AEDMAE.from_preset("tiny").eval().set_backend("torch")


def _choose(model, cache, timer, *, device="NVIDIA Fake", batch=8, versions=VERSIONS,
            dtype=torch.bfloat16):
    return choice.choose_by_measurement(model, CPU, batch, dtype, cuda_graphs=True,
                                        timer=timer, cache=cache, device_label=device,
                                        version_info=versions)


# ----------------------------------------------------------------------------- request, plan


def test_request_argument_then_environment_then_auto():
    assert choice.requested_backend(None, {}) == ("auto", "default")
    assert choice.requested_backend(None, {"AEDFAST_BACKEND": " Torch "}) == \
        ("torch", "AEDFAST_BACKEND")
    assert choice.requested_backend("eager", {"AEDFAST_BACKEND": "torch"}) == \
        ("eager", "argument")
    with pytest.raises(ValueError, match="AEDFAST_BACKEND"):
        choice.requested_backend(None, {"AEDFAST_BACKEND": "fast"})
    with pytest.raises(ValueError, match="argument"):
        choice.requested_backend("cuda", {})


def test_plan_device_rules(monkeypatch):
    cuda = torch.device("cuda", 0)
    cpu_auto = choice.plan_backend("auto", "default", CPU)
    assert (cpu_auto.backend, cpu_auto.measure) == ("torch", False)  # no timing on the CPU
    assert choice.plan_backend("eager", "argument", cuda).backend == "eager"
    assert choice.plan_backend("auto", "default", cuda).measure
    monkeypatch.setattr(kernels, "INTERPRET", True)
    p = choice.plan_backend("triton", "argument", CPU)
    assert p.backend == "triton" and "interpreter" in p.reason
    monkeypatch.setattr(kernels, "INTERPRET", False)
    with pytest.warns(RuntimeWarning, match="torch reference"):
        p = choice.plan_backend("triton", "argument", CPU)
    assert (p.requested, p.backend) == ("triton", "torch")
    monkeypatch.setattr(kernels, "HAS_TRITON", False)
    auto = choice.plan_backend("auto", "default", cuda)
    assert (auto.backend, auto.measure) == ("torch", False)
    with pytest.warns(RuntimeWarning, match="not installed"):
        assert choice.plan_backend("triton", "argument", cuda).backend == "torch"


def test_cache_path_respects_xdg(monkeypatch, tmp_path):
    assert choice.default_cache_path({"XDG_CACHE_HOME": str(tmp_path)}) == \
        tmp_path / "aedfast" / "backend_choice.json"
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    default = tmp_path / "home" / ".cache" / "aedfast" / "backend_choice.json"
    assert choice.default_cache_path({}) == default
    assert choice.default_cache_path({"XDG_CACHE_HOME": "relative/dir"}) == default


# ----------------------------------------------------------------------------- measurement


def test_measurement_picks_the_faster_per_part(fused, tmp_path):
    timer = FakeTimer(ENC_TRITON)
    cache = choice.ChoiceCache(tmp_path / "c.json")
    parts, how = _choose(fused, cache, timer)
    assert parts == {"encoder": "triton", "decoder": "torch"}
    assert how == {"encoder": "measured", "decoder": "measured"}
    assert sorted(timer.calls) == sorted(ENC_TRITON)
    data = json.loads((tmp_path / "c.json").read_text())
    entries = data["choices"]
    assert len(entries) == 2 and {e["backend"] for e in entries.values()} == {"triton", "torch"}
    enc = next(k for k in entries if "|encoder|" in k)
    assert entries[enc]["seconds"] == {"torch": 2.0, "triton": 1.0}
    for part in ("NVIDIA Fake", "torch=9.9", "triton=9.9", "B=8", "bfloat16", "grid=8x8"):
        assert part in enc  # the tiny encoder's grid: 8 rows x 16 * (1 - 0.5) columns


def test_cached_choice_is_reused_and_keyed(fused, tmp_path):
    path = tmp_path / "c.json"
    _choose(fused, choice.ChoiceCache(path), FakeTimer(ENC_TRITON))
    again = FakeTimer(ENC_TRITON)
    parts, how = _choose(fused, choice.ChoiceCache(path), again)  # read back from the file
    assert parts == {"encoder": "triton", "decoder": "torch"} and again.calls == []
    assert how == {"encoder": "cached", "decoder": "cached"}
    flipped = {k: 1.0 / v for k, v in ENC_TRITON.items()}
    for kw in ({"device": "NVIDIA Other"}, {"batch": 64},
               {"versions": {"torch": "9.9", "triton": "10.0"}}, {"dtype": torch.float32}):
        t = FakeTimer(flipped)
        parts, how = _choose(fused, choice.ChoiceCache(path), t, **kw)
        assert len(t.calls) == 4, kw  # a new key: measured again
        assert parts == {"encoder": "torch", "decoder": "triton"}, kw
    assert len(json.loads(path.read_text())["choices"]) == 10


@pytest.mark.parametrize("text", ["{not json", "[]", '{"format": 1, "choices": '
                                  '{"k": {"backend": "gpu"}}}', '{"format": 0, "choices": {}}'])
def test_corrupt_cache_is_ignored_and_rewritten(fused, tmp_path, text):
    path = tmp_path / "c.json"
    path.write_text(text)
    timer = FakeTimer(ENC_TRITON)
    with pytest.warns(RuntimeWarning, match="corrupt backend-choice cache"):
        parts, _ = _choose(fused, choice.ChoiceCache(path), timer)
    assert parts == {"encoder": "triton", "decoder": "torch"} and len(timer.calls) == 4
    data = json.loads(path.read_text())
    assert data["format"] == 1 and len(data["choices"]) == 2
    assert not list(tmp_path.glob(".c.json.tmp-*"))  # the atomic writer left no temp file


def test_failing_candidate_loses_with_a_warning(fused, tmp_path):
    table = {**ENC_TRITON, ("encoder", "triton"): RuntimeError("no kernel")}
    with pytest.warns(RuntimeWarning, match="'triton' failed on the encoder"):
        parts, _ = _choose(fused, choice.ChoiceCache(tmp_path / "c.json"), FakeTimer(table))
    assert parts["encoder"] == "torch"


# ----------------------------------------------------------------------------- model


def test_per_part_backend_keeps_folded_weights():
    model = AEDMAE.from_preset("tiny").eval().set_backend("torch")
    with pytest.raises(ValueError):
        model.set_backend({"encoder": "triton"})
    with pytest.raises(ValueError):
        model.set_backend({"encoder": "triton", "decoder": "eager"})
    model.to(torch.bfloat16)
    before = model.decoder_student_block.fused.qkv_w
    model.set_backend({"encoder": "triton", "decoder": "torch"}, refold=False)
    assert model.backend == "mixed"
    assert model.block_backends == {"encoder": "triton", "decoder": "torch"}
    assert [b.fused.backend for b in model.blocks] == ["triton"] * len(model.blocks)
    assert model.decoder_student_block.fused.backend == "torch"
    assert model.decoder_student_block.fused.qkv_w is before  # shared, still bfloat16
    assert model.set_backend("eager").backend == "eager"
    with pytest.raises(RuntimeError, match="refold=False"):
        model.set_backend("triton", refold=False)


# ----------------------------------------------------------------------------- Detector


def test_detector_argument_and_environment_override(model, monkeypatch):
    monkeypatch.setenv("AEDFAST_BACKEND", "eager")
    det = Detector(model, device="cpu", compile=False)
    d = det.describe()
    assert (d["backend"], d["backend_requested"]) == ("eager", "eager")
    assert d["backend_reason"].startswith("AEDFAST_BACKEND")
    det = Detector(model, device="cpu", compile=False, backend="torch")
    assert det.backend == "torch" and det.describe()["backend_reason"] == "argument"
    monkeypatch.setenv("AEDFAST_BACKEND", "bogus")
    with pytest.raises(ValueError, match="AEDFAST_BACKEND"):
        Detector(model, device="cpu", compile=False)


def test_describe_on_the_cpu_says_what_runs(model, monkeypatch):
    monkeypatch.delenv("AEDFAST_BACKEND", raising=False)
    d = Detector(model, device="cpu", compile=False).describe()
    assert (d["backend"], d["backend_requested"]) == ("torch", "auto")
    assert d["backend_parts"] == {"encoder": "torch", "decoder": "torch"}
    monkeypatch.setattr(kernels, "INTERPRET", False)  # a CPU without the interpreter
    with pytest.warns(RuntimeWarning, match="torch reference"):
        det = Detector(model, device="cpu", compile=False, backend="triton")
    d = det.describe()
    assert (d["backend"], d["backend_requested"]) == ("torch", "triton")
    assert "TRITON_INTERPRET" in d["backend_reason"]
    assert all(b.fused.backend == "torch" for b in det.model.part_blocks("decoder"))


def test_detector_measures_on_first_use_and_reuses_the_cache(model, monkeypatch, tmp_path):
    """The CUDA path's wiring, on the CPU: plan_backend is told to measure, the default
    timer is a fake, the cache lives under XDG_CACHE_HOME."""
    monkeypatch.delenv("AEDFAST_BACKEND", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    real_plan = choice.plan_backend

    def measuring_plan(requested, source, device):
        plan = real_plan(requested, source, device)
        plan.measure = requested == "auto"
        return plan

    timer = FakeTimer(ENC_TRITON)
    monkeypatch.setattr(choice, "plan_backend", measuring_plan)
    monkeypatch.setattr(choice, "cuda_timer", lambda device, cuda_graphs: timer)
    det = Detector(model, device="cpu", compile=False, batch_size=4)
    assert det.backend == "auto" and det.describe()["backend_parts"]["encoder"] == "auto"
    assert timer.calls == []  # nothing measured before first use
    det.runner  # noqa: B018 - first use settles the backend
    assert len(timer.calls) == 4 and det.backend == "mixed"
    d = det.describe()
    assert d["backend_parts"] == {"encoder": "triton", "decoder": "torch"}
    assert "measured" in d["backend_reason"] and "batch 4" in d["backend_reason"]
    assert (tmp_path / "aedfast" / "backend_choice.json").is_file()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        again = Detector(model, device="cpu", compile=False, batch_size=4, warmup=True)
    assert len(timer.calls) == 4  # the cached choice, no timing
    assert again.describe()["backend_parts"] == {"encoder": "triton", "decoder": "torch"}
    assert "cached" in again.describe()["backend_reason"]
    forced = Detector(model, device="cpu", compile=False, backend="torch", warmup=True)
    assert forced.backend == "torch" and len(timer.calls) == 4
    assert Path(choice.default_cache_path()).parent == tmp_path / "aedfast"


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_real_timer_on_cuda(tmp_path):
    """The real timer (warm-up, CUDA graph, events) on both candidates of both
    parts of the tiny preset: finite times, and the faster candidate chosen."""
    cuda = torch.device("cuda", torch.cuda.current_device())
    torch.manual_seed(0)
    model = AEDMAE.from_preset("tiny").eval().to(cuda).set_backend("torch").to(torch.bfloat16)
    seen: dict[tuple[str, str], float] = {}
    real = choice.cuda_timer(cuda, cuda_graphs=True, repeats=5, rounds=2)

    def timer(part, backend, run):
        seen[(part, backend)] = real(part, backend, run)
        return seen[(part, backend)]

    cache = choice.ChoiceCache(tmp_path / "c.json")
    parts, how = choice.choose_by_measurement(model, cuda, 8, torch.bfloat16, cuda_graphs=True,
                                              timer=timer, cache=cache)
    assert len(seen) == 4 and all(0 < s < 1 for s in seen.values()), seen
    for part, best in parts.items():
        assert seen[(part, best)] == min(seen[(part, c)] for c in choice.CANDIDATES)
    assert how == {"encoder": "measured", "decoder": "measured"}
