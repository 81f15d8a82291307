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


def _at_least(value, low: int, flag: str) -> None:
    """Cheap arguments are checked before any file is read or any network runs."""
    if value is not None and value < low:
        raise HSpaceError(f"{flag} must be at least {low}, got {value}")


def _finite(values, flag: str) -> None:
    import math

    bad = [v for v in values or [] if not math.isfinite(v)]
    if bad:
        raise HSpaceError(f"{flag} must be finite numbers, got {bad[0]}")


def _check_common(args: argparse.Namespace) -> None:
    _at_least(getattr(args, "threads", None), 1, "--threads")
    for name in ("image_size", "num_heads", "num_head_channels"):
        _at_least(getattr(args, name, None), 1, "--" + name.replace("_", "-"))
    _at_least(getattr(args, "num_timesteps", None), 2, "--num-timesteps")


def _check_out(out: Path, suffix: str, overwrite: bool) -> None:
    if out.suffix.lower() != suffix:
        raise HSpaceError(f"{out}: the output must be a {suffix} file")
    if not out.parent.is_dir():
        raise HSpaceError(f"{out.parent}: no such folder for the output")
    if out.exists() and not overwrite:
        raise HSpaceError(f"{out}: already exists (use --overwrite to replace it)")


class _Progress:
    """A one-line progress display on stderr for the engine's per-step callbacks (``StepInfo``; the
    losses too for a CLIP training update)."""

    def __init__(self, label: str):
        self.label = label

    def __call__(self, info) -> None:
        end = "\n" if info.i + 1 == info.total else ""
        loss = f" image {info.image} loss {info.loss:.4f}" if hasattr(info, "loss") else ""
        print(f"\r{self.label}: step {info.i + 1}/{info.total} (t={info.t}){loss}", end=end, file=sys.stderr,
              flush=True)


def _interval(args: argparse.Namespace, model, directions):
    from .interval import choose_interval

    source = "table" if args.table else "measure" if args.measure else "direction" if args.from_direction \
        else "explicit"
    if args.from_direction and len(directions) != 1:
        raise HSpaceError("--from-direction takes the interval of exactly one --direction")
    return choose_interval(source, model, t_edit=args.t_edit, t_boost=args.t_boost,
                           direction=directions[0] if directions else None, dataset=args.table,
                           text_cosine=args.text_cosine, steps=args.steps or 40,
                           callback=_Progress("measure interval"))


def _check_edit_args(args: argparse.Namespace) -> None:
    _check_common(args)
    if bool(args.image) == bool(args.inversion):
        raise HSpaceError("give input images (--image) or an inversion file (--inversion), not both")
    _at_least(args.steps, 2, "--steps")
    _at_least(args.inversion_steps, 2, "--inversion-steps")
    _at_least(args.t_skip, 0, "--t-skip")
    _at_least(args.t_edit, 0, "--t-edit")
    _at_least(args.t_boost, 0, "--t-boost")
    _finite(args.strength, "--strength")
    _finite(args.coef, "--coef")
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
    _check_out(Path(args.out), ".png", overwrite=True)


