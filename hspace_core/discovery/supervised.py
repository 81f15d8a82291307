"""Supervised directions (Haas et al. 2024): the mean difference of h between a positive and a
negative image set, per generative timestep; optionally the normal of a linear classifier.

Per-step values are divided by the number of grid steps in the editing interval they were made
for (t >= t_edit), so that strength 1, accumulated by the asymmetric process over that interval,
moves an image by one full mean difference (``strength_unit`` "mean_difference").
"""

from __future__ import annotations

import torch

from ..directions.base import DirectionInfo, TensorDirection
from ..distributed import Context, all_reduce_sum, share
from ..errors import HSpaceError
from ..model import HSpaceModel
from ..sampling import Callback, JobProgress
from ..schedule import asyrp_timesteps
from .record import BATCH, count_images, edit_steps, invert_images, invert_steps, record_h, record_steps


def _recorded_sets(model: HSpaceModel, sets, steps: int, size_policy: str, reduce: str,
                   callback: Callback | None, ctx: Context = Context(), batch: int = BATCH) -> list[torch.Tensor]:
    """Each image set DDIM-inverted, then h recorded along its regeneration (``record_h``), as one job,
    ``batch`` images per walk. With several processes (``ctx``, reduce "mean" only) each takes every
    world-th of a set's batches of ``batch`` consecutive images, so every image is inverted and recorded
    in the same batch as in one process (the inversion amplifies the rounding of other batch shapes to
    ~1e-4), and the means are combined from the processes' sums: the one-process mean up to the order of
    one float sum per step (~1e-7)."""
    if ctx.world > 1 and reduce != "mean":
        raise HSpaceError("this direction finder runs in one process (only mean differences are spread)")
    grid = asyrp_timesteps(steps, model.schedule.num_timesteps - 1)
    totals = [count_images(images) for images in sets]
    if ctx.world > 1:
        sets = [_share_of(images, ctx, batch) for images in sets]
    counts = [count_images(images) for images in sets]
    job = JobProgress(callback, sum(invert_steps(n, steps, batch) + record_steps(n, steps, batch) for n in counts))
    out = []
    for images, n, total in zip(sets, counts, totals):
        if n:
            x_T = invert_images(model, images, steps, size_policy=size_policy, batch=batch,
                                callback=job.part(invert_steps(n, steps, batch)))
            h = record_h(model, x_T, grid, batch=batch, reduce=reduce,
                         callback=job.part(record_steps(n, steps, batch)))
        else:  # more processes than batches: this one adds nothing to the sums
            h = torch.zeros(len(grid), *model.h_shape)
        if ctx.world > 1:
            h = all_reduce_sum(h * n, ctx) / total
        out.append(h)
    return out


def _share_of(images, ctx: Context, batch: int) -> list[torch.Tensor]:
    """This process's images of a set: every world-th batch of ``batch`` consecutive images from its
    rank, as a list of [3, H, W] (possibly empty)."""
    flat = [im for item in ([images] if isinstance(images, torch.Tensor) else images)
            for im in (item if item.ndim == 4 else item[None])]
    chunks = [flat[i:i + batch] for i in range(0, len(flat), batch)]
    return [im for chunk in share(chunks, ctx.rank, ctx.world) for im in chunk]


def direction_from_steps(model: HSpaceModel, values_desc: torch.Tensor, grid: torch.Tensor, t_edit: int, *,
                         strength_unit: str, name: str, provenance: dict) -> TensorDirection:
    """Wrap per-step h shifts recorded in generative order ([S, C, H, W], descending t) as a direction
    on ``grid`` (ascending), normalised by the number of steps in the editing interval."""
    k = edit_steps(grid, t_edit)
    values = torch.flip(values_desc, dims=[0]) / k
    info = DirectionInfo(h_shape=tuple(values.shape[1:]), network_fingerprint=model.fingerprint,
                         family=model.family.value, made_steps=len(grid), strength_unit=strength_unit, name=name,
                         provenance={**provenance, "steps": len(grid), "t_edit": t_edit, "edit_steps": k},
                         t_edit=t_edit)
    return TensorDirection(values.contiguous(), grid.clone(), info)


