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
(clip 1.0, L1 3.0). CLIP runs through open_clip with weights from a local file (nothing is
downloaded); images are prepared for CLIP in torch (resize, centre crop, normalise) so gradients flow.
Templates: open_clip's OpenAI ImageNet templates (80; the official code uses 79 of them).
"""

from __future__ import annotations

import copy
import itertools
import json
import math
import tempfile
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Callable

import torch
import torch.nn.functional as F

from ..editing import prepare_images
from ..errors import HSpaceError
from ..model import HSpaceModel
from ..sampling import asyrp_sample, ddim_step, predict_x0
from ..schedule import asyrp_timesteps
from .base import DeltaBlockDirection, DirectionInfo, TensorDirection
from .deltablock import FLAVOURS
from .record import invert_images, seeded_noise

DEFAULT_ARCH = "ViT-B-16-quickgelu"  # the official ViT-B/16 with OpenAI weights uses QuickGELU
WEIGHT_HINT = ("download the open_clip weights of {arch} (for OpenAI's ViT-B/16: the file open_clip_model.safetensors "
               "of the Hugging Face repository timm/vit_base_patch16_clip_224.openai) and put it there")


@dataclass(frozen=True, eq=False)
class ClipModel:
    """A frozen open_clip model with its tokenizer and the preprocessing it expects."""

    model: torch.nn.Module
    tokenizer: Callable
    image_size: int
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    arch: str
    weights: str

    def image_features(self, x: torch.Tensor) -> torch.Tensor:
        """x: [N, 3, H, W] in [-1, 1] (differentiable) -> L2-normalised features [N, D]."""
        x = (x + 1) / 2
        h, w = x.shape[-2:]
        s = self.image_size / min(h, w)
        x = F.interpolate(x, size=(max(self.image_size, round(h * s)), max(self.image_size, round(w * s))),
                          mode="bicubic", align_corners=False, antialias=True)
        top, left = (x.shape[-2] - self.image_size) // 2, (x.shape[-1] - self.image_size) // 2
        x = x[..., top:top + self.image_size, left:left + self.image_size]
        mean = torch.tensor(self.mean, device=x.device, dtype=x.dtype).view(1, 3, 1, 1)
        std = torch.tensor(self.std, device=x.device, dtype=x.dtype).view(1, 3, 1, 1)
        return F.normalize(self.model.encode_image((x - mean) / std), dim=-1)

    def text_features(self, texts: list[str], normalize: bool = True) -> torch.Tensor:
        tokens = self.tokenizer(texts).to(next(self.model.parameters()).device)
        with torch.no_grad():
            feats = self.model.encode_text(tokens)
        return F.normalize(feats, dim=-1) if normalize else feats


def _read_state_dict(path: Path) -> dict:
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file
        try:
            return load_file(str(path))
        except Exception as e:  # safetensors' own error type
            raise HSpaceError(f"{path}: not a readable safetensors file ({e})") from None
    from ..checkpoint_files import _read_torch, _sniff
    obj = _read_torch(path, _sniff(path))
    if isinstance(obj, dict) and "state_dict" in obj:
        obj = obj["state_dict"]
    if not isinstance(obj, dict):
        raise HSpaceError(f"{path}: not a CLIP state dict (a TorchScript archive? use the open_clip weights file)")
    return {k[7:] if k.startswith("module.") else k: v for k, v in obj.items()}


def load_clip(weights: str | Path, arch: str = DEFAULT_ARCH, *, device: str | torch.device = "cpu") -> ClipModel:
    """An open_clip model from local files only.

    weights: a state-dict file (.safetensors, .bin, .pt, .pth), or a folder holding one with an
             ``open_clip_config.json`` (the Hugging Face layout; its config then overrides ``arch``).
    arch:    an open_clip model name, or a path to a JSON model config (embed_dim, vision_cfg, text_cfg).
    """
    import open_clip

    weights = Path(weights)
    if not weights.exists():
        raise HSpaceError(f"CLIP weights not found at {weights}: {WEIGHT_HINT.format(arch=arch)}")
    config_file = None
    if weights.is_dir():
        cands = [weights / n for n in ("open_clip_model.safetensors", "open_clip_pytorch_model.bin",
                                       "model.safetensors", "pytorch_model.bin")]
        found = [c for c in cands if c.exists()]
        if not found:
            raise HSpaceError(f"{weights}: no CLIP weights file in this folder; {WEIGHT_HINT.format(arch=arch)}")
        if (weights / "open_clip_config.json").exists():
            config_file = weights / "open_clip_config.json"
        weights = found[0]
    name = arch
    tmpdir = None
    if config_file is not None or arch.endswith(".json"):
        cfg = json.loads(Path(config_file or arch).read_text())
        cfg = cfg.get("model_cfg", cfg)
        tmpdir = tempfile.mkdtemp(prefix="hspace_clip_")
        name = f"hspace-{Path(config_file or arch).parent.name or 'local'}-{abs(hash(json.dumps(cfg, sort_keys=True)))}"
        (Path(tmpdir) / f"{name}.json").write_text(json.dumps(cfg))
        open_clip.add_model_config(tmpdir)
    if name not in open_clip.list_models():
        raise HSpaceError(f"unknown CLIP architecture {arch!r}; use an open_clip model name such as {DEFAULT_ARCH}")
    model = open_clip.create_model(name, pretrained=None, device="cpu")
    sd = _read_state_dict(weights)
    missing, unexpected = [k for k in model.state_dict() if k not in sd], [k for k in sd if k not in model.state_dict()]
    if missing or unexpected:
        raise HSpaceError(f"{weights}: weights do not match CLIP architecture {arch!r} ({len(missing)} missing, "
                          f"{len(unexpected)} unexpected keys, e.g. {(missing or unexpected)[0]}); pass the right arch")
    model.load_state_dict(sd, strict=True)
    model = model.to(device).eval().requires_grad_(False)
    pre = getattr(model.visual, "preprocess_cfg", {}) or {}
    size = model.visual.image_size
    size = size[0] if isinstance(size, (tuple, list)) else int(size)
    return ClipModel(model, open_clip.get_tokenizer(name), size,
                     tuple(pre.get("mean", open_clip.OPENAI_DATASET_MEAN)),
                     tuple(pre.get("std", open_clip.OPENAI_DATASET_STD)), arch, str(weights))


def text_direction(clip: ClipModel, src: str, trg: str) -> torch.Tensor:
    """dT: normalize(mean over templates of normalize(E_T(t(trg))) - normalize(E_T(t(src)))), [D]."""
    import open_clip

    templates = open_clip.OPENAI_IMAGENET_TEMPLATES
    diff = clip.text_features([t(trg) for t in templates]) - clip.text_features([t(src) for t in templates])
    return F.normalize(diff.mean(0), dim=-1)


def text_cosine(clip: ClipModel, src: str, trg: str) -> float:
    """cos(E_T(src), E_T(trg)) of the raw texts (no templates): scales the L1 weight and t_edit."""
    f = clip.text_features([src, trg], normalize=False)
    return float(F.cosine_similarity(f[0:1], f[1:2]))


def directional_clip_loss(edited_features: torch.Tensor, source_features: torch.Tensor,
                          text_dir: torch.Tensor) -> torch.Tensor:
    """1 - cos(dI, dT), mean over the batch; dI = normalize(E_I(edited) - E_I(source)) with +1e-7."""
    d = edited_features - source_features
    d = d / (d.norm(dim=-1, keepdim=True) + 1e-7)
    return (1 - F.cosine_similarity(d, text_dir.unsqueeze(0).to(d.dtype), dim=-1)).mean()


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


@dataclass(frozen=True)
class TrainStep:
    """Progress of one update: iteration, image index, timestep, and the loss terms."""

    iteration: int
    image: int
    t: int
    i: int
    total: int
    loss: float
    clip_loss: float
    l1_loss: float


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
                         name: str = "", callback: Callable[[TrainStep], None] | None = None,
                         reference_cache_mib: float = 2048):
    """Train a direction from the text pair ``src`` -> ``trg``.

    images:    real images ([N, 3, H, W] in [-1, 1] or a list), DDIM-inverted with ``inversion_steps``;
    n_samples: or the model's own samples from seeds ``settings.seed`` (x0 generated by DDIM).
    Returns a ``DeltaBlockDirection`` (kind "deltablock") or ``TensorDirection`` (kind "global").
    Deterministic for a seed (the block's initialisation and the samples are seeded). Runs with
    autograd even when called inside ``torch.inference_mode``.
    reference_cache_mib: with ``n_iter > 1``, the unedited reference trajectory's P_t (it does not depend
    on the direction) is kept in CPU memory up to this size and reused by later iterations instead of
    being recomputed; the result is the same either way.
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
                                     callback=callback, cache_bytes=int(reference_cache_mib * 2**20))


