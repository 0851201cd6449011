"""Parity with the official implementation itself (ristea/aed-mae), not only with the
project's own reading of it (tests/reference_aed.py, docs/design.md §2).

These tests run only where a checkout of the official repository is on disk: point the
environment variable AEDFAST_OFFICIAL_REPO at it (the folder holding model/mae_cvt.py).
Without it every test here is skipped, with the reason. To run them:

    git clone https://github.com/ristea/aed-mae /tmp/aed-mae
    .venv/bin/pip install einops            # or: .venv/bin/pip install -e ".[official]"
    AEDFAST_OFFICIAL_REPO=/tmp/aed-mae .venv/bin/python -m pytest tests/test_official_parity.py

or `make parity AEDFAST_OFFICIAL_REPO=/tmp/aed-mae`.

What the official modules import (model/model_factory.py -> model/mae_cvt.py, model/cvt.py,
util/morphology.py): torch, numpy, scipy (aedfast's own dependencies), einops and timm. A
missing einops (or any other missing package) skips the tests, naming it. timm is used
only for two names in model/cvt.py, `DropPath` (built only for a drop-path rate > 0, never
in the MAE) and `trunc_normal_` (used only by cvt.py's classification models), and timm
itself needs torchvision, which has no CPU build on PyPI to go with a CPU torch. So when timm
cannot be imported, the official modules are given stand-ins for those two names that
raise if they are ever called (a warning says so): nothing of timm's runs in the compared
computation either way, and the numbers are the same as with the real package.

For each preset (avenue: 320 x 640, patch 16; shanghaitech: 160 x 320, patch 8) the test
builds the OFFICIAL model with its own factory (`mae_cvt_patch16` / `mae_cvt_patch8`, as its
main.py does), gives it random weights and random BatchNorm running statistics, saves two
checkpoints in the official format ({"model": state_dict}: checkpoint-best.pth and
checkpoint-best-student.pth, each holding the other half as different random weights, so a
mix-up shows) and loads them the way the official main.py does. aedfast loads the same two
files with `AEDMAE.from_official`. Both run in eval mode on the same batch of 2 inputs with
the same masking noise: the official `random_masking` draws its noise with `torch.rand`,
which is replaced by the test's noise for that one call only. Compared, as max |a - b| /
max |b| against the official output: teacher and student reconstructions (tolerance
`REL_TOL`), the masks (exactly), and the official frame scores of its `abnormal_score_TS`
against `aedfast.official_frame_scores`; for aedfast's "eager" backend and its CPU fast
path, the "torch" backend.
"""

from __future__ import annotations

import importlib
import os
import sys
import types
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from unittest import mock

import pytest
import torch

from aedfast import AEDMAE, official_frame_scores, patchify

ENV = "AEDFAST_OFFICIAL_REPO"
BATCH = 2
# Max |a - b| / max |b| allowed against the official outputs. Measured on CPU float32
# (torch 2.13): teacher and student within 7.7e-7 (eager) and 9.2e-7 ("torch" backend),
# frame scores within 6.4e-8, on both presets.
REL_TOL = 1e-5
# The official checkout's top-level packages (directories without __init__.py there).
OFFICIAL_PACKAGES = ("model", "util")
TIMM_NAMES = ("timm", "timm.models", "timm.models.layers")

# preset -> (official factory, official score function of its inference.py, aedfast protocol)
PRESETS: dict[str, tuple[str, str, str]] = {
    "avenue": ("mae_cvt_patch16", "L2", "avenue"),
    "shanghaitech": ("mae_cvt_patch8", "L1", "shanghaitech"),
}


# ----------------------------------------------------------------------------- importing


def official_repo() -> Path:
    """The checkout named by AEDFAST_OFFICIAL_REPO; skips when the variable is unset and
    fails when it names something that is not a checkout (a typo should not pass as a
    skip)."""
    value = os.environ.get(ENV, "").strip()
    if not value:
        pytest.skip(f"{ENV} is not set: point it at a checkout of the official "
                    "implementation (github.com/ristea/aed-mae) to run the parity tests")
    repo = Path(value).expanduser()
    if not (repo / "model" / "mae_cvt.py").is_file():
        pytest.fail(f"{ENV}={value!r} is not a checkout of ristea/aed-mae "
                    "(no model/mae_cvt.py there)")
    return repo


