"""Load Demo SD Model (miniature world): the pack's tiny text-to-image model, built from ComfyUI's own
SD1.5 classes (``hspace_sdworld``), as a checkpoint loader would give it."""

from __future__ import annotations

from .sd import SD_CATEGORY

WEIGHTS_CHOICE = "faces64 (embedded, miniature world)"


class LoadDemoSDModel:
    DESCRIPTION = ("The miniature world's text-to-image model: a tiny Stable Diffusion 1.5 (ComfyUI's SD15 model class, "
                   "SD1 CLIP text encoder, KL VAE) trained on procedural 64 px faces with captions such as 'a smiling "
                   "face with glasses'. Nothing to download; runs on the CPU or GPU like any checkpoint. Use it to try "
                   "h-space edits (prompt-pair, latent-set and PCA directions, the Asyrp Sampler (SD), Invert Latent) "
                   "before loading a real SD1.5 checkpoint in its place.")
    CATEGORY = SD_CATEGORY
    FUNCTION = "load"
    RETURN_TYPES = ("MODEL", "CLIP", "VAE")
    OUTPUT_TOOLTIPS = ("the UNet (SD15 class, h = 192 x 4 x 4 at 64 px, eps prediction)",
                       "the text encoder (SD1 tokenizer, 64 wide): prompts like 'a smiling face', 'a face with a hat'",
                       "the VAE (x8, 4 latent channels): 64 x 64 images <-> 8 x 8 latents")

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"weights": ([WEIGHTS_CHOICE], {"tooltip": "the shipped miniature-world weights"})}}

    def load(self, weights):
        from hspace_sdworld.models import load_demo

        return load_demo()


FLOW_WEIGHTS_CHOICE = "faces64 flow (embedded, miniature world)"


class LoadDemoFlowModel:
    DESCRIPTION = ("The miniature flow world's text-to-image model: a tiny Flux (ComfyUI's own Flux class: 4 joint and 4 "
                   "single blocks, width 256, rectified flow with Flux's shift, classifier-free guidance), with the "
                   "miniature SD world's text encoder and VAE, trained on the same procedural 64 px faces and captions. "
                   "Nothing to download; CPU or GPU. Use it to try h-space edits on a flow transformer (the same nodes "
                   "as SD: direction finders with block / h, Apply H-Space Direction, the Asyrp Sampler, Invert "
                   "Latent) before loading a real Flux in its place.")
    CATEGORY = SD_CATEGORY
    FUNCTION = "load"
    RETURN_TYPES = ("MODEL", "CLIP", "VAE")
    OUTPUT_TOOLTIPS = ("the transformer (Flux class; h = 256 x 4 x 4 image tokens at a joint block, 64 px)",
                       "the text encoder (SD1 tokenizer, 64 wide; hidden states and pooled vector)",
                       "the VAE (x8, 4 latent channels): 64 x 64 images <-> 8 x 8 latents")

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"weights": ([FLOW_WEIGHTS_CHOICE], {"tooltip": "the shipped miniature-world weights"})}}

    def load(self, weights):
        from hspace_sdworld.models import load_flow_demo

        return load_flow_demo()
