"""Training the probe: an endless pool of rendered faces, negatives, augmentation, the loss."""

from __future__ import annotations

import json
import math
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
import torch.nn.functional as F

from ...errors import HSpaceError
from ...images import to_uint8
from ...seeding import seeded_module
from ..faces import CIRCULAR, attribute_table, hue_to_vector, render, sample_faces
from .data import NEGATIVE_FRACTION, NEGATIVE_KINDS, SEED_STRIDE, TRAIN_SEED_BASE, augment, make_negatives
from .evaluation import evaluate_probe
from .network import BINARIES, FORMAT, IMAGE_SIZE, LINEAR, AttributeProbe, uniform_stats

@dataclass(frozen=True)
class ProbeSettings:
    """Everything that determines a training run (saved in the weights' metadata)."""

    steps: int = 2000
    batch: int = 128
    seed: int = 0
    lr: float = 2e-3
    weight_decay: float = 1e-4
    warmup: int = 100
    chunk: int = 500           # faces rendered per chunk
    initial_chunks: int = 16   # pool size at step 0
    refresh_every: int = 25    # steps between two new chunks
    max_chunks: int = 80       # pool capacity in chunks (oldest replaced first)


@dataclass(frozen=True)
class Batch:
    """One training batch: ``images`` [B, 3, 32, 32] in [-1, 1], faces first, then negatives.

    ``targets`` holds [F] tensors for the F faces (attribute units; binaries 0/1), ``is_face`` [B].
    """

    images: torch.Tensor
    targets: dict[str, torch.Tensor]
    is_face: torch.Tensor


class _FacePool:
    """Rendered training faces as uint8 [M, 3, 32, 32] plus their attribute tables."""

    def __init__(self, settings: ProbeSettings) -> None:
        self.settings = settings
        self.chunks: list[tuple[torch.Tensor, dict[str, torch.Tensor]]] = []
        self.next_chunk = 0
        self.images = torch.zeros(0, 3, IMAGE_SIZE, IMAGE_SIZE, dtype=torch.uint8)
        self.table: dict[str, torch.Tensor] = {}

    def add_chunk(self) -> float:
        """Render the next chunk (replacing the oldest when full); returns seconds spent."""
        tic = time.perf_counter()
        s = self.settings
        faces = sample_faces(s.chunk, TRAIN_SEED_BASE + s.seed * SEED_STRIDE + self.next_chunk)
        self.next_chunk += 1
        images = to_uint8(render(faces, IMAGE_SIZE))
        self.chunks.append((images, attribute_table(faces)))
        if len(self.chunks) > s.max_chunks:
            self.chunks.pop(0)
        self.images = torch.cat([c[0] for c in self.chunks])
        self.table = {k: torch.cat([c[1][k] for c in self.chunks]) for k in self.chunks[0][1]}
        return time.perf_counter() - tic

    def sample(self, n: int, g: torch.Generator) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """``n`` random faces: images [n, 3, 32, 32] float in [-1, 1] and their attributes."""
        idx = torch.randint(len(self.images), (n,), generator=g)
        return self.images[idx].float() / 127.5 - 1.0, {k: v[idx] for k, v in self.table.items()}


def _make_batch(pool: _FacePool, batch: int, g: torch.Generator) -> Batch:
    n_neg = max(1, round(batch * NEGATIVE_FRACTION))
    n_face = batch - n_neg
    faces, targets = pool.sample(n_face, g)
    sources, _ = pool.sample(n_neg, g)
    offset = int(torch.randint(len(NEGATIVE_KINDS), (1,), generator=g))
    kinds = (torch.arange(n_neg) + offset) % len(NEGATIVE_KINDS)
    images = torch.cat([faces, make_negatives(sources, kinds, g)])
    is_face = torch.cat([torch.ones(n_face), torch.zeros(n_neg)])
    return Batch(augment(images, g), targets, is_face)


def probe_loss(raw: dict[str, torch.Tensor], batch: Batch) -> tuple[torch.Tensor, dict[str, float]]:
    """Training loss of head outputs ``raw`` on ``batch``: scalar and its parts.

    Linear attributes: MSE in units of each attribute's standard deviation; hues: squared distance
    of the (cos, sin) vectors; binaries and face: binary cross-entropy. Attribute terms use the
    faces only (the first F rows).
    """
    n_face = len(batch.targets[LINEAR[0]])
    lin = torch.stack([(raw[k][:n_face] - batch.targets[k]) / uniform_stats(k)[1] for k in LINEAR], 1)
    reg = lin.pow(2).mean()
    hue = torch.stack([(raw[k][:n_face] - hue_to_vector(batch.targets[k])).pow(2).sum(1) for k in CIRCULAR]).mean()
    binary = torch.stack([F.binary_cross_entropy_with_logits(raw[k][:n_face], batch.targets[k])
                          for k in BINARIES]).mean()
    face = F.binary_cross_entropy_with_logits(raw["face"], batch.is_face)
    total = reg + hue + binary + face
    return total, {"reg": reg.item(), "hue": hue.item(), "binary": binary.item(), "face": face.item()}


