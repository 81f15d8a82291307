"""Gradients into h of a Flux.1 MODEL: the flow counterpart of ``nodes.sd.trainable`` (same keys, same guider).

ComfyUI's Flux blocks add their residuals in place and rotate q and k with a kernel that has no autograd
formula, so no gradient reaches h through the stock forward. ``flow_trainable`` returns a clone on which every
joint block from h's block on, and every single block, runs the same maths written out of place
(``hspace_sdworld.flow_blocks``, checked against the stock forward in ``tests/comfyui/test_flow_world_models.py``)
on autograd-ready copies of their weights, through ComfyUI's own per-block hook (``patches_replace["dit"]``);
``final_layer`` is an autograd-ready copy (an object patch). The blocks before h's run stock and without
gradients. At h's block the image tokens (grid form [B, C, gh, gw], as ``patch.to_grid`` reads them, after
the block or at its attention output) are kept in ``transformer_options[H_KEY]`` and shifted by
``transformer_options[DH_KEY]`` when those are set. The copies cost the blocks from h's on once per trained
direction set, as the SD UNet's output half does.

Flux.1 (dev, schnell) only: Flux.2's and SD3's blocks differ, and are refused with the reason.

``flow_shiftable`` is the same without gradients (measurements: independent effects' effect maps), for every
flow family: the stock blocks, h kept and shifted at its place by the edit patch's own hook (``patch._OnH``).
"""

from __future__ import annotations

import torch

from hspace_core import HSpaceError

from ..sd.trainable import DH_KEY, H_KEY, _copy_for_autograd
from .family import HLocation, flow_host
from .patch import _grid, _OnH, existing_patch, from_grid, to_grid, with_grid_wrapper


def _kept_and_shifted(h: torch.Tensor, to: dict) -> torch.Tensor:
    """h [B, C, gh, gw] kept in ``to[H_KEY]`` and shifted by ``to[DH_KEY]`` (one row per row of the batch) when
    those are set."""
    kept = to.get(H_KEY)
    if kept is not None:
        kept.values.append(h.detach().float())
    dh = to.get(DH_KEY)
    if dh is None:
        return h
    if dh.shape != h.shape:
        raise HSpaceError(f"a shift of shape {list(dh.shape)} does not fit h of shape {list(h.shape)} (one shift "
                          "per row of the batch, h's own shape)")
    return h + dh.to(h.device, h.dtype)


def _on_h(tokens: torch.Tensor, to: dict) -> torch.Tensor:
    """The image tokens [B, L, C] with h (their grid) kept and shifted as ``to`` asks."""
    h = to_grid(tokens, _grid(to))
    out = _kept_and_shifted(h, to)
    return tokens if out is h else from_grid(out, tokens)


class _Double:
    """("double_block", i): the block's maths out of place on its copy; at h's block, h kept and shifted."""

    def __init__(self, block, at: str | None):
        self.block, self.at = block, at

    def __call__(self, args, extra):
        from hspace_sdworld.flow_blocks import double_block

        if args.get("attn_mask") is not None:
            raise HSpaceError("training through a Flux with an attention mask is not supported")
        to = args["transformer_options"]
        on_attn = (lambda a: _on_h(a, to)) if self.at == "attention" else None
        img, txt = double_block(self.block, args["img"], args["txt"], args["vec"], args["pe"], on_img_attn=on_attn)
        return {"img": _on_h(img, to) if self.at == "stream" else img, "txt": txt}

    def to(self, device_or_dtype):  # ComfyUI moves patches with the model (load device, then its dtype)
        self.block.to(device_or_dtype)
        return self


class _Single:
    def __init__(self, block):
        self.block = block

    def __call__(self, args, extra):
        from hspace_sdworld.flow_blocks import single_block

        if args.get("attn_mask") is not None:
            raise HSpaceError("training through a Flux with an attention mask is not supported")
        return {"img": single_block(self.block, args["img"], args["vec"], args["pe"])}

    def to(self, device_or_dtype):  # ComfyUI moves patches with the model (load device, then its dtype)
        self.block.to(device_or_dtype)
        return self


def flow_trainable(model, location: HLocation):
    """(family, h channels, a clone of the Flux.1 MODEL that takes per-row shifts of h at ``location`` with
    gradients and keeps h: ``transformer_options[DH_KEY]`` / ``[H_KEY]`` as on ``nodes.sd.trainable``)."""
    host = flow_host(model)
    if host.family != "flux":
        raise HSpaceError(f"training directions through {host.name} is not supported yet: the pack's "
                          "differentiable block forwards are written for Flux.1 (dev, schnell); use the prompt-pair, "
                          "latent-set or PCA directions there")
    net = model.get_model_object("diffusion_model")
    _refuse_patched(model, location, len(net.double_blocks))
    m = model.clone()
    with_grid_wrapper(m)
    for i in range(location.block, len(net.double_blocks)):
        at = location.kind if i == location.block else None
        m.set_model_patch_replace(_Double(_copy_for_autograd(net.double_blocks[i]), at), "dit", "double_block", i)
    for i, block in enumerate(net.single_blocks):
        m.set_model_patch_replace(_Single(_copy_for_autograd(block)), "dit", "single_block", i)
    m.add_object_patch("diffusion_model.final_layer", _copy_for_autograd(net.final_layer))
    return host.family, host.width, m


class _Shift(_OnH):
    """h at its place kept and shifted per call as ``transformer_options`` asks (the stock block, no gradients)."""

    def on_h(self, h, to):
        return _kept_and_shifted(h, to)


def _refuse_patched(model, location: HLocation, last: int) -> None:
    for i in range(location.block, last):
        if existing_patch(model, HLocation(i, location.kind)) is not None:
            raise HSpaceError(f"the MODEL already has a patch at joint block {i} (an applied direction or another "
                              "node's), which this would replace: use the model as it was loaded")


def flow_shiftable(model, location: HLocation):
    """(family, h channels, a clone of the flow MODEL that takes per-row shifts of h at ``location`` and keeps h,
    without gradients: ``transformer_options[DH_KEY]`` / ``[H_KEY]`` as on ``nodes.sd.trainable.shiftable``)."""
    host = flow_host(model)
    _refuse_patched(model, location, location.block + 1)
    m = model.clone()
    with_grid_wrapper(m)
    m.set_model_patch_replace(_Shift(location, m.get_model_object("model_sampling")), "dit", "double_block",
                              location.block)
    return host.family, host.width, m
