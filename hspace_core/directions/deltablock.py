"""The official Asyrp implicit function f_t ("DeltaBlock") and import of the released checkpoints.

Two flavours, matching the host network (asyrp.md 4.1, 4.2), both 1x1 convolutions with an added
time embedding, no residual and no zero-init:
  * DDPM hosts:  f(h, e) = conv2(SiLU(GN_1e-6(conv1(h) + temb_proj(SiLU(e)))))
  * ADM hosts:   f(h, e) = out_layers(in_layers(h) + emb_layers(e)), with
                 in_layers = GN32 -> SiLU -> conv1x1, emb_layers = SiLU -> Linear,
                 out_layers = GN32 -> SiLU -> Dropout(0) -> conv1x1.
e is the host's final time embedding (after its MLP), ``Encoded.emb``. Parameter names are the
official state dicts', so released files load strictly.
"""

from __future__ import annotations

import re
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import HSpaceError
from ..unets.adm import GroupNorm32
from .base import DeltaBlockDirection, DirectionInfo

DDPM_KEYS = {"conv1.weight", "conv1.bias", "temb_proj.weight", "temb_proj.bias", "norm2.weight", "norm2.bias",
             "conv2.weight", "conv2.bias"}
ADM_KEYS = {"in_layers.0.weight", "in_layers.0.bias", "in_layers.2.weight", "in_layers.2.bias",
            "emb_layers.1.weight", "emb_layers.1.bias", "out_layers.0.weight", "out_layers.0.bias",
            "out_layers.3.weight", "out_layers.3.bias"}


class DDPMDeltaBlock(nn.Module):
    """f_t for DDPM hosts. h: [N, C, H, W]; emb: [N, E] -> delta_h [N, C, H, W]."""

    flavour = "ddpm"

    def __init__(self, channels: int, emb_channels: int):
        super().__init__()
        self.channels, self.emb_channels = channels, emb_channels
        self.conv1 = nn.Conv2d(channels, channels, 1)
        self.temb_proj = nn.Linear(emb_channels, channels)
        self.norm2 = nn.GroupNorm(32, channels, eps=1e-6)
        self.conv2 = nn.Conv2d(channels, channels, 1)

    def forward(self, h: torch.Tensor, emb: torch.Tensor) -> torch.Tensor:
        x = self.conv1(h) + self.temb_proj(F.silu(emb))[:, :, None, None]
        return self.conv2(F.silu(self.norm2(x)))


class ADMDeltaBlock(nn.Module):
    """f_t for ADM hosts. h: [N, C, H, W]; emb: [N, E] -> delta_h [N, C, H, W]."""

    flavour = "adm"

    def __init__(self, channels: int, emb_channels: int):
        super().__init__()
        self.channels, self.emb_channels = channels, emb_channels
        self.in_layers = nn.Sequential(GroupNorm32(channels), nn.SiLU(), nn.Conv2d(channels, channels, 1))
        self.emb_layers = nn.Sequential(nn.SiLU(), nn.Linear(emb_channels, channels))
        self.out_layers = nn.Sequential(GroupNorm32(channels), nn.SiLU(), nn.Dropout(0.0),
                                        nn.Conv2d(channels, channels, 1))

    def forward(self, h: torch.Tensor, emb: torch.Tensor) -> torch.Tensor:
        x = self.in_layers(h) + self.emb_layers(emb).type(h.dtype)[:, :, None, None]
        return self.out_layers(x)


FLAVOURS = {"ddpm": DDPMDeltaBlock, "adm": ADMDeltaBlock}


