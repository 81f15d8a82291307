"""``train-probe``: train the attribute probe, the demo world's measuring instrument."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from .common import check_common


def register(sub) -> None:
    pr = sub.add_parser("train-probe", help="train the attribute probe (the measuring instrument of the demo world)")
    pr.add_argument("--out", default="hspace_core/data/probe.safetensors")
    pr.add_argument("--report", default="hspace_core/data/probe_report.json", help="write the held-out report here")
    pr.add_argument("--steps", type=int, default=2000)
    pr.add_argument("--batch", type=int, default=128)
    pr.add_argument("--seed", type=int, default=0)
    # the probe's weights are reproducible for a seed and a thread count, so the count is part of the recipe
    pr.add_argument("--threads", type=int, default=2, help="CPU threads (part of the recipe: default 2)")
    pr.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ..demo.probe import train_probe

    check_common(args)
    report = train_probe(Path(args.out), steps=args.steps, batch=args.batch, seed=args.seed, threads=args.threads)
    if args.report:
        Path(args.report).write_text(json.dumps(report, indent=2))
    print(json.dumps(report, indent=2))
    return 0
