"""ComfyUI's own SD1.5 and SDXL model classes from tiny random configs, in this process (test helper).

``comfy_modules()`` imports ComfyUI from the real tree (``harness.find_comfyui``) on the CPU; the
ComfyUI root is appended to ``sys.path`` (after the checkout, so the pack's ``nodes`` package keeps its
name; ComfyUI's own ``nodes`` module is never imported here). The builders live in the test-only node
pack ``tiny_models_pack`` (the server tests load it into ComfyUI).
"""

from __future__ import annotations

import sys

from .harness import find_comfyui, missing_requirements


def comfy_available() -> str | None:
    """None when ComfyUI can be imported here, else why not."""
    root, how = find_comfyui()
    if root is None:
        return how
    missing = missing_requirements()
    if missing:
        return f"ComfyUI's requirements are not installed ({', '.join(missing)})"
    return None


def comfy_modules():
    """Import ComfyUI (CPU) once; returns its root."""
    root, _ = find_comfyui()
    if str(root) not in sys.path:
        sys.path.append(str(root))
    import comfy.cli_args

    comfy.cli_args.args.cpu = True
    import comfy.model_management  # noqa: F401  (after args.cpu)
    return root


def tiny_model(kind: str = "sd15", seed: int = 0, out_scale: float = 0.1):
    comfy_modules()
    from .tiny_models_pack.tiny_models import tiny_model as build

    return build(kind, seed, out_scale)


def conditioning(*args, **kwargs):
    from .tiny_models_pack.tiny_models import conditioning as build

    return build(*args, **kwargs)
