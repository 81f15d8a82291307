"""DDIM steps, the one generative walk, the inversion walk, and the Asyrp step, as pure functions.

Conventions: x_t [M, C, H, W]; a grid is ascending int64 schedule indices (``asyrp_timesteps``).
Generation walks (t, t_prev) pairs from ``generation_steps(grid)`` downwards, the last pair going
from t = 0 to the clean image (t_prev = -1, alpha_bar = 1); a prefix of those pairs walks part of
the way (as k-diffusion samplers take a slice of their sigmas). Inversion walks the grid upwards.
Predicted x0 is never clamped unless asked (asyrp.md 10.7).

A step is split in two, in k-diffusion's manner: a *predictor* ``(x_t, t) -> StepPrediction``
gives the x0 of the step's first term and the eps of its direction term (plain DDIM: both from one
eps; Asyrp: x0 from eps(h + dh), the direction term from eps(h) of the same encoder pass), and
``ddim_step`` combines them. ``generate`` is the only loop over the generative grid: sampling,
editing, recording h, the comparison variants and CLIP training all run through it with their own
predictor and read it back through ``callback(StepInfo)``. Every walk refuses to go on with a
non-finite x_t (``DivergedError``, naming the rows and the step).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Callable, Sequence

import torch

from .directions.base import Direction
from .errors import HSpaceError
from .model import HSpaceModel
from .schedule import NoiseSchedule


@dataclass(frozen=True, eq=False)
class StepInfo:
    """One step of a walk, reported once per step to ``callback``.

    i, total: this step's index in the whole job (0-based) and the job's number of steps; an engine
              function that runs several walks numbers them as one job (``JobProgress``).
    t:        the timestep the step arrived at (generation: t_prev, -1 = the clean image).
    x_t:      [M, C, H, W] the new state; x0_pred: [M, C, H, W] the step's predicted x0 (the
              edited one inside the editing interval), unclamped unless the walk clamps.
    h:        [M, C_h, H_h, W_h] the unedited bottleneck the step's network pass saw, when the
              predictor reports it (generation), else None.
    """

    i: int
    total: int
    t: int
    x_t: torch.Tensor
    x0_pred: torch.Tensor
    h: torch.Tensor | None = None


Callback = Callable[[StepInfo], None]


@dataclass(frozen=True, eq=False)
class StepPrediction:
    """What a predictor gives one generative step at (x_t, t).

    x0:     [M, C, H, W] the predicted x0 of the step's first term.
    eps:    [M, C, H, W] the noise of the direction term.
    eps_x0: [M, C, H, W] the noise x0 was predicted from (``eps`` itself outside an edit).
    h:      the unedited bottleneck of the pass, or None.
    """

    x0: torch.Tensor
    eps: torch.Tensor
    eps_x0: torch.Tensor
    h: torch.Tensor | None = None


Predictor = Callable[[torch.Tensor, int], StepPrediction]


class DivergedError(HSpaceError):
    """A walk produced a non-finite x_t. ``rows``: the batch rows affected; ``step`` (0-based), ``t``:
    where it first happened. Callers that know what the rows are (``edit``) say it in their words."""

    def __init__(self, rows: list[int], step: int, total: int, t: int):
        self.rows, self.step, self.total, self.t = rows, step, total, t
        super().__init__(f"the computation diverged (NaN or infinity) at step {step + 1}/{total} (t = {t}) "
                         f"in batch row(s) {rows}; nothing was written")


def check_finite(x: torch.Tensor, step: int, total: int, t: int) -> None:
    """Raise ``DivergedError`` when any row of x is not finite."""
    ok = torch.isfinite(x).flatten(1).all(1)
    if not bool(ok.all()):
        raise DivergedError([int(r) for r in torch.nonzero(~ok).flatten()], step, total, t)


class JobProgress:
    """Numbers the steps of several walks as one job: each ``part(n)`` returns a callback that
    reports its walk's step i as ``offset + i`` of ``total`` (parts run one after another)."""

    def __init__(self, callback: Callback | None, total: int):
        self.callback, self.total, self.done = callback, total, 0

    def part(self, steps: int) -> Callback | None:
        offset = self.done
        self.done += steps
        if self.callback is None:
            return None
        callback, total = self.callback, self.total
        return lambda info: callback(replace(info, i=offset + info.i, total=total))