def _raise_if_called(name: str) -> Callable[..., object]:
    def stand_in(*args: object, **kwargs: object) -> object:
        raise AssertionError(f"timm.models.layers.{name} was called: the timm stand-in of "
                             "tests/test_official_parity.py is not enough, install timm")
    return stand_in


def _timm_stand_in() -> dict[str, types.ModuleType]:
    """Modules timm, timm.models, timm.models.layers holding the two names the official
    model/cvt.py imports, each raising if called."""
    mods = {name: types.ModuleType(name) for name in TIMM_NAMES}
    mods["timm"].models = mods["timm.models"]  # type: ignore[attr-defined]
    mods["timm.models"].layers = mods["timm.models.layers"]  # type: ignore[attr-defined]
    layers = mods["timm.models.layers"]
    layers.DropPath = _raise_if_called("DropPath")  # type: ignore[attr-defined]
    layers.trunc_normal_ = _raise_if_called("trunc_normal_")  # type: ignore[attr-defined]
    return mods


def _ours(name: str, prefixes: tuple[str, ...]) -> bool:
    return any(name == p or name.startswith(p + ".") for p in prefixes)


@dataclass
class Official:
    """The official modules, imported from the checkout."""

    factory: types.ModuleType  # model/model_factory.py
    mae_cvt: types.ModuleType  # model/mae_cvt.py
    timm_stand_in: bool


def import_official(repo: Path) -> Official:
    """Import model/model_factory.py (and with it model/mae_cvt.py, model/cvt.py,
    util/morphology.py) from `repo`, then put sys.path and sys.modules back as they were:
    the classes stay usable through the returned module objects. Skips, naming the package,
    when one the official code imports is missing."""
    saved_path = list(sys.path)
    saved = {k: v for k, v in sys.modules.items() if _ours(k, OFFICIAL_PACKAGES + ("timm",))}
    for k in saved:
        del sys.modules[k]
    stand_in = False
    try:
        try:
            importlib.import_module("timm.models.layers")
        except Exception as e:  # absent, or present without a working torchvision
            for k in [k for k in sys.modules if _ours(k, ("timm",))]:
                del sys.modules[k]
            sys.modules.update(_timm_stand_in())
            stand_in = True
            warnings.warn(f"timm cannot be imported ({type(e).__name__}: {e}); the official "
                          "model/cvt.py gets stand-ins for DropPath and trunc_normal_, which "
                          "raise if called", stacklevel=2)
        sys.path.insert(0, str(repo))
        for name in OFFICIAL_PACKAGES:  # explicit packages: no other `model`/`util` can win
            pkg = types.ModuleType(name)
            pkg.__path__ = [str(repo / name)]
            sys.modules[name] = pkg
        try:
            with warnings.catch_warnings():  # cvt.py's `is '*'` warns when compiled
                warnings.simplefilter("ignore", SyntaxWarning)
                factory = importlib.import_module("model.model_factory")
        except ModuleNotFoundError as e:
            if e.name is None or _ours(e.name, OFFICIAL_PACKAGES):
                raise
            top = e.name.split(".")[0]
            pytest.skip(f"the official implementation imports {top!r}, which is not "
                        f"installed: pip install {top}")
        return Official(factory, sys.modules["model.mae_cvt"], stand_in)
    finally:
        sys.path[:] = saved_path
        for k in [k for k in sys.modules if _ours(k, OFFICIAL_PACKAGES + ("timm",))]:
            del sys.modules[k]
        sys.modules.update(saved)


@pytest.fixture(scope="module")
def official() -> Official:
    return import_official(official_repo())


# ----------------------------------------------------------------------------- fixtures


