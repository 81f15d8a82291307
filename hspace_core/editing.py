"""The public editing API: ``invert`` real images to x_T, ``edit`` them with h-space directions.

Both validate everything before any work starts, run under ``torch.inference_mode()``, and follow
the model's device and dtype. Randomness (only in the quality-boosting steps) comes from a seeded
CPU generator, one noise draw per input image and step, shared by every strength of a sweep: a
sweep in one batch equals its strengths run one by one, and results repeat for a fixed seed.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import torch

from .directions.base import Direction, DirectionMix, mix
from .errors import HSpaceError
from .images import check_images, fit_to_size
from .interval import EditInterval, check_interval
from .model import HSpaceModel
from .sampling import Callback, Variant, asyrp_sample, ddim_invert, predict_x0
from .schedule import asyrp_timesteps


@dataclass(frozen=True, eq=False)
class Inversion:
    """DDIM inversion of a batch of images.

    x_T:       [N, 3, S, S] latents at t_0 (S = the model's size).
    x_0:       [N, 3, S, S] the images as the model saw them, in [-1, 1].
    timesteps: [n] ascending grid used (``asyrp_timesteps(n, t_0)``).
    fingerprint: the model's; ``preprocessing``: what the size policy did, per image.
    """

    x_T: torch.Tensor
    x_0: torch.Tensor
    timesteps: torch.Tensor
    fingerprint: str
    preprocessing: tuple[str, ...]

    @property
    def steps(self) -> int:
        return len(self.timesteps)

    @property
    def t_0(self) -> int:
        return int(self.timesteps[-1])


@dataclass(frozen=True, eq=False)
class EditResult:
    """images: [N, K, 3, S, S] in [-1, 1] (unclamped), one per input image and strength."""

    images: torch.Tensor
    strengths: tuple[float, ...]
    interval: EditInterval
    steps: int
    variant: str
    seed: int

    def flat(self) -> torch.Tensor:
        """[N*K, 3, S, S], input-major (all strengths of image 0, then image 1, ...)."""
        return self.images.flatten(0, 1)


def _check_steps(steps: int) -> None:
    if not isinstance(steps, int) or steps < 2:
        raise HSpaceError(f"steps must be an integer of at least 2, got {steps!r}")


def _model_t0(model: HSpaceModel, t_0: int | None) -> int:
    top = model.schedule.num_timesteps - 1
    if t_0 is None:
        return top
    if not 1 <= t_0 <= top:
        raise HSpaceError(f"t_0 must lie in [1, {top}], got {t_0}")
    return t_0


def prepare_images(model: HSpaceModel, images, size_policy: str) -> tuple[torch.Tensor, tuple[str, ...]]:
    """Validate images (a tensor [N, 3, H, W] or a list of [1 or 3-dim] tensors of any sizes) and fit
    them to the model's size; returns ([N, 3, S, S], per-image report)."""
    if isinstance(images, torch.Tensor):
        items = [images]
    else:
        items = [im if im.ndim == 4 else im[None] for im in images]
    if not items or sum(im.shape[0] for im in items if isinstance(im, torch.Tensor)) == 0:
        raise HSpaceError("images: the batch is empty")
    out, report = [], []
    for im in items:
        check_images(im)
        fitted, what = fit_to_size(im.float(), model.image_size, size_policy)
        out.append(fitted)
        report += [what] * im.shape[0]
    return torch.cat(out), tuple(report)


def invert(model: HSpaceModel, images, steps: int = 40, *, t_0: int | None = None,
           size_policy: str = "resize_crop", callback: Callback | None = None) -> Inversion:
    """DDIM-invert (eta = 0) images to x_{t_0} over ``steps`` grid points (steps - 1 network calls).

    images: [N, 3, H, W] in [-1, 1], or a list of such tensors (sizes may differ); images whose size
    is not the model's are fitted by ``size_policy`` (see ``images.fit_to_size``) and reported.
    """
    _check_steps(steps)
    t_0 = _model_t0(model, t_0)
    x_0, report = prepare_images(model, images, size_policy)
    grid = asyrp_timesteps(steps, t_0)
    x_0 = x_0.to(device=model.device, dtype=torch.float32)
    with torch.inference_mode():
        x_T = ddim_invert(model, x_0, grid, callback=callback)
    return Inversion(x_T=x_T, x_0=x_0, timesteps=grid, fingerprint=model.fingerprint, preprocessing=report)


def as_direction(directions) -> Direction | None:
    """None, a direction, or a sequence of directions / (direction, coefficient) pairs (mixed)."""
    if directions is None or isinstance(directions, Direction):
        return directions
    if isinstance(directions, (list, tuple)):
        return mix(directions) if directions else None
    raise HSpaceError(f"expected a direction or a list of directions, got {type(directions).__name__}")


def _image_space_shift(model, direction, x_T, grid, t_edit, variant):
    """The per-step image-space shift equivalent to ``direction`` on this batch: the batch mean of
    eps(h + dh) - eps(h) (EPS_SHIFT) or of the x_{t-1} displacement sqrt(a_prev)(P_t(eps~) - P_t(eps))
    (XT_SHIFT) along the asymmetric edit at strength 1, recorded per timestep."""
    shifts: dict[int, torch.Tensor] = {}
    pairs = list(zip(reversed(grid.tolist()), reversed([-1] + grid.tolist()[:-1])))
    x = x_T
    for t, t_prev in pairs:
        if t < t_edit:
            break
        tt = torch.full((x.shape[0],), t, device=x.device, dtype=torch.long)
        a, a_prev = model.schedule.alpha_bar_at(t, like=x), model.schedule.alpha_bar_at(t_prev, like=x)
        enc = model.encode(x, tt)
        dh = direction.delta(enc.h, tt, enc.emb, len(grid))
        eps, eps_edit = model.decode(enc, torch.cat([enc.h, enc.h + dh])).eps.chunk(2)
        if variant is Variant.EPS_SHIFT:
            shifts[t] = (eps_edit - eps).mean(0, keepdim=True)
        else:
            shifts[t] = (a_prev.sqrt() * (predict_x0(x, eps_edit, a) - predict_x0(x, eps, a))).mean(0, keepdim=True)
        x = a_prev.sqrt() * predict_x0(x, eps_edit, a) + (1 - a_prev).sqrt() * eps
    return lambda t: shifts[t]


def edit(model: HSpaceModel, source: Inversion | torch.Tensor, directions=None,
         strengths: float | Sequence[float] = 1.0, *, t_edit: int | EditInterval = 500, t_boost: int = 0,
         steps: int | None = None, eta: float = 1.0, seed: int = 0, variant: str | Variant = "asymmetric",
         t_0: int | None = None, clip_x0: bool = False, callback: Callback | None = None) -> EditResult:
    """Generate from x_T with an h-space edit (Asyrp), for every image and every strength in one batch.

    source:     an ``Inversion`` (its grid is reused unless ``steps`` differs) or x_T [N, 3, S, S].
    directions: a ``Direction``, a list of directions / (direction, coefficient) pairs, or None.
    strengths:  a number or a list (a sweep); strength 0 gives the unedited reconstruction.
    t_edit:     edit at t >= t_edit, or an ``EditInterval`` (which also sets t_boost).
    t_boost:    stochastic steps (eta) at t < t_boost; 0 disables quality boosting.
    variant:    "asymmetric" (Asyrp), "symmetric", "eps_shift" or "xt_shift" (for comparisons; the
                image-space variants shift by the batch-mean change the direction causes).
    clip_x0:    clamp predicted x0 to [-1, 1] at every step (guided-diffusion's ``clip_denoised``).
                Off in Asyrp; it steadies fresh samples (x_T from a seed) of a weak model, but makes
                an inversion's regeneration depart from its input.
    Returns ``EditResult.images`` [N, K, 3, S, S].
    """
    if isinstance(t_edit, EditInterval):
        interval = t_edit
    else:
        interval = EditInterval(int(t_edit), int(t_boost))
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

    if isinstance(source, Inversion):
        if source.fingerprint != model.fingerprint:
            raise HSpaceError("this inversion was made with another model (fingerprint "
                              f"{source.fingerprint}, this model {model.fingerprint}); invert with this model")
        x_T = source.x_T
        if steps is None or steps == source.steps:
            grid = source.timesteps
        else:
            _check_steps(steps)
            grid = asyrp_timesteps(steps, source.t_0)
    elif isinstance(source, torch.Tensor):
        x_T = source
        if x_T.ndim != 4 or x_T.shape[0] == 0 or not torch.isfinite(x_T).all():
            raise HSpaceError(f"x_T must be a non-empty finite [N, 3, H, W] tensor, got {list(x_T.shape)}")
        model.check_input(x_T)
        steps = 40 if steps is None else steps
        _check_steps(steps)
        grid = asyrp_timesteps(steps, _model_t0(model, t_0))
    else:
        raise HSpaceError(f"source must be an Inversion or an x_T tensor, got {type(source).__name__}")
    check_interval(interval.t_edit, interval.t_boost, int(grid[-1]))

    n, k = x_T.shape[0], len(strengths)
    x_T = x_T.to(device=model.device, dtype=torch.float32)
    if direction is not None:
        direction = direction.to(model.device, model.dtype)
        if isinstance(direction, DirectionMix) and not direction.terms:
            direction = None
    rows = x_T.repeat_interleave(k, 0)
    s = torch.tensor(strengths).repeat(n)
    g = torch.Generator().manual_seed(int(seed))
    down = list(reversed(grid.tolist()))
    noises = []
    for t in down:
        z = torch.randn(x_T.shape, generator=g) if interval.t_boost and t < interval.t_boost else None
        noises.append(None if z is None else z.to(x_T.device, x_T.dtype).repeat_interleave(k, 0))
    with torch.inference_mode():
        image_delta = None
        if direction is not None and variant in (Variant.EPS_SHIFT, Variant.XT_SHIFT):
            image_delta = _image_space_shift(model, direction, x_T, grid, interval.t_edit, variant)
        out = asyrp_sample(model, rows, grid, direction, s, t_edit=interval.t_edit, t_boost=interval.t_boost,
                           eta=eta, noises=noises, variant=variant, image_delta=image_delta, callback=callback,
                           clip_x0=clip_x0)
    return EditResult(out.reshape(n, k, *out.shape[1:]), tuple(strengths), interval, len(grid), variant.value,
                      int(seed))
