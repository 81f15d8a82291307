"""The SD node classes (Apply H-Space Direction, Asyrp Sampler (SD), Invert Latent, the direction finders):
widgets and glue over the patch, the sampler functions and the guider runs."""

from __future__ import annotations

from hspace_core import HSpaceError
from hspace_core.discovery.host import (SPATIAL, Recording, by_timestep, difference_direction, ica_host_directions,
                                        pca_host_direction)
from hspace_core.host import BRANCHES, MODES, HostShift, host_direction, regeneration_error

from hspace_core.directions.calibration import UNITS, in_units

from .. import comfy_bridge as bridge
from ..editing import UNITS_TOOLTIP
from ..types import DIRECTION, NOISE_MAPS, SD_CATEGORY
from .calibration import calibrated_sd
from ..flow.family import KIND_NAMES, flow_host, is_flow
from .family import host_family
from .inversion import (NodeProgress, _ascending, _descending, invert_latent, invert_latent_ddpm, inversion_steps,
                        record_trajectories, recorder, regenerate, sigmas_down_to)
from .patch import HSpacePatch
from .sampler import sample_asyrp



MODEL_INPUT = ("MODEL", {"tooltip": "an SD1.x / SD2.x / SDXL model (from a checkpoint loader), or a Flux.1, Flux.2 or "
                                    "SD3 / SD3.5 model (from the diffusion-model or checkpoint loader)"})
SIGMAS_INPUT = ("SIGMAS", {"tooltip": "the sampling sigmas (e.g. BasicScheduler); h is recorded at each"})
SEED_INPUT = ("INT", {"default": 0, "min": 0, "max": 2 ** 31 - 1, "tooltip": "seed of the trajectories' noise"})
WIDTH_INPUT = ("INT", {"default": 512, "min": 64, "max": 4096, "step": 8,
                       "tooltip": "image width (px) of the trajectories"})
HEIGHT_INPUT = ("INT", {"default": 512, "min": 64, "max": 4096, "step": 8,
                        "tooltip": "image height (px) of the trajectories"})
FLOW_INPUTS = {
    "block": ("INT", {"default": -1, "min": -1, "max": 63,
                      "tooltip": "flow transformers (Flux, SD3): the joint block whose image tokens are h; -1 = the "
                                 "model's default (its middle joint block). Ignored for SD UNets"}),
    "h": (list(KIND_NAMES), {"default": "residual stream",
                             "tooltip": "flow transformers: h is the image tokens' residual stream after the block, "
                                        "or their attention output inside it (FluxSpace's place). Ignored for SD "
                                        "UNets"}),
}


def flow_location(model, block: int, h: str):
    """The HLocation of the (block, h) inputs on a flow MODEL, None for an SD one."""
    if not is_flow(model):
        return None
    if h not in KIND_NAMES:
        raise HSpaceError(f"h must be one of {list(KIND_NAMES)}, got {h!r}")
    return flow_host(model).location(int(block), KIND_NAMES[h])

class ApplyHSpaceDirection:
    DESCRIPTION = ("Adds an h-space direction to h of a MODEL for t_edit <= t <= t_end: the UNet's bottleneck (the middle "
                   "block's output) of SD1.x / SD2.x / SDXL, or the image tokens at the joint block the direction was "
                   "made at of Flux.1, Flux.2 and SD3 / SD3.5 (t = 1000 sigma there). Asymmetric (Asyrp): acts only in "
                   "the edit call of the Asyrp Sampler (SD), so only the predicted x0 is edited. Symmetric: acts in "
                   "every call, works with the stock KSampler. Returns a patched copy; chain several to mix directions.")
    CATEGORY = SD_CATEGORY
    FUNCTION = "apply"
    RETURN_TYPES = ("MODEL",)
    OUTPUT_TOOLTIPS = ("a copy of the model with the direction patched into h",)

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {
            "model": MODEL_INPUT,
            "direction": (DIRECTION, {"tooltip": "a direction made on this family of model (sd1 / sd2 / sdxl)"}),
            "strength": ("FLOAT", {"default": 1.0, "min": -100.0, "max": 100.0, "step": 0.05,
                                   "tooltip": "in calibrated units (default): 1 = the same amount of change for every "
                                              "direction; in raw units: 1 = the full difference the direction was made "
                                              "from (prompt pair, latent sets) or one standard deviation (PCA)"}),
            "t_edit": ("INT", {"default": 500, "min": 0, "max": 999,
                               "tooltip": "edit at model timesteps t >= t_edit (999 = pure noise)"}),
            "t_end": ("INT", {"default": 999, "min": 0, "max": 999, "tooltip": "edit at t <= t_end"}),
            "branch": (list(BRANCHES), {"tooltip": "which CFG branch gets the shift: both, the prompt's (cond) or "
                                                   "the negative's (uncond)"}),
            "mode": (list(MODES), {"tooltip": "asymmetric: with the Asyrp Sampler (SD) only; symmetric: any sampler"}),
        }, "optional": {
            "units": (list(UNITS), {"default": "calibrated", "tooltip": UNITS_TOOLTIP}),
        }}

    def apply(self, model, direction, strength, t_edit, t_end, branch, mode, units="calibrated"):
        if is_flow(model):  # Flux, SD3: at the joint block the direction was made for
            from ..flow.host import apply_direction

            return (apply_direction(model, in_units(direction, units, bridge.say_once), strength, t_edit, t_end,
                                    branch, mode),)
        family, channels = host_family(model)
        shift = HostShift(host_direction(in_units(direction, units, bridge.say_once), family, channels),
                          float(strength), float(t_edit), float(t_end), branch, mode)
        m = model.clone()
        m.set_model_output_block_patch(HSpacePatch(shift, m.get_model_object("model_sampling")))
        return (m,)


