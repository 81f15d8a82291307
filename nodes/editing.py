"""Inversion (DDIM or edit-friendly DDPM) and the Asyrp Sampler."""

from __future__ import annotations

import math
from dataclasses import replace

from hspace_core import EditInterval, HSpaceError, Variant, choose_interval, edit, in_units, invert, invert_ddpm
from hspace_core.directions.calibration import UNITS, calibration_of
from hspace_core.discovery.record import seeded_noise
from hspace_core.sampling import JobProgress
from hspace_core.images import SIZE_POLICIES
from hspace_core.interval import TABLE_DATASETS

from . import comfy_bridge as bridge
from .convert import engine_to_image, image_to_engine
from .types import CATEGORY, DIRECTION, INVERSION, MODEL

INTERVAL_MODES = ["explicit", "from direction"] + [f"official table: {d}" for d in TABLE_DATASETS] + \
    ["measure on model"]


INVERSION_METHODS = ["ddim", "ddpm (edit-friendly)"]


class DDIMInvert:
    DESCRIPTION = ("Inverts images over the official Asyrp step grid, and regenerates them unedited: the reconstruction "
                   "shows what editing starts from. ddim: deterministic inversion to x_T (eta 0). ddpm (edit-friendly, "
                   "Huberman-Spiegelglas et al.): one noise map per step (steps x image size x 4 bytes per image) that "
                   "replays the image exactly with stochastic sampling; edits keep more of its structure.")
    CATEGORY = CATEGORY
    FUNCTION = "invert"
    RETURN_TYPES = (INVERSION, "IMAGE")
    RETURN_NAMES = ("inversion", "reconstruction")
    OUTPUT_TOOLTIPS = ("x_T (ddim) or the noise maps (ddpm) and the grid, for the Asyrp Sampler",
                       "the images regenerated without an edit")

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {
            "model": (MODEL, {"tooltip": "the DDPM to invert with"}),
            "image": ("IMAGE", {"tooltip": "images to edit; other sizes are fitted by the size policy"}),
            "steps": ("INT", {"default": 40, "min": 2, "max": 1000,
                              "tooltip": "grid points from t=0 to t_0 (steps - 1 network calls); the released Asyrp "
                                         "directions were made with 40"}),
            "size_policy": (list(SIZE_POLICIES), {"tooltip": "resize_crop: scale the short side and centre-crop; "
                                                             "resize: stretch; error: refuse other sizes"}),
        }, "optional": {
            "method": (INVERSION_METHODS, {"default": "ddim", "tooltip": "ddim: deterministic, x_T; ddpm: "
                                           "edit-friendly noise maps, exact regeneration (the sampler's eta, t_boost "
                                           "and seed then do not apply)"}),
            "seed": ("INT", {"default": 0, "min": 0, "max": 2**63 - 1,
                             "tooltip": "ddpm: seed of the independent draws of x_t along the grid"}),
        }, "hidden": {"unique_id": "UNIQUE_ID"}}

    def invert(self, model, image, steps, size_policy, method="ddim", seed=0, unique_id=None):
        m = model.ready()
        keep = bridge.intermediate_device()  # cached outputs should not hold accelerator memory
        if method == "ddim":
            inv = invert(m, image_to_engine(image), steps, size_policy=size_policy, reconstruct=True,
                         callback=bridge.Progress(unique_id))
            rec = engine_to_image(inv.reconstruction, keep)
            return (replace(inv, x_T=inv.x_T.to(keep), x_0=inv.x_0.to(keep), reconstruction=None), rec)
        if method not in INVERSION_METHODS:
            raise HSpaceError(f"unknown inversion method {method!r}; choose from {INVERSION_METHODS}")
        job = JobProgress(bridge.Progress(unique_id), 2 * steps)  # inversion and regeneration: one bar
        inv = invert_ddpm(m, image_to_engine(image), steps, seed=seed, size_policy=size_policy,
                          callback=job.part(steps))
        rec = edit(m, inv, None, 0.0, callback=job.part(steps)).images[:, 0]
        return (replace(inv, x_0=inv.x_0.to(keep), noise_maps=inv.noise_maps.to(keep)), engine_to_image(rec, keep))


def parse_strengths(strength: float, strengths: str) -> list[float]:
    """The sweep: ``strengths`` as comma/space separated numbers when given, else [strength]."""
    if not strengths.strip():
        return [float(strength)]
    try:
        values = [float(x) for x in strengths.replace(",", " ").split()]
    except ValueError:
        raise HSpaceError(f"strengths must be numbers separated by commas, got {strengths!r}") from None
    if not all(math.isfinite(v) for v in values):
        raise HSpaceError(f"strengths must be finite numbers, got {strengths!r}")
    return values


UNITS_TOOLTIP = ("what the strengths count in: calibrated (1 = the same amount of change for every direction: an RMS "
                 "change of the predicted x0 of 2 % of its own per edited step over the direction's calibration "
                 "interval) or raw (as the direction was made); a direction without a calibration is raw either way")


def sweep_of(strength: float, strengths: str, direction, units: str) -> list[float]:
    """``parse_strengths``, or with 'auto' the calibration's sweep over the direction's usable range."""
    if strengths.strip().lower() != "auto":
        return parse_strengths(strength, strengths)
    cal = calibration_of(direction) if direction is not None else None
    if cal is None or units != "calibrated":
        raise HSpaceError("strengths 'auto' takes its sweep from the direction's calibration: connect a calibrated "
                          "direction and choose units 'calibrated', or type the strengths")
    return cal.sweep(4)


