"""Unsupervised directions by independent effects: h's top principal directions, rotated so that the changes they
make to the predicted x0 are independent over the image (spatial ICA of effect maps).

ICA of h (``ica.py``) rotates the whitened principal directions to the least Gaussian coordinates of h itself.
Here the same principal directions (one standard deviation of h each) are applied, one at a time, to a few
seeded samples at the editing interval's points, and each one's change of the predicted x0 is an effect map
(P numbers: pixels of every sample at every point). The effect of a combination of directions is, to first
order, the same combination of their maps. The maps are whitened over the pixels (as M mixtures of P samples)
and turned to the largest summed kurtosis (Jacobi rotations, ``sparsest_rotation``): combinations whose effects
are sparse and apart, an edit of one region or one feature (a hat, glasses, the face's width) rather than a
mixture of several. The k with the sparsest effect (largest excess kurtosis over the pixels) are kept.

What both rotations can reach is what lies in h's top principal directions (``bench/unsupervised_reach.py``);
on the pixel demo world this one covers more of it (``bench/unsupervised.py --ica-rotate effects``).
"""

from __future__ import annotations

import math
from typing import Callable

import torch

from ..calibrate import gain_states, seeded_starts
from ..directions.base import TensorDirection
from ..errors import HSpaceError
from ..model import HSpaceModel
from ..sampling import Callback, StepInfo, asyrp_prediction
from .ica import MAX_EFFECT_DIMS, RANK_TOLERANCE, span

EFFECT_SAMPLES = 16  # seeded samples whose x0 changes make the effect maps (8: one seed of three one attribute short)
MAX_SWEEPS = 1000


def fourth_moments(z: torch.Tensor, *, chunk: int = 8192) -> torch.Tensor:
    """E[z_a z_b z_c z_d] over the rows of z [P, M] (float64), as the full symmetric tensor [M, M, M, M]: the
    products z_a z_b (a <= b) of each chunk of rows multiplied out, one matrix product per chunk."""
    p, m = z.shape
    a, b = torch.triu_indices(m, m)
    pairs = torch.zeros(len(a), len(a), dtype=torch.float64)
    for rows in z.double().split(chunk):
        q = rows[:, a] * rows[:, b]
        pairs += q.T @ q
    index = torch.empty(m, m, dtype=torch.long)
    index[a, b] = torch.arange(len(a))
    index[b, a] = torch.arange(len(a))
    flat = index.flatten()
    return (pairs[flat][:, flat] / p).view(m, m, m, m)


def _turn(t: torch.Tensor, i: int, j: int, c: float, s: float) -> None:
    """Turn the moment tensor t [M, M, M, M] of z as columns i and j of z turn to (c z_i + s z_j, c z_j - s z_i):
    along each of the four indices in turn, in place."""
    for axis in range(4):
        ti, tj = t.select(axis, i), t.select(axis, j)
        ti_new = c * ti + s * tj
        tj.mul_(c).sub_(s * ti)
        ti.copy_(ti_new)


def sparsest_rotation(z: torch.Tensor, *, max_sweeps: int = MAX_SWEEPS, tolerance: float = 1e-6) -> torch.Tensor:
    """The rotation W [M, M] (orthogonal) that maximises the summed fourth moment of z @ W over the rows of
    z [P, M] (whitened: for unit-variance columns, the summed excess kurtosis plus 3 M): Jacobi sweeps over the
    pairs of columns, each turned by the angle that maximises its pair's sum exactly (the sum is
    c + A cos 4t + B sin 4t, Comon 1994), until no turn exceeds ``tolerance`` radians. Every turn raises the
    sum, so it does not stop where FastICA's fixed point did on two planted sparse sources: half way between
    them, a stationary point of the contrast (the planted test in ``tests/engine/test_ica.py``). The sweeps
    work on the fourth moments of z (``fourth_moments``, M^4 numbers, turned with each pair), so a sweep costs
    the same whatever the number of rows: pairs of nearly Gaussian maps turn by ever smaller angles for a
    hundred sweeps and more before the rotation settles (237 sweeps, a minute, for 32 maps of the SD world)."""
    m = z.shape[1]
    if m > MAX_EFFECT_DIMS:
        raise HSpaceError(f"the sparsest rotation turns at most {MAX_EFFECT_DIMS} maps (their fourth moments are "
                          f"{MAX_EFFECT_DIMS}^4 numbers), got {m}: ask for fewer principal directions")
    t = fourth_moments(z)
    w = torch.eye(m, dtype=torch.float64)
    for _ in range(max_sweeps):
        largest = 0.0
        for i in range(m - 1):
            for j in range(i + 1, m):
                x4, y4, x2y2 = t[i, i, i, i], t[j, j, j, j], t[i, i, j, j]
                a = (x4 + y4) / 4 - 1.5 * x2y2
                b = t[i, i, i, j] - t[i, j, j, j]
                theta = float(torch.atan2(b, a)) / 4
                if abs(theta) < tolerance:
                    continue
                largest = max(largest, abs(theta))
                c, s = math.cos(theta), math.sin(theta)
                _turn(t, i, j, c, s)
                w[:, [i, j]] = w[:, [i, j]] @ torch.tensor([[c, -s], [s, c]], dtype=torch.float64)
        if largest < tolerance:
            return w
    raise HSpaceError(f"the sparsest rotation did not settle in {max_sweeps} sweeps (last turn {largest:.2e} rad)")


