"""One encoder pass for both of Asyrp's predictions: a ComfyUI ``DIFFUSION_MODEL`` wrapper.

The Asyrp sampler's edited step needs D (plain h) and D_edit (h + dh) for the same x_t, sigma and
conditioning. It asks ComfyUI's guider once, for the batch [x; x] with per-row strengths (0 for the
first half: ``EDIT_KEY``), so CFG, conds, ControlNet and every patch see an ordinary batch. In each
CFG chunk of that batch the two halves are then the same rows; this wrapper runs ComfyUI's own input
blocks and middle block on one half only, repeats h, the skips and the time embedding to every row,
and runs the output blocks on all rows: the h patch (``HSpacePatch`` at ("output", 0)) then shifts the
second half's rows. Everything below h is computed once; the decoder runs for both halves together, or
on the CPU for one half after the other (``HALVES_ONE_BY_ONE``: per-row options cut to each half).

The loop walks ComfyUI's own modules (``input_blocks``, ``middle_block``, ``output_blocks``, ``out``)
through ComfyUI's ``forward_timestep_embed`` and ``apply_control``, calls the patches ComfyUI's UNet
calls between blocks (``emb_patch``, ``input_block_patch``, ``input_block_patch_after_skip``,
``output_block_patch``: FreeU and other packs' block patches keep working) and sets the same
``transformer_options`` keys (``block``, ``original_shape``, ``transformer_index``). ControlNet
residuals of the input and middle blocks are taken for the computed half (they are the same for both
halves, which is checked), the output blocks' residuals for every row.

Where sharing is not safe it is not done: the wrapper calls ComfyUI's own forward on the whole batch
(the two predictions in one batch, exactly the two-call result) and says why once in the log. Not
safe: another diffusion-model wrapper, a model function wrapper, attention replacement patches or
patch kinds it does not know, a UNet with temporal layers, halves that are not the same rows.
"""

from __future__ import annotations

import logging

import torch

from .patch import EDIT_KEY

SHARED_KEY = "hspace_shared"  # transformer_options key: the batch is [plain half; edited half] per CFG chunk
# patch kinds the shared loop calls itself, or that run inside the transformer blocks row by row
KNOWN_PATCHES = {"emb_patch", "input_block_patch", "input_block_patch_after_skip", "output_block_patch",
                 "middle_patch", "attn1_patch", "attn2_patch", "attn1_output_patch", "attn2_output_patch"}
# devices where the output blocks run for the plain and the edited half one after the other: on the CPU a
# bigger batch buys no speed, ComfyUI's CPU attention grows faster than the batch (its chunking follows
# the free memory), and the step's peak memory stays a plain step's; elsewhere (GPUs) both halves at once
HALVES_ONE_BY_ONE = {"cpu"}
_said: set[str] = set()


def say_once(reason: str) -> None:
    if reason not in _said:
        _said.add(reason)
        logging.warning("h-space Asyrp sampler: %s; computing D and D_edit with two full UNet passes "
                        "(same result, about 2x the cost of a plain step)", reason)


def sharing_blocker(model_options: dict, extra_args: dict) -> str | None:
    """Why the paired call cannot be made at all (the sampler then makes two calls), or None."""
    if extra_args.get("denoise_mask") is not None:
        return "an inpainting mask is set (its latent and noise have the plain batch's size)"
    if "model_function_wrapper" in model_options:
        return "the MODEL has a model function wrapper (it may change the batch)"
    return None


def _pass_blocker(unet, transformer_options: dict, kwargs: dict, wrappers: int) -> str | None:
    if wrappers > 1:
        return "another diffusion-model wrapper is on the MODEL"
    if not all(hasattr(unet, a) for a in ("input_blocks", "middle_block", "output_blocks", "time_embed", "out")):
        return f"{type(unet).__name__} is not ComfyUI's UNetModel"
    if getattr(unet, "use_temporal_resblocks", False) or getattr(unet, "predict_codebook_ids", False):
        return "the UNet has temporal layers"
    if any(kwargs.get(k) is not None for k in ("num_video_frames", "image_only_indicator", "time_context")):
        return "the call carries video inputs"
    unknown = sorted(set(transformer_options.get("patches", {})) - KNOWN_PATCHES)
    if unknown:
        return f"patches of kinds {unknown} are on the MODEL"
    if transformer_options.get("patches_replace"):
        return "attention replacement patches are on the MODEL"
    return None


def _halves(chunks: int, rows: int):
    """(first-half row indices, every row's index into the first-half rows) for ``rows`` rows in ``chunks``
    CFG chunks, each chunk [plain half; edited half]."""
    per = rows // chunks
    n = per // 2
    first = torch.cat([torch.arange(c * per, c * per + n) for c in range(chunks)])
    expand = torch.cat([torch.arange(c * n, (c + 1) * n).repeat(2) for c in range(chunks)])
    second = torch.cat([torch.arange(c * per + n, (c + 1) * per) for c in range(chunks)])
    return first, second, expand


def _same(a, first, second) -> bool:
    return a is None or torch.equal(a[first], a[second])


