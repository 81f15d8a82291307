"""ComfyUI's own SD1.5 / SDXL classes with tiny random configs, a tiny SD-style CLIP text encoder and a
tiny KL VAE (test helpers; ComfyUI must already be imported, on the CPU).

Weights are drawn from a seeded generator (ComfyUI's ``ops.disable_weight_init`` leaves them
uninitialised): matrices N(0, 1/fan_in), norm scales 1, biases 0, so activations keep their scale.
"""

from __future__ import annotations

import torch

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
# SD2.x's layout (SD1.5's levels, linear transformers, 64-channel heads, which the SD20 class sets); with v
# prediction, as the 768 px SD2.1 checkpoints (ComfyUI's SD20 class; a real checkpoint's model type is read
# from its weights)
SD21_TINY = dict(SD15_TINY, model_channels=64, channel_mult=[1, 1, 2, 2], use_linear_in_transformer=True,
                 num_heads=-1, num_head_channels=64)
CONTEXT = 64


def init_weights(module: torch.nn.Module, seed: int) -> None:
    g = torch.Generator().manual_seed(seed)
    norms = (torch.nn.GroupNorm, torch.nn.LayerNorm)
    module.requires_grad_(False)
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
    """A ModelPatcher holding ComfyUI's SD15, SDXL or SD20 (v prediction: "sd21v") model class with a tiny UNet
    (random weights)."""
    import comfy.model_base
    import comfy.model_management as mm
    import comfy.model_patcher
    import comfy.supported_models as sm

    if kind == "sd21v":
        model = comfy.model_base.BaseModel(sm.SD20(dict(SD21_TINY)), model_type=comfy.model_base.ModelType.V_PREDICTION,
                                           device="cpu")
    else:
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


CLIP_TINY = {"architectures": ["CLIPTextModel"], "attention_dropout": 0.0, "bos_token_id": 0, "dropout": 0.0,
             "eos_token_id": 49407, "hidden_act": "quick_gelu", "hidden_size": CONTEXT, "initializer_factor": 1.0,
             "initializer_range": 0.02, "intermediate_size": 128, "layer_norm_eps": 1e-05,
             "max_position_embeddings": 77, "model_type": "clip_text_model", "num_attention_heads": 4,
             "num_hidden_layers": 2, "pad_token_id": 1, "projection_dim": CONTEXT, "torch_dtype": "float32",
             "vocab_size": 49408}
VAE_TINY = {"double_z": True, "z_channels": 4, "resolution": 64, "in_channels": 3, "out_ch": 3, "ch": 32,
            "ch_mult": [1, 2, 4, 4], "num_res_blocks": 1, "attn_resolutions": [], "dropout": 0.0}


def tiny_clip(seed: int = 1):
    """ComfyUI's CLIP object (SD1 tokenizer, SD1ClipModel) around a 2-layer, 64-wide text encoder."""
    import comfy.sd
    import comfy.sd1_clip

    class TinyClipL(comfy.sd1_clip.SDClipModel):
        def __init__(self, device="cpu", dtype=None, model_options={}):
            super().__init__(device=device, dtype=dtype, model_options=model_options, textmodel_json_config=CLIP_TINY,
                             return_projected_pooled=False)

    class Target:
        params = {}
        clip = comfy.sd1_clip.SD1ClipModel
        tokenizer = comfy.sd1_clip.SD1Tokenizer

    clip = comfy.sd.CLIP(Target(), model_options={"clip_l_class": TinyClipL})
    init_weights(clip.cond_stage_model, seed)
    return clip


def tiny_vae(seed: int = 2):
    """ComfyUI's VAE object around a KL autoencoder of SD's layout (x8 down, 4 latent channels), 32 wide."""
    import comfy.sd
    from comfy.ldm.models.autoencoder import AutoencoderKL

    config = {"params": {"ddconfig": dict(VAE_TINY), "embed_dim": 4}}
    module = AutoencoderKL(**config["params"])
    init_weights(module, seed)
    return comfy.sd.VAE(sd=module.state_dict(), config=config)


