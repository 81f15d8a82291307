"""A minimal ComfyUI prompt executor for API-format graphs, resolving links the way ComfyUI does.

It validates like ComfyUI's ``validate_inputs`` (required inputs present, linked output types equal
to the declared input types, combo values in their lists, numbers within min/max), executes the
nodes each output node depends on in dependency order, passes ``hidden`` UNIQUE_ID, and accepts a
tuple or a ``{"ui": ..., "result": ...}`` dict from a node. Three ComfyUI core nodes the example
workflows use (LoadImage, SaveImage, PreviewImage) are provided as small stand-ins working on
``input_dir`` / ``output_dir``.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from PIL import Image


class PromptError(Exception):
    """A validation or execution error, with the node id."""


def core_nodes(input_dir: Path, output_dir: Path) -> dict:
    class LoadImage:
        RETURN_TYPES = ("IMAGE", "MASK")
        FUNCTION = "load"

        @classmethod
        def INPUT_TYPES(cls):
            files = sorted(p.name for p in input_dir.iterdir()) if input_dir.is_dir() else []
            return {"required": {"image": (files, {})}}

        def load(self, image):
            with Image.open(input_dir / image) as im:
                arr = np.asarray(im.convert("RGB"), dtype=np.float32) / 255.0
            t = torch.from_numpy(arr)[None]
            return (t, torch.zeros(1, t.shape[1], t.shape[2]))

    class SaveImage:
        RETURN_TYPES = ()
        FUNCTION = "save"
        OUTPUT_NODE = True

        @classmethod
        def INPUT_TYPES(cls):
            return {"required": {"images": ("IMAGE", {}), "filename_prefix": ("STRING", {"default": "ComfyUI"})}}

        def save(self, images, filename_prefix):
            prefix = output_dir / filename_prefix  # a prefix may name a subfolder, as in ComfyUI
            prefix.parent.mkdir(parents=True, exist_ok=True)
            names = []
            for img in images:
                arr = np.clip(255.0 * img.cpu().numpy(), 0, 255).astype(np.uint8)
                path = prefix.parent / f"{prefix.name}_{len(list(prefix.parent.glob(prefix.name + '_*'))) + 1:05d}_.png"
                Image.fromarray(arr).save(path)
                names.append(str(path.relative_to(output_dir)))
            return {"ui": {"images": names}, "result": ()}

    class PreviewImage(SaveImage):
        @classmethod
        def INPUT_TYPES(cls):
            return {"required": {"images": ("IMAGE", {})}}

        def save(self, images):
            return super().save(images, "preview")

    return {"LoadImage": LoadImage, "SaveImage": SaveImage, "PreviewImage": PreviewImage}


def _is_link(value) -> bool:
    return isinstance(value, list) and len(value) == 2 and isinstance(value[0], str) and isinstance(value[1], int)


def _check_widget(node_id: str, name: str, spec: tuple, value) -> None:
    kind, opts = spec[0], (spec[1] if len(spec) > 1 else {})
    if isinstance(kind, list):
        if value not in kind:
            raise PromptError(f"node {node_id}: {name}={value!r} is not one of the options")
    elif kind == "INT":
        if not isinstance(value, int) or isinstance(value, bool):
            raise PromptError(f"node {node_id}: {name} must be an integer, got {value!r}")
    elif kind == "FLOAT":
        if not isinstance(value, (int, float)) or isinstance(value, bool):
            raise PromptError(f"node {node_id}: {name} must be a number, got {value!r}")
    elif kind == "STRING" and not isinstance(value, str):
        raise PromptError(f"node {node_id}: {name} must be a string")
    elif kind == "BOOLEAN" and not isinstance(value, bool):
        raise PromptError(f"node {node_id}: {name} must be a boolean")
    elif kind not in ("INT", "FLOAT", "STRING", "BOOLEAN"):
        raise PromptError(f"node {node_id}: {name} needs a {kind} link, got a constant")
    if kind in ("INT", "FLOAT"):
        if "min" in opts and value < opts["min"]:
            raise PromptError(f"node {node_id}: {name}={value} is smaller than min {opts['min']}")
        if "max" in opts and value > opts["max"]:
            raise PromptError(f"node {node_id}: {name}={value} is bigger than max {opts['max']}")


def validate(prompt: dict, classes: dict) -> list[str]:
    """Returns the output node ids; raises PromptError on the first invalid input."""
    outputs = []
    for node_id, node in prompt.items():
        cls = classes.get(node["class_type"])
        if cls is None:
            raise PromptError(f"node {node_id}: unknown class_type {node['class_type']!r}")
        spec = cls.INPUT_TYPES()
        declared = {**spec.get("required", {}), **spec.get("optional", {})}
        for name in spec.get("required", {}):
            if name not in node["inputs"]:
                raise PromptError(f"node {node_id}: required input {name!r} missing")
        for name, value in node["inputs"].items():
            if name not in declared:
                continue  # ComfyUI ignores inputs a node does not declare
            if _is_link(value):
                src_id, slot = value
                if src_id not in prompt:
                    raise PromptError(f"node {node_id}: {name} links to missing node {src_id}")
                src = classes[prompt[src_id]["class_type"]]
                if slot >= len(src.RETURN_TYPES):
                    raise PromptError(f"node {node_id}: {name} links to output {slot} of {src_id}, which has none")
                have, want = src.RETURN_TYPES[slot], declared[name][0]
                if want != "*" and have != want:
                    raise PromptError(f"node {node_id}: {name} expects {want}, linked to a {have} output")
            else:
                _check_widget(node_id, name, declared[name], value)
        if getattr(cls, "OUTPUT_NODE", False):
            outputs.append(node_id)
    if not outputs:
        raise PromptError("prompt has no output node")
    return outputs


def execute(prompt: dict, classes: dict) -> tuple[dict, dict]:
    """Run the prompt; returns (outputs by node id, ui dicts of the output nodes)."""
    outputs_to_run = validate(prompt, classes)
    results: dict[str, tuple] = {}
    ui: dict[str, dict] = {}

    def run(node_id: str, stack: tuple = ()) -> tuple:
        if node_id in results:
            return results[node_id]
        if node_id in stack:
            raise PromptError(f"cycle through node {node_id}")
        node = prompt[node_id]
        cls = classes[node["class_type"]]
        spec = cls.INPUT_TYPES()
        declared = {**spec.get("required", {}), **spec.get("optional", {})}
        kwargs = {}
        for name, value in node["inputs"].items():
            if name not in declared:
                continue
            kwargs[name] = run(value[0], stack + (node_id,))[value[1]] if _is_link(value) else value
        if "unique_id" in spec.get("hidden", {}):
            kwargs["unique_id"] = node_id
        try:
            with torch.inference_mode():  # as ComfyUI's executor runs every node (execution.py)
                out = getattr(cls(), cls.FUNCTION)(**kwargs)
        except Exception as e:  # reported like ComfyUI's execution_error, with the node id
            raise PromptError(f"node {node_id} ({node['class_type']}): {type(e).__name__}: {e}") from e
        if isinstance(out, dict):
            ui[node_id] = out.get("ui", {})
            out = out.get("result", ())
        results[node_id] = tuple(out)
        return results[node_id]

    for node_id in outputs_to_run:
        run(node_id)
    return results, ui