def shared_forward(executor, x, timesteps=None, context=None, y=None, control=None, transformer_options={},
                   **kwargs):
    """The DIFFUSION_MODEL wrapper (ComfyUI's wrapper signature: ``executor`` then UNetModel._forward's
    arguments)."""
    unet = executor.class_obj
    to = transformer_options
    chunks = len(to.get("cond_or_uncond", [])) or 1
    reason = None
    if not to.get(SHARED_KEY):
        return executor(x, timesteps, context, y, control, transformer_options, **kwargs)
    reason = _pass_blocker(unet, to, kwargs, len(executor.wrappers))
    if reason is None and (x.shape[0] % (2 * chunks)):
        reason = f"the batch of {x.shape[0]} rows is not two halves in each of {chunks} chunks"
    if reason is None:
        first, second, expand = (i.to(x.device) for i in _halves(chunks, x.shape[0]))
        if not (_same(x, first, second) and _same(timesteps, first, second) and _same(context, first, second)
                and _same(y, first, second)):
            reason = "the two halves of the batch are not the same rows"
        elif control is not None and not all(_same(c, first, second) for k in ("input", "middle")
                                              for c in control.get(k, [])):
            reason = "the ControlNet residuals of the two halves differ"
    if reason is not None:
        say_once(reason)
        return executor(x, timesteps, context, y, control, transformer_options, **kwargs)
    return _encode_once(unet, x, timesteps, context, y, control, to, first, second, expand)


def _encode_once(unet, x, timesteps, context, y, control, to, first, second, expand):
    from comfy.ldm.modules.diffusionmodules.openaimodel import apply_control, forward_timestep_embed
    from comfy.ldm.modules.diffusionmodules.util import timestep_embedding

    patches = to.get("patches", {})
    half_control = None
    if control is not None:
        half_control = {k: [None if c is None else c[first] for c in v] for k, v in control.items()
                        if k in ("input", "middle")}
        half_control["output"] = control.get("output", [])
    xs = x[first]
    ctx = None if context is None else context[first]
    to["original_shape"] = list(xs.shape)
    to["transformer_index"] = 0
    emb = unet.time_embed(timestep_embedding(timesteps[first], unet.model_channels, repeat_only=False).to(x.dtype))
    for p in patches.get("emb_patch", []):
        emb = p(emb, unet.model_channels, to)
    if unet.num_classes is not None:
        emb = emb + unet.label_emb(y[first])
    h, hs = xs, []
    for i, module in enumerate(unet.input_blocks):
        to["block"] = ("input", i)
        h = forward_timestep_embed(module, h, emb, ctx, to)
        h = apply_control(h, half_control, "input")
        for p in patches.get("input_block_patch", []):
            h = p(h, to)
        hs.append(h)
        for p in patches.get("input_block_patch_after_skip", []):
            h = p(h, to)
    to["block"] = ("middle", 0)
    if unet.middle_block is not None:
        h = forward_timestep_embed(unet.middle_block, h, emb, ctx, to)
    h = apply_control(h, half_control, "middle")
    if x.device.type not in HALVES_ONE_BY_ONE:
        # every row at once: h, the skips and the time embedding repeated for the edited half
        to["original_shape"] = list(x.shape)
        return _decode(unet, h[expand], emb[expand], [s[expand] for s in hs], context, control, to, x.dtype)
    out = None
    for half, rows in enumerate((first, second)):
        sub = _rows_of(to, len(rows) // (len(to.get("cond_or_uncond", [])) or 1), half)
        sub["original_shape"] = [len(rows), *x.shape[1:]]
        row_control = None if control is None else {**control, "output": [
            None if c is None else c[rows] for c in control.get("output", [])]}
        # ComfyUI adds output residuals to the skips in place, and block patches (FreeU) write into h: the
        # first half gets copies, the second the originals
        h_, hs_ = (h.clone(), [t.clone() for t in hs]) if half == 0 else (h, list(hs))
        d = _decode(unet, h_, emb, hs_, None if context is None else context[rows], row_control, sub, x.dtype)
        if out is None:
            out = d.new_empty((x.shape[0], *d.shape[1:]))
        out[rows] = d
    return out


def _rows_of(to: dict, n: int, half: int) -> dict:
    """transformer_options for the plain (``half`` 0) or edited (1) half of every CFG chunk, n rows each: the
    per-row entries, one per row of a chunk [x; x] (ComfyUI's step sigmas; the Asyrp sampler's strengths,
    [0] * n then the edited rows'), cut to that half."""
    sub = dict(to)
    for key in ("sigmas", EDIT_KEY):
        v = to.get(key)
        if isinstance(v, torch.Tensor) and v.ndim == 1 and len(v) == 2 * n:
            sub[key] = v[half * n:(half + 1) * n]
    return sub


def _decode(unet, h, emb, hs, context, control, to, dtype):
    """ComfyUI's output blocks and ``out`` on h with the skips ``hs`` (consumed), as UNetModel._forward."""
    from comfy.ldm.modules.diffusionmodules.openaimodel import apply_control, forward_timestep_embed

    patches = to.get("patches", {})
    for i, module in enumerate(unet.output_blocks):
        to["block"] = ("output", i)
        hsp = apply_control(hs.pop(), control, "output")
        for p in patches.get("output_block_patch", []):
            h, hsp = p(h, hsp, to)
        h = torch.cat([h, hsp], dim=1)
        h = forward_timestep_embed(module, h, emb, context, to, hs[-1].shape if hs else None)
    return unet.out(h.type(dtype))
