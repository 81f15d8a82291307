"""One shift of h fitted by gradient steps through a host model's decoder half, for hosts without the
pixel side's own walks (ComfyUI's SD MODELs, through ``nodes/sd/trainable``):

* ``fit_output_shift``: the output-side image-set direction. The plain latent-set direction (mean h of
  set A minus mean h of set B) records what the inputs hold, which need not be what the decoder draws
  from h (on the miniature SD world it moves the smile the wrong way). Here dh is chosen so that the
  predicted x0 moves from one set's mean to the other's:

      L(dh) = |mean_B D(x_t; h + dh) - mean(x0_A)|^2 + |mean_A D(x_t; h - dh) - mean(x0_B)|^2

  over the interval's timesteps (x_t forward-noised from the set's own x0), divided by
  |mean(x0_A) - mean(x0_B)|^2: a few Adam steps of the least squares through the decoder (its
  Jacobian is what the gradient follows). Strength 1 is the fitted shift ("x0_set_means").
* ``train_clip_shift``: Asyrp's CLIP training (asyrp.md section 5) with the host as the model: the
  edited P_t = D(x_t; h + dh) decoded to pixels, the directional CLIP loss against the source image
  and Asyrp's L1 term to the unedited P_t, weighted as the official scripts (clip 1.0, L1 3.0 times
  cos(E_T(src), E_T(trg))). x_t is forward-noised at a timestep drawn from the interval (the pixel side
  walks the generative trajectory; a host's walk belongs to its sampler).

Both return one shift of h's shape, added at every edited step. The host (``ShiftHost``) gives h, D
and, for CLIP, a differentiable decoder to pixels in [-1, 1].
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable, Protocol

import torch

from ..errors import HSpaceError
from ..sampling import StepInfo


class ShiftHost(Protocol):
    """x0: [M, ...] the images or latents; rows index them; noise: [N, ...] like them."""

    x0: torch.Tensor

    def h(self, rows: torch.Tensor, t: int, noise: torch.Tensor) -> torch.Tensor:
        """h at the forward-noised x_t, [N, *h_shape] (no gradient)."""

    def predict(self, rows: torch.Tensor, t: int, noise: torch.Tensor, dh: torch.Tensor | None) -> torch.Tensor:
        """D, the predicted x0 at x_t with h + dh (dh [*h_shape] for every row, or None), differentiable in dh."""

    def decode(self, x0: torch.Tensor) -> torch.Tensor:
        """Pixels [N, 3, H, W] in [-1, 1] of predicted x0's, differentiable."""


@dataclass(frozen=True)
class ShiftSettings:
    iterations: int = 200
    batch: int = 8
    lr: float = 0.05
    seed: int = 0

    def check(self) -> None:
        if self.iterations < 1:
            raise HSpaceError(f"give at least one iteration, got {self.iterations}")
        if self.batch < 1:
            raise HSpaceError(f"give at least one image per update, got {self.batch}")
        if not (math.isfinite(self.lr) and self.lr > 0):
            raise HSpaceError(f"the learning rate must be a positive number, got {self.lr}")


@dataclass(frozen=True, eq=False)
class ShiftStep(StepInfo):
    """Progress of one update: t its timestep, and its loss."""

    loss: float = 0.0


