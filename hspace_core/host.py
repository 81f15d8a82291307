"""h-space directions on a host's UNet: Stable Diffusion 1.x / SDXL as run by ComfyUI.

The host calls its own UNet; the pack only sees the bottleneck h ([R, C, H, W], the middle block's
output, 1280 x H/64 x W/64 on SD1.x at 512 px, 1280 x H/32 x W/32 on SDXL) through a patch, with the
rows' timesteps t ([R], float in [0, T)) and which conditioning each chunk of rows belongs to
(``chunks``: one entry per chunk, 0 = cond, 1 = uncond, as ComfyUI's ``cond_or_uncond``; the R rows
are the chunks one after the other, R / len(chunks) rows each).

A ``HostShift`` is one direction applied there: ``h + strength * row_scale * dh(t)`` on the rows of
the chosen branch, for t_edit <= t <= t_end. Asymmetric shifts act only in the edit call of the
Asyrp sampler (``sampling.two_call_predictor``; the host marks that call and gives the per-row sweep
scales), symmetric ones in every call (a stock sampler: the shift enters both DDIM terms).
Directions are tensors of [C, 1, 1] (a channel vector, any resolution) or [C, H_d, W_d] (resized
bilinearly to the h grid), global or per timestep (``TensorDirection.at``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import torch
import torch.nn.functional as F

from .directions.base import DeltaBlockDirection, Direction, DirectionMix, TensorDirection
from .directions.project import as_tensor_direction
from .errors import HSpaceError
from .sampling import SigmaStep

SD_FAMILIES = ("sd1", "sd2", "sdxl")
# flow-matching transformers: h is the image tokens at a joint ("double") block, on the token grid
FLOW_FAMILIES = ("flux", "flux2", "sd3")
HOST_FAMILIES = SD_FAMILIES + FLOW_FAMILIES
BRANCHES = ("both", "cond", "uncond")
MODES = ("asymmetric", "symmetric")
T_END = 1000.0


def host_direction(direction: Direction, family: str, channels: int,
                   which_h: str = "middle_block_output") -> TensorDirection:
    """``direction`` as one tensor direction for a host model of ``family`` whose h has ``channels``
    channels, at ``which_h`` (a UNet's middle block output; a flow transformer's
    ``double_block_<i>.<stream|attention>``); refuses a direction made for another family (a pixel
    DDPM's, another SD's), size or place."""
    name = f"direction {direction.info.name!r}" if direction.info.name else "this direction"
    made_for = direction.info.family
    if made_for not in HOST_FAMILIES:
        what = f"a pixel DDPM ({made_for})" if made_for else "a pixel DDPM (an official Asyrp file)"
        raise HSpaceError(f"{name} was made for {what}, not for {family}: directions for Stable Diffusion, "
                          f"Flux and SD3 models are made on them (H-Space Direction from Prompts / Latent Sets / "
                          "PCA)")
    if made_for != family:
        raise HSpaceError(f"{name} was made for {made_for}, but this model is {family}")
    if direction.info.channels != channels:
        raise HSpaceError(f"{name} was made for h with {direction.info.channels} channels, but this {family} "
                          f"model's h has {channels}")
    if direction.info.which_h != which_h:
        raise HSpaceError(f"{name} was made for h at {direction.info.which_h}, not at {which_h}")
    if _has_deltablock(direction):
        raise HSpaceError(f"{name} holds a DeltaBlock (needs the pixel model's time embedding); "
                          "host models take tensor directions")
    return as_tensor_direction(direction, made_steps=1)


def _has_deltablock(d: Direction) -> bool:
    if isinstance(d, DeltaBlockDirection):
        return True
    return isinstance(d, DirectionMix) and any(_has_deltablock(dd) for dd, _ in d.terms)


@dataclass(frozen=True, eq=False)
class HostShift:
    """One direction on a host's h. t_edit <= t <= t_end in the host's timesteps (0..T-1)."""

    direction: TensorDirection
    strength: float
    t_edit: float
    t_end: float = T_END
    branch: str = "both"
    mode: str = "asymmetric"

    def __post_init__(self):
        if self.branch not in BRANCHES:
            raise HSpaceError(f"branch must be one of {BRANCHES}, got {self.branch!r}")
        if self.mode not in MODES:
            raise HSpaceError(f"mode must be one of {MODES}, got {self.mode!r}")
        if not 0 <= self.t_edit <= self.t_end:
            raise HSpaceError(f"the editing interval needs 0 <= t_edit <= t_end, got [{self.t_edit}, {self.t_end}]")

    def acts(self, edit_call: bool) -> bool:
        return self.mode == "symmetric" or edit_call

    def delta(self, h: torch.Tensor, t: float) -> torch.Tensor:
        """dh at strength 1 and timestep t, on h's grid: [C, H, W] (or [C, 1, 1])."""
        v = self.direction.at(int(round(t))).to(device=h.device, dtype=h.dtype)
        if v.shape[-2:] not in ((1, 1), tuple(h.shape[-2:])):
            v = F.interpolate(v.unsqueeze(0), size=tuple(h.shape[-2:]), mode="bilinear", align_corners=False)[0]
        return v


