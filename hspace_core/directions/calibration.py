"""Strength calibration: what strength 1 means, measured on the model a direction was made for.

A direction's raw values come in units of how it was made (a CLIP trainer's steps, a mean difference, a
standard deviation of h, a prompt pair's difference, restricted to a region...), so a slider's number
means something else for every direction. Calibration measures, on the model, how much the predicted
x0 changes per unit of raw strength at the direction's t_edit, and stores:

  * ``scale``: the raw strength of calibrated strength 1, which changes the predicted x0 at t by an RMS
    of ``REFERENCE_CHANGE`` (0.1; x0 in the model's units: pixel images in [-1, 1], latents in the
    diffusion model's units): the one-step response of the asymmetric edit, measured on ``samples``
    seeded x_t (x_T drawn from a seeded generator, one DDIM step down to t: one network pass for the
    jump, one for the plain and edited x0 that share an encoder pass);
  * ``usable``: (lowest, highest) calibrated strength of the sweep ``PROBE`` whose whole edits (a short
    grid, the same seeded starts) keep the image off the target within ``USABLE_PSNR_DB`` of strength
    0, where "off the target" is outside the direction's region (``provenance["region"]``) or the whole
    image for a direction on all of h. PSNR with the peak 2 for pixel images in [-1, 1] and the strength
    0 sample's range for latents. None when not measured.

``in_units(direction, "calibrated")`` is the direction whose raw strength 1 is calibrated strength 1;
a direction without a calibration stays raw (``in_units`` says so once per direction name). Mixes of
calibrated directions are calibrated by composition (``composed``): each term at its calibrated unit.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, replace
from typing import Callable, Sequence

import torch
import torch.nn.functional as F

from ..errors import HSpaceError

REFERENCE_CHANGE = 0.02
USABLE_PSNR_DB = 20.0
GAIN_POINTS = 4
PROBE = (0.5, 1.0, 2.0, 4.0, 8.0, 16.0)
UNITS = ("calibrated", "raw")


@dataclass(frozen=True)
class Calibration:
    """See the module docstring. ``gain``: relative RMS change of the predicted x0 per edited step and raw
    unit over [t, t_end]; ``how``: "measured" on the model, or "composed" (a mix of calibrated directions)."""

    scale: float
    gain: float
    t: int
    samples: int
    reference: float = REFERENCE_CHANGE
    usable: tuple[float, float] | None = None
    psnr_db: float = USABLE_PSNR_DB
    how: str = "measured"
    t_end: int | None = None

    def to_json(self) -> dict:
        d = asdict(self)
        d["usable"] = list(self.usable) if self.usable is not None else None
        d["gain"] = None if math.isnan(self.gain) else self.gain  # a composed mix's (JSON has no NaN)
        return d

    @staticmethod
    def from_json(d, where: str) -> "Calibration":
        """Checked: the file may come from anywhere."""
        if not isinstance(d, dict):
            raise HSpaceError(f"{where}: calibration metadata is {type(d).__name__}, not an object")

        def number(key, positive=True):
            v = d.get(key)
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) or \
                    (positive and v <= 0):
                raise HSpaceError(f"{where}: calibration {key!r} is {v!r}, not a {'positive ' if positive else ''}"
                                  "finite number")
            return float(v)
        usable = d.get("usable")
        if usable is not None:
            if not isinstance(usable, list) or len(usable) != 2 or not all(
                    isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) for v in usable) \
                    or not usable[0] <= 0 <= usable[1]:
                raise HSpaceError(f"{where}: calibration 'usable' is {usable!r}, not [lowest <= 0, highest >= 0]")
            usable = (float(usable[0]), float(usable[1]))
        t, samples, how, t_end = d.get("t"), d.get("samples"), d.get("how", "measured"), d.get("t_end")
        if isinstance(t, bool) or not isinstance(t, int) or not 0 <= t <= 100_000:
            raise HSpaceError(f"{where}: calibration 't' is {t!r}")
        if t_end is not None and (isinstance(t_end, bool) or not isinstance(t_end, int) or not t <= t_end <= 100_000):
            raise HSpaceError(f"{where}: calibration 't_end' is {t_end!r}")
        if isinstance(samples, bool) or not isinstance(samples, int) or samples < 0:
            raise HSpaceError(f"{where}: calibration 'samples' is {samples!r}")
        if how not in ("measured", "composed"):
            raise HSpaceError(f"{where}: calibration 'how' is {how!r}")
        gain = d.get("gain")
        if gain is not None and not (isinstance(gain, (int, float)) and not isinstance(gain, bool)):
            raise HSpaceError(f"{where}: calibration 'gain' is {gain!r}")
        return Calibration(number("scale"), float("nan") if gain is None else float(gain), t, samples,
                           number("reference"), usable, number("psnr_db"), how, t_end)

    def sweep(self, n: int = 4) -> list[float]:
        """A default sweep in calibrated units: 0 and n - 1 steps up to the top of the usable range (1 when it
        was not measured)."""
        top = self.usable[1] if self.usable is not None and self.usable[1] > 0 else 1.0
        return [round(top * i / (n - 1), 4) for i in range(n)]


def calibration_of(direction) -> Calibration | None:
    cal = direction.info.calibration
    return None if cal is None else Calibration.from_json(cal, f"direction {direction.info.name!r}")


def with_calibration(direction, calibration: Calibration):
    """``direction`` with ``calibration`` recorded in its info (stored in its file)."""
    import dataclasses

    info = replace(direction.info, calibration=calibration.to_json())
    return dataclasses.replace(direction, info=info)


_SAID: set[str] = set()


def in_units(direction, units: str, say: Callable[[str], None] | None = None):
    """The direction whose raw strength 1 is strength 1 in ``units``: "raw" (as made) or "calibrated"
    (``scale`` times the raw direction). A direction without a calibration stays raw; ``say`` is told
    once per direction name."""
    if units not in UNITS:
        raise HSpaceError(f"strength units must be one of {', '.join(UNITS)}, got {units!r}")
    if direction is None or units == "raw":
        return direction
    cal = calibration_of(direction)
    if cal is None:
        key = direction.info.name or "(unnamed)"
        if say is not None and key not in _SAID:
            _SAID.add(key)
            say(f"direction {key!r} has no calibration (made before calibration, or outside the pack): its strengths "
                "are raw units")
        return direction
    return direction.scaled(cal.scale)


def compose(terms: Sequence[tuple[object, float]]) -> Calibration | None:
    """The calibration of sum_i c_i * d_i with c_i in calibrated units: strength 1 of the mix is each term at
    its coefficient (scale 1 in the mix's own terms, which carry the scales); usable while every term is
    (the tightest term bounds it). None when a term has no calibration."""
    cals = [calibration_of(d) for d, _ in terms]
    if any(c is None for c in cals) or not cals:
        return None
    lo, hi = -math.inf, math.inf
    for cal, (_, c) in zip(cals, terms):
        if cal.usable is None or c == 0:
            continue
        a, b = (cal.usable[0] / c, cal.usable[1] / c) if c > 0 else (cal.usable[1] / c, cal.usable[0] / c)
        lo, hi = max(lo, a), min(hi, b)
    usable = None if math.isinf(lo) and math.isinf(hi) else (min(0.0, lo), max(0.0, hi))
    return Calibration(1.0, math.nan, cals[0].t, 0, usable=usable, how="composed")


# ------------------------------------------------------------------ the measurements, for any host

def rms(x: torch.Tensor) -> torch.Tensor:
    """Root mean square per row: x [N, ...] -> [N]."""
    return x.flatten(1).pow(2).mean(1).sqrt()


def gain_points(t: float, t_end: float, n: int = GAIN_POINTS) -> list[float]:
    """``n`` timesteps spread evenly over [t, t_end], both ends included."""
    if n < 2 or t_end <= t:
        return [float(t)]
    return [t + (t_end - t) * i / (n - 1) for i in range(n)]


def latent_peak(latent: torch.Tensor) -> torch.Tensor:
    """The PSNR peak of latents [N, ...]: 4 x their RMS (a pixel image of RMS 0.5 has the peak 2)."""
    return (4 * rms(latent)).clamp_min(1e-6)


def gain_of(x0_plain: torch.Tensor, x0_edit: torch.Tensor, strength: float) -> float:
    """RMS change of the predicted x0 relative to the unedited prediction's RMS, per raw unit (mean over
    rows)."""
    change = rms(x0_edit.float() - x0_plain.float()) / rms(x0_plain.float()).clamp_min(1e-6)
    return float(change.mean()) / abs(strength)


def scale_for(gain: float, name: str) -> float:
    if not math.isfinite(gain) or gain <= 1e-7:  # relative change per raw unit: below this, float noise
        raise HSpaceError(f"direction {name!r} does not change the predicted x0 at its t_edit (gain {gain:.3g}): "
                          "nothing to calibrate (is it zero, or made for another interval?)")
    return REFERENCE_CHANGE / gain


def solve_scale(change_at: Callable[[float], float], name: str, tolerance: float = 0.02,
                rounds: int = 5) -> tuple[float, float]:
    """(scale, gain per raw unit there): the raw strength whose relative x0 change ``change_at(s)`` is
    ``REFERENCE_CHANGE``. A reading at raw 1 gives a linear guess; further readings follow the response's
    curve as a power law between the last two readings (the secant in log-log: a saturating response,
    change ~ s^p with p < 1, is found in a few readings) until within ``tolerance`` (at most ``rounds``
    further readings; the last one read is returned)."""
    s0, c0 = 1.0, change_at(1.0)
    s1 = scale_for(c0, name)
    for _ in range(rounds):
        c1 = change_at(s1)
        scale_for(c1, name)  # refuses a reading that vanished or is not finite
        if abs(c1 / REFERENCE_CHANGE - 1) <= tolerance:
            break
        p = math.log(c1 / c0) / math.log(s1 / s0) if s1 != s0 and c1 != c0 else 1.0
        p = min(3.0, max(0.1, p)) if math.isfinite(p) else 1.0
        s0, c0, s1 = s1, c1, s1 * (REFERENCE_CHANGE / c1) ** (1.0 / p)
    return s1, c1 / s1


def off_target_weights(direction, size: tuple[int, int]) -> torch.Tensor:
    """[H, W] in [0, 1]: 1 where the image is off the direction's target (outside its region, upsampled from
    h's grid), everywhere for a direction on all of h."""
    region = direction.info.provenance.get("region") if isinstance(direction.info.provenance, dict) else None
    if not region:
        return torch.ones(size)
    w = torch.tensor(region, dtype=torch.float32)[None, None]
    return (1.0 - F.interpolate(w, size=size, mode="nearest")[0, 0]).clamp(0, 1)


