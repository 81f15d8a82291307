"""DDIM steps, DDIM inversion, and the Asyrp generative process, as pure functions.

Conventions: x_t [N, 3, H, W]; timesteps are ascending int64 schedule indices (``asyrp_timesteps``);
generation walks them downwards, the last step going from t = 0 to the clean image (t_prev = -1,
alpha_bar = 1), inversion walks them upwards. Predicted x0 is never clamped (asyrp.md 10.7).
Every loop reports through ``callback(StepInfo)`` once per step and does no I/O.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Callable

import torch

from .directions.base import Direction
from .errors import HSpaceError
from .model import HSpaceModel


@dataclass(frozen=True, eq=False)
class StepInfo:
    """One step of a loop: index i of ``total``, the timestep t, the new x_t, and predicted x0."""

    i: int
    total: int
    t: int
    x_t: torch.Tensor
    x0_pred: torch.Tensor


Callback = Callable[[StepInfo], None]


class Variant(str, enum.Enum):
    """Where the edit enters a DDIM step (asyrp.md 1.3 and 10.1)."""

    ASYMMETRIC = "asymmetric"  # Asyrp: x0 term from eps(h + dh), direction term from eps(h)
    SYMMETRIC = "symmetric"  # eps(h + dh) in both terms (the shift largely cancels)
    EPS_SHIFT = "eps_shift"  # a fixed image-space shift of eps, in both terms (paper's naive approach)
    XT_SHIFT = "xt_shift"  # a fixed image-space shift of x_t before each editing step


def predict_x0(x_t: torch.Tensor, eps: torch.Tensor, alpha_bar: torch.Tensor) -> torch.Tensor:
    """P_t(eps) = (x_t - sqrt(1 - alpha_bar) eps) / sqrt(alpha_bar)  (DDIM Eq. 12, first term)."""
    return (x_t - (1 - alpha_bar).sqrt() * eps) / alpha_bar.sqrt()


def ddim_sigma(alpha_bar: torch.Tensor, alpha_bar_prev: torch.Tensor, eta: float) -> torch.Tensor:
    """sigma_t(eta) = eta sqrt((1 - a_t/a_prev)(1 - a_prev)/(1 - a_t))  (DDIM Eq. 16)."""
    return eta * ((1 - alpha_bar / alpha_bar_prev) * (1 - alpha_bar_prev) / (1 - alpha_bar)).sqrt()


def ddim_step(x0_pred: torch.Tensor, eps_dir: torch.Tensor, alpha_bar: torch.Tensor, alpha_bar_prev: torch.Tensor,
              eta: float = 0.0, noise: torch.Tensor | None = None) -> torch.Tensor:
    """x_prev = sqrt(a_prev) x0_pred + sqrt(1 - a_prev - sigma^2) eps_dir + sigma z  (DDIM Eq. 12).

    Asyrp feeds x0_pred = P_t(eps(h + dh)) and eps_dir = eps(h): only the x0 term is edited.
    """
    sigma = ddim_sigma(alpha_bar, alpha_bar_prev, eta) if eta else torch.zeros_like(alpha_bar)
    x_prev = alpha_bar_prev.sqrt() * x0_pred + (1 - alpha_bar_prev - sigma ** 2).clamp(min=0).sqrt() * eps_dir
    if eta and noise is not None:
        x_prev = x_prev + sigma * noise
    return x_prev


def _alpha(model: HSpaceModel, t: int, like: torch.Tensor) -> torch.Tensor:
    return model.schedule.alpha_bar_at(t, like=like)


def ddim_invert(model: HSpaceModel, x_0: torch.Tensor, timesteps: torch.Tensor, *,
                callback: Callback | None = None) -> torch.Tensor:
    """Deterministic DDIM inversion x_0 -> x_T up the grid ``timesteps`` ([n], ascending, first 0).

    n - 1 network calls, the first at t = timesteps[0] on the clean image (asyrp.md 2):
    x_next = sqrt(a_next) P_t(eps) + sqrt(1 - a_next) eps.
    """
    x = x_0
    total = len(timesteps) - 1
    for i in range(total):
        t, t_next = int(timesteps[i]), int(timesteps[i + 1])
        a, a_next = _alpha(model, t, x), _alpha(model, t_next, x)
        eps = model.predict(x, torch.full((x.shape[0],), t, device=x.device, dtype=torch.long)).eps
        x0 = predict_x0(x, eps, a)
        x = ddim_step(x0, eps, a, a_next)
        if callback is not None:
            callback(StepInfo(i, total, t_next, x, x0))
    return x


def _steps_down(timesteps: torch.Tensor) -> list[tuple[int, int]]:
    ts = [int(t) for t in timesteps]
    return list(zip(reversed(ts), reversed([-1] + ts[:-1])))


def asyrp_step(model: HSpaceModel, x: torch.Tensor, t: int, t_prev: int, direction: Direction | None,
               s: torch.Tensor, *, steps: int, editing: bool, eta: float = 0.0, noise: torch.Tensor | None = None,
               variant: Variant = Variant.ASYMMETRIC,
               image_delta: Callable | None = None, clip_x0: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
    """One generative step t -> t_prev (t_prev = -1: the clean image). Returns (x_prev, x0_pred).

    x: [M, 3, H, W]; s: [M, 1, 1, 1] strengths; ``editing``: whether this step is in the editing
    interval; ``steps``: grid size (for the directions' step scaling). Asymmetric (Asyrp): one
    encoder pass, decoders on [h, h + s * dh]; x0 from eps(h + s dh), the direction term from eps(h).
    ``clip_x0`` clamps both predicted x0 to [-1, 1] and re-derives the direction term from the
    clamped value, as guided-diffusion's ``ddim_sample(clip_denoised=True)`` does; Asyrp never clamps.
    """
    m = x.shape[0]
    tt = torch.full((m,), t, device=x.device, dtype=torch.long)
    a, a_prev = _alpha(model, t, x), _alpha(model, t_prev, x)
    if editing and variant is Variant.XT_SHIFT:
        x = x + s * image_delta(t)
    enc = model.encode(x, tt)
    if editing and variant in (Variant.ASYMMETRIC, Variant.SYMMETRIC):
        dh = s * direction.delta(enc.h, tt, enc.emb, steps)
        eps, eps_edit = model.decode(enc, torch.cat([enc.h, enc.h + dh])).eps.chunk(2)
        eps_dir = eps_edit if variant is Variant.SYMMETRIC else eps
    else:
        eps = model.decode(enc, enc.h).eps
        if editing and variant is Variant.EPS_SHIFT:
            eps = eps + s * image_delta(t)
        eps_edit = eps_dir = eps
    x0 = predict_x0(x, eps_edit, a)
    if clip_x0:
        x0 = x0.clamp(-1, 1)
        eps_dir = (x - a.sqrt() * predict_x0(x, eps_dir, a).clamp(-1, 1)) / (1 - a).sqrt()
    return ddim_step(x0, eps_dir, a, a_prev, eta, noise), x0


def asyrp_sample(model: HSpaceModel, x_T: torch.Tensor, timesteps: torch.Tensor,
                 direction: Direction | None = None, strengths: torch.Tensor | None = None, *,
                 t_edit: int = 0, t_boost: int = 0, eta: float = 1.0, noises: list[torch.Tensor] | None = None,
                 variant: Variant = Variant.ASYMMETRIC, image_delta: Callable | None = None,
                 callback: Callback | None = None, clip_x0: bool = False) -> torch.Tensor:
    """The Asyrp generative process from x_T down the grid ``timesteps`` (n network calls).

    x_T:       [M, 3, H, W]; every row is one trajectory.
    direction: h-space direction (``ASYMMETRIC``/``SYMMETRIC``), or None for plain DDIM.
    strengths: [M] strength per row (0 rows are unedited), default 1.
    t_edit:    edit while t >= t_edit (inclusive); t_boost: eta > 0 while t < t_boost (quality
               boosting, asyrp.md 1.4); ``noises[i]`` is the z of step i (rows of x_T), drawn by the caller.
    image_delta: for ``EPS_SHIFT`` / ``XT_SHIFT``, t -> [M, 3, H, W] image-space shift at strength 1.
    clip_x0:   clamp every predicted x0 to [-1, 1] (see ``asyrp_step``); off in the official code.
    Returns x_0 = P_0 of the last step (unclamped unless ``clip_x0``).
    """
    m = x_T.shape[0]
    pairs = _steps_down(timesteps)
    if strengths is None:
        strengths = torch.ones(m)
    s = strengths.to(device=x_T.device, dtype=x_T.dtype).view(m, 1, 1, 1)
    can_edit = bool((strengths != 0).any()) and (direction is not None or image_delta is not None)
    if can_edit and variant in (Variant.EPS_SHIFT, Variant.XT_SHIFT) and image_delta is None:
        raise HSpaceError(f"the {variant.value} variant needs an image-space shift (image_delta)")
    x = x_T
    for i, (t, t_prev) in enumerate(pairs):
        step_eta = eta if t < t_boost and t_prev >= 0 else 0.0
        x, x0 = asyrp_step(model, x, t, t_prev, direction, s, steps=len(pairs), editing=can_edit and t >= t_edit,
                           eta=step_eta, noise=noises[i] if step_eta and noises is not None else None,
                           variant=variant, image_delta=image_delta, clip_x0=clip_x0)
        if callback is not None:
            callback(StepInfo(i, len(pairs), t_prev, x, x0))
    return x