def block_from_state_dict(sd: dict[str, torch.Tensor], where: str) -> nn.Module:
    """Build the DeltaBlock a state dict belongs to and load it strictly (a partial load would leave a
    random block that still edits strongly: asyrp.md 4.5). Shapes are checked on a block built on the
    meta device first, so that a few small tensors cannot make it allocate a huge block."""
    from ..checkpoint_files import check_weights

    if not isinstance(sd, dict) or not all(isinstance(k, str) for k in sd):
        raise HSpaceError(f"{where}: not an Asyrp DeltaBlock (expected a dict of named tensors)")
    keys = set(sd)
    if keys == DDPM_KEYS:
        cls, width_key, emb_key = DDPMDeltaBlock, "conv1.weight", "temb_proj.weight"
    elif keys == ADM_KEYS:
        cls, width_key, emb_key = ADMDeltaBlock, "in_layers.2.weight", "emb_layers.1.weight"
    else:
        raise HSpaceError(f"{where}: not an Asyrp DeltaBlock (expected the 8 DDPM-flavour or 10 ADM-flavour keys, "
                          f"found {sorted(keys)[:6]}{' ...' if len(keys) > 6 else ''})")
    check_weights(sd, where)
    width, emb = sd[width_key], sd[emb_key]
    if width.ndim != 4 or emb.ndim != 2:
        raise HSpaceError(f"{where}: DeltaBlock tensors have inconsistent shapes ({width_key} {list(width.shape)}, "
                          f"{emb_key} {list(emb.shape)})")
    try:
        with torch.device("meta"):
            shell = cls(width.shape[0], emb.shape[1])
    except (ValueError, RuntimeError) as e:  # e.g. a channel count GroupNorm's 32 groups cannot divide
        raise HSpaceError(f"{where}: DeltaBlock tensors describe no block ({str(e).splitlines()[0]})") from None
    wrong = [k for k, v in shell.state_dict().items() if tuple(v.shape) != tuple(sd[k].shape)]
    if wrong:
        k = wrong[0]
        raise HSpaceError(f"{where}: DeltaBlock tensors have inconsistent shapes ({k}: {list(sd[k].shape)}, "
                          f"expected {list(shell.state_dict()[k].shape)})")
    block = cls(width.shape[0], emb.shape[1])
    block.load_state_dict({k: v.float() for k, v in sd.items()}, strict=True)
    return block.eval().requires_grad_(False)


_OFFICIAL_NAME = re.compile(r"(?P<attr>.+)_LC_(?P<category>.+)_t(?P<t0>\d+)_ninv(?P<ninv>\d+)_ngen(?P<ngen>\d+)_(?P<it>\d+)$")


def load_official_deltablock(path: str | Path) -> DeltaBlockDirection:
    """Import a released Asyrp checkpoint ``{attr}_LC_{category}_t999_ninv40_ngen40_0.pth``.

    Read with ``torch.load(weights_only=True)``; only the block under key "0" is used (the optimizer
    and scheduler states are ignored). The files store nothing else, so the attribute, data set and
    training step count (``ngen``: n_train_step, which sets the strength's step scaling) come from
    the file name; without it 40 steps are assumed, as for every released file.
    """
    from ..checkpoint_files import check_declared_size, read_torch, sniff_format

    path = Path(path)
    if not path.is_file():
        raise HSpaceError(f"{path}: no such file")
    kind = sniff_format(path)
    if kind not in ("torch-zip", "torch-pickle"):
        raise HSpaceError(f"{path}: not a torch checkpoint; official Asyrp directions are .pth files")
    obj = read_torch(path, kind)
    if not isinstance(obj, dict) or not isinstance(obj.get("0"), dict):
        raise HSpaceError(f"{path}: not an official Asyrp direction (no DeltaBlock under key '0')")
    check_declared_size(obj["0"], path)
    block = block_from_state_dict(obj["0"], str(path))
    m = _OFFICIAL_NAME.match(path.stem)
    made_steps = int(m["ngen"]) if m else 40
    name = m["attr"] if m else path.stem
    info = DirectionInfo(
        h_shape=(block.channels, 1, 1), network_fingerprint=None, family=block.flavour, made_steps=made_steps,
        strength_unit="asyrp", name=name,
        provenance={"method": "asyrp_official", "file": path.name,
                    "dataset": m["category"] if m else None, "t_0": int(m["t0"]) if m else None,
                    "n_inv_step": int(m["ninv"]) if m else None, "n_train_step": made_steps},
    )
    return DeltaBlockDirection(block=block, info=info)
