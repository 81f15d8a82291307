"""An attribute probe for the procedural faces: a small CNN that reads every attribute back.

``AttributeProbe`` maps images [N, 3, 32, 32] in [-1, 1] to the seven continuous attributes of
``faces.CONTINUOUS`` (hues as (cos, sin) vectors), the two binary attributes, and a ``face`` logit
that says whether the image is a cartoon face of this world at all. It is the measuring instrument
for edits of the demo DDPM, so it is trained on degraded renders (2 px shifts, mild noise, blur,
brightness and contrast jitter; see ``augment``) and evaluated on clean, DDPM-like degraded and
shifted held-out faces (``evaluate_probe``).

Face / not-a-face: positives are rendered faces; negatives are built procedurally and
deterministically from a seeded ``torch.Generator`` in six kinds (``NEGATIVE_KINDS``):

- ``noise``: Gaussian noise with random mean and std (0.3 to 1.0), clamped to [-1, 1];
- ``blobs``: smooth random colour fields (random 2x2 to 8x8 grids upsampled bicubically) plus a
  random linear gradient;
- ``shuffled``: a face whose 16 8x8 patches are randomly permuted (never the identity);
- ``noisy``: a face mixed with Gaussian noise, 35 to 60 % face;
- ``ellipses``: a face-like background gradient with a hair-coloured and a skin-coloured ellipse
  near the centre and 0 to 4 small ellipses of random colours: a head without facial features;
- ``upside_down``: a face rotated by 180 degrees (this world tilts heads by 20 degrees at most).

Negatives take ``NEGATIVE_FRACTION`` of every training batch; attribute losses use faces only.

Training data is effectively unlimited (unlike the DDPM's fixed data set): faces come in chunks of
``ProbeSettings.chunk`` drawn by ``sample_faces`` with a seed derived from the training seed and the
chunk index, rendered into a uint8 pool that gains one new chunk every ``refresh_every`` steps
(replacing the oldest once the pool is full), so rendering costs a fixed fraction of the training
time. Held-out faces use seeds below ``_TRAIN_SEED_BASE``, which training never draws.
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import HSpaceError
from .faces import (BINARY, CIRCULAR, CONTINUOUS, attribute_table, circular_distance, hue_to_vector, render,
                    sample_faces, vector_to_hue)

DEFAULT_WEIGHTS = Path(__file__).resolve().parent.parent / "data" / "probe.safetensors"
FORMAT = "hspace-probe-1"
IMAGE_SIZE = 32

LINEAR = tuple(k for k in CONTINUOUS if k not in CIRCULAR)  # smile, eye_size, face_width, skin_tone, head_tilt
BINARIES = tuple(BINARY)  # glasses, hat
NEGATIVE_KINDS = ("noise", "blobs", "shuffled", "noisy", "ellipses", "upside_down")
NEGATIVE_FRACTION = 0.25

# training chunk seeds are _TRAIN_SEED_BASE + seed * _SEED_STRIDE + chunk; held-out seeds stay below
_TRAIN_SEED_BASE = 1_000_000
_SEED_STRIDE = 100_000
HELD_OUT_SEED = 777
# variance of the circular distance between two independent uniform hues (d ~ U[0, 1/2]: E d^2 = 1/12)
_UNIFORM_CIRCULAR_MSE = 1.0 / 12.0

_LIGHT_SKIN = (250.0, 222.0, 196.0)
_DARK_SKIN = (112.0, 72.0, 48.0)


def _uniform_stats(name: str) -> tuple[float, float]:
    """Mean and standard deviation of the uniform distribution ``name`` is drawn from."""
    lo, hi = CONTINUOUS[name]
    return (lo + hi) / 2, (hi - lo) / math.sqrt(12.0)


# --------------------------------------------------------------------------------------------------
# network


def _conv(cin: int, cout: int, stride: int = 1) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, 3, stride, 1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True))


class AttributeProbe(nn.Module):
    """Small CNN: [N, 3, 32, 32] images in [-1, 1] -> attribute head outputs.

    Six 3x3 conv layers (32 -> 16 -> 8 -> 4 px, 24 to 80 channels, BatchNorm, ReLU), a 1x1
    reduction to 32 channels kept spatial (tilt and smile are about positions, so no global
    pooling), and one linear layer to 12 outputs: 5 linear attributes (standardised, mapped back to
    their units by fixed buffers), 2 x 2 hue vectors, 2 binary logits and the face logit.
    """

    def __init__(self) -> None:
        super().__init__()
        self.features = nn.Sequential(
            _conv(3, 24), _conv(24, 32, 2),     # 32 -> 16 px
            _conv(32, 32), _conv(32, 64, 2),    # 16 -> 8 px
            _conv(64, 64), _conv(64, 80, 2),    # 8 -> 4 px
            nn.Conv2d(80, 32, 1, bias=False), nn.BatchNorm2d(32), nn.ReLU(inplace=True),
        )
        self.hidden = nn.Sequential(nn.Flatten(), nn.Linear(32 * 16, 64), nn.ReLU(inplace=True))
        self.out = nn.Linear(64, len(LINEAR) + 2 * len(CIRCULAR) + len(BINARIES) + 1)
        stats = torch.tensor([_uniform_stats(k) for k in LINEAR], dtype=torch.float32)
        self.register_buffer("linear_mean", stats[:, 0].clone())
        self.register_buffer("linear_std", stats[:, 1].clone())

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        """Raw head outputs for images ``x`` [N, 3, 32, 32] in [-1, 1].

        Returns ``{name: [N]}`` for the linear attributes in their own units (unbounded),
        ``{hue name: [N, 2]}`` unnormalised (cos, sin) vectors for the circular ones, and
        ``{"glasses", "hat", "face": [N]}`` logits.
        """
        z = self.out(self.hidden(self.features(x)))
        n_lin, n_circ = len(LINEAR), 2 * len(CIRCULAR)
        lin = z[:, :n_lin] * self.linear_std + self.linear_mean
        result = {k: lin[:, i] for i, k in enumerate(LINEAR)}
        for i, k in enumerate(CIRCULAR):
            result[k] = z[:, n_lin + 2 * i:n_lin + 2 * i + 2]
        for i, k in enumerate(BINARIES):
            result[k] = z[:, n_lin + n_circ + i]
        result["face"] = z[:, -1]
        return result

    @torch.no_grad()
    def read(self, x: torch.Tensor, chunk: int = 512) -> dict[str, torch.Tensor]:
        """Decoded attributes of images ``x`` [N, 3, 32, 32] in [-1, 1], any N (run in chunks).

        Returns float32 tensors [N]: each continuous attribute in its own units (linear ones
        unclamped; hues in [0, 1)), ``glasses`` / ``hat`` as probabilities, ``face`` as the
        probability that the image is a face of this world. Always evaluates in eval mode.
        """
        if x.dim() != 4 or tuple(x.shape[1:]) != (3, IMAGE_SIZE, IMAGE_SIZE):
            raise HSpaceError(f"the attribute probe reads images of shape [N, 3, {IMAGE_SIZE}, {IMAGE_SIZE}] "
                              f"in [-1, 1]; got {list(x.shape)}")
        was_training = self.training
        self.eval()
        try:
            param = next(self.parameters())
            parts = [_decode(self(x[i:i + chunk].to(param.device, param.dtype))) for i in range(0, len(x), chunk)]
        finally:
            self.train(was_training)
        if not parts:
            return {k: torch.zeros(0) for k in (*CONTINUOUS, *BINARIES, "face")}
        return {k: torch.cat([p[k] for p in parts]).float().cpu() for k in parts[0]}


def _decode(raw: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Raw head outputs -> per-image attributes (see ``AttributeProbe.read``)."""
    out = {}
    for k in CONTINUOUS:
        if k in CIRCULAR:
            hue = vector_to_hue(raw[k])
            # float32 remainder of a tiny negative angle rounds to exactly 1.0
            out[k] = torch.where(hue >= 1.0, torch.zeros_like(hue), hue)
        else:
            out[k] = raw[k]
    for k in (*BINARIES, "face"):
        out[k] = torch.sigmoid(raw[k])
    return out


