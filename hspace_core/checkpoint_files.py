"""Reading weight files safely, and finding the state dict inside whatever wraps it.

Nothing here executes code from a file: safetensors are read with ``safetensors``; torch pickles
(.pt .pth .ckpt .bin) only with ``torch.load(weights_only=True)``, which refuses any global that is
not a tensor rebuild (checkpoints.md section 5.2). A refused pickle is reported with the global it
asked for and is never retried with ``weights_only=False``.
"""

from __future__ import annotations

import json
import pickle
import struct
from dataclasses import dataclass, field
from pathlib import Path

import torch

from .errors import HSpaceError

TORCH_SUFFIXES = (".pt", ".pth", ".ckpt", ".bin")
WEIGHT_SUFFIXES = (".safetensors",) + TORCH_SUFFIXES
# Wrapper keys of training checkpoints, in the order they are tried (checkpoints.md section 5.1).
WRAPPER_KEYS = ("state_dict", "ema", "ema_model", "model_ema", "model", "module", "net", "params_ema", "params")
SHARED_PREFIXES = ("module.", "_orig_mod.", "model.", "ema_model.")


@dataclass(frozen=True)
class RawCheckpoint:
    """A file's tensors before family detection.

    tensors:   flat state dict (name -> tensor), unwrapped.
    metadata:  safetensors ``__metadata__`` strings ({} for torch files).
    container: how the tensors were found, for messages ("safetensors", "torch zip, key 'ema'", ...).
    config:    a diffusers ``config.json`` dict when loaded from a model folder, else None.
    scheduler: a diffusers ``scheduler_config.json`` path when present, else None.
    """

    tensors: dict[str, torch.Tensor]
    metadata: dict[str, str] = field(default_factory=dict)
    container: str = ""
    config: dict | None = None
    scheduler: Path | None = None


FLOAT_DTYPES = (torch.float16, torch.bfloat16, torch.float32, torch.float64)


def _head(path: Path, n: int = 16) -> bytes:
    try:
        with Path(path).open("rb") as f:
            return f.read(n)
    except OSError as e:
        raise HSpaceError(f"{path}: cannot be read ({e.strerror or type(e).__name__})") from None


def sniff_format(path: Path) -> str:
    """'safetensors', 'torch-zip', 'torch-pickle' or 'unknown', from the first bytes."""
    head = _head(path)
    if len(head) >= 9:
        (n,) = struct.unpack("<Q", head[:8])
        if 2 <= n <= 100_000_000 and head[8:9] == b"{":
            return "safetensors"
    if head[:4] == b"PK\x03\x04":
        return "torch-zip"
    if head[:1] == b"\x80" and head[1:2] in (b"\x02", b"\x03", b"\x04", b"\x05"):
        return "torch-pickle"
    return "unknown"


def read_safetensors(path: Path) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """The one place a .safetensors file is read (models, directions, the probe, CLIP weights):
    (tensors on the CPU, the ``__metadata__`` strings). A missing or corrupt file is an HSpaceError."""
    from safetensors import safe_open

    path = Path(path)
    if not path.is_file():
        raise HSpaceError(f"{path}: no such file")
    try:
        with safe_open(str(path), framework="pt", device="cpu") as f:
            meta = dict(f.metadata() or {})
            tensors = {k: f.get_tensor(k) for k in f.keys()}
    except Exception as e:  # safetensors raises its own SafetensorError / OSError types
        raise HSpaceError(f"{path}: not a readable safetensors file (truncated or corrupt: {e})") from None
    return tensors, meta


def read_torch(path: Path, kind: str) -> object:
    """torch.load with weights_only=True; mmap for zip files, plain read for legacy pickles.
    ``kind`` is ``sniff_format(path)`` ("torch-zip" or "torch-pickle")."""
    try:
        try:
            return torch.load(path, map_location="cpu", weights_only=True, mmap=kind == "torch-zip")
        except RuntimeError as e:
            if "mmap" not in str(e):
                raise
            return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        msg = str(e)
        culprit = ""
        for line in msg.splitlines():
            if "Unsupported global" in line or "unsupported" in line.lower():
                culprit = line.strip().rstrip(".")
                break
        if "Weights only load failed" in msg or culprit:
            raise HSpaceError(
                f"{path}: refused to unpickle: the file holds Python objects, not only tensors "
                f"({culprit or 'non-tensor content'}); nothing from it was executed. If you trust its "
                "source, convert it to .safetensors with a trusted tool") from None
        raise HSpaceError(f"{path}: not a readable torch checkpoint ({msg.splitlines()[0][:200]})") from None
    except MemoryError:
        raise HSpaceError(f"{path}: not a readable torch checkpoint (it declares more memory than there is: "
                          "corrupt)") from None
    except Exception as e:  # noqa: BLE001 -- any failure of the unpickler on untrusted bytes is a corrupt file
        first = str(e).splitlines()[0][:200] if str(e) else type(e).__name__
        raise HSpaceError(f"{path}: not a readable torch checkpoint (truncated or corrupt: {first})") from None


