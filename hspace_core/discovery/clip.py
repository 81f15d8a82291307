"""Text-driven directions: Asyrp's CLIP-guided training of f_t (a DeltaBlock) or of a global
per-timestep delta_h (asyrp.md section 5).

Recipe of the official code: for every training image x0 (a real image, DDIM-inverted, or a model
sample from a seeded x_T), walk the editing interval [t_edit, T] of the ``n_train_step`` grid from
x_T. At each step, one asymmetric step with the direction gives P_e (gradients reach the direction
through decoder pass #1 only; x_t is detached), one plain DDIM step of a separate unedited
trajectory gives P_o, and one SGD update is taken on

    L = clip_w * (-log((1 + cos(dI, dT)) / 2)) + l1_w * cos(E_T(src), E_T(trg)) * mean|P_e - P_o|

with dI = normalize(E_I(P_e) - E_I(x0)) on L2-normalised image features and dT = normalize(mean over
templates of normalize(E_T(template(trg))) - normalize(E_T(template(src)))). Defaults are the
released checkpoints' (SGD, lr 0.5, no momentum, 1 iteration, 40 steps) and the scripts' loss weights
(clip 1.0, L1 3.0). CLIP comes from ``clip_model`` (local files only). Templates: open_clip's OpenAI ImageNet templates
(80; the official code uses 79 of them), or the CLIP's own (``ClipModel.templates``). Both trajectories run through the engine's one walk: the
reference with the plain predictor, the edited one with a predictor that takes the SGD step.
"""

from __future__ import annotations

import copy
import itertools
import math
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Callable

import torch
import torch.nn.functional as F

from ..directions.base import DeltaBlockDirection, DirectionInfo, TensorDirection
from ..distributed import Context, all_reduce_sum, share
from ..directions.deltablock import FLAVOURS
from ..errors import HSpaceError
from ..images import prepare_images
from ..model import HSpaceModel
from ..sampling import (JobProgress, StepInfo, StepPrediction, ddim_sample, generate, generation_steps,
                        plain_predictor, predict_x0)
from ..schedule import asyrp_timesteps
from ..seeding import seeded_module
from .clip_model import ClipModel, text_cosine, text_direction
from .record import BATCH, invert_prepared, invert_steps, seeded_noise


def directional_clip_loss(edited_features: torch.Tensor, source_features: torch.Tensor,
                          text_dir: torch.Tensor) -> torch.Tensor:
    """1 - cos(dI, dT), mean over the batch; dI = normalize(E_I(edited) - E_I(source)) with +1e-7."""
    return directional_clip_losses(edited_features, source_features, text_dir).mean()


def directional_clip_losses(edited_features: torch.Tensor, source_features: torch.Tensor,
                            text_dir: torch.Tensor) -> torch.Tensor:
    """1 - cos(dI, dT) per image [N]."""
    d = edited_features - source_features
    d = d / (d.norm(dim=-1, keepdim=True) + 1e-7)
    return 1 - F.cosine_similarity(d, text_dir.unsqueeze(0).to(d.dtype), dim=-1)


@dataclass(frozen=True)
class ClipTrainSettings:
    kind: str = "deltablock"  # or "global": one delta_h tensor per training timestep
    n_train_step: int = 40
    t_edit: int = 500
    lr: float = 0.5
    n_iter: int = 1
    clip_w: float = 1.0
    l1_w: float = 3.0
    scheduler_step: int = 20
    scheduler_gamma: float = 0.9
    seed: int = 0
    # images per update: the official recipe updates once per image (1); a batch of B averages the per-image
    # losses of B images walked together, and is what several processes share (``ctx``)
    batch: int = 1


@dataclass(frozen=True, eq=False)
class TrainStep(StepInfo):
    """Progress of one update (a ``StepInfo`` of the training job): t is the timestep trained at,
    x0_pred the edited P_t; iteration and image index, and the loss terms."""

    iteration: int = 0
    image: int = 0
    loss: float = 0.0
    clip_loss: float = 0.0
    l1_loss: float = 0.0


