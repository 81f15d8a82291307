"""The comparison variants of the paper: a fixed image-space shift instead of an h-space one.

To show why Asyrp edits h, the paper compares it with shifting eps or x_t directly. Here the
shift at each step is the batch mean of what the h-space direction itself changes on the same
images at strength 1 along the asymmetric edit (``image_space_shift``), so both variants move
the images by an amount comparable to the direction's:

* ``eps_shift``: eps + s * delta_eps(t) in both terms of the DDIM step;
* ``xt_shift``: x_t + s * delta_x(t) before the step, delta_x = sqrt(a_prev)(P_t(eps~) - P_t(eps)).

Both are predictors for the one generative walk (``sampling.generate``).
"""

from __future__ import annotations

import enum
from typing import Callable

import torch

from .directions.base import Direction
from .model import HSpaceModel
from .sampling import (Predictor, StepPrediction, asyrp_predictor, generate, generation_steps, plain_predictor,
                       predict_x0)


class Variant(str, enum.Enum):
    """Where the edit enters a DDIM step (asyrp.md 1.3 and 10.1)."""

    ASYMMETRIC = "asymmetric"  # Asyrp: x0 term from eps(h + dh), direction term from eps(h)
    SYMMETRIC = "symmetric"  # eps(h + dh) in both terms (the shift largely cancels)
    EPS_SHIFT = "eps_shift"  # a fixed image-space shift of eps, in both terms (paper's naive approach)
    XT_SHIFT = "xt_shift"  # a fixed image-space shift of x_t before each editing step

    @property
    def image_space(self) -> bool:
        return self in (Variant.EPS_SHIFT, Variant.XT_SHIFT)


ImageShift = Callable[[int], torch.Tensor]


def image_space_shift(model: HSpaceModel, direction: Direction, x_T: torch.Tensor, timesteps: torch.Tensor,
                      t_edit: int, variant: Variant) -> ImageShift:
    """t -> [1, C, H, W]: the batch mean over x_T's rows of what ``direction`` changes at step t of
    the asymmetric edit at strength 1: eps(h + dh) - eps(h) (EPS_SHIFT) or the x_{t-1} displacement
    sqrt(a_prev)(P_t(eps~) - P_t(eps)) (XT_SHIFT). Walks the editing interval only."""
    pairs = [p for p in generation_steps(timesteps) if p[0] >= t_edit]
    t_prev_of = dict(pairs)
    edit = asyrp_predictor(model, direction, torch.ones(x_T.shape[0]), t_edit=t_edit, steps=len(timesteps))
    shifts: dict[int, torch.Tensor] = {}

    def record(x: torch.Tensor, t: int) -> StepPrediction:
        pred = edit(x, t)
        if variant is Variant.EPS_SHIFT:
            shifts[t] = (pred.eps_x0 - pred.eps).mean(0, keepdim=True)
        else:
            a = model.schedule.alpha_bar_at(t, like=x)
            a_prev = model.schedule.alpha_bar_at(t_prev_of[t], like=x)
            shifts[t] = (a_prev.sqrt() * (pred.x0 - predict_x0(x, pred.eps, a))).mean(0, keepdim=True)
        return pred

    generate(record, x_T, pairs, model.schedule)
    return lambda t: shifts[t]


def shift_predictor(model: HSpaceModel, variant: Variant, shift: ImageShift, strengths: torch.Tensor, *,
                    t_edit: int) -> Predictor:
    """The eps- or x_t-shift variant at t >= t_edit (plain DDIM below). strengths: [M], one per row."""
    plain = plain_predictor(model)

    def predict(x: torch.Tensor, t: int) -> StepPrediction:
        if t < t_edit:
            return plain(x, t)
        s = strengths.to(device=x.device, dtype=x.dtype).view(-1, 1, 1, 1)
        if variant is Variant.XT_SHIFT:  # the whole step is taken from the shifted x_t
            return plain(x + s * shift(t), t)
        pred = plain(x, t)
        eps = pred.eps + s * shift(t)
        a = model.schedule.alpha_bar_at(t, like=x)
        return StepPrediction(predict_x0(x, eps, a), eps, eps, pred.h)
    return predict
