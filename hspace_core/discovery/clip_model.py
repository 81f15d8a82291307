"""The CLIP of text-driven directions: an open_clip model from local files, and its text features.

Nothing is downloaded: the weights are a local state-dict file (or a Hugging Face style folder with
``open_clip_config.json``); the architecture is an open_clip model name or a JSON model config.
Images are prepared for CLIP in torch (resize, centre crop, normalise) so gradients flow through.
"""

from __future__ import annotations

import hashlib
import json
import logging
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import torch
import torch.nn.functional as F

from ..checkpoint_files import read_safetensors, read_torch, sniff_format
from ..errors import HSpaceError

DEFAULT_ARCH = "ViT-B-16-quickgelu"  # the official ViT-B/16 with OpenAI weights uses QuickGELU
WEIGHT_HINT = ("download the open_clip weights of {arch} (for OpenAI's ViT-B/16: the file open_clip_model.safetensors "
               "of the Hugging Face repository timm/vit_base_patch16_clip_224.openai) and put it there")


def register_config(config: dict, prefix: str) -> str:
    """Register an open_clip model config (embed_dim, vision_cfg, text_cfg) under a name derived from its
    content and return the name. open_clip only reads configs from files: the file is written to a
    temporary folder, read by ``add_model_config`` and removed at once, so nothing is left in the temp
    folder however many models are loaded (a rescan skips the missing folder and keeps what it read)."""
    import open_clip

    digest = hashlib.sha256(json.dumps(config, sort_keys=True).encode()).hexdigest()[:16]
    name = f"{prefix}-{digest}"
    if name not in open_clip.list_models():
        folder = tempfile.mkdtemp(prefix="hspace_clip_")
        try:
            (Path(folder) / f"{name}.json").write_text(json.dumps(config))
            open_clip.add_model_config(folder)
        finally:
            shutil.rmtree(folder, ignore_errors=True)
    return name


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
    # Prompt templates of text directions ("{}" is the text). None: open_clip's 80 OpenAI ImageNet
    # templates, as the official code. A CLIP trained on other captions (the demo world's tiny CLIP
    # never saw "a photo of") names its own in open_clip_config.json under "hspace_text_templates".
    templates: tuple[str, ...] | None = None

    def template_functions(self) -> list[Callable[[str], str]]:
        import open_clip

        if self.templates is None:
            return list(open_clip.OPENAI_IMAGENET_TEMPLATES)
        return [t.format for t in self.templates]

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
    kind = sniff_format(path)
    if kind == "safetensors":
        return read_safetensors(path)[0]
    if kind == "unknown":
        raise HSpaceError(f"{path}: not a CLIP weights file (neither safetensors nor a torch checkpoint)")
    obj = read_torch(path, kind)
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
    templates = None
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
    if config_file is not None or arch.endswith(".json"):
        cfg = json.loads(Path(config_file or arch).read_text())
        templates = _templates(cfg.get("hspace_text_templates"), config_file or arch)
        cfg = cfg.get("model_cfg", cfg)
        name = register_config(cfg, f"hspace-{Path(config_file or arch).parent.name or 'local'}")
    if name not in open_clip.list_models():
        raise HSpaceError(f"unknown CLIP architecture {arch!r}; use an open_clip model name such as {DEFAULT_ARCH}")
    quiet = _NoPretrainedNotice()  # open_clip warns that it loaded no weights: ours come next, from the file
    logging.getLogger().addFilter(quiet)
    try:
        model = open_clip.create_model(name, pretrained=None, device="cpu")
    finally:
        logging.getLogger().removeFilter(quiet)
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
                     tuple(pre.get("std", open_clip.OPENAI_DATASET_STD)), arch, str(weights), templates)


class _NoPretrainedNotice(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return "No pretrained weights loaded" not in record.getMessage()


def _templates(value, source) -> tuple[str, ...] | None:
    if value is None:
        return None
    if not isinstance(value, list) or not value or not all(isinstance(t, str) and "{}" in t for t in value):
        raise HSpaceError(f"{source}: hspace_text_templates must be a non-empty list of strings with '{{}}'")
    return tuple(value)


def text_direction(clip: ClipModel, src: str, trg: str) -> torch.Tensor:
    """dT: normalize(mean over the CLIP's templates of normalize(E_T(t(trg))) - normalize(E_T(t(src)))), [D]."""
    templates = clip.template_functions()
    diff = clip.text_features([t(trg) for t in templates]) - clip.text_features([t(src) for t in templates])
    return F.normalize(diff.mean(0), dim=-1)


def text_cosine(clip: ClipModel, src: str, trg: str) -> float:
    """cos(E_T(src), E_T(trg)) of the raw texts (no templates): scales the L1 weight and t_edit."""
    f = clip.text_features([src, trg], normalize=False)
    return float(F.cosine_similarity(f[0:1], f[1:2]))
