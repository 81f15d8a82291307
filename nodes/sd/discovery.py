"""Directions trained on an SD MODEL, with the MODEL as the engine's host through ComfyUI's guider
(``trainable``): x_t is the MODEL's own noising of the latents at the drawn timestep
(``model_sampling.noise_scaling``), D its predicted x0.

* ``contrastive_sd``: contrastive discovery (``discovery.contrastive``), an effect the change of D;
* ``output_side_sd``: the output-side image-set direction (``discovery.shift_training.fit_output_shift``);
* ``clip_sd``: Asyrp's CLIP training (``discovery.shift_training.train_clip_shift``) through the VAE's decoder.

``effect_maps_sd`` measures (no training): the x0 changes of directions for independent effects
(``discovery.effect_ica``), at the calibration's points as ``nodes.sd.calibration`` measures a gain.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch

from hspace_core.directions.base import DirectionInfo, TensorDirection
from hspace_core.discovery.contrastive import ContrastiveSettings, train_contrastive
from hspace_core.discovery.shift_training import ShiftSettings, fit_output_shift, train_clip_shift
from hspace_core.errors import HSpaceError
from hspace_core.schedule import asyrp_timesteps

from ..flow.family import sigma_at, timestep_at
from .trainable import DH_KEY, H_KEY, Kept, run_in_guider, shiftable, trainable


@dataclass(frozen=True, eq=False)
class SDHost:
    """A trainable SD MODEL inside the guider as the engine's host (``contrastive.HostEffects``,
    ``shift_training.ShiftHost``): ``denoise`` from ``run_in_guider``, x0 the processed latents [M, C, h, w];
    ``decoder`` (for CLIP): an autograd-ready copy of the VAE's model and its latent format."""

    denoise: Callable
    x0: torch.Tensor
    model_sampling: object
    decoder: tuple | None = None

    def _x_t(self, rows, t, noise):
        sigma = torch.tensor(sigma_at(self.model_sampling, t))
        x0 = self.x0[rows]
        return self.model_sampling.noise_scaling(sigma, noise.to(x0), x0), float(sigma)

    def h(self, rows, t, noise):
        x_t, sigma = self._x_t(rows, t, noise)
        kept = Kept()
        with torch.no_grad():
            self.denoise(x_t, sigma, record=kept)
        if len(kept.values) != 1:
            raise HSpaceError(f"expected one h from the MODEL's UNet per call, got {len(kept.values)}")
        return kept.values[0]

    def effects(self, rows, t, noise, dh):
        x_t, sigma = self._x_t(rows, t, noise)
        n, k = len(rows), dh.shape[0]
        with torch.no_grad():
            plain = self.denoise(x_t, sigma).float()
        edited = self.denoise(x_t.repeat(k, 1, 1, 1), sigma, dh=dh.repeat_interleave(n, 0)).float()
        return edited.reshape(k, n, -1) - plain.reshape(1, n, -1)

    def predict(self, rows, t, noise, dh):
        x_t, sigma = self._x_t(rows, t, noise)
        return self.denoise(x_t, sigma, dh=None if dh is None else dh.expand(len(rows), *dh.shape))

    def decode(self, x0):
        vae_model, latent_format = self.decoder
        z = latent_format.process_out(x0)
        return vae_model.decode(z.to(next(vae_model.parameters()).dtype)).float()


def _at(location) -> dict:
    """DirectionInfo's ``which_h`` for a flow MODEL's h place (nothing for an SD UNet's)."""
    return {} if location is None else {"which_h": location.which_h}


def _timesteps(steps: int, t_edit: int, t_end: int) -> list[int]:
    grid = asyrp_timesteps(steps, 999)
    timesteps = [int(t) for t in grid.tolist() if t_edit <= t <= t_end]
    if not timesteps:
        raise HSpaceError(f"no step of the {steps}-step grid lies in [t_edit, t_end] = [{t_edit}, {t_end}]")
    return timesteps


def _h_shape(host: SDHost, t: int) -> tuple[int, ...]:
    return tuple(host.h(torch.arange(1), t, torch.zeros_like(host.x0[:1])).shape[1:])


