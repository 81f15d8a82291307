"""Finding directions: from text (CLIP, Asyrp), from two image sets (supervised), PCA (unsupervised), and
per image from the Jacobian of x_t -> h (Park et al.)."""

from __future__ import annotations

from pathlib import Path

from hspace_core import HSpaceError, calibrated
from hspace_core.discovery.clip import ClipTrainSettings, train_clip_direction
from hspace_core.demo.clip_world import EMBEDDED as TINY_CLIP_DIR
from hspace_core.discovery.clip_model import DEFAULT_ARCH, load_clip
from hspace_core.discovery.jacobian import jacobian_directions
from hspace_core.discovery.pca import pca_direction
from hspace_core.discovery.supervised import classifier_normal, mean_difference
from hspace_core.images import SIZE_POLICIES

from . import comfy_bridge as bridge
from .convert import image_to_engine
from .types import CATEGORY, DIRECTION, MODEL

NO_CLIP = "(no CLIP weights found)"
CLIP_EXTENSIONS = {".safetensors", ".bin", ".pt", ".pth"}


EMBEDDED_CLIP = "tiny_clip (embedded, demo world)"


def _embedded_clip() -> list[str]:
    return [EMBEDDED_CLIP] if (TINY_CLIP_DIR / "open_clip_model.safetensors").exists() else []


def clip_choices() -> list[str]:
    """The embedded tiny CLIP of the demo world first (for the demo model), then the clip folder's files."""
    return (_embedded_clip() + bridge.list_files(bridge.CLIP_FOLDER, CLIP_EXTENSIONS)) or [NO_CLIP]


def clip_path(name: str) -> Path:
    folders = ", ".join(str(p) for p in bridge.folder_paths_for(bridge.CLIP_FOLDER))
    hint = (f"put open_clip weights into ComfyUI's clip folder ({folders}), e.g. open_clip_model.safetensors of "
            "the Hugging Face repository timm/vit_base_patch16_clip_224.openai for ViT-B-16 (the official Asyrp CLIP)")
    if name == EMBEDDED_CLIP:
        return TINY_CLIP_DIR  # an open_clip folder: its config names the architecture
    if name == NO_CLIP:
        raise HSpaceError(f"no CLIP weights: {hint}")
    try:
        return bridge.full_path(bridge.CLIP_FOLDER, name)
    except FileNotFoundError:
        raise HSpaceError(f"CLIP weights {name!r} not found: {hint}") from None


