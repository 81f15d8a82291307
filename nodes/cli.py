"""``python -m nodes.cli direction {contrastive,ica,text} ...``: the SD-model direction trainers from a command line,
with ComfyUI used as a library (the engine's own CLI, ``python -m hspace_core``, never imports ComfyUI and serves
the pixel DDPMs).

ComfyUI is found as ``hspace_sdworld.comfy_import`` says (``COMFYUI_PATH``, the ComfyUI the pack is installed in,
or ``../shared/comfyui``). ``--ckpt`` is an SD1.x / SD2.x / SDXL checkpoint file, loaded as ComfyUI's
CheckpointLoaderSimple loads it (weights only, nothing executed), or ``demo`` for the miniature SD world.
The images are fitted to ``--size`` (the engine's resize_crop) and VAE-encoded; the work is the nodes' (H-Space
Directions by Contrast (SD); H-Space Directions by Independence (SD), from the prompt's own trajectories, no
images; H-Space Direction from Text (CLIP) with an SD MODEL), each direction calibrated on the model; files are
never overwritten unless ``--overwrite`` is given, and every name is checked before any work. Progress goes to stderr (tqdm).

    python -m nodes.cli direction contrastive --ckpt demo --images FOLDER --prompt "a face" --k 8 --out DIR
    python -m nodes.cli direction ica --ckpt demo --prompt "a face" --seeds 256 --k 8 --out DIR
    python -m nodes.cli direction text --ckpt demo --images FOLDER --prompt "a face" --source "face" \\
        --target "smiling face" --out smile.safetensors
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

from hspace_core import HSpaceError
from hspace_core.cli.common import StepProgress, at_least
from hspace_core.cli.direction import _image_set, _save, ica_order, k_files

DEMO = "demo"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m nodes.cli", description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    d = sub.add_parser("direction", help="train directions on an SD checkpoint")
    dsub = d.add_subparsers(dest="method", required=True)

    def common(p: argparse.ArgumentParser, images: bool = True) -> None:
        p.add_argument("--ckpt", required=True, help=f"an SD1.x / SD2.x / SDXL checkpoint file, or '{DEMO}' (the "
                                                     "miniature SD world)")
        if images:
            p.add_argument("--images", nargs="+", required=True, help="image files or folders (every image in them)")
        p.add_argument("--prompt", default="", help="a prompt describing the images (the conditioning, cfg 1)")
        p.add_argument("--size", type=int, default=0, help="images are fitted to (ica: trajectories are) "
                                                           "this many pixels square (default: 64 for the demo, "
                                                           "else 512)")
        p.add_argument("--steps", type=int, default=40, help="the grid whose steps in [t_edit, t_end] "
                                                             "the directions are made at")
        p.add_argument("--t-edit", type=int, default=500)
        p.add_argument("--t-end", type=int, default=999)
        p.add_argument("--seed", type=int, default=0)
        p.add_argument("--name", default="")
        p.add_argument("--gpu", action="store_true", help="ComfyUI's default device instead of the CPU")
        p.add_argument("--threads", type=int, default=0, help="torch threads (default: torch's own choice)")
        p.add_argument("--overwrite", action="store_true", help="replace existing files")

    c = dsub.add_parser("contrastive", help="K directions at once from unlabelled images (NoiseCLR's objective in h)")
    common(c)
    c.add_argument("--k", type=int, default=8)
    c.add_argument("--iterations", type=int, default=300)
    c.add_argument("--batch", type=int, default=4, help="latents per update")
    c.add_argument("--lr", type=float, default=0.05)
    c.add_argument("--temperature", type=float, default=0.5)
    c.add_argument("--radius", type=float, default=1.0, help="each direction's norm, in units of h's RMS")
    c.add_argument("--preview", type=int, default=2, help="images in the preview strip (0: none)")
    c.add_argument("--out", required=True, help="a folder for the K files and the preview strip")
    i = dsub.add_parser("ica", help="K directions at once: independent components of h over the prompt's own "
                                    "trajectories (cfg 1)")
    common(i, images=False)
    i.add_argument("--seeds", type=int, default=256, help="trajectories to analyse (more than --dims + 1)")
    i.add_argument("--k", type=int, default=8)
    i.add_argument("--dims", type=int, default=0, help="principal components the K are sought among (0: 2 x K)")
    ica_order(i)
    i.add_argument("--spatial", choices=["average", "keep"], default="keep",
                   help="average: channel vectors (any resolution); keep: the h grid")
    i.add_argument("--preview", type=int, default=2, help="new samples of the prompt in the preview strip (0: none)")
    i.add_argument("--out", required=True, help="a folder for the K files and the preview strip")
    t = dsub.add_parser("text", help="Asyrp's CLIP training of one shift of h (directional CLIP loss on the "
                                     "VAE-decoded predicted x0)")
    common(t)
    t.add_argument("--source", required=True, help="what the images are, e.g. 'face'")
    t.add_argument("--target", required=True, help="what they should become, e.g. 'smiling face'")
    t.add_argument("--clip", default="", help="open_clip weights (file or folder); default: the embedded tiny CLIP "
                                              "(for the demo world)")
    t.add_argument("--clip-arch", default="", help="open_clip architecture of --clip")
    t.add_argument("--lr", type=float, default=0.05)
    t.add_argument("--iterations", type=int, default=1, help="passes over the images (one update per 8 latents "
                                                             "at every step of the interval)")
    t.add_argument("--clip-weight", type=float, default=1.0)
    t.add_argument("--l1-weight", type=float, default=3.0)
    t.add_argument("--out", required=True, help="the direction file to write")
    return parser


def check(args: argparse.Namespace) -> None:
    """Every cheap refusal, before ComfyUI is imported or a file read."""
    if args.ckpt != DEMO and not Path(args.ckpt).is_file():
        raise HSpaceError(f"{args.ckpt}: no such checkpoint file (or '{DEMO}' for the miniature SD world)")
    at_least(args.steps, 2, "--steps")
    at_least(args.size, 0, "--size")
    if not 0 <= args.t_edit <= args.t_end <= 999:
        raise HSpaceError(f"need 0 <= --t-edit <= --t-end <= 999, got {args.t_edit} and {args.t_end}")
    for p in getattr(args, "images", []):
        if not Path(p).exists():
            raise HSpaceError(f"{p}: no such image file or folder")
    if args.method == "contrastive":
        at_least(args.k, 2, "--k")
        at_least(args.iterations, 1, "--iterations")
        at_least(args.batch, 2, "--batch")
        at_least(args.preview, 0, "--preview")
        if not Path(args.out).is_dir():
            raise HSpaceError(f"{args.out}: no such folder for the K direction files (--out is a folder here)")
        clash = [str(f) for f in k_files(args) if f.exists()]
    elif args.method == "ica":
        at_least(args.k, 1, "--k")
        at_least(args.preview, 0, "--preview")
        at_least(args.dims, 0, "--dims")
        from hspace_core.discovery.ica import whitened_dims

        dims = whitened_dims(args.k, args.dims)
        if args.seeds <= dims + 1:
            raise HSpaceError(f"--seeds must be more than {dims + 1} for {dims} principal components, got {args.seeds}")
        if not Path(args.out).is_dir():
            raise HSpaceError(f"{args.out}: no such folder for the K direction files (--out is a folder here)")
        clash = [str(f) for f in k_files(args) if f.exists()]
    else:
        at_least(args.iterations, 1, "--iterations")
        if args.clip and not Path(args.clip).exists():
            raise HSpaceError(f"{args.clip}: no such CLIP weights file or folder")
        if not Path(args.out).parent.is_dir():
            raise HSpaceError(f"{Path(args.out).parent}: no such folder for --out")
        clash = [args.out] if Path(args.out).exists() else []
    if clash and not args.overwrite:
        raise HSpaceError(f"would overwrite {', '.join(clash)} (choose another --out or --name, or pass --overwrite)")


def load_checkpoint(ckpt: str):
    """(MODEL, CLIP, VAE) of a checkpoint file as CheckpointLoaderSimple gives them, or of the demo world."""
    if ckpt == DEMO:
        from hspace_sdworld.models import load_demo

        return load_demo()
    import comfy.sd

    try:
        out = comfy.sd.load_checkpoint_guess_config(str(ckpt), output_vae=True, output_clip=True,
                                                    embedding_directory=None)
    except Exception as e:  # ComfyUI raises plain RuntimeErrors for files it cannot read or place
        raise HSpaceError(f"{ckpt}: ComfyUI cannot load it as a checkpoint ({str(e).splitlines()[0][:200]})") from None
    model, clip, vae = out[:3]
    if model is None or clip is None or vae is None:
        raise HSpaceError(f"{ckpt}: not a full SD checkpoint (it lacks the "
                          f"{'model' if model is None else 'text encoder' if clip is None else 'VAE'})")
    return model, clip, vae


def latents_of(vae, paths: list[str], size: int) -> torch.Tensor:
    """The images fitted to size x size and VAE-encoded: [N, C, size / 8, size / 8] (the LATENT's units)."""
    from hspace_core.images import prepare_images
    from hspace_sdworld.sampling import encode_images

    x, did = prepare_images(_image_set(paths, "training"), size, "resize_crop")
    for i, what in enumerate(did):  # in the order the files were read (folders sorted by name)
        if not what.endswith("the model's size"):
            print(f"image {i + 1}: {what}", file=sys.stderr)
    return encode_images(vae, x)


def preview(model, clip, vae, prompt: str, directions, latents: torch.Tensor | None, steps: int, t_edit: int,
            t_end: int, seed: int, n: int = 0, size: int = 512):
    """Rows of the preview strip: per direction, each of the first latents re-generated from its DDIM inversion
    (without ``latents``: ``n`` samples of the prompt from seeded noise of ``size`` px, seeds ``seed`` ...)
    at calibrated strengths -2, 0, +2 (Apply H-Space Direction, the Asyrp Sampler (SD), cfg 1)."""
    import comfy.samplers

    import nodes.sd as sd
    from hspace_sdworld.sampling import decode, encode, sample, sigmas

    positive = encode(clip, prompt)
    sig = sigmas(model, min(steps, 20))  # the model's own schedule, at most 20 steps for the preview
    if latents is not None:
        starts, n = sd.invert_latent(model, positive, latents, sig), len(latents)
    else:
        channels = model.get_model_object("latent_format").latent_channels
        starts = torch.cat([torch.randn(1, channels, size // 8, size // 8, generator=torch.Generator().manual_seed(
            seed + i)) for i in range(n)])
    rows = []
    for d in directions:
        m = sd.ApplyHSpaceDirection().apply(model, d, 1.0, t_edit, t_end, "both", "asymmetric")[0]
        sampler = comfy.samplers.KSAMPLER(sd.sample_asyrp, extra_options={"strengths": (-2.0, 0.0, 2.0)})
        row = []
        for i in range(n):
            if latents is not None:  # from the inversion, no noise added
                out = sample(m, positive, positive, torch.zeros_like(starts[i:i + 1]), sig, 1.0, sampler,
                             latent=starts[i:i + 1], seed=seed)
            else:
                out = sample(m, positive, positive, starts[i:i + 1], sig, 1.0, sampler, seed=seed + i)
            row += list(decode(vae, out))
        rows.append(row)
    return rows


