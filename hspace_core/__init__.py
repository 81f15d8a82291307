"""hspace_core: semantic image editing in the h-space of unconditional pixel diffusion models.

A standalone engine (torch, numpy, safetensors, pillow; open_clip for text-guided training) behind
the ComfyUI node pack. It never imports ComfyUI.

    >>> from hspace_core import load_model
    >>> model = load_model("celeba_hq.ckpt")      # DDIM/SDEdit, diffusers or ADM checkpoints
    >>> enc = model.encode(x_t, t)                 # h = enc.h, the middle block's output
    >>> eps = model.decode(enc, enc.h + delta_h).eps
"""

from .errors import HSpaceError
from .loading import load_model
from .model import Family, HSpaceModel, Prediction
from .schedule import NoiseSchedule, asyrp_timesteps, cosine_schedule, linear_schedule
from .unets import Encoded

__all__ = ["HSpaceError", "load_model", "Family", "HSpaceModel", "Prediction", "NoiseSchedule",
           "asyrp_timesteps", "cosine_schedule", "linear_schedule", "Encoded"]
