"""Disentangling by linear projection (Haas et al.; InterFaceGAN's conditional editing).

Per timestep, the direction's h shift loses its component along one or several other directions:
one at a time (v <- v - <v,u>/<u,u> u for each u in turn) or jointly (v minus its least-squares
projection onto the span of all of them, so the result is orthogonal to every one).
Only tensor directions can be projected (a DeltaBlock's shift depends on h).
"""

from __future__ import annotations

from dataclasses import replace

import torch

from ..errors import HSpaceError
from .base import Direction, TensorDirection


def _on_grid(d: Direction, t: int) -> torch.Tensor:
    if not isinstance(d, TensorDirection):
        raise HSpaceError(f"only tensor directions can be projected; {d.info.name!r} is a {type(d).__name__}")
    return d.at(t).float()


def project_off(direction: Direction, others: list[Direction], *, joint: bool = True) -> TensorDirection:
    """``direction`` with its components along ``others`` removed at every one of its timesteps."""
    if not others:
        raise HSpaceError("give at least one direction to project off")
    base = as_tensor_direction(direction)
    for o in others:
        if o.info.channels != base.info.channels:
            raise HSpaceError(f"cannot project {base.info.name!r} ({base.info.channels} channels) off "
                              f"{o.info.name!r} ({o.info.channels} channels)")
    grid = base.timesteps.tolist() if base.timesteps is not None else [0]
    values = []
    for t in grid:
        v = base.at(t).float()
        shape = v.shape
        us = [_on_grid(o, t).expand(shape).reshape(-1) for o in others]
        v = v.reshape(-1)
        if joint:
            u = torch.stack(us, dim=1).double()  # [D, m]
            coef = torch.linalg.lstsq(u, v.double().unsqueeze(1)).solution
            v = (v.double() - (u @ coef).squeeze(1)).float()
        else:
            for u in us:
                denom = torch.dot(u, u)
                if denom > 0:
                    v = v - torch.dot(v, u) / denom * u
        values.append(v.view(shape))
    stacked = torch.stack(values) if base.timesteps is not None else values[0]
    info = replace(base.info, name=f"{base.info.name} without {', '.join(o.info.name or '?' for o in others)}",
                   provenance={**base.info.provenance, "projected_off": [o.info.name for o in others],
                               "projection": "joint least squares" if joint else "one at a time"},
                   calibration=None)  # smaller than before: measured again where a model is at hand
    return TensorDirection(stacked, base.timesteps, info)


def as_tensor_direction(direction: Direction, made_steps: int = 40) -> TensorDirection:
    """A mix of tensor directions as one tensor direction on the union of their grids.

    The shift is evaluated at ``made_steps`` steps: values = sum_i c_i * (made_i / made_steps) * v_i(t),
    so the result edits exactly like the mix (tensor directions are linear in their values)."""
    from .base import DirectionMix

    if isinstance(direction, TensorDirection):
        return direction
    if not isinstance(direction, DirectionMix):
        raise HSpaceError(f"{direction.info.name!r} is a {type(direction).__name__}; only tensor directions "
                          "(supervised, PCA, global) can be projected")
    terms = []
    for d, c in direction.terms:
        d = as_tensor_direction(d, made_steps)
        scale = d.info.made_steps / made_steps if d.info.made_steps else 1.0
        terms.append((d, c * scale / (len(direction.terms) ** 0.5 if direction.sqrt_n else 1.0)))
    grids = sorted({int(t) for d, _ in terms if d.timesteps is not None for t in d.timesteps})
    shape = torch.broadcast_shapes(*(tuple(d.values.shape[-3:]) for d, _ in terms))
    if grids:
        values = torch.stack([sum(c * d.at(t).expand(shape) for d, c in terms) for t in grids])
        ts = torch.tensor(grids)
    else:
        values, ts = sum(c * d.values.expand(shape) for d, c in terms), None
    info = replace(direction.info, h_shape=tuple(int(x) for x in shape), made_steps=made_steps)
    return TensorDirection(values.contiguous(), ts, info)
