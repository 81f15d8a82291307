"""A procedural data set of cartoon faces with known attributes, rendered with pillow.

Every face is a deterministic function of its attribute values: a face is drawn at 4x the target
resolution on a transparent layer, rotated by the head tilt, composited on the background and
reduced with a box filter (anti-aliasing). Attributes are drawn from a seeded numpy generator, so
``sample_attributes(n, seed)`` and ``render(attrs)`` reproduce the same images on every machine.

Continuous attributes (all in [0, 1] or [-1, 1] as listed in ``CONTINUOUS``): smile curvature,
eye size, face width, hair hue (circular), skin tone, background hue (circular), head tilt.
Binary attributes: glasses, hat. 32 px is the default resolution: it is what a DDPM trains well on
two CPU cores in hours, and it keeps every attribute visible (eyes span 3 to 6 px, the mouth 9 px).
"""

from __future__ import annotations

import colorsys
import math
from dataclasses import dataclass

import numpy as np
import torch
from PIL import Image, ImageDraw

# name -> (low, high) of the uniform distribution it is drawn from
CONTINUOUS: dict[str, tuple[float, float]] = {
    "smile": (-1.0, 1.0),
    "eye_size": (0.0, 1.0),
    "face_width": (0.0, 1.0),
    "hair_hue": (0.0, 1.0),
    "skin_tone": (0.0, 1.0),
    "background_hue": (0.0, 1.0),
    "head_tilt": (-1.0, 1.0),
}
CIRCULAR = ("hair_hue", "background_hue")
# name -> probability of 1
BINARY: dict[str, float] = {"glasses": 0.3, "hat": 0.3}
ATTRIBUTES = tuple(CONTINUOUS) + tuple(BINARY)

MAX_TILT_DEGREES = 20.0
SUPERSAMPLE = 4
_ZOOM = 1.12
_LIGHT_SKIN = np.array([250, 222, 196], dtype=np.float64)
_DARK_SKIN = np.array([112, 72, 48], dtype=np.float64)


@dataclass(frozen=True)
class Face:
    """The attributes of one face (ranges as in ``CONTINUOUS``; binaries are bools)."""

    smile: float = 0.0
    eye_size: float = 0.5
    face_width: float = 0.5
    hair_hue: float = 0.08
    skin_tone: float = 0.3
    background_hue: float = 0.55
    head_tilt: float = 0.0
    glasses: bool = False
    hat: bool = False

    def replace(self, **changes) -> "Face":
        values = {name: getattr(self, name) for name in ATTRIBUTES}
        values.update(changes)
        return Face(**values)


def sample_faces(n: int, seed: int) -> list[Face]:
    """``n`` faces with attributes drawn independently and uniformly (binaries: Bernoulli)."""
    rng = np.random.default_rng(seed)
    cont = {k: rng.uniform(lo, hi, n) for k, (lo, hi) in CONTINUOUS.items()}
    bins = {k: rng.uniform(0, 1, n) < p for k, p in BINARY.items()}
    return [Face(**{k: float(v[i]) for k, v in cont.items()}, **{k: bool(v[i]) for k, v in bins.items()})
            for i in range(n)]


def attribute_table(faces: list[Face]) -> dict[str, torch.Tensor]:
    """Attributes as float32 tensors [N], one per name in ``ATTRIBUTES`` (binaries as 0/1)."""
    return {k: torch.tensor([float(getattr(f, k)) for f in faces], dtype=torch.float32) for k in ATTRIBUTES}


def _hsv(h: float, s: float, v: float) -> tuple[int, int, int]:
    r, g, b = colorsys.hsv_to_rgb(h % 1.0, s, v)
    return (round(255 * r), round(255 * g), round(255 * b))


