"""h-space editing on ComfyUI's own models (SD1.x, SDXL): the glue between ComfyUI's MODEL, sampler and
patch APIs and the engine's ``host`` maths. Every ``comfy`` import is inside a function, so the pack
imports (and its other nodes run) without ComfyUI.

How it plugs in:
  * ``HSpacePatch`` is an ``output_block_patch``: ComfyUI calls it before every output block; at
    ``("output", 0)`` its h is the middle block's output, where ``host.shift_h`` adds the directions.
  * The Asyrp sampler is a ``KSAMPLER`` function: inside the edit interval it calls the denoiser twice per
    step (CFG, ControlNet and area conds apply to both), the second time with ``EDIT_KEY`` in
    ``transformer_options`` carrying the per-row strengths, and hands D and D_edit to the engine's walk.
  * Recording (directions) is the same patch kind, keeping h instead of changing it.
  * Inversions are KSAMPLER functions too (DDIM up the sigmas; edit-friendly DDPM down them, keeping
    the noise maps that the Asyrp sampler then replays).
"""

from __future__ import annotations

import math

import torch

from hspace_core import HSpaceError
from hspace_core.discovery.host import SPATIAL, by_timestep, difference_direction, pca_host_direction
from hspace_core.host import (BRANCHES, MODES, HostShift, host_direction, host_sigma_steps, regeneration_error,
                              shift_h)
from hspace_core.noise_maps import NoiseMaps, edit_friendly_maps, replay_noise, sigma_draws, with_residual
from hspace_core.sampling import two_call_predictor, walk

from .types import CATEGORY, DIRECTION, NOISE_MAPS

EDIT_KEY = "hspace_edit"  # transformer_options key: per-row strengths of the Asyrp sampler's edit call
H_BLOCK = ("output", 0)
SD_CATEGORY = f"{CATEGORY}/stable diffusion"


# ------------------------------------------------------------------ what the MODEL is

def host_family(model) -> tuple[str, int]:
    """("sd1" | "sdxl", h channels) of a ComfyUI MODEL (ModelPatcher); a clear error for anything else."""
    import comfy.model_sampling
    import comfy.supported_models as sm

    base = model.model
    name = type(base.model_config).__name__
    if isinstance(model.get_model_object("model_sampling"), comfy.model_sampling.CONST):
        raise HSpaceError(f"{name} is a flow-matching model (CONST sampling, as SD3 and Flux): the Asyrp step here "
                          "is for eps / v-prediction diffusion models (SD1.x, SDXL)")
    unet = base.diffusion_model
    if not hasattr(unet, "middle_block") or not hasattr(unet, "output_blocks"):
        raise HSpaceError(f"{name} has no UNet middle block (h-space needs a UNet: SD1.x or SDXL)")
    if isinstance(base.model_config, sm.SDXL):
        family = "sdxl"
    elif isinstance(base.model_config, sm.SD15):
        family = "sd1"
    else:
        raise HSpaceError(f"{name} models are not supported for h-space editing yet (SD1.x and SDXL are)")
    config = base.model_config.unet_config
    return family, int(config["model_channels"] * config["channel_mult"][-1])


def _timesteps(model_sampling, sigma: torch.Tensor) -> torch.Tensor:
    return model_sampling.timestep(sigma).float()


# ------------------------------------------------------------------ the patches

class HSpacePatch:
    """The output-block patch that shifts h at ("output", 0). Holds one ``HostShift``; ComfyUI moves
    patches with ``.to(device)`` (nothing to move: directions go to h's device when applied)."""

    def __init__(self, shift: HostShift, model_sampling):
        self.shift, self.model_sampling = shift, model_sampling

    def __call__(self, h, hsp, transformer_options):
        if transformer_options.get("block") != H_BLOCK:
            return h, hsp
        if "sigmas" not in transformer_options:
            raise HSpaceError("the h-space patch was called without the step's sigmas (transformer_options['sigmas']); "
                              "run the model through a ComfyUI sampler")
        t = _timesteps(self.model_sampling, transformer_options["sigmas"])
        h = shift_h(h, [self.shift], t, transformer_options["cond_or_uncond"],
                    edit_scales=transformer_options.get(EDIT_KEY))
        return h, hsp

    def to(self, device):
        return self


