"""The miniature SD world's data: the demo world's procedural faces at 64 px with captions from their
attributes (the tiny CLIP's captions, ``hspace_core.demo.clip_world.caption``). Rendering, attributes
and captions are the engine's; this module only fixes the sizes and seeds the SD world trains on."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from hspace_core.demo.clip_world import caption
from hspace_core.demo.faces import Face
from hspace_core.demo.train import dataset, dataset_faces

from .configs import IMAGE_SIZE

# the training faces; held-out faces for the benches and tests are drawn from other seeds
TRAIN_SEED = 2024
HELD_OUT_SEED = 777_001


def training_images(size: int, cache_dir: Path, seed: int = TRAIN_SEED) -> torch.Tensor:
    """uint8 [size, 3, 64, 64] faces, rendered once and cached in ``cache_dir``."""
    return dataset(size, seed, cache_dir, image_size=IMAGE_SIZE)


def training_faces(size: int, seed: int = TRAIN_SEED) -> list[Face]:
    """The attributes of ``training_images(size, ...)``'s faces, in the same order."""
    return dataset_faces(size, seed)


def captions(faces: list[Face], rng: np.random.Generator, drop: float = 0.0) -> list[str]:
    """One caption per face (random wording from ``rng``); with probability ``drop`` the empty prompt,
    the unconditional branch that classifier-free guidance needs."""
    return ["" if drop and rng.random() < drop else caption(f, rng) for f in faces]


def to_unit(images: torch.Tensor) -> torch.Tensor:
    """uint8 [N, 3, H, W] -> float32 in [-1, 1]."""
    return images.float() / 127.5 - 1.0
