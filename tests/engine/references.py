"""Reference implementations, real configurations and real file formats for the parity tests.

References: diffusers ``UNet2DModel`` and openai's ``guided_diffusion`` (guided-diffusion-sdk).
The DDIM/SDEdit family is checked through diffusers with the key map of checkpoints.md 4.6,
written out here independently of the loader.
"""

from __future__ import annotations

import re

import torch

# google/ddpm-{,ema-}celebahq-256 config.json (checkpoints.md 4.2); same for church, bedroom, cat.
GOOGLE_256 = dict(
    act_fn="silu", attention_head_dim=None, block_out_channels=[128, 128, 256, 256, 512, 512],
    center_input_sample=False,
    down_block_types=["DownBlock2D", "DownBlock2D", "DownBlock2D", "DownBlock2D", "AttnDownBlock2D", "DownBlock2D"],
    up_block_types=["UpBlock2D", "AttnUpBlock2D", "UpBlock2D", "UpBlock2D", "UpBlock2D", "UpBlock2D"],
    downsample_padding=0, flip_sin_to_cos=False, freq_shift=1, in_channels=3, out_channels=3,
    layers_per_block=2, mid_block_scale_factor=1, norm_eps=1e-06, norm_num_groups=32, sample_size=256,
    time_embedding_type="positional",
)
GOOGLE_CIFAR10 = dict(GOOGLE_256, block_out_channels=[128, 256, 256, 256],
                      down_block_types=["DownBlock2D", "AttnDownBlock2D", "DownBlock2D", "DownBlock2D"],
                      up_block_types=["UpBlock2D", "UpBlock2D", "AttnUpBlock2D", "UpBlock2D"], sample_size=32)
GOOGLE_SCHEDULER = {"_class_name": "DDPMScheduler", "beta_schedule": "linear", "beta_start": 0.0001,
                    "beta_end": 0.02, "num_train_timesteps": 1000, "clip_sample": True,
                    "variance_type": "fixed_small", "trained_betas": None}

# guided-diffusion UNetModel arguments of the released checkpoints (checkpoints.md 3.1, asyrp.md 8).
P2_CELEBA_256 = dict(image_size=256, in_channels=3, model_channels=128, out_channels=6, num_res_blocks=1,
                     attention_resolutions=(16,), channel_mult=(1, 1, 2, 2, 4, 4), num_head_channels=64,
                     use_scale_shift_norm=True, resblock_updown=True)
ILVR_AFHQ_256 = dict(P2_CELEBA_256)  # Asyrp's AFHQ_DICT: identical flags
ADM_IMAGENET_256 = dict(image_size=256, in_channels=3, model_channels=256, out_channels=6, num_res_blocks=2,
                        attention_resolutions=(8, 16, 32), channel_mult=(1, 1, 2, 2, 4, 4), num_head_channels=64,
                        use_scale_shift_norm=True, resblock_updown=True)
IDDPM_CIFAR10 = dict(image_size=32, in_channels=3, model_channels=128, out_channels=6, num_res_blocks=3,
                     attention_resolutions=(2, 4), channel_mult=(1, 2, 2, 2), num_heads=4,
                     use_scale_shift_norm=True, resblock_updown=False)
IDDPM_LSUN_256 = dict(image_size=256, in_channels=3, model_channels=128, out_channels=6, num_res_blocks=2,
                      attention_resolutions=(16,), channel_mult=(1, 1, 2, 2, 4, 4), num_heads=1,
                      use_scale_shift_norm=False, resblock_updown=False)


