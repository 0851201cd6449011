"""FLOPs of one forward pass per frame, per preset, counted by torch's FlopCounterMode on the
eager model (the fused backends' custom ops are opaque to the counter), the share of the
patch embedding that the fast backends skip (the masked tokens'), and the attention's two
matrix products (4 * T^2 * D per block: encoder blocks on 1 + kept tokens, decoder and
student blocks on 1 + L), the part that runs in scaled_dot_product_attention.
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
        t_enc = 1 + int(c.num_tokens * (1 - c.mask_ratio))
        t_dec = 1 + c.num_tokens
        attn = (4 * t_enc**2 * c.embed_dim * c.depth
                + 4 * t_dec**2 * c.decoder_embed_dim * (c.decoder_depth + 1))
        row = {"suite": "flops", "preset": preset, "eager_GFLOP_per_frame": round(total / 1e9, 3),
               "fast_GFLOP_per_frame": round((total - skipped) / 1e9, 3),
               "attention_GFLOP_per_frame": round(attn / 1e9, 3),
               "attention_share_fast": round(attn / (total - skipped), 3)}
        record("flops", row)
        print(row)


if __name__ == "__main__":
    main()
