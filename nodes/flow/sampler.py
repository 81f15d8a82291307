"""The KSAMPLER functions for flow transformers (ComfyUI's CONST sampling), on the engine's flow walk
(``hspace_core.flow``): Asyrp's asymmetric step (D for the noise term, D_edit for the x0 term), the
deterministic inversion up the sigmas, and the exact-replay inversion down them.

The Asyrp Sampler (SD) node's SAMPLER calls ``sample_asyrp``, which hands flow models to
``sample_asyrp_flow``: the same node samples SD and flow models. Inside the edit interval (t = 1000 sigma
in [t_edit, t_end] of the MODEL's asymmetric flow shifts) D and D_edit come from one guider call on
[x; x] whose joint blocks before the first edited one run once (``shared``), or from two calls.
"""

from __future__ import annotations

import torch

from hspace_core import HSpaceError
from hspace_core.flow import FlowReplay, exact_replay, flow_walk

from ..sd.patch import EDIT_KEY, _with_transformer_option
from ..sd.sampler import _progress
from .patch import flow_shifts
from .shared import pair_function


def _denoiser(model, extra_args: dict, options: dict, edit_options: dict):
    def denoise(x, sigma, edit):
        args = {**extra_args, "model_options": edit_options if edit else options}
        return model(x, sigma * x.new_ones([x.shape[0]]), **args)
    return denoise


def sample_asyrp_flow(model, x, sigmas, extra_args=None, callback=None, disable=None, *, strengths=(1.0,),
                      noise_maps: FlowReplay | None = None, t_skip: int = 0, shared: bool = True, **_):
    """KSAMPLER function: Asyrp's walk on a flow model (k-diffusion's calling convention; x in the flow's
    coordinates, x = (1 - sigma) x0 + sigma eps). x: [B, C, H, W] at sigmas[0]; a single latent with several
    strengths becomes one row per strength. ``noise_maps``: an exact-replay inversion of x's latent(s)
    (its corrections replayed, shared by the sweep), starting ``t_skip`` steps below the top."""
    from .family import flow_host

    flow_host(model.inner_model.inner_model)  # a one-line refusal for flow models the pack does not edit
    extra_args = {} if extra_args is None else extra_args
    options = extra_args.get("model_options", {})
    strengths = torch.tensor([float(s) for s in strengths], dtype=x.dtype)
    k = len(strengths)
    if k > 1 and x.shape[0] not in (1, k):
        raise HSpaceError(f"a sweep of {k} strengths needs a batch of 1 latent (repeated) or {k} latents, "
                          f"got {x.shape[0]}")
    corrections = None
    if noise_maps is not None:
        if not isinstance(noise_maps, FlowReplay):
            raise HSpaceError("these noise maps are an SD model's edit-friendly inversion; a flow model replays "
                              "its own (Invert Latent with method ddpm on this MODEL)")
        noise_maps.check_grid(sigmas)
        noise_maps.check_inputs(x)
        if not isinstance(t_skip, int) or not 0 <= t_skip < noise_maps.steps:
            raise HSpaceError(f"t_skip must be an integer in [0, {noise_maps.steps - 1}], got {t_skip!r}")
        x = noise_maps.start(t_skip).to(device=x.device, dtype=x.dtype)
        corrections = noise_maps.maps[t_skip:].to(device=x.device, dtype=x.dtype)
        sigmas = sigmas[t_skip:]
    elif t_skip:
        raise HSpaceError("t_skip needs noise maps: connect an Invert Latent (h-space) node's noise_maps (method "
                          "ddpm) made on this MODEL")
    repeat = k if k > 1 and x.shape[0] == 1 else 1
    x = x.repeat_interleave(repeat, 0)
    if corrections is not None and repeat > 1:
        corrections = corrections.repeat_interleave(repeat, 1)
    scales = strengths.to(x.device).repeat(x.shape[0] // k)
    shifts = flow_shifts(options)
    editing = bool((strengths != 0).any())
    if editing and not shifts:
        raise HSpaceError("the Asyrp Sampler found no asymmetric h-space direction on this MODEL: connect Apply "
                          "H-Space Direction (mode asymmetric) to the model that SamplerCustom samples with")
    denoise = _denoiser(model, extra_args, options, _with_transformer_option(options, EDIT_KEY, scales))
    sig = [float(s) for s in sigmas]
    if editing:
        t_edit, t_end = min(s.t_edit for _, s in shifts), max(s.t_end for _, s in shifts)
        first = min(loc.block for loc, _ in shifts)
        pair = pair_function(model, extra_args, options, scales, first) if shared else None

        def predict(x, i):
            t = 1000.0 * sig[i]
            if not t_edit <= t <= t_end:
                d = denoise(x, sig[i], False)
                return d, d
            if pair is not None:
                d, d_edit = pair(x, sig[i])
            else:
                d, d_edit = denoise(x, sig[i], False), denoise(x, sig[i], True)
            return d_edit, d
    else:
        def predict(x, i):
            d = denoise(x, sig[i], False)
            return d, d
    with _progress(callback, len(sig) - 1, disable, first=t_skip if corrections is not None else 0) as on_step:
        return flow_walk(predict, x, sig, corrections=corrections, callback=on_step)


def invert_flow_walk(model, x, sigmas, extra_args=None, callback=None, disable=None, *, out: list):
    """KSAMPLER function for the deterministic inversion ("unsampling"): the flow ODE run up ``sigmas``
    (ascending non-zero sigmas, the clean latent x taken as x at the smallest) with the plain model. Appends
    to ``out`` the ``FlowReplay`` (its path, on the descending grid of these sigmas and 0) and returns x at
    the largest sigma."""
    extra_args = {} if extra_args is None else extra_args
    options = extra_args.get("model_options", {})
    denoise = _denoiser(model, extra_args, options, options)
    sig = [float(s) for s in sigmas]
    path = [x.detach().float().cpu()]

    def keep(info):
        path.append(info.x_t.detach().float().cpu())
        on_step(info)
    with _progress(callback, len(sig) - 1, disable) as on_step:
        top = flow_walk(lambda x_, i: (denoise(x_, sig[i], False),) * 2, x, sig, callback=keep)
    down = torch.tensor(list(reversed(sig)) + [0.0])
    n = len(down) - 1
    out.append(FlowReplay(x.detach().float().cpu(), torch.zeros(n, *x.shape), down, 0,
                          path=torch.stack(list(reversed(path)))))
    return top


def exact_replay_walk(model, x, sigmas, extra_args=None, callback=None, disable=None, *, out: list, seed: int = 0):
    """KSAMPLER function for the exact-replay inversion of the clean latent x down ``sigmas`` (descending,
    ending in 0): appends the ``FlowReplay`` to ``out`` and returns the draw at sigmas[0], where its replay
    starts."""
    extra_args = {} if extra_args is None else extra_args
    options = extra_args.get("model_options", {})
    if len(sigmas) < 2 or float(sigmas[-1]) != 0:
        raise HSpaceError("an exact-replay inversion needs sigmas that end at 0 (a full schedule, e.g. "
                          "BasicScheduler at denoise 1)")
    denoise = _denoiser(model, extra_args, options, options)
    sig = [float(s) for s in sigmas]
    with _progress(callback, len(sig) - 1, disable) as on_step:
        start, corrections = exact_replay(lambda x_, i: denoise(x_, sig[i], False), x, sig, int(seed),
                                          callback=on_step)
    out.append(FlowReplay(x.detach().float().cpu(), corrections.float().cpu(), sigmas.detach().float().cpu(),
                          int(seed)))
    return start