class AsyrpSamplerSD:
    DESCRIPTION = ("A SAMPLER for SamplerCustom / SamplerCustomAdvanced: DDIM (eta 0) with Asyrp's asymmetric step, on SD "
                   "UNets and on the flow transformers Flux and SD3 (x_next = (1 - sigma_next) D_edit + sigma_next eps "
                   "from the plain D there). Inside the edit interval of the MODEL's asymmetric directions it needs D "
                   "without and D_edit with the shift (x_next = D_edit + sigma_next (x - D) / sigma on SD), outside one "
                   "call; the work before h is shared by both. "
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

        from ..editing import parse_strengths

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
                   "off, cfg 1, the same sigmas): strength 0 regenerates the image, other strengths edit it. On Flux and "
                   "SD3: ddim runs the flow ODE backwards, ddpm is an exact replay (per-step corrections); connect "
                   "noise_maps to the Asyrp Sampler for both (the sampler starts from the inversion).")
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
        if method not in LATENT_INVERSION_METHODS:
            raise HSpaceError(f"unknown inversion method {method!r}; choose from {LATENT_INVERSION_METHODS}")
        flow = is_flow(model)
        if flow:
            flow_host(model)
        else:
            host_family(model)
        samples = latent["samples"]
        maps = None
        kind = "ddim" if method == "ddim" else "ddpm"
        inverting = inversion_steps(sigmas, kind)  # one progress job: the inversion, then the check
        progress = NodeProgress(model, inverting + (len(_descending(sigmas)) - 1 if check_reconstruction else 0))
        if flow:
            from ..flow.host import invert as invert_flow

            noised, maps = invert_flow(model, positive, samples, sigmas, kind, seed, callback=progress.part(0))
            report = (f"flow ODE inversion over {inverting + 1} sigmas" if kind == "ddim" else
                      f"exact-replay inversion over {maps.steps + 1} sigmas (seed {maps.seed}): {maps.steps} "
                      f"corrections, {maps.maps.numel() * maps.maps.element_size() / 2 ** 20:.2f} MiB")
        elif method == "ddim":
            noised = invert_latent(model, positive, samples, sigmas, callback=progress.part(0))
            report = f"DDIM inversion over {len(_ascending(sigmas))} sigmas"
        else:
            noised, maps = invert_latent_ddpm(model, positive, samples, sigmas, seed, callback=progress.part(0))
            report = (f"edit-friendly DDPM inversion over {maps.steps + 1} sigmas (seed {maps.seed}): {maps.steps} "
                      f"noise maps, {maps.maps.numel() * maps.maps.element_size() / 2 ** 20:.2f} MiB")
        if check_reconstruction:
            err = regeneration_error(regenerate(model, positive, noised, _descending(sigmas), maps,
                                                callback=progress.part(inverting)), samples)
            report += (f"; strength-0 regeneration error: RMS {err['rms']:.4g}, max {err['max']:.4g} (latent RMS "
                       f"{err['target_rms']:.4g})")
        out = {k: v for k, v in latent.items() if k not in ("samples", "noise_mask")}
        out["samples"] = noised
        return {"ui": {"text": [report]}, "result": (out, report, maps)}


