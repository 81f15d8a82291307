"""h on a flow transformer, through ComfyUI's own per-block hook: ``transformer_options["patches_replace"]
["dit"][("double_block", i)]`` (Flux.1, Flux.2 and SD3's MMDiT all call it), on a clone of the MODEL.

At joint block i the image tokens are h: [R, L, C] rows of tokens, the first gh x gw of them the latent's
token grid (Flux Kontext's reference tokens follow and are left alone). The patch calls the block itself
(``original_block``) and shifts h either after it (the residual stream) or inside it (the attention output
of the image tokens, before its projection: ComfyUI's ``optimized_attention_override`` wraps the block's
own attention call, the joint [text; image] sequence, for the one call). h is read as [R, C, gh, gw], the
layout of the UNet's h, so the engine's ``shift_h``, the region tool and the direction finders work on it
unchanged. The token grid comes from an APPLY_MODEL wrapper that sees the latent (``GRID_KEY``).
"""

from __future__ import annotations

import math

import torch

from hspace_core import HSpaceError
from hspace_core.discovery.host import Recording
from hspace_core.host import HostShift, shift_h

from ..sd.patch import EDIT_KEY, keep_chunks
from .family import HLocation, flow_timesteps

GRID_KEY = "hspace_token_grid"  # transformer_options: (gh, gw) of the latent's image tokens
WRAPPER_KEY = "hspace_flow"


def record_grid(executor, x, t, c_concat=None, c_crossattn=None, control=None, transformer_options=None, **kwargs):
    """The APPLY_MODEL wrapper (``BaseModel.apply_model``'s arguments): the latent x [B, C, H, W] gives the
    token grid (ceil(H / p), ceil(W / p)), put in the call's transformer_options."""
    model = executor.class_obj
    p = int(getattr(model.diffusion_model, "patch_size", 2))
    transformer_options = {} if transformer_options is None else transformer_options
    transformer_options[GRID_KEY] = (math.ceil(x.shape[-2] / p), math.ceil(x.shape[-1] / p))
    return executor(x, t, c_concat, c_crossattn, control, transformer_options, **kwargs)


def with_grid_wrapper(model) -> None:
    """Put the grid wrapper on a (cloned) MODEL once."""
    import comfy.patcher_extension as pe

    if not model.get_wrappers(pe.WrappersMP.APPLY_MODEL, WRAPPER_KEY):
        model.add_wrapper_with_key(pe.WrappersMP.APPLY_MODEL, WRAPPER_KEY, record_grid)


def to_grid(tokens: torch.Tensor, grid: tuple[int, int]) -> torch.Tensor:
    """[R, L, C] tokens -> [R, C, gh, gw], the grid's tokens (the first gh * gw)."""
    gh, gw = grid
    return tokens[:, :gh * gw].transpose(1, 2).reshape(tokens.shape[0], tokens.shape[2], gh, gw)


def from_grid(h: torch.Tensor, tokens: torch.Tensor) -> torch.Tensor:
    """[R, C, gh, gw] back into the token sequence ``tokens`` [R, L, C] (the other tokens kept)."""
    n = h.shape[-2] * h.shape[-1]
    flat = h.reshape(h.shape[0], h.shape[1], n).transpose(1, 2).to(tokens.dtype)
    return flat if tokens.shape[1] == n else torch.cat([flat, tokens[:, n:]], dim=1)


def _grid(to: dict) -> tuple[int, int]:
    if GRID_KEY not in to:
        raise HSpaceError("the flow h patch was called without the token grid; apply directions with the pack's "
                          "Apply H-Space Direction node and sample through a ComfyUI sampler")
    return to[GRID_KEY]


class _OnH:
    """A patches_replace entry at one joint block that hands h (grid form) to ``self.on_h`` and takes back
    the h to continue with."""

    def __init__(self, location: HLocation, model_sampling):
        self.location, self.model_sampling = location, model_sampling

    def on_h(self, h: torch.Tensor, to: dict) -> torch.Tensor:
        raise NotImplementedError

    def _apply(self, tokens: torch.Tensor, offset: int, to: dict) -> torch.Tensor:
        grid = _grid(to)
        n = grid[0] * grid[1]
        img = tokens[:, offset:offset + n]
        h = to_grid(img, grid)
        out = self.on_h(h, to)
        if out is h:
            return tokens
        return torch.cat([tokens[:, :offset], from_grid(out, img), tokens[:, offset + n:]], dim=1)

    def __call__(self, args, extra):
        to = args["transformer_options"]
        if self.location.kind == "stream":
            out = extra["original_block"](args)
            out["img"] = self._apply(out["img"], 0, to)
            return out
        offset = 0 if args.get("txt") is None else args["txt"].shape[1]  # joint attention: [text; image]
        inner = dict(to)
        outer = to.get("optimized_attention_override")
        calls = []

        def override(func, *a, **kw):  # the block's first attention is the joint one (SD3.5 adds an image-only one)
            result = outer(func, *a, **kw) if outer is not None else func(*a, **kw)
            calls.append(1)
            return self._apply(result, offset, to) if len(calls) == 1 else result
        inner["optimized_attention_override"] = override
        return extra["original_block"]({**args, "transformer_options": inner})

    def to(self, device):
        return self


class FlowHPatch(_OnH):
    """Shifts h at its location by its ``HostShift``s (asymmetric ones only in the Asyrp sampler's edit
    call, ``EDIT_KEY``), on the rows of their CFG branch, for t_edit <= 1000 sigma <= t_end."""

    def __init__(self, shifts: list[HostShift], location: HLocation, model_sampling):
        super().__init__(location, model_sampling)
        self.shifts = list(shifts)

    def on_h(self, h, to):
        if "sigmas" not in to:
            raise HSpaceError("the flow h patch was called without the step's sigmas; sample through a ComfyUI "
                              "sampler")
        return shift_h(h, self.shifts, flow_timesteps(to["sigmas"]).to(h.device), to["cond_or_uncond"],
                       edit_scales=to.get(EDIT_KEY))


class FlowHRecorder(_OnH):
    """Keeps (t, h of each chunk) at its location, unchanged (the direction finders' recording)."""

    def __init__(self, location: HLocation, model_sampling, recording: Recording = Recording()):
        super().__init__(location, model_sampling)
        self.recording = recording
        self.records: dict[int, list[tuple[float, torch.Tensor]]] = {0: [], 1: []}

    def on_h(self, h, to):
        keep_chunks(self.records, self.recording, h, flow_timesteps(to["sigmas"]), to["cond_or_uncond"])
        return h


def key(location: HLocation) -> tuple[str, int]:
    return ("double_block", location.block)


def existing_patch(model, location: HLocation):
    """What already replaces the location's block on the MODEL (None, or another pack's patch)."""
    return model.model_options.get("transformer_options", {}).get("patches_replace", {}).get("dit", {}).get(
        key(location))


def flow_shifts(model_options: dict) -> list[tuple[HLocation, HostShift]]:
    """Every asymmetric flow shift on a MODEL's options, with its location."""
    replaced = model_options.get("transformer_options", {}).get("patches_replace", {}).get("dit", {})
    return [(p.location, s) for p in replaced.values() if isinstance(p, FlowHPatch) for s in p.shifts
            if s.mode == "asymmetric"]
