"""The SD nodes' work on flow transformers: applying a direction at its joint block, recording h there, and
the two inversions (the flow ODE run backwards; exact replay), through ComfyUI's guider."""

from __future__ import annotations

import torch

from hspace_core import HSpaceError
from hspace_core.discovery.host import Recording
from hspace_core.flow import FlowReplay
from hspace_core.host import HostShift, host_direction

from .family import HLocation, flow_host
from .patch import FlowHPatch, FlowHRecorder, existing_patch, key, with_grid_wrapper


def apply_direction(model, direction, strength: float, t_edit: float, t_end: float, branch: str, mode: str):
    """A clone of the flow MODEL with ``direction`` patched in at the joint block and kind it was made for
    (its ``which_h``); a second direction at the same place joins the first's patch."""
    host = flow_host(model)
    location = HLocation.parse(direction.info.which_h) if direction.info.which_h.startswith("double_block_") else None
    if location is None:
        raise HSpaceError(f"direction {direction.info.name!r} was made for h at {direction.info.which_h}, not for a "
                          f"flow transformer's joint block (make it on this {host.name} model)")
    host.location(location.block, location.kind)  # refuses a block this model does not have
    shift = HostShift(host_direction(direction, host.family, host.width, location.which_h), float(strength),
                      float(t_edit), float(t_end), branch, mode)
    m = model.clone()
    old = existing_patch(m, location)
    if old is not None and not isinstance(old, FlowHPatch):
        raise HSpaceError(f"another patch already replaces joint block {location.block} of this MODEL "
                          f"({type(old).__name__}); h-space editing there would remove it")
    shifts = (old.shifts if old is not None else []) + [shift]
    m.set_model_patch_replace(FlowHPatch(shifts, location, m.get_model_object("model_sampling")), "dit", *key(location))
    with_grid_wrapper(m)
    return m


def recording_clone(model, location: HLocation, recording: Recording = Recording()):
    """(clone of the MODEL that records h at ``location`` as ``recording`` keeps it, its recorder)."""
    m = model.clone()
    rec = FlowHRecorder(location, m.get_model_object("model_sampling"), recording)
    if existing_patch(m, location) is not None:
        raise HSpaceError(f"another patch already replaces joint block {location.block} of this MODEL; h cannot be "
                          "recorded there")
    m.set_model_patch_replace(rec, "dit", *key(location))
    with_grid_wrapper(m)
    return m, rec


def clean_latent(model, samples: torch.Tensor) -> torch.Tensor:
    """A LATENT's samples in the model's units (ComfyUI's process_latent_in)."""
    return model.get_model_object("latent_format").process_in(samples.float())


def invert(model, positive, samples: torch.Tensor, sigmas: torch.Tensor, method: str, seed: int = 0,
           recorder_model=None, callback=None) -> tuple[torch.Tensor, FlowReplay]:
    """(latent for the sampler's size, the inversion) of the clean latent(s) ``samples`` [B, C, H, W] (the
    LATENT's units) with the prompt's conditioning at cfg 1: method "ddim" runs the flow ODE up the
    non-zero sigmas (``recorder_model``: a clone that records h on the way), "ddpm" is the exact replay
    down ``sigmas``. The sampler starts from the inversion (``FlowReplay.start``), so the returned latent
    carries the size only (the inversion's start, in the LATENT's units)."""
    import comfy.samplers

    from ..sd.inversion import _ascending, _descending, _guide
    from .sampler import exact_replay_walk, invert_flow_walk

    x0 = clean_latent(model, samples)
    out: list = []
    if method == "ddim":
        fn = comfy.samplers.KSAMPLER(lambda *a, **kw: invert_flow_walk(*a[:1], x0.to(a[1]), *a[2:], **kw),
                                     extra_options={"out": out})
        _guide(recorder_model or model, positive, positive, 1.0, fn, _ascending(sigmas), samples,
               torch.zeros_like(samples), callback=callback)
    else:
        fn = comfy.samplers.KSAMPLER(lambda *a, **kw: exact_replay_walk(*a[:1], x0.to(a[1]), *a[2:], **kw),
                                     extra_options={"out": out, "seed": int(seed)})
        _guide(model, positive, positive, 1.0, fn, _descending(sigmas), samples, torch.zeros_like(samples),
               callback=callback)
    replay = out[0]
    start = model.get_model_object("latent_format").process_out(replay.start(0))
    return start, replay
