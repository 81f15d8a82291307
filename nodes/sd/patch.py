"""The output-block patches at ("output", 0), where h is the middle block's output: ``HSpacePatch`` shifts h
(the engine's ``host.shift_h``), ``HRecorder`` keeps it; and the transformer_options key that switches
the Asyrp sampler's edit call on."""

from __future__ import annotations

import torch

from hspace_core import HSpaceError
from hspace_core.discovery.host import Recording
from hspace_core.host import HostShift, shift_h

from .family import _timesteps

EDIT_KEY = "hspace_edit"  # transformer_options key: per-row strengths of the Asyrp sampler's edit call
H_BLOCK = ("output", 0)


class HSpacePatch:
    """The output-block patch that shifts h at ("output", 0). Holds one ``HostShift``; ComfyUI moves
    patches with ``.to(device)`` (nothing to move: directions go to h's device when applied)."""

    def __init__(self, shift: HostShift, model_sampling):
        self.shift, self.model_sampling = shift, model_sampling

    def __call__(self, h, hsp, transformer_options):
        if transformer_options.get("block") != H_BLOCK:
            return h, hsp
        if "sigmas" not in transformer_options:
            raise HSpaceError("the h-space patch was called without the step's sigmas (transformer_options['sigmas']); "
                              "run the model through a ComfyUI sampler")
        t = _timesteps(self.model_sampling, transformer_options["sigmas"])
        h = shift_h(h, [self.shift], t, transformer_options["cond_or_uncond"],
                    edit_scales=transformer_options.get(EDIT_KEY))
        return h, hsp

    def to(self, device):
        return self


def keep_chunks(records: dict[int, list], recording: Recording, h: torch.Tensor, t: torch.Tensor, chunks) -> None:
    """Append (t, h) of each cond / uncond chunk of the batch h to ``records[chunk]`` as ``recording`` keeps it."""
    n = h.shape[0] // len(chunks)
    for j, c in enumerate(chunks):
        t_c = float(t[(j * n) % len(t)])
        kept = recording.take(t_c, h[j * n:(j + 1) * n])
        if kept is not None:
            records[c].append((t_c, kept))


class HRecorder:
    """An output-block patch that keeps (t, h of each chunk) at ("output", 0), unchanged."""

    def __init__(self, model_sampling, recording: Recording = Recording()):
        self.model_sampling = model_sampling
        self.recording = recording
        self.records: dict[int, list[tuple[float, torch.Tensor]]] = {0: [], 1: []}

    def __call__(self, h, hsp, transformer_options):
        if transformer_options.get("block") == H_BLOCK:
            t = _timesteps(self.model_sampling, transformer_options["sigmas"])
            keep_chunks(self.records, self.recording, h, t, transformer_options["cond_or_uncond"])
        return h, hsp

    def to(self, device):
        return self


def _patches(model_options) -> list:
    return model_options.get("transformer_options", {}).get("patches", {}).get("output_block_patch", [])


def asymmetric_shifts(model_options) -> list[HostShift]:
    return [p.shift for p in _patches(model_options) if isinstance(p, HSpacePatch) and p.shift.mode == "asymmetric"]


def _with_transformer_option(model_options: dict, key: str, value) -> dict:
    opts = dict(model_options)
    opts["transformer_options"] = {**model_options.get("transformer_options", {}), key: value}
    return opts
