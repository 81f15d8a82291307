"""Files the node tests and the workflow twins need in a models folder (HSPACE_MODELS_DIR)."""

from __future__ import annotations

import json
from pathlib import Path

import torch

TINY_CLIP_CONFIG = {"embed_dim": 32,
                    "vision_cfg": {"image_size": 32, "layers": 1, "width": 32, "patch_size": 8, "head_width": 16},
                    "text_cfg": {"context_length": 77, "vocab_size": 49408, "width": 32, "heads": 2, "layers": 1}}
TINY_CLIP_WEIGHTS = "tiny_clip.safetensors"
TINY_CLIP_ARCH = "tiny-clip.json"


def make_models_dir(root: Path) -> Path:
    """A models folder with the model kinds the pack registers, and a tiny random open_clip model
    (built offline) in clip/ standing in for ViT-B-16 weights."""
    import open_clip
    from safetensors.torch import save_file

    for sub in ("hspace", "hspace_directions", "clip"):
        (root / sub).mkdir(parents=True, exist_ok=True)
    cfg = root / "clip" / TINY_CLIP_ARCH
    cfg.write_text(json.dumps(TINY_CLIP_CONFIG))
    open_clip.add_model_config(cfg)
    torch.manual_seed(0)
    net = open_clip.create_model(Path(TINY_CLIP_ARCH).stem, pretrained=None)
    save_file({k: v.contiguous() for k, v in net.state_dict().items()}, str(root / "clip" / TINY_CLIP_WEIGHTS))
    return root
