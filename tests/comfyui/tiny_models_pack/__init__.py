"""A test-only ComfyUI node pack: "Tiny SD Checkpoint (test)" gives the MODEL, CLIP and VAE that
CheckpointLoaderSimple would, built from ComfyUI's own SD1.5 / SDXL classes with tiny random configs
(no weights file). The real-ComfyUI tests put it in custom_nodes beside the pack and swap it in for
CheckpointLoaderSimple when they run the SD example workflows' API twins. Never shipped."""

from .tiny_models import tiny_clip, tiny_model, tiny_vae


class TinySDCheckpoint:
    CATEGORY = "testing"
    FUNCTION = "load"
    RETURN_TYPES = ("MODEL", "CLIP", "VAE")

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"ckpt_name": ("STRING", {"default": "v1-5-pruned-emaonly.safetensors"})}}

    def load(self, ckpt_name):
        kind = "sdxl" if "xl" in ckpt_name.lower() else "sd15"
        return (tiny_model(kind), tiny_clip(), tiny_vae())


NODE_CLASS_MAPPINGS = {"HSpaceTestTinySDCheckpoint": TinySDCheckpoint}
NODE_DISPLAY_NAME_MAPPINGS = {"HSpaceTestTinySDCheckpoint": "Tiny SD Checkpoint (test)"}