class HRecorder:
    """An output-block patch that keeps (t, h of each chunk) at ("output", 0), unchanged."""

    def __init__(self, model_sampling):
        self.model_sampling = model_sampling
        self.records: dict[int, list[tuple[float, torch.Tensor]]] = {0: [], 1: []}

    def __call__(self, h, hsp, transformer_options):
        if transformer_options.get("block") == H_BLOCK:
            chunks = transformer_options["cond_or_uncond"]
            t = _timesteps(self.model_sampling, transformer_options["sigmas"])
            n = h.shape[0] // len(chunks)
            for j, c in enumerate(chunks):
                self.records[c].append((float(t[(j * n) % len(t)]), h[j * n:(j + 1) * n].detach().float().cpu()))
        return h, hsp

    def to(self, device):
        return self


def _patches(model_options) -> list:
    return model_options.get("transformer_options", {}).get("patches", {}).get("output_block_patch", [])


def asymmetric_shifts(model_options) -> list[HostShift]:
    return [p.shift for p in _patches(model_options) if isinstance(p, HSpacePatch) and p.shift.mode == "asymmetric"]


def _with_transformer_option(model_options: dict, key: str, value) -> dict:
    opts = dict(model_options)
    opts["transformer_options"] = {**model_options.get("transformer_options", {}), key: value}
    return opts


# ------------------------------------------------------------------ the sampler functions (KSAMPLER)

def _check_sampling(model) -> object:
    import comfy.model_sampling

    ms = model.inner_model.inner_model.model_sampling
    if isinstance(ms, comfy.model_sampling.CONST):
        raise HSpaceError("this is a flow-matching model (CONST sampling, as SD3 and Flux): the Asyrp sampler works "
                          "with eps / v-prediction diffusion models (SD1.x, SDXL)")
    return ms


def _steps_of(ms, sigmas: torch.Tensor, eta: float = 0.0, t_boost: float = 0.0):
    ts = [float(_timesteps(ms, s.reshape(1))) if float(s) > 0 else -1.0 for s in sigmas]
    return host_sigma_steps([float(s) for s in sigmas], ts, eta=eta, t_boost=t_boost)


def _k_callback(callback):
    if callback is None:
        return None
    return lambda info: callback({"i": info.i, "denoised": info.x0_pred, "x": info.x_t, "sigma": None,
                                  "sigma_hat": None})


def sample_asyrp(model, x, sigmas, extra_args=None, callback=None, disable=None, *, strengths=(1.0,), eta=0.0,
                 t_boost=0.0, noise_maps: NoiseMaps | None = None, t_skip: int = 0):
    """KSAMPLER function: Asyrp's asymmetric walk over ComfyUI's denoiser (k-diffusion's calling convention).

    x: [B, C, H, W] at sigmas[0]; a single latent with several strengths becomes one row per strength
    (a sweep in one batch, same start). The directions are the MODEL's asymmetric ``HSpacePatch``es.
    noise_maps: an edit-friendly inversion of x's image(s) on these sigmas: every step is stochastic
    with its stored map (shared by the sweep; eta and t_boost do not apply), starting ``t_skip`` steps
    below the top from the inversion's draw there.
    """
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
        predict = two_call_predictor(denoise, t_edit=min(s.t_edit for s in shifts),
                                     t_end=max(s.t_end for s in shifts))
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
    return walk(predict, x, steps, noise=noise, callback=_k_callback(callback))


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
    return walk(two_call_predictor(_plain_denoise(model, x, extra_args), t_edit=math.inf), x, _steps_of(ms, sigmas),
                callback=_k_callback(callback))


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
    maps = edit_friendly_maps(two_call_predictor(_plain_denoise(model, x, extra_args), t_edit=math.inf), x, steps,
                              draws, _k_callback(callback))
    out.append(NoiseMaps(x.detach().float().cpu(), maps.float().cpu(), sigmas.detach().float().cpu(), int(seed)))
    return draws[0]