def _cmd_edit(args: argparse.Namespace) -> int:
    import torch

    from .directions.io import load_direction
    from .editing import edit
    from .inversion import invert, invert_ddpm, load_inversion
    from .images import load_image, strip
    from .loading import load_model

    _check_edit_args(args)  # before any file is read, any network runs
    out = Path(args.out)
    torch.set_num_threads(args.threads)
    directions = [load_direction(p) for p in args.direction]
    images = [load_image(p) for p in args.image] if args.image else None
    stored = load_inversion(args.inversion) if args.inversion else None
    model = load_model(args.model, **{k: getattr(args, k) for k in ("image_size", "num_heads", "num_head_channels",
                                                                       "schedule", "num_timesteps")})
    model.to(args.device)
    coefs = args.coef or [1.0] * len(directions)
    for d in directions:
        d.check_fits(model)
    interval = _interval(args, model, directions)
    strengths = list(args.strength)
    sweep = strengths if 0.0 in strengths else [0.0] + strengths
    if stored is not None:
        inv = stored
    elif args.inversion_method == "ddpm":
        inv = invert_ddpm(model, images, steps=args.inversion_steps, seed=args.seed, size_policy=args.size_policy,
                          callback=_Progress("invert (ddpm)"))
    else:
        inv = invert(model, images, steps=args.inversion_steps, size_policy=args.size_policy,
                     callback=_Progress("invert"))
    for what in sorted(set(inv.preprocessing)):
        print(f"input: {what}", file=sys.stderr)
    result = edit(model, inv, list(zip(directions, coefs)), sweep, t_edit=interval, steps=args.steps,
                  eta=args.eta, seed=args.seed, variant=args.variant, clip_x0=args.clip_x0, t_skip=args.t_skip,
                  callback=_Progress("edit"))
    rows = []
    for b in range(inv.x_0.shape[0]):
        edited = [result.images[b, sweep.index(s)] for s in strengths]
        rows.append([inv.x_0[b], result.images[b, sweep.index(0.0)], *edited])
    tmp = out.with_name(f".{out.name}.tmp.png")
    strip(rows).save(tmp)
    tmp.replace(out)
    print(f"wrote {out}: per input row: input, reconstruction, strengths {strengths} "
          f"(t_edit {interval.t_edit}, t_boost {interval.t_boost}; {interval.source})", file=sys.stderr)
    return 0


FAILED_BASE = 100  # edit-folder's exit status when inputs failed: 100 + their number (up to 199)


def _cmd_edit_folder(args: argparse.Namespace) -> int:
    import torch

    from .directions.io import load_direction
    from .distributed import context
    from .folder_job import FolderJob, run_folder_job
    from .interval import choose_interval

    coefs = args.coef or [1.0] * len(args.direction)
    if len(coefs) != len(args.direction):
        raise HSpaceError(f"give one --coef per --direction ({len(args.direction)}), got {len(coefs)}")
    source = "table" if args.table else "direction" if args.from_direction else "explicit"
    if args.from_direction and len(args.direction) != 1:
        raise HSpaceError("--from-direction takes the interval of exactly one --direction")
    job = FolderJob(model=args.model, directions=tuple(zip(args.direction, coefs)), strengths=tuple(args.strength),
                    t_edit=args.t_edit, t_boost=args.t_boost or 0, steps=args.steps,
                    inversion_steps=args.inversion_steps, method=args.inversion_method, eta=args.eta, seed=args.seed,
                    size_policy=args.size_policy, variant=args.variant, batch=args.batch)
    job.check()  # before anything is read or computed
    if source != "explicit":
        interval = choose_interval(source, t_edit=args.t_edit, t_boost=args.t_boost,
                                   direction=load_direction(args.direction[0]) if args.from_direction else None,
                                   dataset=args.table, text_cosine=args.text_cosine)
        job = FolderJob(**{**job.__dict__, "t_edit": interval.t_edit, "t_boost": interval.t_boost})
    torch.set_num_threads(args.threads)
    ctx = context(args.device)
    try:
        report = run_folder_job(job, Path(args.input), Path(args.output), ctx=ctx,
                                keep_inversions=args.keep_inversions, restart=args.restart)
    finally:
        ctx.close()
    who = f"rank {ctx.rank}/{ctx.world}: " if ctx.world > 1 else ""
    print(f"{who}{report.inputs} inputs, {report.written} outputs written, {report.skipped} already done, "
          f"{len(report.failed)} failed, {report.seconds:.1f} s", file=sys.stderr)
    if ctx.main:
        for rel, why in sorted(report.failed.items()):
            print(f"failed: {rel}: {why}", file=sys.stderr)
    return FAILED_BASE + min(len(report.failed), 99) if report.failed else 0


