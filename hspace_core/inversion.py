"""``invert``: real images to x_T by deterministic DDIM inversion (asyrp.md 2), as a value.

Validates everything before any work starts, runs under ``torch.inference_mode()`` and follows the
model's device.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from .errors import HSpaceError
from .images import prepare_images
from .model import HSpaceModel
from .sampling import Callback, JobProgress, ddim_invert, ddim_sample
from .schedule import asyrp_timesteps


@dataclass(frozen=True, eq=False)
class Inversion:
    """DDIM inversion of a batch of images.

    x_T:       [N, 3, S, S] latents at t_0 (S = the model's size).
    x_0:       [N, 3, S, S] the images as the model saw them, in [-1, 1].
    timesteps: [n] ascending grid used (``asyrp_timesteps(n, t_0)``).
    fingerprint: the model's; ``preprocessing``: what the size policy did, per image.
    reconstruction: [N, 3, S, S] plain DDIM from x_T back down the grid (unclamped), when asked for.
    """

    x_T: torch.Tensor
    x_0: torch.Tensor
    timesteps: torch.Tensor
    fingerprint: str
    preprocessing: tuple[str, ...]
    reconstruction: torch.Tensor | None = None

    @property
    def steps(self) -> int:
        return len(self.timesteps)

    @property
    def t_0(self) -> int:
        return int(self.timesteps[-1])


def check_steps(steps: int) -> None:
    if not isinstance(steps, int) or steps < 2:
        raise HSpaceError(f"steps must be an integer of at least 2, got {steps!r}")


def model_t0(model: HSpaceModel, t_0: int | None) -> int:
    """The top of the grid: ``t_0``, checked, or the schedule's last timestep."""
    top = model.schedule.num_timesteps - 1
    if t_0 is None:
        return top
    if not 1 <= t_0 <= top:
        raise HSpaceError(f"t_0 must lie in [1, {top}], got {t_0}")
    return t_0


def invert(model: HSpaceModel, images, steps: int = 40, *, t_0: int | None = None, size_policy: str = "resize_crop",
           reconstruct: bool = False, callback: Callback | None = None) -> Inversion:
    """DDIM-invert (eta = 0) images to x_{t_0} over ``steps`` grid points (steps - 1 network calls).

    images: [N, 3, H, W] in [-1, 1], or a list of such tensors (sizes may differ); images whose size
    is not the model's are fitted by ``size_policy`` (see ``images.fit_to_size``) and reported.
    reconstruct: also regenerate them without an edit (``steps`` more calls), as the official
    ``precompute_pairs`` does; the progress counts both walks as one job.
    """
    check_steps(steps)
    t_0 = model_t0(model, t_0)
    x_0, report = prepare_images(images, model.image_size, size_policy)
    grid = asyrp_timesteps(steps, t_0)
    x_0 = x_0.to(device=model.device, dtype=torch.float32)
    job = JobProgress(callback, (steps - 1) + (steps if reconstruct else 0))
    with torch.inference_mode():
        x_T = ddim_invert(model, x_0, grid, callback=job.part(steps - 1))
        rec = ddim_sample(model, x_T, grid, callback=job.part(steps)) if reconstruct else None
    return Inversion(x_T=x_T, x_0=x_0, timesteps=grid, fingerprint=model.fingerprint, preprocessing=report,
                     reconstruction=rec)