# ------------------------------------------------------------------ running ComfyUI's guider

def _guide(model, positive, negative, cfg: float, sampler, sigmas, latent: torch.Tensor, noise: torch.Tensor,
           seed: int = 0, steps_for_progress: int | None = None):
    import comfy.samplers
    import comfy.sample
    import latent_preview

    guider = comfy.samplers.CFGGuider(model)
    guider.set_conds(positive, negative)
    guider.set_cfg(cfg)
    latent = comfy.sample.fix_empty_latent_channels(model, latent)
    callback = latent_preview.prepare_callback(model, steps_for_progress or (len(sigmas) - 1))
    return guider.sample(noise, latent, sampler, sigmas, callback=callback, seed=seed)


def _ascending(sigmas: torch.Tensor) -> torch.Tensor:
    s = sigmas[sigmas > 0]
    if len(s) < 2:
        raise HSpaceError("inversion needs at least two non-zero sigmas (steps >= 2)")
    if bool((s[1:] > s[:-1]).all()):
        return s
    return torch.flip(s, dims=[0])


def invert_latent(model, positive, samples: torch.Tensor, sigmas: torch.Tensor, recorder: HRecorder | None = None):
    """The clean latent [B, C, H, W] -> its DDIM-inverted noise latent at the largest sigma (cfg 1, the
    prompt's cond), in the LATENT's own units (what SamplerCustom with add_noise off starts from)."""
    import comfy.samplers

    m = model
    if recorder is not None:
        m = model.clone()
        m.set_model_output_block_patch(recorder)
    up = _ascending(sigmas)
    return _guide(m, positive, positive, 1.0, comfy.samplers.KSAMPLER(invert_walk), up, samples,
                  torch.zeros_like(samples))


def invert_latent_ddpm(model, positive, samples: torch.Tensor, sigmas: torch.Tensor,
                       seed: int = 0) -> tuple[torch.Tensor, NoiseMaps]:
    """Edit-friendly DDPM inversion of the clean latent [B, C, H, W] down ``sigmas`` (cfg 1, the prompt's
    cond): (the latent drawn at the largest sigma, in the LATENT's units; the noise maps, in the model's)."""
    import comfy.samplers

    out: list[NoiseMaps] = []
    sampler = comfy.samplers.KSAMPLER(ddpm_invert_walk, extra_options={"seed": int(seed), "out": out})
    start = _guide(model, positive, positive, 1.0, sampler, _descending(sigmas), samples, torch.zeros_like(samples))
    return start, out[0]


def regenerate(model, positive, noised: torch.Tensor, sigmas: torch.Tensor, noise_maps: NoiseMaps | None = None):
    """Plain walk from the inverted latent down ``sigmas`` (strength 0), cfg 1: deterministic, or the
    replay of ``noise_maps``."""
    import comfy.samplers

    plain = comfy.samplers.KSAMPLER(sample_asyrp, extra_options={"strengths": (0.0,), "noise_maps": noise_maps})
    return _guide(model, positive, positive, 1.0, plain, sigmas, noised, torch.zeros_like(noised))


def _descending(sigmas: torch.Tensor) -> torch.Tensor:
    return sigmas if len(sigmas) < 2 or float(sigmas[0]) >= float(sigmas[-1]) else torch.flip(sigmas, dims=[0])