def load_probe(path: str | Path | None = None) -> AttributeProbe:
    """The probe with weights from ``path`` (default: the shipped ``hspace_core/data/probe.safetensors``).

    Loads safetensors only, with ``strict=True``; returns the module in eval mode on the CPU.
    """
    from safetensors import safe_open
    from safetensors.torch import load_file

    path = Path(path) if path is not None else DEFAULT_WEIGHTS
    if not path.is_file():
        raise HSpaceError(f"no attribute probe weights at {path}; train them with train_probe "
                          "(python -m hspace_core train-probe)")
    with safe_open(str(path), framework="pt") as f:
        meta = f.metadata() or {}
    if meta.get("hspace.format") != FORMAT:
        raise HSpaceError(f"{path} is not an attribute probe ({FORMAT}) file; "
                          f"its format is {meta.get('hspace.format')!r}")
    probe = AttributeProbe()
    probe.load_state_dict(load_file(str(path)), strict=True)
    return probe.eval()


# --------------------------------------------------------------------------------------------------
# image operations (all pure, deterministic given the generator)


def gaussian_blur(x: torch.Tensor, sigma: torch.Tensor | float) -> torch.Tensor:
    """Separable Gaussian blur (5 taps, replicate padding) of ``x`` [N, C, H, W].

    ``sigma`` in pixels: a float or [N] per image; 0 leaves the image unchanged.
    """
    n, c, h, w = x.shape
    sigma = torch.as_tensor(sigma, dtype=x.dtype).expand(n).clamp_min(1e-3)
    taps = torch.arange(-2, 3, dtype=x.dtype)
    k = torch.exp(-taps[None] ** 2 / (2 * sigma[:, None] ** 2))
    k = (k / k.sum(1, keepdim=True)).repeat_interleave(c, 0)  # [N*C, 5]
    y = F.pad(x.reshape(1, n * c, h, w), (2, 2, 2, 2), mode="replicate")
    y = F.conv2d(y, k[:, None, None, :], groups=n * c)
    y = F.conv2d(y, k[:, None, :, None], groups=n * c)
    return y.reshape(n, c, h, w)


