"""What a ComfyUI MODEL is, for h-space editing: its family (SD1.x, SD2.x, SDXL) and h's channels, and the
model timesteps of its sigmas."""

from __future__ import annotations

import torch

from hspace_core import HSpaceError


def host_family(model) -> tuple[str, int]:
    """("sd1" | "sd2" | "sdxl", h channels) of a ComfyUI MODEL (ModelPatcher); a clear error for anything else."""
    import comfy.model_sampling
    import comfy.supported_models as sm

    base = model.model
    name = type(base.model_config).__name__
    if isinstance(model.get_model_object("model_sampling"), comfy.model_sampling.CONST):
        raise HSpaceError(f"{name} is a flow-matching model (CONST sampling): h-space editing supports Flux.1, "
                          "Flux.2 and SD3 / SD3.5 among them, through the same nodes")
    unet = base.diffusion_model
    if not hasattr(unet, "middle_block") or not hasattr(unet, "output_blocks"):
        raise HSpaceError(f"{name} has no UNet middle block (h-space needs a UNet: SD1.x, SD2.x or SDXL)")
    if isinstance(base.model_config, sm.SDXL):
        family = "sdxl"
    elif isinstance(base.model_config, sm.SD15):
        family = "sd1"
    elif isinstance(base.model_config, sm.SD20):  # SD2.0 / 2.1, eps or v prediction (the sigma-form step takes either)
        family = "sd2"
    else:
        raise HSpaceError(f"{name} models are not supported for h-space editing yet (SD1.x, SD2.x and SDXL are)")
    config = base.model_config.unet_config
    return family, int(config["model_channels"] * config["channel_mult"][-1])


def _timesteps(model_sampling, sigma: torch.Tensor) -> torch.Tensor:
    return model_sampling.timestep(sigma).float()