def _empty_latent(model, n: int, width: int, height: int) -> torch.Tensor:
    fmt = model.get_model_object("latent_format")
    return torch.zeros(n, fmt.latent_channels, height // 8, width // 8)


def _seeded(shape, seed: int) -> torch.Tensor:
    return torch.randn(shape, generator=torch.Generator().manual_seed(seed))


def record_trajectories(model, positive, sigmas: torch.Tensor, n: int, seed: int, width: int, height: int,
                        target=None) -> tuple[str, HRecorder]:
    """h along ``n`` seeded trajectories of the ``positive`` prompt alone (cfg 1), recorded in chunk 0.
    With a ``target`` prompt, h of the target is read at the same x_t (uncond slot, chunk 1): a CFG
    function that returns the cond prediction keeps the walk on the source prompt's trajectory."""
    import comfy.samplers

    family, _ = host_family(model)
    m = model.clone()
    rec = HRecorder(m.get_model_object("model_sampling"))
    m.set_model_output_block_patch(rec)
    cfg = 1.0
    if target is not None:
        m.set_model_sampler_cfg_function(lambda args: args["cond"], disable_cfg1_optimization=True)
        cfg = 2.0  # any value but 1: the uncond (target) pass must run; the CFG function ignores it
    latent = _empty_latent(model, n, width, height)
    _guide(m, positive, target if target is not None else positive, cfg, comfy.samplers.sampler_object("euler"),
           _descending(sigmas), latent, _seeded(latent.shape, seed), seed)
    return family, rec


# ------------------------------------------------------------------ nodes

MODEL_INPUT = ("MODEL", {"tooltip": "an SD1.x / SDXL model (from a checkpoint loader)"})
SIGMAS_INPUT = ("SIGMAS", {"tooltip": "the sampling sigmas (e.g. BasicScheduler); h is recorded at each"})
SEED_INPUT = ("INT", {"default": 0, "min": 0, "max": 2 ** 31 - 1, "tooltip": "seed of the trajectories' noise"})
WIDTH_INPUT = ("INT", {"default": 512, "min": 64, "max": 4096, "step": 8,
                       "tooltip": "image width (px) of the trajectories"})
HEIGHT_INPUT = ("INT", {"default": 512, "min": 64, "max": 4096, "step": 8,
                        "tooltip": "image height (px) of the trajectories"})

class ApplyHSpaceDirection:
    DESCRIPTION = ("Adds an h-space direction to the UNet's bottleneck (the middle block's output) of an SD1.x / SDXL "
                   "MODEL, for t_edit <= t <= t_end. Asymmetric (Asyrp): acts only in the edit call of the Asyrp "
                   "Sampler (SD), so only the predicted x0 is edited. Symmetric: acts in every call, works with the "
                   "stock KSampler. Returns a patched copy; chain several to mix directions.")
    CATEGORY = SD_CATEGORY
    FUNCTION = "apply"
    RETURN_TYPES = ("MODEL",)
    OUTPUT_TOOLTIPS = ("a copy of the model with the direction patched into h",)

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {
            "model": MODEL_INPUT,
            "direction": (DIRECTION, {"tooltip": "a direction made on this family of model (sd1 / sdxl)"}),
            "strength": ("FLOAT", {"default": 1.0, "min": -100.0, "max": 100.0, "step": 0.05,
                                   "tooltip": "1 = the full difference the direction was made from (prompt pair, "
                                              "latent sets) or one standard deviation (PCA)"}),
            "t_edit": ("INT", {"default": 500, "min": 0, "max": 999,
                               "tooltip": "edit at model timesteps t >= t_edit (999 = pure noise)"}),
            "t_end": ("INT", {"default": 999, "min": 0, "max": 999, "tooltip": "edit at t <= t_end"}),
            "branch": (list(BRANCHES), {"tooltip": "which CFG branch gets the shift: both, the prompt's (cond) or "
                                                   "the negative's (uncond)"}),
            "mode": (list(MODES), {"tooltip": "asymmetric: with the Asyrp Sampler (SD) only; symmetric: any sampler"}),
        }}

    def apply(self, model, direction, strength, t_edit, t_end, branch, mode):
        family, channels = host_family(model)
        shift = HostShift(host_direction(direction, family, channels), float(strength), float(t_edit),
                          float(t_end), branch, mode)
        m = model.clone()
        m.set_model_output_block_patch(HSpacePatch(shift, m.get_model_object("model_sampling")))
        return (m,)


