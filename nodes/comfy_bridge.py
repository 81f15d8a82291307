"""The only place that talks to ComfyUI's runtime: model folders, progress and previews,
interruption, devices and memory management.

Inside ComfyUI every call goes to ``folder_paths``, ``comfy.utils.ProgressBar`` and
``comfy.model_management``. Outside it (the test suite, a plain Python session) the same calls fall
back to plain behaviour: folders under ``HSPACE_MODELS_DIR`` (or ``./models``), no progress display,
the CPU, float32. The node classes are identical in both cases.
"""

from __future__ import annotations

import os
from pathlib import Path

import torch

from hspace_core.images import to_pil

MODEL_FOLDER = "hspace"
DIRECTION_FOLDER = "hspace_directions"
CLIP_FOLDER = "clip"  # ComfyUI maps the legacy name to models/text_encoders
WEIGHT_EXTENSIONS = {".safetensors", ".ckpt", ".pt", ".pth", ".bin"}
DIRECTION_EXTENSIONS = {".safetensors", ".pth", ".pt"}

try:  # inside ComfyUI
    import folder_paths  # type: ignore

    IN_COMFY = True
except ImportError:  # the test suite, or the engine used on its own
    folder_paths = None
    IN_COMFY = False


def _register(name: str, extensions: set[str]) -> None:
    """Register a model folder without clobbering paths extra_model_paths.yaml already added."""
    default = os.path.join(folder_paths.models_dir, name)
    if name in folder_paths.folder_names_and_paths:
        paths, exts = folder_paths.folder_names_and_paths[name]
        if default not in paths:
            paths = list(paths) + [default]
        folder_paths.folder_names_and_paths[name] = (list(paths), set(exts) | extensions)
    else:
        folder_paths.folder_names_and_paths[name] = ([default], set(extensions))


if IN_COMFY:
    _register(MODEL_FOLDER, WEIGHT_EXTENSIONS)
    _register(DIRECTION_FOLDER, DIRECTION_EXTENSIONS)


SAMPLE_INPUTS = Path(__file__).resolve().parents[1] / "example_workflows" / "input"


def place_sample_inputs(input_dir: Path, samples: Path = SAMPLE_INPUTS) -> list[str]:
    """Copy the example workflows' input images (the faces their LoadImage nodes name) into ComfyUI's
    input folder, so that every example workflow runs as shipped on a fresh ComfyUI. A file of the same
    name that is already there (the user's, or an earlier copy) is never replaced. Returns the names
    copied now."""
    placed = []
    input_dir = Path(input_dir)
    for src in sorted(samples.glob("*.png")):
        dst = input_dir / src.name
        if dst.exists():
            continue
        try:
            input_dir.mkdir(parents=True, exist_ok=True)
            with open(src, "rb") as f, open(dst, "xb") as out:  # "x": never over a file that appeared meanwhile
                out.write(f.read())
            placed.append(src.name)
        except OSError:  # a read-only input folder: the workflows that need the faces say so when queued
            continue
    return placed


def place_sample_inputs_in_comfyui() -> list[str]:
    """``place_sample_inputs`` into the running ComfyUI's input folder (nothing outside ComfyUI)."""
    if not IN_COMFY:
        return []
    return place_sample_inputs(Path(folder_paths.get_input_directory()))


def fallback_models_dir() -> Path:
    return Path(os.environ.get("HSPACE_MODELS_DIR", "models"))


def folder_paths_for(name: str) -> list[Path]:
    """The folders a model kind lives in (ComfyUI's registered ones, or the fallback)."""
    if IN_COMFY:
        return [Path(p) for p in folder_paths.get_folder_paths(name)]
    sub = {CLIP_FOLDER: "clip"}.get(name, name)
    return [fallback_models_dir() / sub]


def list_files(name: str, extensions: set[str]) -> list[str]:
    """Relative file names (with subfolders) of a model kind, sorted."""
    if IN_COMFY:
        return sorted(f for f in folder_paths.get_filename_list(name) if Path(f).suffix.lower() in extensions)
    out = []
    for root in folder_paths_for(name):
        if root.is_dir():
            out += [str(p.relative_to(root)) for p in root.rglob("*") if p.suffix.lower() in extensions]
    return sorted(set(out))


