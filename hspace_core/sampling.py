"""DDIM steps, the one generative walk, the inversion walk, and the Asyrp step, as pure functions.

Conventions: x_t [M, C, H, W]; a grid is ascending int64 schedule indices (``asyrp_timesteps``).
Generation walks (t, t_prev) pairs from ``generation_steps(grid)`` downwards, the last pair going
from t = 0 to the clean image (t_prev = -1, alpha_bar = 1); a prefix of those pairs walks part of
the way (as k-diffusion samplers take a slice of their sigmas). Inversion walks the grid upwards.
Predicted x0 is never clamped unless asked (asyrp.md 10.7).

A step is split in two, in k-diffusion's manner: a *predictor* gives the x0 of the step's first term
and the eps of its direction term (``StepPrediction``; plain: both from one eps; Asyrp: x0 from
eps(h + dh), the direction term from eps(h)), and ``sigma_step`` combines them in k-diffusion
coordinates, x_next = x0 + sigma_next * eps (DDIM Eq. 12 divided by sqrt(alpha_bar_prev)).
``walk`` is the only loop: generation and inversion of the pixel models (``generate`` and
``ddim_invert`` put their integer grid on it, VP in and out) and of a host model's sigmas (ComfyUI's
SD, through ``two_call_predictor``, where D and D_edit come from two calls of the host's denoiser).
Sampling, editing, recording h, the comparison variants and CLIP training all run through it with
their own predictor and read it back through ``callback(StepInfo)``. Every walk refuses to go on with
a non-finite x (``DivergedError``, naming the rows and the step).
"""

from __future__ import annotations

import math
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

@dataclass(frozen=True)
class SigmaStep:
    """One step of a walk in k-diffusion coordinates, x = x0 + sigma * eps (VE; x = x_t / sqrt(alpha_bar)).

    t, t_next:         the model timesteps it leaves and reaches (float for a host's continuous grid;
                       -1 = the clean image); the edit interval and per-timestep directions read t.
    sigma, sigma_next: sqrt((1 - alpha_bar) / alpha_bar) at t and t_next (0 at the clean image).
    eta:               the step's stochasticity (DDIM eta == k-diffusion's ancestral eta).
    """

    t: float
    t_next: float
    sigma: float
    sigma_next: float
    eta: float = 0.0


def ancestral_sigmas(sigma: float, sigma_next: float, eta: float) -> tuple[float, float]:
    """(sigma_down, sigma_up) of a step (k-diffusion's ``get_ancestral_step``). With sigma^2 = (1-a)/a
    this is DDIM's Eq. 16: sigma_up = sigma_t(eta) / sqrt(a_prev), sigma_down^2 = sigma_next^2 - sigma_up^2."""
    if not eta or not sigma_next:
        return sigma_next, 0.0
    up = min(sigma_next, eta * math.sqrt(sigma_next ** 2 * (sigma ** 2 - sigma_next ** 2) / sigma ** 2))
    return math.sqrt(sigma_next ** 2 - up ** 2), up


def sigma_step(x0_pred: torch.Tensor, eps_dir: torch.Tensor, sigma_down: float, sigma_up: float = 0.0,
               noise: torch.Tensor | None = None) -> torch.Tensor:
    """x_next = x0_pred + sigma_down eps_dir + sigma_up z: the DDIM step (Eq. 12) divided by sqrt(a_prev).

    Asyrp feeds x0_pred = D_edit(x) (from eps(h + dh)) and eps_dir = (x - D(x)) / sigma (from eps(h)):
    only the x0 term is edited (asyrp.md 1.3). With sigma_up > 0 the noise z must be given.
    """
    x_next = x0_pred + sigma_down * eps_dir
    if not sigma_up:
        return x_next
    if noise is None:
        raise HSpaceError(f"a stochastic step (sigma_up = {sigma_up:.4g}) needs its noise z; none was given")
    return x_next + sigma_up * noise


def predict_x0(x_t: torch.Tensor, eps: torch.Tensor, alpha_bar: torch.Tensor) -> torch.Tensor:
    """P_t(eps) = (x_t - sqrt(1 - alpha_bar) eps) / sqrt(alpha_bar)  (DDIM Eq. 12, first term)."""
    return (x_t - (1 - alpha_bar).sqrt() * eps) / alpha_bar.sqrt()


