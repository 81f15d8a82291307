"""Node registration (classic ComfyUI API). Ids carry the pack prefix and are never renamed."""

from . import comfy_bridge as bridge
from .demo import ImageStrip, ProceduralFaces
from .discovery import (DirectionFromImages, DirectionFromText, DirectionJacobian, DirectionPCA,
                        DirectionsByContrast, DirectionsByIndependence)
from .editing import AsyrpSampler, DDIMInvert
from .flow.fluxspace import FluxSpaceEdit
from .loaders import LoadDirection, LoadUnconditionalDDPM, SaveDirection
from .mixer import DirectionMixer, PickDirection
from .region import DirectionRegion
from .sd import (ApplyHSpaceDirection, AsyrpSamplerSD, DirectionFromLatentSets, DirectionFromPrompts, DirectionPCASD,
                 DirectionsByContrastSD, DirectionsByIndependenceSD, InvertLatent)
from .sd_world import LoadDemoFlowModel, LoadDemoSDModel

NODE_CLASS_MAPPINGS = {
    "HSpaceLoadUnconditionalDDPM": LoadUnconditionalDDPM,
    "HSpaceDDIMInvert": DDIMInvert,
    "HSpaceLoadDirection": LoadDirection,
    "HSpaceDirectionFromText": DirectionFromText,
    "HSpaceDirectionFromImages": DirectionFromImages,
    "HSpaceDirectionPCA": DirectionPCA,
    "HSpaceDirectionJacobian": DirectionJacobian,
    "HSpaceDirectionMixer": DirectionMixer,
    "HSpaceDirectionRegion": DirectionRegion,
    "HSpaceAsyrpSampler": AsyrpSampler,
    "HSpaceSaveDirection": SaveDirection,
    "HSpaceImageStrip": ImageStrip,
    "HSpaceProceduralFaces": ProceduralFaces,
    "HSpaceApplyDirection": ApplyHSpaceDirection,
    "HSpaceAsyrpSamplerSD": AsyrpSamplerSD,
    "HSpaceInvertLatent": InvertLatent,
    "HSpaceDirectionFromPrompts": DirectionFromPrompts,
    "HSpaceDirectionFromLatentSets": DirectionFromLatentSets,
    "HSpaceDirectionPCASD": DirectionPCASD,
    "HSpaceLoadDemoSDModel": LoadDemoSDModel,
    "HSpaceLoadDemoFlowModel": LoadDemoFlowModel,
    "HSpaceDirectionsByContrast": DirectionsByContrast,
    "HSpaceDirectionsByContrastSD": DirectionsByContrastSD,
    "HSpaceDirectionsByIndependence": DirectionsByIndependence,
    "HSpaceDirectionsByIndependenceSD": DirectionsByIndependenceSD,
    "HSpacePickDirection": PickDirection,
    "HSpaceFluxSpaceEdit": FluxSpaceEdit,
}

NODE_DISPLAY_NAME_MAPPINGS = {
    "HSpaceLoadUnconditionalDDPM": "Load Unconditional DDPM (h-space)",
    "HSpaceDDIMInvert": "Invert (h-space: DDIM / edit-friendly DDPM)",
    "HSpaceLoadDirection": "Load H-Space Direction",
    "HSpaceDirectionFromText": "H-Space Direction from Text (CLIP)",
    "HSpaceDirectionFromImages": "H-Space Direction from Image Sets",
    "HSpaceDirectionPCA": "H-Space PCA Direction",
    "HSpaceDirectionJacobian": "H-Space Jacobian Direction",
    "HSpaceDirectionMixer": "H-Space Direction Mixer",
    "HSpaceDirectionRegion": "H-Space Direction Region (mask)",
    "HSpaceAsyrpSampler": "Asyrp Sampler (h-space)",
    "HSpaceSaveDirection": "Save H-Space Direction",
    "HSpaceImageStrip": "Image Strip (h-space)",
    "HSpaceProceduralFaces": "Procedural Faces (h-space demo)",
    "HSpaceApplyDirection": "Apply H-Space Direction (SD MODEL)",
    "HSpaceAsyrpSamplerSD": "Asyrp Sampler (SD, SAMPLER)",
    "HSpaceInvertLatent": "Invert Latent (SD: DDIM / edit-friendly DDPM)",
    "HSpaceDirectionFromPrompts": "H-Space Direction from Prompts (SD)",
    "HSpaceDirectionFromLatentSets": "H-Space Direction from Latent Sets (SD)",
    "HSpaceDirectionPCASD": "H-Space PCA Direction (SD)",
    "HSpaceLoadDemoSDModel": "Load Demo SD Model (miniature world)",
    "HSpaceLoadDemoFlowModel": "Load Demo Flow Model (miniature flow world)",
    "HSpaceDirectionsByContrast": "H-Space Directions by Contrast (unsupervised)",
    "HSpaceDirectionsByContrastSD": "H-Space Directions by Contrast (SD, unsupervised)",
    "HSpaceDirectionsByIndependence": "H-Space Directions by Independence (unsupervised)",
    "HSpaceDirectionsByIndependenceSD": "H-Space Directions by Independence (SD, unsupervised)",
    "HSpacePickDirection": "Pick H-Space Direction",
    "HSpaceFluxSpaceEdit": "FluxSpace Edit (flow transformers, for comparison)",
}

# the example workflows' input faces, so that they run as shipped (never over a file of the same name)
_placed = bridge.place_sample_inputs_in_comfyui()
if _placed:
    import logging

    logging.info("[comfyui-hspace] placed the example workflows' input images in ComfyUI's input folder: %s",
                 ", ".join(_placed))
