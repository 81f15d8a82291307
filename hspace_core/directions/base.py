"""Directions in h-space: values that map (h, t) to a shift delta_h, and their combinations.

Kinds (each a frozen dataclass; operations return new values, inputs are never edited):
  * ``TensorDirection``: a global delta_h ([C, H, W] or any shape broadcastable to h, e.g. [C, 1, 1])
    or one per timestep ([S, ...] on a grid of S timesteps, linearly interpolated in t between them);
  * ``DeltaBlockDirection``: the official Asyrp implicit function f_t(h, temb) (``deltablock.py``);
  * ``DirectionMix``: a weighted sum of directions.

Strength semantics (one for every kind): the shift applied at a step is
``strength * sum_i coefficient_i * step_scale_i * f_i(h, t)`` where ``step_scale_i =
made_steps_i / steps_used`` is Asyrp's n_train_step / n_test_step factor (asyrp.md 4.3): with the
asymmetric step each edited step adds its x0 shift in full, so a direction made on a 40-step grid
edits as much at 20 or 100 steps. ``strength_unit`` in the metadata says what strength 1 means.
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass, field, replace

import torch
from torch import nn

from ..errors import HSpaceError

WHICH_H = "middle_block_output"


@dataclass(frozen=True)
class DirectionInfo:
    """What a direction was made for and how (stored in the direction file).

    h_shape:   [C, H, W] of the h it was made on (C must match; H, W may broadcast or be 1).
    network_fingerprint / family: the model's (``HSpaceModel.fingerprint``), or None when unknown
               (the official Asyrp files name only their data set); then only shapes are checked.
    made_steps: number of steps of the sampling grid it was made or trained with (None: no rescaling).
    strength_unit: "asyrp" (official coefficient), "std" (standard deviations of h along it),
               "mean_difference" (1 = the full mean difference of two sets), or "raw".
    name / provenance: a label, and how it was made (method, texts or data, hyperparameters).
    t_edit:    the editing interval it was made on (a suggestion for sampling), or None.
    calibration: what strength 1 means on the model it was made for (``calibration.Calibration`` as JSON),
               or None (raw units only).
    """

    h_shape: tuple[int, int, int]
    network_fingerprint: str | None = None
    family: str | None = None
    made_steps: int | None = None
    strength_unit: str = "raw"
    name: str = ""
    provenance: dict = field(default_factory=dict)
    t_edit: int | None = None
    which_h: str = WHICH_H
    calibration: dict | None = None

    @property
    def channels(self) -> int:
        return self.h_shape[0]


class Direction:
    """Interface: ``delta(h, t, emb, steps)`` -> delta_h of h's shape, with the step scale applied."""

    info: DirectionInfo

    def raw_delta(self, h: torch.Tensor, t: torch.Tensor, emb: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def delta(self, h: torch.Tensor, t: torch.Tensor, emb: torch.Tensor, steps: int) -> torch.Tensor:
        """delta_h at strength 1 for h: [N, C, H, W] at timesteps t: [N] (int64), with the host's
        time embedding emb: [N, E], when sampling with ``steps`` steps."""
        out = self.raw_delta(h, t, emb)
        if self.info.made_steps:
            out = out * (self.info.made_steps / steps)
        return out.expand_as(h) if out.shape != h.shape else out

    def check_fits(self, model) -> None:
        """Refuse a model whose h this direction was not made for, with a message saying why."""
        c, hh, ww = model.h_shape
        mine = self.info.h_shape
        name = f"direction {self.info.name!r}" if self.info.name else "direction"
        if mine[0] != c:
            raise HSpaceError(f"{name} was made for h with {mine[0]} channels ({list(mine)}), but this model's "
                              f"h is {[c, hh, ww]} ({model.family.value}, fingerprint {model.fingerprint})")
        fp = self.info.network_fingerprint
        if fp is not None and fp != model.fingerprint:
            raise HSpaceError(f"{name} was made for another network (fingerprint {fp}, family {self.info.family}); "
                              f"this model is {model.family.value} with fingerprint {model.fingerprint}")

    def check_h(self, h: torch.Tensor) -> None:
        """Refuse an h grid the direction's spatial shape cannot broadcast to."""
        _, hh, ww = self.info.h_shape
        if (hh not in (1, h.shape[-2])) or (ww not in (1, h.shape[-1])):
            raise HSpaceError(f"direction {self.info.name!r} has a spatial shape {hh}x{ww} that does not fit h of "
                              f"{h.shape[-2]}x{h.shape[-1]} (images of another size than it was made on)")

    def scaled(self, s: float) -> "DirectionMix":
        return DirectionMix(((self, float(s)),), info=self.info)

    def to(self, device=None, dtype=None) -> "Direction":
        """A copy whose tensors live on ``device`` in ``dtype`` (self when already there)."""
        return self


@dataclass(frozen=True, eq=False)
class TensorDirection(Direction):
    """A global or per-timestep delta_h.

    values:    [C, H, W] (or broadcastable, e.g. [C, 1, 1]) for a global direction, or [S, ...] with
               ``timesteps`` [S] ascending int64 schedule indices for a per-timestep one.
    timesteps: None for a global direction.
    """

    values: torch.Tensor
    timesteps: torch.Tensor | None
    info: DirectionInfo

    def __post_init__(self):
        if self.timesteps is not None:
            if self.timesteps.ndim != 1 or len(self.timesteps) != self.values.shape[0]:
                raise HSpaceError("a per-timestep direction needs one timestep per slice of its values")
            if bool((self.timesteps[1:] <= self.timesteps[:-1]).any()):
                raise HSpaceError("direction timesteps must be strictly ascending")
        if not torch.isfinite(self.values).all():
            raise HSpaceError("direction values contain NaN or infinity")

    def at(self, t: int) -> torch.Tensor:
        """The shift at timestep t: linear interpolation between the two nearest grid timesteps,
        clamped to the first / last slice outside the grid (re-mapping to another step count)."""
        if self.timesteps is None:
            return self.values
        ts = self.timesteps
        if t <= int(ts[0]):
            return self.values[0]
        if t >= int(ts[-1]):
            return self.values[-1]
        j = int(torch.searchsorted(ts, torch.tensor(t), right=True))
        t0, t1 = int(ts[j - 1]), int(ts[j])
        w = (t - t0) / (t1 - t0)
        return torch.lerp(self.values[j - 1], self.values[j], w)

    def raw_delta(self, h, t, emb):
        self.check_h(h)
        if bool((t == t[0]).all()):
            return self.at(int(t[0])).to(device=h.device, dtype=h.dtype).unsqueeze(0)
        return torch.stack([self.at(int(tt)) for tt in t]).to(device=h.device, dtype=h.dtype)

    def to(self, device=None, dtype=None) -> "TensorDirection":
        return replace(self, values=self.values.to(device=device, dtype=dtype))


@dataclass(frozen=True, eq=False)
class DeltaBlockDirection(Direction):
    """The official Asyrp implicit function f_t(h, temb); ``block`` is a ``DeltaBlock`` module."""

    block: nn.Module
    info: DirectionInfo

    def raw_delta(self, h, t, emb):
        return self.block(h, emb)

    def check_fits(self, model) -> None:
        """Also: a DeltaBlock needs a host network of its flavour with its time-embedding width."""
        super().check_fits(model)
        block = self.block
        if block.flavour != model.network:
            raise HSpaceError(f"direction {self.info.name!r} is a DeltaBlock for {block.flavour.upper()} networks; "
                              f"this model is {model.family.value} (an {model.network.upper()} network)")
        if block.emb_channels != model.emb_channels:
            raise HSpaceError(f"direction {self.info.name!r} expects a {block.emb_channels}-wide time embedding; "
                              f"this model's is {model.emb_channels} wide")

    def to(self, device=None, dtype=None) -> "DeltaBlockDirection":
        p = next(self.block.parameters())
        if (device is None or p.device == torch.device(device)) and (dtype is None or p.dtype == dtype):
            return self
        return replace(self, block=copy.deepcopy(self.block).to(device=device, dtype=dtype))


@dataclass(frozen=True, eq=False)
class DirectionMix(Direction):
    """sum_i coefficient_i * direction_i (each with its own step scale).

    With ``sqrt_n`` the sum is divided by sqrt(n) for n terms: the official multi-attribute
    convention (asyrp.md 4.3, ``--multiple_attr``).
    """

    terms: tuple[tuple[Direction, float], ...]
    info: DirectionInfo
    sqrt_n: bool = False

    def delta(self, h, t, emb, steps):
        total = None
        for direction, coefficient in self.terms:
            if coefficient == 0:
                continue
            d = direction.delta(h, t, emb, steps) * coefficient
            total = d if total is None else total + d
        if total is None:
            return torch.zeros_like(h)
        if self.sqrt_n:
            total = total / math.sqrt(len(self.terms))
        return total

    def raw_delta(self, h, t, emb):
        raise HSpaceError("a direction mix has no single raw delta; use delta(...)")

    def check_fits(self, model) -> None:
        for direction, _ in self.terms:
            direction.check_fits(model)

    def scaled(self, s: float) -> "DirectionMix":
        return replace(self, terms=tuple((d, c * s) for d, c in self.terms))

    def to(self, device=None, dtype=None) -> "DirectionMix":
        return replace(self, terms=tuple((d.to(device, dtype), c) for d, c in self.terms))


def mix(terms, *, sqrt_n: bool = False, name: str = "") -> DirectionMix:
    """Combine directions: ``terms`` is a sequence of directions or (direction, coefficient) pairs.

    All must be made for the same h (channels and network); the result's info is the first's, with
    the combination recorded in its provenance.
    """
    pairs = []
    for term in terms:
        d, c = (term, 1.0) if isinstance(term, Direction) else term
        if not isinstance(d, Direction):
            raise HSpaceError(f"cannot mix {type(d).__name__}; expected directions")
        pairs.append((d, float(c)))
    if not pairs:
        raise HSpaceError("mix needs at least one direction")
    first = pairs[0][0].info
    for d, _ in pairs[1:]:
        if d.info.channels != first.channels:
            raise HSpaceError(f"cannot mix directions made for h with {first.channels} and {d.info.channels} channels")
        if None not in (d.info.network_fingerprint, first.network_fingerprint) and \
                d.info.network_fingerprint != first.network_fingerprint:
            raise HSpaceError("cannot mix directions made for different networks "
                              f"({first.network_fingerprint} and {d.info.network_fingerprint})")
    info = replace(first, name=name or " + ".join(f"{c:g}*{d.info.name or '?'}" for d, c in pairs),
                   made_steps=None, strength_unit=first.strength_unit if len(pairs) == 1 else "mixed",
                   provenance={"method": "mix", "sqrt_n": sqrt_n,
                               "terms": [{"name": d.info.name, "coefficient": c} for d, c in pairs]},
                   calibration=None)
    return DirectionMix(tuple(pairs), info=info, sqrt_n=sqrt_n)


def mix_calibrated(terms, *, sqrt_n: bool = False, name: str = "", say=None) -> DirectionMix:
    """``mix`` with coefficients in calibrated units: each term enters at its calibrated unit
    (``calibration.in_units``; a term without a calibration enters raw, said once through ``say``), and
    the mix is calibrated by composition when every term is (strength 1 = each term at its coefficient)."""
    from .calibration import compose, in_units

    pairs = [(term, 1.0) if isinstance(term, Direction) else term for term in terms]
    result = mix([(in_units(d, "calibrated", say), c) for d, c in pairs], sqrt_n=sqrt_n, name=name)
    cal = compose([(d, c / math.sqrt(len(pairs)) if sqrt_n else c) for d, c in pairs])
    if cal is None:
        return result
    return replace(result, info=replace(result.info, calibration=cal.to_json(), strength_unit="calibrated"))
