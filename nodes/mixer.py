"""Direction Mixer: a weighted sum of directions, optionally with chosen directions held fixed."""

from __future__ import annotations

from hspace_core import mix, mix_calibrated
from hspace_core.directions.calibration import UNITS
from hspace_core.directions.project import project_off

from . import comfy_bridge as bridge

from .types import CATEGORY, DIRECTION

SLOTS = 4


class DirectionMixer:
    DESCRIPTION = ("Mixes up to four directions with weights (negative reverses a direction), like paint. In calibrated "
                   "units (default) a weight means the same for every direction (each enters at its calibrated unit; "
                   "the mix's strength 1 is each at its weight). Optionally divides by sqrt(n) (Asyrp's multi-attribute "
                   "convention) and projects the result off up to two directions to hold those attributes fixed "
                   "(tensor directions only; the result is then in raw units).")
    CATEGORY = CATEGORY
    FUNCTION = "mix"
    RETURN_TYPES = (DIRECTION,)
    RETURN_NAMES = ("direction",)
    OUTPUT_TOOLTIPS = ("the mixed direction",)

    @classmethod
    def INPUT_TYPES(cls):
        weight = {"default": 1.0, "min": -20.0, "max": 20.0, "step": 0.05}
        required = {"direction_1": (DIRECTION, {"tooltip": "first direction"}),
                    "weight_1": ("FLOAT", dict(weight, tooltip="weight of direction 1 (negative reverses it)"))}
        for i in range(2, SLOTS + 1):
            required[f"weight_{i}"] = ("FLOAT", dict(weight, tooltip=f"weight of direction {i} (if connected)"))
        required["sqrt_n"] = ("BOOLEAN", {"default": False,
                                          "tooltip": "divide the sum by sqrt(n): Asyrp's convention for n attributes"})
        required["projection"] = (["joint", "one at a time"], {
            "tooltip": "how to remove the held-fixed directions: jointly (least squares) or one after another"})
        optional = {f"direction_{i}": (DIRECTION, {"tooltip": f"direction {i}"}) for i in range(2, SLOTS + 1)}
        optional.update({f"hold_fixed_{i}": (DIRECTION, {"tooltip": "keep this attribute unchanged: the mix loses "
                                                                    "its component along it"}) for i in (1, 2)})
        optional["units"] = (list(UNITS), {"default": "calibrated", "tooltip": "what the weights count in: "
                                           "calibrated (the same amount of change for every direction) or raw"})
        return {"required": required, "optional": optional}

    def mix(self, direction_1, weight_1, weight_2, weight_3, weight_4, sqrt_n, projection, direction_2=None,
            direction_3=None, direction_4=None, hold_fixed_1=None, hold_fixed_2=None, units="calibrated"):
        terms = [(d, w) for d, w in ((direction_1, weight_1), (direction_2, weight_2), (direction_3, weight_3),
                                     (direction_4, weight_4)) if d is not None]
        result = mix_calibrated(terms, sqrt_n=sqrt_n, say=bridge.say_once) if units == "calibrated" else \
            mix(terms, sqrt_n=sqrt_n)
        fixed = [d for d in (hold_fixed_1, hold_fixed_2) if d is not None]
        if fixed:
            result = project_off(result, fixed, joint=projection == "joint")
        return (result,)


class PickDirection:
    DESCRIPTION = ("One direction of a list (the directions of H-Space Directions by Contrast): the index-th, for the "
                   "Direction Mixer, Apply or the samplers. A negative index counts from the end.")
    CATEGORY = CATEGORY
    FUNCTION = "pick"
    INPUT_IS_LIST = True
    RETURN_TYPES = (DIRECTION,)
    RETURN_NAMES = ("direction",)
    OUTPUT_TOOLTIPS = ("the chosen direction",)

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {
            "directions": (DIRECTION, {"tooltip": "a list of directions"}),
            "index": ("INT", {"default": 0, "min": -64, "max": 63, "tooltip": "which one (0 = the first)"}),
        }}

    def pick(self, directions, index):
        from hspace_core import HSpaceError

        i = int(index[0])
        if not -len(directions) <= i < len(directions):
            raise HSpaceError(f"index {i} is outside the list of {len(directions)} direction(s)")
        return (directions[i],)
