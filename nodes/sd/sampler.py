"""The KSAMPLER functions: Asyrp's asymmetric walk over ComfyUI's denoiser (``sample_asyrp``) and the
latent inversions (DDIM up the sigmas, edit-friendly DDPM down them), in k-diffusion's calling
convention, on the engine's one walk."""

from __future__ import annotations

import math
from contextlib import contextmanager

import torch

from hspace_core import HSpaceError
from hspace_core.host import host_sigma_steps
from hspace_core.noise_maps import NoiseMaps, edit_friendly_maps, replay_noise, sigma_draws, with_residual
from hspace_core.sampling import paired_predictor, two_call_predictor, walk

from .family import _timesteps
from .patch import EDIT_KEY, _with_transformer_option, asymmetric_shifts
from .shared import SHARED_KEY, say_once, shared_forward, sharing_blocker


def _check_sampling(model) -> object:
    import comfy.model_sampling

    ms = model.inner_model.inner_model.model_sampling
    if isinstance(ms, comfy.model_sampling.CONST):
        raise HSpaceError("this is a flow-matching model (CONST sampling, as SD3 and Flux): the Asyrp sampler works "
                          "with eps / v-prediction diffusion models (SD1.x, SD2.x, SDXL)")
    return ms


def _steps_of(ms, sigmas: torch.Tensor, eta: float = 0.0, t_boost: float = 0.0):
    ts = [float(_timesteps(ms, s.reshape(1))) if float(s) > 0 else -1.0 for s in sigmas]
    return host_sigma_steps([float(s) for s in sigmas], ts, eta=eta, t_boost=t_boost)


def _k_callback(callback, first: int = 0):
    """ComfyUI's per-step callback from the engine's StepInfo; ``first``: steps of the sigmas skipped at the
    top (t_skip), counted as done so that the bar ends at the sigmas' step count."""
    if callback is None:
        return None
    return lambda info: callback({"i": first + info.i, "denoised": info.x0_pred, "x": info.x_t, "sigma": None,
                                  "sigma_hat": None})


@contextmanager
def _progress(callback, total: int, disable, first: int = 0):
    """A step callback that reports each step as ComfyUI's stock samplers do: to ComfyUI's callback (the
    page's progress and previews; its progress hook also raises between steps when the user interrupts)
    and on a tqdm bar in the server console (k-diffusion's ``trange``; ``disable`` is ComfyUI's switch
    for it)."""
    from tqdm.auto import tqdm

    k_callback = _k_callback(callback, first)
    bar = tqdm(total=total, disable=disable)

    def on_step(info):
        bar.update(1)
        if k_callback is not None:
            k_callback(info)
    try:
        yield on_step
    finally:
        bar.close()


def _walk_with_progress(predict, x, steps, *, callback, disable, noise=None, first: int = 0):
    with _progress(callback, len(steps), disable, first) as on_step:
        return walk(predict, x, steps, noise=noise, callback=on_step)


