"""Every autotune configuration of every Triton kernel, checked against its torch reference.

The autotuner picks, per shape, the fastest entry of a kernel's list (the @triton.autotune
lists in kernels/*.py), so every entry it may pick must be correct on its own, not only the
one that won on the machine the tests ran on. This runs each entry alone (an autotuner with a
one-entry list launches it without timing) through the kernel's launcher, at the presets'
sizes, and compares the output with the kernel's torch reference. An entry that does not fit
the GPU at a shape (out of shared memory or registers: the autotuner skips it there too) is
recorded as "unfit", not as a failure (an entry unfit at every case is listed at the end:
the autotuner cannot pick it at these shapes). A kernel with an autotune list and no check here
fails the run, so a new kernel cannot slip past.

Under TRITON_INTERPRET=1 (the CPU rehearsal of bench/gpu_check.py) kernels/_triton.py cuts each
list to its first entry; this module loads that shim first with the cut undone, so the
interpreter runs every entry too, at the tiny preset's sizes and fewer cases (the bf16 CvT
encoder block only, motion on 16 x 32 crops of the frames, weights only): the interpreter is slow.

Usage: python -m bench.autotune_check [--presets avenue,shanghaitech] [--batch 4]
Rows: $AEDFAST_BENCH_OUT/autotune.jsonl, one per (kernel, entry, case); exit code 1 when an
entry is wrong or fails, or a kernel has no check.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.util
import os
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path


def uncut_autotune_lists() -> None:
    """Under the interpreter, load aedfast.kernels._triton before aedfast with its
    `autotune_configs` returning whole lists (it keeps the first entry only there)."""
    if os.environ.get("TRITON_INTERPRET") != "1" or "aedfast.kernels._triton" in sys.modules:
        return
    spec = importlib.util.find_spec("aedfast")  # finds, does not import, the package
    path = Path(spec.submodule_search_locations[0]) / "kernels" / "_triton.py"
    shim_spec = importlib.util.spec_from_file_location("aedfast.kernels._triton", path)
    shim = importlib.util.module_from_spec(shim_spec)
    sys.modules[shim_spec.name] = shim
    shim_spec.loader.exec_module(shim)
    shim.autotune_configs = list


def config_label(cfg) -> str:
    meta = ", ".join(f"{k}={v}" for k, v in cfg.kwargs.items())
    return ", ".join(filter(None, [meta, f"warps={cfg.num_warps}", f"stages={cfg.num_stages}"]))


@contextlib.contextmanager
def pinned(kernel, cfg) -> Iterator[None]:
    """The autotuned `kernel` launches `cfg` only, while inside."""
    configs, cache = kernel.configs, dict(kernel.cache)
    kernel.configs = [cfg]
    try:
        yield
    finally:
        kernel.configs = configs
        kernel.cache.clear()
        kernel.cache.update(cache)


def rel_err(got, want) -> float:
    got, want = got.float().cpu(), want.float().cpu()
    return float((got - want).abs().max() / want.abs().max().clamp_min(1e-12))


# ----------------------------------------------------------------------------- cases
# Each yields (case name, run the launcher, run the reference, relative tolerance).


def cvt_cases(kernel_name: str, presets: list[str], batch: int, device):
    import torch

    from aedfast.kernels import cvt
    from aedfast.model import Block, encoder_grid, get_preset

    seen = set()
    dtypes = ((torch.bfloat16, 2e-2), (torch.float32, 5e-5))
    for dtype, tol in dtypes[:1] if device.type == "cpu" else dtypes:
        for preset in presets:
            cfg = get_preset(preset)
            parts = {"encoder": (cfg.embed_dim, cfg.num_heads,
                                 encoder_grid(cfg.grid, cfg.mask_ratio)),
                     "decoder": (cfg.decoder_embed_dim, cfg.decoder_num_heads, cfg.grid)}
            if device.type == "cpu":
                del parts["decoder"]
            for part, (D, heads, (h, w)) in parts.items():
                if (D, heads, h, w, dtype) in seen:  # shanghaitech's blocks are avenue's
                    continue
                seen.add((D, heads, h, w, dtype))
                g = torch.Generator().manual_seed(D + h)
                blk = Block(D, heads, cfg.mlp_ratio).eval()
                with torch.no_grad():
                    for p in blk.parameters():
                        p.copy_(torch.randn(p.shape, generator=g) / max(1, p[0].numel()) ** 0.5)
                wts = {k: v.to(device) for k, v in cvt.fold_block(blk).items()}
                T = 1 + h * w
                x = torch.randn(batch, T, D, generator=g).to(device)
                name = f"{preset} {part} D={D} T={T} B={batch} {str(dtype)[6:]}"
                if kernel_name == "_qkv_kernel":
                    args = [wts[n] for n in cvt.QKV_NAMES]
                    yield (name,
                           lambda x=x, a=args, h=h, w=w, dt=dtype:
                           cvt.qkv_triton(x.to(dt), *(t.to(dt) for t in a), h, w, True),
                           lambda x=x, a=args, h=h, w=w, dt=dtype:
                           cvt.qkv_reference(x.to(dt).float(), *(t.to(dt).float() for t in a),
                                             h, w, True),
                           tol)
                else:
                    attn = torch.randn(batch, T, heads, D // heads, generator=g).to(device)
                    attn = attn.transpose(1, 2)  # [B, H, T, d] in SDPA's output layout
                    args = [wts[n] for n in cvt.MLP_NAMES]
                    yield (name,
                           lambda x=x, at=attn, a=args, dt=dtype:
                           cvt.out_mlp_triton(x.to(dt), at.to(dt), *(t.to(dt) for t in a),
                                              True),
                           lambda x=x, at=attn, a=args, dt=dtype:
                           cvt.out_mlp_reference(x.to(dt).float(), at.to(dt).float(),
                                                 *(t.to(dt).float() for t in a), True),
                           tol)


def motion_cases(kernel_name: str, presets: list[str], batch: int, device):
    import torch

    from aedfast.kernels import motion
    from aedfast.model import get_preset

    small = device.type == "cpu"  # the interpreter: a crop of the frames, the weights only
    for preset in presets:
        cfg = get_preset(preset)
        (H, W), patch = cfg.img_size, cfg.patch_size
        if small:
            H, W = min(H, 2 * patch), min(W, 4 * patch)
        g = torch.Generator().manual_seed(H)
        # contiguous rows go to _motion_rows_kernel; the strided kernel gets column-strided
        # views (every other pixel of frames twice as wide), the layouts it is there for
        wide = 1 if kernel_name == "_motion_rows_kernel" else 2
        prev, nxt = (torch.randint(0, 256, (batch, H, wide * W, 3), dtype=torch.uint8,
                                   generator=g).to(device)[:, :, ::wide] for _ in range(2))
        amap = torch.rand(batch, H, W, generator=g).to(device)
        yield (f"{preset} weights {H}x{W} patch {patch} B={batch}",
               lambda p=prev, n=nxt, s=patch: motion.motion_token_weights_triton(p, n, s),
               lambda p=prev, n=nxt, s=patch: motion.motion_token_weights_reference(p, n, s),
               1e-5)
        if small:
            continue
        yield (f"{preset} weights + anomaly map {H}x{W} B={batch}",
               lambda p=prev, n=nxt, s=patch, a=amap:
               motion.motion_token_weights_triton(p, n, s, anomaly_map=a),
               lambda p=prev, n=nxt, s=patch, a=amap:
               motion.motion_token_weights_reference(p, n, s, anomaly_map=a),
               1e-5)
        yield (f"{preset} gradient {H}x{W} B={batch}",
               lambda p=prev, n=nxt: motion.motion_gradient_triton(p, n),
               lambda p=prev, n=nxt: motion.motion_gradient_reference(p, n),
               1e-6)


def smoothing_cases(kernel_name: str, presets: list[str], batch: int, device):
    import torch

    from aedfast.kernels import smoothing, temporal
    from aedfast.model import get_preset

    frames = 12 if device.type == "cpu" else 200
    window = (9, 9, 9)
    seen = set()
    for preset in presets:
        cfg = get_preset(preset)
        for kind, (h, w) in (("tokens", cfg.grid), ("pixels", cfg.img_size)):
            if (h, w) in seen:
                continue
            seen.add((h, w))
            g = torch.Generator().manual_seed(h * w)
            lengths = torch.tensor([frames, frames // 2 + 1]).to(device)
            maps = torch.randn(int(lengths.sum()), h, w, generator=g).to(device)
            name = f"{kind} {h}x{w}, videos of {lengths.tolist()} frames"
            if kernel_name == "_filter_max_kernel":
                yield (name + f", window {window}",
                       lambda m=maps, n=lengths:
                       smoothing.filter_frame_max_triton(m, n, window, "box"),
                       lambda m=maps, n=lengths:
                       smoothing.filter_frame_max_reference(m, n, window, "box"),
                       1e-4)
            elif kind == "tokens":
                scores = maps.amax(dim=(1, 2))
                for protocol in ("centered", "official"):
                    yield (f"{int(lengths.sum())} frame scores, support 37, {protocol}",
                           lambda s=scores, n=lengths, p=protocol:
                           temporal.temporal_gaussian_triton(s, n, 37, 11.0, p),
                           lambda s=scores, n=lengths, p=protocol:
                           temporal.temporal_gaussian_reference(s, n, 37, 11.0, p),
                           1e-5)


CHECKS: dict[str, Callable] = {
    "_qkv_kernel": cvt_cases,
    "_out_mlp_kernel": cvt_cases,
    "_motion_kernel": motion_cases,
    "_motion_rows_kernel": motion_cases,
    "_filter_max_kernel": smoothing_cases,
    "_temporal_kernel": smoothing_cases,
}


def autotuned_kernels() -> list[tuple[str, object]]:
    """(name, autotuner) of every @triton.autotune kernel in aedfast.kernels' modules."""
    from triton.runtime.autotuner import Autotuner

    from aedfast.kernels import cvt, motion, smoothing, temporal

    return [(name, obj) for mod in (cvt, motion, smoothing, temporal)
            for name, obj in vars(mod).items() if isinstance(obj, Autotuner)]