# ------------------------------------------------------------------ grids

def generation_steps(timesteps: torch.Tensor | Sequence[int]) -> list[tuple[int, int]]:
    """The (t, t_prev) pairs of generation down an ascending grid: (t_{n-1}, t_{n-2}), ..., (t_0, -1)
    (Asyrp: zip(reversed(seq), reversed([-1] + seq[:-1])), asyrp.md 1.2)."""
    ts = [int(t) for t in timesteps]
    return list(zip(reversed(ts), reversed([-1] + ts[:-1])))


def inversion_steps(timesteps: torch.Tensor | Sequence[int]) -> list[tuple[int, int]]:
    """The (t, t_next) pairs of DDIM inversion up an ascending grid: (t_0, t_1), ..., (t_{n-2}, t_{n-1})."""
    ts = [int(t) for t in timesteps]
    return list(zip(ts[:-1], ts[1:]))


# ------------------------------------------------------------------ the step

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
    With eta > 0 the noise z must be given (the caller owns the randomness).
    """
    if not eta:
        return alpha_bar_prev.sqrt() * x0_pred + (1 - alpha_bar_prev).clamp(min=0).sqrt() * eps_dir
    if noise is None:
        raise HSpaceError(f"a stochastic DDIM step (eta = {eta}) needs its noise z; none was given")
    sigma = ddim_sigma(alpha_bar, alpha_bar_prev, eta)
    x_prev = alpha_bar_prev.sqrt() * x0_pred + (1 - alpha_bar_prev - sigma ** 2).clamp(min=0).sqrt() * eps_dir
    return x_prev + sigma * noise


def clamp_prediction(x_t: torch.Tensor, pred: StepPrediction, alpha_bar: torch.Tensor) -> StepPrediction:
    """x0 clamped to [-1, 1] and the direction term re-derived from the clamped P_t(eps), as
    guided-diffusion's ``ddim_sample(clip_denoised=True)`` does; Asyrp never clamps."""
    eps = (x_t - alpha_bar.sqrt() * predict_x0(x_t, pred.eps, alpha_bar).clamp(-1, 1)) / (1 - alpha_bar).sqrt()
    return replace(pred, x0=pred.x0.clamp(-1, 1), eps=eps)


# ------------------------------------------------------------------ predictors

def _t_batch(x: torch.Tensor, t: int) -> torch.Tensor:
    return torch.full((x.shape[0],), t, device=x.device, dtype=torch.long)


def plain_predictor(model: HSpaceModel) -> Predictor:
    """Plain DDIM: one network pass, x0 = P_t(eps), the direction term eps."""
    def predict(x: torch.Tensor, t: int) -> StepPrediction:
        a = model.schedule.alpha_bar_at(t, like=x)
        enc = model.encode(x, _t_batch(x, t))
        eps = model.decode(enc, enc.h).eps
        return StepPrediction(predict_x0(x, eps, a), eps, eps, enc.h)
    return predict


def asyrp_prediction(model: HSpaceModel, x: torch.Tensor, t: int, direction: Direction, s: torch.Tensor, *,
                     steps: int, symmetric: bool = False) -> StepPrediction:
    """One editing step's prediction: one encoder pass, the decoder on [h, h + s * dh].

    x: [M, C, H, W]; s: [M, 1, 1, 1] strengths; ``steps``: grid size (the direction's step scaling).
    Asymmetric (Asyrp, asyrp.md 1.3): x0 = P_t(eps(h + s dh)), direction term eps(h). Symmetric:
    eps(h + s dh) in both terms, where the shift largely cancels (the paper's motivation).
    """
    tt = _t_batch(x, t)
    a = model.schedule.alpha_bar_at(t, like=x)
    enc = model.encode(x, tt)
    dh = s * direction.delta(enc.h, tt, enc.emb, steps)
    eps, eps_edit = model.decode(enc, torch.cat([enc.h, enc.h + dh])).eps.chunk(2)
    return StepPrediction(predict_x0(x, eps_edit, a), eps_edit if symmetric else eps, eps_edit, enc.h)


