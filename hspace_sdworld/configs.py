"""The miniature SD world's networks, in the layouts of Stable Diffusion 1.5 scaled down.

Resolution: faces at 64 px, so the x8 VAE gives 4 x 8 x 8 latents and the shipped UNet's two levels
(8, 4) put h, the middle block's output, at 192 x 4 x 4: four rows of h, so that an edit kept per
position can act on the mouth's row without the eyes' (the three-level UNet's h, 192 x 2 x 2, puts both
in one row; docs/sd_world/experiments). SD1.5's own four levels would need 128 px for even a 2 x 2 h
(16 x 16 latents, about 4x the training cost per step, measured).

  * UNet (``UNET``): ComfyUI's ``SD15`` model class (eps prediction, SD's scaled-linear schedule,
    the SD1.5 latent format with scale 0.18215), channels 64 / 192, one res block per level,
    cross-attention transformers at both levels and in the middle block, conv in / out projections as
    SD1.5, context 64. 8.2 M parameters (the three-level one: 64 / 128 / 192, no transformer at the
    lowest level as SD1.5, 8.7 M; one training step at batch 64 cost 0.39 s on 2 CPU cores, measured).
  * VAE (``VAE``): ComfyUI's ``AutoencoderKL`` (the ``ldm`` Encoder / Decoder with a KL latent),
    x8 down, 4 latent channels, channels 32 / 32 / 64 / 128, one res block per level. 2.8 M
    parameters; 0.76 s per training step at batch 32 (measured).
  * Text encoder (``CLIP_TEXT``): ComfyUI's ``SDClipModel`` (HF CLIPTextModel layout, SD1 tokenizer,
    77 tokens) at width 64, 3 layers, 4 heads, GELU: the shape of the embedded tiny CLIP's text tower,
    whose weights it starts from (the tokenizer is the same BPE).
"""

from __future__ import annotations

IMAGE_SIZE = 64
LATENT_SIZE = IMAGE_SIZE // 8
CONTEXT_DIM = 64
# SD1.5's latent format: the UNet sees the VAE latent times this (``comfy.latent_formats.SD15``); the VAE
# is exported with its latent scaled so that the UNet's input has unit standard deviation.
LATENT_SCALE = 0.18215

# The UNet's levels: three (channels 64 / 128 / 192, h 192 x 2 x 2 at 64 px) or two (64 / 192, h 192 x 4 x 4:
# more positions in h for an edit kept per position; docs/sd_world/experiments). Cross-attention as SD1.5:
# at every level but the lowest of three, and in the middle block.
UNET_LEVELS = {
    3: dict(num_res_blocks=[1, 1, 1], channel_mult=[1, 2, 3], transformer_depth=[1, 1, 0],
            transformer_depth_output=[1, 1, 1, 1, 0, 0]),
    2: dict(num_res_blocks=[1, 1], channel_mult=[1, 3], transformer_depth=[1, 1],
            transformer_depth_output=[1, 1, 1, 1]),
}
DEFAULT_LEVELS = 2
# runs and exported files from before the setting existed hold no level count: they are three-level, whatever
# the default becomes
LEGACY_LEVELS = 3


def unet_config(levels: int = DEFAULT_LEVELS) -> dict:
    """The ``SD15`` UNet configuration with ``levels`` levels (a key of ``UNET_LEVELS``)."""
    if levels not in UNET_LEVELS:
        raise ValueError(f"the miniature SD world's UNet has {sorted(UNET_LEVELS)} levels, not {levels!r}")
    return dict(image_size=LATENT_SIZE, in_channels=4, out_channels=4, model_channels=64,
                transformer_depth_middle=1, use_spatial_transformer=True, legacy=False, context_dim=CONTEXT_DIM,
                num_heads=4, use_linear_in_transformer=False, adm_in_channels=None, use_temporal_attention=False,
                use_temporal_resblock=False, **UNET_LEVELS[levels])


UNET = unet_config()

VAE = {"double_z": True, "z_channels": 4, "resolution": IMAGE_SIZE, "in_channels": 3, "out_ch": 3, "ch": 32,
       "ch_mult": [1, 1, 2, 4], "num_res_blocks": 1, "attn_resolutions": [], "dropout": 0.0}
VAE_EMBED_DIM = 4

CLIP_TEXT = {"architectures": ["CLIPTextModel"], "attention_dropout": 0.0, "bos_token_id": 49406, "dropout": 0.0,
             "eos_token_id": 49407, "hidden_act": "gelu", "hidden_size": CONTEXT_DIM, "initializer_factor": 1.0,
             "initializer_range": 0.02, "intermediate_size": 256, "layer_norm_eps": 1e-05,
             "max_position_embeddings": 77, "model_type": "clip_text_model", "num_attention_heads": 4,
             "num_hidden_layers": 3, "pad_token_id": 1, "projection_dim": CONTEXT_DIM, "torch_dtype": "float32",
             "vocab_size": 49408}