def unfit(e: Exception) -> bool:
    """The errors the autotuner treats as "this entry does not fit here" (skipped)."""
    return type(e).__name__ in ("OutOfResources", "PTXASError", "CompileTimeAssertionFailure")


def check_case(name: str, kernel, case: tuple, fits: dict, failures: list, device_name) -> None:
    """Every entry of `kernel` alone on one case against the reference; rows recorded."""
    import torch

    from bench.common import record

    label_case, fast, reference, tol = case
    with torch.no_grad(), torch.backends.cudnn.flags(enabled=True, allow_tf32=False):
        want = reference()  # float32 convolutions in full precision on a GPU
    for cfg in list(kernel.configs):
        label = config_label(cfg)
        row = {"suite": "autotune", "kernel": name, "config": label, "case": label_case,
               "tol": tol}
        t0 = time.perf_counter()
        try:
            with pinned(kernel, cfg), torch.no_grad():
                err = rel_err(fast(), want)
            status = "ok" if err <= tol else "WRONG"
            row["rel_err"] = err
            fits[label] = True
        except Exception as e:
            status = "unfit" if unfit(e) else "ERROR"
            row["error"] = f"{type(e).__name__}: {e}"[:300]
        row.update(status=status, seconds=round(time.perf_counter() - t0, 2),
                   device=device_name)
        record("autotune", row)
        print(f"{status:5s} {name} [{label}] {label_case}: "
              + (f"rel err {row['rel_err']:.2e} (tol {tol:g})" if "rel_err" in row
                 else row["error"]), flush=True)
        if status in ("WRONG", "ERROR"):
            failures.append(f"{name} [{label}] {label_case}: {status}")


