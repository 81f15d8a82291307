"""The portable direction file: .safetensors tensors + JSON metadata, and official Asyrp imports.

Format ``hspace-direction-1`` (formats may be added, never changed). Metadata key
``hspace.direction`` holds JSON with: which h (``middle_block_output``), ``h_shape`` and channel
count, the model family and network fingerprint, the strength unit, the timestep grid facts
(``made_steps``; per-term timesteps are tensors), the suggested ``t_edit``, and ``provenance``
(method, texts or data, hyperparameters). The direction is a list of terms, each a tensor
direction (``term{i}.values`` and optionally ``term{i}.timesteps``) or a DeltaBlock
(``term{i}.block.*``) with a coefficient; one term with coefficient 1 is a plain direction.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict
from pathlib import Path

import torch

from ..checkpoint_files import read_safetensors
from ..errors import HSpaceError
from .base import DeltaBlockDirection, Direction, DirectionInfo, DirectionMix, TensorDirection
from .deltablock import block_from_state_dict, load_official_deltablock

FORMAT = "hspace-direction-1"


def _info_json(info: DirectionInfo) -> dict:
    d = asdict(info)
    d["h_shape"] = list(info.h_shape)
    d["channels"] = info.channels
    return d


def _info_from(d: dict, where: str) -> DirectionInfo:
    try:
        return DirectionInfo(h_shape=tuple(int(x) for x in d["h_shape"]),
                             network_fingerprint=d.get("network_fingerprint"), family=d.get("family"),
                             made_steps=d.get("made_steps"), strength_unit=d.get("strength_unit", "raw"),
                             name=d.get("name", ""), provenance=d.get("provenance") or {},
                             t_edit=d.get("t_edit"), which_h=d.get("which_h", "middle_block_output"))
    except (KeyError, TypeError, ValueError) as e:
        raise HSpaceError(f"{where}: direction metadata is incomplete ({e})") from None


def _flatten(direction: Direction) -> list[tuple[Direction, float]]:
    if isinstance(direction, DirectionMix):
        out = []
        for d, c in direction.terms:
            out += [(dd, c * cc) for dd, cc in _flatten(d)] if isinstance(d, DirectionMix) and not d.sqrt_n \
                else [(d, c)]
        return out
    return [(direction, 1.0)]


def save_direction(direction: Direction, path: str | Path, *, overwrite: bool = False) -> Path:
    """Write ``direction`` to ``path`` (.safetensors); refuses to replace a file unless ``overwrite``."""
    from safetensors.torch import save_file

    path = Path(path)
    if path.suffix != ".safetensors":
        raise HSpaceError(f"{path}: direction files are .safetensors")
    if path.exists() and not overwrite:
        raise HSpaceError(f"{path}: already exists; choose another name")
    terms = _flatten(direction)
    tensors: dict[str, torch.Tensor] = {}
    term_meta = []
    for i, (d, coefficient) in enumerate(terms):
        if isinstance(d, TensorDirection):
            tensors[f"term{i}.values"] = d.values.detach().float().cpu().contiguous()
            if d.timesteps is not None:
                tensors[f"term{i}.timesteps"] = d.timesteps.to(torch.int64).cpu().contiguous()
            kind = "tensor"
        elif isinstance(d, DeltaBlockDirection):
            for k, v in d.block.state_dict().items():
                tensors[f"term{i}.block.{k}"] = v.detach().float().cpu().contiguous()
            kind = "deltablock"
        elif isinstance(d, DirectionMix):  # a sqrt_n mix nested in another mix
            raise HSpaceError("a mix with the 1/sqrt(n) convention cannot be nested inside another mix in a file")
        else:
            raise HSpaceError(f"cannot save a {type(d).__name__}")
        term_meta.append({"kind": kind, "coefficient": coefficient, "info": _info_json(d.info)})
    sqrt_n = isinstance(direction, DirectionMix) and direction.sqrt_n
    meta = {**_info_json(direction.info), "terms": term_meta, "sqrt_n": sqrt_n}
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    save_file(tensors, str(tmp), metadata={"hspace.format": FORMAT, "hspace.direction": json.dumps(meta)})
    tmp.replace(path)
    return path


def load_direction(path: str | Path) -> Direction:
    """Load a direction: our .safetensors file, or an official Asyrp ``*_LC_*.pth`` DeltaBlock."""
    path = Path(path)
    if not path.exists():
        raise HSpaceError(f"{path}: no such file")
    if path.suffix.lower() in (".pth", ".pt", ".ckpt"):
        return load_official_deltablock(path)
    tensors, meta = read_safetensors(path)
    fmt = meta.get("hspace.format")
    if fmt is None or "hspace.direction" not in meta:
        raise HSpaceError(f"{path}: not an h-space direction file (no hspace.direction metadata; is it a model?)")
    if fmt != FORMAT:
        raise HSpaceError(f"{path}: direction format {fmt!r} is not supported by this version (reads {FORMAT!r})")
    try:
        d = json.loads(meta["hspace.direction"])
    except json.JSONDecodeError as e:
        raise HSpaceError(f"{path}: corrupt direction metadata ({e})") from None
    info = _info_from(d, str(path))
    terms = []
    for i, term in enumerate(d.get("terms", [])):
        tinfo = _info_from(term.get("info", {}), str(path))
        if term.get("kind") == "tensor":
            if f"term{i}.values" not in tensors:
                raise HSpaceError(f"{path}: term {i} has no values tensor")
            direction: Direction = TensorDirection(tensors[f"term{i}.values"], tensors.get(f"term{i}.timesteps"), tinfo)
        elif term.get("kind") == "deltablock":
            prefix = f"term{i}.block."
            sd = {k[len(prefix):]: v for k, v in tensors.items() if k.startswith(prefix)}
            direction = DeltaBlockDirection(block_from_state_dict(sd, f"{path} term {i}"), tinfo)
        else:
            raise HSpaceError(f"{path}: unknown direction kind {term.get('kind')!r}")
        terms.append((direction, float(term.get("coefficient", 1.0))))
    if not terms:
        raise HSpaceError(f"{path}: the direction file holds no terms")
    if len(terms) == 1 and terms[0][1] == 1.0 and not d.get("sqrt_n"):
        return terms[0][0]
    return DirectionMix(tuple(terms), info=info, sqrt_n=bool(d.get("sqrt_n")))