class DirectionFromText:
    DESCRIPTION = ("Trains an h-space direction from a text pair with CLIP, as Asyrp does: the implicit function f_t "
                   "(DeltaBlock) or one global delta_h per step, with the directional CLIP loss and an L1 term on the "
                   "predicted x0, SGD at every step of the editing interval. Deterministic for a seed. With an SD "
                   "MODEL (sd_model, vae, positive, latents) instead of a DDPM: one shift of h trained with the same "
                   "loss on the VAE-decoded predicted x0 of the latents noised into the interval (Adam).")
    CATEGORY = CATEGORY
    FUNCTION = "train"
    RETURN_TYPES = (DIRECTION,)
    RETURN_NAMES = ("direction",)
    OUTPUT_TOOLTIPS = ("the trained direction (strength 1 = the trained edit)",)

    @classmethod
    def INPUT_TYPES(cls):
        from .sd.node_classes import FLOW_INPUTS

        return {
            "required": {
                "source_text": ("STRING", {"default": "face", "tooltip": "what the images are now, e.g. 'face'"}),
                "target_text": ("STRING", {"default": "smiling face", "tooltip": "what they should become"}),
                "clip_name": (clip_choices(), {"tooltip": "the demo world's embedded tiny CLIP (for the embedded demo "
                                                          "model), or open_clip weights in ComfyUI's clip folder "
                                                          "(models/text_encoders); nothing is downloaded"}),
                "clip_arch": ("STRING", {"default": DEFAULT_ARCH, "tooltip": "open_clip architecture of the weights, "
                                                                         "or a model-config .json in the clip folder "
                                                                         "(a folder's own config wins)"}),
                "kind": (["deltablock", "global"], {"tooltip": "deltablock: Asyrp's f_t(h, t); global: one delta_h "
                                                               "per step"}),
                "samples": ("INT", {"default": 8, "min": 1, "max": 1000,
                                    "tooltip": "model samples to train on when no images are connected"}),
                "steps": ("INT", {"default": 40, "min": 2, "max": 1000, "tooltip": "training grid (n_train_step)"}),
                "t_edit": ("INT", {"default": 500, "min": 0, "max": 3999,
                                   "tooltip": "train on steps with t >= t_edit"}),
                "lr": ("FLOAT", {"default": 0.5, "min": 0.0, "max": 10.0, "step": 0.01,
                                 "tooltip": "SGD learning rate (released checkpoints: 0.5 with ViT-B/16; "
                                            "0.05 with the demo world's tiny CLIP); SD MODELs: Adam's, on the shift "
                                            "in units of h's RMS (0.05 works)"}),
                "iterations": ("INT", {"default": 1, "min": 1, "max": 100,
                                       "tooltip": "passes over the images (SD MODELs: each pass makes one update per "
                                                  "8 latents at every step of the interval)"}),
                "clip_weight": ("FLOAT", {"default": 1.0, "min": 0.0, "max": 100.0, "step": 0.1,
                                          "tooltip": "weight of the directional CLIP loss"}),
                "l1_weight": ("FLOAT", {"default": 3.0, "min": 0.0, "max": 100.0, "step": 0.1,
                                        "tooltip": "weight of the L1 term (times the texts' cosine)"}),
                "seed": ("INT", {"default": 0, "min": 0, "max": 2 ** 31 - 1,
                                 "tooltip": "seed of the initialisation and of the samples"}),
            },
            "optional": {
                "model": (MODEL, {"tooltip": "the DDPM the direction is for (or connect an SD MODEL below)"}),
                "images": ("IMAGE", {"tooltip": "training images (inverted); else model samples"}),
                "sd_model": ("MODEL", {"tooltip": "an SD1.x / SD2.x / SDXL or Flux.1 MODEL instead of a DDPM (with "
                                                  "vae, positive and latents)"}),
                "vae": ("VAE", {"tooltip": "SD: the VAE that decodes the predicted x0 for CLIP"}),
                "positive": ("CONDITIONING", {"tooltip": "SD: a prompt describing the images"}),
                "latents": ("LATENT", {"tooltip": "SD: the training latents (VAE Encode of the images)"}),
                "t_end": ("INT", {"default": 999, "min": 0, "max": 999, "tooltip": "SD: train at t <= t_end"}),
                **FLOW_INPUTS,  # Flux.1 with sd_model: h's place
            },
            "hidden": {"unique_id": "UNIQUE_ID"},
        }

    def train(self, source_text, target_text, clip_name, clip_arch, kind, samples, steps, t_edit, lr,
              iterations, clip_weight, l1_weight, seed, model=None, images=None, sd_model=None, vae=None,
              positive=None, latents=None, t_end=999, block=-1, h="residual stream", unique_id=None):
        if clip_arch.endswith(".json") and not Path(clip_arch).is_absolute():
            clip_arch = str(bridge.full_path(bridge.CLIP_FOLDER, clip_arch))  # a config beside the weights
        if sd_model is not None:
            from .sd.node_classes import flow_location

            return (self._train_sd(sd_model, vae, positive, latents, clip_path(clip_name), clip_arch, source_text,
                                   target_text, steps, t_edit, t_end, lr, iterations, clip_weight, l1_weight, seed,
                                   unique_id, location=flow_location(sd_model, block, h)),)
        if model is None:
            raise HSpaceError("connect a model: a DDPM (model) or an SD MODEL (sd_model, with vae, positive and "
                              "latents)")
        m = model.ready()
        clip = load_clip(clip_path(clip_name), clip_arch, device=m.device)
        settings = ClipTrainSettings(kind=kind, n_train_step=steps, t_edit=t_edit, lr=lr, n_iter=iterations,
                                     clip_w=clip_weight, l1_w=l1_weight, seed=seed)
        d = train_clip_direction(m, clip, source_text, target_text,
                                 images=image_to_engine(images) if images is not None else None,
                                 n_samples=0 if images is not None else samples, settings=settings,
                                 callback=bridge.Progress(unique_id))
        return (calibrated(m, d),)

    @staticmethod
    def _train_sd(sd_model, vae, positive, latents, weights, arch, src, trg, steps, t_edit, t_end, lr, iterations,
                  clip_w, l1_w, seed, unique_id, callback=None, name="", calibration_callback=None, location=None):
        """(also the SD command line's, ``nodes/cli.py``, with its own progress: ``callback`` for the training,
        ``calibration_callback`` for the calibration's steps; ``location``: h's place on a Flux.1 MODEL)"""
        from hspace_core.discovery.shift_training import ShiftSettings
        from hspace_core.schedule import asyrp_timesteps

        from .sd.calibration import calibrated_sd
        from .sd.discovery import clip_sd

        missing = [n for n, v in (("vae", vae), ("positive", positive), ("latents", latents)) if v is None]
        if missing:
            raise HSpaceError(f"with an SD MODEL connect {', '.join(missing)} too (the VAE decodes the predicted x0 "
                              "for CLIP; the latents are the training images)")
        lat = latents["samples"]
        n_t = sum(1 for t in asyrp_timesteps(steps, 999).tolist() if t_edit <= t <= t_end)
        updates = max(1, int(iterations) * -(-lat.shape[0] // 8) * n_t)
        clip = load_clip(weights, arch, device=sd_model.load_device)
        d = clip_sd(sd_model, vae, positive, lat, clip, src, trg, steps=steps, t_edit=t_edit, t_end=t_end,
                    settings=ShiftSettings(iterations=updates, batch=8, lr=lr, seed=seed), clip_w=clip_w, l1_w=l1_w,
                    name=name, callback=callback or bridge.Progress(unique_id), location=location)
        return calibrated_sd(sd_model, d, positive, callback=calibration_callback or bridge.Progress(unique_id))


class DirectionFromImages:
    DESCRIPTION = ("Finds a direction from two image sets (Haas et al.): the mean difference of h between the "
                   "positive and the negative images at every step, or the normal of a linear classifier. "
                   "Strength 1 moves an image by one full mean difference over the editing interval.")
    CATEGORY = CATEGORY
    FUNCTION = "find"
    RETURN_TYPES = (DIRECTION,)
    RETURN_NAMES = ("direction",)
    OUTPUT_TOOLTIPS = ("the supervised direction",)

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {
            "model": (MODEL, {"tooltip": "the DDPM the direction is for"}),
            "positive": ("IMAGE", {"tooltip": "images with the attribute"}),
            "negative": ("IMAGE", {"tooltip": "images without it"}),
            "method": (["mean difference", "classifier normal"], {"tooltip": "Haas et al.'s mean difference, or the "
                                                                             "normal of a logistic classifier"}),
            "steps": ("INT", {"default": 40, "min": 2, "max": 1000, "tooltip": "grid the direction is made on"}),
            "t_edit": ("INT", {"default": 500, "min": 0, "max": 3999,
                               "tooltip": "editing interval the direction is made for (t >= t_edit)"}),
            "size_policy": (list(SIZE_POLICIES), {"tooltip": "how images of another size are fitted"}),
        }, "hidden": {"unique_id": "UNIQUE_ID"}}

    def find(self, model, positive, negative, method, steps, t_edit, size_policy, unique_id=None):
        finder = mean_difference if method == "mean difference" else classifier_normal
        m = model.ready()
        d = finder(m, image_to_engine(positive), image_to_engine(negative), steps=steps, t_edit=t_edit,
                   size_policy=size_policy, data=f"{positive.shape[0]} positive / {negative.shape[0]} negative images",
                   callback=bridge.Progress(unique_id))
        return (calibrated(m, d),)


class DirectionPCA:
    DESCRIPTION = ("Unsupervised directions (Haas et al.): PCA of h at every step over N of the model's own samples; "
                   "component k (0 = the largest variance), scaled to its standard deviation, signs kept consistent "
                   "along the trajectory.")
    CATEGORY = CATEGORY
    FUNCTION = "find"
    RETURN_TYPES = (DIRECTION,)
    RETURN_NAMES = ("direction",)
    OUTPUT_TOOLTIPS = ("principal direction k (strength 1 = one standard deviation)",)

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {
            "model": (MODEL, {"tooltip": "the DDPM to sample"}),
            "samples": ("INT", {"default": 64, "min": 2, "max": 10000, "tooltip": "N samples to analyse"}),
            "component": ("INT", {"default": 0, "min": 0, "max": 100, "tooltip": "k, 0 = the largest variance"}),
            "steps": ("INT", {"default": 40, "min": 2, "max": 1000, "tooltip": "grid the direction is made on"}),
            "t_edit": ("INT", {"default": 500, "min": 0, "max": 3999,
                               "tooltip": "editing interval the direction is made for (t >= t_edit)"}),
            "seed": ("INT", {"default": 0, "min": 0, "max": 2 ** 31 - 1, "tooltip": "seed of the samples"}),
        }, "hidden": {"unique_id": "UNIQUE_ID"}}

    def find(self, model, samples, component, steps, t_edit, seed, unique_id=None):
        m = model.ready()
        d = pca_direction(m, component, samples, steps=steps, t_edit=t_edit, seed=seed,
                          callback=bridge.Progress(unique_id))
        return (calibrated(m, d),)


