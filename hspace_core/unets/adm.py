"""The ADM UNet of openai improved-diffusion / guided-diffusion (P2-weighting, ILVR, ADM, iDDPM).

Parameter names are those of the openai state dicts (``time_embed.{0,2}``,
``input_blocks.{k}.{m}``, ``middle_block.{0,1,2}``, ``output_blocks.{k}.{m}``, ``out.{0,2}``),
so the released ``*.pt`` files load as they are. What the weights do not store (head count,
qkv order, image size) comes from the config (checkpoints.md section 3.3).

h-space is the output of ``middle_block``. The network may predict 2 * in_channels outputs
(eps, then the learned-variance interpolation value v); splitting them is the caller's job.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from .common import Encoded, add, silu, split_conv, split_group_norm, timestep_embedding


@dataclass(frozen=True)
class ADMConfig:
    """Architecture of an ADM UNet.

    attention_ds: downsample factors (1, 2, 4, ...) whose blocks carry attention; guided-diffusion's
    flags give image resolutions, converted with ``image_size // res``.
    Heads: ``num_head_channels`` channels per head when set, else ``num_heads`` heads.
    """

    model_channels: int = 128
    channel_mult: tuple[float, ...] = (1, 1, 2, 2, 4, 4)
    num_res_blocks: int = 1
    attention_ds: tuple[int, ...] = (16,)
    in_channels: int = 3
    out_channels: int = 6
    num_heads: int = 1
    num_head_channels: int | None = 64
    use_scale_shift_norm: bool = True
    resblock_updown: bool = True
    conv_resample: bool = True
    use_new_attention_order: bool = False
    image_size: int = 256

    @property
    def learn_sigma(self) -> bool:
        return self.out_channels == 2 * self.in_channels

    @property
    def h_channels(self) -> int:
        return int(self.model_channels * self.channel_mult[-1])

    def h_shape(self, image_size: int | None = None) -> tuple[int, int, int]:
        s = (image_size or self.image_size) // 2 ** (len(self.channel_mult) - 1)
        return (self.h_channels, s, s)


class GroupNorm32(nn.GroupNorm):
    """GroupNorm(32, eps 1e-5) computed in float32 whatever the activation dtype (guided-diffusion)."""

    def __init__(self, channels: int):
        super().__init__(32, channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return super().forward(x.float()).type(x.dtype)


class ResBlock(nn.Module):
    """in_layers (GN, SiLU, conv) -> + emb or FiLM -> out_layers (GN, SiLU, dropout, conv) + skip.

    ``resample`` "down"/"up" makes it a resampling block (guided's resblock_updown): the
    average-pool or nearest upsampling is applied to both paths before the first conv.
    """

    def __init__(self, c_in: int, c_out: int, emb_ch: int, scale_shift: bool, resample: str | None = None):
        super().__init__()
        self.scale_shift = scale_shift
        self.resample = resample
        self.in_layers = nn.Sequential(GroupNorm32(c_in), nn.SiLU(), nn.Conv2d(c_in, c_out, 3, padding=1))
        self.emb_layers = nn.Sequential(nn.SiLU(), nn.Linear(emb_ch, 2 * c_out if scale_shift else c_out))
        self.out_layers = nn.Sequential(GroupNorm32(c_out), nn.SiLU(), nn.Dropout(0.0),
                                        nn.Conv2d(c_out, c_out, 3, padding=1))
        if c_in != c_out:
            self.skip_connection = nn.Conv2d(c_in, c_out, 1)

    def _resample(self, x: torch.Tensor) -> torch.Tensor:
        if self.resample == "down":
            return F.avg_pool2d(x, 2, 2)
        if self.resample == "up":
            return F.interpolate(x, scale_factor=2.0, mode="nearest")
        return x

    def forward(self, x: torch.Tensor, emb: torch.Tensor) -> torch.Tensor:
        """x: [N, c_in, H, W]; emb: [N, emb_ch] (before SiLU)."""
        h = silu(self.in_layers[0](x))
        h = self.in_layers[2](self._resample(h))
        x = self._resample(x)
        return self._rest(h, emb, self.skip_connection(x) if hasattr(self, "skip_connection") else x)

    def _rest(self, h: torch.Tensor, emb: torch.Tensor, skip: torch.Tensor) -> torch.Tensor:
        emb_out = self.emb_layers(emb).type(h.dtype)[:, :, None, None]
        if self.scale_shift:
            scale, shift = emb_out.chunk(2, dim=1)
            h = add(self.out_layers[0](h) * (1 + scale), shift)
        else:
            h = self.out_layers[0](add(h, emb_out))
        h = self.out_layers[3](silu(h))
        return add(h, skip)

    def forward_cat(self, a: torch.Tensor, s: torch.Tensor, emb: torch.Tensor, k: int) -> torch.Tensor:
        """``forward(cat([a, s repeated k times], 1))`` for an output block fed k copies of one pass.

        a: [k*N, C_a, H, W] from the h path; s: [N, C_s, H, W] the encoder skip; emb: [k*N, E].
        The skip's share of the first GroupNorm, conv and the skip connection is computed once.
        """
        parts = split_group_norm(self.in_layers[0], a, s, float32=True) if k > 1 and not self.resample else None
        if parts is None:
            return self(torch.cat([a, s.repeat(k, 1, 1, 1) if k > 1 else s], dim=1), emb)
        na, ns = parts
        h = split_conv(self.in_layers[2], silu(na), silu(ns), k)
        return self._rest(h, emb, split_conv(self.skip_connection, a, s, k))


class AttentionBlock(nn.Module):
    """Self-attention with a fused Conv1d qkv projection over the flattened H*W positions.

    qkv rows are laid out per head ([h0: q k v][h1: q k v]...; "legacy", every unconditional
    checkpoint) or per projection ([q all heads][k ...][v ...]; ``new_order``).
    """

    def __init__(self, channels: int, heads: int, new_order: bool):
        super().__init__()
        if channels % heads:
            raise ValueError(f"attention width {channels} is not divisible into {heads} heads")
        self.heads = heads
        self.new_order = new_order
        self.norm = GroupNorm32(channels)
        self.qkv = nn.Conv1d(channels, 3 * channels, 1)
        self.proj_out = nn.Conv1d(channels, channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n, c, *spatial = x.shape
        x = x.reshape(n, c, -1)
        qkv = self.qkv(self.norm(x))
        length, ch = x.shape[-1], c // self.heads
        if self.new_order:
            q, k, v = qkv.reshape(n, 3, self.heads, ch, length).unbind(1)
        else:
            q, k, v = qkv.reshape(n, self.heads, 3, ch, length).unbind(2)
        # [N, heads, ch, T] -> [N, heads, T, ch]; softmax(q k^T / sqrt(ch)) v, as q and k each get ch^-1/4
        a = F.scaled_dot_product_attention(q.transpose(-1, -2), k.transpose(-1, -2), v.transpose(-1, -2))
        a = a.transpose(-1, -2).reshape(n, c, length)
        return add(self.proj_out(a), x).reshape(n, c, *spatial)


class Downsample(nn.Module):
    def __init__(self, channels: int, use_conv: bool):
        super().__init__()
        if use_conv:
            self.op = nn.Conv2d(channels, channels, 3, stride=2, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.op(x) if hasattr(self, "op") else F.avg_pool2d(x, 2, 2)


class Upsample(nn.Module):
    def __init__(self, channels: int, use_conv: bool):
        super().__init__()
        if use_conv:
            self.conv = nn.Conv2d(channels, channels, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.interpolate(x, scale_factor=2.0, mode="nearest")
        return self.conv(x) if hasattr(self, "conv") else x


class TimestepSequential(nn.ModuleList):
    """Runs its modules in order, passing the time embedding to the ResBlocks."""

    def forward(self, x: torch.Tensor, emb: torch.Tensor) -> torch.Tensor:
        return _run(self, x, emb)

    def forward_cat(self, a: torch.Tensor, s: torch.Tensor, emb: torch.Tensor, k: int) -> torch.Tensor:
        """As ``forward(cat([a, s repeated k times], 1))``; the first layer is an output ResBlock."""
        return _run(self[1:], self[0].forward_cat(a, s, emb, k), emb)


def _run(layers, x: torch.Tensor, emb: torch.Tensor) -> torch.Tensor:
    for layer in layers:
        x = layer(x, emb) if isinstance(layer, ResBlock) else layer(x)
    return x


class ADMUNet(nn.Module):
    """ADM UNet; ``forward(x, t)`` = ``decode(encode(x, t), h)``.

    x: [N, in_channels, H, W] in [-1, 1]; t: [N] time values as the network was trained on them
    (already rescaled for improved-diffusion's 4000-step models). Output [N, out_channels, H, W].
    """

    def __init__(self, cfg: ADMConfig):
        super().__init__()
        self.cfg = cfg
        mc = cfg.model_channels
        emb_ch = 4 * mc

        def heads(c: int) -> int:
            return c // cfg.num_head_channels if cfg.num_head_channels else cfg.num_heads

        def attn(c: int) -> AttentionBlock:
            return AttentionBlock(c, heads(c), cfg.use_new_attention_order)

        def res(c_in: int, c_out: int, resample: str | None = None) -> ResBlock:
            return ResBlock(c_in, c_out, emb_ch, cfg.use_scale_shift_norm, resample)

        self.time_embed = nn.Sequential(nn.Linear(mc, emb_ch), nn.SiLU(), nn.Linear(emb_ch, emb_ch))
        ch = ch0 = int(cfg.channel_mult[0] * mc)
        self.input_blocks = nn.ModuleList([TimestepSequential([nn.Conv2d(cfg.in_channels, ch, 3, padding=1)])])
        skip_widths = [ch]
        ds = 1
        for level, mult in enumerate(cfg.channel_mult):
            for _ in range(cfg.num_res_blocks):
                layers: list[nn.Module] = [res(ch, int(mult * mc))]
                ch = int(mult * mc)
                if ds in cfg.attention_ds:
                    layers.append(attn(ch))
                self.input_blocks.append(TimestepSequential(layers))
                skip_widths.append(ch)
            if level != len(cfg.channel_mult) - 1:
                down = res(ch, ch, "down") if cfg.resblock_updown else Downsample(ch, cfg.conv_resample)
                self.input_blocks.append(TimestepSequential([down]))
                skip_widths.append(ch)
                ds *= 2

        self.middle_block = TimestepSequential([res(ch, ch), attn(ch), res(ch, ch)])

        self.output_blocks = nn.ModuleList()
        for level, mult in reversed(list(enumerate(cfg.channel_mult))):
            for i in range(cfg.num_res_blocks + 1):
                layers = [res(ch + skip_widths.pop(), int(mc * mult))]
                ch = int(mc * mult)
                if ds in cfg.attention_ds:
                    layers.append(attn(ch))
                if level and i == cfg.num_res_blocks:
                    layers.append(res(ch, ch, "up") if cfg.resblock_updown else Upsample(ch, cfg.conv_resample))
                    ds //= 2
                self.output_blocks.append(TimestepSequential(layers))

        self.out = nn.Sequential(GroupNorm32(ch), nn.SiLU(), nn.Conv2d(ch0, cfg.out_channels, 3, padding=1))
        # channels-last convolutions are about a quarter faster on CPU (oneDNN) and on GPU
        self.to(memory_format=torch.channels_last)

    def encode(self, x: torch.Tensor, t: torch.Tensor) -> Encoded:
        """Time embedding, input blocks and middle block. x: [N, C_in, H, W]; t: [N]."""
        emb = self.time_embed(timestep_embedding(t, self.cfg.model_channels, flip_sin_to_cos=True,
                                                 freq_shift=0.0).to(x.dtype))
        hs = []
        h = x.contiguous(memory_format=torch.channels_last)
        for block in self.input_blocks:
            h = block(h, emb)
            hs.append(h)
        h = self.middle_block(h, emb)
        return Encoded(h=h, skips=tuple(hs), emb=emb)

    def decode(self, enc: Encoded, h: torch.Tensor) -> torch.Tensor:
        """Output blocks from bottleneck ``h`` ([k*N, C_h, H_h, W_h], k copies per encoded sample)."""
        k = h.shape[0] // enc.batch
        if k * enc.batch != h.shape[0]:
            raise ValueError(f"h batch {h.shape[0]} is not a multiple of the encoded batch {enc.batch}")
        emb = enc.emb.repeat(k, 1)
        skips = list(enc.skips)
        for block in self.output_blocks:
            h = block.forward_cat(h, skips.pop(), emb, k)
        return self.out[2](silu(self.out[0](h)))

    def forward(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        enc = self.encode(x, t)
        return self.decode(enc, enc.h)
