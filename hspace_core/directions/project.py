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
    base = direction
    if not isinstance(base, TensorDirection):
        raise HSpaceError(f"only tensor directions can be projected; {base.info.name!r} is a {type(base).__name__}")
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
                               "projection": "joint least squares" if joint else "one at a time"})
    return TensorDirection(stacked, base.timesteps, info)
