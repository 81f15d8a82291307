"""Evaluating the probe on held-out faces: clean, degraded like DDPM samples, and shifted."""

from __future__ import annotations

import torch

from ...errors import HSpaceError
from ..faces import CIRCULAR, attribute_table, circular_distance, render, sample_faces
from .data import (HELD_OUT_SEED, NEGATIVE_KINDS, TRAIN_SEED_BASE, UNIFORM_CIRCULAR_MSE, degrade, make_negatives,
                   random_shift)
from .network import BINARIES, IMAGE_SIZE, LINEAR, AttributeProbe

def r2(pred: torch.Tensor, target: torch.Tensor) -> float:
    """Coefficient of determination of [N] predictions."""
    return float(1 - (pred - target).pow(2).mean() / target.var(unbiased=False))


def attribute_metrics(read: dict[str, torch.Tensor], table: dict[str, torch.Tensor]) -> dict[str, dict[str, float]]:
    """Per-attribute metrics of probe readings against true attributes (all [N]).

    Linear attributes: ``r2`` and ``mae`` (attribute units). Hues: ``mae_degrees`` (mean absolute
    circular error, 360 degrees = one turn) and ``circular_r2`` = 1 - mean squared circular error /
    (1/12), the mean squared circular distance between two independent uniform hues. Binaries:
    ``accuracy`` at probability 0.5.
    """
    out: dict[str, dict[str, float]] = {}
    for k in LINEAR:
        out[k] = {"r2": round(r2(read[k], table[k]), 4), "mae": round(float((read[k] - table[k]).abs().mean()), 4)}
    for k in CIRCULAR:
        d = circular_distance(read[k], table[k])
        out[k] = {"mae_degrees": round(float(d.mean()) * 360, 3),
                  "circular_r2": round(float(1 - d.pow(2).mean() / UNIFORM_CIRCULAR_MSE), 4)}
    for k in BINARIES:
        out[k] = {"accuracy": round(float(((read[k] > 0.5).float() == table[k]).float().mean()), 4)}
    return out


def _face_metrics(p_faces: torch.Tensor, p_neg: torch.Tensor, kinds: torch.Tensor) -> dict[str, float]:
    out = {"accuracy": round(float(torch.cat([p_faces > 0.5, p_neg <= 0.5]).float().mean()), 4),
           "faces_accepted": round(float((p_faces > 0.5).float().mean()), 4),
           "min_face_probability": round(float(p_faces.min()), 4)}
    for k, name in enumerate(NEGATIVE_KINDS):
        out[f"{name}_rejected"] = round(float((p_neg[kinds == k] <= 0.5).float().mean()), 4)
    return out


def evaluate_probe(probe: AttributeProbe, n: int = 2000, seed: int = HELD_OUT_SEED) -> dict:
    """Held-out report of ``probe`` on ``n`` fresh faces and ``n`` negatives (equal share per kind).

    ``seed`` must be below ``TRAIN_SEED_BASE`` (training never draws those seeds). Returns
    ``{"clean": metrics, "degraded": metrics, "shifted": metrics, "n": n, "seed": seed,
    "hue_metric": ...}`` where metrics are ``attribute_metrics`` plus ``"face"``: face-vs-negative
    accuracy at 0.5, the share of faces accepted, and the share of each negative kind rejected.
    ``degraded`` applies ``degrade`` (blur 0.5 px, noise 0.05, brightness +-0.05) to faces and
    negatives alike; ``shifted`` moves every image by a random integer shift of up to ``MAX_SHIFT``
    px in x and y.
    """
    if not 0 <= seed < TRAIN_SEED_BASE:
        raise HSpaceError(f"held-out seeds are in [0, {TRAIN_SEED_BASE}); got {seed}")
    faces = sample_faces(n, seed)
    images = torch.cat([render(faces[i:i + 500], IMAGE_SIZE) for i in range(0, n, 500)])
    table = attribute_table(faces)
    g = torch.Generator().manual_seed(seed)
    kinds = torch.arange(n) % len(NEGATIVE_KINDS)
    negatives = make_negatives(images[torch.randperm(n, generator=g)], kinds, g)
    report: dict = {"n": n, "seed": seed,
                    "hue_metric": "mae_degrees: mean absolute circular error in degrees; circular_r2: "
                                  "1 - mean squared circular error / (1/12)"}
    conditions = {"clean": (images, negatives),
                  "degraded": (degrade(images, g), degrade(negatives, g)),
                  "shifted": (random_shift(images, g), random_shift(negatives, g))}
    for name, (pos, neg) in conditions.items():
        read_pos, read_neg = probe.read(pos), probe.read(neg)
        metrics = attribute_metrics(read_pos, table)
        metrics["face"] = _face_metrics(read_pos["face"], read_neg["face"], kinds)
        report[name] = metrics
    return report