class DirectionJacobian:
    DESCRIPTION = ("Per-image directions without labels or text (Park et al., NeurIPS 2023): the image is DDIM-inverted "
                   "to timestep t, and the top singular vectors of the Jacobian dh/dx_t are found by subspace iteration "
                   "(forward- and reverse-mode products, never the full Jacobian); component k's h-space image J v_k "
                   "is the direction, applied as one shift at every step of the editing interval.")
    CATEGORY = CATEGORY
    FUNCTION = "find"
    RETURN_TYPES = (DIRECTION,)
    RETURN_NAMES = ("direction",)
    OUTPUT_TOOLTIPS = ("Jacobian direction k (strength 1 = a total shift as large as the image's h; try 0.05 to 0.5)",)

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {
            "model": (MODEL, {"tooltip": "the DDPM"}),
            "image": ("IMAGE", {"tooltip": "the image the direction is found for (the first of a batch, or "
                                           "batch_index)"}),
            "component": ("INT", {"default": 0, "min": 0, "max": 63, "tooltip": "k, 0 = the largest singular value"}),
            "t_edit": ("INT", {"default": 500, "min": 0, "max": 3999,
                               "tooltip": "editing interval the direction is made for (t >= t_edit)"}),
            "t": ("INT", {"default": 0, "min": 0, "max": 3999,
                          "tooltip": "timestep of the Jacobian; 0 = t_edit (the lowest edited step)"}),
            "steps": ("INT", {"default": 40, "min": 2, "max": 1000, "tooltip": "grid of the inversion to t"}),
            "iterations": ("INT", {"default": 10, "min": 1, "max": 200,
                                   "tooltip": "subspace-iteration rounds (each: k forward- and k reverse-mode passes)"}),
            "seed": ("INT", {"default": 0, "min": 0, "max": 2 ** 31 - 1, "tooltip": "seed of the starting subspace"}),
        }, "optional": {
            "batch_index": ("INT", {"default": 0, "min": 0, "max": 4095, "tooltip": "which image of the batch"}),
        }, "hidden": {"unique_id": "UNIQUE_ID"}}

    def find(self, model, image, component, t_edit, t, steps, iterations, seed, batch_index=0, unique_id=None):
        images = image_to_engine(image)
        if not 0 <= batch_index < images.shape[0]:
            raise HSpaceError(f"batch_index {batch_index} is outside the batch of {images.shape[0]} image(s)")
        m = model.ready()
        ds = jacobian_directions(m, images[batch_index:batch_index + 1], component + 1, t=t or None,
                                 t_edit=t_edit, steps=steps, iterations=iterations, seed=seed,
                                 callback=bridge.Progress(unique_id))
        return (calibrated(m, ds[component]),)


