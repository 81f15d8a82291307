"""``edit``: generate from x_T with an h-space edit (Asyrp), every image at every strength in one batch.

Validates everything before any work starts, runs under ``torch.inference_mode()`` and follows the
model's device. Randomness (only in the quality-boosting steps) comes from a seeded CPU generator,
one noise draw per input image and step, shared by every strength of a sweep: a sweep in one batch
equals its strengths run one by one, and results repeat for a fixed seed. A result that is not
finite is never returned: the error says which image, strength and step diverged.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Sequence

import torch

from .directions.base import Direction, DirectionMix, mix
from .errors import HSpaceError
from .interval import EditInterval, check_interval
from .inversion import DDPMInversion, Inversion, check_steps, drawn_x, model_t0
from .model import HSpaceModel
from .sampling import Callback, DivergedError, Predictor, asyrp_predictor, generate, generation_steps
from .schedule import asyrp_timesteps
from .seeding import NormalDraws, check_seed
from .variants import Variant, image_space_shift, shift_predictor


@dataclass(frozen=True, eq=False)
class EditResult:
    """images: [N, K, 3, S, S] in [-1, 1] (unclamped), one per input image and strength."""

    images: torch.Tensor
    strengths: tuple[float, ...]
    interval: EditInterval
    steps: int
    variant: str
    seed: int | tuple[int, ...]

    def flat(self) -> torch.Tensor:
        """[N*K, 3, S, S], input-major (all strengths of image 0, then image 1, ...)."""
        return self.images.flatten(0, 1)


def as_direction(directions) -> Direction | None:
    """None, a direction, or a sequence of directions / (direction, coefficient) pairs (mixed)."""
    if directions is None or isinstance(directions, Direction):
        return directions
    if isinstance(directions, (list, tuple)):
        return mix(directions) if directions else None
    raise HSpaceError(f"expected a direction or a list of directions, got {type(directions).__name__}")


def _source_grid(model: HSpaceModel, source, steps: int | None, t_0: int | None) -> tuple[torch.Tensor, torch.Tensor]:
    """(x_T, grid) of an Inversion (its grid unless ``steps`` differs) or of an x_T tensor."""
    if isinstance(source, Inversion):
        if source.fingerprint != model.fingerprint:
            raise HSpaceError("this inversion was made with another model (fingerprint "
                              f"{source.fingerprint}, this model {model.fingerprint}); invert with this model")
        model_t0(model, source.t_0)  # a grid beyond the model's schedule (a damaged file) is refused here
        if steps is None or steps == source.steps:
            return source.x_T, source.timesteps
        check_steps(steps)
        return source.x_T, asyrp_timesteps(steps, source.t_0)
    if isinstance(source, torch.Tensor):
        if source.ndim != 4 or source.shape[0] == 0 or not torch.isfinite(source).all():
            raise HSpaceError(f"x_T must be a non-empty finite [N, 3, H, W] tensor, got {list(source.shape)}")
        model.check_input(source)
        steps = 40 if steps is None else steps
        check_steps(steps)
        return source, asyrp_timesteps(steps, model_t0(model, t_0))
    raise HSpaceError(f"source must be an Inversion or an x_T tensor, got {type(source).__name__}")


def _replay(model: HSpaceModel, source: DDPMInversion, steps: int | None, t_skip: int, k: int):
    """(x at the first step, grid, generation pairs, per-step z repeated k times, last-step residual)
    of an edit-friendly inversion, starting ``t_skip`` steps below its top."""
    if source.fingerprint != model.fingerprint:
        raise HSpaceError("this inversion was made with another model (fingerprint "
                          f"{source.fingerprint}, this model {model.fingerprint}); invert with this model")
    if steps is not None and steps != source.steps:
        raise HSpaceError(f"an edit-friendly inversion replays its own {source.steps}-step grid (its noise maps "
                          f"belong to it); got steps = {steps}: leave steps unset or invert again with {steps}")
    model.check_input(source.x_0)
    model_t0(model, source.t_0)
    if not isinstance(t_skip, int) or not 0 <= t_skip < source.steps:
        raise HSpaceError(f"t_skip must be an integer in [0, {source.steps - 1}] (steps skipped at the top of the "
                          f"{source.steps}-step grid), got {t_skip!r}")
    x_0 = source.x_0.to(device=model.device, dtype=torch.float32)
    start = drawn_x(model.schedule, x_0, source.timesteps, source.seed, t_skip + 1)[-1]
    pairs = generation_steps(source.timesteps)[t_skip:]
    maps = source.noise_maps[t_skip:].to(device=model.device, dtype=torch.float32)
    noises = [maps[i].repeat_interleave(k, 0) for i in range(len(pairs) - 1)] + [None]
    return start, source.timesteps, pairs, noises, maps[-1].repeat_interleave(k, 0)


def _with_residual(predict: Predictor, t_last: int, residual: torch.Tensor) -> Predictor:
    """The predictor with ``residual`` added to x0 at the step from ``t_last`` (the last, noiseless one)."""
    def with_residual(x: torch.Tensor, t: int):
        pred = predict(x, t)
        return replace(pred, x0=pred.x0 + residual) if t == t_last else pred
    return with_residual


def edit(model: HSpaceModel, source: Inversion | DDPMInversion | torch.Tensor, directions=None,
         strengths: float | Sequence[float] = 1.0, *, t_edit: int | EditInterval = 500, t_boost: int = 0,
         steps: int | None = None, eta: float = 1.0, seed: int | tuple[int, ...] = 0,
         variant: str | Variant = "asymmetric",
         t_0: int | None = None, clip_x0: bool = False, t_skip: int = 0,
         callback: Callback | None = None) -> EditResult:
    """Generate from x_T with an h-space edit (Asyrp), for every image and every strength in one batch.

    source:     an ``Inversion`` (its grid is reused unless ``steps`` differs), an edit-friendly
                ``DDPMInversion`` (every step stochastic with its stored noise map, shared by every
                strength; its grid only; t_boost, eta and seed do not apply), or x_T [N, 3, S, S].
    directions: a ``Direction``, a list of directions / (direction, coefficient) pairs, or None.
    strengths:  a number or a list (a sweep); strength 0 gives the unedited reconstruction.
    t_edit:     edit at t >= t_edit, or an ``EditInterval`` (which also sets t_boost).
    t_boost:    stochastic steps (eta) at t < t_boost; 0 disables quality boosting.
    seed:       of the boosting steps' noise: an int (one generator for the batch) or one seed per input
                image (its draws then do not depend on the other images; ``seeding.NormalDraws``).
    variant:    "asymmetric" (Asyrp), "symmetric", "eps_shift" or "xt_shift" (for comparisons; the
                image-space variants shift by the batch-mean change the direction causes, ``variants``).
    t_skip:     with a ``DDPMInversion``: start that many steps below the top of its grid, from its
                draw of x_t there (the paper's T_skip: less freedom, more of the input's structure).
    clip_x0:    clamp predicted x0 to [-1, 1] at every step (guided-diffusion's ``clip_denoised``).
                Off in Asyrp; it steadies fresh samples (x_T from a seed) of a weak model, but makes
                an inversion's regeneration depart from its input.
    Returns ``EditResult.images`` [N, K, 3, S, S]. Raises ``HSpaceError`` naming the image, strength
    and step when the result would not be finite (a strength far too large, say).
    """
    interval = t_edit if isinstance(t_edit, EditInterval) else EditInterval(int(t_edit), int(t_boost))
    try:
        variant = Variant(variant)
    except ValueError:
        raise HSpaceError(f"unknown variant {variant!r}; use one of {', '.join(v.value for v in Variant)}") from None
    strengths = [float(s) for s in ([strengths] if isinstance(strengths, (int, float)) else strengths)]
    if not strengths:
        raise HSpaceError("give at least one strength")
    if not all(torch.isfinite(torch.tensor(strengths))):
        raise HSpaceError(f"strengths must be finite numbers, got {strengths}")
    if eta < 0:
        raise HSpaceError(f"eta must be >= 0, got {eta}")
    direction = as_direction(directions)
    if direction is not None:
        direction.check_fits(model)
    k = len(strengths)
    replay = isinstance(source, DDPMInversion)
    if replay:
        x_T, grid, pairs, noises, residual = _replay(model, source, steps, t_skip, k)
    else:
        if t_skip:
            raise HSpaceError("t_skip needs an edit-friendly inversion (invert with method 'ddpm'); a DDIM "
                              "inversion starts at its x_T")
        x_T, grid = _source_grid(model, source, steps, t_0)
    check_interval(interval.t_edit, interval.t_boost, int(grid[-1]))

    n = x_T.shape[0]
    x_T = x_T.to(device=model.device, dtype=torch.float32)
    if direction is not None:
        direction = direction.to(model.device, model.dtype)
        if isinstance(direction, DirectionMix) and not direction.terms:
            direction = None
    rows = x_T.repeat_interleave(k, 0)
    s = torch.tensor(strengths).repeat(n)
    if replay:
        boost, eta = int(grid[-1]) + 1, 1.0
    else:
        boost = interval.t_boost
        draw = NormalDraws(seed, n)
        pairs = generation_steps(grid)
        noises = []
        for t, _ in pairs:
            z = draw(x_T.shape) if interval.t_boost and t < interval.t_boost else None
            noises.append(None if z is None else z.to(x_T.device, x_T.dtype).repeat_interleave(k, 0))
    with torch.inference_mode():
        if direction is not None and variant.image_space:
            shift = image_space_shift(model, direction, x_T, grid, interval.t_edit, variant)
            predict = shift_predictor(model, variant, shift, s, t_edit=interval.t_edit)
        else:
            predict = asyrp_predictor(model, direction, s, t_edit=interval.t_edit, steps=len(grid),
                                      symmetric=variant is Variant.SYMMETRIC)
        if replay:
            predict = _with_residual(predict, pairs[-1][0], residual)
        try:
            out = generate(predict, rows, pairs, model.schedule, t_boost=boost, eta=eta, noises=noises,
                           clip_x0=clip_x0, callback=callback)
        except DivergedError as e:
            where = ", ".join(f"image {r // k} at strength {strengths[r % k]:g}" for r in e.rows[:8])
            raise HSpaceError(f"the edit diverged (NaN or infinity) at step {e.step + 1}/{e.total} (t = {e.t}): "
                              f"{where}{' ...' if len(e.rows) > 8 else ''}; lower the strength. Nothing was "
                              "written") from None
    return EditResult(out.reshape(n, k, *out.shape[1:]), tuple(strengths), interval, len(grid), variant.value,
                      check_seed(seed, n))
