"""ComfyUI adapters over ``hspace_core`` (widgets, types, progress, device management; no maths)."""