class _GlobalDelta(torch.nn.Module):
    """One trainable delta_h per training timestep (Asyrp's --train_delta_h), zero-initialised."""

    def __init__(self, timesteps: list[int], shape: tuple[int, ...]):
        super().__init__()
        self.timesteps = timesteps
        self.values = torch.nn.Parameter(torch.zeros(len(timesteps), *shape))

    def forward(self, h, emb, t):
        return self.values[self.timesteps.index(t)].unsqueeze(0).expand_as(h)


def autograd_ready(module: torch.nn.Module) -> torch.nn.Module:
    """``module``, or a copy of it when its tensors were made under ``torch.inference_mode`` (ComfyUI
    runs every node in it): autograd cannot save inference tensors for the backward pass."""
    if not any(t.is_inference() for t in itertools.chain(module.parameters(), module.buffers())):
        return module
    with torch.inference_mode(False):
        return copy.deepcopy(module)


def train_clip_direction(model: HSpaceModel, clip: ClipModel, src: str, trg: str, *, images=None,
                         n_samples: int = 0, inversion_steps: int = 40, settings: ClipTrainSettings = ClipTrainSettings(),
                         name: str = "", callback: Callable[[StepInfo], None] | None = None,
                         reference_cache_mib: float = 2048, ctx: Context = Context()):
    """Train a direction from the text pair ``src`` -> ``trg``.

    images:    real images ([N, 3, H, W] in [-1, 1] or a list), DDIM-inverted with ``inversion_steps``;
    n_samples: or the model's own samples from seeds ``settings.seed`` (x0 generated by DDIM).
    Returns a ``DeltaBlockDirection`` (kind "deltablock") or ``TensorDirection`` (kind "global").
    Deterministic for a seed (the block's initialisation and the samples are seeded). Runs with
    autograd even when called inside ``torch.inference_mode``. Progress is one job: the inversion
    (or sampling) walk's steps, then one ``TrainStep`` per update.
    reference_cache_mib: with ``n_iter > 1``, the unedited reference trajectory's P_t (it does not depend
    on the direction) is kept in CPU memory up to this size and reused by later iterations instead of
    being recomputed; the result is the same either way.
    ctx: several processes (``distributed.context``, torchrun) share each batch of ``settings.batch`` images:
    every process walks its share of the batch, its loss is the sum of its images' losses over the batch's
    size, and the gradients are summed over the processes before each update, so N processes give the
    one-process direction (up to float summation order). Every process returns the same direction.
    """
    with torch.inference_mode(False):
        model = replace(model, unet=autograd_ready(model.unet))
        clip = replace(clip, model=autograd_ready(clip.model))
        if isinstance(images, torch.Tensor):
            images = images.clone()
        elif images is not None:
            images = [im.clone() if isinstance(im, torch.Tensor) else im for im in images]
        return _train_clip_direction(model, clip, src, trg, images=images, n_samples=n_samples,
                                     inversion_steps=inversion_steps, settings=settings, name=name,
                                     callback=callback, cache_bytes=int(reference_cache_mib * 2**20), ctx=ctx)


