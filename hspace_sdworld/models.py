"""The miniature SD world's three networks as ComfyUI objects, built by ComfyUI's own constructors from
``configs`` and state dicts: the MODEL (a ``ModelPatcher`` around ``comfy.supported_models.SD15``'s
model), the CLIP (``comfy.sd.CLIP`` with SD1's tokenizer and an ``SDClipModel`` of
``configs.CLIP_TEXT``) and the VAE (``comfy.sd.VAE`` around ``AutoencoderKL``). Devices and dtypes
follow ComfyUI's model management, as for any checkpoint. Every ``comfy`` import is inside a function.

``text_encoder_from_tiny_clip`` turns the embedded tiny CLIP's text tower (open_clip names) into the
text encoder's state dict (HF CLIPTextModel names, as a ``clip_l`` file holds them).
"""

from __future__ import annotations

from pathlib import Path

import torch

from hspace_core.errors import HSpaceError

from .configs import (CLIP_TEXT, DEFAULT_LEVELS, FLOW, FLOW_SHIFT, LEGACY_LEVELS, UNET_LEVELS, VAE, VAE_EMBED_DIM,
                      unet_config)
from .train_common import init_comfy_module


def _comfy():
    from .comfy_import import import_comfy

    import_comfy()


def _check_keys(what: str, expected: dict, state: dict, source: str) -> None:
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    wrong = sorted(k for k in set(expected) & set(state) if tuple(expected[k].shape) != tuple(state[k].shape))
    if missing or unexpected or wrong:
        parts = [f"{len(missing)} missing (e.g. {missing[:2]})" if missing else "",
                 f"{len(unexpected)} unexpected (e.g. {unexpected[:2]})" if unexpected else "",
                 f"{len(wrong)} of another shape (e.g. {wrong[0]}: {tuple(state[wrong[0]].shape)} instead of "
                 f"{tuple(expected[wrong[0]].shape)})" if wrong else ""]
        raise HSpaceError(f"{source} is not the miniature SD world's {what}: " + "; ".join(p for p in parts if p))
    bad = [k for k, v in state.items() if v.is_floating_point() and not bool(torch.isfinite(v).all())]
    if bad:
        raise HSpaceError(f"{source}: the {what} weights hold NaN or infinity (e.g. {bad[0]})")


# ------------------------------------------------------------------ VAE

def vae_module(seed: int | None = None):
    """ComfyUI's ``AutoencoderKL`` of ``configs.VAE`` (seeded initialisation when ``seed`` is given)."""
    _comfy()
    from comfy.ldm.models.autoencoder import AutoencoderKL

    module = AutoencoderKL(ddconfig=dict(VAE), embed_dim=VAE_EMBED_DIM)
    return init_comfy_module(module, seed) if seed is not None else module


def build_vae(state: dict, source: str = "the VAE file"):
    """ComfyUI's VAE object (``comfy.sd.VAE``) around the world's autoencoder with ``state``."""
    _comfy()
    import comfy.sd

    _check_keys("VAE", vae_module().state_dict(), state, source)
    return comfy.sd.VAE(sd=dict(state), config={"params": {"ddconfig": dict(VAE), "embed_dim": VAE_EMBED_DIM}})


# ------------------------------------------------------------------ text encoder (CLIP)

def _clip_l_class():
    import comfy.sd1_clip

    class DemoClipL(comfy.sd1_clip.SDClipModel):
        """SD1's CLIP-L text encoder class at the miniature world's size (``configs.CLIP_TEXT``)."""

        def __init__(self, device="cpu", dtype=None, model_options={}):
            super().__init__(device=device, dtype=dtype, model_options=model_options,
                             textmodel_json_config=dict(CLIP_TEXT), return_projected_pooled=False)

    return DemoClipL


def build_clip(state: dict | None, source: str = "the text encoder file"):
    """ComfyUI's CLIP object: SD1's tokenizer and ``SD1ClipModel`` around the world's text encoder
    (``state`` in CLIPTextModel names, e.g. ``text_model.encoder.layers.0.mlp.fc1.weight``)."""
    _comfy()
    import comfy.sd
    import comfy.sd1_clip

    class Target:
        params = {}
        clip = comfy.sd1_clip.SD1ClipModel
        tokenizer = comfy.sd1_clip.SD1Tokenizer

    clip = comfy.sd.CLIP(Target(), model_options={"clip_l_class": _clip_l_class()})
    if state is not None:
        _check_keys("text encoder", clip.cond_stage_model.clip_l.transformer.state_dict(), state, source)
        clip.load_sd(dict(state))
    return clip


