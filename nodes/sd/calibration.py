"""Calibrating an SD direction on the MODEL it is made for (``hspace_core.directions.calibration``): the
gain of the predicted x0 (ComfyUI's denoised D, in the model's latent units) at t, and the usable range
from whole Asyrp edits, both through ComfyUI's own guider, with the prompt's conditioning at cfg 1."""

from __future__ import annotations

from dataclasses import replace

import torch

from hspace_core.directions.calibration import (Calibration, gain_of, gain_points, latent_peak, off_target_weights,
                                                psnr_off_target, solve_scale, usable_range, with_calibration)
from hspace_core.host import HostShift, host_direction

from .family import host_family
from .patch import EDIT_KEY, HSpacePatch, _with_transformer_option

DEFAULT_T = 500  # the calibration's t for directions that record none (SD directions are made for every t)


def _patched(model, direction, t_edit: float, t_end: float):
    from ..flow.family import is_flow

    if is_flow(model):
        from ..flow.host import apply_direction

        return apply_direction(model, direction, 1.0, t_edit, t_end, "both", "asymmetric")
    family, channels = host_family(model)
    m = model.clone()
    m.set_model_output_block_patch(HSpacePatch(HostShift(host_direction(direction, family, channels), 1.0, t_edit,
                                                         t_end, "both", "asymmetric"),
                                               m.get_model_object("model_sampling")))
    return m


def _latent_size(model, direction) -> tuple[int, int]:
    """(height, width) of the latents the direction was made at (its provenance's image size, / 8), else
    its h grid times the latent-to-h factor of the MODEL (a UNet's downsampling, a transformer's patch
    size), else 64 x 64 (512 px)."""
    from ..flow.family import flow_host, is_flow

    size = direction.info.provenance.get("size") if isinstance(direction.info.provenance, dict) else None
    if isinstance(size, list) and len(size) == 2:
        return int(size[1]) // 8, int(size[0]) // 8
    _, gh, gw = direction.info.h_shape
    if (gh, gw) == (1, 1):
        return 64, 64
    factor = flow_host(model).patch if is_flow(model) else \
        2 ** (len(model.model.model_config.unet_config["channel_mult"]) - 1)
    return gh * factor, gw * factor


def _gain_sampler(out: list, sigmas_t: list[float], flow: bool):
    """A KSAMPLER function: from x at sigmas[0], for each sigma_t one DDIM step down to it (``flow``: in the
    flow's coordinates, ``hspace_core.flow``); appends to ``out`` ``solve_scale``'s result for the relative
    change of D at those points (the edit call's strengths set per reading)."""
    from hspace_core.flow import flow_eps, flow_step

    def sample(model, x, sigmas, extra_args=None, callback=None, disable=None):
        extra_args = {} if extra_args is None else extra_args
        options = extra_args.get("model_options", {})
        s_in = x.new_ones([x.shape[0]])
        d0 = model(x, sigmas[0] * s_in, **extra_args)
        points = []
        for sigma_t in sigmas_t:
            if flow:
                x_t = flow_step(d0, flow_eps(x, d0, float(sigmas[0])), sigma_t)
            else:
                x_t = d0 + (sigma_t / float(sigmas[0])) * (x - d0)
            points.append((sigma_t, x_t, model(x_t, sigma_t * s_in, **extra_args)))

        def change_at(strength: float) -> float:
            edit_args = {**extra_args,
                         "model_options": _with_transformer_option(options, EDIT_KEY, s_in * strength)}
            return sum(gain_of(plain, model(x_t, sigma_t * s_in, **edit_args), 1.0)
                       for sigma_t, x_t, plain in points) / len(points)
        try:
            out.append(solve_scale(change_at, out[0]))
        except Exception as e:  # handed to the caller, outside ComfyUI's sampling wrappers
            out.append(e)
        return x
    return sample