def ddim_sigma(alpha_bar: torch.Tensor, alpha_bar_prev: torch.Tensor, eta: float) -> torch.Tensor:
    """sigma_t(eta) = eta sqrt((1 - a_t/a_prev)(1 - a_prev)/(1 - a_t))  (DDIM Eq. 16)."""
    return eta * ((1 - alpha_bar / alpha_bar_prev) * (1 - alpha_bar_prev) / (1 - alpha_bar)).sqrt()


def ddim_step(x0_pred: torch.Tensor, eps_dir: torch.Tensor, alpha_bar: torch.Tensor, alpha_bar_prev: torch.Tensor,
              eta: float = 0.0, noise: torch.Tensor | None = None) -> torch.Tensor:
    """x_prev = sqrt(a_prev) x0_pred + sqrt(1 - a_prev - sigma^2) eps_dir + sigma z  (DDIM Eq. 12), in VP
    coordinates: ``sigma_step`` scaled by sqrt(a_prev). For checking single steps; walks use ``walk``."""
    a, a_prev = float(alpha_bar), float(alpha_bar_prev)
    down, up = ancestral_sigmas(_ve_sigma(a), _ve_sigma(a_prev), eta)
    return math.sqrt(a_prev) * sigma_step(x0_pred, eps_dir, down, up, noise)


def _ve_sigma(alpha_bar: float) -> float:
    return math.sqrt((1 - alpha_bar) / alpha_bar)


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


# ------------------------------------------------------------------ the walk

SigmaPredictor = Callable[[torch.Tensor, SigmaStep], StepPrediction]
Denoiser = Callable[[torch.Tensor, SigmaStep, bool], torch.Tensor]
NoiseSource = Callable[[int], torch.Tensor]


def walk(predict: SigmaPredictor, x: torch.Tensor, steps: Sequence[SigmaStep], *, noise: NoiseSource | None = None,
         callback: Callback | None = None) -> torch.Tensor:
    """The one walk: x (k-diffusion coordinates, [M, C, H, W]) along ``steps``, each one
    ``sigma_step(predict(x, step))``. Down a grid it generates, up a grid (eta 0) it is DDIM inversion.

    noise(i): the z of step i, asked for only at steps with eta > 0 (the caller owns the randomness).
    The callback gets StepInfo(i, total, step.t_next, x, x0_pred, h) with x in these coordinates.
    """
    total = len(steps)
    for i, step in enumerate(steps):
        pred = predict(x, step)
        down, up = ancestral_sigmas(step.sigma, step.sigma_next, step.eta)
        x = sigma_step(pred.x0, pred.eps, down, up, noise(i) if up and noise is not None else None)
        check_finite(x, i, total, int(step.t))
        if callback is not None:
            callback(StepInfo(i, total, step.t_next, x, pred.x0, pred.h))
    return x


def two_call_predictor(denoise: Denoiser, *, t_edit: float, symmetric: bool = False,
                       t_end: float = math.inf) -> SigmaPredictor:
    """Asyrp over any denoiser ``denoise(x, step, edit) -> D(x)`` ([M, C, H, W], x0 units), e.g. a
    ComfyUI model called without and with its h shift switched on.

    Inside t_edit <= t <= t_end: asymmetric, x0 = D_edit(x) and the direction term
    eps = (x - D(x)) / sigma (two calls); symmetric, both from D_edit (one call). Outside: one plain call.
    """
    def predict(x: torch.Tensor, step: SigmaStep) -> StepPrediction:
        inside = t_edit <= step.t <= t_end
        if inside and symmetric:
            d = denoise(x, step, True)
            eps = (x - d) / step.sigma
            return StepPrediction(d, eps, eps)
        d = denoise(x, step, False)
        eps = (x - d) / step.sigma
        if not inside:
            return StepPrediction(d, eps, eps)
        d_edit = denoise(x, step, True)
        return StepPrediction(d_edit, eps, (x - d_edit) / step.sigma)
    return predict


def paired_predictor(denoise: Denoiser, pair: Callable, *, t_edit: float, t_end: float = math.inf) -> SigmaPredictor:
    """``two_call_predictor``'s asymmetric step with D and D_edit from one call: ``pair(x, step) -> (D(x),
    D_edit(x))`` inside t_edit <= t <= t_end (a host that shares the work below h between them, e.g. a
    ComfyUI model run once on [x; x]); outside, one plain call of ``denoise``."""
    def predict(x: torch.Tensor, step: SigmaStep) -> StepPrediction:
        if not t_edit <= step.t <= t_end:
            d = denoise(x, step, False)
            eps = (x - d) / step.sigma
            return StepPrediction(d, eps, eps)
        d, d_edit = pair(x, step)
        return StepPrediction(d_edit, (x - d) / step.sigma, (x - d_edit) / step.sigma)
    return predict