def text_encoder_from_tiny_clip(open_clip_state: dict) -> dict:
    """The tiny CLIP's text tower (open_clip names, context 32) as a ``configs.CLIP_TEXT`` state dict.

    Same tokens, same maths: open_clip's fused ``in_proj`` splits into q, k, v; ``text_projection`` is
    applied as x @ P there and as a linear layer (x @ W^T) here, so W = P^T. SD1's tokenizer gives 77
    positions, the tower knows 32: positions 32..76 (only ever padding after the end token in the
    world's captions) reuse position 31's embedding."""
    s = {k: v.float() for k, v in open_clip_state.items()}
    width = CLIP_TEXT["hidden_size"]
    pos = s["positional_embedding"]
    extra = CLIP_TEXT["max_position_embeddings"] - pos.shape[0]
    out = {"text_model.embeddings.token_embedding.weight": s["token_embedding.weight"],
           "text_model.embeddings.position_embedding.weight": torch.cat([pos, pos[-1:].expand(extra, width)]),
           "text_model.final_layer_norm.weight": s["ln_final.weight"],
           "text_model.final_layer_norm.bias": s["ln_final.bias"],
           "text_projection.weight": s["text_projection"].t().contiguous()}
    for i in range(CLIP_TEXT["num_hidden_layers"]):
        a, b = f"transformer.resblocks.{i}.", f"text_model.encoder.layers.{i}."
        for name, w, bias in zip(("q_proj", "k_proj", "v_proj"), s[a + "attn.in_proj_weight"].chunk(3),
                                 s[a + "attn.in_proj_bias"].chunk(3)):
            out[b + f"self_attn.{name}.weight"], out[b + f"self_attn.{name}.bias"] = w, bias
        pairs = {"self_attn.out_proj": "attn.out_proj", "layer_norm1": "ln_1", "layer_norm2": "ln_2",
                 "mlp.fc1": "mlp.c_fc", "mlp.fc2": "mlp.c_proj"}
        for new, old in pairs.items():
            out[b + new + ".weight"], out[b + new + ".bias"] = s[a + old + ".weight"], s[a + old + ".bias"]
    return out


def encode_prompts(clip, prompts: list[str]) -> torch.Tensor:
    """[N, 77, 64] conditioning of each prompt, exactly as ``CLIPTextEncode`` computes it."""
    return torch.cat([clip.encode_from_tokens(clip.tokenize(p)) for p in prompts])


# ------------------------------------------------------------------ UNet (MODEL)

def _patched(config, state: dict, builder):
    """A ``ModelPatcher`` of ``builder``'s ComfyUI model with ``state`` (``diffusion_model`` key names without
    the prefix), on ComfyUI's device with ComfyUI's choice of dtype, as its diffusion-model loader does for a
    detected checkpoint."""
    import comfy.model_management as mm
    import comfy.model_patcher
    import comfy.utils

    load_device, offload_device = mm.get_torch_device(), mm.unet_offload_device()
    dtype = mm.unet_dtype(model_params=comfy.utils.calculate_parameters(state),
                          supported_dtypes=list(config.supported_inference_dtypes))
    config.set_inference_dtype(dtype, mm.unet_manual_cast(dtype, load_device, config.supported_inference_dtypes))
    model = builder(config).to(offload_device)
    model.load_model_weights(dict(state), "")
    return comfy.model_patcher.ModelPatcher(model, load_device=load_device, offload_device=offload_device)


def unet_model(seed: int | None = None, device: str = "cpu", levels: int = DEFAULT_LEVELS):
    """ComfyUI's ``SD15`` model (``BaseModel``: eps prediction on SD's schedule, SD1.5 latent format)
    with the world's UNet of ``levels`` levels (``configs.UNET_LEVELS``); ``seed``: seeded initialisation
    for training."""
    _comfy()
    import comfy.supported_models as sm

    model = sm.SD15(unet_config(levels)).get_model({}, device=device)
    if seed is not None:
        init_comfy_module(model.diffusion_model, seed)
    return model


def build_model(state: dict, source: str = "the UNet file", levels: int = DEFAULT_LEVELS):
    """A MODEL (``ModelPatcher``) of the world's UNet of ``levels`` levels with ``state``
    (``diffusion_model`` key names without the prefix), on ComfyUI's device with ComfyUI's choice of
    dtype, as its diffusion-model loader does for a detected checkpoint."""
    _comfy()
    import comfy.supported_models as sm

    _check_keys(f"UNet ({levels} levels)", unet_model(levels=levels).diffusion_model.state_dict(), state, source)
    return _patched(sm.SD15(unet_config(levels)), state, lambda c: c.get_model({}, ""))


# ------------------------------------------------------------------ flow transformer (MODEL)

def flow_config():
    """ComfyUI's supported-model configuration of the flow world's transformer: ``comfy.supported_models.Flux``
    (CONST flow sampling through ``ModelSamplingFlux`` with ``configs.FLOW_SHIFT``) with ``configs.FLOW`` and
    the latent format of the SD world's VAE, whose latents it models (SD1.5's: 4 channels, scale 0.18215)."""
    _comfy()
    import comfy.latent_formats
    import comfy.supported_models as sm

    class FlowWorld(sm.Flux):
        unet_config = dict(FLOW)
        sampling_settings = {"shift": FLOW_SHIFT}
        latent_format = comfy.latent_formats.SD15

    return FlowWorld(dict(FLOW))