def check_weights(tensors: dict, where) -> None:
    """Refuse weights (of a network or a direction) that are not finite floating-point tensors: a
    wrong dtype or a NaN would only show later, as a black image or a diverged edit."""
    for name, value in tensors.items():
        if not isinstance(value, torch.Tensor):
            raise HSpaceError(f"{where}: {name!r} is a {type(value).__name__}, not a tensor")
        if value.dtype not in FLOAT_DTYPES:
            raise HSpaceError(f"{where}: tensor {name!r} has dtype {str(value.dtype).replace('torch.', '')}; "
                              "weights are floating point (float16, bfloat16, float32 or float64)")
        if not bool(torch.isfinite(value).all()):
            raise HSpaceError(f"{where}: tensor {name!r} contains NaN or infinite values")


def check_declared_size(tensors: dict, path: Path) -> None:
    """Refuse tensors that declare more bytes than the file holds (views of one storage, zero strides):
    a torch pickle can describe a 4 GB network in a 4 MB file, which copying it would allocate."""
    size = Path(path).stat().st_size
    declared = sum(v.numel() * v.element_size() for v in tensors.values() if isinstance(v, torch.Tensor))
    if declared > size + (1 << 20):
        raise HSpaceError(f"{path}: its tensors declare {declared / 2**20:.1f} MiB of data in a {size / 2**20:.1f} "
                          "MiB file (shared or repeated storage): corrupt or crafted, refused")


def _is_tensor_dict(obj: object) -> bool:
    return isinstance(obj, dict) and len(obj) > 0 and all(
        isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in obj.items())


def _describe(obj: object) -> str:
    if isinstance(obj, dict):
        keys = list(obj)[:6]
        return f"a dict with keys {keys}{' ...' if len(obj) > 6 else ''}"
    if isinstance(obj, (list, tuple)):
        return f"a {type(obj).__name__} of {len(obj)} items"
    return f"a {type(obj).__name__}"


def strip_shared_prefix(sd: dict[str, torch.Tensor], accept) -> tuple[dict[str, torch.Tensor], str]:
    """Remove one wrapper prefix shared by every key when the result is accepted by ``accept(sd)``."""
    for prefix in SHARED_PREFIXES:
        if all(k.startswith(prefix) for k in sd):
            stripped = {k[len(prefix):]: v for k, v in sd.items()}
            if accept(stripped):
                return stripped, prefix
    return sd, ""


def unwrap(obj: object, path: Path, accept) -> tuple[dict[str, torch.Tensor], str]:
    """Find the model's state dict inside a loaded checkpoint object.

    ``accept(sd)`` says whether a candidate dict is a supported network's state dict. Handles plain
    state dicts, dicts wrapping one under ``WRAPPER_KEYS``, the ermongroup/ddim training list
    ``[model, optimizer, epoch, step, ema]`` (EMA, the last accepted entry, is preferred) and
    ``module.`` / ``_orig_mod.`` prefixes. Returns (state dict, description of where it was).
    """
    if isinstance(obj, dict) and {"state", "param_groups"} <= set(obj):
        raise HSpaceError(f"{path}: this is an optimizer state (keys 'state', 'param_groups'), not model "
                          "weights; guided-diffusion saves those as opt*.pt next to the model*.pt / ema_*.pt files")
    if isinstance(obj, dict) and "0" in obj and ("optimizer" in obj or "scheduler" in obj):
        raise HSpaceError(f"{path}: this is an Asyrp direction checkpoint (a DeltaBlock under key '0'), "
                          "not a diffusion model; load it as a direction")
    if _is_tensor_dict(obj):
        sd, prefix = strip_shared_prefix(obj, accept)
        return sd, f"state dict{f', prefix {prefix!r} removed' if prefix else ''}"
    if isinstance(obj, (list, tuple)):
        found = []
        for i, item in enumerate(obj):
            if _is_tensor_dict(item):
                sd, prefix = strip_shared_prefix(item, accept)
                found.append((i, sd, prefix))
        good = [f for f in found if accept(f[1])]
        if good:
            i, sd, prefix = good[-1]
            what = "EMA weights, last entry" if i == len(obj) - 1 and len(good) > 1 else f"entry {i}"
            return sd, f"{type(obj).__name__} of {len(obj)} items ({what}" + (
                f", prefix {prefix!r} removed)" if prefix else ")")
        if found:
            return found[0][1], f"{type(obj).__name__}, entry {found[0][0]}"
        raise HSpaceError(f"{path}: found {_describe(obj)} with no state dict of tensors in it")
    if isinstance(obj, dict):
        for key in WRAPPER_KEYS:
            if key in obj and isinstance(obj[key], (dict, list, tuple)):
                try:
                    sd, where = unwrap(obj[key], path, accept)
                except HSpaceError:
                    continue
                if accept(sd):
                    return sd, f"key {key!r}, {where}"
        nested = {k: v for k, v in obj.items() if _is_tensor_dict(v)}
        if len(nested) == 1:
            (key, value), = nested.items()
            sd, where = unwrap(value, path, accept)
            return sd, f"key {key!r}, {where}"
        tensors = {k: v for k, v in obj.items() if isinstance(k, str) and isinstance(v, torch.Tensor)}
        if tensors:
            return tensors, "state dict (non-tensor entries ignored)"
    raise HSpaceError(f"{path}: found {_describe(obj)}, which holds no model weights")