def _lr_at(step: int, s: ProbeSettings) -> float:
    """Linear warm-up, then cosine decay to zero."""
    if step < s.warmup:
        return s.lr * (step + 1) / s.warmup
    t = (step - s.warmup) / max(1, s.steps - s.warmup)
    return s.lr * 0.5 * (1 + math.cos(math.pi * t))


def _metadata(settings: ProbeSettings, threads: int, wall_s: float) -> dict[str, str]:
    info = {
        "continuous": list(LINEAR), "circular": list(CIRCULAR), "binary": list(BINARIES), "face": "face",
        "output_order": [*LINEAR, *(f"{k}.{c}" for k in CIRCULAR for c in ("cos", "sin")), *BINARIES, "face"],
        "negative_kinds": list(NEGATIVE_KINDS), "negative_fraction": NEGATIVE_FRACTION,
        "training": {**asdict(settings), "threads": threads, "wall_s": round(wall_s, 1)},
    }
    return {"hspace.format": FORMAT, "hspace.probe": json.dumps(info),
            "hspace.description": "attribute probe for the procedural faces (hspace_core.demo.probe)"}


def train_probe(out_path: str | Path, *, steps: int = 2000, batch: int = 128, seed: int = 0, threads: int = 2,
                log=print) -> dict:
    """Train a probe from scratch, write its float32 safetensors to ``out_path``; return the report.

    Deterministic for a given ``seed`` and ``threads``. The report is ``evaluate_probe`` on held-out
    faces plus ``{"training": {settings, wall_s, render_s}}``.
    """
    if steps < 1 or batch < 2:
        raise HSpaceError(f"train_probe needs steps >= 1 and batch >= 2; got steps={steps}, batch={batch}")
    from safetensors.torch import save_file

    torch.set_num_threads(threads)
    settings = ProbeSettings(steps=steps, batch=batch, seed=seed)
    probe = seeded_module(AttributeProbe, torch.Generator().manual_seed(seed))  # initial weights
    g = torch.Generator().manual_seed(seed)  # batches
    decay = [p for n, p in probe.named_parameters() if p.dim() > 1]
    no_decay = [p for n, p in probe.named_parameters() if p.dim() <= 1]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": settings.weight_decay},
                             {"params": no_decay, "weight_decay": 0.0}], lr=settings.lr)
    tic = time.perf_counter()
    pool = _FacePool(settings)
    render_s = sum(pool.add_chunk() for _ in range(settings.initial_chunks))
    log(f"rendered {len(pool.images)} faces in {render_s:.1f} s")
    probe.train()
    window: list[dict[str, float]] = []
    for step in range(settings.steps):
        if step > 0 and step % settings.refresh_every == 0:
            render_s += pool.add_chunk()
        for group in opt.param_groups:
            group["lr"] = _lr_at(step, settings)
        b = _make_batch(pool, settings.batch, g)
        loss, parts = probe_loss(probe(b.images), b)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        window.append(parts)
        if (step + 1) % 100 == 0 or step + 1 == settings.steps:
            mean = {k: sum(w[k] for w in window) / len(window) for k in window[0]}
            log(f"step {step + 1}/{settings.steps} " + " ".join(f"{k} {v:.4f}" for k, v in mean.items())
                + f" ({time.perf_counter() - tic:.0f} s, pool {len(pool.images)})")
            window = []
    wall_s = time.perf_counter() - tic
    probe.eval()
    out_path = Path(out_path)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    tensors = {k: v.detach().contiguous() for k, v in probe.state_dict().items()}
    save_file(tensors, str(out_path), metadata=_metadata(settings, threads, wall_s))
    log(f"wrote {out_path} after {wall_s:.0f} s (rendering {render_s:.0f} s)")
    report = evaluate_probe(probe)
    report["training"] = {**asdict(settings), "threads": threads, "wall_s": round(wall_s, 1),
                          "render_s": round(render_s, 1), "faces_rendered": pool.next_chunk * settings.chunk}
    log(json.dumps(report, indent=2))
    return report