def shift_h(h: torch.Tensor, shifts: Sequence[HostShift], t: torch.Tensor, chunks: Sequence[int], *,
            edit_scales: torch.Tensor | None = None) -> torch.Tensor:
    """h with every acting shift added (a new tensor; h is not modified).

    h: [R, C, H, W]; t: [R] the rows' timesteps, or [B] the timesteps of one chunk (ComfyUI's
    ``sigmas``), the same in every chunk; chunks: cond (0) / uncond (1) per chunk of R / len(chunks)
    rows; edit_scales: [B] per-row strengths of the Asyrp sampler's edit call (a sweep), None in a plain
    call. A shift acts on row r of chunk j when its mode acts in this call, its interval holds t[r] and
    its branch takes chunk j; the row's shift is strength * edit_scales[r mod B] * dh(t[r]) for an
    asymmetric shift, strength * dh(t[r]) for a symmetric one (it acts in both calls, so a sweep cannot
    scale it consistently).
    """
    edit_call = edit_scales is not None
    acting = [s for s in shifts if s.acts(edit_call)]
    if not acting:
        return h
    rows = h.shape[0]
    per_chunk = rows // max(len(chunks), 1)
    if per_chunk * len(chunks) != rows:
        raise HSpaceError(f"h has {rows} rows, not a whole number of the {len(chunks)} conditioning chunks")
    t = t.to(h.device).flatten()
    if len(t) != rows:
        if rows % len(t):
            raise HSpaceError(f"{len(t)} timesteps do not fit the {rows} rows of h")
        t = t.repeat(rows // len(t))
    ones = torch.ones(rows, dtype=h.dtype, device=h.device)
    sweep = ones
    if edit_call:
        scales = edit_scales.to(device=h.device, dtype=h.dtype).flatten()
        if per_chunk % len(scales):
            raise HSpaceError(f"{len(scales)} strengths do not divide the {per_chunk} rows of the batch")
        sweep = scales.repeat(rows // len(scales))
    out = h
    for s in acting:
        scale = sweep if s.mode == "asymmetric" else ones
        keep = torch.tensor([s.branch == "both" or (s.branch == "cond") == (c == 0) for c in chunks],
                            device=h.device).repeat_interleave(per_chunk)
        inside = (t >= s.t_edit) & (t <= s.t_end)
        w = scale * s.strength * (keep & inside).to(h.dtype)
        if not bool((w != 0).any()):
            continue
        if bool((t == t[0]).all()):
            dh = s.delta(h, float(t[0])).unsqueeze(0)
        else:
            dh = torch.stack([s.delta(h, float(tt)) for tt in t])
        out = out + w.view(-1, 1, 1, 1) * dh
    return out


def host_sigma_steps(sigmas: Sequence[float], timesteps: Sequence[float], *, eta: float = 0.0,
                     t_boost: float = 0.0) -> list[SigmaStep]:
    """The host's descending (or, for inversion, ascending) sigmas [n + 1] and their timesteps [n + 1]
    (-1 where sigma is 0) as the walk's steps; eta at steps with t < t_boost, not on a step to sigma 0."""
    if len(sigmas) != len(timesteps):
        raise HSpaceError("one timestep per sigma is needed")
    return [SigmaStep(float(timesteps[i]), float(timesteps[i + 1]), float(sigmas[i]), float(sigmas[i + 1]),
                      eta if eta and timesteps[i] < t_boost and sigmas[i + 1] > 0 else 0.0)
            for i in range(len(sigmas) - 1)]


def regeneration_error(regenerated: torch.Tensor, target: torch.Tensor) -> dict[str, float]:
    """How far a strength-0 regeneration [B, C, H, W] lands from the latent it inverted: RMS and max of
    the difference, and the target's RMS for scale (all in the latent's units)."""
    err = (regenerated - target).float()
    return {"rms": float(err.pow(2).mean().sqrt()), "max": float(err.abs().max()),
            "target_rms": float(target.float().pow(2).mean().sqrt())}