def randomize_(module: torch.nn.Module, seed: int) -> torch.nn.Module:
    """Give every parameter random values (ADM zero-initialises its output convs, which would hide
    differences): weights ~ N(0, 1/fan_in), biases ~ N(0, 0.05), norm scales ~ 1 + N(0, 0.1)."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in module.named_parameters():
            if p.ndim > 1:
                p.copy_(torch.randn(p.shape, generator=g) / (p[0].numel() ** 0.5))
            elif "norm" in name and name.endswith("weight") or re.search(r"(in|out)_layers\.0\.weight|out\.0\.weight", name):
                p.copy_(1 + 0.1 * torch.randn(p.shape, generator=g))
            else:
                p.copy_(0.05 * torch.randn(p.shape, generator=g))
    return module.eval()


def diffusers_unet(config: dict, seed: int):
    from diffusers import UNet2DModel

    return randomize_(UNet2DModel(**config), seed)


def guided_unet(kwargs: dict, seed: int):
    from guided_diffusion.unet import UNetModel

    return randomize_(UNetModel(**kwargs), seed)


def ddim_keys_from_diffusers(sd: dict[str, torch.Tensor], levels: int) -> dict[str, torch.Tensor]:
    """The documented diffusers -> ermongroup/ddim key map (checkpoints.md 4.6), as a reference."""
    out = {}
    for k, v in sd.items():
        n = k.replace("time_embedding.linear_1", "temb.dense.0").replace("time_embedding.linear_2", "temb.dense.1")
        n = n.replace("conv_norm_out", "norm_out")
        m = re.match(r"up_blocks\.(\d+)\.(.*)", n)
        if m:
            n = f"up.{levels - 1 - int(m.group(1))}.{m.group(2)}"
        n = n.replace("down_blocks.", "down.").replace(".resnets.", ".block.").replace(".attentions.", ".attn.")
        n = n.replace(".downsamplers.0", ".downsample").replace(".upsamplers.0", ".upsample")
        n = n.replace("mid_block.block.0", "mid.block_1").replace("mid_block.block.1", "mid.block_2")
        n = n.replace("mid_block.attn.0", "mid.attn_1")
        n = n.replace("time_emb_proj", "temb_proj").replace("conv_shortcut", "nin_shortcut")
        for a, b in (("group_norm", "norm"), ("to_q", "q"), ("to_k", "k"), ("to_v", "v"), ("to_out.0", "proj_out")):
            n = n.replace(f".{a}.", f".{b}.")
        if re.search(r"\.(q|k|v|proj_out)\.weight$", n):
            v = v[:, :, None, None]
        out[n] = v.clone()
    return out


def legacy_attention_names(sd: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Rename current diffusers attention keys to the pre-0.14 spelling of the google .bin files."""
    names = {"to_q": "query", "to_k": "key", "to_v": "value", "to_out.0": "proj_attn"}
    out = {}
    for k, v in sd.items():
        for a, b in names.items():
            k = k.replace(f".{a}.", f".{b}.")
        out[k] = v
    return out


def run_with_middle(module: torch.nn.Module, middle: torch.nn.Module, *args):
    """Run the reference ``module`` and capture its middle block's output (h) with a forward hook."""
    captured = {}
    handle = middle.register_forward_hook(lambda m, i, o: captured.__setitem__("h", o))
    try:
        with torch.no_grad():
            out = module(*args)
    finally:
        handle.remove()
    return out, captured["h"]


def rel_err(a: torch.Tensor, b: torch.Tensor) -> float:
    """max |a - b| / max |b|."""
    return float((a - b).abs().max() / b.abs().max())


def tiny_model(network: str = "ddpm", seed: int = 0, size: int = 32):
    """A small random-weights HSpaceModel (no file) for sampler and direction invariants."""
    from hspace_core import linear_schedule
    from hspace_core.model import Family, HSpaceModel
    from hspace_core.unets import ADMConfig, ADMUNet, DDPMConfig, DDPMUNet

    if network == "ddpm":
        cfg = DDPMConfig(ch=32, ch_mult=(1, 2, 2), num_res_blocks=1, attn_levels_down=(1,), attn_levels_up=(1,),
                         image_size=size)
        net, family = DDPMUNet(cfg), Family.DDIM
    else:
        cfg = ADMConfig(model_channels=32, channel_mult=(1, 2, 2), num_res_blocks=1, attention_ds=(2,),
                        num_head_channels=32, image_size=size)
        net, family = ADMUNet(cfg), Family.ADM
    randomize_(net, seed)
    with torch.no_grad():  # keep eps of unit scale so trajectories stay bounded
        last = net.conv_out if network == "ddpm" else net.out[2]
        last.weight.mul_(0.3)
    return HSpaceModel(net.requires_grad_(False), family, cfg, linear_schedule(1000))