class DirectionFromPrompts:
    DESCRIPTION = ("An h-space direction of an SD1.x / SD2.x / SDXL, Flux or SD3 MODEL from a prompt pair: the mean of "
                   "h(target) - h(source) at the same x_t along the source prompt's trajectories (N seeds), per "
                   "timestep; on Flux / SD3 per image token at the chosen joint block. Calibrated on the MODEL.")
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
        }, "optional": dict(FLOW_INPUTS)}

    def make(self, model, source, target, sigmas, seeds, seed, width, height, spatial, name, block=-1,
             h="residual stream"):
        family, rec, which_h = record_trajectories(model, source, sigmas, seeds, seed, width, height, target=target,
                                                   location=flow_location(model, block, h),
                                                   recording=Recording(spatial))
        d = difference_direction(by_timestep(rec.records[1]), by_timestep(rec.records[0]), family=family,
                                 spatial=spatial, name=name, which_h=which_h,
                                 provenance={"method": "prompt pair (mean h difference along source trajectories)",
                                             "seeds": seeds, "seed": seed, "size": [width, height],
                                             "steps": len(sigmas) - 1})
        return (calibrated_sd(model, d, source),)


LATENT_SET_METHODS = ["mean difference of h", "output side (predicted x0)"]


class DirectionFromLatentSets:
    DESCRIPTION = ("An h-space direction of an SD1.x / SD2.x / SDXL, Flux or SD3 MODEL from two sets of latents (VAE-encoded "
                   "images with and without an attribute). mean difference of h: each set inverted with the prompt "
                   "(DDIM; the flow ODE on Flux / SD3), h recorded along the inversion, the mean of set A minus the mean "
                   "of set B per timestep (what the inputs hold in h). output side (SD UNets): one shift of h fitted by "
                   "gradient steps so that the MODEL's predicted x0 of set B moves to set A's mean and of A, reversed, "
                   "to B's (what the decoder draws from h).")
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
        }, "optional": {
            **FLOW_INPUTS,
            "method": (LATENT_SET_METHODS, {"default": LATENT_SET_METHODS[0], "tooltip": "mean difference of h (what "
                       "the inputs hold), or output side: the shift that moves the predicted x0 from one set's mean "
                       "to the other's (SD UNets; spatial and sigmas do not apply)"}),
            "t_edit": ("INT", {"default": 500, "min": 0, "max": 999, "tooltip": "output side: fit at t >= t_edit"}),
            "t_end": ("INT", {"default": 999, "min": 0, "max": 999, "tooltip": "output side: fit at t <= t_end"}),
            "iterations": ("INT", {"default": 200, "min": 1, "max": 100000, "tooltip": "output side: Adam updates"}),
        }, "hidden": {"unique_id": "UNIQUE_ID"}}

    def make(self, model, positive, latents_with, latents_without, sigmas, spatial, name, block=-1,
             h="residual stream", method=LATENT_SET_METHODS[0], t_edit=500, t_end=999, iterations=200,
             unique_id=None):
        if method not in LATENT_SET_METHODS:
            raise HSpaceError(f"unknown method {method!r}; choose from {LATENT_SET_METHODS}")
        location = flow_location(model, block, h)
        if method != LATENT_SET_METHODS[0]:
            from hspace_core.discovery.shift_training import ShiftSettings

            from .discovery import output_side_sd

            d = output_side_sd(model, positive, latents_with["samples"], latents_without["samples"], t_edit=t_edit,
                               t_end=t_end, settings=ShiftSettings(iterations=iterations), name=name,
                               callback=bridge.Progress(unique_id), location=location)
            return (calibrated_sd(model, d, positive, t=t_edit, t_end=t_end),)
        recorded = []
        for latent in (latents_with, latents_without):
            family, m, rec, which_h = recorder(model, location, Recording(spatial))
            if location is not None:
                from ..flow.host import invert as invert_flow

                invert_flow(model, positive, latent["samples"], sigmas, "ddim", recorder_model=m)
            else:
                invert_latent(model, positive, latent["samples"], sigmas, recorder=rec)
            recorded.append(by_timestep(rec.records[0] + rec.records[1]))
        d = difference_direction(recorded[0], recorded[1], family=family, spatial=spatial, name=name, which_h=which_h,
                                 provenance={"method": "latent sets (mean h difference along DDIM inversions)",
                                             "set_sizes": [int(latents_with["samples"].shape[0]),
                                                           int(latents_without["samples"].shape[0])],
                                             "steps": len(sigmas) - 1,
                                             "size": [int(latents_with["samples"].shape[-1]) * 8,
                                                      int(latents_with["samples"].shape[-2]) * 8]})
        return (calibrated_sd(model, d, positive),)