def calibrate_sd(model, direction, positive, *, t: float | None = None, t_end: float = 999.0, samples: int = 2,
                 seed: int = 0, steps: int = 10, usable: bool = True, callback=None) -> Calibration:
    """The direction's calibration on a ComfyUI SD MODEL with the prompt's conditioning ``positive`` (cfg 1)
    over the interval [t, t_end]: t the direction's t_edit, else ``DEFAULT_T``; the gain averaged over
    ``gain_points(t, t_end)``, the usable range from Asyrp edits over [t, t_end] on the MODEL's sigmas of
    ``steps`` steps, ``samples`` seeded starts. ``callback``: the engine's per-step callback
    (``hspace_core.StepInfo``, no x0_pred: latents are no preview) over the usable range's edits as one job
    of samples x steps steps (the longer part)."""
    import comfy.samplers

    from .inversion import _guide
    from .sampler import sample_asyrp

    t = float(direction.info.t_edit if t is None and direction.info.t_edit is not None else t or DEFAULT_T)
    from ..flow.family import is_flow, sigma_at

    flow = is_flow(model)
    ms = model.get_model_object("model_sampling")
    points = gain_points(t, t_end)
    lh, lw = _latent_size(model, direction)
    fmt = model.get_model_object("latent_format")
    g = torch.Generator().manual_seed(seed)
    noise = torch.randn(samples, fmt.latent_channels, lh, lw, generator=g)
    m = _patched(model, direction, 0.0, 999.0)
    out: list = [direction.info.name]
    sig = torch.tensor([float(ms.sigma_max), 0.0])
    _guide(m, positive, positive, 1.0, comfy.samplers.KSAMPLER(
        _gain_sampler(out, [sigma_at(ms, p) for p in points], flow)), sig, torch.zeros_like(noise), noise,
        callback=lambda *a: None, disable_pbar=True)
    if isinstance(out[1], Exception):
        raise out[1]
    scale, gain = out[1]
    cal = Calibration(scale, gain, int(round(t)), samples, t_end=int(round(t_end)))
    if not usable:
        return cal
    sigmas = comfy.samplers.calculate_sigmas(ms, "normal", steps).cpu()
    m = _patched(model, direction, t, t_end)
    weights = off_target_weights(direction, (lh, lw))
    arrived = [int(round(float(ms.timestep(s)))) if s > 0 else -1 for s in sigmas[1:]]

    def psnr_at(strengths: list[float]) -> torch.Tensor:
        scales = [0.0] + [s * cal.scale for s in strengths]
        values = []
        for i in range(samples):
            sampler = comfy.samplers.KSAMPLER(sample_asyrp, extra_options={"strengths": tuple(scales)})
            lat = _guide(m, positive, positive, 1.0, sampler, sigmas, torch.zeros_like(noise[i:i + 1]),
                         noise[i:i + 1], seed=seed, callback=_steps_of(callback, i, samples, arrived),
                         disable_pbar=True).float()
            peak = latent_peak(lat[:1])
            values.append(psnr_off_target(lat[1:], lat[:1].expand_as(lat[1:]), weights, peak))
        return torch.stack(values).mean(0)

    return replace(cal, usable=usable_range(psnr_at))


def _steps_of(callback, sample: int, samples: int, arrived: list[int]):
    """ComfyUI's (step, x0, x, total) callback of one start's edit as the engine's StepInfo of the whole job
    (``samples`` edits of ``total`` steps each); ``arrived``: the timestep each step arrives at (-1: clean)."""
    from hspace_core.sampling import StepInfo

    if callback is None:
        return lambda *a: None

    def report(step, x0, x, total):
        callback(StepInfo(sample * total + step, samples * total, arrived[min(step, len(arrived) - 1)], x, None))
    return report


def calibrated_sd(model, direction, positive, **kwargs):
    """``direction`` with its calibration on the MODEL recorded (``calibrate_sd``); the direction as it was
    when it does not change the prediction (e.g. zero), which a user sees as raw units. The usable range's
    steps go to ``callback`` (default: ComfyUI's progress of the node running, nothing outside ComfyUI)."""
    from hspace_core import HSpaceError

    from .. import comfy_bridge as bridge

    kwargs.setdefault("callback", bridge.Progress())  # in ComfyUI: the executing node's bar, and interruption
    try:
        return with_calibration(direction, calibrate_sd(model, direction, positive, **kwargs))
    except HSpaceError as e:
        if "does not change the predicted x0" in str(e):
            return direction
        raise


