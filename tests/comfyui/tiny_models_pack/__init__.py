"""A test-only ComfyUI node pack: "Tiny SD Checkpoint (test)" gives the MODEL, CLIP and VAE that
CheckpointLoaderSimple would, built from ComfyUI's own SD1.5 / SDXL classes with tiny random configs
(no weights file). The real-ComfyUI tests put it in custom_nodes beside the pack and swap it in for
CheckpointLoaderSimple when they run the SD example workflows' API twins. Never shipped."""

import functools

from .tiny_models import tiny_clip, tiny_model, tiny_vae


@functools.lru_cache(maxsize=2)
def _load(kind: str):
    # built once per kind, as a loader reading the same file would give equal weights: ComfyUI drops a node's
    # cached outputs when the next prompt does not use it, and rebuilding the models on every switch grows
    # the server's RSS (freed memory the allocator keeps), which the memory tests would count
    return tiny_model(kind), tiny_clip(), tiny_vae()


class TinySDCheckpoint:
    CATEGORY = "testing"
    FUNCTION = "load"
    RETURN_TYPES = ("MODEL", "CLIP", "VAE")

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"ckpt_name": ("STRING", {"default": "v1-5-pruned-emaonly.safetensors"})}}

    def load(self, ckpt_name):
        kind = "sdxl" if "xl" in ckpt_name.lower() else "sd15"
        return _load(kind)


NODE_CLASS_MAPPINGS = {"HSpaceTestTinySDCheckpoint": TinySDCheckpoint}
NODE_DISPLAY_NAME_MAPPINGS = {"HSpaceTestTinySDCheckpoint": "Tiny SD Checkpoint (test)"}