class DirectionPCASD:
    DESCRIPTION = ("An unsupervised h-space direction of an SD1.x / SD2.x / SDXL, Flux or SD3 MODEL: principal component k "
                   "of h over N trajectories of a prompt, per timestep, scaled to one standard deviation.")
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
        }, "optional": dict(FLOW_INPUTS)}

    def make(self, model, positive, sigmas, seeds, seed, component, width, height, spatial, name, block=-1,
             h="residual stream"):
        family, rec, which_h = record_trajectories(model, positive, sigmas, seeds, seed, width, height,
                                                   location=flow_location(model, block, h),
                                                   recording=Recording(spatial))
        d = pca_host_direction(by_timestep(rec.records[0]), component, family=family, spatial=spatial,
                               name=f"{name} {component}", which_h=which_h,
                               provenance={"method": "PCA of h along prompt trajectories", "seeds": seeds,
                                           "seed": seed, "component": component, "size": [width, height]})
        return (calibrated_sd(model, d, positive),)


class DirectionsByIndependenceSD:
    DESCRIPTION = ("k unsupervised h-space directions of an SD1.x / SD2.x / SDXL, Flux or SD3 MODEL at once: independent "
                   "components of h over N trajectories of a prompt. Each trajectory's h at the timesteps of the editing "
                   "interval is one row; the rows are whitened in their top principal components and FastICA-rotated to "
                   "the least Gaussian coordinates, where attributes that vary independently come apart (PCA's axes mix "
                   "them). Each direction is one standard deviation of its component, calibrated on the MODEL; the most "
                   "reproducible over bootstrap resamples first (order: kurtosis, the least Gaussian). rotate: effects "
                   "turns the principal components by their changes of the predicted latent instead, each an "
                   "edit of one region or feature, the k sparsest kept. The list runs the nodes after it once per "
                   "direction; Pick H-Space Direction takes one for the mixer.")
    CATEGORY = SD_CATEGORY
    FUNCTION = "make"
    RETURN_TYPES = (DIRECTION,)
    RETURN_NAMES = ("directions",)
    OUTPUT_IS_LIST = (True,)
    OUTPUT_TOOLTIPS = ("the k directions (a list), one shift per recorded timestep each",)

    @classmethod
    def INPUT_TYPES(cls):
        from ..discovery import ICA_INPUTS, ICA_ORDER, ICA_ROTATE

        return {"required": {
            "model": MODEL_INPUT,
            "positive": ("CONDITIONING", {"tooltip": "the prompt the trajectories are sampled with (cfg 1)"}),
            "sigmas": SIGMAS_INPUT,
            "seeds": ("INT", {"default": 128, "min": 4, "max": 4096,
                              "tooltip": "trajectories to analyse (more than 2 x dims + 1; a few hundred for 8)"}),
            **ICA_INPUTS,
            "t_edit": ("INT", {"default": 0, "min": 0, "max": 999, "tooltip": "rows hold h at t_edit <= t <= t_end"}),
            "t_end": ("INT", {"default": 999, "min": 0, "max": 999, "tooltip": "rows hold h at t_edit <= t <= t_end"}),
            "width": WIDTH_INPUT,
            "height": HEIGHT_INPUT,
            "spatial": (list(SPATIAL), {"tooltip": "average: channel vectors (any resolution); keep: the h grid"}),
            "name": ("STRING", {"default": "IC", "tooltip": "a label stored in the files (with the rank)"}),
        }, "optional": {**FLOW_INPUTS, **ICA_ORDER, **ICA_ROTATE}}

    def make(self, model, positive, sigmas, seeds, k, dims, seed, t_edit, t_end, width, height, spatial, name,
             block=-1, h="residual stream", order="stability", rotate="h"):
        ds = independent_directions(model, positive, sigmas, seeds, k, dims, seed, t_edit, t_end, width, height,
                                    spatial, name, location=flow_location(model, block, h), order=order,
                                    rotate=rotate)
        return ([calibrated_sd(model, d, positive) for d in ds],)


