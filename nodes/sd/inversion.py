"""Running ComfyUI's CFGGuider with the KSAMPLER functions: latent inversion (DDIM, edit-friendly DDPM),
the strength-0 regeneration, and recording h along prompt trajectories (for the direction nodes)."""

from __future__ import annotations

import torch

from hspace_core import HSpaceError
from hspace_core.discovery.host import Recording
from hspace_core.noise_maps import NoiseMaps

from .family import host_family
from .patch import HRecorder
from .sampler import ddpm_invert_walk, invert_walk, sample_asyrp


class NodeProgress:
    """One progress job of ``total`` steps on ComfyUI's progress bar (the page's bar and previews, and the
    interruption check of its progress hook) for a node that runs several sampling passes: ``part(offset)``
    is the callback of the pass whose steps come after ``offset`` others."""

    def __init__(self, model, total: int):
        import comfy.utils
        import latent_preview

        self.total = total
        self.bar = comfy.utils.ProgressBar(total)
        self.previewer = latent_preview.get_previewer(model.load_device, model.model.latent_format)

    def part(self, offset: int):
        def callback(step, x0, x, total_steps):
            preview = self.previewer.decode_latent_to_preview_image("JPEG", x0) if self.previewer else None
            self.bar.update_absolute(offset + step + 1, self.total, preview)
        return callback


def _guide(model, positive, negative, cfg: float, sampler, sigmas, latent: torch.Tensor, noise: torch.Tensor,
           seed: int = 0, callback=None, disable_pbar: bool = False):
    """``CFGGuider.sample``; ``callback``: ComfyUI's (step, x0, x, total) callback (default: a progress bar
    of this pass's steps with previews, as SamplerCustom's)."""
    import comfy.samplers
    import comfy.sample
    import latent_preview

    guider = comfy.samplers.CFGGuider(model)
    guider.set_conds(positive, negative)
    guider.set_cfg(cfg)
    latent = comfy.sample.fix_empty_latent_channels(model, latent)
    if callback is None:
        callback = latent_preview.prepare_callback(model, len(sigmas) - 1)
    return guider.sample(noise, latent, sampler, sigmas, callback=callback, disable_pbar=disable_pbar, seed=seed)


def inversion_steps(sigmas: torch.Tensor, method: str) -> int:
    """Steps of an inversion over ``sigmas``: DDIM walks up the non-zero sigmas, DDPM down all of them."""
    return len(_ascending(sigmas)) - 1 if method == "ddim" else len(sigmas) - 1


def _ascending(sigmas: torch.Tensor) -> torch.Tensor:
    s = sigmas[sigmas > 0]
    if len(s) < 2:
        raise HSpaceError("inversion needs at least two non-zero sigmas (steps >= 2)")
    if bool((s[1:] > s[:-1]).all()):
        return s
    return torch.flip(s, dims=[0])


def invert_latent(model, positive, samples: torch.Tensor, sigmas: torch.Tensor, recorder: HRecorder | None = None,
                  callback=None):
    """The clean latent [B, C, H, W] -> its DDIM-inverted noise latent at the largest sigma (cfg 1, the
    prompt's cond), in the LATENT's own units (what SamplerCustom with add_noise off starts from)."""
    import comfy.samplers

    m = model
    if recorder is not None:
        m = model.clone()
        m.set_model_output_block_patch(recorder)
    up = _ascending(sigmas)
    return _guide(m, positive, positive, 1.0, comfy.samplers.KSAMPLER(invert_walk), up, samples,
                  torch.zeros_like(samples), callback=callback)


def invert_latent_ddpm(model, positive, samples: torch.Tensor, sigmas: torch.Tensor,
                       seed: int = 0, callback=None) -> tuple[torch.Tensor, NoiseMaps]:
    """Edit-friendly DDPM inversion of the clean latent [B, C, H, W] down ``sigmas`` (cfg 1, the prompt's
    cond): (the latent drawn at the largest sigma, in the LATENT's units; the noise maps, in the model's)."""
    import comfy.samplers

    out: list[NoiseMaps] = []
    sampler = comfy.samplers.KSAMPLER(ddpm_invert_walk, extra_options={"seed": int(seed), "out": out})
    start = _guide(model, positive, positive, 1.0, sampler, _descending(sigmas), samples, torch.zeros_like(samples),
                   callback=callback)
    return start, out[0]


