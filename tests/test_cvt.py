"""Fused CvT block (docs/design.md §2 step 4): BatchNorm folding, the two Triton kernels
(interpreted on the CPU) against their torch reference and against the unfolded
official-structure modules (aedfast.model.Block) and the float64 literal reference
(tests/reference_aed.py), at small odd shapes and at the avenue preset's real block sizes; the
whole model on backends "torch" and "triton" against "eager"; torch.compile."""

from __future__ import annotations

import contextlib
import os

import pytest
import torch
import torch.nn.functional as F

from aedfast import AEDMAE
from aedfast.kernels import cvt
from aedfast.model import Block, encoder_grid, get_preset

from . import reference_aed as ref
from .test_model import official_state, randomize, rel_err

ON_GPU = os.environ.get("AEDFAST_TEST_GPU", "0") == "1"
# Relative error (max |a - b| / max |b|) allowed against the float64 truth / eager. On a GPU
# float32 tl.dot runs as 3xTF32: float32 accuracy up to a few ulps of the sums.
FP32_TOL = 5e-5 if ON_GPU else 1e-5
TOL = {torch.float32: FP32_TOL, torch.bfloat16: 2e-2, torch.float16: 4e-3}


def make_block(D: int, heads: int, seed: int, dtype=torch.float32) -> Block:
    """A Block with random weights and random BatchNorm statistics (so folding matters)."""
    return randomize(Block(D, heads, 2.0), seed).to(dtype)


