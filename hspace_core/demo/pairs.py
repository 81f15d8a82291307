"""Controlled pairs of procedural faces, and the supervised directions found from them.

A pair is the same face rendered twice, with one attribute at a high and at a low value; the
mean difference of h between the two sets (Haas et al.) is the attribute's direction.
"""

from __future__ import annotations

import torch

from ..directions.base import TensorDirection
from ..discovery.supervised import mean_difference
from ..model import HSpaceModel
from .faces import render, sample_faces

# attribute -> (high, low) values of the controlled pairs a direction is found from
PAIRS = {"smile": (0.8, -0.8), "eye_size": (0.9, 0.1), "face_width": (0.9, 0.1), "glasses": (True, False),
         "hat": (True, False)}


def attribute_sets(attribute: str, n: int, seed: int, high: float, low: float,
                   size: int = 32) -> tuple[torch.Tensor, torch.Tensor]:
    """Procedural faces identical but for ``attribute`` (``high`` vs ``low``): ([n, 3, size, size] x 2)."""
    faces = sample_faces(n, seed)
    return (render([f.replace(**{attribute: high}) for f in faces], size),
            render([f.replace(**{attribute: low}) for f in faces], size))


def supervised_direction(model: HSpaceModel, attribute: str, *, t_edit: int, n_pairs: int = 32, seed: int = 20_000,
                         steps: int = 40, name: str | None = None) -> TensorDirection:
    """The mean difference of h between ``n_pairs`` faces with ``attribute`` high and the same faces
    with it low (values from ``PAIRS``), per step of the ``steps`` grid, for t >= ``t_edit``."""
    high, low = PAIRS[attribute]
    pos, neg = attribute_sets(attribute, n_pairs, seed, high, low)
    return mean_difference(model, pos, neg, steps=steps, t_edit=t_edit, name=name or attribute,
                           data=f"{n_pairs} procedural faces, {attribute} {high} vs {low} "
                                f"(hspace_core.demo.faces, seed {seed})")