def interval_of(mode: str, t_edit: int, t_boost: int, text_cosine: float, model, direction, clip_x0: bool,
                progress) -> EditInterval:
    """The widgets' interval mode in the engine's words (``choose_interval``); a t_boost widget of 0
    leaves the mode's own t_boost."""
    source, dataset = mode, None
    if mode.startswith("official table: "):
        source, dataset = "table", mode.split(": ", 1)[1]
    source = {"from direction": "direction", "measure on model": "measure"}.get(source, source)
    return choose_interval(source, model, t_edit=t_edit, t_boost=t_boost or None, direction=direction,
                           dataset=dataset, text_cosine=text_cosine, clip_x0=clip_x0, callback=progress)


class AsyrpSampler:
    DESCRIPTION = ("Asyrp's asymmetric reverse process: while t >= t_edit the predicted x0 comes from the decoder fed "
                   "h + strength * delta_h and the direction term from the unedited h, one encoder pass per step; "
                   "plain DDIM below; stochastic quality-boosting steps below t_boost. One image per strength and input.")
    CATEGORY = CATEGORY
    FUNCTION = "sample"
    RETURN_TYPES = ("IMAGE",)
    RETURN_NAMES = ("images",)
    OUTPUT_TOOLTIPS = ("edited images: for every input, one image per strength (input-major order)",)

    @classmethod
    def INPUT_TYPES(cls):
        return {
            "required": {
                "model": (MODEL, {"tooltip": "the DDPM (must be the one the inversion and direction were made for)"}),
                "strength": ("FLOAT", {"default": 1.0, "min": -50.0, "max": 50.0, "step": 0.05,
                                       "tooltip": "edit strength; negative reverses the edit; 0 reconstructs"}),
                "strengths": ("STRING", {"default": "", "tooltip": "optional sweep, e.g. '-1, 0, 1, 2': one image "
                                                                  "per value, all in one batch (overrides strength); "
                                                                  "'auto': 0 and three steps up to the top of the "
                                                                  "direction's usable range (its calibration)"}),
                "interval": (INTERVAL_MODES, {"tooltip": "where t_edit / t_boost come from: the widgets, the "
                                                         "direction's record, Asyrp's official LPIPS tables, or "
                                                         "measured on the model's own samples"}),
                "t_edit": ("INT", {"default": 500, "min": 0, "max": 3999,
                                   "tooltip": "edit at steps with t >= t_edit (used by 'explicit')"}),
                "t_boost": ("INT", {"default": 0, "min": 0, "max": 3999,
                                    "tooltip": "stochastic steps below this t (quality boosting); 0 = none, or the "
                                               "table's / measured one in those modes"}),
                "text_cosine": ("FLOAT", {"default": 1.0, "min": 0.01, "max": 1.0, "step": 0.01,
                                          "tooltip": "cosine of the edit's source/target texts; scales the table's "
                                                     "or the measured t_edit threshold (1 = the base 0.33)"}),
                "steps": ("INT", {"default": 0, "min": 0, "max": 1000,
                                  "tooltip": "generation steps; 0 = the inversion's (or 40 for fresh samples)"}),
                "eta": ("FLOAT", {"default": 1.0, "min": 0.0, "max": 1.0, "step": 0.05,
                                  "tooltip": "eta of the quality-boosting steps"}),
                "variant": ([v.value for v in Variant], {"tooltip": "asymmetric: Asyrp; the others are for "
                                                                    "comparison (the paper argues they fail)"}),
                "seed": ("INT", {"default": 0, "min": 0, "max": 2 ** 63 - 1, "control_after_generate": True,
                                 "tooltip": "seed of fresh samples and of the boosting noise"}),
            },
            "optional": {
                "direction": (DIRECTION, {"tooltip": "the edit; without one the sampler reconstructs or samples"}),
                "inversion": (INVERSION, {"tooltip": "inverted images to edit; without one, fresh samples from seed"}),
                "batch_size": ("INT", {"default": 1, "min": 1, "max": 64,
                                       "tooltip": "fresh samples to draw when no inversion is connected"}),
                "clip_x0": ("BOOLEAN", {"default": False,
                                        "tooltip": "clamp the predicted x0 to [-1, 1] at every step (guided-"
                                                   "diffusion's clip_denoised). Off in Asyrp; steadies fresh "
                                                   "samples of a weak model, but an inversion then no longer "
                                                   "reconstructs exactly"}),
                "t_skip": ("INT", {"default": 0, "min": 0, "max": 1000,
                                   "tooltip": "with an edit-friendly (ddpm) inversion: start this many steps below "
                                              "the top of its grid (keeps more of the input's structure)"}),
                "units": (list(UNITS), {"default": "calibrated", "tooltip": UNITS_TOOLTIP}),
            },
            "hidden": {"unique_id": "UNIQUE_ID"},
        }

    def sample(self, model, strength, strengths, interval, t_edit, t_boost, text_cosine, steps, eta, variant, seed,
               direction=None, inversion=None, batch_size=1, clip_x0=False, t_skip=0, units="calibrated",
               unique_id=None):
        m = model.ready()
        sweep = sweep_of(strength, strengths, direction, units)
        iv = interval_of(interval, t_edit, t_boost, text_cosine, m, direction, clip_x0, bridge.Progress(unique_id))
        source = inversion if inversion is not None else seeded_noise(m, batch_size, seed)
        result = edit(m, source, in_units(direction, units, bridge.say_once), sweep, t_edit=iv, steps=steps or None, eta=eta, seed=seed, variant=variant,
                      clip_x0=clip_x0, t_skip=t_skip, callback=bridge.Progress(unique_id))
        return (engine_to_image(result.flat(), bridge.intermediate_device()),)