def _cmd_invert(args: argparse.Namespace) -> int:
    import torch

    from .editing import edit
    from .images import load_image
    from .inversion import invert, invert_ddpm, save_inversion
    from .loading import load_model

    _check_common(args)
    _at_least(args.steps, 2, "--steps")
    _at_least(args.seed, 0, "--seed")
    out = Path(args.out)
    _check_out(out, ".safetensors", args.overwrite)
    torch.set_num_threads(args.threads)
    images = [load_image(p) for p in args.image]
    model = load_model(args.model, **{k: getattr(args, k) for k in ("image_size", "num_heads", "num_head_channels",
                                                                       "schedule", "num_timesteps")})
    model.to(args.device)
    if args.method == "ddpm":
        inv = invert_ddpm(model, images, steps=args.steps, seed=args.seed, size_policy=args.size_policy,
                          callback=_Progress("invert (ddpm)"))
    else:
        inv = invert(model, images, steps=args.steps, size_policy=args.size_policy, callback=_Progress("invert"))
    rec = edit(model, inv, None, 0.0, callback=_Progress("check: regenerate")).images[:, 0]
    err = float((rec - inv.x_0.to(rec.device)).abs().max())
    save_inversion(inv, out, overwrite=args.overwrite)
    size = out.stat().st_size / 2**20
    print(f"wrote {out} ({args.method}, {inv.steps} steps, {inv.x_0.shape[0]} image(s), {size:.1f} MiB); "
          f"strength-0 regeneration: max |error| {err:.2e} (images in [-1, 1])", file=sys.stderr)
    return 0


IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp", ".bmp")


def _image_set(paths: list[str], what: str):
    """Images from files and folders (folders: every image file in them, sorted by name)."""
    from .images import load_image

    files = []
    for p in paths or []:
        path = Path(p)
        if path.is_dir():
            files += sorted(f for f in path.iterdir() if f.suffix.lower() in IMAGE_SUFFIXES)
        else:
            files.append(path)
    if not files:
        raise HSpaceError(f"the {what} image set is empty")
    return [load_image(f) for f in files]


def _check_direction_args(args: argparse.Namespace) -> None:
    _check_out(Path(args.out), ".safetensors", args.overwrite)
    if args.method == "project":
        return
    _check_common(args)
    _at_least(args.steps, 2, "--steps")
    _at_least(args.t_edit, 0, "--t-edit")
    _at_least(getattr(args, "seed", None), 0, "--seed")
    _at_least(getattr(args, "component", None), 0, "--component")
    _at_least(getattr(args, "iterations", None), 1, "--iterations")
    _at_least(getattr(args, "t", None), 0, "--t")
    _at_least(getattr(args, "samples", None), 2 if args.method == "pca" else 1, "--samples")
    _finite([getattr(args, k) for k in ("lr", "clip_w", "l1_w") if hasattr(args, k)], "--lr, --clip-w and --l1-w")
    if args.method == "clip" and not Path(args.clip_weights).exists():
        raise HSpaceError(f"{args.clip_weights}: no such CLIP weights file or folder")


def _load_for_direction(args: argparse.Namespace, device: str):
    import torch

    from .loading import load_model

    torch.set_num_threads(args.threads)
    return load_model(args.model).to(device)


def _save(direction, args: argparse.Namespace) -> int:
    from .directions.io import save_direction

    path = save_direction(direction, Path(args.out), overwrite=args.overwrite)
    print(f"wrote {path} ({direction.info.name}; {direction.info.provenance.get('method')}, "
          f"strength unit {direction.info.strength_unit})", file=sys.stderr)
    return 0


def _cmd_direction(args: argparse.Namespace) -> int:
    _check_direction_args(args)  # before any file is read, any network runs
    if args.method == "project":
        from .directions.io import load_direction
        from .directions.project import project_off

        d = load_direction(args.direction)
        return _save(project_off(d, [load_direction(p) for p in args.off], joint=not args.one_at_a_time), args)
    from .distributed import Context, context

    ctx = context(args.device) if args.method in ("supervised", "clip") else Context(device=args.device)
    try:
        d = _find_direction(args, _load_for_direction(args, ctx.device), ctx)
        return _save(d, args) if ctx.main else 0  # every process holds the direction; the first writes it
    finally:
        ctx.close()


