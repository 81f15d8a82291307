"""``edit``: invert images (or read an inversion file) and edit them with h-space directions; writes a strip
PNG (per input row: the input, its reconstruction, each strength)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from ..errors import HSpaceError
from .common import (StepProgress, add_override_args, add_threads, add_units, apply_threads, at_least, check_common,
                     check_out, finite, overrides, say)

TABLES = ["celeba", "afhq", "church", "bedroom", "metface"]
VARIANTS = ["asymmetric", "symmetric", "eps_shift", "xt_shift"]
SIZE_POLICIES = ["resize_crop", "resize", "error"]


def register(sub) -> None:
    e = sub.add_parser("edit", help="invert images and edit them with h-space directions; writes a strip PNG")
    e.add_argument("--model", required=True, help="checkpoint file or diffusers folder")
    e.add_argument("--image", action="append", help="input image (repeat for a batch)")
    e.add_argument("--inversion", default=None,
                   help="an inversion file (python -m hspace_core invert) instead of images")
    e.add_argument("--inversion-method", dest="inversion_method", choices=["ddim", "ddpm"], default="ddim",
                   help="ddim: deterministic inversion to x_T; ddpm: edit-friendly, exact noise maps")
    e.add_argument("--t-skip", dest="t_skip", type=int, default=0,
                   help="with a ddpm inversion: start this many steps below the top of the grid")
    e.add_argument("--direction", required=True, action="append",
                   help="direction file (.safetensors) or official Asyrp .pth (repeat to combine)")
    e.add_argument("--coef", type=float, action="append", help="coefficient of each --direction (default 1)")
    add_units(e)
    e.add_argument("--strength", type=float, action="append", default=None,
                   help="edit strength (repeat for a sweep; negative reverses the edit); default: a sweep over the "
                        "direction's usable range (its calibration)")
    e.add_argument("--t-edit", dest="t_edit", type=int, default=500, help="edit while t >= t_edit (default 500)")
    e.add_argument("--t-boost", dest="t_boost", type=int, default=None,
                   help="stochastic quality-boosting steps below this t (default 0: none)")
    e.add_argument("--table", choices=TABLES,
                   help="take t_edit / t_boost from the official LPIPS table of this data set")
    e.add_argument("--text-cosine", dest="text_cosine", type=float, default=1.0,
                   help="cosine of the source/target texts, scales the table's or the measured t_edit threshold")
    e.add_argument("--measure", action="store_true", help="measure t_edit / t_boost on the model's own samples")
    e.add_argument("--from-direction", dest="from_direction", action="store_true",
                   help="take t_edit from the one --direction's record (its t_edit)")
    e.add_argument("--steps", type=int, default=None, help="generation steps (default: the inversion's)")
    e.add_argument("--inversion-steps", dest="inversion_steps", type=int, default=40)
    e.add_argument("--eta", type=float, default=1.0, help="eta of the quality-boosting steps")
    e.add_argument("--clip-x0", dest="clip_x0", action="store_true",
                   help="clamp predicted x0 to [-1, 1] at every step (off in Asyrp; see edit())")
    e.add_argument("--seed", type=int, default=0)
    e.add_argument("--variant", default="asymmetric", choices=VARIANTS)
    e.add_argument("--size-policy", dest="size_policy", default="resize_crop", choices=SIZE_POLICIES)
    e.add_argument("--device", default="cpu")
    add_threads(e)
    e.add_argument("--out", required=True, help="output strip .png")
    add_override_args(e)
    e.set_defaults(func=run)


def check(args: argparse.Namespace) -> None:
    check_common(args)
    if bool(args.image) == bool(args.inversion):
        raise HSpaceError("give input images (--image) or an inversion file (--inversion), not both")
    at_least(args.steps, 2, "--steps")
    at_least(args.inversion_steps, 2, "--inversion-steps")
    at_least(args.t_skip, 0, "--t-skip")
    at_least(args.t_edit, 0, "--t-edit")
    at_least(args.t_boost, 0, "--t-boost")
    finite(args.strength, "--strength")
    finite(args.coef, "--coef")
    if not 0.0 <= args.eta <= 1.0:
        raise HSpaceError(f"--eta must lie in [0, 1], got {args.eta}")
    if not 0.0 < args.text_cosine <= 1.0:
        raise HSpaceError(f"--text-cosine must lie in (0, 1], got {args.text_cosine}")
    if args.coef and len(args.coef) != len(args.direction):
        raise HSpaceError(f"give one --coef per --direction ({len(args.direction)}), got {len(args.coef)}")
    if args.from_direction and len(args.direction) != 1:
        raise HSpaceError("--from-direction takes the interval of exactly one --direction")
    if args.t_skip and args.inversion_method != "ddpm" and not args.inversion:
        raise HSpaceError("--t-skip needs an edit-friendly inversion (--inversion-method ddpm or a ddpm --inversion)")
    check_out(Path(args.out), ".png", overwrite=True)


def combined(directions, coefs, units: str):
    """The directions as one, their coefficients and the strengths counted in ``units``: calibrated units
    mix each at its calibrated unit (``mix_calibrated``)."""
    from ..directions.base import mix, mix_calibrated
    from ..directions.calibration import in_units

    if len(directions) == 1 and coefs[0] == 1.0:
        return in_units(directions[0], units, say)
    if units == "raw":
        return mix(list(zip(directions, coefs)))
    return in_units(mix_calibrated(list(zip(directions, coefs)), say=say), units, say)


def default_sweep(direction) -> list[float]:
    """Without --strength: the calibration's sweep (0 dropped: the strip shows the reconstruction)."""
    from ..directions.calibration import calibration_of

    cal = calibration_of(direction)
    if cal is None:
        raise HSpaceError("give --strength: the direction has no calibration to take a sweep from")
    return [s for s in cal.sweep(4) if s != 0] or [1.0]


