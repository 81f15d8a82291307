"""The DDPM UNet of Ho et al. as ported by ermongroup/ddim (SDEdit, DiffusionCLIP, Asyrp).

Parameter names are those of the ermongroup ``Model`` state dict (``temb.dense.0``,
``down.{i}.block.{j}``, ``mid.block_1/attn_1/block_2``, ``up.{i}``, ...), so those checkpoints load
as they are; google's diffusers ``ddpm-*`` checkpoints are the same network and are renamed onto
these names by ``hspace_core.loading``. The numerics that differ between the two sources (time
embedding order and shift, GroupNorm eps, attention head width, downsample padding) are config
fields (checkpoints.md sections 2.4, 4.6 and 4.7).

h-space is the output of ``mid.block_2``; ``encode`` returns it explicitly, ``decode`` runs the up
path from any h (or a batch of several h's for one encoder pass).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from .common import Encoded, add, silu, split_conv, split_group_norm, timestep_embedding


@dataclass(frozen=True)
class DDPMConfig:
    """Architecture and numerics of a DDPM UNet (families A and C).

    Levels are numbered from the full-resolution level 0 down to level ``len(ch_mult) - 1``;
    ``attn_levels_down`` / ``attn_levels_up`` list the levels whose blocks carry self-attention
    (the same set in every known checkpoint; diffusers allows them to differ).
    """

    ch: int = 128
    ch_mult: tuple[int, ...] = (1, 1, 2, 2, 4, 4)
    num_res_blocks: int = 2
    attn_levels_down: tuple[int, ...] = (4,)
    attn_levels_up: tuple[int, ...] = (4,)
    in_channels: int = 3
    out_ch: int = 3
    resamp_with_conv: bool = True
    image_size: int = 256
    flip_sin_to_cos: bool = False
    freq_shift: float = 1.0
    norm_eps: float = 1e-6
    norm_groups: int = 32
    attention_head_dim: int | None = None  # None: one head over all channels
    downsample_padding: int = 0  # 0: pad right/bottom by 1 then conv (ermongroup); 1: symmetric
    center_input: bool = False  # diffusers center_input_sample: x -> 2x - 1

    @property
    def num_levels(self) -> int:
        return len(self.ch_mult)

    @property
    def h_channels(self) -> int:
        return self.ch * self.ch_mult[-1]

    def h_shape(self, image_size: int | None = None) -> tuple[int, int, int]:
        s = (image_size or self.image_size) // 2 ** (self.num_levels - 1)
        return (self.h_channels, s, s)


def _norm(channels: int, cfg: DDPMConfig) -> nn.GroupNorm:
    return nn.GroupNorm(cfg.norm_groups, channels, eps=cfg.norm_eps, affine=True)


class ResnetBlock(nn.Module):
    """GN -> SiLU -> conv3x3 -> + temb -> GN -> SiLU -> conv3x3, plus a 1x1 shortcut if widths differ."""

    def __init__(self, c_in: int, c_out: int, temb_ch: int, cfg: DDPMConfig):
        super().__init__()
        self.norm1 = _norm(c_in, cfg)
        self.conv1 = nn.Conv2d(c_in, c_out, 3, padding=1)
        self.temb_proj = nn.Linear(temb_ch, c_out)
        self.norm2 = _norm(c_out, cfg)
        self.conv2 = nn.Conv2d(c_out, c_out, 3, padding=1)
        if c_in != c_out:
            self.nin_shortcut = nn.Conv2d(c_in, c_out, 1)

    def forward(self, x: torch.Tensor, temb_act: torch.Tensor) -> torch.Tensor:
        """x: [N, c_in, H, W]; temb_act: [N, temb_ch] = SiLU(temb), shared by every block."""
        return self._rest(self.conv1(silu(self.norm1(x))), temb_act,
                          self.nin_shortcut(x) if hasattr(self, "nin_shortcut") else x)

    def _rest(self, h: torch.Tensor, temb_act: torch.Tensor, shortcut: torch.Tensor) -> torch.Tensor:
        h = add(h, self.temb_proj(temb_act)[:, :, None, None])
        h = self.conv2(silu(self.norm2(h)))
        return add(h, shortcut)

    def forward_cat(self, a: torch.Tensor, s: torch.Tensor, temb_act: torch.Tensor, k: int) -> torch.Tensor:
        """``forward(cat([a, s repeated k times], 1))`` for a decoder block fed k copies of one pass.

        a: [k*N, C_a, H, W] from the h path; s: [N, C_s, H, W] the encoder skip; temb_act: [k*N, E].
        The skip's share of norm1, conv1 and the shortcut is computed once (exact by linearity).
        """
        parts = split_group_norm(self.norm1, a, s) if k > 1 else None
        if parts is None:
            return self(torch.cat([a, s.repeat(k, 1, 1, 1) if k > 1 else s], dim=1), temb_act)
        na, ns = parts
        h = split_conv(self.conv1, silu(na), silu(ns), k)
        return self._rest(h, temb_act, split_conv(self.nin_shortcut, a, s, k))


class AttnBlock(nn.Module):
    """Self-attention over the H*W positions with 1x1-conv q, k, v, out projections and a residual."""

    def __init__(self, channels: int, cfg: DDPMConfig):
        super().__init__()
        self.norm = _norm(channels, cfg)
        self.q = nn.Conv2d(channels, channels, 1)
        self.k = nn.Conv2d(channels, channels, 1)
        self.v = nn.Conv2d(channels, channels, 1)
        self.proj_out = nn.Conv2d(channels, channels, 1)
        head_dim = cfg.attention_head_dim or channels
        if channels % head_dim:
            raise ValueError(f"attention width {channels} is not a multiple of head dim {head_dim}")
        self.heads = channels // head_dim

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n, c, hh, ww = x.shape
        h = self.norm(x)

        def heads(t: torch.Tensor) -> torch.Tensor:  # [N, C, H, W] -> [N, heads, HW, C/heads]
            return t.reshape(n, self.heads, c // self.heads, hh * ww).transpose(-1, -2)

        # scale (C/heads)^-1/2 on the logits, softmax over keys: ermongroup AttnBlock, diffusers Attention
        out = F.scaled_dot_product_attention(heads(self.q(h)), heads(self.k(h)), heads(self.v(h)))
        out = out.transpose(-1, -2).reshape(n, c, hh, ww)
        return add(self.proj_out(out), x)


class Downsample(nn.Module):
    def __init__(self, channels: int, cfg: DDPMConfig):
        super().__init__()
        self.with_conv = cfg.resamp_with_conv
        self.padding = cfg.downsample_padding
        if self.with_conv:
            self.conv = nn.Conv2d(channels, channels, 3, stride=2, padding=self.padding)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.with_conv:
            return F.avg_pool2d(x, 2, 2)
        if self.padding == 0:
            x = F.pad(x, (0, 1, 0, 1))  # ermongroup: zero-pad right and bottom only
        return self.conv(x)


class Upsample(nn.Module):
    def __init__(self, channels: int, cfg: DDPMConfig):
        super().__init__()
        self.with_conv = cfg.resamp_with_conv
        if self.with_conv:
            self.conv = nn.Conv2d(channels, channels, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.interpolate(x, scale_factor=2.0, mode="nearest")
        return self.conv(x) if self.with_conv else x


class DDPMUNet(nn.Module):
    """eps-prediction UNet; ``forward(x, t)`` = ``decode(encode(x, t), h)``.

    x: [N, in_channels, H, W] in [-1, 1] (H, W divisible by 2^(levels-1));
    t: [N] the time value the network was trained on (integer timesteps 0..T-1 here).
    Output: [N, out_ch, H, W].
    """

    def __init__(self, cfg: DDPMConfig):
        super().__init__()
        self.cfg = cfg
        ch, mult, n_blocks = cfg.ch, cfg.ch_mult, cfg.num_res_blocks
        temb_ch = 4 * ch
        widths = [ch * m for m in mult]

        self.temb = nn.Module()
        self.temb.dense = nn.ModuleList([nn.Linear(ch, temb_ch), nn.Linear(temb_ch, temb_ch)])
        self.conv_in = nn.Conv2d(cfg.in_channels, ch, 3, padding=1)

        self.down = nn.ModuleList()
        skip_widths = [ch]
        c = ch
        for i, w in enumerate(widths):
            level = nn.Module()
            level.block = nn.ModuleList()
            level.attn = nn.ModuleList()
            for _ in range(n_blocks):
                level.block.append(ResnetBlock(c, w, temb_ch, cfg))
                c = w
                if i in cfg.attn_levels_down:
                    level.attn.append(AttnBlock(c, cfg))
                skip_widths.append(c)
            if i != len(widths) - 1:
                level.downsample = Downsample(c, cfg)
                skip_widths.append(c)
            self.down.append(level)

        self.mid = nn.Module()
        self.mid.block_1 = ResnetBlock(c, c, temb_ch, cfg)
        self.mid.attn_1 = AttnBlock(c, cfg)
        self.mid.block_2 = ResnetBlock(c, c, temb_ch, cfg)

        # Built from the bottom level up, stored so that up[i] is level i (ermongroup prepends).
        up_levels = []
        for i in reversed(range(len(widths))):
            w = widths[i]
            level = nn.Module()
            level.block = nn.ModuleList()
            level.attn = nn.ModuleList()
            for _ in range(n_blocks + 1):
                level.block.append(ResnetBlock(c + skip_widths.pop(), w, temb_ch, cfg))
                c = w
                if i in cfg.attn_levels_up:
                    level.attn.append(AttnBlock(c, cfg))
            if i != 0:
                level.upsample = Upsample(c, cfg)
            up_levels.insert(0, level)
        self.up = nn.ModuleList(up_levels)

        self.norm_out = _norm(c, cfg)
        self.conv_out = nn.Conv2d(c, cfg.out_ch, 3, padding=1)
        # channels-last convolutions are about a quarter faster on CPU (oneDNN) and on GPU
        self.to(memory_format=torch.channels_last)

    def encode(self, x: torch.Tensor, t: torch.Tensor) -> Encoded:
        """Time embedding, down path and middle block. x: [N, C_in, H, W]; t: [N]."""
        cfg = self.cfg
        temb = timestep_embedding(t, cfg.ch, flip_sin_to_cos=cfg.flip_sin_to_cos,
                                  freq_shift=cfg.freq_shift).to(x.dtype)
        temb = self.temb.dense[1](F.silu(self.temb.dense[0](temb)))
        temb_act = F.silu(temb)
        if cfg.center_input:
            x = 2 * x - 1
        x = x.contiguous(memory_format=torch.channels_last)

        hs = [self.conv_in(x)]
        for i, level in enumerate(self.down):
            for j, block in enumerate(level.block):
                h = block(hs[-1], temb_act)
                if len(level.attn):
                    h = level.attn[j](h)
                hs.append(h)
            if hasattr(level, "downsample"):
                hs.append(level.downsample(hs[-1]))

        h = self.mid.block_1(hs[-1], temb_act)
        h = self.mid.attn_1(h)
        h = self.mid.block_2(h, temb_act)
        return Encoded(h=h, skips=tuple(hs), emb=temb)

    def decode(self, enc: Encoded, h: torch.Tensor) -> torch.Tensor:
        """Up path from bottleneck ``h`` ([k*N, C_h, H_h, W_h], k >= 1 copies per encoded sample)."""
        k = h.shape[0] // enc.batch
        if k * enc.batch != h.shape[0]:
            raise ValueError(f"h batch {h.shape[0]} is not a multiple of the encoded batch {enc.batch}")
        temb_act = F.silu(enc.emb).repeat(k, 1)
        skips = list(enc.skips)
        for i in reversed(range(len(self.up))):
            level = self.up[i]
            for j, block in enumerate(level.block):
                h = block.forward_cat(h, skips.pop(), temb_act, k)
                if len(level.attn):
                    h = level.attn[j](h)
            if hasattr(level, "upsample"):
                h = level.upsample(h)
        return self.conv_out(silu(self.norm_out(h)))

    def forward(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        enc = self.encode(x, t)
        return self.decode(enc, enc.h)