def tokens(B: int, T: int, D: int, seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(B, T, D, generator=g) + 0.5 * torch.randn(1, 1, D, generator=g)


@contextlib.contextmanager
def no_tf32():
    """Eager float32 on a GPU: keep cuDNN convolutions out of TF32 (torch's default there)."""
    with torch.backends.cudnn.flags(enabled=True, allow_tf32=False):
        yield


# ----------------------------------------------------------------------------- unfolded truth


def eager_qkv(blk: Block, x: torch.Tensor, h: int, w: int, has_cls: bool) -> torch.Tensor:
    """q, k, v [3, B, T, D] with the official modules: LN1, conv + BatchNorm per projection,
    the cls row concatenated unconvolved, proj_q/k/v."""
    B, T, D = x.shape
    xn = blk.norm1(x)
    c = int(has_cls)
    grid = xn[:, c:].transpose(1, 2).reshape(B, D, h, w)
    out = []
    for conv, lin in ((blk.attn.conv_proj_q, blk.attn.proj_q), (blk.attn.conv_proj_k,
                      blk.attn.proj_k), (blk.attn.conv_proj_v, blk.attn.proj_v)):
        seq = conv(grid).flatten(2).transpose(1, 2)
        if has_cls:
            seq = torch.cat([xn[:, :1], seq], dim=1)
        out.append(lin(seq))
    return torch.stack(out)


def eager_out_mlp(blk: Block, x: torch.Tensor, attn: torch.Tensor, has_cls: bool
                  ) -> torch.Tensor:
    B, T, D = x.shape
    y = x + blk.attn.proj(attn.transpose(1, 2).reshape(B, T, D))
    z = blk.norm2(y)
    if has_cls:
        return y + blk.mlp(z)  # the official Mlp returns the cls row unchanged
    return y + blk.mlp.net(z.transpose(1, 2).unsqueeze(-1)).squeeze(-1).transpose(1, 2)


def literal_block(blk: Block, x: torch.Tensor, h: int, w: int) -> torch.Tensor:
    """tests/reference_aed.block (float64, explicit loops) on the block's weights."""
    sd = {f"b.{k}": v.double() for k, v in blk.state_dict().items()}
    return ref.block(x.double().cpu(), sd, "b.", blk.attn.num_heads, h, w)


# ----------------------------------------------------------------------------- folding


def test_fold_conv_bn_matches_conv_then_batchnorm():
    torch.manual_seed(0)
    conv = torch.nn.Conv2d(8, 8, 3, padding=1, groups=8, bias=False)
    bn = torch.nn.BatchNorm2d(8)
    with torch.no_grad():
        bn.weight.uniform_(0.5, 1.5)
        bn.bias.normal_()
        bn.running_mean.normal_()
        bn.running_var.uniform_(0.2, 2.0)
    bn.eval()
    g = torch.randn(2, 8, 5, 7)
    w, b = cvt.fold_conv_bn(conv.weight, bn.weight, bn.bias, bn.running_mean, bn.running_var,
                            bn.eps)
    assert w.shape == (8, 3, 3) and b.shape == (8,)
    folded = F.conv2d(g, w[:, None], b, padding=1, groups=8)
    assert rel_err(folded, bn(conv(g))) <= 1e-6


def test_official_weights_folded_equal_unfolded(tmp_path):
    """An official-layout checkpoint: the folded "torch" backend gives the eager outputs."""
    src = randomize(AEDMAE.from_preset("tiny"), seed=11)
    torch.save({"model": official_state(src)}, tmp_path / "checkpoint-best.pth")
    with pytest.warns(UserWarning):
        model = AEDMAE.from_official(tmp_path / "checkpoint-best.pth", preset="tiny")
    x = torch.rand(2, 9, 64, 128) * 2 - 1
    noise = torch.rand(2, model.config.num_tokens)
    with torch.no_grad():
        eager = model(x, noise=noise)
        folded = model.set_backend("torch")(x, noise=noise)
    for a, b in ((folded.teacher, eager.teacher), (folded.student, eager.student),
                 (folded.cls_logit, eager.cls_logit)):
        assert rel_err(a, b) <= 1e-5


def test_fold_block_layouts_and_buffers():
    blk = make_block(32, 4, seed=1)
    fb = cvt.FusedBlock.from_block(blk, backend="torch")
    w = fb.weights()
    assert w["conv_w"].shape == (32, 3, 9) and w["qkv_w"].shape == (3, 32, 32)
    assert w["fc1_w"].shape == (64, 32) and w["fc2_w"].shape == (32, 64)
    # conv_w[c, j] is projection j's folded 3x3 kernel of channel c, taps row-major
    bn = blk.attn.conv_proj_k.bn
    s = bn.weight / torch.sqrt(bn.running_var + bn.eps)
    expect = blk.attn.conv_proj_k.conv.weight[:, 0].reshape(32, 9) * s[:, None]
    assert torch.allclose(w["conv_w"][:, 1], expect, rtol=1e-6, atol=1e-7)
    # folded weights are buffers that follow .to() but stay out of state_dict / parameters
    assert not list(fb.parameters()) and not fb.state_dict()
    assert fb.to(torch.bfloat16).qkv_w.dtype == torch.bfloat16


# ----------------------------------------------------------------------------- kernels

# (D, heads, grid h x w, cls row): encoder-like (shuffled h x w/2) and decoder-like (true
# h x w) grids; odd and even token counts, widths that are and are not powers of two.
CASES = [
    (32, 2, (3, 5), True),  # T = 16
    (32, 4, (4, 6), True),  # T = 25 (odd)
    (48, 3, (3, 5), False),  # T = 15 (odd), D not a power of 2, no cls row
    (64, 4, (2, 8), False),  # T = 16
    (24, 2, (5, 1), True),  # a single-column grid: every left/right neighbour is padding
]


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("D,heads,grid,has_cls", CASES)
def test_qkv_kernel(device, D, heads, grid, has_cls, dtype):
    h, w = grid
    blk = make_block(D, heads, seed=D + h)
    x = tokens(2, int(has_cls) + h * w, D, seed=h * w).to(dtype)
    weights = cvt.fold_block(blk.to(dtype))
    args = [weights[n] for n in cvt.QKV_NAMES]
    got = cvt.qkv_triton(x.to(device), *(a.to(device) for a in args), h, w, has_cls)
    assert got.shape == (3, 2, x.shape[1], D) and got.dtype == dtype
    reference = cvt.qkv_reference(x, *args, h, w, has_cls)
    with torch.no_grad():
        truth = eager_qkv(make_block(D, heads, seed=D + h, dtype=torch.float64),
                          x.double(), h, w, has_cls)
    assert rel_err(got.cpu(), truth) <= TOL[dtype]
    assert rel_err(reference, truth) <= TOL[dtype]
    if dtype == torch.float32:
        assert rel_err(got.cpu(), reference) <= FP32_TOL


def preset_blocks() -> list[tuple[int, int, int, int]]:
    """(D, heads, h, w) of the avenue preset's blocks (shanghaitech's are the same): the
    encoder, D 256 on the kept 20 x 20 grid (T 401), and the decoder, D 128 on 20 x 40 (801)."""
    cfg = get_preset("avenue")
    return [(cfg.embed_dim, cfg.num_heads, *encoder_grid(cfg.grid, cfg.mask_ratio)),
            (cfg.decoder_embed_dim, cfg.decoder_num_heads, *cfg.grid)]


def check_qkv_at(device, D, heads, h, w, dtype):
    """qkv_triton at batch 1 on an h x w grid with the cls row: against the float32 torch
    reference of the same (rounded) inputs and the float64 eager truth."""
    blk = make_block(D, heads, seed=D + h)
    x = tokens(1, 1 + h * w, D, seed=w).to(dtype)
    args = [cvt.fold_block(blk.to(dtype))[n] for n in cvt.QKV_NAMES]
    got = cvt.qkv_triton(x.to(device), *(a.to(device) for a in args), h, w, True).cpu()
    assert got.shape == (3, 1, 1 + h * w, D) and got.dtype == dtype
    reference = cvt.qkv_reference(x.float(), *(a.float() for a in args), h, w, True)
    with torch.no_grad():
        truth = eager_qkv(make_block(D, heads, seed=D + h, dtype=torch.float64), x.double(),
                          h, w, True)
    assert rel_err(got, reference) <= TOL[dtype]
    assert rel_err(got, truth) <= TOL[dtype]


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16], ids=["fp32", "bf16"])
@pytest.mark.parametrize("D,heads,h,w", [
    pytest.param(*preset_blocks()[0], id="encoder"),  # ~3 s of CPU per dtype interpreted
    pytest.param(*preset_blocks()[1], id="decoder", marks=pytest.mark.slow),  # ~5 s
])
def test_qkv_kernel_at_preset_sizes(device, D, heads, h, w, dtype):
    """The preset's real blocks at batch 1 (interpreted on the CPU: the autotune list's first
    entry, 32 tokens x 64 columns: the production tile at D = 256, and a partial last tile at
    T = 401 and 801)."""
    check_qkv_at(device, D, heads, h, w, dtype)