def _uniform(n: int, lo: float, hi: float, g: torch.Generator) -> torch.Tensor:
    return lo + (hi - lo) * torch.rand(n, generator=g)


MAX_SHIFT = 2  # px; augmentation and the "shifted" evaluation move faces by up to this much


def shift(x: torch.Tensor, dx: torch.Tensor, dy: torch.Tensor) -> torch.Tensor:
    """``x`` [N, C, H, W] translated by integer ``dx``, ``dy`` [N] in [-MAX_SHIFT, MAX_SHIFT] px.

    The uncovered border repeats the edge pixels (the backgrounds are vertical gradients).
    """
    h, w, m = x.shape[-2], x.shape[-1], MAX_SHIFT
    padded = F.pad(x, (m, m, m, m), mode="replicate")
    out = torch.empty_like(x)
    for oy in range(-m, m + 1):
        for ox in range(-m, m + 1):
            idx = ((dx == ox) & (dy == oy)).nonzero().flatten()
            if len(idx):
                out[idx] = padded[idx, :, m - oy:m - oy + h, m - ox:m - ox + w]
    return out


def random_shift(x: torch.Tensor, g: torch.Generator) -> torch.Tensor:
    """``x`` [N, C, H, W] with each image moved by a random integer shift in [-MAX_SHIFT, MAX_SHIFT]^2 px."""
    n, m = len(x), MAX_SHIFT
    return shift(x, torch.randint(-m, m + 1, (n,), generator=g), torch.randint(-m, m + 1, (n,), generator=g))


