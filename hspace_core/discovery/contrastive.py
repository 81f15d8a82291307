"""Directions nobody has to name: K shifts of h learned together from unlabelled images with a contrastive
objective (NoiseCLR, Dalva and Yanardag, CVPR 2024, moved from text-token embeddings to h).

The effect of direction k on image n at timestep t is what Asyrp's asymmetric step edits, the change of
the predicted x0:

    e_k^n = P_t(x_t^n; h + dh_k) - P_t(x_t^n; h),   x_t^n = sqrt(alpha_bar_t) x0^n + sqrt(1 - alpha_bar_t) eps

(a fresh forward-noised x_t, as NoiseCLR noises its images; one t per update, drawn from the editing
interval's grid steps). With s(a, b) = exp(cos(a, b) / tau), direction k's loss is NoiseCLR's
(``core/loss.py`` and ``core/trainer.py`` of the official code)

    L_k = -log( mean_{a < b} s(e_k^a, e_k^b) / mean_{l != k, a} s(e_k^a, e_l^a) )

the same direction on two images agrees (positives), two directions on one image differ (negatives);
the update takes the mean over all K directions at once (NoiseCLR draws one direction per update and a
subset of the others: the encoder pass is shared here, so all K cost one encoder pass and K decoder
passes). Cosines do not see a direction's size, so every dh_k is kept at one RMS, ``radius`` times the
RMS of h over the training images: dh_k = radius * rms(h) * u_k / rms(u_k), u_k the trained tensor.

A direction is one shift of h's shape, added at every edited step (as Haas et al. apply h-space
directions); strength 1 is the trained size (strength unit "contrastive_radius"). The host is anything
with ``HostEffects``'s two methods: the pixel models here (``PixelEffects``), ComfyUI's SD MODELs in the
nodes (``nodes/sd/discovery``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable, Protocol

import torch

from ..errors import HSpaceError
from ..sampling import StepInfo, predict_x0


@dataclass(frozen=True)
class ContrastiveSettings:
    """k directions; ``iterations`` updates of Adam (``lr``) on ``batch`` images each, at timesteps drawn
    from ``timesteps`` (the editing interval's grid steps); ``temperature`` tau; ``radius`` the size of
    every dh_k in units of h's RMS; ``seed`` fixes the start, the images drawn and the noise; ``pool``: the
    effects are compared after averaging the x0 change over pool x pool blocks of its grid (1: as they are;
    ``pooled``); ``orthogonal``: the K shifts are kept mutually orthogonal in h (``shifts``), as PCA's are."""

    k: int = 8
    iterations: int = 300
    batch: int = 8
    lr: float = 0.05
    temperature: float = 0.5
    radius: float = 0.5
    seed: int = 0
    pool: int = 1
    orthogonal: bool = False

    def check(self, n_images: int) -> None:
        if self.k < 2:
            raise HSpaceError(f"contrastive discovery needs at least 2 directions (the negatives), got k = {self.k}")
        if self.batch < 2:
            raise HSpaceError(f"contrastive discovery needs at least 2 images per update (the positives), got "
                              f"batch {self.batch}")
        if n_images < 2:
            raise HSpaceError(f"contrastive discovery needs at least 2 images, got {n_images}")
        if self.iterations < 1:
            raise HSpaceError(f"give at least one iteration, got {self.iterations}")
        if self.pool < 1:
            raise HSpaceError(f"pool must be at least 1 (1: effects compared as they are), got {self.pool}")
        for name in ("lr", "temperature", "radius"):
            v = getattr(self, name)
            if not (math.isfinite(v) and v > 0):
                raise HSpaceError(f"{name} must be a positive number, got {v}")


class HostEffects(Protocol):
    """What training needs from a model. rows: image indices [N]; t: a timestep; noise: [N, ...] like the
    images (the forward noise of x_t)."""

    def h(self, rows: torch.Tensor, t: int, noise: torch.Tensor) -> torch.Tensor:
        """h at x_t of those images, [N, *h_shape] (no gradient)."""

    def effects(self, rows: torch.Tensor, t: int, noise: torch.Tensor, dh: torch.Tensor) -> torch.Tensor:
        """e_k^n for dh [K, *h_shape]: [K, N, D], differentiable in dh."""


@dataclass(frozen=True, eq=False)
class ContrastiveStep(StepInfo):
    """Progress of one update: t the timestep it trained at, the loss, and the mean positive and negative
    cosines."""

    loss: float = 0.0
    positive: float = 0.0
    negative: float = 0.0


def contrastive_loss(effects: torch.Tensor, temperature: float) -> tuple[torch.Tensor, float, float]:
    """NoiseCLR's loss for effects [K, N, D] (K directions on N images): (mean over k of L_k, the mean
    positive cosine, the mean negative cosine)."""
    k, n = effects.shape[:2]
    e = torch.nn.functional.normalize(effects.flatten(2).float(), dim=-1, eps=1e-20)
    same_direction = e @ e.transpose(1, 2)                     # [K, N, N]: cos(e_k^a, e_k^b)
    pairs = torch.triu(torch.ones(n, n, dtype=torch.bool, device=e.device), diagonal=1)
    pos = same_direction[:, pairs]                             # [K, N (N - 1) / 2]
    same_image = e.transpose(0, 1) @ e.transpose(0, 1).transpose(1, 2)  # [N, K, K]: cos(e_k^a, e_l^a)
    others = ~torch.eye(k, dtype=torch.bool, device=e.device)
    neg = same_image.permute(1, 2, 0)[others].view(k, (k - 1) * n)  # [K, (K - 1) N]
    loss = -(torch.exp(pos / temperature).mean(1).log() - torch.exp(neg / temperature).mean(1).log()).mean()
    return loss, float(pos.detach().mean()), float(neg.detach().mean())


def pooled(effects: torch.Tensor, image_shape: tuple[int, ...], pool: int) -> torch.Tensor:
    """Effects [K, N, D] of images [C, H, W] (D = C H W) averaged over pool x pool blocks: [K, N, C H' W'] with
    H' = ceil(H / pool) (a partial block at the edge averages what it holds). pool 1 returns them unchanged."""
    if pool == 1:
        return effects
    k, n = effects.shape[:2]
    e = effects.reshape(k * n, *image_shape)
    e = torch.nn.functional.avg_pool2d(e, pool, ceil_mode=True, count_include_pad=False)
    return e.reshape(k, n, -1)


def sized(u: torch.Tensor, size: float) -> torch.Tensor:
    """Each row of u [K, ...] scaled to RMS ``size``."""
    r = u.flatten(1).pow(2).mean(1).sqrt().clamp_min(1e-12)
    return u * (size / r).view(-1, *([1] * (u.dim() - 1)))


def shifts(u: torch.Tensor, size: float, orthogonal: bool) -> torch.Tensor:
    """The K shifts [K, *h_shape] that the trained tensor u [K, *h_shape] stands for: each of RMS ``size``;
    with ``orthogonal``, first made orthonormal by a QR decomposition of its rows (differentiable; K must not
    exceed h's size)."""
    if orthogonal:
        q = torch.linalg.qr(u.flatten(1).T.float()).Q.T
        u = q.reshape(u.shape).to(u.dtype)
    return sized(u, size)


def train_contrastive(host: HostEffects, n_images: int, noise_shape: tuple[int, ...], h_shape: tuple[int, ...],
                      timesteps: list[int], settings: ContrastiveSettings = ContrastiveSettings(), *,
                      device: torch.device | str = "cpu",
                      callback: Callable[[StepInfo], None] | None = None) -> tuple[torch.Tensor, dict]:
    """Train K directions on ``n_images`` images of ``host``. noise_shape: one image's shape (the forward
    noise); timesteps: the ones updates draw from. Returns (dh [K, *h_shape] float32 on the CPU, each of RMS
    radius * rms(h); a record: rms(h), the losses and cosines of the first and last tenth of the updates).
    Deterministic for a seed. ``callback`` gets a ``ContrastiveStep`` per update."""
    s = settings
    s.check(n_images)
    if not timesteps:
        raise HSpaceError("no timestep to train at: the editing interval holds no grid step")
    if s.orthogonal and s.k > math.prod(h_shape):
        raise HSpaceError(f"{s.k} orthogonal directions do not fit in h of {math.prod(h_shape)} numbers")
    g = torch.Generator().manual_seed(int(s.seed))
    batch = min(s.batch, n_images)

    def draw() -> tuple[torch.Tensor, int, torch.Tensor]:
        rows = torch.randperm(n_images, generator=g)[:batch]
        t = int(timesteps[int(torch.randint(len(timesteps), (1,), generator=g))])
        return rows, t, torch.randn((batch, *noise_shape), generator=g).to(device)

    with torch.no_grad():  # h's RMS over the images at the interval's timesteps sets the directions' size
        probe = torch.Generator().manual_seed(int(s.seed) + 1)
        sq = []
        for t in timesteps[:: max(1, len(timesteps) // 4)]:
            rows = torch.arange(min(n_images, 16))
            noise = torch.randn((len(rows), *noise_shape), generator=probe).to(device)
            sq.append(host.h(rows, t, noise).float().pow(2).mean())
        h_rms = float(torch.stack(sq).mean().sqrt())
    if not h_rms > 0:
        raise HSpaceError("h is zero on these images: nothing to discover")
    size = s.radius * h_rms
    u = torch.nn.Parameter(torch.randn((s.k, *h_shape), generator=g).to(device))
    opt = torch.optim.Adam([u], lr=s.lr)
    history = []
    for i in range(s.iterations):
        rows, t, noise = draw()
        opt.zero_grad(set_to_none=True)
        with torch.enable_grad():
            effects = pooled(host.effects(rows, t, noise, shifts(u, size, s.orthogonal)), noise_shape, s.pool)
            loss, pos, neg = contrastive_loss(effects, s.temperature)
            loss.backward()
        if not math.isfinite(float(loss.detach())):
            raise HSpaceError(f"contrastive training diverged at update {i} (loss {float(loss.detach())}); lower the "
                              "learning rate")
        opt.step()
        history.append((float(loss.detach()), pos, neg))
        if callback is not None:
            callback(ContrastiveStep(i, s.iterations, t, None, None, None, loss=history[-1][0], positive=pos,
                                     negative=neg))
    tenth = max(1, len(history) // 10)

    def mean(part, j):
        return sum(r[j] for r in part) / len(part)

    record = {"h_rms": h_rms, "dh_rms": size,
              "first": {"loss": mean(history[:tenth], 0), "positive_cos": mean(history[:tenth], 1),
                        "negative_cos": mean(history[:tenth], 2)},
              "last": {"loss": mean(history[-tenth:], 0), "positive_cos": mean(history[-tenth:], 1),
                       "negative_cos": mean(history[-tenth:], 2)}}
    return shifts(u.detach(), size, s.orthogonal).float().cpu(), record


@dataclass(frozen=True, eq=False)
class PixelEffects:
    """``HostEffects`` of a pixel ``HSpaceModel`` on images x0 [M, 3, S, S] in [-1, 1] (on the model's device)."""

    model: object
    x0: torch.Tensor

    def _x_t(self, rows, t, noise):
        a = self.model.schedule.alpha_bar_at(t, like=self.x0)
        return a.sqrt() * self.x0[rows] + (1 - a).sqrt() * noise, a

    def h(self, rows, t, noise):
        x_t, _ = self._x_t(rows, t, noise)
        return self.model.encode(x_t, torch.full((len(rows),), t, device=x_t.device, dtype=torch.long)).h

    def effects(self, rows, t, noise, dh):
        from ..unets.common import Encoded

        x_t, a = self._x_t(rows, t, noise)
        n, k = len(rows), dh.shape[0]
        with torch.no_grad():
            enc = self.model.encode(x_t, torch.full((n,), t, device=x_t.device, dtype=torch.long))
            plain = predict_x0(x_t, self.model.decode(enc, enc.h).eps, a).float()
        every = Encoded(enc.h.repeat(k, 1, 1, 1), tuple(s.repeat(k, 1, 1, 1) for s in enc.skips),
                        enc.emb.repeat(k, 1))
        h = every.h.float() + dh.to(every.h.device).repeat_interleave(n, 0)
        edited = predict_x0(x_t.repeat(k, 1, 1, 1), self.model.decode(every, h.to(every.h.dtype)).eps, a).float()
        return edited.reshape(k, n, -1) - plain.reshape(1, n, -1)


def contrastive_directions(model, images=None, *, n_samples: int = 0, steps: int = 40, t_edit: int = 500,
                           settings: ContrastiveSettings = ContrastiveSettings(), size_policy: str = "resize_crop",
                           name: str = "contrastive", callback: Callable[[StepInfo], None] | None = None) -> list:
    """K directions of a pixel ``HSpaceModel`` discovered from unlabelled images ([N, 3, H, W] in [-1, 1] or a
    list; fitted to the model's size by ``size_policy``) or from ``n_samples`` of the model's own samples
    (seeds from ``settings.seed``), trained at the ``steps``-step grid's timesteps t >= t_edit. Returns
    ``settings.k`` ``TensorDirection``s ordered by the size of their effect on the images (largest first),
    named ``{name} 0`` ... Progress is one job: the samples' walk (if any), then one step per update."""
    from dataclasses import replace

    from ..directions.base import DirectionInfo, TensorDirection
    from ..images import prepare_images
    from ..sampling import JobProgress, ddim_sample
    from ..schedule import asyrp_timesteps
    from .clip import autograd_ready
    from .record import edit_steps, seeded_noise

    grid = asyrp_timesteps(steps, model.schedule.num_timesteps - 1)
    edit_steps(grid, t_edit)
    timesteps = [int(t) for t in grid.tolist() if t >= t_edit]
    if images is None and n_samples < 2:
        raise HSpaceError("give unlabelled images or a number of model samples (at least 2)")
    n = len(images) if images is not None and not isinstance(images, torch.Tensor) else (
        images.shape[0] if images is not None else n_samples)
    settings.check(n)
    job = JobProgress(callback, (0 if images is not None else len(grid)) + settings.iterations)
    with torch.inference_mode(False):
        model = replace(model, unet=autograd_ready(model.unet))
        if images is not None:
            x0 = prepare_images(images, model.image_size, size_policy)[0].to(model.device, torch.float32)
            source = "images"
        else:
            with torch.no_grad():
                x0 = ddim_sample(model, seeded_noise(model, n_samples, settings.seed).to(model.device), grid,
                                 callback=job.part(len(grid))).float().clamp(-1, 1)
            source = "samples"
        host = PixelEffects(model, x0.clone())
        dh, record = train_contrastive(host, n, tuple(x0.shape[1:]), model.h_shape, timesteps, settings,
                                       device=model.device, callback=job.part(settings.iterations))
        with torch.no_grad():  # order: the mean RMS of each direction's effect on the first images at the middle t
            g = torch.Generator().manual_seed(settings.seed + 2)
            rows = torch.arange(min(n, 8))
            noise = torch.randn((len(rows), *x0.shape[1:]), generator=g).to(model.device)
            size = host.effects(rows, timesteps[len(timesteps) // 2], noise, dh.to(model.device)).pow(2).mean((1, 2))
    order = torch.argsort(size.cpu(), descending=True).tolist()
    out = []
    for rank, j in enumerate(order):
        info = DirectionInfo(
            h_shape=model.h_shape, network_fingerprint=model.fingerprint, family=model.family.value,
            made_steps=len(grid), strength_unit="contrastive_radius", name=f"{name} {rank}", t_edit=t_edit,
            provenance={"method": "contrastive (NoiseCLR's objective in h)", "k": settings.k, "rank": rank,
                        "training_data": source, "n_images": int(n), "iterations": settings.iterations,
                        "batch": settings.batch, "lr": settings.lr, "temperature": settings.temperature,
                        "radius": settings.radius, "pool": settings.pool,
                        "orthogonal": settings.orthogonal, "seed": settings.seed, "steps": len(grid),
                        "t_edit": t_edit,
                        "effect_rms": float(size[j].sqrt()), "applied": "one shift at every edited step",
                        **{k: v for k, v in record.items() if k in ("h_rms", "dh_rms")},
                        "loss_first": record["first"], "loss_last": record["last"]})
        out.append(TensorDirection(dh[j].contiguous(), None, info))
    return out


PREVIEW_STRENGTH = 2.0  # calibrated units (raw 1 for an uncalibrated direction)


def preview_rows(model, directions: list, source, *, t_edit: int, steps: int) -> list[list[torch.Tensor]]:
    """One row per direction: each image of ``source`` (an ``Inversion`` or x_T [N, 3, S, S]) edited at
    -PREVIEW_STRENGTH, 0 and +PREVIEW_STRENGTH calibrated units (raw -1, 0, 1 without a calibration), as
    [3, S, S] tensors in [-1, 1] for ``images.strip``."""
    from ..directions.calibration import calibration_of
    from ..editing import edit

    rows = []
    for d in directions:
        cal = calibration_of(d)
        s = PREVIEW_STRENGTH * cal.scale if cal is not None else 1.0
        out = edit(model, source, d, [-s, 0.0, s], t_edit=t_edit, steps=steps).images
        rows.append([im for n in range(out.shape[0]) for im in out[n]])
    return rows
