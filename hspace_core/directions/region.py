"""Regional directions: a direction's h shift kept only where a mask says, position by position.

h is a grid (192 x 4 x 4 in the miniature SD world, 1280 x 8 x 8 for SD1.5 at 512 px, 512 x 8 x 8 for
the 256 px pixel DDPMs), and a shift kept per position acts mostly on the image region above that
position. Weighting the shift by a mask area-averaged onto the grid (``F.adaptive_avg_pool2d``: each h
cell gets the share of its area the mask covers) edits one region and leaves the others' h alone: in
the miniature SD world the prompt-pair smile kept on the lower row of h (the mouth) changes the eyes
less per unit of smile than the whole grid does (bench/sd_claims.py).
"""

from __future__ import annotations

from dataclasses import replace

import torch
import torch.nn.functional as F

from ..errors import HSpaceError
from .base import Direction, TensorDirection
from .project import as_tensor_direction


def mask_on_grid(mask: torch.Tensor, grid: tuple[int, int]) -> torch.Tensor:
    """mask [H, W] or [B, H, W] (the first of a batch; values in [0, 1], 1 = edit) -> [gh, gw], the share
    of each grid cell's area the mask covers."""
    if mask.ndim == 3:
        mask = mask[0]
    if mask.ndim != 2 or mask.shape[0] < 1 or mask.shape[1] < 1:
        raise HSpaceError(f"a region mask is [H, W] or [B, H, W]; got {list(mask.shape)}")
    mask = mask.float()
    if not bool(torch.isfinite(mask).all()) or float(mask.min()) < 0 or float(mask.max()) > 1:
        raise HSpaceError("a region mask holds values outside [0, 1] (or NaN)")
    if mask.shape[0] < grid[0] or mask.shape[1] < grid[1]:
        raise HSpaceError(f"a {mask.shape[0]}x{mask.shape[1]} mask is coarser than h's {grid[0]}x{grid[1]} grid")
    return F.adaptive_avg_pool2d(mask[None, None], grid)[0, 0]


def restrict_to_region(direction: Direction, mask: torch.Tensor, *, name: str = "") -> TensorDirection:
    """``direction`` (a tensor direction or a mix of them, kept per position: h_shape [C, gh, gw]) with its
    shift at each h position weighted by the mask's cover of that position (``mask_on_grid``).

    The mask is given in image coordinates at any resolution (ComfyUI's MASK: [B, H, W], 1 = edit); the
    grid is the direction's own, so the result edits images of the size the direction was made on."""
    base = as_tensor_direction(direction)
    c, gh, gw = base.info.h_shape
    if (gh, gw) == (1, 1):
        raise HSpaceError(f"direction {base.info.name!r} is one vector for all of h (made with spatial 'average'); "
                          "a region needs a direction kept per position: make it with spatial 'keep'")
    weights = mask_on_grid(mask, (gh, gw)).to(base.values)
    if float(weights.max()) == 0:
        raise HSpaceError("the region mask is empty on h's grid: nothing would be edited")
    lead = tuple(base.values.shape[:1]) if base.timesteps is not None else ()
    values = torch.broadcast_to(base.values, (*lead, c, gh, gw)) * weights
    info = replace(base.info, h_shape=(c, gh, gw), name=name or f"{base.info.name} (region)",
                   provenance={**base.info.provenance,
                               "region": [[round(float(v), 4) for v in row] for row in weights]},
                   calibration=None)  # a part of the shift: measured again where a model is at hand
    return TensorDirection(values.contiguous(), base.timesteps, info)
