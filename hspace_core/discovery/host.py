"""Directions for a host model (SD1.x / SDXL) from h recorded by the host.

The host records (t, h) pairs along its own walks ([N, C, H, W] per call, t the rows' timestep);
``by_timestep`` groups them on integer timesteps. From there:
  * a prompt pair: mean over rows and seeds of h(target prompt) - h(source prompt), both read at the
    same x_t along the source prompt's trajectories, per timestep;
  * two latent sets: mean h of set A minus mean h of set B along their inversions, per timestep;
  * PCA: per-timestep principal component of h over N trajectories, scaled to its standard deviation,
    its sign kept consistent along the trajectory (as ``pca.pca_directions``).
``spatial`` "average" keeps a [C, 1, 1] channel vector (applies at any resolution); "keep" the
[C, H, W] grid (resized to other resolutions when applied). Strength 1 is one full difference
(``strength_unit`` "mean_difference") or one standard deviation ("std"), added at every edited step.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Iterable

import torch

from ..directions.base import WHICH_H, DirectionInfo, TensorDirection
from ..errors import HSpaceError
from ..host import HOST_FAMILIES
from .ica import ORDERS, ROTATIONS, check_rotation, component_statistics, independent_components, whitened_dims
from .pca import consistent_signs, principal_components

SPATIAL = ("average", "keep")


@dataclass(frozen=True)
class Recording:
    """What a host's h recorder keeps: h reduced as the direction will use it (``spatial``: "average" keeps
    [N, C, 1, 1] of each [N, C, H, W], the same numbers ``_reduce`` gives later; "keep" all of it) at the
    timesteps t_min <= t <= t_max (either end open when None). An SD1.5 trajectory's h at 512 px is
    1280 x 8 x 8 per step: averaged at once, 64 times less is held while the walks run."""
    spatial: str = "keep"
    t_min: float | None = None
    t_max: float | None = None

    def __post_init__(self):
        if self.spatial not in SPATIAL:
            raise HSpaceError(f"spatial must be one of {SPATIAL}, got {self.spatial!r}")

    def take(self, t: float, h: torch.Tensor) -> torch.Tensor | None:
        """h [N, C, H, W] at timestep t as it is kept (float32, CPU), or None when t lies outside."""
        step = int(round(float(t)))  # as ``by_timestep`` groups them
        if (self.t_min is not None and step < self.t_min) or (self.t_max is not None and step > self.t_max):
            return None
        return _reduce(h.detach().float(), self.spatial).cpu()


def by_timestep(records: Iterable[tuple[float, torch.Tensor]]) -> dict[int, torch.Tensor]:
    """(t, h [N, C, H, W]) records -> {round(t): all rows at that t, [sum N, C, H, W]} (float32, CPU)."""
    out: dict[int, list[torch.Tensor]] = {}
    for t, h in records:
        out.setdefault(int(round(float(t))), []).append(h.detach().float().cpu())
    return {t: hs[0] if len(hs) == 1 else torch.cat(hs) for t, hs in sorted(out.items())}  # one batch: no copy


def _reduce(h: torch.Tensor, spatial: str) -> torch.Tensor:
    if spatial not in SPATIAL:
        raise HSpaceError(f"spatial must be one of {SPATIAL}, got {spatial!r}")
    return h.mean(dim=(-2, -1), keepdim=True) if spatial == "average" else h


def _info(family: str, values: torch.Tensor, name: str, unit: str, provenance: dict, t_edit: int | None,
          which_h: str):
    if family not in HOST_FAMILIES:
        raise HSpaceError(f"host directions are for {HOST_FAMILIES}, not {family!r}")
    return DirectionInfo(h_shape=tuple(int(x) for x in values.shape[1:]), family=family, strength_unit=unit,
                         name=name, provenance=provenance, t_edit=t_edit, which_h=which_h)


def difference_direction(target: dict[int, torch.Tensor], source: dict[int, torch.Tensor], *, family: str,
                         spatial: str = "average", name: str = "", provenance: dict | None = None,
                         t_edit: int | None = None, which_h: str = WHICH_H) -> TensorDirection:
    """Per timestep mean(target rows) - mean(source rows) (both ``by_timestep`` records), as a
    per-timestep direction on the timesteps both hold."""
    common = sorted(set(target) & set(source))
    if not common:
        raise HSpaceError("the two recordings share no timestep; record both along the same sigmas")
    values = torch.stack([_reduce(target[t], spatial).mean(0) - _reduce(source[t], spatial).mean(0) for t in common])
    return TensorDirection(values, torch.tensor(common, dtype=torch.int64),
                           _info(family, values, name, "mean_difference", provenance or {}, t_edit, which_h))


def pca_host_direction(recorded: dict[int, torch.Tensor], component: int, *, family: str,
                       spatial: str = "average", name: str = "", provenance: dict | None = None,
                       t_edit: int | None = None, which_h: str = WHICH_H) -> TensorDirection:
    """Principal component ``component`` (0-based) of h per timestep over the recorded rows, scaled to
    its standard deviation; the sign is fixed at the highest t (largest coordinate positive) and kept
    along the trajectory by continuity."""
    ts = sorted(recorded, reverse=True)
    if not ts:
        raise HSpaceError("nothing was recorded")
    n = recorded[ts[0]].shape[0]
    if n <= component + 1:
        raise HSpaceError(f"PCA of {n} trajectories gives at most {n - 1} components; component {component} "
                          f"needs more than {component + 1} seeds")
    hs = [_reduce(recorded[t], spatial) for t in ts]
    pcs = [principal_components(h.flatten(1), component + 1) for h in hs]
    axes = consistent_signs([a[component] for a, _ in pcs])
    values = {t: (v * std[component]).view(h.shape[1:]) for t, h, v, (_, std) in zip(ts, hs, axes, pcs)}
    asc = sorted(values)
    stacked = torch.stack([values[t] for t in asc])
    return TensorDirection(stacked, torch.tensor(asc, dtype=torch.int64),
                           _info(family, stacked, name, "std", provenance or {}, t_edit, which_h))


def ica_host_directions(recorded: dict[int, torch.Tensor], k: int, *, dims: int | None = None, family: str,
                        spatial: str = "average", name: str = "IC", provenance: dict | None = None, t_edit: int | None = None,
                        t_end: int | None = None, which_h: str = WHICH_H, seed: int = 0,
                        order: str = ORDERS[0], rotate: str = ROTATIONS[0],
                        effects_of: Callable[[dict[int, torch.Tensor]], torch.Tensor] | None = None
                        ) -> list[TensorDirection]:
    """k independent components of h over the recorded trajectories (``ica.independent_components``): each
    trajectory's h at every recorded timestep of the editing interval [t_edit, t_end] (either end open when
    None) is one row, whitened in its top ``dims`` principal components (``ica.whitened_dims``: 2 x k by
    default); each component is one standard deviation of its source per timestep (zero outside), the k kept
    and ordered by ``order`` (``ica.independent_components``: most reproducible or least Gaussian), its
    positive side its source's longer tail.

    ``rotate`` "effects": the principal directions are turned by their effects on the predicted x0 instead
    (``effect_ica.rotated_by_effects``, the k sparsest kept): ``effects_of`` takes m directions as
    {t: [m, *h_shape]} over the interval's recorded timesteps and returns their x0 changes [m, P] (the host's
    measurement, e.g. ``nodes.sd.discovery.effect_maps_sd``)."""
    check_rotation(rotate, whitened_dims(k, dims))
    if rotate == "effects" and effects_of is None:
        raise HSpaceError("rotate 'effects' measures the directions' effects on the model: pass effects_of")
    ts = sorted(recorded, reverse=True)
    if not ts:
        raise HSpaceError("nothing was recorded")
    used = [t for t in ts if (t_edit is None or t >= t_edit) and (t_end is None or t <= t_end)]
    if not used:
        raise HSpaceError(f"no recorded timestep lies in the editing interval [{t_edit}, {t_end}]")
    hs = [_reduce(recorded[t], spatial) for t in used]
    n, shape = hs[0].shape[0], hs[0].shape[1:]
    rows = [h.flatten(1) for h in hs]  # column blocks side by side: the rows are never concatenated
    dims = whitened_dims(k, dims)

    def per_step(shifts: torch.Tensor) -> dict[int, torch.Tensor]:  # [m, len(used) * D] -> {t: [m, *shape]}
        blocks = shifts.float().view(shifts.shape[0], len(used), *shape)
        return {t: blocks[:, i] for i, t in enumerate(used)}

    if rotate == "effects":
        from .effect_ica import effect_provenance, rotated_by_effects

        shifts, sparsity = rotated_by_effects(rows, k, dims, lambda axes: effects_of(per_step(axes)))
        statistics = effect_provenance(sparsity)
    else:
        shifts, sources, stable, chance = independent_components(rows, k, dims=dims, seed=seed, order=order)
        statistics = [{"order": order, **component_statistics(sources[:, j], stable[j], chance)} for j in range(k)]
    asc = sorted(ts)
    out = []
    for j in range(k):
        per_t = per_step(shifts[j:j + 1])
        stacked = torch.stack([per_t[t][0] if t in per_t else torch.zeros(shape) for t in asc])
        out.append(TensorDirection(stacked, torch.tensor(asc, dtype=torch.int64),
                                   _info(family, stacked, f"{name} {j}", "std",
                                         {**(provenance or {}), "component": j, "trajectories": n,
                                          **statistics[j]}, t_edit, which_h)))
    return out
