"""Gradients into h of a ComfyUI SD MODEL: what the engine's direction training needs from a MODEL, run
through ComfyUI's own guider (conds, patches and model sampling as any sampler sees them).

``trainable(model)`` is a clone whose output blocks and ``out`` are autograd-ready copies (ComfyUI loads
weights inside ``torch.inference_mode``, and autograd cannot save inference tensors for the backward
pass; the encoder half stays shared, it runs without gradients), with an output-block patch at
("output", 0) that adds the per-row shift ``transformer_options[DH_KEY]`` ([B, C, H, W], may require
grad) to h and keeps h in ``transformer_options[H_KEY]`` (a ``Kept``) when those keys are set. The copies cost the
output half of the UNet's memory once per trained direction set.

``run_in_guider(model, positive, latents, fn)`` calls ``fn(denoise, x0, model_sampling)`` from inside a
KSAMPLER function of ComfyUI's CFGGuider at cfg 1: ``denoise(x_t, sigma, dh=None, record=None)`` is D, the
model's predicted x0 (latent units after the latent format's ``process_in``), for any batch; x0 the
latents, processed.
"""

from __future__ import annotations

import copy
from typing import Callable

import torch

from hspace_core import HSpaceError

from .family import host_family
from .patch import H_BLOCK

DH_KEY = "hspace_train_dh"
H_KEY = "hspace_train_h"


class Kept:
    """Where ``TrainPatch`` puts h (ComfyUI merges transformer_options lists into new lists, so not a list)."""

    def __init__(self):
        self.values: list[torch.Tensor] = []


class TrainPatch:
    """Output-block patch at ("output", 0): h + transformer_options[DH_KEY] (one row per batch row), and h
    kept in transformer_options[H_KEY] (a ``Kept``)."""

    def __call__(self, h, hsp, transformer_options):
        if transformer_options.get("block") != H_BLOCK:
            return h, hsp
        kept = transformer_options.get(H_KEY)
        if kept is not None:
            kept.values.append(h.detach().float())
        dh = transformer_options.get(DH_KEY)
        if dh is not None:
            if dh.shape != h.shape:
                raise HSpaceError(f"a training shift of shape {list(dh.shape)} does not fit h of shape "
                                  f"{list(h.shape)} (one shift per row of the batch, h's own shape)")
            h = h + dh.to(h.device, h.dtype)
        return h, hsp

    def to(self, device):
        return self


def _copy_for_autograd(module: torch.nn.Module) -> torch.nn.Module:
    with torch.inference_mode(False):
        out = copy.deepcopy(module)
        for p in out.parameters():
            p.data = p.data.clone()
            p.requires_grad_(False)
        for name, b in out.named_buffers():
            b.data = b.data.clone()
    return out


def shiftable(model, purpose: str = "training directions", location=None):
    """(family, h channels, a clone of the SD MODEL that takes per-row shifts of h and keeps h (``TrainPatch``),
    without gradients: for measurements); on a flow MODEL with h's place ``location``,
    ``nodes.flow.trainable.flow_shiftable``'s clone. A flow MODEL without it is refused, ``purpose`` saying
    what needed it."""
    from ..flow.family import is_flow

    if is_flow(model) and location is not None:
        from ..flow.trainable import flow_shiftable

        return flow_shiftable(model, location)
    if is_flow(model):
        raise HSpaceError(f"{purpose} through a flow transformer (Flux, SD3) is not supported yet: ComfyUI's "
                          "joint blocks add their residuals in place, which autograd cannot run backwards through "
                          "(Directions by Contrast (SD) trains through Flux.1 with its own block forwards); use the "
                          "prompt-pair, latent-set or PCA directions there")
    family, channels = host_family(model)
    m = model.clone()
    m.set_model_output_block_patch(TrainPatch())
    return family, channels, m


def trainable(model, location=None):
    """(family, h channels, a clone of the SD MODEL that takes per-row shifts of h with gradients); on a Flux.1
    MODEL with h's place ``location`` (``nodes.flow.family.HLocation``), ``nodes.flow.trainable``'s clone."""
    from ..flow.family import is_flow

    if location is not None and is_flow(model):
        from ..flow.trainable import flow_trainable

        return flow_trainable(model, location)
    family, channels, m = shiftable(model)
    unet = m.get_model_object("diffusion_model")
    m.add_object_patch("diffusion_model.output_blocks", _copy_for_autograd(unet.output_blocks))
    m.add_object_patch("diffusion_model.out", _copy_for_autograd(unet.out))
    return family, channels, m


def run_in_guider(model, positive, latents: torch.Tensor, fn: Callable, seed: int = 0):
    """``fn(denoise, x0, model_sampling)`` run inside ComfyUI's guider on the trainable ``model``; returns what
    fn returns. Exceptions raised in fn come out here."""
    import comfy.samplers

    from .inversion import _guide
    from .patch import _with_transformer_option

    ms = model.get_model_object("model_sampling")
    out: list = []

    def sample(k_model, x, sigmas, extra_args=None, callback=None, disable=None):
        extra_args = {} if extra_args is None else extra_args
        options = extra_args.get("model_options", {})

        def denoise(x_t, sigma, dh=None, record=None):
            opts = options
            if dh is not None:
                opts = _with_transformer_option(opts, DH_KEY, dh)
            if record is not None:
                opts = _with_transformer_option(opts, H_KEY, record)
            s = torch.full((x_t.shape[0],), float(sigma), device=x_t.device, dtype=x_t.dtype)
            return k_model(x_t, s, **{**extra_args, "model_options": opts})

        try:
            with torch.inference_mode(False):
                out.append(fn(denoise, x.clone(), ms))
        except BaseException as e:  # handed to the caller, outside ComfyUI's sampling wrappers
            out.append(e)
        return x

    # parameters that say requires_grad are off while training, then back: loaded under inference mode
    # (the encoder half shared with the MODEL), autograd would try to save them; loaded outside it, the blocks
    # before h would record a graph, and a Flux block's in-place residuals would break its backward pass
    frozen = [p for p in model.get_model_object("diffusion_model").parameters() if p.requires_grad]
    for p in frozen:
        p.requires_grad_(False)
    try:
        # sigma 0 and no noise: the sampler function receives the processed latents themselves
        _guide(model, positive, positive, 1.0, comfy.samplers.KSAMPLER(sample), torch.tensor([0.0, 0.0]),
               latents, torch.zeros_like(latents), seed=seed, callback=lambda *a: None, disable_pbar=True)
    finally:
        with torch.inference_mode():  # an inference tensor takes requires_grad=True only there
            for p in frozen:
                if p.is_inference():
                    p.requires_grad_(True)
        for p in frozen:
            if not p.is_inference():
                p.requires_grad_(True)
    if not out:
        raise HSpaceError("ComfyUI's guider did not run the training")
    if isinstance(out[0], BaseException):
        raise out[0]
    return out[0]