def augment(x: torch.Tensor, g: torch.Generator) -> torch.Tensor:
    """Training augmentation of ``x`` [N, 3, H, W] in [-1, 1], mimicking imperfect DDPM samples.

    Per image: a random shift of up to ``MAX_SHIFT`` px in x and y for half of the images (an
    edit may move the head a little; the readings must not hinge on exact centring), Gaussian blur
    with sigma ~ U(0, 0.8) px for 60 % of images, contrast ~ U(0.92, 1.08) about mid-grey,
    brightness offset ~ U(-0.07, 0.07), Gaussian noise with std ~ U(0, 0.08), then clamped to
    [-1, 1] for half of the images (decoded DDPM samples usually are).
    """
    n = len(x)
    moved = (torch.rand(n, generator=g) < 0.5)[:, None, None, None]
    x = torch.where(moved, random_shift(x, g), x)
    sigma = _uniform(n, 0.0, 0.8, g) * (torch.rand(n, generator=g) < 0.6)
    x = gaussian_blur(x, sigma)
    contrast = _uniform(n, 0.92, 1.08, g)[:, None, None, None]
    bright = _uniform(n, -0.07, 0.07, g)[:, None, None, None]
    std = _uniform(n, 0.0, 0.08, g)[:, None, None, None]
    x = x * contrast + bright + std * torch.randn(x.shape, generator=g)
    clamp = (torch.rand(n, generator=g) < 0.5)[:, None, None, None]
    return torch.where(clamp, x.clamp(-1, 1), x)


def degrade(x: torch.Tensor, g: torch.Generator) -> torch.Tensor:
    """The evaluation's DDPM-like degradation of ``x`` [N, 3, H, W] in [-1, 1] -> same shape, clamped.

    Gaussian blur sigma 0.5 px, additive Gaussian noise std 0.05, brightness offset ~ U(-0.05, 0.05)
    per image.
    """
    x = gaussian_blur(x, 0.5)
    x = x + 0.05 * torch.randn(x.shape, generator=g) + _uniform(len(x), -0.05, 0.05, g)[:, None, None, None]
    return x.clamp(-1, 1)


