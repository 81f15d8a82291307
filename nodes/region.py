"""Direction Region: a direction's shift kept only where a mask says (``hspace_core.directions.region``)."""

from __future__ import annotations

from hspace_core import calibrated
from hspace_core.directions.region import restrict_to_region

from .types import CATEGORY, DIRECTION, MODEL


class DirectionRegion:
    DESCRIPTION = ("Keeps a direction's h shift only where a mask is white: each position of h's grid gets the share "
                   "of its area the mask covers (the mask may have any resolution; it is laid over the image). Edits "
                   "one region, e.g. the mouth for a smile, and leaves the h of the others alone. Needs a direction "
                   "kept per position (SD direction nodes: spatial 'keep'; pixel-model directions are). The grid is "
                   "coarse (4 x 4 in the miniature SD world, 8 x 8 for SD1.5 at 512 px), so regions are coarse too. "
                   "The restricted direction is a part of the shift, so it is calibrated again when its model is "
                   "connected (an SD MODEL with the prompt's conditioning, or a pixel DDPM); otherwise it is in raw "
                   "units.")
    CATEGORY = CATEGORY
    FUNCTION = "restrict"
    RETURN_TYPES = (DIRECTION,)
    RETURN_NAMES = ("direction",)
    OUTPUT_TOOLTIPS = ("the direction, weighted per h position by the mask",)

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {
            "direction": (DIRECTION, {"tooltip": "a direction kept per position (h grid larger than 1 x 1)"}),
            "mask": ("MASK", {"tooltip": "white (1) where to edit, over the whole image; the first mask of a batch"}),
            "invert": ("BOOLEAN", {"default": False, "tooltip": "edit where the mask is black instead"}),
        }, "optional": {
            "model": ("MODEL", {"tooltip": "the SD MODEL the direction is for: calibrates the restricted direction "
                                           "(with positive)"}),
            "positive": ("CONDITIONING", {"tooltip": "the prompt the calibration samples with (with model)"}),
            "pixel_model": (MODEL, {"tooltip": "or the pixel DDPM the direction is for: calibrates the restricted "
                                               "direction"}),
        }}

    def restrict(self, direction, mask, invert, model=None, positive=None, pixel_model=None):
        d = restrict_to_region(direction, 1.0 - mask if invert else mask)
        if model is not None and positive is not None:
            from .sd.calibration import calibrated_sd

            d = calibrated_sd(model, d, positive)
        elif pixel_model is not None:
            d = calibrated(pixel_model.ready(), d)
        return (d,)
