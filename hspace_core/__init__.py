"""hspace_core: semantic image editing in the h-space of unconditional pixel diffusion models.

A standalone engine (torch, numpy, safetensors, pillow; open_clip for text-guided training) behind
the ComfyUI node pack. It never imports ComfyUI.

    >>> from hspace_core import load_model, invert, edit, load_direction
    >>> model = load_model("celeba_hq.ckpt")                      # DDIM/SDEdit, diffusers or ADM
    >>> inv = invert(model, images, steps=40)                       # [N, 3, H, W] in [-1, 1]
    >>> smile = load_direction("smiling_LC_CelebA_HQ_t999_ninv40_ngen40_0.pth")
    >>> out = edit(model, inv, smile, strengths=[-1, 0, 1], t_edit=500).images   # [N, 3 strengths, 3, H, W]
"""

from .calibrate import calibrate, calibrated
from .directions.base import (DeltaBlockDirection, Direction, DirectionInfo, DirectionMix, TensorDirection, mix,
                              mix_calibrated)
from .directions.calibration import Calibration, in_units
from .directions.io import load_direction, save_direction
from .editing import EditResult, edit
from .errors import HSpaceError
from .interval import EditInterval, choose_interval, measure_interval, table_interval
from .inversion import DDPMInversion, Inversion, invert, invert_ddpm
from .loading import load_model
from .model import Family, HSpaceModel, Prediction
from .sampling import StepInfo
from .variants import Variant
from .schedule import NoiseSchedule, asyrp_timesteps, cosine_schedule, linear_schedule
from .unets import Encoded

__all__ = ["DeltaBlockDirection", "Direction", "DirectionInfo", "DirectionMix", "TensorDirection", "mix",
           "mix_calibrated", "Calibration", "calibrate", "calibrated", "in_units",
           "load_direction", "save_direction", "EditResult", "Inversion", "DDPMInversion", "edit", "invert",
           "invert_ddpm", "HSpaceError",
           "EditInterval", "choose_interval", "measure_interval", "table_interval", "load_model", "Family", "HSpaceModel",
           "Prediction", "StepInfo", "Variant", "NoiseSchedule", "asyrp_timesteps", "cosine_schedule",
           "linear_schedule", "Encoded"]
