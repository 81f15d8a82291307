"""Helpers for the embedded demo world: procedural faces as IMAGE, and a strip of a batch."""

from __future__ import annotations

import torch

from hspace_core.demo.faces import BINARY, CONTINUOUS, render, sample_faces

from . import comfy_bridge as bridge
from .convert import engine_to_image
from .types import CATEGORY

KEEP = -2.0  # widget value meaning "as drawn from the seed"


class ProceduralFaces:
    DESCRIPTION = ("Renders cartoon faces of the demo world (the data the embedded model was trained on), with "
                   "attributes drawn from the seed; any attribute can be fixed. Use it to make image sets that differ "
                   "in one attribute (e.g. smile 0.8 vs -0.8) and test images for the demo model.")
    CATEGORY = CATEGORY + "/demo"
    FUNCTION = "render"
    RETURN_TYPES = ("IMAGE",)
    RETURN_NAMES = ("images",)
    OUTPUT_TOOLTIPS = ("32 x 32 faces",)

    @classmethod
    def INPUT_TYPES(cls):
        req = {"count": ("INT", {"default": 4, "min": 1, "max": 256, "tooltip": "number of faces"}),
               "seed": ("INT", {"default": 0, "min": 0, "max": 2 ** 31 - 1,
                                "tooltip": "seed of the attributes that are not fixed"})}
        for name, (lo, hi) in CONTINUOUS.items():
            req[name] = ("FLOAT", {"default": KEEP, "min": KEEP, "max": hi, "step": 0.05,
                                   "tooltip": f"fix {name} in [{lo:g}, {hi:g}]; {KEEP:g} = drawn from the seed"})
        for name in BINARY:
            req[name] = (["random", "yes", "no"], {"tooltip": f"fix {name}, or draw it from the seed"})
        return {"required": req}

    def render(self, count, seed, **attributes):
        faces = sample_faces(count, seed)
        fixed = {}
        for name, value in attributes.items():
            if name in CONTINUOUS and value != KEEP:
                lo, hi = CONTINUOUS[name]
                fixed[name] = min(max(float(value), lo), hi)
            elif name in BINARY and value != "random":
                fixed[name] = value == "yes"
        return (engine_to_image(render([f.replace(**fixed) for f in faces]), bridge.intermediate_device()),)


class ImageStrip:
    DESCRIPTION = "Tiles an IMAGE batch into one image, row by row (e.g. one row per input of a strength sweep)."
    CATEGORY = CATEGORY
    FUNCTION = "tile"
    RETURN_TYPES = ("IMAGE",)
    RETURN_NAMES = ("strip",)
    OUTPUT_TOOLTIPS = ("the batch as one image",)

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {
            "images": ("IMAGE", {"tooltip": "images of one size"}),
            "columns": ("INT", {"default": 5, "min": 1, "max": 64, "tooltip": "images per row"}),
            "scale": ("INT", {"default": 4, "min": 1, "max": 16, "tooltip": "nearest-neighbour enlargement"}),
        }}

    def tile(self, images, columns, scale):
        n, h, w, c = images.shape
        rows = (n + columns - 1) // columns
        canvas = torch.ones(rows * h, columns * w, c, dtype=images.dtype)
        for i in range(n):
            r, k = divmod(i, columns)
            canvas[r * h:(r + 1) * h, k * w:(k + 1) * w] = images[i].cpu()
        canvas = canvas.repeat_interleave(scale, 0).repeat_interleave(scale, 1)
        return (canvas[None].to(images.device),)
