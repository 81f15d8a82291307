"""Where ComfyUI is, and importing it on the CPU or its default device, for code that runs outside a
started ComfyUI (training, the benches, the tests).

Found at ``COMFYUI_PATH`` if set, else the ComfyUI this pack is installed in
(``ComfyUI/custom_nodes/<pack>``), else ``../shared/comfyui`` beside the checkout. Inside a running
ComfyUI, ``comfy`` is already imported and nothing is searched.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


class ComfyNotFound(RuntimeError):
    pass


def find_comfyui() -> tuple[Path | None, str]:
    """(the ComfyUI root, how it was found) or (None, why none was found)."""
    env = os.environ.get("COMFYUI_PATH")
    if env:
        path = Path(env).expanduser()
        if (path / "main.py").is_file() and (path / "comfy").is_dir():
            return path, f"COMFYUI_PATH={path}"
        return None, f"COMFYUI_PATH={env} is not a ComfyUI folder (no main.py and comfy/)"
    if ROOT.parent.name == "custom_nodes" and (ROOT.parent.parent / "main.py").is_file():
        return ROOT.parent.parent, "the ComfyUI this pack is installed in"
    shared = ROOT.parent / "shared" / "comfyui"
    if (shared / "main.py").is_file():
        return shared, f"{shared}"
    return None, ("no ComfyUI found: set COMFYUI_PATH to a ComfyUI folder, install the pack in ComfyUI's "
                  "custom_nodes, or put a ComfyUI at ../shared/comfyui")


def import_comfy(cpu: bool = True) -> None:
    """Make ``comfy`` importable and import its model management (``cpu``: on the CPU, as the tests and
    the CPU training run; else ComfyUI's default device). The ComfyUI root goes at the end of
    ``sys.path`` so that nothing of ComfyUI shadows this checkout's packages (its ``nodes`` module)."""
    if "comfy.model_management" in sys.modules:
        return
    try:
        import comfy  # noqa: F401
    except ImportError:
        root, how = find_comfyui()
        if root is None:
            raise ComfyNotFound(how) from None
        if str(root) not in sys.path:
            sys.path.append(str(root))
    import comfy.cli_args

    if cpu:
        comfy.cli_args.args.cpu = True
    import comfy.model_management  # noqa: F401  (after args.cpu)