def _save_k(ds, files: list[Path], args: argparse.Namespace, rows, what: str) -> None:
    """The K direction files, then (``--preview`` > 0) the strip of ``rows()`` as the last of ``files``."""
    for d, path in zip(ds, files):
        _save(d, path, args.overwrite)
    if args.preview:
        from hspace_core.images import strip

        strip(rows()).save(files[-1])
        print(f"wrote {files[-1]} (a row per direction: {what} at calibrated strength -2, 0, +2)", file=sys.stderr)


def run(args: argparse.Namespace) -> int:
    from hspace_sdworld.comfy_import import import_comfy

    if args.threads:
        torch.set_num_threads(args.threads)
    import_comfy(cpu=not args.gpu)
    model, clip, vae = load_checkpoint(args.ckpt)
    size = args.size or (64 if args.ckpt == DEMO else 512)
    latents = latents_of(vae, args.images, size) if hasattr(args, "images") else None
    from hspace_sdworld.sampling import encode

    from .sd.calibration import calibrated_sd

    positive = encode(clip, args.prompt)

    def calibrated(d):
        return calibrated_sd(model, d, positive, callback=StepProgress(f"calibrate {d.info.name}"))
    if args.method == "ica":
        from hspace_sdworld.sampling import sigmas

        from .sd.node_classes import independent_directions

        ds = independent_directions(model, positive, sigmas(model, args.steps), args.seeds, args.k, args.dims,
                                    args.seed, args.t_edit, args.t_end, size, size, args.spatial, args.name or "ica",
                                    order=args.order, rotate=args.rotate,
                                    effects_callback=StepProgress("measure effects"))
        ds = [calibrated(d) for d in ds]
        _save_k(ds, k_files(args), args, lambda: preview(model, clip, vae, args.prompt, ds, None, args.steps,
                                                           args.t_edit, args.t_end, args.seed, args.preview, size),
                "a new sample of the prompt")
        return 0
    if args.method == "contrastive":
        from hspace_core.discovery.contrastive import ContrastiveSettings

        from .sd.discovery import contrastive_sd

        settings = ContrastiveSettings(k=args.k, iterations=args.iterations, batch=args.batch, lr=args.lr,
                                       temperature=args.temperature, radius=args.radius, seed=args.seed)
        ds = contrastive_sd(model, positive, latents, steps=args.steps, t_edit=args.t_edit, t_end=args.t_end,
                            name=args.name or "contrastive", settings=settings, callback=StepProgress("discover"))
        ds = [calibrated(d) for d in ds]
        _save_k(ds, k_files(args), args, lambda: preview(model, clip, vae, args.prompt, ds, latents[:args.preview],
                                                           args.steps, args.t_edit, args.t_end, args.seed),
                "each image")
        return 0
    from hspace_core.demo.clip_world import EMBEDDED as TINY_CLIP_DIR
    from hspace_core.discovery.clip_model import DEFAULT_ARCH

    from .discovery import DirectionFromText

    name = args.name or f"{args.source} -> {args.target}"
    d = DirectionFromText._train_sd(model, vae, positive, {"samples": latents}, Path(args.clip) if args.clip else
                                    TINY_CLIP_DIR, args.clip_arch or DEFAULT_ARCH, args.source, args.target,
                                    args.steps, args.t_edit, args.t_end, args.lr, args.iterations, args.clip_weight,
                                    args.l1_weight, args.seed, None, callback=StepProgress("train"), name=name,
                                    calibration_callback=StepProgress(f"calibrate {name}"))
    return _save(d, Path(args.out), args.overwrite)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        check(args)
        with torch.inference_mode():  # as ComfyUI's executor runs the nodes (the trainers step out of it themselves)
            return run(args)
    except HSpaceError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted: nothing was written for the unfinished work", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
