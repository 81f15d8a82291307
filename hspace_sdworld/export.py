"""Writing the text encoder file from the embedded tiny CLIP (the VAE and UNet exports live with their
training loops)."""

from __future__ import annotations

from pathlib import Path

import torch

from hspace_core.checkpoint_files import read_safetensors
from hspace_core.demo.clip_world import EMBEDDED

from .models import text_encoder_from_tiny_clip


def export_text_encoder(out: Path, tiny_clip: Path = EMBEDDED) -> Path:
    """The tiny CLIP's text tower in SD1 CLIP text-encoder names, float16 safetensors."""
    from safetensors.torch import save_file

    state, _ = read_safetensors(Path(tiny_clip) / "open_clip_model.safetensors")
    out.parent.mkdir(parents=True, exist_ok=True)
    save_file({k: v.to(torch.float16).contiguous() for k, v in text_encoder_from_tiny_clip(state).items()},
              str(out), metadata={"hspace.format": "hspace-sdworld-text-encoder-1",
                                  "hspace.source": "hspace_core/data/tiny_clip (text tower)"})
    return out
