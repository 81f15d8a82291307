"""``info CHECKPOINT``: family, configuration, resolution, h shape and size of a checkpoint, as JSON."""

from __future__ import annotations

import argparse

from .common import add_override_args, check_common, overrides


def register(sub) -> None:
    i = sub.add_parser("info", help="print family, config, resolution, h shape and size of a checkpoint as JSON")
    i.add_argument("checkpoint", help="weights file (.safetensors .pt .pth .ckpt .bin) or diffusers folder")
    add_override_args(i)
    i.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import json

    from ..loading import load_model

    check_common(args)
    model = load_model(args.checkpoint, **overrides(args))
    print(json.dumps(model.info(), indent=2, default=list))
    return 0