# ComfyUI's flow transformers at tiny widths, each in its own supported-model class (sampling, latent format,
# conditioning as a checkpoint of that kind gives them)
FLUX_TINY = dict(image_model="flux", in_channels=16, out_channels=16, vec_in_dim=CONTEXT, context_in_dim=CONTEXT,
                 hidden_size=64, mlp_ratio=4.0, num_heads=2, depth=3, depth_single_blocks=2, axes_dim=[8, 12, 12],
                 theta=10000, patch_size=2, qkv_bias=True, guidance_embed=True, txt_ids_dims=[])
FLUX2_TINY = dict(image_model="flux2", in_channels=128, out_channels=128, vec_in_dim=None, context_in_dim=CONTEXT,
                  hidden_size=64, mlp_ratio=3.0, num_heads=2, depth=3, depth_single_blocks=2, axes_dim=[8, 8, 8, 8],
                  theta=2000, patch_size=1, qkv_bias=False, guidance_embed=True, txt_ids_dims=[3],
                  global_modulation=True, mlp_silu_act=True, ops_bias=False, default_ref_method="index",
                  ref_index_scale=10.0)
SD3_TINY = dict(in_channels=16, out_channels=16, patch_size=2, depth=2, input_size=None, adm_in_channels=CONTEXT,
                context_embedder_config={"target": "torch.nn.Linear",
                                         "params": {"in_features": CONTEXT, "out_features": 128}},
                num_patches=1024, pos_embed_max_size=32, pos_embed_scaling_factor=None, qk_norm="rms",
                x_block_self_attn_layers=[0])
FLOW_KINDS = ("flux", "flux_schnell", "flux2", "sd3")


def tiny_flow_model(kind: str = "flux", seed: int = 0, out_scale: float = 0.1):
    """A ModelPatcher holding ComfyUI's Flux (dev: distilled guidance), FluxSchnell, Flux2 or SD3 model class
    with a tiny transformer (random weights); SD3 with SD3.5's extra image self-attention in block 0."""
    import comfy.model_management as mm
    import comfy.model_patcher
    import comfy.supported_models as sm

    if kind == "flux":
        model = sm.Flux(dict(FLUX_TINY)).get_model({}, device="cpu")
    elif kind == "flux_schnell":
        model = sm.FluxSchnell(dict(FLUX_TINY, guidance_embed=False)).get_model({}, device="cpu")
    elif kind == "flux2":
        model = sm.Flux2(dict(FLUX2_TINY)).get_model({}, device="cpu")
    elif kind == "sd3":
        model = sm.SD3(dict(SD3_TINY)).get_model({}, device="cpu")
    else:
        raise ValueError(kind)
    init_weights(model.diffusion_model, seed)
    with torch.no_grad():
        for name, p in model.diffusion_model.named_parameters():
            if name.startswith("final_layer.linear"):
                p.mul_(out_scale)
            if "norm" in name and ("scale" in name or name.endswith(".weight")) and p.ndim == 1:
                p.fill_(1.0)  # RMS / layer norm scales
    model.diffusion_model.eval().requires_grad_(False)
    return comfy.model_patcher.ModelPatcher(model, load_device=mm.get_torch_device(),
                                           offload_device=mm.unet_offload_device())


def flow_conditioning(seed: int, kind: str = "flux", tokens: int = 8, guidance: float = 3.5):
    """A CONDITIONING as a Flux / SD3 text encoder gives it: hidden states [1, tokens, 64] and a pooled vector
    (Flux dev: the distilled guidance too)."""
    g = torch.Generator().manual_seed(seed)
    extra = {"pooled_output": torch.randn(1, CONTEXT, generator=g)}
    if kind in ("flux", "flux2"):
        extra["guidance"] = guidance
    return [[torch.randn(1, tokens, CONTEXT, generator=g), extra]]


def flow_latent_channels(kind: str) -> int:
    return {"flux": 16, "flux_schnell": 16, "flux2": 128, "sd3": 16}[kind]


VAE16_TINY = dict(VAE_TINY, z_channels=16)


def tiny_vae16(seed: int = 3):
    """ComfyUI's VAE object around a KL autoencoder with Flux's and SD3's 16 latent channels, 32 wide."""
    import comfy.sd
    from comfy.ldm.models.autoencoder import AutoencoderKL

    config = {"params": {"ddconfig": dict(VAE16_TINY), "embed_dim": 16}}
    module = AutoencoderKL(**config["params"])
    init_weights(module, seed)
    return comfy.sd.VAE(sd=module.state_dict(), config=config)