class AsyrpSamplerSD:
    DESCRIPTION = ("A SAMPLER for SamplerCustom / SamplerCustomAdvanced: DDIM (eta 0) with Asyrp's asymmetric step. "
                   "Inside the edit interval of the MODEL's asymmetric directions it calls the model twice per step "
                   "(D without and D_edit with the shift; x_next = D_edit + sigma_next (x - D) / sigma), outside once. "
                   "Several strengths: a sweep, one image per strength from the same start, in one batch. With the "
                   "noise maps of an edit-friendly inversion every step replays its map instead (exact regeneration "
                   "at strength 0).")
    CATEGORY = SD_CATEGORY
    FUNCTION = "get_sampler"
    RETURN_TYPES = ("SAMPLER",)
    OUTPUT_TOOLTIPS = ("for SamplerCustom / SamplerCustomAdvanced",)

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {
            "strengths": ("STRING", {"default": "1.0", "tooltip": "multipliers of the asymmetric directions' "
                                                                  "strengths; e.g. -1, -0.5, 0, 0.5, 1 for a sweep"}),
            "eta": ("FLOAT", {"default": 0.0, "min": 0.0, "max": 1.0, "step": 0.05,
                              "tooltip": "stochasticity at t < t_boost (quality boosting)"}),
            "t_boost": ("INT", {"default": 0, "min": 0, "max": 999, "tooltip": "eta applies at t < t_boost (0: never)"}),
        }, "optional": {
            "noise_maps": (NOISE_MAPS, {"tooltip": "from Invert Latent (method ddpm): replay them (sample its "
                                                   "noised_latent with add_noise off and the same sigmas; eta and "
                                                   "t_boost then do not apply)"}),
            "t_skip": ("INT", {"default": 0, "min": 0, "max": 1000,
                               "tooltip": "with noise maps: start this many steps below the top of the sigmas "
                                          "(keeps more of the input's structure)"}),
        }}

    def get_sampler(self, strengths, eta, t_boost, noise_maps=None, t_skip=0):
        import comfy.samplers

        from .editing import parse_strengths

        values = parse_strengths(1.0, strengths)
        if t_skip and noise_maps is None:
            raise HSpaceError("t_skip needs noise maps: connect an Invert Latent (h-space) node's noise_maps "
                              "(method ddpm)")
        return (comfy.samplers.KSAMPLER(sample_asyrp, extra_options={
            "strengths": tuple(values), "eta": float(eta), "t_boost": float(t_boost), "noise_maps": noise_maps,
            "t_skip": int(t_skip)}),)


LATENT_INVERSION_METHODS = ["ddim", "ddpm (edit-friendly)"]


