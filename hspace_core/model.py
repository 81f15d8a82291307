"""The loaded model as a value: network, family, config, noise schedule, and the h-space split.

``HSpaceModel.encode(x_t, t)`` runs the encoder and middle block once and returns the bottleneck
``h`` with everything the decoder needs; ``HSpaceModel.decode(enc, h)`` runs the decoder on any h
(``h``, ``h + delta_h``, or a batch of several h's sharing that one encoder pass) and returns eps,
with a learned variance split off. The UNet knows nothing of edits, strengths or t_edit.
"""

from __future__ import annotations

import enum
import hashlib
import json
from dataclasses import asdict, dataclass

import torch
from torch import nn

from .errors import HSpaceError
from .schedule import NoiseSchedule
from .unets import ADMConfig, DDPMConfig, Encoded


class Family(str, enum.Enum):
    """Where a checkpoint comes from; DDIM and DIFFUSERS share one network (``DDPMUNet``)."""

    DDIM = "ddim"  # ermongroup/ddim Model: SDEdit, DiffusionCLIP, Asyrp CelebA-HQ / LSUN, DDPM CIFAR-10
    DIFFUSERS = "diffusers"  # diffusers UNet2DModel: google/ddpm-*
    ADM = "adm"  # improved-diffusion / guided-diffusion UNetModel: P2, ILVR, ADM, iDDPM


@dataclass(frozen=True, eq=False)
class Prediction:
    """Network output at (x_t, t).

    eps:      [N, C, H, W] predicted noise.
    variance: [N, C, H, W] learned-variance interpolation value v in [-1, 1]
              (log sigma^2 = (v+1)/2 log beta_t + (1-(v+1)/2) log beta~_t), or None for fixed-variance models.
    """

    eps: torch.Tensor
    variance: torch.Tensor | None


@dataclass(frozen=True, eq=False)
class HSpaceModel:
    """A frozen unconditional pixel DDPM with its h-space exposed.

    unet:     ``DDPMUNet`` or ``ADMUNet`` (eval mode, gradients off).
    family:   where the weights came from.
    config:   the network's architecture (``DDPMConfig`` / ``ADMConfig``).
    schedule: the noise schedule it was trained with.
    source:   the path it was loaded from; ``container`` says how the weights were wrapped there.
    warnings: assumptions made for what the weights do not store (head count, schedule, numerics).
    """

    unet: nn.Module
    family: Family
    config: DDPMConfig | ADMConfig
    schedule: NoiseSchedule
    source: str = ""
    container: str = ""
    warnings: tuple[str, ...] = ()

    @property
    def image_size(self) -> int:
        return self.config.image_size

    @property
    def in_channels(self) -> int:
        return self.config.in_channels

    @property
    def h_shape(self) -> tuple[int, int, int]:
        """[C_h, H_h, W_h] of h at the model's native resolution."""
        return self.config.h_shape()

    @property
    def emb_channels(self) -> int:
        """Width of the final time embedding (``Encoded.emb``): 4x the base width in both families."""
        return 4 * (self.config.ch if isinstance(self.config, DDPMConfig) else self.config.model_channels)

    @property
    def learn_sigma(self) -> bool:
        return isinstance(self.config, ADMConfig) and self.config.learn_sigma

    @property
    def num_params(self) -> int:
        return sum(p.numel() for p in self.unet.parameters())

    @property
    def device(self) -> torch.device:
        return next(self.unet.parameters()).device

    @property
    def dtype(self) -> torch.dtype:
        return next(self.unet.parameters()).dtype

    @property
    def network(self) -> str:
        return "ddpm" if isinstance(self.config, DDPMConfig) else "adm"

    @property
    def fingerprint(self) -> str:
        """A short hash of the network architecture and numerics (not of the weights).

        Two checkpoints with the same fingerprint have interchangeable h-spaces in shape and
        meaning of the computation; directions record it and are refused by other networks.
        """
        cfg = asdict(self.config)
        cfg.pop("image_size", None)  # the network is convolutional; h shape is checked separately
        blob = json.dumps({"network": self.network, "config": cfg}, sort_keys=True, default=list)
        return hashlib.sha256(blob.encode()).hexdigest()[:16]

    def to(self, device: torch.device | str | None = None, dtype: torch.dtype | None = None) -> "HSpaceModel":
        """Move the network (in place, like ``nn.Module.to``) and return this model."""
        self.unet.to(device=device, dtype=dtype)
        return self

    def check_input(self, x_t: torch.Tensor) -> None:
        """Refuse inputs the network cannot take: wrong rank or channels, or a size it cannot halve."""
        levels = len(getattr(self.config, "ch_mult", None) or self.config.channel_mult)
        if x_t.ndim != 4 or x_t.shape[1] != self.in_channels:
            raise HSpaceError(f"expected images [N, {self.in_channels}, H, W], got {list(x_t.shape)}")
        div = 2 ** (levels - 1)
        if x_t.shape[-1] % div or x_t.shape[-2] % div:
            raise HSpaceError(f"image size {x_t.shape[-2]}x{x_t.shape[-1]} must be divisible by {div} "
                              f"for this network (native size {self.image_size})")

    def encode(self, x_t: torch.Tensor, t: torch.Tensor) -> Encoded:
        """Encoder and middle block at (x_t, t).

        x_t: [N, C, H, W] (any float dtype; cast to the network's); t: [N] int64 schedule indices in [0, T).
        h and emb come back in the network's dtype.
        """
        return self.unet.encode(x_t.to(self.dtype), self.schedule.model_time(t))

    def decode(self, enc: Encoded, h: torch.Tensor) -> Prediction:
        """Decoder from h: [k*N, C_h, H_h, W_h] (k copies per encoded sample) -> Prediction [k*N, ...].

        eps (and the variance value) come back in float32: the sampler's arithmetic stays in float32
        when the network runs in a reduced precision (alpha_bar near 1 is not representable in bf16)."""
        out = self.unet.decode(enc, h.to(self.dtype)).float()
        c = self.in_channels
        if self.learn_sigma:
            return Prediction(out[:, :c], out[:, c:])
        return Prediction(out, None)

    def predict(self, x_t: torch.Tensor, t: torch.Tensor) -> Prediction:
        """One full forward pass (``decode(encode(x_t, t), h)``)."""
        enc = self.encode(x_t, t)
        return self.decode(enc, enc.h)

    def info(self) -> dict:
        """What ``python -m hspace_core info`` prints: family, config, resolution, h shape, size."""
        return {
            "source": self.source,
            "container": self.container,
            "family": self.family.value,
            "network": self.network,
            "config": asdict(self.config),
            "resolution": self.image_size,
            "h_shape": list(self.h_shape),
            "parameters": self.num_params,
            "learn_sigma": self.learn_sigma,
            "schedule": self.schedule.describe(),
            "fingerprint": self.fingerprint,
            "warnings": list(self.warnings),
        }