def _train_clip_direction(model: HSpaceModel, clip: ClipModel, src: str, trg: str, *, images, n_samples: int,
                          inversion_steps: int, settings: ClipTrainSettings, name: str, callback, cache_bytes: int):
    s = settings
    if not src.strip() or not trg.strip():
        raise HSpaceError("give both a source and a target text")
    if s.kind not in ("deltablock", "global"):
        raise HSpaceError(f"unknown direction kind {s.kind!r}; use 'deltablock' or 'global'")
    grid = asyrp_timesteps(s.n_train_step, model.schedule.num_timesteps - 1)
    train_ts = [t for t in grid.tolist() if t >= s.t_edit]
    if not train_ts:
        raise HSpaceError(f"no training step at or above t_edit = {s.t_edit}")
    dev, dt = model.device, torch.float32
    if images is not None:
        x0_all = prepare_images(model, images, "resize_crop")[0].to(dev, dt)
        x_T = invert_images(model, x0_all, inversion_steps).to(dev, dt)
        source = "images"
    elif n_samples > 0:
        x_T = seeded_noise(model, n_samples, s.seed).to(dev, dt)
        with torch.inference_mode():
            x0_all = asyrp_sample(model, x_T, grid).clone()
        source = "samples"
    else:
        raise HSpaceError("give training images or a number of model samples (n_samples > 0)")

    torch.manual_seed(s.seed)
    if s.kind == "deltablock":
        f = FLAVOURS[model.network](model.h_shape[0], model.emb_channels).to(dev, dt)
    else:
        f = _GlobalDelta(train_ts, model.h_shape).to(dev, dt)
    f.train()
    opt = torch.optim.SGD(f.parameters(), lr=s.lr, momentum=0.0, weight_decay=0.0)
    sched = torch.optim.lr_scheduler.StepLR(opt, step_size=s.scheduler_step, gamma=s.scheduler_gamma)
    text_dir = text_direction(clip, src, trg).to(dev)
    cos = text_cosine(clip, src, trg)
    steps_down = list(zip(reversed(train_ts), reversed([-1] + train_ts[:-1])))
    total = s.n_iter * x_T.shape[0] * len(steps_down)
    count = 0
    # P_t of the unedited trajectory per image, kept while it fits: it does not depend on the direction
    reference: dict[int, list[torch.Tensor]] = {}
    per_image = len(steps_down) * x_T[:1].numel() * 4
    room = cache_bytes // per_image if s.n_iter > 1 else 0
    for it in range(s.n_iter):
        for b in range(x_T.shape[0]):
            with torch.no_grad():
                src_feat = clip.image_features(x0_all[b:b + 1].float())
            x_e = x_o = x_T[b:b + 1]
            cached = reference.get(b)
            record = [] if cached is None and b < room else None
            for k, (t, t_prev) in enumerate(steps_down):
                tt = torch.full((1,), t, device=dev, dtype=torch.long)
                a, a_prev = model.schedule.alpha_bar_at(t, like=x_e), model.schedule.alpha_bar_at(t_prev, like=x_e)
                with torch.no_grad():
                    enc = model.encode(x_e.detach(), tt)
                    eps = model.decode(enc, enc.h).eps
                    if cached is not None:
                        p_o = cached[k].to(dev)
                    else:
                        enc_o = model.encode(x_o, tt)
                        eps_o = model.decode(enc_o, enc_o.h).eps
                        p_o = predict_x0(x_o, eps_o, a)
                        x_o = ddim_step(p_o, eps_o, a, a_prev)
                        if record is not None:
                            record.append(p_o.to("cpu", copy=True))
                opt.zero_grad(set_to_none=True)
                with torch.enable_grad():
                    h = enc.h.float()  # the direction trains in float32 whatever the network's precision
                    dh = f(h, enc.emb.float()) if s.kind == "deltablock" else f(h, enc.emb, t)
                    eps_e = model.decode(enc, h + dh).eps
                    p_e = predict_x0(x_e.detach(), eps_e, a)
                    l_clip = -torch.log((2 - directional_clip_loss(clip.image_features(p_e.float()), src_feat,
                                                                   text_dir)) / 2)
                    l_l1 = (p_e - p_o).abs().mean()
                    loss = s.clip_w * l_clip + s.l1_w * cos * l_l1
                    loss.backward()
                opt.step()
                x_e = ddim_step(p_e.detach(), eps, a, a_prev)
                loss_value = float(loss.detach())
                if not math.isfinite(loss_value):
                    raise HSpaceError(f"training diverged at t = {t} (loss {loss_value}); lower the learning rate")
                if callback is not None:
                    callback(TrainStep(it, b, t, count, total, loss_value, float(l_clip.detach()),
                                       float(l_l1.detach())))
                count += 1
            if record is not None:
                reference[b] = record
        sched.step()

    f.eval().requires_grad_(False)
    prov = {"method": "clip", "source_text": src, "target_text": trg, "clip_arch": clip.arch,
            "clip_weights": Path(clip.weights).name, "text_cosine": cos, "training_data": source,
            "n_images": int(x_T.shape[0]), "kind": s.kind, "lr": s.lr, "n_iter": s.n_iter, "clip_w": s.clip_w,
            "l1_w": s.l1_w, "n_train_step": s.n_train_step, "t_edit": s.t_edit, "seed": s.seed,
            "optimizer": "SGD", "templates": "open_clip OPENAI_IMAGENET_TEMPLATES"}
    label = name or trg
    if s.kind == "deltablock":
        info = DirectionInfo(h_shape=(model.h_shape[0], 1, 1), network_fingerprint=model.fingerprint,
                             family=model.family.value, made_steps=s.n_train_step, strength_unit="asyrp", name=label,
                             provenance=prov, t_edit=s.t_edit)
        return DeltaBlockDirection(f.cpu().float(), info)
    info = DirectionInfo(h_shape=model.h_shape, network_fingerprint=model.fingerprint, family=model.family.value,
                         made_steps=s.n_train_step, strength_unit="asyrp", name=label, provenance=prov, t_edit=s.t_edit)
    return TensorDirection(f.values.detach().cpu().float().contiguous(), torch.tensor(train_ts), info)
