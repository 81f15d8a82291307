"""``train-tiny-clip``: train the demo world's tiny CLIP on procedural faces and their captions."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from .common import add_threads, apply_threads, check_common


def register(sub) -> None:
    tc = sub.add_parser("train-tiny-clip", help="train the demo world's tiny CLIP on procedural faces and captions")
    tc.add_argument("--out", default="hspace_core/data/tiny_clip", help="open_clip folder to write")
    tc.add_argument("--steps", type=int, default=2000)
    tc.add_argument("--batch", type=int, default=256)
    tc.add_argument("--seed", type=int, default=0)
    add_threads(tc)
    tc.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ..demo.clip_world import TinyClipSettings, evaluate, load_tiny_clip, train_tiny_clip

    check_common(args)
    apply_threads(args)
    out = Path(args.out)
    train_tiny_clip(out, TinyClipSettings(steps=args.steps, batch=args.batch, seed=args.seed),
                    log=lambda m: print(m, file=sys.stderr, flush=True))
    report = evaluate(load_tiny_clip(out))
    (out / "zero_shot.json").write_text(json.dumps(report, indent=2) + "\n")
    print(json.dumps(report, indent=2))
    return 0