def randomize_official(model: torch.nn.Module, seed: int) -> torch.nn.Module:
    """Random weights everywhere in an official model, random BatchNorm running statistics
    too (so their use in eval mode, and aedfast's folding of them, is exercised)."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if p.dim() == 1 and name.endswith("weight"):  # LayerNorm / BatchNorm scales
                p.copy_(1 + 0.2 * torch.randn(p.shape, generator=g))
            elif p.dim() == 1:  # biases
                p.copy_(0.1 * torch.randn(p.shape, generator=g))
            else:
                fan_in = p[0].numel()
                p.copy_(torch.randn(p.shape, generator=g) / fan_in ** 0.5)
        for name, b in model.named_buffers():
            if name.endswith("running_mean"):
                b.copy_(0.3 * torch.randn(b.shape, generator=g))
            elif name.endswith("running_var"):
                b.copy_(0.5 + torch.rand(b.shape, generator=g))
            elif name.endswith("num_batches_tracked"):
                b.fill_(1000)
    return model


def is_student(key: str) -> bool:
    return "student" in key


@dataclass
class Case:
    """One preset's official run: the files, the inputs and what the official model gave."""

    preset: str
    teacher_file: Path
    student_file: Path
    x: torch.Tensor  # [B, 9, H, W] in [-1, 1]
    target: torch.Tensor  # [B, 4, H, W]: frame t + the anomaly channel at -1
    noise: torch.Tensor  # [B, L]
    teacher: torch.Tensor  # [B, L, p*p*4]
    student: torch.Tensor
    mask: torch.Tensor  # [B, L]
    scores: torch.Tensor  # [B] the official frame scores, combined as its inference.py does


def _feed_noise(noise: torch.Tensor, calls: list[tuple]) -> Callable[..., torch.Tensor]:
    """A torch.rand that returns `noise` for the one [B, L] draw of random_masking."""
    def rand(*size: object, **kwargs: object) -> torch.Tensor:
        calls.append(size)
        assert tuple(size) == tuple(noise.shape), f"unexpected torch.rand{size}"
        return noise.clone().to(kwargs.get("device") or noise.device)
    return rand


def official_model(off: Official, preset: str) -> torch.nn.Module:
    """The official model of `preset`, built as its main.py builds it."""
    factory_name, score_func, _ = PRESETS[preset]
    cfg = AEDMAE.from_preset(preset).config
    model = getattr(off.factory, factory_name)(
        norm_pix_loss=False, img_size=tuple(cfg.img_size), use_only_masked_tokens_ab=False,
        abnormal_score_func=[score_func, score_func], masking_method="random_masking",
        grad_weighted_loss=True,
    ).float()
    return model


@pytest.fixture(scope="module", params=sorted(PRESETS))
def case(request: pytest.FixtureRequest, official: Official,
         tmp_path_factory: pytest.TempPathFactory) -> Case:
    preset: str = request.param
    seed = sorted(PRESETS).index(preset)
    cfg = AEDMAE.from_preset(preset).config
    H, W = cfg.img_size
    folder = tmp_path_factory.mktemp(f"official_{preset}")

    # Two trainings' worth of random weights: the teacher file's student keys and the
    # student file's other keys are decoys that must not be used.
    teacher_src = randomize_official(official_model(official, preset), seed=10 + seed)
    student_src = randomize_official(official_model(official, preset), seed=20 + seed)
    teacher_file = folder / "checkpoint-best.pth"
    student_file = folder / "checkpoint-best-student.pth"
    torch.save({"model": teacher_src.state_dict()}, teacher_file)
    torch.save({"model": student_src.state_dict()}, student_file)
    for key, value in teacher_src.state_dict().items():  # a mix-up of the halves would show
        if value.is_floating_point() and value.numel() > 1:
            assert not torch.allclose(value, student_src.state_dict()[key]), key

    # Load them as the official main.py does (run_type "inference").
    model = official_model(official, preset)
    student = torch.load(student_file, weights_only=True)["model"]
    teacher = torch.load(teacher_file, weights_only=True)["model"]
    for key in student:
        if is_student(key):
            teacher[key] = student[key]
    result = model.load_state_dict(teacher, strict=False)
    assert not result.missing_keys and not result.unexpected_keys
    model.eval()
    model.train_TS = True  # as its inference.py: teacher and student outputs and scores
    model.abnormal_score_func_TS = PRESETS[preset][1]

    g = torch.Generator().manual_seed(100 + seed)
    x = torch.rand(BATCH, 9, H, W, generator=g) * 2 - 1
    target = torch.cat([x[:, 3:6], torch.full_like(x[:, :1], -1.0)], dim=1)
    # motion maps: abnormal_score_TS computes token weights from them but does not use them
    grads = torch.rand(BATCH, 3, H, W, generator=g) * 255
    noise = torch.rand(BATCH, cfg.num_tokens, generator=g)

    # One call of the official entry point, as its inference.py makes it, with the test's
    # noise fed to random_masking's torch.rand and a spy on forward_decoder_TS for the
    # student output, which forward() does not return.
    calls: list[tuple] = []
    decoded: list[tuple[torch.Tensor, torch.Tensor]] = []
    decode = model.forward_decoder_TS

    def spy(latent: torch.Tensor, ids_restore: torch.Tensor) -> tuple[torch.Tensor, ...]:
        decoded.append(decode(latent, ids_restore))
        return decoded[-1]

    with torch.no_grad(), mock.patch.object(model, "forward_decoder_TS", spy), \
            mock.patch.object(official.mae_cvt.torch, "rand", _feed_noise(noise, calls)):
        _, teacher_out, mask, scores = model(x, targets=target, grad_mask=grads,
                                             mask_ratio=cfg.mask_ratio)
    assert len(calls) == 1, "the official random_masking no longer draws its noise once"
    assert len(decoded) == 1 and decoded[0][1] is teacher_out
    student_out = decoded[0][0]
    ts, teacher_err = scores  # official: [teacher/student error, teacher error]
    combined = ts + teacher_err if preset == "avenue" else teacher_err
    return Case(preset, teacher_file, student_file, x, target, noise, teacher_out,
                student_out, mask, combined)


