"""``python -m hspace_sdworld COMMAND``: train and export the miniature SD and flow worlds' networks."""

from __future__ import annotations

import argparse
import sys
from dataclasses import fields
from pathlib import Path


def _add_settings(p: argparse.ArgumentParser, cls) -> None:
    for f in fields(cls):
        p.add_argument("--" + f.name.replace("_", "-"), type=type(f.default), default=f.default)


def _settings(args, cls):
    return cls(**{f.name: getattr(args, f.name) for f in fields(cls)})


WEIGHTS = Path(__file__).resolve().parent / "weights"
DOCS = Path(__file__).resolve().parents[1] / "docs" / "sd_world"
FLOW_DOCS = Path(__file__).resolve().parents[1] / "docs" / "flow_world"


def main(argv: list[str] | None = None) -> int:
    from .train_flow import FlowSettings
    from .train_unet import UNetSettings
    from .train_vae import VAESettings

    parser = argparse.ArgumentParser(prog="python -m hspace_sdworld")
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("train-vae", help="train (or resume) the VAE in --run")
    p.add_argument("--run", type=Path, default=Path("runs/sdworld/vae"))
    _add_settings(p, VAESettings)
    p = sub.add_parser("export-vae", help="normalise the trained VAE's latent and write it")
    p.add_argument("--run", type=Path, default=Path("runs/sdworld/vae"))
    p.add_argument("--out", type=Path, default=WEIGHTS / "vae.safetensors")
    p = sub.add_parser("export-text-encoder", help="the embedded tiny CLIP's text tower as the SD1 CLIP text encoder")
    p.add_argument("--out", type=Path, default=WEIGHTS / "text_encoder.safetensors")
    p = sub.add_parser("train-unet", help="train (or resume) the UNet in --run on the exported VAE's latents")
    p.add_argument("--run", type=Path, default=Path("runs/sdworld/unet"))
    p.add_argument("--vae", type=Path, default=WEIGHTS / "vae.safetensors")
    p.add_argument("--text-encoder", type=Path, default=WEIGHTS / "text_encoder.safetensors")
    _add_settings(p, UNetSettings)
    p = sub.add_parser("export-unet", help="write the UNet's EMA weights")
    p.add_argument("--run", type=Path, default=Path("runs/sdworld/unet"))
    p.add_argument("--out", type=Path, default=WEIGHTS / "unet.safetensors")
    p = sub.add_parser("train-flow", help="train (or resume) the flow world's transformer in --run on the exported "
                                          "VAE's latents")
    p.add_argument("--run", type=Path, default=Path("runs/flowworld/flow"))
    p.add_argument("--vae", type=Path, default=WEIGHTS / "vae.safetensors")
    p.add_argument("--text-encoder", type=Path, default=WEIGHTS / "text_encoder.safetensors")
    p.add_argument("--until", type=int, default=None, help="stop at this step (resume later)")
    _add_settings(p, FlowSettings)
    p = sub.add_parser("export-flow", help="write the flow transformer's EMA weights")
    p.add_argument("--run", type=Path, default=Path("runs/flowworld/flow"))
    p.add_argument("--out", type=Path, default=WEIGHTS / "flow.safetensors")
    args = parser.parse_args(argv)
    if args.command == "train-unet":
        from .configs import unet_config

        try:  # the configuration's own check, as a usage error rather than a traceback
            unet_config(args.levels)
        except ValueError as e:
            parser.error(f"--levels: {e}")

    import torch

    torch.set_num_threads(max(1, torch.get_num_threads()))
    if args.command == "train-vae":
        from .train_vae import train

        train(args.run, _settings(args, VAESettings), log=lambda m: print(m, flush=True))
    elif args.command == "export-vae":
        from .train_vae import export

        print(export(args.run, args.out, docs=DOCS))
    elif args.command == "export-text-encoder":
        from .export import export_text_encoder

        print(f"wrote {export_text_encoder(args.out)}")
    elif args.command == "train-unet":
        from .train_unet import train

        train(args.run, _settings(args, UNetSettings), args.vae, args.text_encoder, log=lambda m: print(m, flush=True))
    elif args.command == "train-flow":
        from .train_flow import train

        train(args.run, _settings(args, FlowSettings), args.vae, args.text_encoder, until=args.until,
              log=lambda m: print(m, flush=True))
    elif args.command == "export-flow":
        from .train_flow import export

        print(f"wrote {export(args.run, args.out, docs=FLOW_DOCS)}")
    elif args.command == "export-unet":
        from .train_unet import export

        print(f"wrote {export(args.run, args.out, docs=DOCS)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