def effect_rotation(effects: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Independent sparse components of M effect maps [M, P] (P >> M): the maps whitened over the positions and
    turned by ``sparsest_rotation``. Returns (c [M, M], column j the weights of the M maps whose combination is
    source j, of unit variance over the positions; the sources' excess kurtosis [M]), sparsest first."""
    x = effects.double().T                                           # [P, M]: the positions are the samples
    xc = x - x.mean(0)
    variance, axes = torch.linalg.eigh(xc.T @ xc / xc.shape[0])
    if float(variance.min()) <= RANK_TOLERANCE * float(variance.max()):
        raise HSpaceError("the directions' effects are not independent of each other (some direction changes "
                          "nothing, or two change the same): ask for fewer components")
    whiten = axes / variance.sqrt()                                  # z = xc @ whiten, identity covariance
    w = sparsest_rotation(xc @ whiten)
    c = whiten @ w
    s = xc @ c
    kurtosis = (s ** 4).mean(0) - 3
    order = torch.argsort(kurtosis, descending=True)
    return c[:, order], kurtosis[order]


def effect_maps(model: HSpaceModel, directions: list[TensorDirection], t_edit: int, *, samples: int = EFFECT_SAMPLES,
                seed: int = 0, steps: int = 40, callback: Callback | None = None) -> torch.Tensor:
    """Each direction's change of the predicted x0 at strength 1 ([M, P]): ``samples`` seeded x_T taken one DDIM
    step down to each of the calibration's points in [t_edit, T] (``calibration.gain_points``), as the
    calibration measures a direction. ``callback``: one step per direction (i of M; x_t the last point's
    state, x0_pred its edited prediction)."""
    with torch.inference_mode():
        x = seeded_starts(model, samples, seed).to(model.device, torch.float32)
        points = gain_states(model, x, t_edit)
        s = torch.ones(samples, 1, 1, 1, device=x.device)
        maps = []
        for i, d in enumerate(directions):
            changes = []
            for p, x_t, x0 in points:
                edited = asyrp_prediction(model, x_t, p, d.to(model.device, model.dtype), s, steps=steps).x0
                changes.append((edited - x0).float().flatten().cpu())
            maps.append(torch.cat(changes))
            if callback is not None:
                callback(StepInfo(i, len(directions), p, x_t, edited))
        return torch.stack(maps)


def effect_provenance(kurtosis: torch.Tensor) -> list[dict]:
    """What each kept direction's file records of its effect ([k] excess kurtosis from ``rotated_by_effects``)."""
    return [{"rotate": "effects", "effect_samples": EFFECT_SAMPLES, "effect_kurtosis": round(float(v), 4)}
            for v in kurtosis]


def rotated_by_effects(rows, k: int, dims: int, effects_of: Callable[[torch.Tensor], torch.Tensor]
                       ) -> tuple[torch.Tensor, torch.Tensor]:
    """k directions of rows [N, D] (or column blocks, ``ica.column_blocks``; one trajectory's h per row): their
    top ``dims`` principal directions, one standard deviation each ([dims, D]), measured by ``effects_of``
    (-> effect maps [dims, P]: ``effect_maps`` on a pixel model), rotated by ``effect_rotation``; the k
    sparsest kept. Returns (shifts [k, D], each one standard deviation of the rows along it; the effects'
    excess kurtosis [k])."""
    coords, lift = span(rows)
    n, r = coords.shape
    if r < dims:
        raise HSpaceError(f"the samples span {r} dimensions, fewer than {dims}: ask for fewer components")
    std = coords[:, :dims].norm(dim=0) / n ** 0.5                    # the principal axes' standard deviations

    def along(c: torch.Tensor) -> torch.Tensor:                      # [m, dims] on the unit axes -> [m, D]
        padded = torch.zeros(c.shape[0], r, dtype=torch.float64)
        padded[:, :dims] = c
        return lift(padded)

    c, kurtosis = effect_rotation(effects_of(along(torch.diag(std))))
    on_axes = c[:, :k].T * std                                       # [k, dims]: each kept one on the unit axes
    unit = on_axes / on_axes.norm(dim=1, keepdim=True)
    spread = (unit ** 2 * std ** 2).sum(1).sqrt()                    # the rows' std along each
    return along(unit * spread[:, None]), kurtosis[:k].float()