# ----------------------------------------------------------------------------- tests


def rel_err(a: torch.Tensor, b: torch.Tensor) -> float:
    """max |a - b| / max |b|, in float64."""
    return ((a.double() - b.double()).abs().max() / b.double().abs().max()).item()


def load_aedfast(c: Case) -> AEDMAE:
    with pytest.warns(UserWarning, match="classification head"):
        return AEDMAE.from_official(c.teacher_file, c.student_file, preset=c.preset)


@pytest.mark.parametrize("backend", ["eager", "torch"])
def test_matches_official_implementation(case: Case, backend: str, official: Official,
                                         record_property: Callable[[str, object], None]
                                         ) -> None:
    model = load_aedfast(case).set_backend(backend)
    assert not model.training
    with torch.no_grad():
        out = model(case.x, noise=case.noise)
    p = model.config.patch_size
    scores = official_frame_scores(patchify(case.target, p), (out.teacher, out.student),
                                   dataset=PRESETS[case.preset][2])
    errs = {
        "teacher": rel_err(out.teacher, case.teacher),
        "student": rel_err(out.student, case.student),
        "scores": rel_err(scores, case.scores),
    }
    for name, err in errs.items():
        record_property(f"rel_err_{name}", err)
    print(f"\n{case.preset}/{backend}: max relative difference "
          + ", ".join(f"{k} {v:.2e}" for k, v in errs.items())
          + (" (timm stand-in)" if official.timm_stand_in else ""))
    assert torch.equal(out.mask, case.mask), "masks differ: the noise was not used alike"
    for name, err in errs.items():
        assert err <= REL_TOL, (f"{case.preset}/{backend}: {name} differs from the official "
                                f"implementation by {err:.3e} (relative) > {REL_TOL:g}")
    # the comparison has teeth: teacher and student outputs are far apart
    assert rel_err(out.student, out.teacher) > 1e-2



def test_import_leaves_no_trace(official: Official) -> None:
    """The official checkout is imported without leaving its generic top-level names
    (`model`, `util`) or a timm stand-in behind for other tests to trip over."""
    repo = str(official_repo())
    assert repo not in sys.path
    left = [k for k in sys.modules if _ours(k, OFFICIAL_PACKAGES)]
    assert not left, left
    if official.timm_stand_in:
        assert not any(_ours(k, ("timm",)) for k in sys.modules)
    assert official.mae_cvt.MaskedAutoencoderCvT.__module__ == "model.mae_cvt"
