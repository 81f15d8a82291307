"""Values that flow between the pack's nodes (immutable; nodes never change their inputs).

HSPACE_MODEL      -> ``LoadedModel`` (the engine's HSpaceModel and ComfyUI's memory-management handle)
HSPACE_INVERSION  -> ``hspace_core.Inversion``
HSPACE_DIRECTION  -> ``hspace_core.Direction`` (a direction, a mix, an official DeltaBlock)
HSPACE_NOISE_MAPS -> ``hspace_core.noise_maps.NoiseMaps`` (an SD latent's edit-friendly inversion)
"""

from __future__ import annotations

from dataclasses import dataclass

from hspace_core import HSpaceModel

from .comfy_bridge import load_for_inference

MODEL = "HSPACE_MODEL"
INVERSION = "HSPACE_INVERSION"
DIRECTION = "HSPACE_DIRECTION"
NOISE_MAPS = "HSPACE_NOISE_MAPS"
CATEGORY = "h-space"
SD_CATEGORY = f"{CATEGORY}/stable diffusion"  # the SD and flow-transformer nodes


@dataclass(frozen=True, eq=False)
class LoadedModel:
    model: HSpaceModel
    patcher: object | None
    name: str

    def ready(self) -> HSpaceModel:
        """The model on ComfyUI's device (memory made available first)."""
        load_for_inference(self.patcher)
        return self.model
