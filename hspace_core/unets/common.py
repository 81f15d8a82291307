"""Pieces shared by the UNet families: the encoder's result and the sinusoidal time embedding."""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch


@dataclass(frozen=True, eq=False)
class Encoded:
    """One encoder pass at (x_t, t): the bottleneck h and everything the decoder needs besides it.

    h:     [N, C_h, H_h, W_h] the middle block's output ("h-space").
    skips: the encoder activations the decoder concatenates, in push order, each [N, C_i, H_i, W_i].
    emb:   [N, E] the final time embedding (after the embedding MLP); DeltaBlocks read it too.
    """

    h: torch.Tensor
    skips: tuple[torch.Tensor, ...]
    emb: torch.Tensor

    @property
    def batch(self) -> int:
        return self.h.shape[0]


def timestep_embedding(t: torch.Tensor, dim: int, *, flip_sin_to_cos: bool, freq_shift: float,
                       max_period: float = 10000.0) -> torch.Tensor:
    """Sinusoidal embedding of timesteps ``t`` ([N], any real dtype) -> [N, dim] float32.

    Frequencies exp(-ln(max_period) * k / (half - freq_shift)), k = 0..half-1, laid out [sin, cos]
    or, with ``flip_sin_to_cos``, [cos, sin]. DDIM/SDEdit: shift 1, [sin, cos]; ADM: shift 0,
    [cos, sin]; diffusers: both from config.json (checkpoints.md section 6).
    """
    half = dim // 2
    exponent = -math.log(max_period) * torch.arange(half, dtype=torch.float32, device=t.device)
    freqs = torch.exp(exponent / (half - freq_shift))
    args = t.to(torch.float32)[:, None] * freqs[None]
    emb = torch.cat([torch.sin(args), torch.cos(args)], dim=-1)
    if flip_sin_to_cos:
        emb = torch.cat([emb[:, half:], emb[:, :half]], dim=-1)
    if dim % 2:
        emb = torch.nn.functional.pad(emb, (0, 1))
    return emb


def add(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """a + b, written into ``a`` when no gradient is being recorded (``a`` must be a fresh tensor).

    Inference on CPU is bound by memory traffic at 256 px; in-place residual adds and activations
    save about a third of a forward pass (bench/forward.py).
    """
    return a.add_(b) if not torch.is_grad_enabled() else a + b


def silu(x: torch.Tensor) -> torch.Tensor:
    """SiLU, in place when no gradient is being recorded (``x`` must be a fresh tensor)."""
    return torch.nn.functional.silu(x, inplace=not torch.is_grad_enabled())


def split_group_norm(norm: torch.nn.GroupNorm, a: torch.Tensor, s: torch.Tensor,
                     float32: bool = False) -> tuple[torch.Tensor, torch.Tensor] | None:
    """GroupNorm of ``cat([a, s], 1)`` computed as two parts, or None if a group straddles them.

    a: [k*N, C_a, H, W] (k copies); s: [N, C_s, H, W] (shared). GroupNorm statistics are per
    group of adjacent channels, so when C_a is a multiple of the group size the two parts are
    normalised independently and the shared part need not be repeated k times.
    """
    c_a, c = a.shape[1], norm.num_channels
    group = c // norm.num_groups
    if c_a % group:
        return None
    g_a = c_a // group
    w, b = norm.weight, norm.bias

    def gn(x, groups, w_, b_):
        y = torch.nn.functional.group_norm(x.float() if float32 else x, groups, w_, b_, norm.eps)
        return y.type(x.dtype)

    return gn(a, g_a, w[:c_a], b[:c_a]), gn(s, norm.num_groups - g_a, w[c_a:], b[c_a:])


def split_conv(conv: torch.nn.Conv2d, a: torch.Tensor, s: torch.Tensor, k: int) -> torch.Tensor:
    """``conv(cat([a, s.repeat(k)], 1))`` by linearity: conv_a(a) + conv_s(s), s convolved once.

    a: [k*N, C_a, H, W]; s: [N, C_s, H, W]; returns [k*N, C_out, H', W'].
    """
    c_a = a.shape[1]
    pad, stride = conv.padding, conv.stride
    out = torch.nn.functional.conv2d(a, conv.weight[:, :c_a], conv.bias, stride, pad)
    shared = torch.nn.functional.conv2d(s, conv.weight[:, c_a:], None, stride, pad)
    return add(out.view(k, s.shape[0], *out.shape[1:]), shared).reshape(out.shape)