def regenerate(model, positive, noised: torch.Tensor, sigmas: torch.Tensor, noise_maps: NoiseMaps | None = None,
               callback=None):
    """Plain walk from the inverted latent down ``sigmas`` (strength 0), cfg 1: deterministic, or the
    replay of ``noise_maps``."""
    import comfy.samplers

    plain = comfy.samplers.KSAMPLER(sample_asyrp, extra_options={"strengths": (0.0,), "noise_maps": noise_maps})
    return _guide(model, positive, positive, 1.0, plain, sigmas, noised, torch.zeros_like(noised), callback=callback)


def _descending(sigmas: torch.Tensor) -> torch.Tensor:
    return sigmas if len(sigmas) < 2 or float(sigmas[0]) >= float(sigmas[-1]) else torch.flip(sigmas, dims=[0])


def sigmas_down_to(model, sigmas: torch.Tensor, t_edit: float) -> torch.Tensor:
    """The start of the descending walk ``sigmas`` that takes every step at t >= t_edit (t the MODEL's timestep
    of the step's sigma; 1000 sigma on a flow transformer, as everywhere in the pack): those sigmas and the one
    the last of them arrives at. A deterministic sampler takes those steps exactly as on the whole walk; a
    recording that uses no step below t_edit needs no more."""
    from ..flow.family import timestep_at

    s = _descending(sigmas)
    ms = model.get_model_object("model_sampling")
    steps = sum(1 for x in s[:-1] if float(x) > 0 and round(timestep_at(ms, x)) >= t_edit)
    return s[:max(steps, 1) + 1]


def _empty_latent(model, n: int, width: int, height: int) -> torch.Tensor:
    fmt = model.get_model_object("latent_format")
    return torch.zeros(n, fmt.latent_channels, height // 8, width // 8)


def _seeded(shape, seed: int) -> torch.Tensor:
    return torch.randn(shape, generator=torch.Generator().manual_seed(seed))


def recorder(model, location=None, recording: Recording = Recording()):
    """(family, a clone of the MODEL recording h as ``recording`` keeps it, the recorder, which h): an SD UNet's
    middle block output, or a flow transformer's h at ``location`` (``flow.family.HLocation``)."""
    from ..flow.family import flow_host, is_flow

    if is_flow(model):
        from ..flow.host import recording_clone

        host = flow_host(model)
        m, rec = recording_clone(model, location, recording)
        return host.family, m, rec, location.which_h
    family, _ = host_family(model)
    m = model.clone()
    rec = HRecorder(m.get_model_object("model_sampling"), recording)
    m.set_model_output_block_patch(rec)
    return family, m, rec, "middle_block_output"


def record_trajectories(model, positive, sigmas: torch.Tensor, n: int, seed: int, width: int, height: int,
                        target=None, location=None, recording: Recording = Recording()
                        ) -> tuple[str, HRecorder, str]:
    """h along ``n`` seeded trajectories of the ``positive`` prompt alone (cfg 1), recorded in chunk 0 as
    ``recording`` keeps it. With a ``target`` prompt, h of the target is read at the same x_t (uncond slot,
    chunk 1): a CFG function that returns the cond prediction keeps the walk on the source prompt's
    trajectory. Returns (family, recorder, which h)."""
    import comfy.samplers

    family, m, rec, which_h = recorder(model, location, recording)
    cfg = 1.0
    if target is not None:
        m.set_model_sampler_cfg_function(lambda args: args["cond"], disable_cfg1_optimization=True)
        cfg = 2.0  # any value but 1: the uncond (target) pass must run; the CFG function ignores it
    latent = _empty_latent(model, n, width, height)
    _guide(m, positive, target if target is not None else positive, cfg, comfy.samplers.sampler_object("euler"),
           _descending(sigmas), latent, _seeded(latent.shape, seed), seed)
    return family, rec, which_h
