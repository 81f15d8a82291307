"""Edit-friendly DDPM inversion on any sigma walk (Huberman-Spiegelglas, Kulikov and Michaeli, CVPR 2024).

In the walk's coordinates (x = x_0 + sigma * eps, ``sampling.SigmaStep``) the paper's construction is:
draw x_i = x_0 + sigma_i * eps_i independently at every point of the grid, then take as the noise
of step i the z that carries the eta = 1 step from x_i exactly to x_{i+1}:

    z_i = (x_{i+1} - D(x_i) - sigma_down * eps(x_i)) / sigma_up        (the paper's Eq. 5)

The last step (to sigma = 0) adds no noise; its "map" is the residual x_0 - D(x_{n-1}), added to
that step's x0 prediction. Replaying the maps (``replay_noise`` + ``with_residual``) with no edit
lands on x_0 up to float error; with an edit the maps keep the image's structure.

The pixel models' ``inversion.invert_ddpm`` and the SD sampler (``nodes.sd``) both use these.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import Sequence

import torch

from .errors import HSpaceError
from .sampling import (Callback, NoiseSource, SigmaPredictor, SigmaStep, StepInfo, ancestral_sigmas, sigma_step)


def sigma_draws(x_0: torch.Tensor, sigmas: Sequence[float], seed: int, count: int | None = None) -> list[torch.Tensor]:
    """x_0 + sigma_i * eps_i for the first ``count`` sigmas (all by default), eps_i independent standard
    normal from a CPU generator seeded with ``seed``, drawn in the order of ``sigmas``. x_0: [B, ...]."""
    g = torch.Generator().manual_seed(int(seed))
    out = []
    for s in list(sigmas)[:count]:
        eps = torch.randn(x_0.shape, generator=g).to(x_0.device, x_0.dtype)
        out.append(x_0 + float(s) * eps)
    return out


def edit_friendly_maps(predict: SigmaPredictor, x_0: torch.Tensor, steps: Sequence[SigmaStep],
                       draws: Sequence[torch.Tensor], callback: Callback | None = None) -> torch.Tensor:
    """The noise maps [n, B, ...] of an eta = 1 walk over ``steps`` (n, descending, the last to sigma 0)
    that passes through ``draws`` (n tensors like x_0: x at each step's sigma) and ends on x_0.

    Map i is z_i (Eq. 5 above) for the stochastic steps; the last step's map is the residual
    x_0 - D(x_{n-1}). One denoiser call per step, in no particular dependence on the others.
    """
    n = len(steps)
    if len(draws) != n:
        raise HSpaceError(f"{n} steps need {n} draws of x, got {len(draws)}")
    if n == 0 or steps[-1].sigma_next != 0:
        raise HSpaceError("an edit-friendly inversion walks down to the clean image: the last sigma must be 0")
    maps = torch.empty(n, *x_0.shape, device=x_0.device, dtype=x_0.dtype)
    for i, step in enumerate(steps):
        pred = predict(draws[i], step)
        down, up = ancestral_sigmas(step.sigma, step.sigma_next, step.eta)
        target = draws[i + 1] if i + 1 < n else x_0
        if i + 1 < n and not up:
            raise HSpaceError(f"step {i + 1}/{n} (sigma {step.sigma:.4g} -> {step.sigma_next:.4g}) is not "
                              "stochastic: an edit-friendly inversion needs eta > 0 at every step but the last")
        mean = sigma_step(pred.x0, pred.eps, down)
        maps[i] = (target - mean) / up if up else target - mean
        if callback is not None:
            callback(StepInfo(i, n, step.t_next, target, pred.x0, pred.h))
    return maps


def replay_noise(maps: torch.Tensor, repeat: int = 1) -> NoiseSource:
    """The walk's noise source from maps [n, B, ...]: step i gets map i, each image's map repeated
    ``repeat`` times (the rows of a sweep: image-major, as ``repeat_interleave``)."""
    return lambda i: maps[i].repeat_interleave(repeat, 0)


def with_residual(predict: SigmaPredictor, residual: torch.Tensor) -> SigmaPredictor:
    """``predict`` with ``residual`` added to x0 at the step to sigma 0 (the last, noiseless one)."""
    def predict_with_residual(x: torch.Tensor, step: SigmaStep):
        pred = predict(x, step)
        return replace(pred, x0=pred.x0 + residual) if step.sigma_next == 0 else pred
    return predict_with_residual


@dataclass(frozen=True, eq=False)
class NoiseMaps:
    """An edit-friendly inversion on a sigma grid, in the sampler's own coordinates (for SD: the model's
    internal latent units, x = x_0 + sigma * eps).

    x_0:    [B, C, H, W] the clean inputs.
    maps:   [n, B, C, H, W] ``edit_friendly_maps`` (the last one the residual); float32.
    sigmas: [n + 1] the descending grid they belong to, ending in 0.
    seed:   of the draws (``sigma_draws``); generation starts from ``start(t_skip)``.
    Memory: n + 1 tensors of x_0's size.
    """

    x_0: torch.Tensor
    maps: torch.Tensor
    sigmas: torch.Tensor
    seed: int

    def __post_init__(self):
        n = len(self.sigmas) - 1
        if self.maps.shape != (n, *self.x_0.shape):
            raise HSpaceError(f"noise maps of shape {list(self.maps.shape)} do not belong to inputs of "
                              f"{list(self.x_0.shape)} on {n + 1} sigmas (expected {[n, *self.x_0.shape]})")

    @property
    def steps(self) -> int:
        return len(self.sigmas) - 1

    def start(self, t_skip: int = 0) -> torch.Tensor:
        """x at sigmas[t_skip]: the draw generation starts from ([B, C, H, W])."""
        return sigma_draws(self.x_0, self.sigmas.tolist(), self.seed, t_skip + 1)[-1]

    def check_grid(self, sigmas: torch.Tensor) -> None:
        """Refuses a grid other than the one the maps were made on."""
        mine = self.sigmas.to(torch.float64).cpu()
        theirs = sigmas.detach().to(torch.float64).cpu().flatten()
        if len(theirs) != len(mine) or not torch.allclose(theirs, mine, rtol=1e-4, atol=1e-6):
            raise HSpaceError(f"these noise maps belong to a grid of {len(mine)} sigmas ({float(mine[0]):.4g} ... 0); "
                              f"the sampler got {len(theirs)} ({float(theirs[0]):.4g} ... {float(theirs[-1]):.4g}): "
                              "sample with the same SIGMAS the inversion used")

    def check_inputs(self, x: torch.Tensor) -> None:
        """Refuses latents x [B, C, H, W] of another size or count, and latents that are not this
        inversion's start at the top of its grid (e.g. noise added on top, or another image's)."""
        if tuple(x.shape[1:]) != tuple(self.x_0.shape[1:]):
            raise HSpaceError(f"these noise maps were made for latents of {list(self.x_0.shape[1:])}, "
                              f"the sampler got {list(x.shape[1:])}")
        if x.shape[0] != self.x_0.shape[0]:
            raise HSpaceError(f"these noise maps hold {self.x_0.shape[0]} latent(s), the sampler got {x.shape[0]}")
        start = self.start(0).to(x.device, torch.float32)
        err = float((x.float() - start).abs().max())
        if not math.isfinite(err) or err > 1e-5 * (1.0 + float(start.abs().max())):
            raise HSpaceError(f"the latent to sample is not the one these noise maps start from (max difference "
                              f"{err:.3g}): sample the inversion's own noised latent, with add_noise off")