CONTRAST_INPUTS = {
    "k": ("INT", {"default": 8, "min": 2, "max": 64, "tooltip": "how many directions to discover together"}),
    "iterations": ("INT", {"default": 300, "min": 1, "max": 100000, "tooltip": "updates (each: one encoder pass "
                                                                               "and k decoder passes per image)"}),
    "batch": ("INT", {"default": 8, "min": 2, "max": 256, "tooltip": "images per update"}),
    "lr": ("FLOAT", {"default": 0.05, "min": 1e-5, "max": 10.0, "step": 0.005, "tooltip": "Adam's learning rate"}),
    "temperature": ("FLOAT", {"default": 0.5, "min": 0.01, "max": 10.0, "step": 0.01,
                              "tooltip": "the contrastive loss's temperature tau"}),
    "radius": ("FLOAT", {"default": 0.5, "min": 0.01, "max": 10.0, "step": 0.01,
                         "tooltip": "each direction's size while training, in units of h's RMS"}),
    "t_edit": ("INT", {"default": 500, "min": 0, "max": 3999,
                       "tooltip": "editing interval the directions are trained and made for (t >= t_edit)"}),
    "seed": ("INT", {"default": 0, "min": 0, "max": 2 ** 31 - 1, "tooltip": "seed of the start, the draws and "
                                                                            "the noise"}),
}