def render_face(face: Face, size: int = 32) -> Image.Image:
    """The face as an RGB image of ``size`` x ``size`` pixels."""
    S = size * SUPERSAMPLE
    # drawing units: the layout is designed on a 128 px canvas and drawn 1.12x about its centre
    u = S / 128.0 * _ZOOM

    def px(x: float) -> float:
        return (x - 64.0) * u + S / 2

    def box(cx: float, cy: float, rx: float, ry: float) -> list[float]:
        return [px(cx - rx), px(cy - ry), px(cx + rx), px(cy + ry)]

    bg_top = np.array(_hsv(face.background_hue, 0.45, 0.92), dtype=np.float64)
    bg_bottom = np.array(_hsv(face.background_hue, 0.55, 0.72), dtype=np.float64)
    ramp = np.linspace(0.0, 1.0, S)[:, None, None]
    background = ((1 - ramp) * bg_top + ramp * bg_bottom) * np.ones((1, S, 1))
    canvas = Image.fromarray(background.round().astype(np.uint8), "RGB")

    layer = Image.new("RGBA", (S, S), (0, 0, 0, 0))
    d = ImageDraw.Draw(layer)
    cx, cy = 64.0, 70.0
    rx = 27.0 + 13.0 * face.face_width
    ry = 38.0
    skin = tuple(int(c) for c in np.round(_LIGHT_SKIN + face.skin_tone * (_DARK_SKIN - _LIGHT_SKIN)))
    hair = _hsv(face.hair_hue, 0.75, 0.62)

    # hair: a cap behind the head, a fringe over the forehead
    d.ellipse(box(cx, cy - 10, rx + 6, ry + 2), fill=hair + (255,))
    d.ellipse(box(cx - rx - 2, cy + 2, 6, 14), fill=skin + (255,))  # ears
    d.ellipse(box(cx + rx + 2, cy + 2, 6, 14), fill=skin + (255,))
    d.ellipse(box(cx, cy + 4, rx, ry - 4), fill=skin + (255,))
    d.chord(box(cx, cy - 18, rx + 1, 22), 180, 360, fill=hair + (255,))

    # eyes
    eye_r = 4.0 + 6.0 * face.eye_size
    for ex in (cx - 13.0, cx + 13.0):
        d.ellipse(box(ex, cy + 2, eye_r + 1.5, eye_r + 1.5), fill=(255, 255, 255, 255))
        d.ellipse(box(ex, cy + 2, 0.55 * eye_r + 1.5, 0.55 * eye_r + 1.5), fill=(25, 25, 35, 255))
    if face.glasses:
        for ex in (cx - 13.0, cx + 13.0):
            d.ellipse(box(ex, cy + 2, eye_r + 6, eye_r + 6), outline=(20, 20, 20, 255), width=max(1, round(3 * u)))
        d.line([(px(cx - 13 + eye_r + 6), px(cy + 1)), (px(cx + 13 - eye_r - 6), px(cy + 1))],
               fill=(20, 20, 20, 255), width=max(1, round(3 * u)))

    # nose
    d.line([(px(cx), px(cy + 8)), (px(cx - 2), px(cy + 15)), (px(cx + 2), px(cy + 16))],
           fill=tuple(int(c * 0.75) for c in skin) + (255,), width=max(1, round(2 * u)))

    # mouth: a parabola whose corners rise with the smile (and fall for a frown)
    mouth_y, half_w = cy + 24.0, 14.0
    pts = []
    for k in range(21):
        s = -1.0 + k / 10.0
        pts.append((px(cx + half_w * s), px(mouth_y + 8.0 * face.smile * (1.0 - s * s) - 2.0 * face.smile)))
    d.line(pts, fill=(150, 35, 45, 255), width=max(1, round(4 * u)), joint="curve")

    if face.hat:
        hat = (35, 45, 110, 255)
        top = cy - ry - 4
        d.rectangle([px(cx - rx + 4), px(top - 18), px(cx + rx - 4), px(top + 8)], fill=hat)
        d.rectangle([px(cx - rx - 10), px(top + 4), px(cx + rx + 10), px(top + 11)], fill=hat)

    layer = layer.rotate(MAX_TILT_DEGREES * face.head_tilt, resample=Image.BICUBIC, center=(px(cx), px(cy)))
    canvas.paste(layer, (0, 0), layer)
    return canvas.resize((size, size), Image.BOX) if SUPERSAMPLE > 1 else canvas


def render(faces: list[Face], size: int = 32) -> torch.Tensor:
    """Faces as a float32 batch [N, 3, size, size] in [-1, 1] (the engine's image convention)."""
    arr = np.stack([np.asarray(render_face(f, size), dtype=np.float32) for f in faces])
    return torch.from_numpy(arr).permute(0, 3, 1, 2).div(127.5).sub(1.0)


def circular_distance(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Distance between hues on the unit circle of circumference 1 (in [0, 0.5])."""
    d = torch.remainder(a - b, 1.0)
    return torch.minimum(d, 1.0 - d)


def hue_to_vector(hue: torch.Tensor) -> torch.Tensor:
    """[N] hues in [0, 1) -> [N, 2] (cos, sin) of the hue angle, for regression on a circle."""
    ang = 2 * math.pi * hue
    return torch.stack([torch.cos(ang), torch.sin(ang)], dim=-1)


def vector_to_hue(v: torch.Tensor) -> torch.Tensor:
    """[N, 2] (cos, sin) -> [N] hue in [0, 1)."""
    return torch.remainder(torch.atan2(v[:, 1], v[:, 0]) / (2 * math.pi), 1.0)
