"""FLOPs of one forward pass per frame, per preset, counted by torch's FlopCounterMode on the
eager model (the fused backends' custom ops are opaque to the counter), and the share of the
patch embedding that the fast backends skip (the masked tokens').
Usage: python -m bench.flops  (writes $AEDFAST_BENCH_OUT/flops.jsonl when that is set)"""

from __future__ import annotations

import torch
from torch.utils.flop_counter import FlopCounterMode

from aedfast.model import AEDMAE
from bench.common import record


def main() -> None:
    for preset in ("avenue", "shanghaitech", "tiny"):
        m = AEDMAE.from_preset(preset).eval()
        c = m.config
        x = torch.randn(1, 9, *c.img_size)
        with FlopCounterMode(display=False) as fc, torch.no_grad():
            m(x)
        total = fc.get_total_flops()
        embed = 2 * c.num_tokens * c.embed_dim * c.in_chans * c.patch_size**2
        skipped = embed * c.mask_ratio
        row = {"suite": "flops", "preset": preset, "eager_GFLOP_per_frame": round(total / 1e9, 3),
               "fast_GFLOP_per_frame": round((total - skipped) / 1e9, 3)}
        record("flops", row)
        print(row)


if __name__ == "__main__":
    main()