ICA_INPUTS = {
    "k": ("INT", {"default": 8, "min": 1, "max": 64, "tooltip": "how many directions to keep"}),
    "dims": ("INT", {"default": 0, "min": 0, "max": 256,
                     "tooltip": "principal components the k are sought among (0: 2 x k); order says which k "
                                "are kept"}),
    "seed": ("INT", {"default": 0, "min": 0, "max": 2 ** 31 - 1, "tooltip": "seed of the samples and of FastICA's "
                                                                            "start"}),
}
ICA_ORDER = {  # optional: workflows saved before it keep working
    "order": (["stability", "kurtosis"], {"default": "stability",
                                          "tooltip": "which k of the components are kept: stability, the most "
                                                     "reproducible over 8 bootstrap resamples (ICASSO; leaves out "
                                                     "components made by a few odd images; 8 more FastICA runs); "
                                                     "kurtosis, the least Gaussian"}),
}

ICA_ROTATE = {  # optional: workflows saved before it keep working
    "rotate": (["h", "effects"], {"default": "h",
                                  "tooltip": "h: turn the principal components by FastICA of h itself; "
                                             "effects: by their changes of the image (each direction an edit "
                                             "of one region or feature; the k sparsest kept, order unused)"}),
}


def contrast_settings(k, iterations, batch, lr, temperature, radius, seed):
    from hspace_core.discovery.contrastive import ContrastiveSettings

    return ContrastiveSettings(k=int(k), iterations=int(iterations), batch=int(batch), lr=float(lr),
                               temperature=float(temperature), radius=float(radius), seed=int(seed))


def strip_image(rows):
    """A preview strip (``images.strip`` of [3, H, W] rows) as a ComfyUI IMAGE [1, H, W, 3] in [0, 1]."""
    import numpy as np
    import torch

    from hspace_core.images import strip

    return torch.from_numpy(np.asarray(strip(rows), dtype=np.float32) / 255.0)[None]


class _KDirections:
    """What the DDPM nodes that find k directions at once share: a list out, a preview strip beside it."""
    CATEGORY = CATEGORY
    FUNCTION = "find"
    RETURN_TYPES = (DIRECTION, "IMAGE")
    RETURN_NAMES = ("directions", "preview")
    OUTPUT_IS_LIST = (True, False)
    OUTPUT_TOOLTIPS = ("the k directions (a list: nodes after it run once per direction)",
                       "a row per direction: the first images at calibrated strengths -2, 0, +2")

    @staticmethod
    def calibrated_with_preview(m, ds, x, preview_images: int, seed: int, steps: int, t_edit: int):
        """(each direction calibrated on m, a preview strip of them on the first images of x, or on seeded
        samples without images)."""
        from hspace_core.discovery.contrastive import preview_rows
        from hspace_core.discovery.record import seeded_noise
        from hspace_core.images import prepare_images
        from hspace_core.inversion import invert

        ds = [calibrated(m, d) for d in ds]
        if x is not None:
            source = invert(m, prepare_images(x[:preview_images], m.image_size, "resize_crop")[0], steps=steps)
        else:
            source = seeded_noise(m, preview_images, seed)
        return (ds, strip_image(preview_rows(m, ds, source, t_edit=t_edit, steps=steps)))


