"""Values that flow between the pack's nodes (immutable; nodes never change their inputs).

HSPACE_MODEL      -> ``LoadedModel`` (the engine's HSpaceModel and ComfyUI's memory-management handle)
HSPACE_INVERSION  -> ``hspace_core.Inversion``
HSPACE_DIRECTION  -> ``hspace_core.Direction`` (a direction, a mix, an official DeltaBlock)
"""

from __future__ import annotations

from dataclasses import dataclass

from hspace_core import HSpaceModel

from .comfy_bridge import load_for_inference

MODEL = "HSPACE_MODEL"
INVERSION = "HSPACE_INVERSION"
DIRECTION = "HSPACE_DIRECTION"
CATEGORY = "h-space"


@dataclass(frozen=True, eq=False)
class LoadedModel:
    model: HSpaceModel
    patcher: object | None
    name: str

    def ready(self) -> HSpaceModel:
        """The model on ComfyUI's device (memory made available first)."""
        load_for_inference(self.patcher)
        return self.model


def progress_callback(progress, offset: int = 0):
    """An engine step callback driving a ``comfy_bridge.Progress`` with x0 previews."""
    def callback(info) -> None:
        progress(offset + info.i, info.x0_pred[0])
    return callback


class CountingProgress:
    """An engine callback that advances a ``comfy_bridge.Progress`` by one per call (multi-phase work)."""

    def __init__(self, progress):
        self.progress, self.count = progress, 0

    def __call__(self, info) -> None:
        self.progress(min(self.count, self.progress.total - 1), info.x0_pred[0])
        self.count += 1
