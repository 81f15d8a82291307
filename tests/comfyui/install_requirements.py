"""Install what the real-ComfyUI tests need into this interpreter: the found ComfyUI's own
requirements.txt (from the package registry) and Playwright. Part of the README's test command;
does nothing, and says so, when no ComfyUI is found (those tests then skip).

    python -m tests.comfyui.install_requirements
"""

from __future__ import annotations

import subprocess
import sys

from tests.comfyui.harness import find_comfyui, missing_requirements


def main() -> int:
    root, how = find_comfyui()
    if root is None:
        print(f"real-ComfyUI tests will skip: {how}")
        return 0
    wanted = ["playwright"]
    if missing_requirements():
        wanted = ["-r", str(root / "requirements.txt")] + wanted
    print(f"ComfyUI for the tests: {root} ({how}); installing {' '.join(wanted)}", flush=True)
    return subprocess.call([sys.executable, "-m", "pip", "install", "-q", "--no-compile", *wanted])


if __name__ == "__main__":
    sys.exit(main())
