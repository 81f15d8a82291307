"""Training a small open_clip model from scratch, contrastively (Radford et al. 2021, the symmetric
InfoNCE loss over a batch of image-caption pairs with a learned temperature).

The model is open_clip's own ``CLIP`` built from a model config (embed_dim, vision_cfg, text_cfg) and
its own tokenizer, so the weights it writes are an ordinary open_clip state dict: ``save_clip`` writes
the Hugging Face folder layout (``open_clip_model.safetensors`` + ``open_clip_config.json``) that
``clip_model.load_clip`` reads, the same path as real open_clip weights.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Callable

import torch
import torch.nn.functional as F

from ..errors import HSpaceError
from .clip_model import register_config

WEIGHTS_FILE = "open_clip_model.safetensors"
CONFIG_FILE = "open_clip_config.json"


def build_clip(config: dict, generator: torch.Generator) -> tuple[torch.nn.Module, Callable]:
    """(open_clip CLIP model, its tokenizer) for a model config dict, every weight drawn from
    ``generator``: matrices and embeddings N(0, 0.02^2) (CLIP's embedding init), LayerNorms 1 / 0, other
    vectors 0, the temperature log(1/0.07) (Radford et al.). The global random state is untouched."""
    import math

    import open_clip

    name = register_config(config, "hspace-train")
    with torch.random.fork_rng(devices=[]):
        model = open_clip.create_model(name, pretrained=None, device="cpu")
    with torch.no_grad():
        for module in model.modules():
            for pname, p in module.named_parameters(recurse=False):
                if isinstance(module, torch.nn.LayerNorm):
                    p.fill_(1.0 if pname == "weight" else 0.0)
                elif pname == "logit_scale":
                    p.fill_(math.log(1 / 0.07))
                elif p.ndim >= 2:
                    p.copy_(torch.randn(p.shape, generator=generator) * 0.02)
                else:
                    p.zero_()
    return model, open_clip.get_tokenizer(name)


def contrastive_loss(image_features: torch.Tensor, text_features: torch.Tensor,
                     logit_scale: torch.Tensor) -> torch.Tensor:
    """Symmetric cross-entropy over the [N, N] cosine similarities; pair i is (image i, text i)."""
    img, txt = F.normalize(image_features, dim=-1), F.normalize(text_features, dim=-1)
    logits = logit_scale.exp().clamp(max=100) * img @ txt.T
    labels = torch.arange(len(img), device=img.device)
    return (F.cross_entropy(logits, labels) + F.cross_entropy(logits.T, labels)) / 2


def save_clip(model: torch.nn.Module, config: dict, folder: Path, *, preprocess: dict | None = None,
              templates: list[str] | None = None) -> Path:
    """Write the open_clip folder: weights as float16 safetensors and the config (with preprocess_cfg,
    and the text templates of its captions when given, read back by ``load_clip``)."""
    from safetensors.torch import save_file

    folder.mkdir(parents=True, exist_ok=True)
    sd = {k: v.detach().to(torch.float16).contiguous() for k, v in model.state_dict().items()}
    save_file(sd, str(folder / WEIGHTS_FILE))
    body = {"model_cfg": config, "preprocess_cfg": preprocess or {}}
    if templates:
        body["hspace_text_templates"] = list(templates)
    (folder / CONFIG_FILE).write_text(json.dumps(body, indent=2) + "\n")
    return folder / WEIGHTS_FILE


def zero_shot(clip, images: torch.Tensor, prompts: list[str]) -> torch.Tensor:
    """Index of the best-matching prompt per image. images: [N, 3, H, W] in [-1, 1]."""
    if not prompts:
        raise HSpaceError("zero-shot classification needs at least one prompt")
    with torch.no_grad():
        return (clip.image_features(images) @ clip.text_features(prompts).T).argmax(dim=1)
