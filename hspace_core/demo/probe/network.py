"""The probe network: a small CNN reading every attribute (and face / not-a-face) back, and its file."""

from __future__ import annotations

import math
from pathlib import Path

import torch
from torch import nn

from ...checkpoint_files import read_safetensors
from ...errors import HSpaceError
from ..faces import BINARY, CIRCULAR, CONTINUOUS, vector_to_hue

DEFAULT_WEIGHTS = Path(__file__).resolve().parents[2] / "data" / "probe.safetensors"
FORMAT = "hspace-probe-1"
IMAGE_SIZE = 32

LINEAR = tuple(k for k in CONTINUOUS if k not in CIRCULAR)  # smile, eye_size, face_width, skin_tone, head_tilt
BINARIES = tuple(BINARY)  # glasses, hat


def uniform_stats(name: str) -> tuple[float, float]:
    """Mean and standard deviation of the uniform distribution ``name`` is drawn from."""
    lo, hi = CONTINUOUS[name]
    return (lo + hi) / 2, (hi - lo) / math.sqrt(12.0)


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
        stats = torch.tensor([uniform_stats(k) for k in LINEAR], dtype=torch.float32)
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
    path = Path(path) if path is not None else DEFAULT_WEIGHTS
    if not path.is_file():
        raise HSpaceError(f"no attribute probe weights at {path}; train them with train_probe "
                          "(python -m hspace_core train-probe)")
    tensors, meta = read_safetensors(path)
    if meta.get("hspace.format") != FORMAT:
        raise HSpaceError(f"{path} is not an attribute probe ({FORMAT}) file; "
                          f"its format is {meta.get('hspace.format')!r}")
    probe = AttributeProbe()
    probe.load_state_dict(tensors, strict=True)
    return probe.eval()

