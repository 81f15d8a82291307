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
import math
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


def _optional(d: dict, key: str, kind, where: str):
    value = d.get(key)
    if value is not None and (not isinstance(value, kind) or isinstance(value, bool) and kind is not bool):
        raise HSpaceError(f"{where}: direction metadata {key!r} is {value!r}, not a {kind.__name__}")
    return value


def _info_from(d, where: str) -> DirectionInfo:
    """A ``DirectionInfo`` from the file's JSON, every field checked (the file may come from anywhere)."""
    if not isinstance(d, dict):
        raise HSpaceError(f"{where}: direction metadata is {type(d).__name__}, not a JSON object")
    shape = d.get("h_shape")
    if not isinstance(shape, list) or len(shape) != 3 or \
            not all(isinstance(x, int) and not isinstance(x, bool) and 1 <= x <= 65536 for x in shape):
        raise HSpaceError(f"{where}: direction metadata is incomplete (h_shape {shape!r}: expected 3 positive "
                          "integers [C, H, W])")
    made_steps, t_edit = _optional(d, "made_steps", int, where), _optional(d, "t_edit", int, where)
    if made_steps is not None and not 1 <= made_steps <= 100_000:
        raise HSpaceError(f"{where}: direction metadata made_steps {made_steps} is outside [1, 100000]")
    if t_edit is not None and not 0 <= t_edit <= 100_000:
        raise HSpaceError(f"{where}: direction metadata t_edit {t_edit} is outside [0, 100000]")
    return DirectionInfo(h_shape=tuple(shape), network_fingerprint=_optional(d, "network_fingerprint", str, where),
                         family=_optional(d, "family", str, where), made_steps=made_steps,
                         strength_unit=_optional(d, "strength_unit", str, where) or "raw",
                         name=_optional(d, "name", str, where) or "",
                         provenance=_optional(d, "provenance", dict, where) or {}, t_edit=t_edit,
                         which_h=_optional(d, "which_h", str, where) or "middle_block_output",
                         calibration=_calibration(d, where))


def _calibration(d: dict, where: str) -> dict | None:
    """The calibration record, checked (``Calibration.from_json``); None for files made without one."""
    from .calibration import Calibration

    value = d.get("calibration")
    return None if value is None else Calibration.from_json(value, where).to_json()


def _tensor_term(tensors: dict, i: int, info: DirectionInfo, where: str) -> TensorDirection:
    """Term i's values (and timesteps), checked against the h it says it was made for."""
    from ..checkpoint_files import check_weights

    if f"term{i}.values" not in tensors:
        raise HSpaceError(f"{where}: term {i} has no values tensor")
    values, timesteps = tensors[f"term{i}.values"], tensors.get(f"term{i}.timesteps")
    check_weights({f"term{i}.values": values}, where)
    if timesteps is not None:
        if timesteps.dtype not in (torch.int64, torch.int32, torch.int16) or timesteps.ndim != 1 or \
                len(timesteps) == 0 or int(timesteps.min()) < 0 or values.ndim == 0 or \
                len(timesteps) != values.shape[0]:
            raise HSpaceError(f"{where}: term {i}'s timesteps ({str(timesteps.dtype).replace('torch.', '')} "
                              f"{list(timesteps.shape)}) are not one non-negative integer timestep per slice of its "
                              f"values {list(values.shape)}")
    one = values.shape[1:] if timesteps is not None else values.shape
    try:
        fits = len(one) <= 3 and torch.broadcast_shapes(tuple(one), info.h_shape) == info.h_shape
    except RuntimeError:
        fits = False
    if not fits:
        raise HSpaceError(f"{where}: term {i}'s values {list(values.shape)} do not fit the h it was made for "
                          f"{list(info.h_shape)}")
    try:
        return TensorDirection(values.float(), None if timesteps is None else timesteps.to(torch.int64), info)
    except HSpaceError as e:
        raise HSpaceError(f"{where}: term {i}: {e}") from None


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
    path = Path(path)
    if path.suffix != ".safetensors":
        raise HSpaceError(f"{path}: direction files are .safetensors")
    if path.exists() and not overwrite:
        raise HSpaceError(f"{path}: already exists; choose another name")
    _write(*_contents(direction), path)
    return path