def sample_asyrp(model, x, sigmas, extra_args=None, callback=None, disable=None, *, strengths=(1.0,), eta=0.0,
                 t_boost=0.0, noise_maps: NoiseMaps | None = None, t_skip: int = 0, shared: bool = True):
    """KSAMPLER function: Asyrp's asymmetric walk over ComfyUI's denoiser (k-diffusion's calling convention);
    flow-matching models (Flux, SD3) go to ``flow.sampler.sample_asyrp_flow``.

    x: [B, C, H, W] at sigmas[0]; a single latent with several strengths becomes one row per strength
    (a sweep in one batch, same start). The directions are the MODEL's asymmetric ``HSpacePatch``es.
    noise_maps: an edit-friendly inversion of x's image(s) on these sigmas: every step is stochastic
    with its stored map (shared by the sweep; eta and t_boost do not apply), starting ``t_skip`` steps
    below the top from the inversion's draw there.
    shared: inside the edit interval, D and D_edit from one call on [x; x] whose work below h is done once
    (``shared.shared_forward``); False: two calls (the reference path; also taken when sharing is unsafe).
    """
    import comfy.model_sampling

    if isinstance(model.inner_model.inner_model.model_sampling, comfy.model_sampling.CONST):  # Flux, SD3
        from ..flow.sampler import sample_asyrp_flow

        return sample_asyrp_flow(model, x, sigmas, extra_args, callback, disable, strengths=strengths,
                                 noise_maps=noise_maps, t_skip=t_skip, shared=shared)
    extra_args = {} if extra_args is None else extra_args
    ms = _check_sampling(model)
    options = extra_args.get("model_options", {})
    shifts = asymmetric_shifts(options)
    strengths = torch.tensor([float(s) for s in strengths], dtype=x.dtype)
    k = len(strengths)
    if k > 1 and x.shape[0] != 1 and x.shape[0] != k:
        raise HSpaceError(f"a sweep of {k} strengths needs a batch of 1 latent (repeated) or {k} latents, "
                          f"got {x.shape[0]}")
    if noise_maps is not None:
        steps, x, z, residual = _replay(ms, noise_maps, x, sigmas, t_skip)
    elif t_skip:
        raise HSpaceError("t_skip needs noise maps: connect an Invert Latent (h-space) node's noise_maps (method "
                          "ddpm); a DDIM-inverted latent starts at the top of its sigmas")
    else:
        steps = _steps_of(ms, sigmas, eta, t_boost)
    repeat = k if k > 1 and x.shape[0] == 1 else 1
    x = x.repeat_interleave(repeat, 0)
    scales = strengths.to(x.device)
    edit_options = _with_transformer_option(options, EDIT_KEY, scales)
    s_in = x.new_ones([x.shape[0]])

    def denoise(x, step, edit):
        args = {**extra_args, "model_options": edit_options if edit else options}
        return model(x, step.sigma * s_in, **args)

    if not shifts and bool((strengths != 0).any()):
        raise HSpaceError("the Asyrp Sampler (SD) found no asymmetric h-space direction on this MODEL: connect "
                          "Apply H-Space Direction (mode asymmetric) to the model that SamplerCustom samples with")
    if shifts and bool((strengths != 0).any()):
        t_edit, t_end = min(s.t_edit for s in shifts), max(s.t_end for s in shifts)
        blocker = sharing_blocker(options, extra_args) if shared else "asked for the two-call path"
        if blocker is None:
            predict = paired_predictor(denoise, _pair(model, extra_args, options, scales.repeat(x.shape[0] // k)),
                                       t_edit=t_edit, t_end=t_end)
        else:
            if shared:
                say_once(blocker)
            predict = two_call_predictor(denoise, t_edit=t_edit, t_end=t_end)
    else:  # strength 0 everywhere: the plain walk, one call per step
        predict = two_call_predictor(denoise, t_edit=math.inf)
    noise = None
    if noise_maps is not None:
        noise = replay_noise(z, repeat)
        predict = with_residual(predict, residual.repeat_interleave(repeat, 0))
    elif eta:
        from comfy.k_diffusion.sampling import default_noise_sampler

        sampler = default_noise_sampler(x, seed=extra_args.get("seed"))
        noise = lambda i: sampler(sigmas[i], sigmas[i + 1])  # noqa: E731
    return _walk_with_progress(predict, x, steps, noise=noise, callback=callback, disable=disable,
                               first=t_skip if noise_maps is not None else 0)


def _pair(model, extra_args: dict, options: dict, scales: torch.Tensor):
    """pair(x, step) -> (D, D_edit): one guider call on [x; x], the second half with the edit strengths, the
    work below h done once (``shared.shared_forward``, a DIFFUSION_MODEL wrapper). scales: [N], one strength
    per row of x (the halves' per-row strengths are [0] * N then scales: a shorter vector would be repeated
    across both halves by ``shift_h``)."""
    import comfy.patcher_extension as pe

    pair_options = _with_transformer_option(options, EDIT_KEY, torch.cat([torch.zeros_like(scales), scales]))
    pair_options["transformer_options"][SHARED_KEY] = True
    to = pair_options["transformer_options"]
    to["wrappers"] = pe.copy_nested_dicts(to.get("wrappers", {}))
    pe.add_wrapper_with_key(pe.WrappersMP.DIFFUSION_MODEL, SHARED_KEY, shared_forward, to)
    args = {**extra_args, "model_options": pair_options}

    def pair(x, step):
        n = x.shape[0]
        d = model(torch.cat([x, x]), step.sigma * x.new_ones([2 * n]), **args)
        return d[:n], d[n:]
    return pair


def _replay(ms, maps: NoiseMaps, x: torch.Tensor, sigmas: torch.Tensor, t_skip: int):
    """(steps, start, maps from the start on, residual) of an edit-friendly replay; refuses maps that do
    not belong to these sigmas and latents."""
    maps.check_grid(sigmas)
    maps.check_inputs(x)
    if not isinstance(t_skip, int) or not 0 <= t_skip < maps.steps:
        raise HSpaceError(f"t_skip must be an integer in [0, {maps.steps - 1}] (steps skipped at the top of the "
                          f"{maps.steps}-step grid), got {t_skip!r}")
    z = maps.maps[t_skip:].to(device=x.device, dtype=x.dtype)
    steps = _steps_of(ms, sigmas[t_skip:], eta=1.0, t_boost=math.inf)
    return steps, maps.start(t_skip).to(device=x.device, dtype=x.dtype), z, z[-1]


def _plain_denoise(model, x: torch.Tensor, extra_args: dict):
    s_in = x.new_ones([x.shape[0]])
    options = extra_args.get("model_options", {})

    def denoise(x, step, edit):
        return model(x, step.sigma * s_in, **{**extra_args, "model_options": options})
    return denoise


def invert_walk(model, x, sigmas, extra_args=None, callback=None, disable=None):
    """KSAMPLER function for DDIM inversion: ``sigmas`` ascending (sigma_min ... sigma_max); x, the clean
    latent, is taken as x at sigma_min (as DDIM inversion takes x_0 as x at t = 0)."""
    extra_args = {} if extra_args is None else extra_args
    ms = _check_sampling(model)
    return _walk_with_progress(two_call_predictor(_plain_denoise(model, x, extra_args), t_edit=math.inf), x,
                               _steps_of(ms, sigmas), callback=callback, disable=disable)


def ddpm_invert_walk(model, x, sigmas, extra_args=None, callback=None, disable=None, *, out: list, seed: int = 0):
    """KSAMPLER function for edit-friendly DDPM inversion: x, the clean latent (the model's units), down
    ``sigmas`` (descending, ending in 0). Appends the ``NoiseMaps`` to ``out`` and returns x drawn at
    sigmas[0], where their replay starts."""
    extra_args = {} if extra_args is None else extra_args
    ms = _check_sampling(model)
    if len(sigmas) < 2 or float(sigmas[-1]) != 0:
        raise HSpaceError("an edit-friendly inversion needs sigmas that end at 0 (a full schedule, e.g. "
                          "BasicScheduler at denoise 1)")
    steps = _steps_of(ms, sigmas, eta=1.0, t_boost=math.inf)
    draws = sigma_draws(x, [s.sigma for s in steps], seed)
    with _progress(callback, len(steps), disable) as on_step:
        maps = edit_friendly_maps(two_call_predictor(_plain_denoise(model, x, extra_args), t_edit=math.inf), x, steps,
                                  draws, on_step)
    out.append(NoiseMaps(x.detach().float().cpu(), maps.float().cpu(), sigmas.detach().float().cpu(), int(seed)))
    return draws[0]