def list_diffusers_folders(name: str) -> list[str]:
    """Sub-folders that are diffusers models or pipelines (config.json or unet/config.json)."""
    out = []
    for root in folder_paths_for(name):
        if root.is_dir():
            for cfg in root.rglob("config.json"):
                folder = cfg.parent.parent if cfg.parent.name == "unet" else cfg.parent
                if folder != root:
                    out.append(str(folder.relative_to(root)) + "/")
    return sorted(set(out))


def full_path(name: str, relative: str) -> Path:
    """Resolve a combo value to a path; a clear error naming the folders when it is missing."""
    for root in folder_paths_for(name):
        p = root / relative
        if p.exists():
            return p
    folders = ", ".join(str(p) for p in folder_paths_for(name))
    raise FileNotFoundError(f"{relative!r} is not in the {name!r} model folder(s): {folders}")


# ------------------------------------------------------------------ messages, progress, previews, interruption

def say_once(message: str) -> None:
    """A warning in the server console (ComfyUI's log; stderr outside ComfyUI); the engine says each
    message once (``calibration.in_units``)."""
    import logging

    logging.warning("[comfyui-hspace] %s", message)


class Progress:
    """The engine's step callback for a node: ComfyUI's progress bar at the engine's (i, total), with
    the step's predicted x0 (first row) as a preview. In ComfyUI every update is also an interrupt
    point: the server's progress hook raises when the user interrupts the queue (ComfyUI main.py).
    Outside ComfyUI it does nothing."""

    def __init__(self, node_id: str | None = None):
        self.node_id = node_id
        self._bar = None

    def __call__(self, info) -> None:
        """``info``: a ``hspace_core.StepInfo`` (i of total, x0_pred [M, 3, H, W] in [-1, 1])."""
        if not IN_COMFY:
            return
        if self._bar is None:
            import comfy.utils  # type: ignore

            self._bar = comfy.utils.ProgressBar(info.total, node_id=self.node_id)
        image = ("JPEG", to_pil(info.x0_pred[0]), 512) if info.x0_pred is not None else None
        self._bar.update_absolute(info.i + 1, info.total, image)


# ------------------------------------------------------------------ devices and memory

def torch_device() -> torch.device:
    if IN_COMFY:
        import comfy.model_management  # type: ignore

        return comfy.model_management.get_torch_device()
    return torch.device("cpu")


def intermediate_device() -> torch.device:
    if IN_COMFY:
        import comfy.model_management  # type: ignore

        return comfy.model_management.intermediate_device()
    return torch.device("cpu")


def inference_dtype(device: torch.device) -> torch.dtype:
    """float32 on the CPU; bfloat16 on a GPU that supports it (wide range: safe for these UNets,
    whose activations can overflow float16); float32 otherwise."""
    if device.type == "cpu":
        return torch.float32
    if IN_COMFY:
        import comfy.model_management  # type: ignore

        if comfy.model_management.should_use_bf16(device):
            return torch.bfloat16
        return torch.float32
    return torch.bfloat16 if device.type == "cuda" and torch.cuda.is_bf16_supported() else torch.float32


def make_patcher(module: torch.nn.Module):
    """Wrap a network for ComfyUI's memory manager (None outside ComfyUI)."""
    if not IN_COMFY:
        return None
    import comfy.model_management  # type: ignore
    import comfy.model_patcher  # type: ignore

    return comfy.model_patcher.ModelPatcher(module, load_device=comfy.model_management.get_torch_device(),
                                            offload_device=comfy.model_management.unet_offload_device())


def load_for_inference(patcher) -> None:
    """Ask ComfyUI to make room and move the network to its device (no-op outside ComfyUI)."""
    if patcher is not None:
        import comfy.model_management  # type: ignore

        comfy.model_management.load_models_gpu([patcher])