def mean_difference(model: HSpaceModel, positive, negative, *, steps: int = 40, t_edit: int = 500,
                    size_policy: str = "resize_crop", name: str = "supervised", data: str = "",
                    callback: Callback | None = None, ctx: Context = Context(), batch: int = BATCH) -> TensorDirection:
    """mean(h | positive) - mean(h | negative) at every generative step.

    positive / negative: image sets ([N, 3, H, W] in [-1, 1], or lists of such tensors); each image is
    DDIM-inverted and regenerated, recording h. ``data`` describes the sets for the provenance.
    ctx: several processes (torchrun) each take a share of both sets' batches of ``batch`` images; every
    process returns the direction.
    """
    if batch < 1:
        raise HSpaceError(f"batch must be at least 1, got {batch}")
    n_pos, n_neg = count_images(positive), count_images(negative)
    if n_pos == 0 or n_neg == 0:
        raise HSpaceError(f"both image sets need at least one image (positive {n_pos}, negative {n_neg})")
    grid = asyrp_timesteps(steps, model.schedule.num_timesteps - 1)
    edit_steps(grid, t_edit)
    means = _recorded_sets(model, (positive, negative), steps, size_policy, "mean", callback, ctx, batch)
    return direction_from_steps(model, means[0] - means[1], grid, t_edit, strength_unit="mean_difference",
                                name=name, provenance={"method": "supervised_mean_difference", "n_positive": n_pos,
                                                       "n_negative": n_neg, "data": data,
                                                       "size_policy": size_policy})


def _logistic_normal(x: torch.Tensor, y: torch.Tensor, l2: float) -> torch.Tensor:
    """Unit normal of an L2-regularised logistic regression on features x [N, D], labels y [N] in {0, 1}."""
    mu, sd = x.mean(0), x.std(0) + 1e-6
    z = (x - mu) / sd
    w = torch.zeros(z.shape[1], requires_grad=True)
    b = torch.zeros((), requires_grad=True)
    opt = torch.optim.LBFGS([w, b], max_iter=200, line_search_fn="strong_wolfe")

    def closure():
        opt.zero_grad()
        loss = torch.nn.functional.binary_cross_entropy_with_logits(z @ w + b, y) + l2 * w.pow(2).sum()
        loss.backward()
        return loss

    with torch.enable_grad():
        opt.step(closure)
    normal = w.detach() / sd  # back to the unstandardised feature space
    return normal / normal.norm()


def classifier_normal(model: HSpaceModel, positive, negative, *, steps: int = 40, t_edit: int = 500,
                      l2: float = 1e-2, size_policy: str = "resize_crop", name: str = "classifier",
                      data: str = "", callback: Callback | None = None) -> TensorDirection:
    """The normal of a linear (logistic) classifier separating the two sets' h, per step, oriented
    towards the positive set and scaled to the mean difference's length along it (so strength 1
    moves the mean negative to the mean positive along the boundary normal)."""
    n_pos, n_neg = count_images(positive), count_images(negative)
    if n_pos < 2 or n_neg < 2:
        raise HSpaceError(f"a classifier needs at least 2 images per set (positive {n_pos}, negative {n_neg})")
    grid = asyrp_timesteps(steps, model.schedule.num_timesteps - 1)
    edit_steps(grid, t_edit)
    pos, neg = _recorded_sets(model, (positive, negative), steps, size_policy, "none", callback)
    y = torch.cat([torch.ones(pos.shape[1]), torch.zeros(neg.shape[1])])
    values = []
    for s in range(pos.shape[0]):
        x = torch.cat([pos[s], neg[s]]).flatten(1)
        n = _logistic_normal(x, y, l2)
        diff = pos[s].flatten(1).mean(0) - neg[s].flatten(1).mean(0)
        length = torch.dot(diff, n)
        values.append((n * length).view(pos.shape[2:]))
    return direction_from_steps(model, torch.stack(values), grid, t_edit, strength_unit="mean_difference", name=name,
                                provenance={"method": "supervised_classifier_normal", "n_positive": n_pos,
                                            "n_negative": n_neg, "l2": l2, "data": data, "size_policy": size_policy})