def _find_direction(args: argparse.Namespace, model, ctx):
    t_edit = args.t_edit
    if args.method == "supervised":
        from .discovery.supervised import classifier_normal, mean_difference

        pos, neg = _image_set(args.positive, "positive"), _image_set(args.negative, "negative")
        data = f"{', '.join(args.positive)} vs {', '.join(args.negative)}"
        if args.classifier:
            if ctx.world > 1:
                raise HSpaceError("the classifier normal runs in one process; without --classifier the mean "
                                  "difference is spread over the processes")
            d = classifier_normal(model, pos, neg, steps=args.steps, t_edit=t_edit, name=args.name or "supervised",
                                  data=data, callback=_Progress("record h"))
        else:
            d = mean_difference(model, pos, neg, steps=args.steps, t_edit=t_edit, name=args.name or "supervised",
                                data=data, callback=_Progress("record h"), ctx=ctx)
    elif args.method == "jacobian":
        from .discovery.jacobian import jacobian_directions
        from .images import load_image

        ds = jacobian_directions(model, load_image(args.image), args.component + 1, t=args.t, t_edit=t_edit,
                                 steps=args.steps, iterations=args.iterations, seed=args.seed,
                                 callback=_Progress("jacobian"))
        d = ds[args.component]
        print(f"component {args.component}: singular value {d.info.provenance['singular_value']:.4g} at t = "
              f"{d.info.provenance['t']}", file=sys.stderr)
    elif args.method == "pca":
        from .discovery.pca import pca_direction

        d = pca_direction(model, args.component, args.samples, steps=args.steps, t_edit=t_edit, seed=args.seed,
                          callback=_Progress("record h"))
    else:
        from .discovery.clip import ClipTrainSettings, train_clip_direction
        from .discovery.clip_model import load_clip

        clip = load_clip(args.clip_weights, args.clip_arch, device=args.device)
        images = _image_set(args.images, "training") if args.images else None
        settings = ClipTrainSettings(kind=args.kind, n_train_step=args.steps, t_edit=t_edit, lr=args.lr,
                                     n_iter=args.iterations, clip_w=args.clip_w, l1_w=args.l1_w, seed=args.seed,
                                     batch=args.batch)

        d = train_clip_direction(model, clip, args.source, args.target, images=images, n_samples=args.samples,
                                 settings=settings, name=args.name, callback=_Progress("train"), ctx=ctx)
    return d


def _cmd_demo(args: argparse.Namespace) -> int:
    import json

    import torch

    from .demo.demo import DEFAULT_ROWS, run_demo

    torch.set_num_threads(args.threads)
    report = run_demo(Path(args.out), seed=args.seed, rows=args.row or DEFAULT_ROWS, find=args.find,
                      progress=lambda line: print(line, file=sys.stderr, flush=True))
    if args.report:
        Path(args.report).write_text(json.dumps(report, indent=2))
    return 0


def _cmd_demo_directions(args: argparse.Namespace) -> int:
    import torch

    from .demo.demo import demo_directions_dir, make_demo_directions

    torch.set_num_threads(args.threads)
    make_demo_directions(Path(args.out_dir) if args.out_dir else demo_directions_dir(), rows=args.row)
    return 0


def _cmd_train_demo(args: argparse.Namespace) -> int:
    import torch

    from .demo.train import TrainSettings, export, train

    torch.set_num_threads(args.threads)
    settings = TrainSettings(steps=args.steps, batch=args.batch, lr=args.lr, seed=args.seed,
                             beta_schedule=args.schedule, skip_drop=args.skip_drop, skip_drop_size=args.skip_drop_size,
                             snr_weight_cap=args.snr_weight_cap, init_from=args.init_from or "",
                             **({"beta_start": 1e-4, "beta_end": 0.02} if args.schedule == "linear" else {}))
    ckpt = train(Path(args.run_dir), settings)
    if args.export:
        print(f"wrote {export(ckpt, Path(args.export))}")
    return 0


def _cmd_train_probe(args: argparse.Namespace) -> int:
    import json

    from .demo.probe import train_probe

    report = train_probe(Path(args.out), steps=args.steps, batch=args.batch, seed=args.seed, threads=args.threads)
    if args.report:
        Path(args.report).write_text(json.dumps(report, indent=2))
    print(json.dumps(report, indent=2))
    return 0


def _cmd_train_tiny_clip(args: argparse.Namespace) -> int:
    import json

    import torch

    from .demo.clip_world import TinyClipSettings, evaluate, load_tiny_clip, train_tiny_clip

    torch.set_num_threads(args.threads)
    out = Path(args.out)
    train_tiny_clip(out, TinyClipSettings(steps=args.steps, batch=args.batch, seed=args.seed),
                    log=lambda m: print(m, file=sys.stderr, flush=True))
    report = evaluate(load_tiny_clip(out))
    (out / "zero_shot.json").write_text(json.dumps(report, indent=2) + "\n")
    print(json.dumps(report, indent=2))
    return 0