def read_weights_file(path: Path, accept) -> RawCheckpoint:
    """Read one weights file (any supported container) and unwrap it."""
    if not path.exists():
        raise HSpaceError(f"{path}: no such file or folder")
    if path.is_dir():
        raise HSpaceError(f"{path}: is a folder, expected a weights file")
    size = path.stat().st_size
    if size == 0:
        raise HSpaceError(f"{path}: the file is empty (0 bytes)")
    kind = sniff_format(path)
    if kind == "safetensors":
        tensors, meta = read_safetensors(path)
        if not tensors:
            raise HSpaceError(f"{path}: the safetensors file holds no tensors")
        sd, prefix = strip_shared_prefix(tensors, accept)
        return RawCheckpoint(sd, meta, "safetensors" + (f", prefix {prefix!r} removed" if prefix else ""))
    if kind == "unknown":
        if path.suffix.lower() == ".safetensors":
            raise HSpaceError(f"{path}: not a readable safetensors file (bad header; truncated or corrupt)")
        raise HSpaceError(f"{path}: unrecognised file format ({size} bytes starting {_head(path, 8).hex()}); "
                          "expected .safetensors or a torch checkpoint (.pt .pth .ckpt .bin)")
    obj = read_torch(path, kind)
    sd, where = unwrap(obj, path, accept)
    check_declared_size(sd, path)
    return RawCheckpoint(sd, {}, f"torch {'zip' if kind == 'torch-zip' else 'legacy pickle'}, {where}")


def read_diffusers_folder(path: Path, accept) -> RawCheckpoint:
    """A diffusers model folder: config.json + diffusion_pytorch_model.{safetensors,bin}.

    Also accepts a pipeline folder with the model under ``unet/``; a scheduler config is taken
    from ``scheduler_config.json`` beside the weights or from the pipeline's ``scheduler/``.
    """
    root = path
    if not (path / "config.json").exists() and (path / "unet" / "config.json").exists():
        path = path / "unet"
    cfg_path = path / "config.json"
    if not cfg_path.exists():
        raise HSpaceError(f"{root}: a folder without config.json; expected a diffusers model folder "
                          "(config.json + diffusion_pytorch_model.safetensors or .bin)")
    try:
        config = json.loads(cfg_path.read_text())
    except (OSError, json.JSONDecodeError) as e:
        raise HSpaceError(f"{cfg_path}: not valid JSON ({e})") from None
    weights = None
    for name in ("diffusion_pytorch_model.safetensors", "diffusion_pytorch_model.bin"):
        if (path / name).exists():
            weights = path / name
            break
    if weights is None:
        raise HSpaceError(f"{path}: config.json found but no diffusion_pytorch_model.safetensors or .bin")
    raw = read_weights_file(weights, accept)
    scheduler = None
    for cand in (path / "scheduler_config.json", root / "scheduler_config.json",
                 root / "scheduler" / "scheduler_config.json"):
        if cand.exists():
            scheduler = cand
            break
    return RawCheckpoint(raw.tensors, raw.metadata, f"diffusers folder, {raw.container}", config, scheduler)
