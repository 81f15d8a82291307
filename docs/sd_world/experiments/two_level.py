"""Experiment (not shipped): the miniature SD world's UNet with two levels instead of three, so that h is
192 x 4 x 4 at 64 px instead of 192 x 2 x 2. The UNet configuration is replaced in memory
(``hspace_sdworld.models.UNET``) for training, export and the bench; nothing else changes.

    python docs/sd_world/experiments/two_level.py train runs/sdworld/unet_2level [threads] [steps]
    python docs/sd_world/experiments/two_level.py export runs/sdworld/unet_2level /tmp/two_level/unet.safetensors
    # with the shipped vae.safetensors and text_encoder.safetensors copied beside it:
    HSPACE_SDWORLD_WEIGHTS=/tmp/two_level python docs/sd_world/experiments/two_level.py bench --only scan \
        --scan 100,200 --spatial keep
"""

import runpy
import sys
from dataclasses import replace
from pathlib import Path

ROOT = Path(__file__).resolve().parents[3]
sys.path.insert(0, str(ROOT))

import torch  # noqa: E402

import hspace_sdworld.models as models  # noqa: E402
from hspace_sdworld import configs  # noqa: E402

models.UNET = dict(configs.UNET, channel_mult=[1, 3], num_res_blocks=[1, 1], transformer_depth=[1, 1],
                   transformer_depth_output=[1, 1, 1, 1])


def main(argv: list[str]) -> None:
    command = argv[0]
    if command == "train":
        from hspace_sdworld.train_unet import UNetSettings, train

        torch.set_num_threads(int(argv[2]) if len(argv) > 2 else 2)
        steps = int(argv[3]) if len(argv) > 3 else UNetSettings().steps
        train(Path(argv[1]), replace(UNetSettings(), steps=steps), models.WEIGHTS / "vae.safetensors",
              models.WEIGHTS / "text_encoder.safetensors", log=lambda m: print(m, flush=True))
    elif command == "export":
        from hspace_sdworld.train_unet import export

        print(export(Path(argv[1]), Path(argv[2])))
    elif command == "bench":
        sys.argv = ["sd_claims.py", *argv[1:]]
        runpy.run_path(str(ROOT / "bench" / "sd_claims.py"), run_name="__main__")
    else:
        raise SystemExit(f"unknown command {command!r}: train, export or bench")


if __name__ == "__main__":
    main(sys.argv[1:])
