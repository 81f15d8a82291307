"""Command line: ``python -m hspace_core {info,train-demo,...}``.

Strings and argparse live here only; each command builds the engine's dataclasses and calls the
same functions the ComfyUI nodes call. Bad input ends with a one-line message and exit status 2.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from .errors import HSpaceError


def _cmd_info(args: argparse.Namespace) -> int:
    import json

    from .loading import load_model

    overrides = {k: getattr(args, k) for k in ("image_size", "num_heads", "num_head_channels", "schedule",
                                                "num_timesteps")}
    model = load_model(args.checkpoint, **overrides)
    print(json.dumps(model.info(), indent=2, default=list))
    return 0


def _add_override_args(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("what the weights do not store")
    g.add_argument("--image-size", dest="image_size", type=int, default=None)
    g.add_argument("--num-heads", dest="num_heads", type=int, default=None)
    g.add_argument("--num-head-channels", dest="num_head_channels", type=int, default=None)
    g.add_argument("--schedule", choices=["linear", "cosine"], default=None)
    g.add_argument("--num-timesteps", dest="num_timesteps", type=int, default=None)


def _cmd_train_demo(args: argparse.Namespace) -> int:
    import torch

    from .demo.train import TrainSettings, export, train

    torch.set_num_threads(args.threads)
    settings = TrainSettings(steps=args.steps, batch=args.batch, lr=args.lr, seed=args.seed)
    ckpt = train(Path(args.run_dir), settings)
    if args.export:
        print(f"wrote {export(ckpt, Path(args.export))}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m hspace_core",
                                description="h-space (Asyrp) editing of unconditional pixel DDPMs")
    sub = p.add_subparsers(dest="command", required=True)

    i = sub.add_parser("info", help="print family, config, resolution, h shape and size of a checkpoint as JSON")
    i.add_argument("checkpoint", help="weights file (.safetensors .pt .pth .ckpt .bin) or diffusers folder")
    _add_override_args(i)
    i.set_defaults(func=_cmd_info)

    t = sub.add_parser("train-demo", help="train (or resume) the embedded demo DDPM on procedural faces")
    t.add_argument("--run-dir", default="runs/demo", help="folder for checkpoints and logs (resumes from it)")
    t.add_argument("--steps", type=int, default=12000)
    t.add_argument("--batch", type=int, default=64)
    t.add_argument("--lr", type=float, default=2e-4)
    t.add_argument("--seed", type=int, default=0)
    t.add_argument("--threads", type=int, default=2)
    t.add_argument("--export", default=None, help="write the EMA weights to this .safetensors when done")
    t.set_defaults(func=_cmd_train_demo)
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except HSpaceError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