def init_flow_(flux, seed: int):
    """Seeded initialisation for training (``init_comfy_module``; RMSNorm scales 1), then adaLN-zero as
    DiT (Peebles and Xie): every modulation layer and the final projection start at zero, so each block
    starts as the identity and the model's first output is zero."""
    init_comfy_module(flux, seed)
    with torch.no_grad():
        for name, m in flux.named_modules():
            if type(m).__name__ == "Modulation" or name in ("final_layer.adaLN_modulation.1", "final_layer.linear"):
                for p in m.parameters():
                    p.zero_()
    return flux


def flow_model(seed: int | None = None, device: str = "cpu"):
    """ComfyUI's ``Flux`` model (``model_base.Flux``) with the world's transformer; ``seed``: seeded
    initialisation for training (``init_flow_``)."""
    model = flow_config().get_model({}, device=device)
    if seed is not None:
        init_flow_(model.diffusion_model, seed)
    return model


def build_flow_model(state: dict, source: str = "the flow transformer file"):
    """A MODEL (``ModelPatcher``) of the flow world's transformer with ``state``."""
    _check_keys("flow transformer", flow_model().diffusion_model.state_dict(), state, source)
    return _patched(flow_config(), state, lambda c: c.get_model({}, ""))


# ------------------------------------------------------------------ the shipped files

WEIGHTS = Path(__file__).resolve().parent / "weights"
FILES = {"unet": "unet.safetensors", "text_encoder": "text_encoder.safetensors", "vae": "vae.safetensors",
         "flow": "flow.safetensors"}


def read_weights(name: str, folder=WEIGHTS) -> tuple[dict, dict]:
    """The float32 state dict of one shipped network (``FILES``) and the file's metadata; a clear error
    when it is missing or not a safetensors file of ours (read by the engine's one safetensors reader,
    which runs nothing)."""
    from hspace_core.checkpoint_files import read_safetensors

    path = Path(folder) / FILES[name]
    if not path.exists():
        raise HSpaceError(f"the miniature world's {name} weights are missing ({path}); rebuild them with "
                          "`python -m hspace_sdworld` (see docs/sd_world/README.md)")
    state, metadata = read_safetensors(path)
    return {k: v.float() for k, v in state.items()}, dict(metadata or {})


def unet_levels(metadata: dict, source: str) -> int:
    """The UNet's number of levels as its exported file records it (``hspace.unet_levels``); files written
    before the setting existed hold the three-level UNet."""
    value = metadata.get("hspace.unet_levels", str(LEGACY_LEVELS))
    if value not in {str(k) for k in UNET_LEVELS}:
        raise HSpaceError(f"{source} records a UNet of {value!r} levels; the miniature SD world's UNet has "
                          f"{' or '.join(str(k) for k in sorted(UNET_LEVELS))}")
    return int(value)


def load_demo(folder=None):
    """(MODEL, CLIP, VAE) of the miniature SD world from its shipped files, as a checkpoint loader gives
    them. ``folder``: another folder of the three files (default: ``HSPACE_SDWORLD_WEIGHTS`` if set, for
    trying retrained weights, else the shipped ones)."""
    import os

    base = Path(folder or os.environ.get("HSPACE_SDWORLD_WEIGHTS") or WEIGHTS)
    source = str(base / FILES["unet"])
    unet, metadata = read_weights("unet", base)
    model = build_model(unet, source, unet_levels(metadata, source))
    clip = build_clip(read_weights("text_encoder", base)[0], str(base / FILES["text_encoder"]))
    vae = build_vae(read_weights("vae", base)[0], str(base / FILES["vae"]))
    return model, clip, vae


def load_flow_demo(folder=None):
    """(MODEL, CLIP, VAE) of the miniature flow world: its transformer (``flow.safetensors``) with the SD world's
    text encoder and VAE, from the shipped files (``folder``: another folder of those files; default
    ``HSPACE_SDWORLD_WEIGHTS`` if set, else the shipped ones)."""
    import os

    from .train_flow import FORMAT

    base = Path(folder or os.environ.get("HSPACE_SDWORLD_WEIGHTS") or WEIGHTS)
    source = str(base / FILES["flow"])
    state, metadata = read_weights("flow", base)
    if metadata.get("hspace.format") != FORMAT:
        raise HSpaceError(f"{source} is not the miniature flow world's transformer (format "
                          f"{metadata.get('hspace.format')!r}, expected {FORMAT!r})")
    model = build_flow_model(state, source)
    clip = build_clip(read_weights("text_encoder", base)[0], str(base / FILES["text_encoder"]))
    vae = build_vae(read_weights("vae", base)[0], str(base / FILES["vae"]))
    return model, clip, vae
