"""The probe's data: image operations (shifts, blur, augmentation, degradation) and the procedural
negatives, all pure and deterministic given a ``torch.Generator``."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from .network import IMAGE_SIZE

NEGATIVE_KINDS = ("noise", "blobs", "shuffled", "noisy", "ellipses", "upside_down")
NEGATIVE_FRACTION = 0.25

# training chunk seeds are TRAIN_SEED_BASE + seed * SEED_STRIDE + chunk; held-out seeds stay below
TRAIN_SEED_BASE = 1_000_000
SEED_STRIDE = 100_000
HELD_OUT_SEED = 777
# variance of the circular distance between two independent uniform hues (d ~ U[0, 1/2]: E d^2 = 1/12)
UNIFORM_CIRCULAR_MSE = 1.0 / 12.0

_LIGHT_SKIN = (250.0, 222.0, 196.0)
_DARK_SKIN = (112.0, 72.0, 48.0)


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