def _h_rms(host: ShiftHost, n: int, timesteps: list[int], shape, g: torch.Generator, device) -> float:
    rows = torch.arange(min(n, 16))
    sq = [host.h(rows, t, torch.randn((len(rows), *shape), generator=g).to(device)).float().pow(2).mean()
          for t in timesteps[:: max(1, len(timesteps) // 4)]]
    return float(torch.stack(sq).mean().sqrt())


def _fit(loss_at: Callable, h_shape, h_rms: float, timesteps: list[int], s: ShiftSettings, g: torch.Generator,
         device, callback) -> tuple[torch.Tensor, list[float]]:
    """Adam on u, dh = h_rms * u (u from zero), one update per iteration at a drawn timestep."""
    u = torch.nn.Parameter(torch.zeros(h_shape, device=device))
    opt = torch.optim.Adam([u], lr=s.lr)
    losses = []
    for i in range(s.iterations):
        t = int(timesteps[int(torch.randint(len(timesteps), (1,), generator=g))])
        opt.zero_grad(set_to_none=True)
        with torch.enable_grad():
            loss = loss_at(t, u * h_rms)
            loss.backward()
        value = float(loss.detach())
        if not math.isfinite(value):
            raise HSpaceError(f"the fit diverged at update {i} (loss {value}); lower the learning rate")
        opt.step()
        losses.append(value)
        if callback is not None:
            callback(ShiftStep(i, s.iterations, t, None, None, None, loss=value))
    return (u.detach() * h_rms).float().cpu(), losses


def _record(losses: list[float], h_rms: float) -> dict:
    tenth = max(1, len(losses) // 10)
    return {"h_rms": h_rms, "loss_first": sum(losses[:tenth]) / tenth, "loss_last": sum(losses[-tenth:]) / tenth}


def fit_output_shift(host: ShiftHost, set_a: torch.Tensor, set_b: torch.Tensor, h_shape: tuple[int, ...],
                     timesteps: list[int], settings: ShiftSettings = ShiftSettings(), *,
                     callback: Callable[[StepInfo], None] | None = None) -> tuple[torch.Tensor, dict]:
    """The output-side shift taking set B's predicted x0 to set A's mean (and A's, reversed, to B's).
    set_a / set_b: row indices of ``host.x0``. Returns (dh [*h_shape], a record with the losses)."""
    s = settings
    s.check()
    if len(set_a) < 1 or len(set_b) < 1:
        raise HSpaceError("both image sets need at least one image")
    if not timesteps:
        raise HSpaceError("no timestep to fit at: the editing interval holds no grid step")
    x0, device = host.x0, host.x0.device
    mean_a, mean_b = x0[set_a].float().mean(0), x0[set_b].float().mean(0)
    scale = float((mean_a - mean_b).pow(2).sum())
    if not scale > 0:
        raise HSpaceError("the two sets have the same mean: there is no difference to move towards")
    g = torch.Generator().manual_seed(int(s.seed))
    h_rms = _h_rms(host, len(x0), timesteps, x0.shape[1:], g, device)

    def draw(rows):
        pick = rows[torch.randperm(len(rows), generator=g)[:s.batch]]
        return pick, torch.randn((len(pick), *x0.shape[1:]), generator=g).to(device)

    def loss_at(t, dh):
        rows_b, noise_b = draw(set_b)
        rows_a, noise_a = draw(set_a)
        to_a = host.predict(rows_b, t, noise_b, dh).float().mean(0) - mean_a
        to_b = host.predict(rows_a, t, noise_a, -dh).float().mean(0) - mean_b
        return (to_a.pow(2).sum() + to_b.pow(2).sum()) / scale

    dh, losses = _fit(loss_at, h_shape, h_rms, timesteps, s, g, device, callback)
    return dh, _record(losses, h_rms)


def train_clip_shift(host: ShiftHost, clip, src: str, trg: str, h_shape: tuple[int, ...], timesteps: list[int],
                     settings: ShiftSettings = ShiftSettings(), *, clip_w: float = 1.0, l1_w: float = 3.0,
                     callback: Callable[[StepInfo], None] | None = None) -> tuple[torch.Tensor, dict]:
    """Asyrp's CLIP loss on the host's decoded P_t for the text pair src -> trg, over all of ``host.x0``.
    Returns (dh [*h_shape], a record with the losses and the texts' cosine)."""
    from dataclasses import replace

    from .clip import autograd_ready, directional_clip_losses
    from .clip_model import text_cosine, text_direction

    s = settings
    s.check()
    if not src.strip() or not trg.strip():
        raise HSpaceError("give both a source and a target text")
    with torch.inference_mode(False):  # a CLIP loaded under inference mode (ComfyUI's nodes): a copy for autograd
        clip = replace(clip, model=autograd_ready(clip.model))
    if not timesteps:
        raise HSpaceError("no timestep to train at: the editing interval holds no grid step")
    x0, device = host.x0, host.x0.device
    g = torch.Generator().manual_seed(int(s.seed))
    text_dir = text_direction(clip, src, trg).to(device)
    cos = text_cosine(clip, src, trg)
    with torch.no_grad():
        sources = torch.cat([clip.image_features(host.decode(x0[i:i + 8]).float()) for i in range(0, len(x0), 8)])
    h_rms = _h_rms(host, len(x0), timesteps, x0.shape[1:], g, device)

    def loss_at(t, dh):
        rows = torch.randperm(len(x0), generator=g)[:s.batch]
        noise = torch.randn((len(rows), *x0.shape[1:]), generator=g).to(device)
        with torch.no_grad():
            plain = host.predict(rows, t, noise, None).float()
        edited = host.predict(rows, t, noise, dh).float()
        l_clip = -torch.log((2 - directional_clip_losses(clip.image_features(host.decode(edited).float()),
                                                          sources[rows], text_dir)) / 2)
        l_l1 = (edited - plain).abs().flatten(1).mean(1)
        return (clip_w * l_clip + l1_w * cos * l_l1).mean()

    dh, losses = _fit(loss_at, h_shape, h_rms, timesteps, s, g, device, callback)
    return dh, {**_record(losses, h_rms), "text_cosine": cos}
