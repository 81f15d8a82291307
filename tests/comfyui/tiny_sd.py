"""ComfyUI's own SD1.5 and SDXL model classes from tiny random configs, in this process (test helper).

``comfy_modules()`` imports ComfyUI from the real tree (``harness.find_comfyui``) on the CPU; the
ComfyUI root is appended to ``sys.path`` (after the checkout, so the pack's ``nodes`` package keeps its
name; ComfyUI's own ``nodes`` module is never imported here). Weights are drawn from a seeded generator
(ComfyUI's ``ops.disable_weight_init`` leaves them uninitialised): matrices N(0, 1/fan_in), norm
scales 1, biases 0, so activations keep their scale through the network.
"""

from __future__ import annotations

import sys

import torch

from .harness import find_comfyui, missing_requirements

SD15_TINY = dict(image_size=32, in_channels=4, out_channels=4, model_channels=32, num_res_blocks=[1, 1, 1, 1],
                 channel_mult=[1, 2, 4, 4], transformer_depth=[1, 1, 1, 0], transformer_depth_middle=1,
                 transformer_depth_output=[1, 1, 1, 1, 1, 1, 0, 0], use_spatial_transformer=True, legacy=False,
                 context_dim=64, num_heads=8, use_linear_in_transformer=False, adm_in_channels=None,
                 use_temporal_attention=False, use_temporal_resblock=False)
# SDXL's layout (three levels, h at 1/4 of the latent, linear transformers, ADM input = pooled 64 + 6 x 256)
SDXL_TINY = dict(image_size=32, in_channels=4, out_channels=4, model_channels=32, num_res_blocks=[1, 1, 1],
                 channel_mult=[1, 2, 4], transformer_depth=[0, 1, 1], transformer_depth_middle=1,
                 transformer_depth_output=[0, 0, 1, 1, 1, 1], use_spatial_transformer=True, legacy=False,
                 context_dim=64, num_heads=-1, num_head_channels=16, use_linear_in_transformer=True, adm_in_channels=64 + 1536,
                 num_classes="sequential",
                 use_temporal_attention=False, use_temporal_resblock=False)
CONTEXT = 64


def comfy_available() -> str | None:
    """None when ComfyUI can be imported here, else why not."""
    root, how = find_comfyui()
    if root is None:
        return how
    missing = missing_requirements()
    if missing:
        return f"ComfyUI's requirements are not installed ({', '.join(missing)})"
    return None


def comfy_modules():
    """Import ComfyUI (CPU) once; returns its root."""
    root, _ = find_comfyui()
    if str(root) not in sys.path:
        sys.path.append(str(root))
    import comfy.cli_args

    comfy.cli_args.args.cpu = True
    import comfy.model_management  # noqa: F401  (after args.cpu)
    return root


def init_weights(module: torch.nn.Module, seed: int) -> None:
    g = torch.Generator().manual_seed(seed)
    norms = (torch.nn.GroupNorm, torch.nn.LayerNorm)
    with torch.no_grad():
        for mod in module.modules():
            for name, p in mod.named_parameters(recurse=False):
                if p.numel() == 0:
                    continue
                if isinstance(mod, norms) and name == "weight":
                    p.fill_(1.0)
                elif p.ndim > 1:
                    p.copy_(torch.randn(p.shape, generator=g) / p[0].numel() ** 0.5)
                else:
                    p.zero_()


def tiny_model(kind: str = "sd15", seed: int = 0, out_scale: float = 0.1):
    """A ModelPatcher holding ComfyUI's SD15 or SDXL model class with a tiny UNet (random weights)."""
    comfy_modules()
    import comfy.model_management as mm
    import comfy.model_patcher
    import comfy.supported_models as sm

    cls, config = (sm.SD15, SD15_TINY) if kind == "sd15" else (sm.SDXL, SDXL_TINY)
    model = cls(dict(config)).get_model({}, device="cpu")
    init_weights(model.diffusion_model, seed)
    with torch.no_grad():  # a tame eps (~0.1): a smooth denoiser, as a trained one is along its trajectories
        model.diffusion_model.out[-1].weight.mul_(out_scale)
    model.diffusion_model.eval().requires_grad_(False)
    return comfy.model_patcher.ModelPatcher(model, load_device=mm.get_torch_device(),
                                           offload_device=mm.unet_offload_device())


def conditioning(seed: int, kind: str = "sd15", tokens: int = 77, width: int = 64, height: int = 64):
    """A CONDITIONING of a random prompt embedding ([1, tokens, 64]; SDXL: with a pooled vector)."""
    g = torch.Generator().manual_seed(seed)
    extra = {"pooled_output": torch.randn(1, CONTEXT, generator=g)}
    if kind == "sdxl":
        extra.update(width=width, height=height, crop_w=0, crop_h=0, target_width=width, target_height=height)
    return [[torch.randn(1, tokens, CONTEXT, generator=g), extra]]
