"""Calibrating a direction on a pixel model (``HSpaceModel``): the measurements of
``directions.calibration`` made with the engine's own predictor and ``edit``."""

from __future__ import annotations

from dataclasses import replace

import torch

from .directions.calibration import (Calibration, gain_of, gain_points, off_target_weights, psnr_off_target,
                                     solve_scale, usable_range, with_calibration)
from .editing import edit
from .sampling import Callback, asyrp_prediction, plain_predictor


def seeded_starts(model, samples: int, seed: int) -> torch.Tensor:
    """``samples`` seeded x_T [samples, C, S, S] (CPU float32), the calibration's starts."""
    g = torch.Generator().manual_seed(seed)
    return torch.randn(samples, model.in_channels, model.image_size, model.image_size, generator=g)


def gain_states(model, x_T: torch.Tensor, t: int) -> list[tuple[int, torch.Tensor, torch.Tensor]]:
    """Where a calibration measures: x_T [M, C, S, S] (on the model's device) taken one DDIM step from t_max
    down to each of ``gain_points(t, t_max)``; a list of (p, x_p, the plain predicted x0 there). Call it under
    inference mode."""
    t_max = model.schedule.num_timesteps - 1
    top = plain_predictor(model)(x_T, t_max)
    points = []
    for point in gain_points(t, t_max):
        p = int(round(point))
        a = model.schedule.alpha_bar_at(p, like=x_T)
        x_t = a.sqrt() * top.x0 + (1 - a).sqrt() * top.eps  # one DDIM step from t_max down to p
        points.append((p, x_t, plain_predictor(model)(x_t, p).x0))
    return points


def calibrate(model, direction, *, t: int | None = None, samples: int = 4, seed: int = 0, usable: bool = True,
              steps: int = 10, callback: Callback | None = None) -> Calibration:
    """Measure ``direction``'s calibration on ``model`` for the editing interval [t, t_max]. t: the direction's
    t_edit (else 500), within the model's schedule. The gain from ``samples`` seeded x_T taken one DDIM step
    down to each of ``gain_points(t, t_max)``; the usable range from whole edits of the same x_T on a
    ``steps``-step grid, whose steps ``callback`` reports (the longer part)."""
    t_max = model.schedule.num_timesteps - 1
    chosen = t if t is not None else (direction.info.t_edit if direction.info.t_edit is not None else 500)
    t = int(min(t_max - 1, max(0, chosen)))
    direction.check_fits(model)
    x_T = seeded_starts(model, samples, seed)
    with torch.inference_mode():
        x = x_T.to(model.device, torch.float32)
        points = gain_states(model, x, t)
        d = direction.to(model.device, model.dtype)

        def change_at(strength: float) -> float:
            s = torch.full((samples, 1, 1, 1), strength, device=x.device)
            return sum(gain_of(x0, asyrp_prediction(model, x_t, p, d, s, steps=direction.info.made_steps or 40).x0,
                               1.0) for p, x_t, x0 in points) / len(points)

        scale, gain = solve_scale(change_at, direction.info.name)
    cal = Calibration(scale, gain, t, samples, t_end=t_max)
    if not usable:
        return cal
    weights = off_target_weights(direction, (model.image_size, model.image_size))
    starts = x_T[:2]  # the whole edits on two of the starts (13 strengths each)

    def psnr_at(strengths: list[float]) -> torch.Tensor:
        images = edit(model, starts, direction, [0.0] + [s * cal.scale for s in strengths], t_edit=t, steps=steps,
                      t_0=t_max, callback=callback).images.float()
        return torch.stack([psnr_off_target(images[:, j + 1], images[:, 0], weights, 2.0).mean()
                            for j in range(len(strengths))])

    return replace(cal, usable=usable_range(psnr_at))


def calibrated(model, direction, **kwargs):
    """``direction`` with its calibration on ``model`` recorded (``calibrate``)."""
    return with_calibration(direction, calibrate(model, direction, **kwargs))