def psnr_off_target(edited: torch.Tensor, plain: torch.Tensor, weights: torch.Tensor, peak: torch.Tensor | float):
    """PSNR (dB) per row of ``edited`` [N, C, H, W] to ``plain`` over the pixels weighted by ``weights``
    [H, W]; ``peak``: a number or one per row."""
    w = weights.to(edited)[None, None]
    mse = ((edited - plain).pow(2) * w).flatten(1).sum(1) / (w.sum() * edited.shape[1]).clamp_min(1e-12)
    peak = torch.as_tensor(peak, dtype=edited.dtype, device=edited.device)
    return 10 * torch.log10(peak ** 2 / mse.clamp_min(1e-20))


def usable_range(psnr_at: Callable[[list[float]], torch.Tensor], threshold: float = USABLE_PSNR_DB,
                 probe: Sequence[float] = PROBE) -> tuple[float, float]:
    """(lowest, highest) calibrated strength of ``probe`` (and its negatives) whose mean PSNR off the target
    stays at or above ``threshold``; ``psnr_at(strengths)`` -> [len(strengths)] mean PSNR of whole edits.
    0 on a side where even the smallest probe falls below."""
    strengths = [s for p in probe for s in (p, -p)]
    values = psnr_at(strengths).tolist()
    ok = {s: (not math.isnan(v)) and v >= threshold for s, v in zip(strengths, values)}

    def reach(sign):
        top = 0.0
        for p in probe:  # the range ends at the first probe that falls below
            if not ok[sign * p]:
                break
            top = sign * p
        return top
    return reach(-1), reach(1)