def contrastive_sd(model, positive, latents: torch.Tensor, *, steps: int = 40, t_edit: int = 500, t_end: int = 999,
                   settings: ContrastiveSettings = ContrastiveSettings(), name: str = "contrastive",
                   callback=None, location=None) -> list[TensorDirection]:
    """K directions of an SD MODEL discovered from unlabelled latents [M, C, h, w] (VAE-encoded images)
    with the prompt's conditioning ``positive`` (cfg 1), at the ``steps``-step grid's model timesteps
    t_edit <= t <= t_end. Ordered by the size of their effect (largest first); one [C, h_h, w_h] shift each,
    added at every edited step (strength unit "contrastive_radius"). On a Flux.1 MODEL h is at ``location``
    (``nodes.flow.family.HLocation``; t = 1000 sigma there) and the directions record it."""
    timesteps = _timesteps(steps, t_edit, t_end)
    n = int(latents.shape[0])
    settings.check(n)
    family, _, m = trainable(model, location)

    def train(denoise, x0, ms):
        host = SDHost(denoise, x0, ms)
        h_shape = _h_shape(host, timesteps[0])
        dh, record = train_contrastive(host, n, tuple(x0.shape[1:]), h_shape, timesteps, settings,
                                       device=x0.device, callback=callback)
        with torch.no_grad():
            g = torch.Generator().manual_seed(settings.seed + 2)
            rows = torch.arange(min(n, 8))
            noise = torch.randn((len(rows), *x0.shape[1:]), generator=g)
            size = host.effects(rows, timesteps[len(timesteps) // 2], noise, dh.to(x0.device)).pow(2).mean((1, 2))
        return h_shape, dh, record, size.cpu()

    h_shape, dh, record, size = run_in_guider(m, positive, latents, train, seed=settings.seed)
    out = []
    for rank, j in enumerate(torch.argsort(size, descending=True).tolist()):
        info = DirectionInfo(
            h_shape=h_shape, family=family, strength_unit="contrastive_radius", name=f"{name} {rank}", t_edit=t_edit,
            **_at(location),
            provenance={"method": "contrastive (NoiseCLR's objective in h)", "k": settings.k, "rank": rank,
                        "n_latents": n, "iterations": settings.iterations, "batch": settings.batch, "lr": settings.lr,
                        "temperature": settings.temperature, "radius": settings.radius, "pool": settings.pool,
                        "orthogonal": settings.orthogonal, "seed": settings.seed, "steps": steps, "t_edit": t_edit, "t_end": t_end, "effect_rms": float(size[j].sqrt()),
                        "size": [int(latents.shape[-1]) * 8, int(latents.shape[-2]) * 8],
                        "applied": "one shift at every edited step", "h_rms": record["h_rms"],
                        "dh_rms": record["dh_rms"], "loss_first": record["first"], "loss_last": record["last"]})
        out.append(TensorDirection(dh[j].contiguous(), None, info))
    return out


def _one_shift(family: str, dh: torch.Tensor, name: str, unit: str, t_edit: int, location, provenance: dict
               ) -> TensorDirection:
    info = DirectionInfo(h_shape=tuple(dh.shape), family=family, strength_unit=unit, name=name, t_edit=t_edit,
                         **_at(location), provenance={**provenance, "applied": "one shift at every edited step"})
    return TensorDirection(dh.contiguous(), None, info)


def output_side_sd(model, positive, latents_a: torch.Tensor, latents_b: torch.Tensor, *, steps: int = 40,
                   t_edit: int = 500, t_end: int = 999, settings: ShiftSettings = ShiftSettings(),
                   name: str = "latent sets (output side)", callback=None, location=None) -> TensorDirection:
    """The output-side direction of two latent sets [A, C, h, w] and [B, C, h, w] (``fit_output_shift``): one
    shift of h with which the MODEL's predicted x0 of set B moves to set A's mean (and of A, reversed, to
    B's), with the prompt's conditioning (cfg 1) at the grid's timesteps t_edit <= t <= t_end; on a Flux.1
    MODEL h is at ``location`` (as ``contrastive_sd``)."""
    timesteps = _timesteps(steps, t_edit, t_end)
    if latents_a.shape[1:] != latents_b.shape[1:]:
        raise HSpaceError(f"the two latent sets differ in size ({list(latents_a.shape[1:])} vs "
                          f"{list(latents_b.shape[1:])}): encode both at one image size")
    family, _, m = trainable(model, location)
    n_a = int(latents_a.shape[0])

    def fit(denoise, x0, ms):
        host = SDHost(denoise, x0, ms)
        rows = torch.arange(len(x0))
        return fit_output_shift(host, rows[:n_a], rows[n_a:], _h_shape(host, timesteps[0]), timesteps, settings,
                                callback=callback)

    dh, record = run_in_guider(m, positive, torch.cat([latents_a, latents_b]), fit, seed=settings.seed)
    return _one_shift(family, dh, name, "x0_set_means", t_edit, location, {
        "method": "latent sets, output side (the predicted x0 moved between the sets' means)",
        "set_sizes": [n_a, int(latents_b.shape[0])], "steps": steps, "t_edit": t_edit, "t_end": t_end,
        "iterations": settings.iterations, "batch": settings.batch, "lr": settings.lr, "seed": settings.seed,
        "size": [int(latents_a.shape[-1]) * 8, int(latents_a.shape[-2]) * 8], **record})


def clip_sd(model, vae, positive, latents: torch.Tensor, clip, src: str, trg: str, *, steps: int = 40,
            t_edit: int = 500, t_end: int = 999, settings: ShiftSettings = ShiftSettings(), clip_w: float = 1.0,
            l1_w: float = 3.0, name: str = "", callback=None, location=None) -> TensorDirection:
    """Asyrp's CLIP training on an SD MODEL (``train_clip_shift``): P_t of the latents [M, C, h, w] decoded by a
    copy of the VAE's decoder that gradients pass through, ``clip`` an engine ``ClipModel``; on a Flux.1 MODEL
    h is at ``location`` (as ``contrastive_sd``)."""
    from .trainable import _copy_for_autograd

    timesteps = _timesteps(steps, t_edit, t_end)
    family, _, m = trainable(model, location)
    decoder = (_copy_for_autograd(vae.first_stage_model).to(vae.device), model.get_model_object("latent_format"))

    def train(denoise, x0, ms):
        host = SDHost(denoise, x0, ms, decoder)
        return train_clip_shift(host, clip, src, trg, _h_shape(host, timesteps[0]), timesteps, settings,
                                clip_w=clip_w, l1_w=l1_w, callback=callback)

    dh, record = run_in_guider(m, positive, latents, train, seed=settings.seed)
    return _one_shift(family, dh, name or trg, "asyrp", t_edit, location, {
        "method": "clip (Asyrp's loss on the decoded predicted x0)", "source_text": src, "target_text": trg,
        "clip_arch": clip.arch, "n_latents": int(latents.shape[0]), "steps": steps, "t_edit": t_edit, "t_end": t_end,
        "iterations": settings.iterations, "batch": settings.batch, "lr": settings.lr, "seed": settings.seed,
        "clip_w": clip_w, "l1_w": l1_w, "size": [int(latents.shape[-1]) * 8, int(latents.shape[-2]) * 8], **record})


def _effect_sampler(out: list, points: list[tuple[float, int, torch.Tensor]], start_t: int, progress):
    """A KSAMPLER function: from x at sigmas[0], one DDIM step down to each (sigma_t, t, dh [m, C, h, w]) of
    ``points`` (as ``calibration._gain_sampler``; sigmas[0] is timestep ``start_t``); appends to ``out`` the
    change of D by each of the m shifts there, [m, points x N x latent]. Each forward pass is one step of
    ``progress`` (the engine's StepInfo: i of 1 + points x (1 + m), x_t the state measured at, no preview)."""
    from hspace_core.sampling import StepInfo

    from .patch import _with_transformer_option

    total = 1 + sum(1 + len(dh) for _, _, dh in points)

    def sample(model, x, sigmas, extra_args=None, callback=None, disable=None):
        extra_args = {} if extra_args is None else extra_args
        options = extra_args.get("model_options", {})

        def d(x_t, sigma, key=None, value=None):
            opts = options if key is None else _with_transformer_option(options, key, value)
            return model(x_t, sigma * x_t.new_ones([x_t.shape[0]]), **{**extra_args, "model_options": opts})
        done = [0]

        def step(x_t, t):  # ComfyUI's progress hook raises here when the user interrupts
            progress(StepInfo(done[0], total, t, x_t, None))
            done[0] += 1
        try:
            d0 = d(x, float(sigmas[0]))
            step(x, start_t)
            maps = []
            for sigma_t, t, dh in points:
                x_t = d0 + (sigma_t / float(sigmas[0])) * (x - d0)
                kept = Kept()
                plain = d(x_t, sigma_t, H_KEY, kept).float()
                step(x_t, t)
                if len(kept.values) != 1:
                    raise HSpaceError(f"expected one h from the MODEL's UNet per call, got {len(kept.values)}")
                h = kept.values[0]
                changes = []
                for shift in dh:
                    changes.append((d(x_t, sigma_t, DH_KEY, shift.to(h).expand_as(h).contiguous()).float()
                                    - plain).flatten().cpu())
                    step(x_t, t)
                maps.append(torch.stack(changes))
            out.append(torch.cat(maps, 1))
        except Exception as e:  # handed to the caller, outside ComfyUI's sampling wrappers
            out.append(e)
        return x
    return sample


def effect_maps_sd(model, positive, shifts: dict[int, torch.Tensor], t_edit: float, t_end: float,
                   latent_hw: tuple[int, int], *, samples: int | None = None, seed: int = 0,
                   callback=None, location=None) -> torch.Tensor:
    """The change of the SD MODEL's predicted x0 (D, latent units) by each of m directions given per timestep
    ({t: [m, C, h, w]}, or [m, C, 1, 1] channel vectors; the timestep nearest each point used), [m, P]:
    ``samples`` seeded starts of latent size ``latent_hw`` taken one DDIM step down to each of the
    calibration's points in [t_edit, t_end] (``calibration.gain_points``), with the prompt's conditioning
    ``positive`` at cfg 1: the effect maps of independent effects (``effect_ica.effect_maps`` on a pixel model).
    ``callback``: the engine's StepInfo per forward pass (default: ComfyUI's progress of the node running, which
    also stops the measurement when the user interrupts; nothing outside ComfyUI). On a flow MODEL h is at
    ``location`` (``nodes.flow.family.HLocation``; t = 1000 sigma); the DDIM step is ComfyUI's euler step there."""
    import comfy.samplers

    from hspace_core.directions.calibration import gain_points
    from hspace_core.discovery.effect_ica import EFFECT_SAMPLES

    from .. import comfy_bridge as bridge

    from .inversion import _guide

    if not shifts:
        raise HSpaceError("no directions to measure")
    samples = EFFECT_SAMPLES if samples is None else samples
    _, _, m = shiftable(model, "measuring effects of h", location)
    ms = m.get_model_object("model_sampling")
    recorded = sorted(shifts)
    points = [(sigma_at(ms, p), round(p), shifts[min(recorded, key=lambda t: abs(t - p))])
              for p in gain_points(t_edit, t_end)]
    fmt = m.get_model_object("latent_format")
    noise = torch.randn(samples, fmt.latent_channels, *latent_hw, generator=torch.Generator().manual_seed(seed))
    out: list = []
    sampler = _effect_sampler(out, points, round(timestep_at(ms, ms.sigma_max)), callback or bridge.Progress())
    _guide(m, positive, positive, 1.0, comfy.samplers.KSAMPLER(sampler),
           torch.tensor([float(ms.sigma_max), 0.0]), torch.zeros_like(noise), noise, callback=lambda *a: None,
           disable_pbar=True)
    if not out:
        raise HSpaceError("ComfyUI's guider did not run the measurement")
    if isinstance(out[0], Exception):
        raise out[0]
    return out[0]