def main(argv: list[str] | None = None) -> int:
    uncut_autotune_lists()
    from bench.common import REHEARSE, bench_device, device_info

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--presets", default="tiny" if REHEARSE else "avenue,shanghaitech")
    ap.add_argument("--batch", type=int, default=1 if REHEARSE else 4)
    args = ap.parse_args(argv)
    presets = [p for p in args.presets.split(",") if p]
    device = bench_device()
    if device.type != "cuda" and os.environ.get("TRITON_INTERPRET") != "1":
        print("autotune check: needs CUDA, or TRITON_INTERPRET=1 on the CPU")
        return 2
    device_name = device_info(device).get("name")
    failures: list[str] = []
    kernels = autotuned_kernels()
    print(f"{len(kernels)} autotuned kernels: "
          + ", ".join(f"{n} ({len(k.configs)} entries)" for n, k in kernels))
    plans = []  # (name, kernel, its cases (a generator), which entries ran)
    for name, kernel in kernels:
        if name in CHECKS:
            cases = CHECKS[name](name, presets, args.batch, device)
            plans.append((name, kernel, cases, {config_label(c): False for c in kernel.configs}))
        else:
            failures.append(f"{name}: no correctness check in bench/autotune_check.py")
            print(f"FAIL {failures[-1]}")
    # first every kernel's first case (each entry once), then the other cases: a run cut at
    # its time limit has then checked every entry of as many kernels as it could
    for name, kernel, cases, fits in plans:
        first = next(cases, None)
        if first is None:
            failures.append(f"{name}: no case at presets {presets}")
            continue
        check_case(name, kernel, first, fits, failures, device_name)
    for name, kernel, cases, fits in plans:
        for case in cases:
            check_case(name, kernel, case, fits, failures, device_name)
    for name, _, _, fits in plans:
        for label in (label for label, ok in fits.items() if not ok):
            print(f"NOTE {name} [{label}]: fits no case here, so it was not checked (nor can "
                  "the autotuner pick it at these shapes)")
    print(f"autotune check: {len(failures)} failure(s)"
          + (": " + "; ".join(failures) if failures else ""))
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
