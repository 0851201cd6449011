"""The `aedfast train` command: its arguments and the run they ask for."""

from __future__ import annotations

import argparse
from pathlib import Path

from ..anomalies import check_size_range
from .loop import train

__all__ = ["add_train_arguments", "run_from_args"]


def _size_range(text: str) -> tuple[float, float]:
    """"LO,HI" -> (lo, hi), checked by `check_size_range` (argparse reports its message)."""
    try:
        return check_size_range(text.split(","))
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e)) from None


def add_train_arguments(p: argparse.ArgumentParser) -> None:
    """Arguments of `aedfast train` (the caller adds --quiet and --json)."""
    p.add_argument("data_root", metavar="DATA_ROOT", help="data set root folder")
    p.add_argument("--dataset", default="auto",
                   help="layout: avenue, shanghaitech, ped2, official, folder, auto (default)")
    p.add_argument("--preset", default="tiny", help="model preset: tiny (default), avenue, "
                   "shanghaitech")
    p.add_argument("--out", "-o", default="aedfast_run", help="output folder")
    p.add_argument("--name", help="final checkpoint name (OUT/NAME.safetensors; default "
                   "aed_<preset>)")
    g = p.add_mutually_exclusive_group()
    g.add_argument("--epochs", type=float, help="epochs in all (student_fraction go to stage 2)")
    g.add_argument("--steps", type=int, help="steps in all (student_fraction go to stage 2)")
    p.add_argument("--teacher-epochs", type=float, help="stage 1 length in epochs")
    p.add_argument("--student-epochs", type=float, help="stage 2 length in epochs")
    p.add_argument("--teacher-steps", type=int, help="stage 1 length in steps")
    p.add_argument("--student-steps", type=int, help="stage 2 length in steps")
    p.add_argument("--student-fraction", type=float, default=0.5,
                   help="share of --epochs/--steps for the student stage (default 0.5)")
    p.add_argument("--batch-size", type=int, help="samples per step and process")
    p.add_argument("--lr", type=float, help="learning rate (AdamW)")
    p.add_argument("--weight-decay", type=float, default=0.05)
    p.add_argument("--warmup-steps", type=int)
    p.add_argument("--lr-schedule", choices=["constant", "cosine"])
    p.add_argument("--clip-grad", type=float, default=1.0, help="max gradient norm (0: off)")
    p.add_argument("--cls-weight", type=float, default=1.0, help="weight of the cls-head BCE")
    p.add_argument("--anomalies", default="procedural",
                   help="synthetic anomaly source: procedural (default), shapes, cutouts, none, "
                   "or a folder of object sequences (UBnormal or frames/+masks/ per object)")
    p.add_argument("--anomaly-prob", type=float, default=0.25)
    p.add_argument("--anomaly-size", type=_size_range, default=(0.15, 0.5), metavar="LO,HI",
                   help="pasted objects' height range as fractions of the frame height "
                        "(default 0.15,0.5)")
    p.add_argument("--motion-strength", type=float, default=1.0,
                   help="motion weighting of the loss: token weights (1-s)/L + s * motion "
                        "weights (1: the paper's, default; 0: uniform)")
    p.add_argument("--photometric", type=float, default=0.0, metavar="SIGMA",
                   help="lighting jitter of training samples: each frame's gain x "
                        "exp(N(0, SIGMA)), one shared gain exp(N(0, 2 SIGMA)) (default 0: off)")
    p.add_argument("--no-median", action="store_true",
                   help="motion gradients without the 3x3 median filter")
    p.add_argument("--streams", type=int, default=8, help="data streams per process")
    p.add_argument("--workers", type=int, help="data loading workers per process")
    p.add_argument("--pool-memory", type=float, default=2.0,
                   help="GiB of decoded frames held per process")
    p.add_argument("--allow-mixed-sizes", action="store_true",
                   help="accept training videos of different resolutions")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", help="cuda, cuda:1, cpu (default: cuda when available)")
    p.add_argument("--no-amp", action="store_true", help="no bf16 autocast on the GPU")
    cg = p.add_mutually_exclusive_group()
    cg.add_argument("--compile", dest="compile", action="store_true", default=None,
                    help="torch.compile the training step (default on CUDA)")
    cg.add_argument("--no-compile", dest="compile", action="store_false")
    p.add_argument("--checkpoint-every", type=int, help="steps between checkpoints")
    p.add_argument("--log-every", type=int, help="steps between log lines")
    p.add_argument("--resume", action="store_true", help="continue OUT/checkpoint.pt")


def run_from_args(args: argparse.Namespace) -> Path:
    """Run `train` from parsed `aedfast train` arguments; returns the final checkpoint path."""
    overrides = dict(
        preset=args.preset, name=args.name, epochs=args.epochs, steps=args.steps,
        teacher_epochs=args.teacher_epochs, student_epochs=args.student_epochs,
        teacher_steps=args.teacher_steps, student_steps=args.student_steps,
        student_fraction=args.student_fraction, batch_size=args.batch_size, lr=args.lr,
        weight_decay=args.weight_decay, warmup_steps=args.warmup_steps,
        lr_schedule=args.lr_schedule, clip_grad=args.clip_grad, cls_weight=args.cls_weight,
        anomalies=args.anomalies, anomaly_prob=args.anomaly_prob, anomaly_size=args.anomaly_size,
        motion_strength=args.motion_strength, photometric=args.photometric,
        median=not args.no_median,
        streams=args.streams, workers=args.workers, pool_memory=args.pool_memory,
        allow_mixed_sizes=args.allow_mixed_sizes, seed=args.seed, device=args.device,
        amp=False if args.no_amp else None, compile=args.compile, log_every=args.log_every,
    )
    if args.checkpoint_every is not None:
        overrides["checkpoint_every"] = args.checkpoint_every
    return train(args.data_root, dataset=args.dataset, out=args.out, resume=args.resume,
                 progress=not getattr(args, "quiet", False), **overrides)
