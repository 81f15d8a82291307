"""``direction METHOD``: find a direction (CLIP training, supervised mean difference or classifier normal,
PCA, Jacobian; K at once by contrastive discovery or independent components) or project one off others,
and write it as a direction file (contrastive, ica: K files and a preview strip in a folder). CLIP training
and the mean difference spread over processes under torchrun; the first process writes the file."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from ..errors import HSpaceError
from .common import StepProgress, add_threads, apply_threads, at_least, check_common, check_out, finite


def register(sub) -> None:
    d = sub.add_parser("direction", help="find a direction and write it as a direction file")
    dsub = d.add_subparsers(dest="method", required=True)

    def common(p, model=True):
        if model:
            p.add_argument("--model", required=True, help="checkpoint file or diffusers folder")
            p.add_argument("--steps", type=int, default=40, help="grid steps the direction is made on")
            p.add_argument("--t-edit", dest="t_edit", type=int, default=500,
                           help="editing interval the direction is made for (t >= t_edit)")
            p.add_argument("--device", default="cpu")
            add_threads(p)
            p.add_argument("--name", default="")
            p.add_argument("--no-calibration", dest="calibrate", action="store_false",
                           help="skip measuring what strength 1 means on the model (the direction stays in raw units)")
        p.add_argument("--out", required=True, help="output direction file (.safetensors)")
        p.add_argument("--overwrite", action="store_true")
        p.set_defaults(func=run)

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
    sv.add_argument("--batch", type=int, default=32,
                    help="images per walk; under torchrun the processes share whole batches (the direction is the "
                         "one-process direction for the same --batch)")

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

    def k_at_once(p, samples: int):
        common(p)
        p.add_argument("--images", nargs="*", help="unlabelled images (files or folders); default: model samples")
        p.add_argument("--samples", type=int, default=samples, help="model samples to use when no --images")
        p.add_argument("--k", type=int, default=8, help="number of directions")
        p.add_argument("--seed", type=int, default=0)
        p.add_argument("--preview", type=int, default=4, help="images in the preview strip (0: none)")

    cl = dsub.add_parser("contrastive", help="K directions at once from unlabelled images (NoiseCLR's objective in "
                                             "h); --out is a folder for the K files and a preview strip")
    k_at_once(cl, 64)
    cl.add_argument("--iterations", type=int, default=300, help="updates")
    cl.add_argument("--batch", type=int, default=8, help="images per update")
    cl.add_argument("--lr", type=float, default=0.05)
    cl.add_argument("--temperature", type=float, default=0.5)
    cl.add_argument("--radius", type=float, default=0.5, help="each direction's size, in units of h's RMS")

    ic = dsub.add_parser("ica", help="K directions at once: independent components of h over unlabelled images or "
                                     "model samples; --out is a folder for the K files and a preview strip")
    k_at_once(ic, 256)
    ic.add_argument("--dims", type=int, default=None,
                    help="principal components the K are sought among (default 2 x K)")
    ica_order(ic)

    pj = dsub.add_parser("project", help="remove from a direction its components along others")
    common(pj, model=False)
    pj.add_argument("--direction", required=True)
    pj.add_argument("--off", required=True, action="append", help="direction to hold fixed (repeat)")
    pj.add_argument("--one-at-a-time", dest="one_at_a_time", action="store_true",
                    help="project off one after another instead of jointly (least squares)")


IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp", ".bmp")


def _image_set(paths: list[str], what: str):
    """Images from files and folders (folders: every image file in them, sorted by name)."""
    from ..images import load_image

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


K_AT_ONCE = ("contrastive", "ica")


def ica_order(parser) -> None:
    """``--order``: which of the whitened subspace's independent components are kept (``ica.ORDERS``), and
    ``--rotate``: what turns them (``ica.ROTATIONS``)."""
    from ..discovery.ica import ORDERS, RESAMPLES, ROTATIONS

    parser.add_argument("--order", choices=ORDERS, default=ORDERS[0],
                        help=f"which K are kept: stability (default), the most reproducible over {RESAMPLES} bootstrap "
                             f"resamples (leaves out components made by a few odd images; {RESAMPLES} more FastICA "
                             "runs); kurtosis, the least Gaussian")
    parser.add_argument("--rotate", choices=ROTATIONS, default=ROTATIONS[0],
                        help="turn the principal components by FastICA of h itself (default), or to the sparsest "
                             "changes of the predicted x0 over the image (independent effects: edits of one region or "
                             "feature each; the K sparsest are kept, --order does not apply)")


def k_files(args: argparse.Namespace) -> list[Path]:
    """The files ``direction contrastive`` / ``ica`` write into --out: K direction files and the preview strip."""
    out, stem = Path(args.out), (args.name or args.method).replace(" ", "_").replace("/", "_")
    files = [out / f"{stem}_{i}.safetensors" for i in range(args.k)]
    return files + ([out / f"{stem}_preview.png"] if getattr(args, "preview", 0) else [])


def check(args: argparse.Namespace) -> None:
    if args.method in K_AT_ONCE:
        if not Path(args.out).is_dir():
            raise HSpaceError(f"{args.out}: no such folder for the K direction files (--out is a folder here)")
        at_least(args.k, 2, "--k")
        at_least(args.preview, 0, "--preview")
        clash = [str(f) for f in k_files(args) if f.exists()]
        if clash and not args.overwrite:
            raise HSpaceError(f"{clash[0]}: already exists (use --overwrite to replace the {len(clash)} files, or "
                              "another --name or folder)")
        if args.method == "contrastive":
            finite([args.temperature, args.radius], "--temperature and --radius")
        elif args.dims is not None and args.dims < args.k:
            raise HSpaceError(f"--dims {args.dims} is fewer than --k {args.k}: the K directions are sought among "
                              "--dims principal components")
    else:
        check_out(Path(args.out), ".safetensors", args.overwrite)
    if args.method == "project":
        return
    check_common(args)
    at_least(args.steps, 2, "--steps")
    at_least(args.t_edit, 0, "--t-edit")
    at_least(getattr(args, "seed", None), 0, "--seed")
    at_least(getattr(args, "component", None), 0, "--component")
    at_least(getattr(args, "iterations", None), 1, "--iterations")
    at_least(getattr(args, "batch", None), 2 if args.method == "contrastive" else 1, "--batch")
    at_least(getattr(args, "t", None), 0, "--t")
    at_least(getattr(args, "samples", None), 2 if args.method in ("pca", "contrastive", "ica") else 1, "--samples")
    finite([getattr(args, k) for k in ("lr", "clip_w", "l1_w") if hasattr(args, k)], "--lr, --clip-w and --l1-w")
    if args.method == "clip" and not Path(args.clip_weights).exists():
        raise HSpaceError(f"{args.clip_weights}: no such CLIP weights file or folder")


def _load_for_direction(args: argparse.Namespace, device: str):
    from ..loading import load_model

    apply_threads(args)
    return load_model(args.model).to(device)


def _save(direction, out: Path, overwrite: bool) -> int:
    from ..directions.calibration import calibration_of
    from ..directions.io import save_direction

    path = save_direction(direction, out, overwrite=overwrite)
    cal = calibration_of(direction)
    said = "not calibrated: strengths in raw units" if cal is None else (
        f"calibrated at t={cal.t}: strength 1 = {cal.scale:.4g} raw, usable {cal.usable[0]:g} .. {cal.usable[1]:g}"
        if cal.usable else f"calibrated at t={cal.t}: strength 1 = {cal.scale:.4g} raw")
    prov = direction.info.provenance
    stable, chance = prov.get("stability"), prov.get("chance_stability")  # an independent component's
    found = "" if stable is None else f", found again on resamples at {stable:.2f} (1 = always" + (
        ")" if chance is None else f"; Gaussian rows of the same covariance: {chance:.2f})")
    print(f"wrote {path} ({direction.info.name}; {prov.get('method')}{found}, "
          f"strength unit {direction.info.strength_unit}; {said})", file=sys.stderr)
    return 0


def run(args: argparse.Namespace) -> int:
    check(args)  # before any file is read, any network runs
    if args.method == "project":
        from ..directions.io import load_direction
        from ..directions.project import project_off

        d = load_direction(args.direction)  # the projection changes its size: the result is raw
        projected = project_off(d, [load_direction(p) for p in args.off], joint=not args.one_at_a_time)
        return _save(projected, Path(args.out), args.overwrite)
    from ..distributed import Context, context

    ctx = context(args.device) if args.method in ("supervised", "clip") else Context(device=args.device)
    try:
        model = _load_for_direction(args, ctx.device)
        if args.method in K_AT_ONCE:
            return _k_at_once(args, model)
        d = _find_direction(args, model, ctx)
        if not ctx.main:
            return 0  # every process holds the direction; the first calibrates and writes it
        if args.calibrate:
            from ..calibrate import calibrated

            d = calibrated(model, d, callback=StepProgress(f"calibrate {d.info.name}"))
        return _save(d, Path(args.out), args.overwrite)
    finally:
        ctx.close()


def _k_at_once(args: argparse.Namespace, model) -> int:
    """K directions (contrastive discovery or independent components), calibrated, written with a preview
    strip (``contrastive.preview_rows``) of the first --preview images (or samples)."""
    from ..discovery.contrastive import preview_rows
    from ..images import prepare_images, strip
    from ..inversion import invert

    images = _image_set(args.images, "unlabelled") if args.images else None
    if args.method == "contrastive":
        from ..discovery.contrastive import ContrastiveSettings, contrastive_directions

        settings = ContrastiveSettings(k=args.k, iterations=args.iterations, batch=args.batch, lr=args.lr,
                                       temperature=args.temperature, radius=args.radius, seed=args.seed)
        ds = contrastive_directions(model, images, n_samples=args.samples, steps=args.steps, t_edit=args.t_edit,
                                    settings=settings, name=args.name or "contrastive",
                                    callback=StepProgress("discover"))
    else:
        from ..discovery.ica import ica_directions

        ds = ica_directions(model, images, n_samples=args.samples, components=args.k,
                            dims=args.dims, steps=args.steps, t_edit=args.t_edit,
                            seed=args.seed, order=args.order, rotate=args.rotate, name=f"{args.name or 'ica'} ",
                            callback=StepProgress("record h"))
    if args.calibrate:
        from ..calibrate import calibrated

        ds = [calibrated(model, d, callback=StepProgress(f"calibrate {d.info.name}")) for d in ds]
    files = k_files(args)
    for d, path in zip(ds, files):
        _save(d, path, args.overwrite)
    if args.preview:
        if images is not None:
            x0 = prepare_images(images[:args.preview], model.image_size, "resize_crop")[0]
            source = invert(model, x0, steps=args.steps)
        else:
            from ..discovery.record import seeded_noise

            source = seeded_noise(model, args.preview, args.seed)
        strip(preview_rows(model, ds, source, t_edit=args.t_edit, steps=args.steps)).save(files[-1])
        print(f"wrote {files[-1]} (a row per direction: each image at strength -2, 0, +2"
              f"{'' if args.calibrate else ' (raw -1, 0, +1)'})", file=sys.stderr)
    return 0


def _find_direction(args: argparse.Namespace, model, ctx):
    t_edit = args.t_edit
    if args.method == "supervised":
        from ..discovery.supervised import classifier_normal, mean_difference

        pos, neg = _image_set(args.positive, "positive"), _image_set(args.negative, "negative")
        data = f"{', '.join(args.positive)} vs {', '.join(args.negative)}"
        if args.classifier:
            if ctx.world > 1:
                raise HSpaceError("the classifier normal runs in one process; without --classifier the mean "
                                  "difference is spread over the processes")
            d = classifier_normal(model, pos, neg, steps=args.steps, t_edit=t_edit, name=args.name or "supervised",
                                  data=data, callback=StepProgress("record h"))
        else:
            d = mean_difference(model, pos, neg, steps=args.steps, t_edit=t_edit, name=args.name or "supervised",
                                data=data, callback=StepProgress("record h"), ctx=ctx, batch=args.batch)
    elif args.method == "jacobian":
        from ..discovery.jacobian import jacobian_directions
        from ..images import load_image

        ds = jacobian_directions(model, load_image(args.image), args.component + 1, t=args.t, t_edit=t_edit,
                                 steps=args.steps, iterations=args.iterations, seed=args.seed,
                                 callback=StepProgress("jacobian"))
        d = ds[args.component]
        print(f"component {args.component}: singular value {d.info.provenance['singular_value']:.4g} at t = "
              f"{d.info.provenance['t']}", file=sys.stderr)
    elif args.method == "pca":
        from ..discovery.pca import pca_direction

        d = pca_direction(model, args.component, args.samples, steps=args.steps, t_edit=t_edit, seed=args.seed,
                          callback=StepProgress("record h"))
    else:
        from ..discovery.clip import ClipTrainSettings, train_clip_direction
        from ..discovery.clip_model import load_clip

        clip = load_clip(args.clip_weights, args.clip_arch, device=args.device)
        images = _image_set(args.images, "training") if args.images else None
        settings = ClipTrainSettings(kind=args.kind, n_train_step=args.steps, t_edit=t_edit, lr=args.lr,
                                     n_iter=args.iterations, clip_w=args.clip_w, l1_w=args.l1_w, seed=args.seed,
                                     batch=args.batch)

        d = train_clip_direction(model, clip, args.source, args.target, images=images, n_samples=args.samples,
                                 settings=settings, name=args.name, callback=StepProgress("train"), ctx=ctx)
    return d

