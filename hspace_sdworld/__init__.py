"""The miniature Stable Diffusion world: a tiny text-to-image model built from ComfyUI's own classes
(``comfy.supported_models.SD15``, ``comfy.sd.CLIP`` with SD1's tokenizer and ``SDClipModel``,
``comfy.sd.VAE`` around ``AutoencoderKL``), trained on the procedural faces of ``hspace_core.demo``.

This package is on ComfyUI's side of the house: it imports ``comfy`` (inside functions, through
``comfy_import.comfy``), so ``hspace_core`` stays free of ComfyUI. The world's data, probe and
captions are the engine's (``hspace_core.demo``).

Modules:
  * ``comfy_import``: find and import ComfyUI when it is not already importable (training, benches);
  * ``configs``: the three networks' configurations and the world's resolution;
  * ``models``: ComfyUI's MODEL / CLIP / VAE built from the shipped files (the loader node's engine);
  * ``data``: 64 px faces, their captions and latents;
  * ``train_vae``, ``train_unet``: the resumable training loops; ``__main__``: the command line.
"""
