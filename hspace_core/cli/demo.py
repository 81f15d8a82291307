"""``demo``: the embedded demo model edits faces with its shipped directions (the README's main job)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from .common import add_threads, apply_threads, check_common


def register(sub) -> None:
    from ..demo.demo import DEFAULT_ROWS, DEMO_ROWS

    dm = sub.add_parser("demo", help="edit faces with the shipped h-space directions (supervised and text-trained) "
                                     "on the embedded demo model")
    dm.add_argument("--out", default="demo_strip.png")
    dm.add_argument("--seed", type=int, default=0)
    dm.add_argument("--row", action="append", choices=[r.name for r in DEMO_ROWS],
                    help="directions to show (repeat); default " + " ".join(DEFAULT_ROWS))
    dm.add_argument("--find", action="store_true",
                    help="find the directions on the fly (controlled pairs, CLIP training) instead of loading "
                         "the shipped ones (a few minutes)")
    add_threads(dm)
    dm.add_argument("--report", default=None, help="also write the readings and timings as JSON")
    dm.set_defaults(func=run_demo)


def run_demo(args: argparse.Namespace) -> int:
    import json

    from ..demo.demo import DEFAULT_ROWS, run_demo

    check_common(args)
    apply_threads(args)
    report = run_demo(Path(args.out), seed=args.seed, rows=args.row or DEFAULT_ROWS, find=args.find,
                      progress=lambda line: print(line, file=sys.stderr, flush=True))
    if args.report:
        Path(args.report).write_text(json.dumps(report, indent=2))
    return 0