def _hsv_to_rgb(h: torch.Tensor, s: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """[N] hue in [0, 1), saturation, value in [0, 1] -> [N, 3] RGB in [0, 1]."""
    k = torch.remainder(torch.tensor([5.0, 3.0, 1.0]) + 6.0 * h[:, None], 6.0)
    return v[:, None] - v[:, None] * s[:, None] * torch.clamp(torch.minimum(k, 4.0 - k), 0.0, 1.0)


def _ellipse_mask(n: int, cx, cy, rx, ry, angle, size: int = IMAGE_SIZE) -> torch.Tensor:
    """Anti-aliased masks [N, 1, S, S] in [0, 1] of rotated ellipses (all parameters [N], pixels/radians)."""
    coords = torch.arange(size, dtype=torch.float32) + 0.5
    yy, xx = coords[None, :, None], coords[None, None, :]
    dx, dy = xx - cx[:, None, None], yy - cy[:, None, None]
    cos, sin = torch.cos(angle)[:, None, None], torch.sin(angle)[:, None, None]
    u, w = (cos * dx + sin * dy) / rx[:, None, None], (-sin * dx + cos * dy) / ry[:, None, None]
    r = torch.sqrt(u * u + w * w)
    # signed distance to the border, approximately in pixels
    edge = (1.0 - r) * torch.minimum(rx, ry)[:, None, None]
    return (edge + 0.5).clamp(0.0, 1.0)[:, None]


def _paint(canvas: torch.Tensor, mask: torch.Tensor, rgb: torch.Tensor) -> torch.Tensor:
    """Composite colour ``rgb`` [N, 3] in [0, 1] over ``canvas`` [N, 3, S, S] through ``mask`` [N, 1, S, S]."""
    return canvas * (1 - mask) + rgb[:, :, None, None] * mask


def _noise_negatives(n: int, g: torch.Generator) -> torch.Tensor:
    std = _uniform(n, 0.3, 1.0, g)[:, None, None, None]
    mean = _uniform(n, -0.3, 0.3, g)[:, None, None, None]
    return (mean + std * torch.randn(n, 3, IMAGE_SIZE, IMAGE_SIZE, generator=g)).clamp(-1, 1)


def _blob_negatives(n: int, g: torch.Generator) -> torch.Tensor:
    grids = (2, 3, 4, 6, 8)
    out = []
    for _ in range(n):
        k = grids[int(torch.randint(len(grids), (1,), generator=g))]
        low = torch.rand(1, 3, k, k, generator=g) * 2 - 1
        out.append(F.interpolate(low, size=(IMAGE_SIZE, IMAGE_SIZE), mode="bicubic", align_corners=False))
    blobs = torch.cat(out) if out else torch.zeros(0, 3, IMAGE_SIZE, IMAGE_SIZE)
    ramp = torch.linspace(-1, 1, IMAGE_SIZE)
    angle = _uniform(n, 0, 2 * math.pi, g)
    grad = torch.cos(angle)[:, None, None] * ramp[None, None, :] + torch.sin(angle)[:, None, None] * ramp[None, :, None]
    colour = torch.rand(n, 3, 1, 1, generator=g) * 2 - 1
    return (0.7 * blobs + 0.5 * grad[:, None] * colour).clamp(-1, 1)


def _shuffled_negatives(faces: torch.Tensor, g: torch.Generator) -> torch.Tensor:
    n, p = len(faces), IMAGE_SIZE // 8
    patches = faces.reshape(n, 3, p, 8, p, 8).permute(0, 2, 4, 1, 3, 5).reshape(n, p * p, 3, 8, 8)
    perms = []
    for _ in range(n):
        perm = torch.randperm(p * p, generator=g)
        if torch.equal(perm, torch.arange(p * p)):
            perm = perm.roll(1)
        perms.append(perm)
    if n:
        patches = torch.stack([patches[i, perms[i]] for i in range(n)])
    return patches.reshape(n, p, p, 3, 8, 8).permute(0, 3, 1, 4, 2, 5).reshape(n, 3, IMAGE_SIZE, IMAGE_SIZE)


def _noisy_negatives(faces: torch.Tensor, g: torch.Generator) -> torch.Tensor:
    w = _uniform(len(faces), 0.35, 0.6, g)[:, None, None, None]
    return (w * faces + (1 - w) * torch.randn(faces.shape, generator=g)).clamp(-1, 1)


def _ellipse_negatives(n: int, g: torch.Generator) -> torch.Tensor:
    s = IMAGE_SIZE / 32.0
    bg_hue = torch.rand(n, generator=g)
    top = _hsv_to_rgb(bg_hue, torch.full((n,), 0.45), torch.full((n,), 0.92))
    bottom = _hsv_to_rgb(bg_hue, torch.full((n,), 0.55), torch.full((n,), 0.72))
    ramp = torch.linspace(0, 1, IMAGE_SIZE)[None, None, :, None]
    canvas = (1 - ramp) * top[:, :, None, None] + ramp * bottom[:, :, None, None]
    canvas = canvas.expand(n, 3, IMAGE_SIZE, IMAGE_SIZE)
    cx, cy = 16 * s + _uniform(n, -3, 3, g) * s, 17 * s + _uniform(n, -3, 3, g) * s
    rx, ry = _uniform(n, 7, 13, g) * s, _uniform(n, 9, 12, g) * s
    angle = _uniform(n, -0.4, 0.4, g)
    hair = _hsv_to_rgb(torch.rand(n, generator=g), torch.full((n,), 0.75), torch.full((n,), 0.62))
    canvas = _paint(canvas, _ellipse_mask(n, cx, cy - 3 * s, rx + 1.5 * s, ry + 0.5 * s, angle), hair)
    tone = torch.rand(n, generator=g)[:, None]
    skin = (torch.tensor(_LIGHT_SKIN) + tone * (torch.tensor(_DARK_SKIN) - torch.tensor(_LIGHT_SKIN))) / 255.0
    canvas = _paint(canvas, _ellipse_mask(n, cx, cy + 1 * s, rx, ry - 1 * s, angle), skin)
    for _ in range(4):
        present = (torch.rand(n, generator=g) < 0.5)[:, None, None, None]
        mask = _ellipse_mask(n, _uniform(n, 0, IMAGE_SIZE, g), _uniform(n, 0, IMAGE_SIZE, g),
                             _uniform(n, 0.8, 5, g) * s, _uniform(n, 0.8, 5, g) * s, _uniform(n, 0, math.pi, g))
        canvas = _paint(canvas, mask * present, torch.rand(n, 3, generator=g))
    return canvas * 2 - 1


def make_negatives(faces: torch.Tensor, kinds: torch.Tensor, g: torch.Generator) -> torch.Tensor:
    """Not-a-face images [N, 3, S, S] in [-1, 1]: image i is of kind ``NEGATIVE_KINDS[kinds[i]]``.

    ``faces`` [N, 3, S, S] in [-1, 1] are the sources of the face-derived kinds (row i is used only
    if kind i needs a face). Deterministic given the generator's state.
    """
    out = torch.empty_like(faces)
    for k, name in enumerate(NEGATIVE_KINDS):
        idx = (kinds == k).nonzero().flatten()
        m = len(idx)
        if m == 0:
            continue
        src = faces[idx]
        if name == "noise":
            out[idx] = _noise_negatives(m, g)
        elif name == "blobs":
            out[idx] = _blob_negatives(m, g)
        elif name == "shuffled":
            out[idx] = _shuffled_negatives(src, g)
        elif name == "noisy":
            out[idx] = _noisy_negatives(src, g)
        elif name == "ellipses":
            out[idx] = _ellipse_negatives(m, g)
        else:  # upside_down
            out[idx] = src.flip(-1, -2)
    return out


# --------------------------------------------------------------------------------------------------
# training


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
        faces = sample_faces(s.chunk, _TRAIN_SEED_BASE + s.seed * _SEED_STRIDE + self.next_chunk)
        self.next_chunk += 1
        images = ((render(faces, IMAGE_SIZE) + 1) * 127.5).round().clamp(0, 255).to(torch.uint8)
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
    lin = torch.stack([(raw[k][:n_face] - batch.targets[k]) / _uniform_stats(k)[1] for k in LINEAR], 1)
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
    torch.manual_seed(seed)  # initial weights
    probe = AttributeProbe()
    g = torch.Generator().manual_seed(seed)
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


# --------------------------------------------------------------------------------------------------
# evaluation


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
                  "circular_r2": round(float(1 - d.pow(2).mean() / _UNIFORM_CIRCULAR_MSE), 4)}
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

    ``seed`` must be below ``_TRAIN_SEED_BASE`` (training never draws those seeds). Returns
    ``{"clean": metrics, "degraded": metrics, "shifted": metrics, "n": n, "seed": seed,
    "hue_metric": ...}`` where metrics are ``attribute_metrics`` plus ``"face"``: face-vs-negative
    accuracy at 0.5, the share of faces accepted, and the share of each negative kind rejected.
    ``degraded`` applies ``degrade`` (blur 0.5 px, noise 0.05, brightness +-0.05) to faces and
    negatives alike; ``shifted`` moves every image by a random integer shift of up to ``MAX_SHIFT``
    px in x and y.
    """
    if not 0 <= seed < _TRAIN_SEED_BASE:
        raise HSpaceError(f"held-out seeds are in [0, {_TRAIN_SEED_BASE}); got {seed}")
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
