"""h along generative trajectories: what the statistical direction finders (Haas et al.) work on.

Real images are DDIM-inverted and regenerated (eta = 0, no edit), the model's own samples are
generated from seeded x_T; either way h is recorded at every step of the generative grid, i.e.
exactly where a direction will later be added. Both run through the engine's walks
(``sampling.generate`` / ``ddim_invert``) and report one job's progress.
"""

from __future__ import annotations

import torch

from ..errors import HSpaceError
from ..images import prepare_images
from ..model import HSpaceModel
from ..sampling import Callback, JobProgress, StepInfo, ddim_invert, ddim_sample
from ..schedule import asyrp_timesteps


BATCH = 32  # rows per walk when recording or inverting many images


def batches(n: int, batch: int) -> list[tuple[int, int]]:
    """[start, stop) row ranges of ``n`` rows in chunks of ``batch``."""
    return [(start, min(start + batch, n)) for start in range(0, n, batch)]


def record_steps(n: int, steps: int, batch: int) -> int:
    """Walk steps ``record_h`` reports for n rows on a grid of ``steps``."""
    return len(batches(n, batch)) * steps


def record_h(model: HSpaceModel, x_T: torch.Tensor, timesteps: torch.Tensor, *, batch: int = BATCH,
             reduce: str = "none", callback: Callback | None = None) -> torch.Tensor:
    """h at every generative step for every row of x_T ([N, 3, S, S]), by plain DDIM.

    reduce "none" -> [n_steps, N, C_h, H_h, W_h] (descending t, float32 on CPU);
           "mean" -> [n_steps, C_h, H_h, W_h] running mean (constant memory).
    Progress: ``record_steps(N, n_steps, batch)`` steps with the walks' x0 predictions.
    """
    n, steps = x_T.shape[0], len(timesteps)
    job = JobProgress(callback, record_steps(n, steps, batch))
    out = None
    with torch.inference_mode():
        for start, stop in batches(n, batch):
            report = job.part(steps)

            def keep(info: StepInfo, start=start, report=report) -> None:
                nonlocal out
                h = info.h.float().cpu()
                if out is None:
                    shape = (steps, *h.shape[1:]) if reduce == "mean" else (steps, n, *h.shape[1:])
                    out = torch.zeros(shape)
                if reduce == "mean":
                    out[info.i] += h.sum(0) / n
                else:
                    out[info.i, start:start + h.shape[0]] = h
                if report is not None:
                    report(info)
            ddim_sample(model, x_T[start:stop].to(model.device, torch.float32), timesteps, callback=keep)
    return out


def invert_images(model: HSpaceModel, images, steps: int, *, size_policy: str = "resize_crop",
                  batch: int = BATCH, callback: Callback | None = None) -> torch.Tensor:
    """DDIM-invert a set of images ([N, 3, H, W] in [-1, 1] or a list) -> x_T [N, 3, S, S] on CPU.
    Progress: ``invert_steps(N, steps, batch)`` steps."""
    x0, _ = prepare_images(images, model.image_size, size_policy)
    return invert_prepared(model, x0, steps, batch=batch, callback=callback)


def invert_prepared(model: HSpaceModel, x0: torch.Tensor, steps: int, *, batch: int = BATCH,
                    callback: Callback | None = None) -> torch.Tensor:
    """``invert_images`` for images already fitted to the model ([N, 3, S, S] in [-1, 1])."""
    grid = asyrp_timesteps(steps, model.schedule.num_timesteps - 1)
    job = JobProgress(callback, invert_steps(x0.shape[0], steps, batch))
    out = []
    with torch.inference_mode():
        for start, stop in batches(x0.shape[0], batch):
            out.append(ddim_invert(model, x0[start:stop].to(model.device, torch.float32), grid,
                                   callback=job.part(steps - 1)).float().cpu())
    return torch.cat(out)


def invert_steps(n: int, steps: int, batch: int) -> int:
    """Walk steps ``invert_images`` reports for n images on a grid of ``steps``."""
    return len(batches(n, batch)) * (steps - 1)


def count_images(images) -> int:
    """Images in a batch tensor, a single [3, H, W] image, or a list of either."""
    if isinstance(images, torch.Tensor):
        return images.shape[0] if images.ndim == 4 else 1
    return sum(im.shape[0] if im.ndim == 4 else 1 for im in images)


def seeded_noise(model: HSpaceModel, n: int, seed: int) -> torch.Tensor:
    """x_T for ``n`` of the model's own samples, from a seeded CPU generator: [n, 3, S, S]."""
    if n < 1:
        raise HSpaceError(f"need at least one sample, got {n}")
    g = torch.Generator().manual_seed(seed)
    s = model.image_size
    return torch.randn(n, model.in_channels, s, s, generator=g)


def edit_steps(timesteps: torch.Tensor, t_edit: int) -> int:
    """Number of generative steps with t >= t_edit on a grid (the steps a direction is added at)."""
    k = int((timesteps >= t_edit).sum())
    if k == 0:
        raise HSpaceError(f"no step of the grid lies at or above t_edit = {t_edit}")
    return k