# ------------------------------------------------------------------ the pixel models' grid on the walk

def vp_steps(pairs: Sequence[tuple[int, int]], schedule: NoiseSchedule, *, eta: float = 0.0,
             t_boost: int = 0) -> list[SigmaStep]:
    """(t, t_next) schedule-index pairs (``generation_steps`` or ``inversion_steps``) as SigmaSteps;
    eta applies at steps with t < t_boost, never on the last step to the clean image (asyrp.md 1.4)."""
    def sigma(t: int) -> float:
        return _ve_sigma(float(schedule.alpha_bar_at(t)))
    return [SigmaStep(t, t_next, sigma(t), sigma(t_next), eta if eta and t < t_boost and t_next >= 0 else 0.0)
            for t, t_next in pairs]


def _vp_scale(schedule: NoiseSchedule, t, like: torch.Tensor) -> torch.Tensor:
    return schedule.alpha_bar_at(int(t), like=like).sqrt()


def vp_predictor(predict: Predictor, schedule: NoiseSchedule, *, clip_x0: bool = False) -> SigmaPredictor:
    """A pixel model's predictor ``(x_t, t)`` on the walk: x_t = x sqrt(alpha_bar_t); x0 and eps are the
    same in both coordinates."""
    def on_walk(x: torch.Tensor, step: SigmaStep) -> StepPrediction:
        t = int(step.t)
        x_t = x * _vp_scale(schedule, t, x)
        pred = predict(x_t, t)
        return clamp_prediction(x_t, pred, schedule.alpha_bar_at(t, like=x)) if clip_x0 else pred
    return on_walk


def _vp_callback(callback: Callback | None, schedule: NoiseSchedule) -> Callback | None:
    if callback is None:
        return None
    return lambda info: callback(replace(info, t=int(info.t), x_t=info.x_t * _vp_scale(schedule, info.t, info.x_t)))


def generate(predict: Predictor, x_T: torch.Tensor, steps: Sequence[tuple[int, int]], schedule: NoiseSchedule, *,
             t_boost: int = 0, eta: float = 0.0, noises: Sequence[torch.Tensor | None] | None = None,
             clip_x0: bool = False, callback: Callback | None = None) -> torch.Tensor:
    """The generative walk of a pixel model: x_T (VP, [M, C, H, W]) down the (t, t_prev) pairs ``steps``.

    predict:  the step's predictor (``plain_predictor``, ``asyrp_predictor``, a variant, a trainer's).
    t_boost:  eta is used at steps with t < t_boost (quality boosting, asyrp.md 1.4), never on the
              last step to the clean image; ``noises[i]`` is the z of step i, drawn by the caller.
    clip_x0:  ``clamp_prediction`` at every step; off in the official code.
    Returns x at the last pair's t_prev: x_0 = P_0 for a whole grid (unclamped unless ``clip_x0``).
    It is ``walk`` in k-diffusion coordinates; the callback's x_t is converted back to VP.
    """
    grid = vp_steps(steps, schedule, eta=eta, t_boost=t_boost)
    if not grid:
        return x_T
    x = x_T / _vp_scale(schedule, grid[0].t, x_T)
    x = walk(vp_predictor(predict, schedule, clip_x0=clip_x0), x, grid,
             noise=(lambda i: noises[i]) if noises is not None else None, callback=_vp_callback(callback, schedule))
    return x * _vp_scale(schedule, grid[-1].t_next, x)


def ddim_invert(model: HSpaceModel, x_0: torch.Tensor, timesteps: torch.Tensor, *,
                callback: Callback | None = None) -> torch.Tensor:
    """Deterministic DDIM inversion x_0 -> x_T up the grid ``timesteps`` ([n], ascending, first 0).

    n - 1 network calls, the first at t = timesteps[0] on the clean image (asyrp.md 2):
    x_next = sqrt(a_next) P_t(eps) + sqrt(1 - a_next) eps, i.e. ``walk`` up the grid. The callback's
    x0_pred is P_t.
    """
    grid = vp_steps(inversion_steps(timesteps), model.schedule)
    if not grid:
        return x_0
    x = x_0 / _vp_scale(model.schedule, grid[0].t, x_0)
    x = walk(vp_predictor(plain_predictor(model), model.schedule), x, grid,
             callback=_vp_callback(callback, model.schedule))
    return x * _vp_scale(model.schedule, grid[-1].t_next, x)


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