def save_direction_by_content(direction: Direction, folder: str | Path, prefix: str) -> tuple[Path, bool]:
    """Write ``direction`` as ``<folder>/<prefix>_<digest>.safetensors``, the digest the first 12 hex digits
    of a SHA-256 of its tensors and metadata (``content_digest``): the same direction is always the same
    one file. Returns (path, whether it was written now). A file of that name holding anything else is
    kept, and the new one gets a counter after the digest."""
    tensors, metadata = _contents(direction)
    digest = content_digest(tensors, metadata)[:12]
    folder = Path(folder)
    for n in range(1000):
        path = folder / (f"{prefix}_{digest}.safetensors" if n == 0 else f"{prefix}_{digest}_{n}.safetensors")
        if not path.exists():
            _write(tensors, metadata, path)
            return path, True
        try:
            if content_digest(*read_safetensors(path))[:12] == digest:
                return path, False
        except HSpaceError:
            pass  # not a direction file of ours: kept as it is
    raise HSpaceError(f"{folder}: too many files named {prefix}_{digest}_*.safetensors")


def content_digest(tensors: dict[str, torch.Tensor], metadata: dict[str, str]) -> str:
    """SHA-256 (hex) of a direction file's content: its metadata and its tensors' names, dtypes, shapes and
    bytes, in sorted order (the file's bytes are not canonical: safetensors writes the metadata in
    hash-map order)."""
    import hashlib

    h = hashlib.sha256(json.dumps(metadata, sort_keys=True).encode())
    for name in sorted(tensors):
        t = tensors[name].detach().cpu().contiguous()
        h.update(f"{name}|{t.dtype}|{list(t.shape)}|".encode())
        h.update(t.view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return h.hexdigest()


def _write(tensors: dict[str, torch.Tensor], metadata: dict[str, str], path: Path) -> None:
    """Atomically (a temporary name, then a rename)."""
    from safetensors.torch import save_file

    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    save_file(tensors, str(tmp), metadata=metadata)
    tmp.replace(path)


def _contents(direction: Direction) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """The direction file's tensors and metadata."""
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
    return tensors, {"hspace.format": FORMAT, "hspace.direction": json.dumps(meta)}


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
    except (json.JSONDecodeError, RecursionError) as e:
        raise HSpaceError(f"{path}: corrupt direction metadata ({type(e).__name__})") from None
    info = _info_from(d, str(path))
    listed = d.get("terms", [])
    if not isinstance(listed, list) or not all(isinstance(term, dict) for term in listed):
        raise HSpaceError(f"{path}: direction metadata 'terms' is not a list of objects")
    terms = []
    for i, term in enumerate(listed):
        tinfo = _info_from(term.get("info", {}), str(path))
        coefficient = term.get("coefficient", 1.0)
        if isinstance(coefficient, bool) or not isinstance(coefficient, (int, float)) or \
                not math.isfinite(coefficient):
            raise HSpaceError(f"{path}: term {i}'s coefficient {coefficient!r} is not a finite number")
        if term.get("kind") == "tensor":
            direction: Direction = _tensor_term(tensors, i, tinfo, str(path))
        elif term.get("kind") == "deltablock":
            prefix = f"term{i}.block."
            sd = {k[len(prefix):]: v for k, v in tensors.items() if k.startswith(prefix)}
            block = block_from_state_dict(sd, f"{path} term {i}")
            if block.channels != tinfo.channels:
                raise HSpaceError(f"{path}: term {i}'s DeltaBlock has {block.channels} channels, but its metadata "
                                  f"says h has {tinfo.channels}")
            direction = DeltaBlockDirection(block, tinfo)
        else:
            raise HSpaceError(f"{path}: unknown direction kind {term.get('kind')!r}")
        terms.append((direction, float(coefficient)))
    if not terms:
        raise HSpaceError(f"{path}: the direction file holds no terms")
    if any(t.info.channels != info.channels for t, _ in terms):
        raise HSpaceError(f"{path}: its terms were made for h of other channel counts than the direction's "
                          f"{info.channels}")
    if len(terms) == 1 and terms[0][1] == 1.0 and not d.get("sqrt_n"):
        return terms[0][0]
    return DirectionMix(tuple(terms), info=info, sqrt_n=bool(d.get("sqrt_n")))