def units_said(direction, units: str) -> str:
    from ..directions.calibration import calibration_of

    cal = calibration_of(direction)
    if units == "raw" or cal is None:
        return "raw units"
    usable = f", usable {cal.usable[0]:g} .. {cal.usable[1]:g}" if cal.usable else ""
    return f"calibrated units at t={cal.t}{usable}"


def interval(args: argparse.Namespace, model, directions):
    from ..interval import choose_interval

    source = "table" if args.table else "measure" if args.measure else "direction" if args.from_direction \
        else "explicit"
    return choose_interval(source, model, t_edit=args.t_edit, t_boost=args.t_boost,
                           direction=directions[0] if directions else None, dataset=args.table,
                           text_cosine=args.text_cosine, steps=args.steps or 40,
                           callback=StepProgress("measure interval"))


def run(args: argparse.Namespace) -> int:
    from ..directions.io import load_direction
    from ..editing import edit
    from ..images import load_image, strip
    from ..inversion import invert, invert_ddpm, load_inversion
    from ..loading import load_model

    check(args)  # before any file is read, any network runs
    out = Path(args.out)
    apply_threads(args)
    directions = [load_direction(p) for p in args.direction]
    images = [load_image(p) for p in args.image] if args.image else None
    stored = load_inversion(args.inversion) if args.inversion else None
    model = load_model(args.model, **overrides(args))
    model.to(args.device)
    coefs = args.coef or [1.0] * len(directions)
    for d in directions:
        d.check_fits(model)
    chosen = interval(args, model, directions)
    direction = combined(directions, coefs, args.units)
    strengths = list(args.strength) if args.strength else default_sweep(direction)
    sweep = strengths if 0.0 in strengths else [0.0] + strengths
    if stored is not None:
        inv = stored
    elif args.inversion_method == "ddpm":
        inv = invert_ddpm(model, images, steps=args.inversion_steps, seed=args.seed, size_policy=args.size_policy,
                          callback=StepProgress("invert (ddpm)"))
    else:
        inv = invert(model, images, steps=args.inversion_steps, size_policy=args.size_policy,
                     callback=StepProgress("invert"))
    for what in sorted(set(inv.preprocessing)):
        print(f"input: {what}", file=sys.stderr)
    result = edit(model, inv, direction, sweep, t_edit=chosen, steps=args.steps,
                  eta=args.eta, seed=args.seed, variant=args.variant, clip_x0=args.clip_x0, t_skip=args.t_skip,
                  callback=StepProgress("edit"))
    rows = []
    for b in range(inv.x_0.shape[0]):
        edited = [result.images[b, sweep.index(s)] for s in strengths]
        rows.append([inv.x_0[b], result.images[b, sweep.index(0.0)], *edited])
    tmp = out.with_name(f".{out.name}.tmp.png")
    strip(rows).save(tmp)
    tmp.replace(out)
    print(f"wrote {out}: per input row: input, reconstruction, strengths {strengths} "
          f"({units_said(direction, args.units)}; t_edit {chosen.t_edit}, t_boost {chosen.t_boost}; {chosen.source})",
          file=sys.stderr)
    return 0