@pytest.mark.slow  # ~3 s of CPU per entry interpreted
@pytest.mark.parametrize("cfg", range(1, len(cvt.QKV_CONFIGS)))  # entry 0: the test above
def test_qkv_kernel_every_tile_config(device, cfg):
    """Each other entry of _qkv_kernel's autotune list pinned alone (the autotuner may pick
    any of them) at the encoder's real width and grid, float32, batch 1. On a GPU an entry
    that does not fit (shared memory) is skipped: the autotuner skips it too."""
    from triton.runtime.errors import OutOfResources

    kernel = cvt._qkv_kernel
    configs, cache = kernel.configs, dict(kernel.cache)
    kernel.configs = [cvt.QKV_CONFIGS[cfg]]
    kernel.cache.clear()
    try:
        D, heads, h, w = preset_blocks()[0]
        check_qkv_at(device, D, heads, h, w, torch.float32)
    except OutOfResources as e:
        pytest.skip(f"{cvt.QKV_CONFIGS[cfg]} does not fit this GPU: {e}")
    finally:
        kernel.configs = configs
        kernel.cache.clear()
        kernel.cache.update(cache)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("D,heads,grid,has_cls", CASES)
def test_out_mlp_kernel(device, D, heads, grid, has_cls, dtype):
    h, w = grid
    T = int(has_cls) + h * w
    blk = make_block(D, heads, seed=D + w)
    x = tokens(2, T, D, seed=T).to(dtype)
    g = torch.Generator().manual_seed(5)
    attn = torch.randn(2, T, heads, D // heads, generator=g).to(dtype).transpose(1, 2)
    weights = cvt.fold_block(blk.to(dtype))
    args = [weights[n] for n in cvt.MLP_NAMES]
    # attn as SDPA may return it: [B, H, T, d] with a [B, T, H, d] memory order
    got = cvt.out_mlp_triton(x.to(device), attn.to(device), *(a.to(device) for a in args),
                             has_cls)
    assert got.shape == x.shape and got.dtype == dtype
    reference = cvt.out_mlp_reference(x, attn, *args, has_cls)
    b64 = make_block(D, heads, seed=D + w, dtype=torch.float64)
    with torch.no_grad():
        truth = eager_out_mlp(b64, x.double(), attn.double(), has_cls)
        # the cls row is y + LN2(y): the MLP returns it unchanged
        y = x.double() + b64.attn.proj(attn.double().transpose(1, 2).reshape(x.shape))
        cls = (y + b64.norm2(y))[:, 0]
    assert rel_err(got.cpu(), truth) <= TOL[dtype]
    assert rel_err(reference, truth) <= TOL[dtype]
    if has_cls:
        assert rel_err(got[:, 0].cpu(), cls) <= TOL[dtype]


@pytest.mark.parametrize("backend", ["torch", "triton"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float16])
def test_fused_block_matches_eager_and_literal(device, backend, dtype):
    D, heads, h, w = 32, 4, 3, 5
    blk = make_block(D, heads, seed=7)
    x = tokens(2, 1 + h * w, D, seed=3)
    literal = literal_block(blk, x, h, w)
    blk = blk.to(device=device, dtype=dtype)
    fused = cvt.FusedBlock.from_block(blk, backend=backend)
    with torch.no_grad(), no_tf32():
        got = fused(x.to(device, dtype), h, w)
        eager = blk(x.to(device, dtype), h, w)
    assert got.dtype == dtype and got.shape == x.shape
    assert rel_err(got.cpu(), literal) <= TOL[dtype]
    assert rel_err(got.cpu(), eager.cpu()) <= TOL[dtype]


# ----------------------------------------------------------------------------- the model


class LauncherSpy:
    """Counts calls of the Triton launchers (the custom ops look them up at call time)."""

    def __init__(self, monkeypatch):
        self.calls = {"qkv": 0, "out_mlp": 0}
        for key, name in (("qkv", "qkv_triton"), ("out_mlp", "out_mlp_triton")):
            orig = getattr(cvt, name)

            def spy(*args, _orig=orig, _key=key):
                self.calls[_key] += 1
                return _orig(*args)

            monkeypatch.setattr(cvt, name, spy)


def _model_inputs(model: AEDMAE, B: int, device):
    g = torch.Generator().manual_seed(B)
    H, W = model.config.img_size
    x = torch.rand(B, 9, H, W, generator=g) * 2 - 1
    noise = torch.rand(B, model.config.num_tokens, generator=g)
    return x.to(device), noise.to(device)


@pytest.mark.parametrize("backend", ["torch", "triton"])
def test_model_backends_match_eager(device, backend, monkeypatch):
    model = randomize(AEDMAE.from_preset("tiny"), seed=2).to(device)  # 65 / 129 tokens (odd)
    x, noise = _model_inputs(model, 2, device)
    spy = LauncherSpy(monkeypatch)
    with torch.no_grad(), no_tf32():
        eager = model(x, noise=noise)
        fast = model.set_backend(backend)(x, noise=noise)
    for a, b in ((fast.teacher, eager.teacher), (fast.student, eager.student),
                 (fast.cls_logit, eager.cls_logit)):
        assert rel_err(a, b) <= FP32_TOL
    assert torch.equal(fast.mask, eager.mask)
    n_blocks = model.config.depth + model.config.decoder_depth + 1
    expect = n_blocks if backend == "triton" else 0  # proof the Triton path ran (or not)
    assert spy.calls == {"qkv": expect, "out_mlp": expect}
    # the folded weights are not part of the checkpoint; eager comes back
    assert model.state_dict().keys() == AEDMAE.from_preset("tiny").state_dict().keys()
    assert model.set_backend("eager").blocks[0].fused is None


def test_model_bfloat16_triton_matches_eager(device):
    model = randomize(AEDMAE.from_preset("tiny", depth=1, decoder_depth=1), seed=4)
    model = model.to(device, torch.bfloat16)
    x, noise = _model_inputs(model, 1, device)
    with torch.no_grad():
        eager = model(x.bfloat16(), noise=noise)
        fast = model.set_backend("triton")(x.bfloat16(), noise=noise)
    assert fast.teacher.dtype == torch.bfloat16
    assert rel_err(fast.teacher, eager.teacher) <= 3e-2
    assert rel_err(fast.student, eager.student) <= 3e-2


def test_set_backend_then_to_dtype_follows():
    """Folded buffers follow model.to() after set_backend, like the weights they came from."""
    model = randomize(AEDMAE.from_preset("tiny", depth=1, decoder_depth=1), seed=6)
    model.set_backend("torch").to(torch.bfloat16)
    assert model.blocks[0].fused.qkv_w.dtype == torch.bfloat16
    x, noise = _model_inputs(model, 1, "cpu")
    with torch.no_grad():
        out = model(x.bfloat16(), noise=noise)
    assert out.teacher.dtype == torch.bfloat16 and torch.isfinite(out.teacher.float()).all()


def test_torch_compile_torch_backend_model():
    """The whole model with backend "torch" compiles without graph breaks, same numbers."""
    model = randomize(AEDMAE.from_preset("tiny", depth=1, decoder_depth=1), seed=8)
    x, noise = _model_inputs(model, 2, "cpu")
    with torch.no_grad():
        eager = model(x, noise=noise)
        compiled = torch.compile(model.set_backend("torch"), fullgraph=True)
        out = compiled(x, noise=noise)
    assert rel_err(out.teacher, eager.teacher) <= 1e-5
    assert rel_err(out.student, eager.student) <= 1e-5


def test_torch_compile_triton_block_is_opaque(device, monkeypatch):
    """backend "triton" under torch.compile(fullgraph=True): the custom ops stay opaque (their
    fakes are traced) and the Triton launchers run inside them."""
    blk = make_block(32, 2, seed=9).to(device)
    fused = cvt.FusedBlock.from_block(blk, backend="triton")
    x = tokens(2, 1 + 3 * 4, 32, seed=1).to(device)
    spy = LauncherSpy(monkeypatch)
    with torch.no_grad(), no_tf32():
        out = torch.compile(fused, fullgraph=True)(x, 3, 4)
        eager = blk(x, 3, 4)
    assert spy.calls == {"qkv": 1, "out_mlp": 1}
    assert rel_err(out, eager) <= FP32_TOL


# ----------------------------------------------------------------------------- bad input


def test_bad_input_errors():
    blk = make_block(32, 4, seed=1)
    weights = cvt.fold_block(blk)
    x = tokens(1, 16, 32, seed=0)
    with pytest.raises(ValueError, match="do not match a 3x4 grid plus the cls row"):
        cvt.cvt_qkv(x, weights, 3, 4)
    with pytest.raises(ValueError, match="grid size h"):
        cvt.cvt_qkv(x, weights, 0, 15)
    with pytest.raises(TypeError, match="float32, bfloat16 or float16"):
        cvt.cvt_qkv(x.double(), weights, 3, 5)
    with pytest.raises(ValueError, match=r"\[B, T, D\]"):
        cvt.cvt_qkv(x[0], weights, 3, 5)
    bad = dict(weights, conv_w=weights["conv_w"][:, :2])
    with pytest.raises(ValueError, match="conv_w has shape"):
        cvt.cvt_qkv(x, bad, 3, 5)
    with pytest.raises(ValueError, match="lack"):
        cvt.cvt_qkv(x, {"ln1_w": weights["ln1_w"]}, 3, 5)
    with pytest.raises(ValueError, match="num_heads"):
        cvt.cvt_block(x, weights, 3, 5, 3)
    with pytest.raises(ValueError, match="attn shape"):
        cvt.cvt_out_mlp(x, torch.zeros(1, 4, 15, 8), weights)
    with pytest.raises(ValueError, match="unknown fused backend"):
        cvt.FusedBlock.from_block(blk, backend="cuda")
    model = AEDMAE.from_preset("tiny")  # training mode: folding would go stale
    with pytest.raises(RuntimeError, match="model.eval"):
        model.set_backend("triton")


# ----------------------------------------------------------------------------- preset sizes (CUDA)


@pytest.mark.gpu  # CUDA-only (no `device` fixture): tests/conftest.py skips it elsewhere
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16], ids=["fp32", "bf16"])
@pytest.mark.parametrize("D,heads,h,w", preset_blocks(), ids=["encoder", "decoder"])
def test_kernels_at_preset_sizes(D, heads, h, w, dtype):
    """Both kernels and the fused block on CUDA at the presets' real sizes and batch 256, with
    the tiles the autotuner picks there (production), against their torch references (float32,
    same device) and the eager block."""
    B, T = 256, 1 + h * w
    blk = make_block(D, heads, seed=D).to(dtype)
    wts = {k: v.cuda() for k, v in cvt.fold_block(blk).items()}
    x = tokens(B, T, D, seed=T).to("cuda", dtype)
    g = torch.Generator().manual_seed(T)
    attn = torch.randn(B, T, heads, D // heads, generator=g).to("cuda", dtype).transpose(1, 2)
    q_args, m_args = [wts[n] for n in cvt.QKV_NAMES], [wts[n] for n in cvt.MLP_NAMES]
    with torch.no_grad(), no_tf32():
        qkv = cvt.qkv_triton(x, *q_args, h, w, True)
        qkv_ref = cvt.qkv_reference(x.float(), *(a.float() for a in q_args), h, w, True)
        mlp = cvt.out_mlp_triton(x, attn, *m_args, True)
        mlp_ref = cvt.out_mlp_reference(x.float(), attn.float(), *(a.float() for a in m_args),
                                        True)
        blk = blk.cuda()
        fused = cvt.FusedBlock.from_block(blk, backend="triton")(x, h, w)
        eager = blk(x, h, w)
    picks = (cvt._qkv_kernel.best_config, cvt._out_mlp_kernel.best_config)
    assert rel_err(qkv, qkv_ref) <= TOL[dtype], picks
    assert rel_err(mlp, mlp_ref) <= TOL[dtype], picks
    # two bf16 approximations of one block (1.5e-2 apart at batch 1 under the interpreter)
    assert rel_err(fused, eager) <= (3e-2 if dtype == torch.bfloat16 else FP32_TOL), picks