def build_parser() -> argparse.ArgumentParser:
    from .demo.demo import DEFAULT_ROWS, DEMO_ROWS

    p = argparse.ArgumentParser(prog="python -m hspace_core",
                                description="h-space (Asyrp) editing of unconditional pixel DDPMs")
    sub = p.add_subparsers(dest="command", required=True)

    dm = sub.add_parser("demo", help="edit faces with the shipped h-space directions (supervised and text-trained) on the embedded demo model")
    dm.add_argument("--out", default="demo_strip.png")
    dm.add_argument("--seed", type=int, default=0)
    dm.add_argument("--row", action="append", choices=[r.name for r in DEMO_ROWS],
                    help="directions to show (repeat); default " + " ".join(DEFAULT_ROWS))
    dm.add_argument("--find", action="store_true",
                    help="find the directions on the fly (controlled pairs, CLIP training) instead of loading "
                         "the shipped ones (a few minutes)")
    dm.add_argument("--threads", type=int, default=2)
    dm.add_argument("--report", default=None, help="also write the readings and timings as JSON")
    dm.set_defaults(func=_cmd_demo)

    dd = sub.add_parser("demo-directions", help="make the directions shipped for the embedded demo model")
    dd.add_argument("--out-dir", dest="out_dir", default=None, help="default: the package's data/directions")
    dd.add_argument("--row", action="append", default=None, choices=[r.name for r in DEMO_ROWS],
                    help="make only this direction (repeat); default: all")
    dd.add_argument("--threads", type=int, default=2)
    dd.set_defaults(func=_cmd_demo_directions)

    i = sub.add_parser("info", help="print family, config, resolution, h shape and size of a checkpoint as JSON")
    i.add_argument("checkpoint", help="weights file (.safetensors .pt .pth .ckpt .bin) or diffusers folder")
    _add_override_args(i)
    i.set_defaults(func=_cmd_info)

    e = sub.add_parser("edit", help="invert images and edit them with h-space directions; writes a strip PNG")
    e.add_argument("--model", required=True, help="checkpoint file or diffusers folder")
    e.add_argument("--image", action="append", help="input image (repeat for a batch)")
    e.add_argument("--inversion", default=None, help="an inversion file (python -m hspace_core invert) instead of images")
    e.add_argument("--inversion-method", dest="inversion_method", choices=["ddim", "ddpm"], default="ddim",
                   help="ddim: deterministic inversion to x_T; ddpm: edit-friendly, exact noise maps")
    e.add_argument("--t-skip", dest="t_skip", type=int, default=0,
                   help="with a ddpm inversion: start this many steps below the top of the grid")
    e.add_argument("--direction", required=True, action="append",
                   help="direction file (.safetensors) or official Asyrp .pth (repeat to combine)")
    e.add_argument("--coef", type=float, action="append", help="coefficient of each --direction (default 1)")
    e.add_argument("--strength", type=float, action="append", required=True,
                   help="edit strength (repeat for a sweep; negative reverses the edit)")
    e.add_argument("--t-edit", dest="t_edit", type=int, default=500, help="edit while t >= t_edit (default 500)")
    e.add_argument("--t-boost", dest="t_boost", type=int, default=None,
                   help="stochastic quality-boosting steps below this t (default 0: none)")
    e.add_argument("--table", choices=["celeba", "afhq", "church", "bedroom", "metface"],
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
    e.add_argument("--variant", default="asymmetric", choices=["asymmetric", "symmetric", "eps_shift", "xt_shift"])
    e.add_argument("--size-policy", dest="size_policy", default="resize_crop", choices=["resize_crop", "resize", "error"])
    e.add_argument("--device", default="cpu")
    e.add_argument("--threads", type=int, default=2)
    e.add_argument("--out", required=True, help="output strip .png")
    _add_override_args(e)
    e.set_defaults(func=_cmd_edit)

    ef = sub.add_parser("edit-folder", help="edit every image under a folder (recursively) at every strength, one file "
                        "each, resumable; spread over processes with torchrun")
    ef.add_argument("--model", required=True, help="checkpoint file or diffusers folder")
    ef.add_argument("--input", required=True, help="folder of PNG / JPEG images (searched recursively)")
    ef.add_argument("--output", required=True, help="output folder: mirrors the input tree, one file per strength")
    ef.add_argument("--direction", required=True, action="append", help="direction file (repeat to combine)")
    ef.add_argument("--coef", type=float, action="append", help="coefficient of each --direction (default 1)")
    ef.add_argument("--strength", type=float, action="append", required=True, help="edit strength (repeat)")
    ef.add_argument("--t-edit", dest="t_edit", type=int, default=500)
    ef.add_argument("--t-boost", dest="t_boost", type=int, default=None)
    ef.add_argument("--table", choices=["celeba", "afhq", "church", "bedroom", "metface"])
    ef.add_argument("--text-cosine", dest="text_cosine", type=float, default=1.0)
    ef.add_argument("--from-direction", dest="from_direction", action="store_true")
    ef.add_argument("--steps", type=int, default=None, help="generation steps (default: the inversion's)")
    ef.add_argument("--inversion-steps", dest="inversion_steps", type=int, default=40)
    ef.add_argument("--inversion-method", dest="inversion_method", choices=["ddim", "ddpm"], default="ddim")
    ef.add_argument("--keep-inversions", dest="keep_inversions", action="store_true",
                    help="write each batch's inversion under OUTPUT/.inversions and reuse it on reruns")
    ef.add_argument("--eta", type=float, default=1.0)
    ef.add_argument("--seed", type=int, default=0, help="batch k uses seed + k")
    ef.add_argument("--variant", default="asymmetric", choices=["asymmetric", "symmetric", "eps_shift", "xt_shift"])
    ef.add_argument("--size-policy", dest="size_policy", default="resize_crop", choices=["resize_crop", "resize", "error"])
    ef.add_argument("--batch", type=int, default=8, help="images inverted and edited together (the unit of work)")
    ef.add_argument("--restart", action="store_true",
                    help="the output folder holds a job with other settings: remove its outputs and start over")
    ef.add_argument("--device", default="auto", help="auto: cuda:LOCAL_RANK when there are GPUs, else the CPU")
    ef.add_argument("--threads", type=int, default=2, help="CPU threads per process")
    ef.set_defaults(func=_cmd_edit_folder)

    iv = sub.add_parser("invert", help="invert images and write the inversion file (checked by regenerating them)")
    iv.add_argument("--model", required=True, help="checkpoint file or diffusers folder")
    iv.add_argument("--image", required=True, action="append", help="input image (repeat for a batch)")
    iv.add_argument("--method", choices=["ddim", "ddpm"], default="ddim",
                    help="ddim: deterministic, x_T; ddpm: edit-friendly (Huberman-Spiegelglas et al.), one noise "
                         "map per step (steps x image size x 4 bytes per image)")
    iv.add_argument("--steps", type=int, default=40)
    iv.add_argument("--seed", type=int, default=0, help="of the ddpm method's draws of x_t")
    iv.add_argument("--size-policy", dest="size_policy", default="resize_crop", choices=["resize_crop", "resize", "error"])
    iv.add_argument("--device", default="cpu")
    iv.add_argument("--threads", type=int, default=2)
    iv.add_argument("--out", required=True, help="output inversion file (.safetensors)")
    iv.add_argument("--overwrite", action="store_true")
    _add_override_args(iv)
    iv.set_defaults(func=_cmd_invert)

    d = sub.add_parser("direction", help="find a direction and write it as a direction file")
    dsub = d.add_subparsers(dest="method", required=True)

    def common(p, model=True):
        if model:
            p.add_argument("--model", required=True, help="checkpoint file or diffusers folder")
            p.add_argument("--steps", type=int, default=40, help="grid steps the direction is made on")
            p.add_argument("--t-edit", dest="t_edit", type=int, default=500,
                           help="editing interval the direction is made for (t >= t_edit)")
            p.add_argument("--device", default="cpu")
            p.add_argument("--threads", type=int, default=2)
            p.add_argument("--name", default="")
        p.add_argument("--out", required=True, help="output direction file (.safetensors)")
        p.add_argument("--overwrite", action="store_true")
        p.set_defaults(func=_cmd_direction)

    c = dsub.add_parser("clip", help="train a direction from a text pair with CLIP (Asyrp)")
    common(c)
    c.add_argument("--source", required=True, help="source text, e.g. 'face'")
    c.add_argument("--target", required=True, help="target text, e.g. 'smiling face'")
    c.add_argument("--clip-weights", dest="clip_weights", required=True,
                   help="local open_clip weights file or folder (nothing is downloaded)")
    c.add_argument("--clip-arch", dest="clip_arch", default="ViT-B-16-quickgelu")
    c.add_argument("--images", nargs="*", help="training images (files or folders); default: model samples")
    c.add_argument("--samples", type=int, default=8, help="model samples to train on when no --images")
    c.add_argument("--kind", choices=["deltablock", "global"], default="deltablock")
    c.add_argument("--lr", type=float, default=0.5)
    c.add_argument("--iterations", type=int, default=1)
    c.add_argument("--clip-w", dest="clip_w", type=float, default=1.0)
    c.add_argument("--l1-w", dest="l1_w", type=float, default=3.0)
    c.add_argument("--seed", type=int, default=0)
    c.add_argument("--batch", type=int, default=1,
                   help="images per update (1: the official recipe); under torchrun the processes share each batch")

    sv = dsub.add_parser("supervised", help="mean difference of h between two image sets (Haas et al.)")
    common(sv)
    sv.add_argument("--positive", nargs="+", required=True, help="images with the attribute (files or folders)")
    sv.add_argument("--negative", nargs="+", required=True, help="images without it (files or folders)")
    sv.add_argument("--classifier", action="store_true", help="use a linear classifier's normal instead")

    pc = dsub.add_parser("pca", help="principal direction k of h over N model samples (Haas et al.)")
    common(pc)
    pc.add_argument("--samples", type=int, default=64)
    pc.add_argument("--component", type=int, default=0, help="0 = the largest variance")
    pc.add_argument("--seed", type=int, default=0)

    jc = dsub.add_parser("jacobian", help="per-image direction: top singular vector k of dh/dx_t (Park et al.)")
    common(jc)
    jc.add_argument("--image", required=True, help="the image the direction is found for")
    jc.add_argument("--component", type=int, default=0, help="0 = the largest singular value")
    jc.add_argument("--t", type=int, default=None, help="timestep of the Jacobian (default: --t-edit)")
    jc.add_argument("--iterations", type=int, default=10, help="subspace-iteration rounds")
    jc.add_argument("--seed", type=int, default=0)

    pj = dsub.add_parser("project", help="remove from a direction its components along others")
    common(pj, model=False)
    pj.add_argument("--direction", required=True)
    pj.add_argument("--off", required=True, action="append", help="direction to hold fixed (repeat)")
    pj.add_argument("--one-at-a-time", dest="one_at_a_time", action="store_true",
                    help="project off one after another instead of jointly (least squares)")

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
    t.add_argument("--threads", type=int, default=2)
    t.add_argument("--export", default=None, help="write the EMA weights to this .safetensors when done")
    t.set_defaults(func=_cmd_train_demo)

    pr = sub.add_parser("train-probe", help="train the attribute probe (the measuring instrument of the demo world)")
    pr.add_argument("--out", default="hspace_core/data/probe.safetensors")
    pr.add_argument("--report", default="hspace_core/data/probe_report.json", help="write the held-out report here")
    pr.add_argument("--steps", type=int, default=2000)
    pr.add_argument("--batch", type=int, default=128)
    pr.add_argument("--seed", type=int, default=0)
    pr.add_argument("--threads", type=int, default=2)
    pr.set_defaults(func=_cmd_train_probe)

    tc = sub.add_parser("train-tiny-clip", help="train the demo world's tiny CLIP on procedural faces and captions")
    tc.add_argument("--out", default="hspace_core/data/tiny_clip", help="open_clip folder to write")
    tc.add_argument("--steps", type=int, default=2000)
    tc.add_argument("--batch", type=int, default=256)
    tc.add_argument("--seed", type=int, default=0)
    tc.add_argument("--threads", type=int, default=2)
    tc.set_defaults(func=_cmd_train_tiny_clip)
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except HSpaceError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
