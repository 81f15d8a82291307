"""Jacobian (pullback) directions: per image, without labels or text (Park et al., NeurIPS 2023;
Haas et al., "Discovering interpretable directions in h-space").

For one image at timestep t, J = dh / dx_t is the Jacobian of the map x_t -> h (the encoder of the
UNet up to the bottleneck). Its top-k right singular vectors v_i are the directions of x_t that move
h most; their h-space images J v_i = s_i u_i are the directions found. J is never formed: subspace
iteration on J^T J with one forward-mode product (``torch.func.jvp``, J V) and one reverse-mode
product (``torch.func.vjp``, J^T U) per round, the k vectors as one batch of k copies of x_t (rows of
the UNet are independent), then a Rayleigh-Ritz step (SVD of the small [d_h, k] matrix J V).

The direction is taken at one t and applied as the same shift at every step of the editing interval
[t_edit, T] (as Haas et al. apply their h-space directions): h's directions change slowly with t
inside the interval, and one Jacobian per image is k * (2 * iterations + 1) encoder passes where a
per-timestep one would multiply that by the number of edited steps.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch

from ..directions.base import DirectionInfo, TensorDirection
from ..errors import HSpaceError
from ..images import prepare_images
from ..model import HSpaceModel
from ..sampling import Callback, StepInfo
from ..schedule import asyrp_timesteps
from .record import edit_steps


@dataclass(frozen=True, eq=False)
class SingularVectors:
    """Top-k singular triplets of a Jacobian at one point, largest first.

    right: [k, *x_shape] unit right singular vectors (x_t space); left: [k, *h_shape] unit left
    singular vectors (h space); values: [k] singular values (>= 0, descending).
    """

    right: torch.Tensor
    left: torch.Tensor
    values: torch.Tensor


def _orthonormal_rows(v: torch.Tensor) -> torch.Tensor:
    q, _ = torch.linalg.qr(v.flatten(1).T)
    return q.T.reshape(v.shape)


def top_singular_vectors(f: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor, k: int, *, iterations: int = 10,
                         seed: int = 0, callback: Callable[[int], None] | None = None) -> SingularVectors:
    """The top-k singular triplets of the Jacobian of ``f`` at ``x`` ([1, ...]) by subspace iteration.

    f maps a batch [B, ...] to [B, ...] row by row (no mixing across the batch). Signs are fixed so
    that the largest entry of each left vector is positive. ``callback(round)`` after every round.
    """
    if not isinstance(k, int) or k < 1:
        raise HSpaceError(f"ask for at least one component, got {k!r}")
    if x.shape[0] != 1:
        raise HSpaceError(f"the Jacobian is taken at one image; got a batch of {x.shape[0]}")
    if k > x[0].numel():
        raise HSpaceError(f"x_t has {x[0].numel()} dimensions; cannot find {k} singular vectors")
    with torch.nn.attention.sdpa_kernel([torch.nn.attention.SDPBackend.MATH]):  # the fused kernels lack forward AD
        return _subspace_iteration(f, x, k, iterations, seed, callback)


def _subspace_iteration(f, x, k, iterations, seed, callback) -> SingularVectors:
    g = torch.Generator().manual_seed(int(seed))
    xs = x.expand(k, *x.shape[1:]).contiguous()
    v = _orthonormal_rows(torch.randn(xs.shape, generator=g).to(x.device, x.dtype))
    for r in range(iterations):
        _, jv = torch.func.jvp(f, (xs,), (v,))
        _, pullback = torch.func.vjp(f, xs)
        (jtjv,) = pullback(jv)
        v = _orthonormal_rows(jtjv)
        if callback is not None:
            callback(r)
    _, jv = torch.func.jvp(f, (xs,), (v,))
    # Rayleigh-Ritz: J V = P S Q^T, so J (V Q) = P S
    p, s, qt = torch.linalg.svd(jv.flatten(1).T.double(), full_matrices=False)
    right = (qt.to(v.dtype) @ v.flatten(1)).reshape(v.shape)
    left = p.T.to(jv.dtype).reshape(jv.shape)
    sign = torch.sign(left.flatten(1).gather(1, left.flatten(1).abs().argmax(1, keepdim=True))).squeeze(1)
    sign[sign == 0] = 1
    shape = (-1,) + (1,) * (left.dim() - 1)
    return SingularVectors(right * sign.view(shape), left * sign.view(shape), s.to(v.dtype))


def bottleneck_jacobian(model: HSpaceModel, x_t: torch.Tensor, t: int, k: int, *, iterations: int = 10, seed: int = 0,
                        callback: Callable[[int], None] | None = None) -> SingularVectors:
    """Top-k singular triplets of dh/dx_t for one x_t [1, 3, S, S] at timestep t."""
    from dataclasses import replace

    from .clip import autograd_ready

    with torch.inference_mode(False), torch.no_grad():
        model = replace(model, unet=autograd_ready(model.unet))

        def h_of(x: torch.Tensor) -> torch.Tensor:
            return model.encode(x, torch.full((x.shape[0],), int(t), device=x.device, dtype=torch.long)).h.float()

        return top_singular_vectors(h_of, x_t.float().clone(), k, iterations=iterations, seed=seed, callback=callback)


def jacobian_directions(model: HSpaceModel, image: torch.Tensor, k: int, *, t: int | None = None, t_edit: int = 500,
                        steps: int = 40, iterations: int = 10, seed: int = 0, size_policy: str = "resize_crop",
                        callback: Callback | None = None) -> list[TensorDirection]:
    """The first ``k`` Jacobian directions of one image ([1, 3, H, W] or [3, H, W] in [-1, 1]).

    The image is DDIM-inverted up the ``steps`` grid to its point nearest ``t`` (default: t_edit,
    the lowest edited step), where J = dh/dx_t is decomposed. Direction i is u_i scaled to the norm
    of the image's h there, divided over the interval's edited steps: strength 1 adds up to a shift
    as large as h itself (strength unit "h_norm"; useful strengths are a few hundredths to tenths).
    Progress: the inversion's steps, then one step per iteration round.
    """
    from ..sampling import JobProgress, ddim_invert

    if image.dim() == 3:
        image = image.unsqueeze(0)
    if image.shape[0] != 1:
        raise HSpaceError(f"Jacobian directions are found per image; got {image.shape[0]} images")
    grid = asyrp_timesteps(steps, model.schedule.num_timesteps - 1)
    n_edit = edit_steps(grid, t_edit)
    t = t_edit if t is None else int(t)
    if not 0 <= t <= int(grid[-1]):
        raise HSpaceError(f"t must lie in [0, {int(grid[-1])}], got {t}")
    top = int(torch.argmin((grid - t).abs()))
    t_at = int(grid[top])
    x_0 = prepare_images(image, model.image_size, size_policy)[0].to(model.device, torch.float32)
    job = JobProgress(callback, top + iterations)
    with torch.inference_mode():
        x_t = ddim_invert(model, x_0, grid[:top + 1], callback=job.part(top)) if top else x_0
        h = model.encode(x_t, torch.full((1,), t_at, device=x_t.device, dtype=torch.long)).h.float()
    rounds = job.part(iterations)
    svd = bottleneck_jacobian(model, x_t.clone(), t_at, k, iterations=iterations, seed=seed,
                              callback=None if rounds is None else
                              (lambda r: rounds(StepInfo(r, iterations, t_at, x_t, x_0, None))))
    scale = float(h.norm()) / n_edit
    out = []
    for i in range(k):
        info = DirectionInfo(h_shape=model.h_shape, network_fingerprint=model.fingerprint, family=model.family.value,
                             made_steps=len(grid), strength_unit="h_norm", name=f"jacobian{i}", t_edit=t_edit,
                             provenance={"method": "jacobian", "component": i, "t": t_at, "k": k,
                                         "singular_value": float(svd.values[i]), "iterations": iterations,
                                         "seed": seed, "steps": len(grid), "t_edit": t_edit, "edit_steps": n_edit,
                                         "h_norm": float(h.norm()), "applied": "one shift at every edited step"})
        out.append(TensorDirection((svd.left[i] * scale).cpu().contiguous(), None, info))
    return out