class InvertLatent:
    DESCRIPTION = ("Inverts a LATENT (e.g. a VAE-encoded photo) through the MODEL with the prompt's conditioning (cfg 1) "
                   "over the given sigmas. ddim: deterministic, up the sigmas. ddpm (edit-friendly, Huberman-Spiegelglas "
                   "et al.): x drawn independently at every sigma and one noise map per step (steps x latent size x 4 "
                   "bytes) that the Asyrp Sampler (SD) replays. Sample the noised latent with SamplerCustom (add_noise "
                   "off, cfg 1, the same sigmas): strength 0 regenerates the image, other strengths edit it.")
    CATEGORY = SD_CATEGORY
    FUNCTION = "invert"
    RETURN_TYPES = ("LATENT", "STRING", NOISE_MAPS)
    RETURN_NAMES = ("noised_latent", "report", "noise_maps")
    OUTPUT_TOOLTIPS = ("the latent at the largest sigma: sample it with add_noise off and the same sigmas",
                       "the strength-0 reconstruction error",
                       "ddpm: the noise maps, for the Asyrp Sampler (SD) (nothing with ddim)")
    OUTPUT_NODE = True

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {
            "model": MODEL_INPUT,
            "positive": ("CONDITIONING", {"tooltip": "a prompt describing the image (or an empty prompt)"}),
            "latent": ("LATENT", {"tooltip": "the clean latent(s) to invert, e.g. from VAE Encode"}),
            "sigmas": ("SIGMAS", {"tooltip": "the same sigmas the edit samples with (e.g. BasicScheduler)"}),
            "check_reconstruction": ("BOOLEAN", {"default": True, "tooltip": "regenerate at strength 0 and report "
                                                                             "the error (one more sampling pass)"}),
        }, "optional": {
            "method": (LATENT_INVERSION_METHODS, {"default": "ddim", "tooltip": "ddim: deterministic; ddpm: "
                                                  "edit-friendly noise maps, exact regeneration"}),
            "seed": ("INT", {"default": 0, "min": 0, "max": 2 ** 63 - 1,
                             "tooltip": "ddpm: seed of the independent draws of x at each sigma"}),
        }}

    def invert(self, model, positive, latent, sigmas, check_reconstruction, method="ddim", seed=0):
        host_family(model)
        if method not in LATENT_INVERSION_METHODS:
            raise HSpaceError(f"unknown inversion method {method!r}; choose from {LATENT_INVERSION_METHODS}")
        samples = latent["samples"]
        maps = None
        if method == "ddim":
            noised = invert_latent(model, positive, samples, sigmas)
            report = f"DDIM inversion over {len(_ascending(sigmas))} sigmas"
        else:
            noised, maps = invert_latent_ddpm(model, positive, samples, sigmas, seed)
            report = (f"edit-friendly DDPM inversion over {maps.steps + 1} sigmas (seed {maps.seed}): {maps.steps} "
                      f"noise maps, {maps.maps.numel() * maps.maps.element_size() / 2 ** 20:.2f} MiB")
        if check_reconstruction:
            err = regeneration_error(regenerate(model, positive, noised, _descending(sigmas), maps), samples)
            report += (f"; strength-0 regeneration error: RMS {err['rms']:.4g}, max {err['max']:.4g} (latent RMS "
                       f"{err['target_rms']:.4g})")
        out = {k: v for k, v in latent.items() if k not in ("samples", "noise_mask")}
        out["samples"] = noised
        return {"ui": {"text": [report]}, "result": (out, report, maps)}


class DirectionFromPrompts:
    DESCRIPTION = ("An h-space direction of an SD1.x / SDXL MODEL from a prompt pair: the mean of h(target) - h(source) "
                   "at the same x_t along the source prompt's trajectories (N seeds), per timestep.")
    CATEGORY = SD_CATEGORY
    FUNCTION = "make"
    RETURN_TYPES = (DIRECTION,)
    OUTPUT_TOOLTIPS = ("a direction for this model family (Apply H-Space Direction, Save, Mixer)",)

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {
            "model": MODEL_INPUT,
            "source": ("CONDITIONING", {"tooltip": "e.g. 'a photo of a face'"}),
            "target": ("CONDITIONING", {"tooltip": "e.g. 'a photo of a smiling face'"}),
            "sigmas": SIGMAS_INPUT,
            "seeds": ("INT", {"default": 4, "min": 1, "max": 256, "tooltip": "trajectories to average over"}),
            "seed": SEED_INPUT,
            "width": WIDTH_INPUT,
            "height": HEIGHT_INPUT,
            "spatial": (list(SPATIAL), {"tooltip": "average: a channel vector (any resolution); keep: the h grid "
                                                   "(resized to other resolutions)"}),
            "name": ("STRING", {"default": "prompt pair", "tooltip": "a label stored in the direction file"}),
        }}

    def make(self, model, source, target, sigmas, seeds, seed, width, height, spatial, name):
        family, rec = record_trajectories(model, source, sigmas, seeds, seed, width, height, target=target)
        d = difference_direction(by_timestep(rec.records[1]), by_timestep(rec.records[0]), family=family,
                                 spatial=spatial, name=name,
                                 provenance={"method": "prompt pair (mean h difference along source trajectories)",
                                             "seeds": seeds, "seed": seed, "size": [width, height],
                                             "steps": len(sigmas) - 1})
        return (d,)