def asyrp_predictor(model: HSpaceModel, direction: Direction | None, strengths: torch.Tensor, *, t_edit: int,
                    steps: int, symmetric: bool = False) -> Predictor:
    """Edit with ``direction`` at t >= t_edit (``asyrp_prediction``), plain DDIM below it or when no
    row has a strength. strengths: [M] one per row of x."""
    plain = plain_predictor(model)
    if direction is None or not bool((strengths != 0).any()):
        return plain

    def predict(x: torch.Tensor, t: int) -> StepPrediction:
        if t < t_edit:
            return plain(x, t)
        s = strengths.to(device=x.device, dtype=x.dtype).view(-1, 1, 1, 1)
        return asyrp_prediction(model, x, t, direction, s, steps=steps, symmetric=symmetric)
    return predict


# ------------------------------------------------------------------ the walks

def generate(predict: Predictor, x_T: torch.Tensor, steps: Sequence[tuple[int, int]], schedule: NoiseSchedule, *,
             t_boost: int = 0, eta: float = 0.0, noises: Sequence[torch.Tensor | None] | None = None,
             clip_x0: bool = False, callback: Callback | None = None) -> torch.Tensor:
    """The generative walk: x_T down the (t, t_prev) pairs ``steps`` (``generation_steps``).

    predict:  the step's predictor (``plain_predictor``, ``asyrp_predictor``, a variant, a trainer's).
    t_boost:  eta is used at steps with t < t_boost (quality boosting, asyrp.md 1.4), never on the
              last step to the clean image; ``noises[i]`` is the z of step i, drawn by the caller.
    clip_x0:  ``clamp_prediction`` at every step; off in the official code.
    Returns x at the last pair's t_prev: x_0 = P_0 for a whole grid (unclamped unless ``clip_x0``).
    """
    x = x_T
    total = len(steps)
    for i, (t, t_prev) in enumerate(steps):
        a, a_prev = schedule.alpha_bar_at(t, like=x), schedule.alpha_bar_at(t_prev, like=x)
        pred = predict(x, t)
        if clip_x0:
            pred = clamp_prediction(x, pred, a)
        step_eta = eta if t < t_boost and t_prev >= 0 else 0.0
        noise = noises[i] if step_eta and noises is not None else None
        x = ddim_step(pred.x0, pred.eps, a, a_prev, step_eta, noise)
        check_finite(x, i, total, t)
        if callback is not None:
            callback(StepInfo(i, total, t_prev, x, pred.x0, pred.h))
    return x


def ddim_invert(model: HSpaceModel, x_0: torch.Tensor, timesteps: torch.Tensor, *,
                callback: Callback | None = None) -> torch.Tensor:
    """Deterministic DDIM inversion x_0 -> x_T up the grid ``timesteps`` ([n], ascending, first 0).

    n - 1 network calls, the first at t = timesteps[0] on the clean image (asyrp.md 2):
    x_next = sqrt(a_next) P_t(eps) + sqrt(1 - a_next) eps. The callback's x0_pred is P_t.
    """
    x = x_0
    predict = plain_predictor(model)
    steps = inversion_steps(timesteps)
    for i, (t, t_next) in enumerate(steps):
        pred = predict(x, t)
        x = ddim_step(pred.x0, pred.eps, model.schedule.alpha_bar_at(t, like=x),
                      model.schedule.alpha_bar_at(t_next, like=x))
        check_finite(x, i, len(steps), t_next)
        if callback is not None:
            callback(StepInfo(i, len(steps), t_next, x, pred.x0))
    return x


def asyrp_step(model: HSpaceModel, x: torch.Tensor, t: int, t_prev: int, direction: Direction, s: torch.Tensor, *,
               steps: int, symmetric: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
    """One deterministic editing step t -> t_prev (``asyrp_prediction`` then ``ddim_step``);
    returns (x_prev, x0_pred). For checking single steps; ``generate`` walks whole grids."""
    pred = asyrp_prediction(model, x, t, direction, s, steps=steps, symmetric=symmetric)
    return ddim_step(pred.x0, pred.eps, model.schedule.alpha_bar_at(t, like=x),
                     model.schedule.alpha_bar_at(t_prev, like=x)), pred.x0


def ddim_sample(model: HSpaceModel, x_T: torch.Tensor, timesteps: torch.Tensor, *, clip_x0: bool = False,
                callback: Callback | None = None) -> torch.Tensor:
    """Plain deterministic DDIM from x_T down the whole grid (n network calls)."""
    return generate(plain_predictor(model), x_T, generation_steps(timesteps), model.schedule, clip_x0=clip_x0,
                    callback=callback)
