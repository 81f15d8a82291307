"""A test-only ComfyUI node pack: "Tiny SD Checkpoint (test)" gives the MODEL, CLIP and VAE that
CheckpointLoaderSimple would, built from ComfyUI's own SD1.5 / SDXL / SD3 classes with tiny random configs
(no weights file); the tiny Flux, text-encoder and 16-channel VAE nodes stand in for UNETLoader,
DualCLIPLoader and VAELoader. The real-ComfyUI tests put it in custom_nodes beside the pack and swap it in for
CheckpointLoaderSimple when they run the SD example workflows' API twins. Never shipped."""

import functools

from .tiny_models import tiny_clip, tiny_flow_model, tiny_model, tiny_vae, tiny_vae16


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
        if "sd3" in ckpt_name.lower():
            return _flow("sd3"), tiny_clip(), _vae16()
        kind = "sdxl" if "xl" in ckpt_name.lower() else "sd15"
        return _load(kind)


@functools.lru_cache(maxsize=3)
def _flow(kind: str):
    return tiny_flow_model(kind)


@functools.lru_cache(maxsize=1)
def _vae16():
    return tiny_vae16()


class TinyFlowUNet:
    """Stands in for UNETLoader: ComfyUI's Flux (dev or schnell, by the file name) with a tiny transformer."""

    CATEGORY = "testing"
    FUNCTION = "load"
    RETURN_TYPES = ("MODEL",)

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"unet_name": ("STRING", {"default": "flux1-dev.safetensors"}),
                             "weight_dtype": ("STRING", {"default": "default"})}}

    def load(self, unet_name, weight_dtype):
        return (_flow("flux_schnell" if "schnell" in unet_name.lower() else "flux"),)


class TinyTextEncoders:
    """Stands in for DualCLIPLoader: the tiny SD-style CLIP (hidden states and pooled vector, 64 wide)."""

    CATEGORY = "testing"
    FUNCTION = "load"
    RETURN_TYPES = ("CLIP",)

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"clip_name1": ("STRING", {"default": ""}), "clip_name2": ("STRING", {"default": ""}),
                             "type": ("STRING", {"default": "flux"})}}

    def load(self, clip_name1, clip_name2, type):
        return (tiny_clip(),)


class TinyVAE16:
    """Stands in for VAELoader with a 16-channel latent (Flux's ae, SD3's)."""

    CATEGORY = "testing"
    FUNCTION = "load"
    RETURN_TYPES = ("VAE",)

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"vae_name": ("STRING", {"default": "ae.safetensors"})}}

    def load(self, vae_name):
        return (_vae16(),)


NODE_CLASS_MAPPINGS = {"HSpaceTestTinySDCheckpoint": TinySDCheckpoint, "HSpaceTestTinyFlowUNet": TinyFlowUNet,
                       "HSpaceTestTinyTextEncoders": TinyTextEncoders, "HSpaceTestTinyVAE16": TinyVAE16}
NODE_DISPLAY_NAME_MAPPINGS = {"HSpaceTestTinySDCheckpoint": "Tiny SD Checkpoint (test)",
                              "HSpaceTestTinyFlowUNet": "Tiny Flux (test)",
                              "HSpaceTestTinyTextEncoders": "Tiny text encoders (test)",
                              "HSpaceTestTinyVAE16": "Tiny 16-channel VAE (test)"}
