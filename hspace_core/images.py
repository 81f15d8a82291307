"""Images in and out of the engine: validation, the size policy, and PNG files.

Engine convention: float tensors [N, 3, H, W] in [-1, 1]. (ComfyUI's IMAGE, [N, H, W, 3] in [0, 1],
is converted in ``nodes/`` only.)

Size policy for images whose size differs from the model's: ``"resize_crop"`` (default) scales the
shorter side to the model's size (bicubic, antialiased) and centre-crops the longer one, the LSUN
preprocessing of the official code; ``"resize"`` stretches to the model's size (its MetFaces/FFHQ
preprocessing); ``"error"`` refuses. What was done is reported in words.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from .errors import HSpaceError

SIZE_POLICIES = ("resize_crop", "resize", "error")


def check_images(x: torch.Tensor, what: str = "images") -> None:
    """Refuse an empty batch, a wrong layout, NaN/inf, or values outside [-1, 1]."""
    if not isinstance(x, torch.Tensor):
        raise HSpaceError(f"{what} must be a tensor, got {type(x).__name__}")
    if x.ndim != 4 or x.shape[1] != 3:
        raise HSpaceError(f"{what} must be [N, 3, H, W] in [-1, 1], got shape {list(x.shape)}")
    if x.shape[0] == 0:
        raise HSpaceError(f"{what}: the batch is empty")
    if not torch.isfinite(x).all():
        raise HSpaceError(f"{what} contain NaN or infinite values")
    lo, hi = float(x.min()), float(x.max())
    if lo < -1.0 - 1e-3 or hi > 1.0 + 1e-3:
        raise HSpaceError(f"{what} must lie in [-1, 1] (pixels in [0, 1] map to 2x - 1), found [{lo:.3g}, {hi:.3g}]")


def fit_to_size(x: torch.Tensor, size: int, policy: str = "resize_crop") -> tuple[torch.Tensor, str]:
    """Bring images [N, 3, H, W] to [N, 3, size, size] by ``policy``; returns (images, report)."""
    if policy not in SIZE_POLICIES:
        raise HSpaceError(f"unknown size policy {policy!r}; use one of {', '.join(SIZE_POLICIES)}")
    h, w = x.shape[-2:]
    if (h, w) == (size, size):
        return x, f"{w}x{h}, the model's size"
    if policy == "error":
        raise HSpaceError(f"images are {w}x{h} but the model takes {size}x{size}; resize them or choose the "
                          "'resize_crop' or 'resize' size policy")
    if policy == "resize":
        out = F.interpolate(x, size=(size, size), mode="bicubic", antialias=True, align_corners=False)
        return out.clamp(-1, 1), f"{w}x{h} stretched to {size}x{size}"
    scale = size / min(h, w)
    nh, nw = max(size, round(h * scale)), max(size, round(w * scale))
    out = F.interpolate(x, size=(nh, nw), mode="bicubic", antialias=True, align_corners=False)
    top, left = (nh - size) // 2, (nw - size) // 2
    return out[..., top:top + size, left:left + size].clamp(-1, 1), \
        f"{w}x{h} resized to {nw}x{nh} and centre-cropped to {size}x{size}"


def prepare_images(images, size: int, size_policy: str) -> tuple[torch.Tensor, tuple[str, ...]]:
    """Validate images (a tensor [N, 3, H, W] in [-1, 1], or a list of [3, H, W] / [N, 3, H, W] tensors
    of any sizes) and fit them to ``size`` x ``size``; returns ([N, 3, size, size] float32, what the
    size policy did per image)."""
    if isinstance(images, torch.Tensor):
        items = [images]
    else:
        items = [im if im.ndim == 4 else im[None] for im in images]
    if not items or sum(im.shape[0] for im in items if isinstance(im, torch.Tensor)) == 0:
        raise HSpaceError("images: the batch is empty")
    out, report = [], []
    for im in items:
        check_images(im)
        fitted, what = fit_to_size(im.float(), size, size_policy)
        out.append(fitted)
        report += [what] * im.shape[0]
    return torch.cat(out), tuple(report)


MAX_IMAGE_PIXELS = 8192 * 8192  # a larger image is refused before it is decoded (decompression bombs)


def load_image(path: str | Path) -> torch.Tensor:
    """An image file as [1, 3, H, W] in [-1, 1] (alpha dropped, greyscale expanded). The size in the
    header is checked before any pixel is decoded; whatever a broken file makes the decoder raise is an
    HSpaceError naming the file."""
    path = Path(path)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(path) as im:
                w, h = im.size
                if w * h > MAX_IMAGE_PIXELS:
                    raise HSpaceError(f"{path}: the image is {w}x{h} pixels; images above {MAX_IMAGE_PIXELS:,} "
                                      "pixels are refused (resize it first)")
                arr = np.asarray(im.convert("RGB"), dtype=np.float32)
    except HSpaceError:
        raise
    except FileNotFoundError:
        raise HSpaceError(f"{path}: no such file") from None
    except Exception as e:  # noqa: BLE001 -- decoders raise many types (OSError, SyntaxError, zlib.error, ...)
        first = str(e).splitlines()[0][:200] if str(e) else ""
        raise HSpaceError(f"{path}: not a readable image ({type(e).__name__}: {first})") from None
    if arr.ndim != 3 or arr.shape[2] != 3 or 0 in arr.shape:
        raise HSpaceError(f"{path}: not a readable image (decoded to shape {list(arr.shape)})")
    return torch.from_numpy(arr).permute(2, 0, 1)[None] / 127.5 - 1.0


def to_uint8(x: torch.Tensor) -> torch.Tensor:
    """[N, 3, H, W] in [-1, 1] -> uint8 [N, 3, H, W] on the CPU, clamped and rounded: the one place
    images are quantised (strips, previews, the demo's data sets)."""
    return ((x.detach().float().cpu().clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)


def to_pil(x: torch.Tensor) -> Image.Image:
    """One image [3, H, W] in [-1, 1] as a PIL RGB image."""
    return Image.fromarray(to_uint8(x[None])[0].permute(1, 2, 0).numpy())


def strip(rows: list[list[torch.Tensor]], pad: int = 2) -> Image.Image:
    """A grid image: ``rows`` of [3, H, W] tensors in [-1, 1], with ``pad`` white pixels between."""
    h, w = rows[0][0].shape[-2:]
    ncol = max(len(r) for r in rows)
    canvas = Image.new("RGB", (ncol * w + (ncol + 1) * pad, len(rows) * h + (len(rows) + 1) * pad), "white")
    for i, row in enumerate(rows):
        for j, img in enumerate(row):
            canvas.paste(to_pil(img), (pad + j * (w + pad), pad + i * (h + pad)))
    return canvas
