"""Load Unconditional DDPM, Load H-Space Direction, Save Direction."""

from __future__ import annotations

import hashlib
from pathlib import Path

from hspace_core import load_direction, load_model
from hspace_core.directions.io import save_direction_by_content
from hspace_core.demo.demo import demo_directions_dir, demo_model_path

from . import comfy_bridge as bridge
from .types import CATEGORY, DIRECTION, MODEL, LoadedModel

EMBEDDED_DEMO = "demo_faces32 (embedded)"
AUTO = "auto"


def model_choices() -> list[str]:
    """The embedded demo model first, then weight files and diffusers folders in models/hspace."""
    return ([EMBEDDED_DEMO] + bridge.list_files(bridge.MODEL_FOLDER, bridge.WEIGHT_EXTENSIONS)
            + bridge.list_diffusers_folders(bridge.MODEL_FOLDER))


def model_path(name: str) -> Path:
    if name == EMBEDDED_DEMO:
        return demo_model_path()
    return bridge.full_path(bridge.MODEL_FOLDER, name.rstrip("/"))


def _stamp(path: Path) -> str:
    """Changes when the file (or a folder's files) change: size and modification time."""
    files = [path] if path.is_file() else sorted(p for p in path.rglob("*") if p.is_file())
    blob = "|".join(f"{p}:{p.stat().st_size}:{p.stat().st_mtime_ns}" for p in files)
    return hashlib.sha256(blob.encode()).hexdigest()


class LoadUnconditionalDDPM:
    DESCRIPTION = ("Loads an unconditional pixel-space DDPM (DDIM/SDEdit, diffusers ddpm-*, or ADM / guided-diffusion "
                   "family) from models/hspace, or the embedded 32 px demo model. Family and architecture are read "
                   "from the weights; give what the weights do not store only when needed.")
    CATEGORY = CATEGORY
    FUNCTION = "load"
    RETURN_TYPES = (MODEL,)
    RETURN_NAMES = ("model",)
    OUTPUT_TOOLTIPS = ("the model with its h-space (middle-block output) exposed",)

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {
            "ckpt_name": (model_choices(), {"tooltip": "checkpoint file or diffusers folder in models/hspace; the "
                                                       "embedded demo model needs no download"}),
            "image_size": ("INT", {"default": 0, "min": 0, "max": 2048, "step": 8,
                                   "tooltip": "native resolution; 0 = infer (weights do not store it)"}),
            "num_heads": ("INT", {"default": 0, "min": 0, "max": 64,
                                  "tooltip": "attention heads of ADM models; 0 = the preset of the known checkpoints"}),
            "schedule": ([AUTO, "linear", "cosine"], {"tooltip": "noise schedule; auto = from scheduler_config.json, "
                                                                 "the file's metadata or the family's preset"}),
            "num_timesteps": ("INT", {"default": 0, "min": 0, "max": 4000,
                                      "tooltip": "training timesteps; 0 = auto (1000, or 4000 for improved-diffusion "
                                                 "CIFAR/ImageNet-64)"}),
        }}

    @classmethod
    def IS_CHANGED(cls, ckpt_name, **kwargs):
        try:
            return _stamp(model_path(ckpt_name))
        except FileNotFoundError:
            return ckpt_name

    def load(self, ckpt_name, image_size=0, num_heads=0, schedule=AUTO, num_timesteps=0):
        path = model_path(ckpt_name)
        model = load_model(path, image_size=image_size or None, num_heads=num_heads or None,
                           schedule=None if schedule == AUTO else schedule, num_timesteps=num_timesteps or None)
        device = bridge.torch_device()
        model.unet.to(dtype=bridge.inference_dtype(device))
        return (LoadedModel(model, bridge.make_patcher(model.unet), ckpt_name),)


def embedded_directions() -> dict[str, Path]:
    """Directions shipped for the embedded demo model (hspace_core/data/directions)."""
    folder = demo_directions_dir()
    return {f"{p.stem} (embedded)": p for p in sorted(folder.glob("*.safetensors"))} if folder.is_dir() else {}


def direction_choices() -> list[str]:
    files = list(embedded_directions()) + bridge.list_files(bridge.DIRECTION_FOLDER, bridge.DIRECTION_EXTENSIONS)
    return files or ["(no direction files: put them in models/hspace_directions)"]


def direction_path(name: str) -> Path:
    embedded = embedded_directions()
    return embedded[name] if name in embedded else bridge.full_path(bridge.DIRECTION_FOLDER, name)


class LoadDirection:
    DESCRIPTION = ("Loads an h-space direction from models/hspace_directions: this pack's .safetensors files, or "
                   "the official Asyrp *_LC_*.pth DeltaBlocks (read safely, weights only).")
    CATEGORY = CATEGORY
    FUNCTION = "load"
    RETURN_TYPES = (DIRECTION,)
    RETURN_NAMES = ("direction",)
    OUTPUT_TOOLTIPS = ("the direction (checked against the model when it is used)",)

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"direction_name": (direction_choices(), {
            "tooltip": "direction file in models/hspace_directions, or one shipped for the embedded demo model"})}}

    @classmethod
    def IS_CHANGED(cls, direction_name):
        try:
            return _stamp(direction_path(direction_name))
        except FileNotFoundError:
            return direction_name

    def load(self, direction_name):
        return (load_direction(direction_path(direction_name)),)


class SaveDirection:
    DESCRIPTION = ("Writes a direction as a portable .safetensors direction file into models/hspace_directions, "
                   "named by its content (prefix_<digest>): running a workflow again writes no second copy of the same "
                   "direction, and no file is ever replaced.")
    CATEGORY = CATEGORY
    FUNCTION = "save"
    RETURN_TYPES = ()
    OUTPUT_NODE = True

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {
            "direction": (DIRECTION, {"tooltip": "the direction to store"}),
            "filename_prefix": ("STRING", {"default": "hspace/direction",
                                           "tooltip": "file name prefix inside models/hspace_directions; a digest of "
                                                      "the content is appended: the same direction is one file"}),
        }}

    def save(self, direction, filename_prefix):
        root = bridge.folder_paths_for(bridge.DIRECTION_FOLDER)[0]
        prefix = Path(filename_prefix)
        if prefix.is_absolute() or ".." in prefix.parts:
            raise ValueError(f"filename_prefix {filename_prefix!r} must stay inside models/hspace_directions")
        path, _ = save_direction_by_content(direction, root / prefix.parent, prefix.name)
        return {"ui": {"text": [str(path.relative_to(root))]}, "result": ()}
