"""``train-demo``: train (or resume) the embedded demo DDPM on procedural faces."""

from __future__ import annotations

import argparse
from pathlib import Path

from .common import add_threads, apply_threads, check_common


def register(sub) -> None:
    t = sub.add_parser("train-demo", help="train (or resume) the embedded demo DDPM on procedural faces")
    t.add_argument("--run-dir", default="runs/demo", help="folder for checkpoints and logs (resumes from it)")
    t.add_argument("--steps", type=int, default=12000)
    t.add_argument("--batch", type=int, default=64)
    t.add_argument("--lr", type=float, default=3e-4)
    t.add_argument("--seed", type=int, default=0)
    t.add_argument("--schedule", choices=["scaled_linear", "linear"], default="scaled_linear",
                   help="scaled_linear: beta 0.00085..0.012 (the embedded model); linear: 1e-4..0.02")
    t.add_argument("--skip-drop", dest="skip_drop", type=float, default=0.5,
                   help="share of the batch whose low-resolution skips are zeroed (so that h carries more)")
    t.add_argument("--skip-drop-size", dest="skip_drop_size", type=int, default=16,
                   help="skips at this resolution (px) or below are the ones dropped")
    t.add_argument("--snr-weight-cap", dest="snr_weight_cap", type=float, default=20.0,
                   help="loss weight clamp(1/SNR, 1, cap) for the highest noise levels; 0 = plain eps loss")
    t.add_argument("--init-from", dest="init_from", default=None,
                   help="start a new run from the EMA weights of another run's last.pt")
    add_threads(t)
    t.add_argument("--export", default=None, help="write the EMA weights to this .safetensors when done")
    t.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ..demo.train import TrainSettings, export, train

    check_common(args)
    apply_threads(args)
    settings = TrainSettings(steps=args.steps, batch=args.batch, lr=args.lr, seed=args.seed,
                             beta_schedule=args.schedule, skip_drop=args.skip_drop, skip_drop_size=args.skip_drop_size,
                             snr_weight_cap=args.snr_weight_cap, init_from=args.init_from or "",
                             **({"beta_start": 1e-4, "beta_end": 0.02} if args.schedule == "linear" else {}))
    ckpt = train(Path(args.run_dir), settings)
    if args.export:
        print(f"wrote {export(ckpt, Path(args.export))}")
    return 0
