"""``demo-directions``: make the directions shipped for the embedded demo model."""

from __future__ import annotations

import argparse
from pathlib import Path

from .common import add_threads, apply_threads, check_common


def register(sub) -> None:
    from ..demo.demo import DEMO_ROWS

    dd = sub.add_parser("demo-directions", help="make the directions shipped for the embedded demo model")
    dd.add_argument("--out-dir", dest="out_dir", default=None, help="default: the package's data/directions")
    dd.add_argument("--row", action="append", default=None, choices=[r.name for r in DEMO_ROWS],
                    help="make only this direction (repeat); default: all")
    add_threads(dd)
    dd.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ..demo.demo import demo_directions_dir, make_demo_directions

    check_common(args)
    apply_threads(args)
    make_demo_directions(Path(args.out_dir) if args.out_dir else demo_directions_dir(), rows=args.row)
    return 0