class DirectionFromLatentSets:
    DESCRIPTION = ("An h-space direction of an SD1.x / SDXL MODEL from two sets of latents (VAE-encoded images with and "
                   "without an attribute): each set DDIM-inverted with the prompt, h recorded along the inversion, "
                   "the mean of set A minus the mean of set B per timestep.")
    CATEGORY = SD_CATEGORY
    FUNCTION = "make"
    RETURN_TYPES = (DIRECTION,)
    OUTPUT_TOOLTIPS = ("a direction for this model family (Apply H-Space Direction, Save, Mixer)",)

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {
            "model": MODEL_INPUT,
            "positive": ("CONDITIONING", {"tooltip": "the prompt the images are inverted / sampled with"}),
            "latents_with": ("LATENT", {"tooltip": "set A: images with the attribute"}),
            "latents_without": ("LATENT", {"tooltip": "set B: images without it"}),
            "sigmas": SIGMAS_INPUT,
            "spatial": (list(SPATIAL), {"tooltip": "average: a channel vector (any resolution); keep: the h grid"}),
            "name": ("STRING", {"default": "latent sets", "tooltip": "a label stored in the direction file"}),
        }}

    def make(self, model, positive, latents_with, latents_without, sigmas, spatial, name):
        family, _ = host_family(model)
        recorded = []
        for latent in (latents_with, latents_without):
            rec = HRecorder(model.get_model_object("model_sampling"))
            invert_latent(model, positive, latent["samples"], sigmas, recorder=rec)
            recorded.append(by_timestep(rec.records[0] + rec.records[1]))
        d = difference_direction(recorded[0], recorded[1], family=family, spatial=spatial, name=name,
                                 provenance={"method": "latent sets (mean h difference along DDIM inversions)",
                                             "set_sizes": [int(latents_with["samples"].shape[0]),
                                                           int(latents_without["samples"].shape[0])],
                                             "steps": len(sigmas) - 1})
        return (d,)


class DirectionPCASD:
    DESCRIPTION = ("An unsupervised h-space direction of an SD1.x / SDXL MODEL: principal component k of h over N "
                   "trajectories of a prompt, per timestep, scaled to one standard deviation.")
    CATEGORY = SD_CATEGORY
    FUNCTION = "make"
    RETURN_TYPES = (DIRECTION,)
    OUTPUT_TOOLTIPS = ("a direction for this model family (Apply H-Space Direction, Save, Mixer)",)

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {
            "model": MODEL_INPUT,
            "positive": ("CONDITIONING", {"tooltip": "the prompt the images are inverted / sampled with"}),
            "sigmas": SIGMAS_INPUT,
            "seeds": ("INT", {"default": 8, "min": 3, "max": 512, "tooltip": "trajectories to take the PCA over"}),
            "seed": SEED_INPUT,
            "component": ("INT", {"default": 0, "min": 0, "max": 64, "tooltip": "0 = the largest-variance axis"}),
            "width": WIDTH_INPUT,
            "height": HEIGHT_INPUT,
            "spatial": (list(SPATIAL), {"tooltip": "average: a channel vector (any resolution); keep: the h grid"}),
            "name": ("STRING", {"default": "PCA", "tooltip": "a label stored in the direction file"}),
        }}

    def make(self, model, positive, sigmas, seeds, seed, component, width, height, spatial, name):
        family, rec = record_trajectories(model, positive, sigmas, seeds, seed, width, height)
        d = pca_host_direction(by_timestep(rec.records[0]), component, family=family, spatial=spatial,
                               name=f"{name} {component}",
                               provenance={"method": "PCA of h along prompt trajectories", "seeds": seeds,
                                           "seed": seed, "component": component, "size": [width, height]})
        return (d,)
