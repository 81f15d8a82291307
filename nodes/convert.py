"""ComfyUI IMAGE <-> engine images: the one pair of converters.

IMAGE: float32 [N, H, W, 3] in [0, 1], channels last. Engine: [N, 3, H, W] in [-1, 1].
"""

from __future__ import annotations

import torch

from hspace_core import HSpaceError


def image_to_engine(image: torch.Tensor) -> torch.Tensor:
    if not isinstance(image, torch.Tensor) or image.ndim != 4 or image.shape[-1] not in (3, 4):
        shape = list(image.shape) if isinstance(image, torch.Tensor) else type(image).__name__
        raise HSpaceError(f"expected an IMAGE batch [N, H, W, 3], got {shape}")
    return image[..., :3].permute(0, 3, 1, 2).float() * 2 - 1


def engine_to_image(x: torch.Tensor, device: torch.device) -> torch.Tensor:
    """[N, 3, H, W] in [-1, 1] (unclamped) -> IMAGE [N, H, W, 3] in [0, 1] on ``device``."""
    return ((x.float().clamp(-1, 1) + 1) / 2).permute(0, 2, 3, 1).contiguous().to(device)
