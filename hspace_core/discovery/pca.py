"""Unsupervised directions (Haas et al. 2024): per-timestep PCA of h over N of the model's samples.

At every generative step the h's of N samples are centred and decomposed (through the N x N
Gram matrix, cheap when N << dim h). Component k is scaled to its standard deviation
(singular value / sqrt(N - 1)) and its sign is made consistent along the trajectory: fixed at the
first step (largest coordinate positive), then each step takes the sign closer to the previous
step's vector. As for supervised directions the per-step values are divided by the number of steps
in the editing interval: strength 1 moves h by one standard deviation along the component.
"""

from __future__ import annotations

import torch

from ..errors import HSpaceError
from ..model import HSpaceModel
from ..sampling import Callback
from ..schedule import asyrp_timesteps
from ..directions.base import TensorDirection
from .record import BATCH, edit_steps, record_h, seeded_noise
from .supervised import direction_from_steps


def principal_components(x: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Top-k principal axes of rows x [N, D]: (unit axes [k, D], standard deviations [k]), from whichever of
    the N x N Gram matrix and the D x D covariance is smaller."""
    n, dim = x.shape
    xc = (x - x.mean(0)).double()
    if dim < n:  # the D x D covariance is the smaller problem
        evals, evecs = torch.linalg.eigh(xc.T @ xc)
        order = torch.argsort(evals, descending=True)[:k]
        axes = evecs[:, order].T
    else:
        evals, evecs = torch.linalg.eigh(xc @ xc.T)
        order = torch.argsort(evals, descending=True)[:k]
        axes = (xc.T @ evecs[:, order]).T
    axes = axes / axes.norm(dim=1, keepdim=True).clamp_min(1e-30)
    std = evals[order].clamp_min(0).sqrt() / max(n - 1, 1) ** 0.5
    return axes.float(), std.float()


def consistent_signs(axes: list[torch.Tensor]) -> list[torch.Tensor]:
    """Unit axes [D] along a trajectory with one orientation: the first with its largest coordinate
    positive, each next one the sign closer to the one before."""
    out: list[torch.Tensor] = []
    for v in axes:
        if not out:
            v = v * torch.sign(v[v.abs().argmax()])
        elif torch.dot(v, out[-1]) < 0:
            v = -v
        out.append(v)
    return out


def pca_directions(model: HSpaceModel, n_samples: int, components: int, *, steps: int = 40, t_edit: int = 500,
                   seed: int = 0, batch: int = BATCH, callback: Callback | None = None) -> list[TensorDirection]:
    """The first ``components`` principal directions of h over ``n_samples`` seeded samples."""
    if components < 1:
        raise HSpaceError(f"ask for at least one component, got {components}")
    if n_samples <= components:
        raise HSpaceError(f"PCA of {n_samples} samples gives at most {n_samples - 1} components; "
                          f"component {components - 1} needs N > {components}")
    grid = asyrp_timesteps(steps, model.schedule.num_timesteps - 1)
    edit_steps(grid, t_edit)
    hs = record_h(model, seeded_noise(model, n_samples, seed), grid, batch=batch, callback=callback)
    n_steps, shape = hs.shape[0], hs.shape[2:]
    per_step = [principal_components(hs[s].flatten(1), components) for s in range(n_steps)]
    out = []
    for j in range(components):
        axes_j = consistent_signs([axes[j] for axes, _ in per_step])
        vecs = [v * std[j] for v, (_, std) in zip(axes_j, per_step)]
        out.append(direction_from_steps(
            model, torch.stack(vecs).view(n_steps, *shape), grid, t_edit, strength_unit="std", name=f"pc{j}",
            provenance={"method": "pca", "component": j, "n_samples": n_samples, "seed": seed,
                        "explained_std_first_step": float(per_step[0][1][j])}))
    return out


def pca_direction(model: HSpaceModel, k: int, n_samples: int, **kwargs) -> TensorDirection:
    """Principal direction ``k`` (0 = largest variance) of h over ``n_samples`` samples."""
    if k < 0:
        raise HSpaceError(f"component index must be >= 0, got {k}")
    return pca_directions(model, n_samples, k + 1, **kwargs)[k]
