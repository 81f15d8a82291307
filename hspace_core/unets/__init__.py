"""Pure-PyTorch UNets of the supported checkpoint families, each split at the bottleneck.

``ddpm.DDPMUNet`` serves the DDIM/SDEdit family and google's diffusers ``ddpm-*`` models (the same
network under other key names); ``adm.ADMUNet`` serves improved-diffusion / guided-diffusion.
Both offer ``encode(x, t_model) -> Encoded`` and ``decode(enc, h) -> output``.
"""

from .common import Encoded
from .ddpm import DDPMConfig, DDPMUNet
from .adm import ADMConfig, ADMUNet

__all__ = ["Encoded", "DDPMConfig", "DDPMUNet", "ADMConfig", "ADMUNet"]
