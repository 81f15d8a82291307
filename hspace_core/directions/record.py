"""h along generative trajectories: what the statistical direction finders (Haas et al.) work on.

Real images are DDIM-inverted and regenerated (eta = 0, no edit), the model's own samples are
generated from seeded x_T; either way h is recorded at every step of the generative grid, i.e.
exactly where a direction will later be added.
"""

from __future__ import annotations

from typing import Callable, Iterator

import torch

from ..editing import prepare_images
from ..errors import HSpaceError
from ..model import HSpaceModel
from ..sampling import StepInfo, ddim_invert, ddim_step, predict_x0
from ..schedule import asyrp_timesteps


def generation_h(model: HSpaceModel, x_T: torch.Tensor, timesteps: torch.Tensor) -> Iterator[tuple[int, torch.Tensor]]:
    """Plain DDIM from x_T down ``timesteps``, yielding (t, h) at every step; h: [N, C_h, H_h, W_h]."""
    ts = timesteps.tolist()
    x = x_T
    for t, t_prev in zip(reversed(ts), reversed([-1] + ts[:-1])):
        tt = torch.full((x.shape[0],), t, device=x.device, dtype=torch.long)
        enc = model.encode(x, tt)
        eps = model.decode(enc, enc.h).eps
        a, a_prev = model.schedule.alpha_bar_at(t, like=x), model.schedule.alpha_bar_at(t_prev, like=x)
        yield t, enc.h
        x = ddim_step(predict_x0(x, eps, a), eps, a, a_prev)


def record_h(model: HSpaceModel, x_T: torch.Tensor, timesteps: torch.Tensor, *, batch: int = 32,
             reduce: str = "none", callback: Callable[[StepInfo], None] | None = None) -> torch.Tensor:
    """h at every generative step for every row of x_T ([N, 3, S, S]).

    reduce "none" -> [n_steps, N, C_h, H_h, W_h] (descending t, float32 on CPU);
           "mean" -> [n_steps, C_h, H_h, W_h] running mean (constant memory).
    """
    n = x_T.shape[0]
    steps = len(timesteps)
    out = None
    done = 0
    with torch.inference_mode():
        for start in range(0, n, batch):
            chunk = x_T[start:start + batch].to(model.device, torch.float32)
            for i, (t, h) in enumerate(generation_h(model, chunk, timesteps)):
                h = h.float().cpu()
                if out is None:
                    shape = (steps, *h.shape[1:]) if reduce == "mean" else (steps, n, *h.shape[1:])
                    out = torch.zeros(shape)
                if reduce == "mean":
                    out[i] += h.sum(0) / n
                else:
                    out[i, start:start + h.shape[0]] = h
                if callback is not None:
                    done += 1
                    callback(StepInfo(done - 1, steps * ((n + batch - 1) // batch), t, chunk, chunk))
    return out


def invert_images(model: HSpaceModel, images, steps: int, *, size_policy: str = "resize_crop",
                  batch: int = 32, callback=None) -> torch.Tensor:
    """DDIM-invert a set of images ([N, 3, H, W] in [-1, 1] or a list) -> x_T [N, 3, S, S] on CPU."""
    x0, _ = prepare_images(model, images, size_policy)
    grid = asyrp_timesteps(steps, model.schedule.num_timesteps - 1)
    out = []
    with torch.inference_mode():
        for start in range(0, x0.shape[0], batch):
            chunk = x0[start:start + batch].to(model.device, torch.float32)
            out.append(ddim_invert(model, chunk, grid, callback=callback).float().cpu())
    return torch.cat(out)


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
