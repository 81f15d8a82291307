"""ComfyUI entry point of the h-space node pack.

ComfyUI imports this folder as a package; the nodes live in ``nodes/`` (thin adapters) and call the
standalone engine in ``hspace_core/``.
"""

NODE_CLASS_MAPPINGS: dict = {}
NODE_DISPLAY_NAME_MAPPINGS: dict = {}

__all__ = ["NODE_CLASS_MAPPINGS", "NODE_DISPLAY_NAME_MAPPINGS"]