# What the measurements recommend for editing in this world (bench/sd_claims.py; README, "The miniature SD
# world"): the sampler's steps and cfg, and for the prompt-pair smile (8 seeds, h kept per position and
# restricted to the image rows from ``region_from`` down by Direction Region: the mouth's row of the 4 x 4 h)
# its edit interval [t_edit, t_end], its largest strength and the CFG branch it acts on. t_end 700 rather
# than 999 keeps the pose (head tilt, face width) that the noisiest steps set. This UNet was trained
# with most coarse skips dropped (skip_drop 0.9), so its decoder takes the content from h and the shift works
# on both CFG branches, as on the pixel side (the earlier skip_drop 0.5 UNet needed the cond branch alone:
# docs/sd_world/experiments). Negative strengths do not take the smile away (they change the face in other
# ways), so the sweeps run from 0 up. Edits of inverted images sample at cfg 1, with ``real_strength`` over
# [t_edit, ``real_t_end``]: the shorter interval keeps more of the photo and moves the smile further there.
RECOMMENDED = {"steps": 30, "cfg": 5.0, "t_edit": 200, "t_end": 700, "strength": 6.0, "branch": "both",
               "spatial": "keep", "region_from": 48, "direction_seeds": 8, "real_strength": 12.0,
               "real_t_end": 500}

# ------------------------------------------------------------------ the flow world

# The flow world's transformer: ComfyUI's Flux class (``comfy.ldm.flux.model.Flux``: joint "double" blocks
# over text and image tokens, then "single" blocks over both, 2-D RoPE, adaLN modulation), scaled down.
# 64 px faces through the SD world's VAE give 4 x 8 x 8 latents; Flux's 2 x 2 patches make them 4 x 4 = 16
# image tokens of 16 features (the SD world's h is 4 x 4 too). Width 256 = 4 heads of 64, whose RoPE axes
# (index, row, column) take 16 / 24 / 24 features (Flux.1: 16 / 56 / 56 of 128). The text comes from the SD
# world's text encoder: its hidden states (77 x 64) feed ``txt_in`` (Flux.1: T5's 4096) and its pooled end
# token (64) ``vector_in`` (Flux.1: CLIP-L's 768). No distilled-guidance embedding: the world samples with
# classifier-free guidance, as SD3 and Flux.1 schnell's own training does not distil it either. 13.8 M
# parameters; one training step at batch 64 took 2.7 s on 2 CPU cores (measured).
FLOW = dict(image_model="flux", in_channels=4, out_channels=4, vec_in_dim=CONTEXT_DIM, context_in_dim=CONTEXT_DIM,
            hidden_size=256, mlp_ratio=4.0, num_heads=4, depth=4, depth_single_blocks=4, axes_dim=[16, 24, 24],
            theta=10000, patch_size=2, qkv_bias=True, guidance_embed=False, txt_ids_dims=[])
# Flux's sigma shift (``ModelSamplingFlux``: sigma = e^shift / (e^shift + 1 / t - 1)), the default of
# ComfyUI's Flux models; training draws its sigmas through the same shift.
FLOW_SHIFT = 1.15

# What the measurements recommend for editing in the flow world (bench/flow_claims.py; README): the sampler's steps and
# cfg, where h is (joint block and kind), the edit interval in t = 1000 sigma, the largest raw strength, the region's
# first image row (the mouth's row of the 4 x 4 token grid), the prompt pair's seeds, inverted images' strength.
# The scan (docs/flow_world/claims.json, 16 seeds): the residual stream after any joint block moves the smile
# furthest (+1.24 to +1.29 at 6) but saturates (R^2 0.66-0.76); the attention output of block 2 is linear (R^2
# 0.999) with the least drift (0.21 per unit) and the most image kept (26.0 dB), for +0.58.
FLOW_RECOMMENDED = {"steps": 30, "cfg": 5.0, "block": 2, "kind": "attention", "t_edit": 200, "t_end": 700,
                    "strength": 6.0, "region_from": 48, "direction_seeds": 8, "real_strength": 6.0, "real_t_end": 500,
                    "branch": "both", "fluxspace_scale": 1.0}
# fluxspace_scale: the largest lambda of the bench's FluxSpace row (all joint blocks, the same interval): at 1 its
# PSNR to the unedited image is the recommended Asyrp edit's (30 vs 32 dB on 4 seeds)