def _train_clip_direction(model: HSpaceModel, clip: ClipModel, src: str, trg: str, *, images, n_samples: int,
                          inversion_steps: int, settings: ClipTrainSettings, name: str, callback, cache_bytes: int,
                          ctx: Context):
    s = settings
    if not src.strip() or not trg.strip():
        raise HSpaceError("give both a source and a target text")
    if s.kind not in ("deltablock", "global"):
        raise HSpaceError(f"unknown direction kind {s.kind!r}; use 'deltablock' or 'global'")
    grid = asyrp_timesteps(s.n_train_step, model.schedule.num_timesteps - 1)
    train_ts = [t for t in grid.tolist() if t >= s.t_edit]
    if not train_ts:
        raise HSpaceError(f"no training step at or above t_edit = {s.t_edit}")
    if images is None and n_samples <= 0:
        raise HSpaceError("give training images or a number of model samples (n_samples > 0)")
    if s.batch < 1:
        raise HSpaceError(f"the training batch must be at least 1, got {s.batch}")
    dev, dt = model.device, torch.float32
    x0_all = prepare_images(images, model.image_size, "resize_crop")[0] if images is not None else None
    n_images = x0_all.shape[0] if x0_all is not None else n_samples
    batches = [list(range(i, min(i + s.batch, n_images))) for i in range(0, n_images, s.batch)]
    shares = [share(b, ctx.rank, ctx.world) for b in batches]
    mine = [i for part in shares for i in part]  # this process's images, in order
    pairs = generation_steps(train_ts)  # the lowest training step goes to t_prev = -1 (asyrp.md 1.2)
    prep_steps = invert_steps(len(mine), inversion_steps, BATCH) if x0_all is not None else len(grid)
    updates = s.n_iter * len(batches) * len(pairs)
    job = JobProgress(callback, prep_steps + updates)
    x_T, x0 = {}, {}
    if x0_all is not None:
        if mine:
            inverted = invert_prepared(model, x0_all[mine].to(dev, dt), inversion_steps,
                                       callback=job.part(prep_steps)).to(dev, dt)
            x_T = {i: inverted[k:k + 1] for k, i in enumerate(mine)}
            x0 = {i: x0_all[i:i + 1].to(dev, dt) for i in mine}
        source = "images"
    else:
        noise = seeded_noise(model, n_samples, s.seed).to(dev, dt)
        if mine:
            with torch.inference_mode():
                sampled = ddim_sample(model, noise[mine], grid, callback=job.part(prep_steps)).clone()
            x_T = {i: noise[i:i + 1] for i in mine}
            x0 = {i: sampled[k:k + 1] for k, i in enumerate(mine)}
        source = "samples"

    g = torch.Generator().manual_seed(s.seed)
    if s.kind == "deltablock":
        f = seeded_module(lambda: FLAVOURS[model.network](model.h_shape[0], model.emb_channels), g).to(dev, dt)
    else:
        f = _GlobalDelta(train_ts, model.h_shape).to(dev, dt)
    f.train()
    opt = torch.optim.SGD(f.parameters(), lr=s.lr, momentum=0.0, weight_decay=0.0)
    sched = torch.optim.lr_scheduler.StepLR(opt, step_size=s.scheduler_step, gamma=s.scheduler_gamma)
    text_dir = text_direction(clip, src, trg).to(dev)
    cos = text_cosine(clip, src, trg)
    step_of = {t: k for k, (t, _) in enumerate(pairs)}
    # P_t of the unedited trajectory per image, kept while it fits: it does not depend on the direction
    reference: dict[int, list[torch.Tensor]] = {}
    per_image = len(pairs) * x0_all[:1].numel() * 4 if x0_all is not None else len(pairs) * model.in_channels * \
        model.image_size ** 2 * 4
    room = cache_bytes // per_image if s.n_iter > 1 else 0
    report = job.part(updates)

    def update() -> None:
        """The gradients summed over the processes, then one SGD step."""
        for p in f.parameters():
            if p.grad is None:
                p.grad = torch.zeros_like(p)
            all_reduce_sum(p.grad, ctx)
        opt.step()

    for it in range(s.n_iter):
        for bi, (batch, rows) in enumerate(zip(batches, shares)):
            if not rows:  # more processes than images in this batch: take part in every update
                for _ in pairs:
                    opt.zero_grad(set_to_none=True)
                    update()
                continue
            with torch.no_grad():
                src_feat = torch.cat([clip.image_features(x0[i].float()) for i in rows])
                p_o = []
                for i in rows:
                    ref = reference.get(i)
                    if ref is None:
                        ref = []
                        generate(plain_predictor(model), x_T[i], pairs, model.schedule,
                                 callback=lambda info, ref=ref: ref.append(info.x0_pred))
                        if i < room:
                            reference[i] = [p.to("cpu", copy=True) for p in ref]
                    p_o.append(ref)
            losses: dict[str, float] = {}

            def train_step(x: torch.Tensor, t: int, rows=rows, src_feat=src_feat, p_o=p_o, size=len(batch)) -> StepPrediction:
                """One SGD update at t on the edited trajectories of this process's images of the batch; the
                walk then steps with their P_t."""
                tt = torch.full((x.shape[0],), t, device=dev, dtype=torch.long)
                a = model.schedule.alpha_bar_at(t, like=x)
                with torch.no_grad():
                    enc = model.encode(x.detach(), tt)
                    eps = model.decode(enc, enc.h).eps
                opt.zero_grad(set_to_none=True)
                with torch.enable_grad():
                    h = enc.h.float()  # the direction trains in float32 whatever the network's precision
                    dh = f(h, enc.emb.float()) if s.kind == "deltablock" else f(h, enc.emb, t)
                    eps_e = model.decode(enc, h + dh).eps
                    p_e = predict_x0(x.detach(), eps_e, a)
                    l_clip = -torch.log((2 - directional_clip_losses(clip.image_features(p_e.float()), src_feat,
                                                                     text_dir)) / 2)
                    ref = torch.cat([p[step_of[t]] for p in p_o]).to(dev)
                    l_l1 = (p_e - ref).abs().flatten(1).mean(1)
                    image_losses = s.clip_w * l_clip + s.l1_w * cos * l_l1
                    loss = image_losses.sum() / size  # this process's part of the batch's mean loss
                    loss.backward()
                update()
                losses.update(loss=float(image_losses.detach().mean()), clip=float(l_clip.detach().mean()),
                              l1=float(l_l1.detach().mean()))
                if not math.isfinite(losses["loss"]):
                    raise HSpaceError(f"training diverged at t = {t} (loss {losses['loss']}); lower the learning rate")
                return StepPrediction(p_e.detach(), eps, eps_e.detach(), enc.h)

            def progress(info: StepInfo, it=it, bi=bi, rows=rows) -> None:
                if report is not None:
                    t = pairs[info.i][0]
                    report(TrainStep(info.i + (it * len(batches) + bi) * len(pairs), updates, t, info.x_t,
                                     info.x0_pred, iteration=it, image=rows[0], loss=losses["loss"],
                                     clip_loss=losses["clip"], l1_loss=losses["l1"]))

            generate(train_step, torch.cat([x_T[i] for i in rows]), pairs, model.schedule, callback=progress)
        sched.step()

    f.eval().requires_grad_(False)
    prov = {"method": "clip", "source_text": src, "target_text": trg, "clip_arch": clip.arch,
            "clip_weights": Path(clip.weights).name, "text_cosine": cos, "training_data": source,
            "n_images": int(n_images), "batch": s.batch, "processes": ctx.world, "kind": s.kind, "lr": s.lr, "n_iter": s.n_iter, "clip_w": s.clip_w,
            "l1_w": s.l1_w, "n_train_step": s.n_train_step, "t_edit": s.t_edit, "seed": s.seed,
            "optimizer": "SGD", "templates": list(clip.templates) if clip.templates else "open_clip OPENAI_IMAGENET_TEMPLATES"}
    label = name or trg
    if s.kind == "deltablock":
        info = DirectionInfo(h_shape=(model.h_shape[0], 1, 1), network_fingerprint=model.fingerprint,
                             family=model.family.value, made_steps=s.n_train_step, strength_unit="asyrp", name=label,
                             provenance=prov, t_edit=s.t_edit)
        return DeltaBlockDirection(f.cpu().float(), info)
    info = DirectionInfo(h_shape=model.h_shape, network_fingerprint=model.fingerprint, family=model.family.value,
                         made_steps=s.n_train_step, strength_unit="asyrp", name=label, provenance=prov, t_edit=s.t_edit)
    return TensorDirection(f.values.detach().cpu().float().contiguous(), torch.tensor(train_ts), info)
