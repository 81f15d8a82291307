"""``invert``: invert images and write the inversion file, checked by regenerating them at strength 0."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from .common import (StepProgress, add_override_args, add_threads, apply_threads, at_least, check_common, check_out,
                     overrides)
from .edit import SIZE_POLICIES


def register(sub) -> None:
    iv = sub.add_parser("invert", help="invert images and write the inversion file (checked by regenerating them)")
    iv.add_argument("--model", required=True, help="checkpoint file or diffusers folder")
    iv.add_argument("--image", required=True, action="append", help="input image (repeat for a batch)")
    iv.add_argument("--method", choices=["ddim", "ddpm"], default="ddim",
                    help="ddim: deterministic, x_T; ddpm: edit-friendly (Huberman-Spiegelglas et al.), one noise "
                         "map per step (steps x image size x 4 bytes per image)")
    iv.add_argument("--steps", type=int, default=40)
    iv.add_argument("--seed", type=int, default=0, help="of the ddpm method's draws of x_t")
    iv.add_argument("--size-policy", dest="size_policy", default="resize_crop", choices=SIZE_POLICIES)
    iv.add_argument("--device", default="cpu")
    add_threads(iv)
    iv.add_argument("--out", required=True, help="output inversion file (.safetensors)")
    iv.add_argument("--overwrite", action="store_true")
    add_override_args(iv)
    iv.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ..editing import edit
    from ..images import load_image
    from ..inversion import invert, invert_ddpm, save_inversion
    from ..loading import load_model

    check_common(args)
    at_least(args.steps, 2, "--steps")
    at_least(args.seed, 0, "--seed")
    out = Path(args.out)
    check_out(out, ".safetensors", args.overwrite)
    apply_threads(args)
    images = [load_image(p) for p in args.image]
    model = load_model(args.model, **overrides(args))
    model.to(args.device)
    if args.method == "ddpm":
        inv = invert_ddpm(model, images, steps=args.steps, seed=args.seed, size_policy=args.size_policy,
                          callback=StepProgress("invert (ddpm)"))
    else:
        inv = invert(model, images, steps=args.steps, size_policy=args.size_policy, callback=StepProgress("invert"))
    rec = edit(model, inv, None, 0.0, callback=StepProgress("check: regenerate")).images[:, 0]
    err = float((rec - inv.x_0.to(rec.device)).abs().max())
    save_inversion(inv, out, overwrite=args.overwrite)
    size = out.stat().st_size / 2**20
    print(f"wrote {out} ({args.method}, {inv.steps} steps, {inv.x_0.shape[0]} image(s), {size:.1f} MiB); "
          f"strength-0 regeneration: max |error| {err:.2e} (images in [-1, 1])", file=sys.stderr)
    return 0