def independent_directions(model, positive, sigmas, seeds, k, dims, seed, t_edit, t_end, width, height, spatial,
                           name, location=None, order="stability", rotate="h", effects_callback=None):
    """The k uncalibrated directions of Directions by Independence (SD) (its inputs; ``location``: a flow
    transformer's block, ``flow_location``; ``rotate`` "effects": turned by their effects on the predicted x0,
    ``effect_maps_sd``, whose forward passes go to ``effects_callback``, default the node's bar)."""
    if t_edit > t_end:
        raise HSpaceError(f"t_edit ({t_edit}) is above t_end ({t_end})")
    from hspace_core.discovery.ica import check_rotation, whitened_dims

    dims = whitened_dims(k, dims)
    check_rotation(rotate, dims)  # before the recording
    if seeds <= dims + 1:
        raise HSpaceError(f"{k} independent components among {dims} principal components need more than "
                          f"{dims + 1} seeds, got {seeds}")
    # no step below t_edit is walked, none above t_end kept, h kept at the size the rows use
    family, rec, which_h = record_trajectories(model, positive, sigmas_down_to(model, sigmas, t_edit), seeds, seed,
                                               width, height, location=location,
                                               recording=Recording(spatial, t_edit, t_end))
    effects_of = None
    if rotate == "effects":
        from .discovery import effect_maps_sd

        def effects_of(shifts):
            return effect_maps_sd(model, positive, shifts, t_edit, t_end, (height // 8, width // 8), seed=seed,
                                  callback=effects_callback, location=location)
    method = "independent effects of h along prompt trajectories (Jacobi)" if rotate == "effects" else \
        "ICA of h along prompt trajectories"
    return ica_host_directions(by_timestep(rec.records[0]), k, dims=dims, family=family, spatial=spatial,
                               name=name, t_edit=t_edit, t_end=t_end, which_h=which_h, seed=seed, order=order,
                               rotate=rotate, effects_of=effects_of,
                               provenance={"method": method, "seeds": seeds, "seed": seed, "dims": dims,
                                           "size": [width, height]})


class DirectionsByContrastSD:
    DESCRIPTION = ("Discovers k h-space directions of an SD1.x / SD2.x / SDXL or Flux.1 MODEL at once without labels "
                   "or words: NoiseCLR's contrastive objective moved into h (the same direction on different latents "
                   "should change the predicted x0 alike, different directions on one latent differently), from "
                   "unlabelled latents (VAE-encoded images) noised by the MODEL's own schedule, with the prompt's "
                   "conditioning (cfg 1); on Flux.1 h is the image tokens at the chosen joint block. Each calibrated "
                   "on the MODEL; largest effect first. The list runs the nodes after it once "
                   "per direction (a strip per direction through Apply and the Asyrp sampler); Pick H-Space Direction "
                   "takes one for the mixer.")
    CATEGORY = SD_CATEGORY
    FUNCTION = "make"
    RETURN_TYPES = (DIRECTION,)
    RETURN_NAMES = ("directions",)
    OUTPUT_IS_LIST = (True,)
    OUTPUT_TOOLTIPS = ("the k directions (a list), one [C, h, w] shift each, applied at every edited step",)

    @classmethod
    def INPUT_TYPES(cls):
        from ..discovery import CONTRAST_INPUTS

        return {"required": {
            "model": ("MODEL", {"tooltip": "an SD1.x / SD2.x / SDXL model (from a checkpoint loader), or Flux.1 "
                                           "(dev, schnell; h at the block below); Flux.2 and SD3 are refused"}),
            "positive": ("CONDITIONING", {"tooltip": "a prompt describing the images (or an empty prompt)"}),
            "latents": ("LATENT", {"tooltip": "unlabelled latents, e.g. VAE Encode of a batch of images"}),
            **CONTRAST_INPUTS,
            "t_end": ("INT", {"default": 999, "min": 0, "max": 999, "tooltip": "train at t <= t_end"}),
            "steps": ("INT", {"default": 40, "min": 2, "max": 1000,
                              "tooltip": "the training timesteps are this grid's steps t_edit <= t <= t_end"}),
            "name": ("STRING", {"default": "contrastive", "tooltip": "a label stored in the files (with the rank)"}),
        }, "optional": {**FLOW_INPUTS}, "hidden": {"unique_id": "UNIQUE_ID"}}

    def make(self, model, positive, latents, k, iterations, batch, lr, temperature, radius, t_edit, seed, t_end,
             steps, name, block=-1, h="residual stream", unique_id=None):
        from ..discovery import contrast_settings
        from .discovery import contrastive_sd

        ds = contrastive_sd(model, positive, latents["samples"], steps=steps, t_edit=t_edit, t_end=t_end, name=name,
                            settings=contrast_settings(k, iterations, batch, lr, temperature, radius, seed),
                            callback=bridge.Progress(unique_id), location=flow_location(model, block, h))
        return ([calibrated_sd(model, d, positive) for d in ds],)
