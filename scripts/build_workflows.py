"""Builds the example workflows: UI-format JSON (version 0.4) in example_workflows/, their API-format
twins in tests/pack/workflows/, and a thumbnail per workflow from running the twin.

One description per workflow below; widget order comes from the node classes' INPUT_TYPES, so the UI
file and the API twin cannot drift apart. Run after changing a node's inputs:

    python scripts/build_workflows.py [--no-thumbnails]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from hspace_core.demo.demo import DEMO_T_EDIT, SAMPLE_CLIP_X0, SMILE_TEXT_LR  # noqa: E402
from nodes.discovery import EMBEDDED_CLIP  # noqa: E402
from nodes.loaders import EMBEDDED_DEMO  # noqa: E402
from nodes.registry import NODE_CLASS_MAPPINGS  # noqa: E402

PACK = "comfyui-hspace"
VERSION = "0.1.0"
FACE_IMAGE = "hspace_face.png"
CLIP_FILE = "open_clip_model.safetensors"
CLIP_URL = "https://huggingface.co/timm/vit_base_patch16_clip_224.openai/resolve/main/open_clip_model.safetensors"
SEED_INPUTS = ("seed", "noise_seed")

# ComfyUI core nodes the workflows use: (widget specs in order, socket inputs, outputs)
CORE = {
    "LoadImage": ([("image", "COMBO"), ("upload", "UPLOAD")], [], [("IMAGE", "IMAGE"), ("MASK", "MASK")]),
    "SaveImage": ([("filename_prefix", "STRING")], [("images", "IMAGE")], []),
    "CheckpointLoaderSimple": ([("ckpt_name", "COMBO")], [], [("MODEL", "MODEL"), ("CLIP", "CLIP"), ("VAE", "VAE")]),
    "CLIPTextEncode": ([("text", "STRING")], [("clip", "CLIP")], [("CONDITIONING", "CONDITIONING")]),
    "EmptyLatentImage": ([("width", "INT"), ("height", "INT"), ("batch_size", "INT")], [], [("LATENT", "LATENT")]),
    "BasicScheduler": ([("scheduler", "COMBO"), ("steps", "INT"), ("denoise", "FLOAT")], [("model", "MODEL")],
                       [("SIGMAS", "SIGMAS")]),
    "SamplerCustom": ([("add_noise", "BOOLEAN"), ("noise_seed", "INT"), ("cfg", "FLOAT")],
                      [("model", "MODEL"), ("positive", "CONDITIONING"), ("negative", "CONDITIONING"),
                       ("sampler", "SAMPLER"), ("sigmas", "SIGMAS"), ("latent_image", "LATENT")],
                      [("output", "LATENT"), ("denoised_output", "LATENT")]),
    "KSampler": ([("seed", "INT"), ("steps", "INT"), ("cfg", "FLOAT"), ("sampler_name", "COMBO"), ("scheduler", "COMBO"),
                  ("denoise", "FLOAT")], [("model", "MODEL"), ("positive", "CONDITIONING"), ("negative", "CONDITIONING"),
                                          ("latent_image", "LATENT")], [("LATENT", "LATENT")]),
    "VAEDecode": ([], [("samples", "LATENT"), ("vae", "VAE")], [("IMAGE", "IMAGE")]),
    "VAEEncode": ([], [("pixels", "IMAGE"), ("vae", "VAE")], [("LATENT", "LATENT")]),
    "ImageScale": ([("upscale_method", "COMBO"), ("width", "INT"), ("height", "INT"), ("crop", "COMBO")],
                   [("image", "IMAGE")], [("IMAGE", "IMAGE")]),
    "ImageBatch": ([], [("image1", "IMAGE"), ("image2", "IMAGE")], [("IMAGE", "IMAGE")]),
    "SolidMask": ([("value", "FLOAT"), ("width", "INT"), ("height", "INT")], [], [("MASK", "MASK")]),
    "MaskComposite": ([("x", "INT"), ("y", "INT"), ("operation", "COMBO")], [("destination", "MASK"), ("source", "MASK")],
                      [("MASK", "MASK")]),
    "UNETLoader": ([("unet_name", "COMBO"), ("weight_dtype", "COMBO")], [], [("MODEL", "MODEL")]),
    "DualCLIPLoader": ([("clip_name1", "COMBO"), ("clip_name2", "COMBO"), ("type", "COMBO")], [], [("CLIP", "CLIP")]),
    "VAELoader": ([("vae_name", "COMBO")], [], [("VAE", "VAE")]),
    "FluxGuidance": ([("guidance", "FLOAT")], [("conditioning", "CONDITIONING")], [("CONDITIONING", "CONDITIONING")]),
    "EmptySD3LatentImage": ([("width", "INT"), ("height", "INT"), ("batch_size", "INT")], [], [("LATENT", "LATENT")]),
}
# the standard checkpoints the SD workflows name, where ComfyUI's missing-models dialog sends users
CHECKPOINTS = {
    "v1-5-pruned-emaonly.safetensors":
        "https://huggingface.co/Comfy-Org/stable-diffusion-v1-5-archive/resolve/main/v1-5-pruned-emaonly.safetensors",
    "sd_xl_base_1.0.safetensors":
        "https://huggingface.co/stabilityai/stable-diffusion-xl-base-1.0/resolve/main/sd_xl_base_1.0.safetensors",
}
# the flow transformers' files (Flux.1: the diffusion model, its two text encoders and its VAE; SD3.5 medium: one
# checkpoint with its text encoders), with the folder ComfyUI's missing-models dialog puts each in
SD35 = "sd3.5_medium_incl_clips_t5xxlfp8scaled.safetensors"
CHECKPOINTS[SD35] = ("https://huggingface.co/Comfy-Org/stable-diffusion-3.5-fp8/resolve/main/"
                     "sd3.5_medium_incl_clips_t5xxlfp8scaled.safetensors")
FLUX_FILES = {
    "flux1-dev.safetensors": ("diffusion_models",
                              "https://huggingface.co/black-forest-labs/FLUX.1-dev/resolve/main/flux1-dev.safetensors"),
    "flux1-schnell.safetensors": ("diffusion_models", "https://huggingface.co/black-forest-labs/FLUX.1-schnell/resolve/"
                                                      "main/flux1-schnell.safetensors"),
    "clip_l.safetensors": ("text_encoders",
                           "https://huggingface.co/comfyanonymous/flux_text_encoders/resolve/main/clip_l.safetensors"),
    "t5xxl_fp16.safetensors": ("text_encoders", "https://huggingface.co/comfyanonymous/flux_text_encoders/resolve/main/"
                                                "t5xxl_fp16.safetensors"),
    "ae.safetensors": ("vae", "https://huggingface.co/black-forest-labs/FLUX.1-schnell/resolve/main/ae.safetensors"),
}
SD15, SDXL = list(CHECKPOINTS)[:2]

# strengths of the edit-friendly and Jacobian examples on the embedded model (README: miniature world)
EDIT_STRENGTHS = "-4, 0, 4"
JACOBIAN_STRENGTHS = "-0.6, -0.3, 0, 0.3, 0.6"

L = "link"
# UI layout (graph units): LiteGraph's title, slot and widget heights; columns of nodes by depth
NODE_TITLE, SLOT, WIDGET = 30, 22, 24
IMAGE_PREVIEW = 220  # LoadImage shows its picture under its widgets
MULTILINE = 80  # CLIPTextEncode's text box is taller than a widget row
NODE_WIDTH, COLUMN, GAP, MARGIN = 300, 340, 50, 40  # a title bar (30) is drawn above each node
# the canvas area a 1280 x 800 browser window leaves free (px), and where it starts
VIEW, VIEW_ORIGIN = (1150, 620), (70, 110)


def workflows(t_edit: int) -> dict:
    model = ("HSpaceLoadUnconditionalDDPM", {"ckpt_name": EMBEDDED_DEMO, "image_size": 0, "num_heads": 0,
                                             "schedule": "auto", "num_timesteps": 0})

    def sampler(strengths="", strength=1.0, interval="from direction", seed=0, clip_x0=False, t_boost=0, t_skip=0,
                **links):
        return ("HSpaceAsyrpSampler", {"strength": strength, "strengths": strengths, "interval": interval,
                                       "t_edit": t_edit, "t_boost": t_boost, "text_cosine": 1.0, "steps": 0, "eta": 1.0,
                                       "variant": "asymmetric", "seed": seed, "batch_size": 2, "clip_x0": clip_x0,
                                       "t_skip": t_skip, **links})

    def faces(count, seed, **fixed):
        values = {"count": count, "seed": seed, **{a: -2.0 for a in ("smile", "eye_size", "face_width", "hair_hue",
                                                                   "skin_tone", "background_hue", "head_tilt")},
                  "glasses": "random", "hat": "random"}
        values.update(fixed)
        return ("HSpaceProceduralFaces", values)

    def invert(model_id, image_id, method="ddim"):
        return ("HSpaceDDIMInvert", {"model": (model_id, 0), "image": (image_id, 0), "steps": 40,
                                     "size_policy": "resize_crop", "method": method, "seed": 0})

    def strip(images, columns):
        return ("HSpaceImageStrip", {"images": (images, 0), "columns": columns, "scale": 4})

    def save(images, prefix):
        return ("SaveImage", {"images": (images, 0), "filename_prefix": prefix})

    def save_and_apply(first: int, found: str, direction_prefix: str, strengths: str, faces_seed: int,
                       image_prefix: str) -> dict:
        """Nodes first, first + 1, ...: save the found direction, invert two faces, edit them, save a strip."""
        ids = [str(first + i) for i in range(6)]
        return {ids[0]: ("HSpaceSaveDirection", {"direction": (found, 0), "filename_prefix": direction_prefix}),
                ids[1]: faces(2, faces_seed), ids[2]: invert("1", ids[1]),
                ids[3]: sampler(strengths=strengths, model=("1", 0), direction=(found, 0), inversion=(ids[2], 0)),
                ids[4]: strip(ids[3], len(strengths.split(","))), ids[5]: save(ids[4], image_prefix)}

    def direction(name):
        return ("HSpaceLoadDirection", {"direction_name": name})

    return {
        "edit_image_with_direction": {
            "title": "Edit a real image with an h-space direction (face width)",
            "nodes": {"1": model, "2": ("LoadImage", {"image": FACE_IMAGE, "upload": "image"}), "3": invert("1", "2"),
                      "4": direction("demo_width (embedded)"),
                      "5": sampler(strengths="0, 4", model=("1", 0), direction=("4", 0), inversion=("3", 0)),
                      "6": strip("5", 2), "7": save("6", "hspace/edit")}},
        "strength_sweep_strip": {
            "title": "A strength sweep in one batch, as a strip (one row per input)",
            "nodes": {"1": model, "2": faces(2, 7), "3": invert("1", "2"), "4": direction("demo_width (embedded)"),
                      "5": sampler(strengths="-4, -2, 0, 2, 4", model=("1", 0), direction=("4", 0),
                                   inversion=("3", 0)),
                      "6": strip("5", 5), "7": save("6", "hspace/sweep")}},
        "mix_two_directions": {
            "title": "Mix two directions like paint: wide face + big eyes",
            "nodes": {"1": model, "2": faces(2, 11), "3": invert("1", "2"), "4": direction("demo_width (embedded)"),
                      "5": direction("demo_eyes (embedded)"),
                      "6": ("HSpaceDirectionMixer", {"direction_1": ("4", 0), "weight_1": 1.0, "weight_2": 0.9,
                                                     "weight_3": 1.0, "weight_4": 1.0, "sqrt_n": False,
                                                     "projection": "joint", "direction_2": ("5", 0)}),
                      "7": sampler(strengths="0, 2, 4", model=("1", 0), direction=("6", 0), inversion=("3", 0),
                                   interval="explicit"),
                      "8": strip("7", 3), "9": save("8", "hspace/mix")}},
        "direction_from_image_sets": {
            "title": "Find a direction from two image sets (supervised, Haas et al.) and use it",
            "nodes": {"1": model, "2": faces(16, 1, face_width=0.9), "3": faces(16, 1, face_width=0.1),
                      "4": ("HSpaceDirectionFromImages", {"model": ("1", 0), "positive": ("2", 0),
                                                          "negative": ("3", 0), "method": "mean difference",
                                                          "steps": 40, "t_edit": t_edit,
                                                          "size_policy": "resize_crop"}),
                      **save_and_apply(5, "4", "hspace/found_width", "-4, 0, 4", 9, "hspace/found")}},
        "direction_from_text": {
            "title": "Train a direction from text with CLIP (Asyrp), on the demo world's embedded tiny CLIP",
            "nodes": {"1": model,
                      "2": ("HSpaceDirectionFromText", {"model": ("1", 0), "source_text": "face",
                                                        "target_text": "smiling face", "clip_name": EMBEDDED_CLIP,
                                                        "clip_arch": "ViT-B-16-quickgelu", "kind": "deltablock",
                                                        "samples": 4, "steps": 40, "t_edit": t_edit, "lr": SMILE_TEXT_LR,
                                                        "iterations": 1, "clip_weight": 1.0, "l1_weight": 3.0,
                                                        "seed": 0, "t_end": 999}),
                      **save_and_apply(3, "2", "hspace/text_smile", "0, 1", 5, "hspace/text")}},
        "pca_directions": {
            "title": "Unsupervised PCA directions of h (Haas et al.) on fresh samples",
            "nodes": {"1": model,
                      "2": ("HSpaceDirectionPCA", {"model": ("1", 0), "samples": 64, "component": 0, "steps": 40,
                                                   "t_edit": t_edit, "seed": 0}),
                      "3": ("HSpaceDirectionPCA", {"model": ("1", 0), "samples": 64, "component": 1, "steps": 40,
                                                   "t_edit": t_edit, "seed": 0}),
                      "4": sampler(strengths="-2, -1, 0, 1, 2", model=("1", 0), direction=("2", 0), seed=3,
                                   clip_x0=SAMPLE_CLIP_X0),
                      "5": sampler(strengths="-2, -1, 0, 1, 2", model=("1", 0), direction=("3", 0), seed=3,
                                   clip_x0=SAMPLE_CLIP_X0),
                      "6": strip("4", 5), "7": save("6", "hspace/pc0"), "8": strip("5", 5), "9": save("8", "hspace/pc1")}},
        "edit_friendly_inversion": {
            "title": "Edit-friendly DDPM inversion beside DDIM inversion: the same edit, exact reconstruction",
            "nodes": {"1": model, "2": ("LoadImage", {"image": FACE_IMAGE, "upload": "image"}),
                      "3": invert("1", "2"), "4": invert("1", "2", method="ddpm (edit-friendly)"),
                      "5": direction("demo_width (embedded)"),
                      "6": sampler(strengths=EDIT_STRENGTHS, model=("1", 0), direction=("5", 0), inversion=("3", 0)),
                      "7": sampler(strengths=EDIT_STRENGTHS, model=("1", 0), direction=("5", 0), inversion=("4", 0)),
                      "8": strip("6", 3), "9": save("8", "hspace/ddim_edit"), "10": strip("7", 3),
                      "11": save("10", "hspace/ddpm_edit")}},
        "jacobian_direction": {
            "title": "Per-image Jacobian directions (Park et al.): the first two components of one face",
            "nodes": {"1": model, "2": ("LoadImage", {"image": FACE_IMAGE, "upload": "image"}),
                      "3": ("HSpaceDirectionJacobian", {"model": ("1", 0), "image": ("2", 0), "component": 0,
                                                        "t_edit": t_edit, "t": 0, "steps": 40, "iterations": 10,
                                                        "seed": 0, "batch_index": 0}),
                      "4": ("HSpaceDirectionJacobian", {"model": ("1", 0), "image": ("2", 0), "component": 1,
                                                        "t_edit": t_edit, "t": 0, "steps": 40, "iterations": 10,
                                                        "seed": 0, "batch_index": 0}),
                      "5": invert("1", "2"),
                      "6": sampler(strengths=JACOBIAN_STRENGTHS, model=("1", 0), direction=("3", 0),
                                   inversion=("5", 0)),
                      "7": sampler(strengths=JACOBIAN_STRENGTHS, model=("1", 0), direction=("4", 0),
                                   inversion=("5", 0)),
                      "8": strip("6", 5), "9": save("8", "hspace/jacobian0"), "10": strip("7", 5),
                      "11": save("10", "hspace/jacobian1")}},
        **sd_workflows(),
        **sd_world_workflows(),
        **flow_workflows(),
        **flow_world_workflows(),
    }


def flow_workflows() -> dict:
    """Flux.1 dev and schnell, SD3.5 medium: the pack's nodes on ComfyUI's flow transformers. The starting
    settings (h after the middle joint block, the residual stream, t_edit 200 .. t_end 700 in 1000 sigma,
    strengths in calibrated units) are untested on real weights: the miniature flow world measures its own."""
    def text(t, clip="3", slot=0):
        return ("CLIPTextEncode", {"text": t, "clip": (clip, slot)})

    def flux_loaders(unet):
        return {"1": ("UNETLoader", {"unet_name": unet, "weight_dtype": "default"}),
                "2": ("VAELoader", {"vae_name": "ae.safetensors"}),
                "3": ("DualCLIPLoader", {"clip_name1": "clip_l.safetensors", "clip_name2": "t5xxl_fp16.safetensors",
                                         "type": "flux"})}

    def scheduler(steps, model="1"):
        return ("BasicScheduler", {"model": (model, 0), "scheduler": "simple", "steps": steps, "denoise": 1.0})

    def direction(source, target, sigmas, size, name, model="1"):
        return ("HSpaceDirectionFromPrompts", {"model": (model, 0), "source": (source, 0), "target": (target, 0),
                                               "sigmas": (sigmas, 0), "seeds": 4, "seed": 0, "width": size,
                                               "height": size, "spatial": "keep", "name": name, "block": -1,
                                               "h": "residual stream"})

    def apply(d, model="1"):
        return ("HSpaceApplyDirection", {"model": (model, 0), "direction": (d, 0), "strength": 1.0, "t_edit": 200,
                                         "t_end": 700, "branch": "both", "mode": "asymmetric", "units": "calibrated"})

    face, smiling = "a photo of a person's face, natural light", "a photo of a person's smiling face, natural light"
    return {
        "flux1_dev_prompt_pair_sweep": {
            "title": "Flux.1 dev: a direction from a prompt pair at the middle joint block, swept over four strengths "
                     "(Asyrp sampler, calibrated units; starting settings, untested on real weights)",
            "nodes": {**flux_loaders("flux1-dev.safetensors"), "4": text(face), "5": text(smiling),
                      "6": ("FluxGuidance", {"conditioning": ("4", 0), "guidance": 3.5}),
                      "7": ("FluxGuidance", {"conditioning": ("5", 0), "guidance": 3.5}),
                      "8": scheduler(28), "9": direction("6", "7", "8", 1024, "smile (flux dev)"),
                      "10": apply("9"),
                      "11": ("HSpaceAsyrpSamplerSD", {"strengths": "0, 2, 4, 6", "eta": 0.0, "t_boost": 0,
                                                      "t_skip": 0}),
                      "12": ("EmptySD3LatentImage", {"width": 1024, "height": 1024, "batch_size": 1}),
                      "13": ("SamplerCustom", {"model": ("10", 0), "add_noise": True, "noise_seed": 42, "cfg": 1.0,
                                               "positive": ("6", 0), "negative": ("6", 0), "sampler": ("11", 0),
                                               "sigmas": ("8", 0), "latent_image": ("12", 0)}),
                      "14": ("VAEDecode", {"samples": ("13", 0), "vae": ("2", 0)}),
                      "15": ("SaveImage", {"images": ("14", 0), "filename_prefix": "hspace/flux_dev_sweep"})}},
        "flux1_schnell_edit_real_image": {
            "title": "Flux.1 schnell: edit a real photo (exact-replay inversion, Asyrp sampler at strengths 0 and 4; "
                     "starting settings, untested on real weights)",
            "nodes": {**flux_loaders("flux1-schnell.safetensors"), "4": text(face), "5": text(smiling),
                      "6": scheduler(4), "7": direction("4", "5", "6", 1024, "smile (flux schnell)"),
                      "8": apply("7"),
                      "9": ("LoadImage", {"image": FACE_IMAGE, "upload": "image"}),
                      "10": ("ImageScale", {"image": ("9", 0), "upscale_method": "lanczos", "width": 1024,
                                            "height": 1024, "crop": "center"}),
                      "11": ("VAEEncode", {"pixels": ("10", 0), "vae": ("2", 0)}),
                      "12": ("HSpaceInvertLatent", {"model": ("1", 0), "positive": ("4", 0), "latent": ("11", 0),
                                                    "sigmas": ("6", 0), "check_reconstruction": True,
                                                    "method": "ddpm (edit-friendly)", "seed": 0}),
                      "13": ("HSpaceAsyrpSamplerSD", {"strengths": "0, 4", "eta": 0.0, "t_boost": 0,
                                                      "noise_maps": ("12", 2), "t_skip": 0}),
                      "14": ("SamplerCustom", {"model": ("8", 0), "add_noise": False, "noise_seed": 0, "cfg": 1.0,
                                               "positive": ("4", 0), "negative": ("4", 0), "sampler": ("13", 0),
                                               "sigmas": ("6", 0), "latent_image": ("12", 0)}),
                      "15": ("VAEDecode", {"samples": ("14", 0), "vae": ("2", 0)}),
                      "16": ("SaveImage", {"images": ("15", 0), "filename_prefix": "hspace/flux_schnell_real_edit"})}},
        "sd35_prompt_pair_sweep": {
            "title": "SD3.5 medium: a direction from a prompt pair at the middle joint block, swept over four "
                     "strengths with CFG (Asyrp sampler, calibrated units; starting settings, untested on real weights)",
            "nodes": {"1": ("CheckpointLoaderSimple", {"ckpt_name": SD35}), "2": text(face, "1", 1),
                      "3": text(smiling, "1", 1), "4": text("blurry, lowres", "1", 1), "5": scheduler(28),
                      "6": direction("2", "3", "5", 1024, "smile (sd3.5)"), "7": apply("6"),
                      "8": ("HSpaceAsyrpSamplerSD", {"strengths": "0, 2, 4, 6", "eta": 0.0, "t_boost": 0,
                                                     "t_skip": 0}),
                      "9": ("EmptySD3LatentImage", {"width": 1024, "height": 1024, "batch_size": 1}),
                      "10": ("SamplerCustom", {"model": ("7", 0), "add_noise": True, "noise_seed": 42, "cfg": 4.5,
                                               "positive": ("2", 0), "negative": ("4", 0), "sampler": ("8", 0),
                                               "sigmas": ("5", 0), "latent_image": ("9", 0)}),
                      "11": ("VAEDecode", {"samples": ("10", 0), "vae": ("1", 2)}),
                      "12": ("SaveImage", {"images": ("11", 0), "filename_prefix": "hspace/sd35_sweep"})}},
    }


def sd_workflows() -> dict:
    """SD1.5 / SDXL: the pack's nodes inside ComfyUI's own graphs (checkpoint, prompts, SamplerCustom)."""
    def ckpt(name):
        return ("CheckpointLoaderSimple", {"ckpt_name": name})

    def text(t):
        return ("CLIPTextEncode", {"text": t, "clip": ("1", 1)})

    def scheduler(steps):
        return ("BasicScheduler", {"model": ("1", 0), "scheduler": "normal", "steps": steps, "denoise": 1.0})

    def prompts_direction(source, target, sigmas, size, name):
        return ("HSpaceDirectionFromPrompts", {"model": ("1", 0), "source": (source, 0), "target": (target, 0),
                                               "sigmas": (sigmas, 0), "seeds": 4, "seed": 0, "width": size,
                                               "height": size, "spatial": "average", "name": name})

    def apply(direction, t_edit, mode="asymmetric", branch="both", strength=1.0):
        return ("HSpaceApplyDirection", {"model": ("1", 0), "direction": (direction, 0), "strength": strength,
                                         "t_edit": t_edit, "t_end": 999, "branch": branch, "mode": mode})

    def decode_save(latent, prefix, slot=0):
        return [("VAEDecode", {"samples": (latent, slot), "vae": ("1", 2)}), ("SaveImage", {"images": (None, 0),
                                                                                          "filename_prefix": prefix})]

    def chain(first: int, nodes: list) -> dict:
        """Consecutive ids from ``first``; a (None, k) link points at the node just before."""
        out = {}
        for i, (cls, values) in enumerate(nodes):
            values = {k: (str(first + i - 1), v[1]) if isinstance(v, tuple) and v[0] is None else v
                      for k, v in values.items()}
            out[str(first + i)] = (cls, values)
        return out

    face, smiling = "a photo of a person's face, natural light", "a photo of a person's smiling face, natural light"

    def photo_inverted(method):
        """Nodes 1-11 of the real-photo edits: checkpoint, prompts, sigmas, smile direction applied, the
        photo VAE-encoded and inverted with ``method``."""
        return {"1": ckpt(SD15), "2": text(face), "3": text(smiling), "4": text("blurry, lowres"),
                "5": scheduler(50), "6": prompts_direction("2", "3", "5", 512, "smile (sd1.5)"),
                "7": apply("6", 500),
                "8": ("LoadImage", {"image": FACE_IMAGE, "upload": "image"}),
                "9": ("ImageScale", {"image": ("8", 0), "upscale_method": "lanczos", "width": 512, "height": 512,
                                     "crop": "center"}),
                "10": ("VAEEncode", {"pixels": ("9", 0), "vae": ("1", 2)}),
                "11": ("HSpaceInvertLatent", {"model": ("1", 0), "positive": ("2", 0), "latent": ("10", 0),
                                              "sigmas": ("5", 0), "check_reconstruction": True, "method": method,
                                              "seed": 0})}

    def sample_inverted(sampler):
        """SamplerCustom from the inverted latent (node 11): add_noise off, cfg 1, the same sigmas."""
        return ("SamplerCustom", {"model": ("7", 0), "add_noise": False, "noise_seed": 0, "cfg": 1.0,
                                  "positive": ("2", 0), "negative": ("4", 0), "sampler": (sampler, 0),
                                  "sigmas": ("5", 0), "latent_image": ("11", 0)})
    return {
        "sd15_prompt_pair_sweep": {
            "title": "SD1.5: a direction from a prompt pair, swept over five strengths in one batch (Asyrp sampler)",
            "nodes": {"1": ckpt(SD15), "2": text(face), "3": text(smiling), "4": text("blurry, lowres, watermark"),
                      "5": scheduler(30), "6": prompts_direction("2", "3", "5", 512, "smile (sd1.5)"),
                      "7": ("HSpaceSaveDirection", {"direction": ("6", 0), "filename_prefix": "hspace/sd15_smile"}),
                      "8": apply("6", 500),
                      "9": ("HSpaceAsyrpSamplerSD", {"strengths": "-1, -0.5, 0, 0.5, 1", "eta": 0.0, "t_boost": 0,
                                                     "t_skip": 0}),
                      "10": ("EmptyLatentImage", {"width": 512, "height": 512, "batch_size": 1}),
                      "11": ("SamplerCustom", {"model": ("8", 0), "add_noise": True, "noise_seed": 42, "cfg": 7.0,
                                               "positive": ("2", 0), "negative": ("4", 0), "sampler": ("9", 0),
                                               "sigmas": ("5", 0), "latent_image": ("10", 0)}),
                      **chain(12, decode_save("11", "hspace/sd15_sweep"))}},
        "sdxl_symmetric_edit": {
            "title": "SDXL: a prompt-pair direction on the cond branch, symmetric, with the stock KSampler (before / after)",
            "nodes": {"1": ckpt(SDXL), "2": text("a photo of a wooden house by a lake"),
                      "3": text("a photo of a wooden house by a lake in winter, snow"), "4": text("blurry, lowres"),
                      "5": scheduler(25), "6": prompts_direction("2", "3", "5", 1024, "winter (sdxl)"),
                      "7": apply("6", 600, mode="symmetric", branch="cond"),
                      "8": ("EmptyLatentImage", {"width": 1024, "height": 1024, "batch_size": 1}),
                      "9": ("KSampler", {"model": ("1", 0), "seed": 7, "steps": 25, "cfg": 6.0, "sampler_name": "euler",
                                         "scheduler": "normal", "denoise": 1.0, "positive": ("2", 0),
                                         "negative": ("4", 0), "latent_image": ("8", 0)}),
                      "10": ("KSampler", {"model": ("7", 0), "seed": 7, "steps": 25, "cfg": 6.0, "sampler_name": "euler",
                                          "scheduler": "normal", "denoise": 1.0, "positive": ("2", 0),
                                          "negative": ("4", 0), "latent_image": ("8", 0)}),
                      **chain(11, decode_save("9", "hspace/sdxl_before")),
                      **chain(13, decode_save("10", "hspace/sdxl_after"))}},
        "sd15_edit_real_image": {
            "title": "SD1.5: edit a real photo (VAE encode, DDIM inversion, Asyrp sampler at strengths 0 and 1)",
            "nodes": {**photo_inverted("ddim"),
                      "12": ("HSpaceAsyrpSamplerSD", {"strengths": "0, 1", "eta": 0.0, "t_boost": 0, "t_skip": 0}),
                      "13": sample_inverted("12"),
                      **chain(14, decode_save("13", "hspace/sd15_real_edit"))}},
        "sd15_edit_friendly_inversion": {
            "title": "SD1.5: edit a real photo from an edit-friendly DDPM inversion (noise maps replayed; from the top "
                     "and 12 steps lower)",
            "nodes": {**photo_inverted("ddpm (edit-friendly)"),
                      "12": ("HSpaceAsyrpSamplerSD", {"strengths": "0, 1", "eta": 0.0, "t_boost": 0,
                                                      "noise_maps": ("11", 2), "t_skip": 0}),
                      "13": sample_inverted("12"),
                      **chain(14, decode_save("13", "hspace/sd15_edit_friendly")),
                      "16": ("HSpaceAsyrpSamplerSD", {"strengths": "0, 1", "eta": 0.0, "t_boost": 0,
                                                      "noise_maps": ("11", 2), "t_skip": 12}),
                      "17": sample_inverted("16"),
                      **chain(18, decode_save("17", "hspace/sd15_edit_friendly_t_skip"))}},
    }


SD_WORLD_FACE = "hspace_sdworld_face.png"


def sd_world_workflows() -> dict:
    """The miniature SD world (Load Demo SD Model): the same SD nodes on a model that runs out of the box, at
    the settings bench/sd_claims.py recommends (``hspace_sdworld.configs.RECOMMENDED``; its edit is the
    smile direction kept on the mouth's rows by Direction Region, with a mask from stock nodes). ``thumbnail`` names
    the SaveImage node whose first image is the workflow's thumbnail (run in a real ComfyUI)."""
    return world_workflows("sd")


def flow_world_workflows() -> dict:
    """The miniature flow world (Load Demo Flow Model): the same nodes on its tiny Flux, at the settings
    bench/flow_claims.py recommends (``hspace_sdworld.configs.FLOW_RECOMMENDED``): the recommended (region) edit,
    the sweep, a real face through both inversions, two directions mixed."""
    wanted = ("prompt_pair_sweep", "edit_real_image", "region_edit", "mix_two_directions")
    return {k: v for k, v in world_workflows("flow").items() if k.removeprefix("flow_world_") in wanted}


def world_workflows(kind: str) -> dict:
    """The miniature SD world's (kind "sd") or flow world's ("flow") workflows."""
    from hspace_sdworld.configs import FLOW_RECOMMENDED, RECOMMENDED

    flow = kind == "flow"
    R = FLOW_RECOMMENDED if flow else RECOMMENDED
    world = "flow_world" if flow else "sd_world"
    label = "miniature flow world" if flow else "miniature SD world"
    steps, cfg, t_edit, t_end, s, s_real = R["steps"], R["cfg"], R["t_edit"], R["t_end"], R["strength"], R["real_strength"]
    sweep = ", ".join(f"{v:g}" for v in (0, s / 4, s / 2, 3 * s / 4, s))
    loader = ("HSpaceLoadDemoFlowModel", {"weights": "faces64 flow (embedded, miniature world)"}) if flow else \
        ("HSpaceLoadDemoSDModel", {"weights": "faces64 (embedded, miniature world)"})
    where = {"block": R["block"], "h": {"stream": "residual stream", "attention": "attention output"}[R["kind"]]} \
        if flow else {}

    def text(t):
        return ("CLIPTextEncode", {"text": t, "clip": ("1", 1)})

    def prompts_direction(source, target, name, spatial=R.get("spatial", "keep")):
        return ("HSpaceDirectionFromPrompts", {"model": ("1", 0), "source": (source, 0), "target": (target, 0),
                                               "sigmas": ("5", 0), "seeds": R["direction_seeds"], "seed": 500, "width": 64,
                                               "height": 64, "spatial": spatial, "name": name, **where})

    def apply(direction, mode="asymmetric", strength=1.0, end=t_end):
        return ("HSpaceApplyDirection", {"model": ("1", 0), "direction": (direction, 0), "strength": strength,
                                         "t_edit": t_edit, "t_end": end, "branch": R.get("branch", "both"),
                                         "mode": mode})

    def asyrp(strengths, **links):
        return ("HSpaceAsyrpSamplerSD", {"strengths": strengths, "eta": 0.0, "t_boost": 0, "t_skip": 0, **links})

    def sample(model, sampler, latent, add_noise=True, seed=42, cfg_=cfg):
        return ("SamplerCustom", {"model": (model, 0), "add_noise": add_noise, "noise_seed": seed, "cfg": cfg_,
                                  "positive": ("2", 0), "negative": ("4", 0), "sampler": (sampler, 0),
                                  "sigmas": ("5", 0), "latent_image": (latent, 0)})

    def decode(latent):
        return ("VAEDecode", {"samples": (latent, 0), "vae": ("1", 2)})

    def strip(images, columns):
        return ("HSpaceImageStrip", {"images": (images, 0), "columns": columns, "scale": 4})

    def save(images, prefix):
        return ("SaveImage", {"images": (images, 0), "filename_prefix": prefix})

    base = {"1": loader, "2": text("a face"), "3": text("a smiling face"), "4": text(""),
            "5": ("BasicScheduler", {"model": ("1", 0), "scheduler": "simple" if flow else "normal", "steps": steps,
                                     "denoise": 1.0})}
    empty = ("EmptyLatentImage", {"width": 64, "height": 64, "batch_size": 1})

    def band(top, ids):
        """Stock mask nodes (ids: three free node ids) giving a 64 px MASK, white on rows ``top``..63."""
        a, b, c = ids
        return {a: ("SolidMask", {"value": 0.0, "width": 64, "height": 64}),
                b: ("SolidMask", {"value": 1.0, "width": 64, "height": 64 - top}),
                c: ("MaskComposite", {"destination": (a, 0), "source": (b, 0), "x": 0, "y": top, "operation": "add"})}

    def recommended(direction, ids=("30", "31", "32", "33")):
        """The recommended edit's direction: ``direction`` kept on the rows from ``region_from`` down (Direction
        Region; the mouth's row of the UNet's h). (nodes, id of the region node)."""
        return {**band(R["region_from"], ids[:3]),
                ids[3]: ("HSpaceDirectionRegion", {"direction": (direction, 0), "mask": (ids[2], 0),
                                                   "invert": False})}, ids[3]

    def inverted(method, node):
        return ("HSpaceInvertLatent", {"model": ("1", 0), "positive": ("2", 0), "latent": (node, 0),
                                       "sigmas": ("5", 0), "check_reconstruction": True, "method": method, "seed": 0})
    smile_nodes, smile = recommended("6")
    top = R["region_from"]
    title = label[0].upper() + label[1:]
    return {k.replace("sd_world", world): {**v, "title": v["title"].replace("Miniature SD world", title),
                                           "nodes": {i: (c, {key: (val.replace("sdworld", world.replace("_", ""))
                                                                   if key == "filename_prefix" else
                                                                   val.replace("miniature SD world", label)
                                                                   if key == "name" else val)
                                                             for key, val in vals.items()})
                                                     for i, (c, vals) in v["nodes"].items()}}
            for k, v in {
        "sd_world_prompt_pair_sweep": {
            "title": "Miniature SD world: 'a face' -> 'a smiling face' from a prompt pair, swept over five strengths from 0 "
                     "(Asyrp sampler)",
            "thumbnail": "14",
            "nodes": {**base, "6": prompts_direction("2", "3", "smile (miniature SD world)"), **smile_nodes,
                      "7": ("HSpaceSaveDirection", {"direction": (smile, 0), "filename_prefix": "hspace/sdworld_smile"}),
                      "8": apply(smile), "9": asyrp(sweep), "10": empty, "11": sample("8", "9", "10"),
                      "12": decode("11"), "13": strip("12", 5), "14": save("13", "hspace/sdworld_sweep_strip"),
                      "15": save("12", "hspace/sdworld_sweep")}},
        "sd_world_edit_real_image": {
            "title": "Miniature SD world: a held-out face VAE-encoded, inverted (DDIM and edit-friendly) and smiled at "
                     "strength 0, half the recommended one and the recommended one",
            "thumbnail": "20",
            "nodes": {**base, "6": prompts_direction("2", "3", "smile (miniature SD world)"), **smile_nodes,
                      "7": apply(smile, end=R["real_t_end"]), "8": ("LoadImage", {"image": SD_WORLD_FACE, "upload": "image"}),
                      "9": ("VAEEncode", {"pixels": ("8", 0), "vae": ("1", 2)}),
                      "10": inverted("ddim", "9"), "11": inverted("ddpm (edit-friendly)", "9"),
                      # on a flow model the sampler starts from the inversion itself (both kinds)
                      "12": asyrp(f"0, {s_real / 2:g}, {s_real:g}", **({"noise_maps": ("10", 2)} if flow else {})),
                      "13": asyrp(f"0, {s_real / 2:g}, {s_real:g}", noise_maps=("11", 2)),
                      "14": sample("7", "12", "10", add_noise=False, cfg_=1.0),
                      "15": sample("7", "13", "11", add_noise=False, cfg_=1.0),
                      "16": decode("14"), "17": decode("15"),
                      "18": ("ImageBatch", {"image1": ("16", 0), "image2": ("17", 0)}),
                      "19": strip("18", 3), "20": save("19", "hspace/sdworld_real_strip"),
                      "21": save("18", "hspace/sdworld_real")}},
        "sd_world_symmetric_edit": {
            "title": "Miniature SD world: the smile direction symmetric, with the stock KSampler (before / after)",
            "thumbnail": "15",
            "nodes": {**base, "6": prompts_direction("2", "3", "smile (miniature SD world)"), **smile_nodes,
                      "7": apply(smile, mode="symmetric", strength=s), "8": empty,
                      "9": ("KSampler", {"model": ("1", 0), "seed": 42, "steps": steps, "cfg": cfg,
                                         "sampler_name": "euler", "scheduler": "normal", "denoise": 1.0,
                                         "positive": ("2", 0), "negative": ("4", 0), "latent_image": ("8", 0)}),
                      "10": ("KSampler", {"model": ("7", 0), "seed": 42, "steps": steps, "cfg": cfg,
                                          "sampler_name": "euler", "scheduler": "normal", "denoise": 1.0,
                                          "positive": ("2", 0), "negative": ("4", 0), "latent_image": ("8", 0)}),
                      "11": decode("9"), "12": decode("10"),
                      "13": ("ImageBatch", {"image1": ("11", 0), "image2": ("12", 0)}),
                      "14": strip("13", 2), "15": save("14", "hspace/sdworld_symmetric")}},
        "sd_world_region_edit": {
            "title": f"Miniature SD world: the smile direction kept per position, on all of h (top row) and only on the "
                     f"image rows {top}-63, the mouth's (Direction Region, bottom row), strengths 0 to the recommended one",
            "thumbnail": "21",
            "nodes": {**base, "6": prompts_direction("2", "3", "smile per position (miniature SD world)", "keep"),
                      **band(top, ("7", "8", "9")),
                      "10": ("HSpaceDirectionRegion", {"direction": ("6", 0), "mask": ("9", 0), "invert": False}),
                      "11": apply("6"), "12": apply("10"), "13": asyrp(f"0, {s / 2:g}, {s:g}"), "14": empty,
                      "15": sample("11", "13", "14"), "16": sample("12", "13", "14"),
                      "17": decode("15"), "18": decode("16"),
                      "19": ("ImageBatch", {"image1": ("17", 0), "image2": ("18", 0)}),
                      "20": strip("19", 3), "21": save("20", "hspace/sdworld_region_strip")}},
        "sd_world_mix_two_directions": {
            "title": "Miniature SD world: smile (on the mouth's rows) + glasses (an eighth of its weight), two prompt-pair "
                     "directions mixed (Direction Mixer), strengths 0 to the recommended one",
            "thumbnail": "16",
            "nodes": {**base, "6": prompts_direction("2", "3", "smile (miniature SD world)"), **smile_nodes,
                      "7": text("a face with glasses"), "8": prompts_direction("2", "7", "glasses (miniature SD world)"),
                      # the glasses direction acts on all of h and needs an eighth of the smile's strength
                      "9": ("HSpaceDirectionMixer", {"direction_1": (smile, 0), "weight_1": 1.0,
                                                     "weight_2": 0.125,
                                                     "weight_3": 1.0, "weight_4": 1.0, "sqrt_n": False,
                                                     "projection": "joint", "direction_2": ("8", 0)}),
                      "10": apply("9"), "11": asyrp(f"0, {s / 2:g}, {s:g}"), "12": empty,
                      "13": sample("10", "11", "12"), "14": decode("13"), "15": strip("14", 3),
                      "16": save("15", "hspace/sdworld_mix")}},
    }.items()}


def _spec(class_type: str):
    """(widgets [(name, kind, options)], sockets [(name, type)], outputs [(name, type)]) of a node type."""
    if class_type in CORE:
        widgets, sockets, outputs = CORE[class_type]
        return [(n, k, {}) for n, k in widgets], sockets, outputs
    cls = NODE_CLASS_MAPPINGS[class_type]
    spec = cls.INPUT_TYPES()
    widgets, sockets = [], []
    for section in ("required", "optional"):
        for name, entry in spec.get(section, {}).items():
            kind, opts = entry[0], (entry[1] if len(entry) > 1 else {})
            if isinstance(kind, list) or kind in ("INT", "FLOAT", "STRING", "BOOLEAN"):
                widgets.append((name, "COMBO" if isinstance(kind, list) else kind, opts))
            else:
                sockets.append((name, kind))
    names = getattr(cls, "RETURN_NAMES", None) or cls.RETURN_TYPES
    return widgets, sockets, list(zip(names, cls.RETURN_TYPES))


def to_api(desc: dict) -> dict:
    prompt = {}
    for node_id, (class_type, values) in desc["nodes"].items():
        widgets, sockets, _ = _spec(class_type)
        inputs = {}
        for name, value in values.items():
            if name == "upload":
                continue
            inputs[name] = [value[0], value[1]] if isinstance(value, tuple) else value
        prompt[node_id] = {"class_type": class_type, "inputs": inputs, "_meta": {"title": class_type}}
    return prompt


def to_ui(name: str, desc: dict) -> dict:
    nodes, links = [], []
    link_id = 0
    out_links: dict[tuple[str, int], list[int]] = {}
    order = list(desc["nodes"])
    for node_id in order:
        _, values = desc["nodes"][node_id]
        for name, value in values.items():
            if isinstance(value, tuple):
                link_id += 1
                src, slot = value
                src_type = _spec(desc["nodes"][src][0])[2][slot][1]
                links.append([link_id, int(src), slot, int(node_id), name, src_type])
                out_links.setdefault((src, slot), []).append(link_id)
    depth = {}

    def level(nid):
        if nid not in depth:
            ups = [v[0] for v in desc["nodes"][nid][1].values() if isinstance(v, tuple)]
            depth[nid] = 1 + max((level(u) for u in ups), default=-1)
        return depth[nid]

    columns: dict[int, int] = {}
    for i, node_id in enumerate(order):
        class_type, values = desc["nodes"][node_id]
        widgets, sockets, outputs = _spec(class_type)
        inputs = []
        for name, typ in sockets:
            link = next((l for l in links if l[3] == int(node_id) and l[4] == name), None)
            inputs.append({"name": name, "type": typ, "link": link[0] if link else None})
        for l in links:
            if l[3] == int(node_id):
                l[4] = [s[0] for s in sockets].index(l[4])
        widgets_values = []
        for name, kind, opts in widgets:
            if name not in values:
                value = opts.get("default")
            else:
                value = values[name]
            widgets_values.append(value)
            if kind == "INT" and (opts.get("control_after_generate") or name in SEED_INPUTS):
                widgets_values.append("fixed")
        col = level(node_id)
        # the frontend sizes a node to its slots and widgets; lay the column out with that height
        height = NODE_TITLE + SLOT * max(len(sockets), len(outputs)) + WIDGET * (len(widgets) + (
            1 if any(k == "INT" and (o.get("control_after_generate") or n in SEED_INPUTS) for n, k, o in widgets)
            else 0)) + 16 + (IMAGE_PREVIEW if class_type == "LoadImage" else 0) + (
            MULTILINE if class_type == "CLIPTextEncode" else 0)
        top = columns.get(col, MARGIN)
        columns[col] = top + height + GAP
        properties = {"Node name for S&R": class_type}
        if class_type not in CORE:
            properties.update({"cnr_id": PACK, "ver": VERSION})
        if class_type == "HSpaceDirectionFromText" and values.get("clip_name") == CLIP_FILE:
            properties["models"] = [{"name": CLIP_FILE, "url": CLIP_URL, "directory": "text_encoders"}]
        if class_type == "CheckpointLoaderSimple":
            name_ = values["ckpt_name"]
            properties["models"] = [{"name": name_, "url": CHECKPOINTS[name_], "directory": "checkpoints"}]
        if class_type in ("UNETLoader", "DualCLIPLoader", "VAELoader"):
            names = [v for k, v in values.items() if k in ("unet_name", "clip_name1", "clip_name2", "vae_name")]
            properties["models"] = [{"name": n, "url": FLUX_FILES[n][1], "directory": FLUX_FILES[n][0]}
                                    for n in names]
        nodes.append({
            "id": int(node_id), "type": class_type, "pos": [MARGIN + COLUMN * col, top], "size": [NODE_WIDTH, height],
            "flags": {}, "order": i, "mode": 0, "inputs": inputs,
            "outputs": [{"name": n, "type": t, "links": out_links.get((node_id, k), []), "slot_index": k}
                        for k, (n, t) in enumerate(outputs)],
            "properties": properties, "widgets_values": widgets_values,
        })
    width = max(n["pos"][0] + n["size"][0] for n in nodes) + MARGIN
    height = max(n["pos"][1] + n["size"][1] for n in nodes) + MARGIN
    # open the whole graph inside the canvas that a 1280 x 800 window leaves (left sidebar, top bars)
    scale = round(min(1.0, VIEW[0] / width, VIEW[1] / height), 3)
    offset = [round(VIEW_ORIGIN[0] / scale), round(VIEW_ORIGIN[1] / scale)]
    # the frontend's schema wants a string id; a name-based uuid keeps the file stable across rebuilds
    return {"id": str(uuid.uuid5(uuid.NAMESPACE_URL, f"{PACK}/{name}")), "revision": 0,
            "last_node_id": max(int(n) for n in order), "last_link_id": link_id,
            "nodes": nodes, "links": links, "groups": [], "config": {},
            "extra": {"ds": {"scale": scale, "offset": offset}, "info": {"title": desc["title"]}}, "version": 0.4}


def thumbnail(name: str, prompt: dict, out: Path) -> None:
    """Run the API twin with the test executor and keep its first saved image as a JPEG thumbnail."""
    from PIL import Image
    from tests.pack.executor import core_nodes, execute
    from tests.pack.fixtures import make_models_dir

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        os.environ["HSPACE_MODELS_DIR"] = str(make_models_dir(tmp / "models"))
        classes = {**NODE_CLASS_MAPPINGS, **core_nodes(ROOT / "example_workflows" / "input", tmp / "output")}
        _, ui = execute(prompt, classes)
        saved = [ui[k]["images"][0] for k in sorted(ui, key=int) if "images" in ui[k]]
        first = tmp / "output" / saved[0]
        with Image.open(first) as im:
            im.convert("RGB").save(out, quality=90)


def real_comfyui_thumbnails(jobs: list[tuple[str, dict, str]]) -> None:
    """Run SD-world twins in a real ComfyUI (started as the tests start it) and keep each one's thumbnail
    node's first image: ``jobs`` of (name, API prompt, thumbnail node id)."""
    import shutil

    from PIL import Image
    from tests.comfyui.harness import ComfyServer, find_comfyui

    root, how = find_comfyui()
    if root is None:
        print(f"no thumbnails for {[j[0] for j in jobs]}: {how}")
        return
    with tempfile.TemporaryDirectory() as tmp:
        server = ComfyServer(root, Path(tmp))
        server.prepare()
        shutil.copy(ROOT / "example_workflows" / "input" / SD_WORLD_FACE, Path(tmp) / "input" / SD_WORLD_FACE)
        server.start()
        try:
            for name, prompt, node in jobs:
                run = server.run(prompt)
                if run.status != "success":
                    raise RuntimeError(f"{name}: {run.error()}")
                with Image.open(run.saved(Path(tmp), node)[0]) as im:
                    im.convert("RGB").save(ROOT / "example_workflows" / f"{name}.jpg", quality=90)
                print(f"thumbnail {name}")
        finally:
            server.stop()


# The shipped workflows keep the raw strengths they were tuned and measured with (bench/sd_claims.py, the demo
# world's claims); bench/calibration.py reads each one's range in its direction's calibrated units.
UNITS_NODES = ("HSpaceAsyrpSampler", "HSpaceApplyDirection", "HSpaceDirectionMixer")
# the SD direction finders' flow-only inputs, written out (the twins hold every widget)
FLOW_INPUT_NODES = ("HSpaceDirectionFromPrompts", "HSpaceDirectionFromLatentSets", "HSpaceDirectionPCASD")


def with_raw_units(descs: dict) -> dict:
    for desc in descs.values():
        for class_type, values in desc["nodes"].values():
            if class_type in UNITS_NODES:
                values.setdefault("units", "raw")
            if class_type in FLOW_INPUT_NODES:
                values.setdefault("block", -1)
                values.setdefault("h", "residual stream")
    return descs


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--no-thumbnails", action="store_true")
    ap.add_argument("--only", action="append", default=None, help="thumbnail only this workflow (repeat)")
    args = ap.parse_args()
    import torch

    torch.set_num_threads(2)
    descs = with_raw_units(workflows(DEMO_T_EDIT))
    in_comfyui = []
    for name, desc in descs.items():
        ui, api = to_ui(name, desc), to_api(desc)
        (ROOT / "example_workflows" / f"{name}.json").write_text(json.dumps(ui, indent=2) + "\n")
        (ROOT / "tests" / "pack" / "workflows" / f"{name}.json").write_text(json.dumps(api, indent=2) + "\n")
        kinds = {n[0] for n in desc["nodes"].values()}
        wanted = not args.no_thumbnails and (not args.only or name in args.only)
        if kinds & {"HSpaceLoadDemoSDModel", "HSpaceLoadDemoFlowModel"}:  # the miniature worlds: real outputs
            if wanted:
                in_comfyui.append((name, api, desc["thumbnail"]))
        elif not kinds & {"CheckpointLoaderSimple", "UNETLoader"} and wanted:  # weights: scripts/graph_thumbnails.py
            thumbnail(name, api, ROOT / "example_workflows" / f"{name}.jpg")
        print(f"wrote {name}")
    if in_comfyui:
        real_comfyui_thumbnails(in_comfyui)


if __name__ == "__main__":
    main()