class DirectionsByContrast(_KDirections):
    DESCRIPTION = ("Discovers k directions at once without labels or words: NoiseCLR's contrastive objective moved into "
                   "h (the same direction on different images should change the predicted x0 alike, different "
                   "directions on one image differently), from unlabelled images or the model's own samples. Returns "
                   "them as a list (each calibrated), largest effect first, and a preview strip: a row per direction, "
                   "the first images at strengths -2, 0, +2. Pick one with Pick H-Space Direction for the mixer.")
    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {
            "model": (MODEL, {"tooltip": "the DDPM the directions are for"}),
            **CONTRAST_INPUTS,
            "steps": ("INT", {"default": 40, "min": 2, "max": 1000, "tooltip": "grid the directions are made on"}),
            "samples": ("INT", {"default": 64, "min": 2, "max": 10000,
                                "tooltip": "without images: discover on this many of the model's samples"}),
            "preview_images": ("INT", {"default": 4, "min": 1, "max": 16, "tooltip": "images in the preview strip"}),
        }, "optional": {
            "images": ("IMAGE", {"tooltip": "unlabelled images (fitted to the model's size by resize and crop)"}),
        }, "hidden": {"unique_id": "UNIQUE_ID"}}

    def find(self, model, k, iterations, batch, lr, temperature, radius, t_edit, seed, steps, samples,
             preview_images, images=None, unique_id=None):
        from hspace_core.discovery.contrastive import contrastive_directions

        m = model.ready()
        x = image_to_engine(images) if images is not None else None
        ds = contrastive_directions(m, x, n_samples=samples, steps=steps, t_edit=t_edit,
                                    settings=contrast_settings(k, iterations, batch, lr, temperature, radius, seed),
                                    callback=bridge.Progress(unique_id))
        return self.calibrated_with_preview(m, ds, x, preview_images, seed, steps, t_edit)


class DirectionsByIndependence(_KDirections):
    DESCRIPTION = ("Discovers k directions at once without labels or words: independent components of h. Every image "
                   "(or model sample) is one row of h at the edited steps of its trajectory; the rows are whitened "
                   "in their top principal components and rotated by FastICA to the least Gaussian coordinates, where "
                   "attributes that vary independently (a yes/no feature, a dial) come apart, which PCA's axes of "
                   "largest variance mix. Each calibrated; the most reproducible over bootstrap resamples (or, order: "
                   "kurtosis, the least Gaussian) first; with a preview strip (a row per "
                   "direction, the first images at strengths -2, 0, +2). Pick one with Pick H-Space Direction.")
    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {
            "model": (MODEL, {"tooltip": "the DDPM the directions are for"}),
            **ICA_INPUTS,
            "t_edit": ("INT", {"default": 500, "min": 0, "max": 3999,
                               "tooltip": "editing interval the directions are made for (t >= t_edit)"}),
            "steps": ("INT", {"default": 40, "min": 2, "max": 1000, "tooltip": "grid the directions are made on"}),
            "samples": ("INT", {"default": 256, "min": 4, "max": 10000,
                                "tooltip": "without images: analyse this many of the model's samples"}),
            "preview_images": ("INT", {"default": 4, "min": 1, "max": 16, "tooltip": "images in the preview strip"}),
        }, "optional": {
            "images": ("IMAGE", {"tooltip": "unlabelled images (fitted to the model's size by resize and crop)"}),
            **ICA_ORDER,
            **ICA_ROTATE,
        }, "hidden": {"unique_id": "UNIQUE_ID"}}

    def find(self, model, k, dims, seed, t_edit, steps, samples, preview_images, images=None, order="stability",
             rotate="h", unique_id=None):
        from hspace_core.discovery.ica import ica_directions

        m = model.ready()
        x = image_to_engine(images) if images is not None else None
        ds = ica_directions(m, x, n_samples=samples, components=k, dims=dims or None, steps=steps, t_edit=t_edit,
                            seed=seed, order=order, rotate=rotate, callback=bridge.Progress(unique_id))
        return self.calibrated_with_preview(m, ds, x, preview_images, seed, steps, t_edit)
