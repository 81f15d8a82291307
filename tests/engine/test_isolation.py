"""The engine imports only torch, numpy, safetensors, pillow (open_clip for text-guided training)
and never ComfyUI."""

import ast
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
ALLOWED = {"torch", "numpy", "safetensors", "PIL", "open_clip", "lpips", "hspace_core"}


def test_engine_imports_only_allowed_packages():
    stdlib = set(sys.stdlib_module_names)
    for path in (ROOT / "hspace_core").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0:
                names = [node.module]
            else:
                continue
            for name in names:
                top = name.split(".")[0]
                assert top in stdlib or top in ALLOWED, f"{path.relative_to(ROOT)} imports {name}"
                if top == "open_clip":
                    assert path.parent.name == "directions", f"{path} imports open_clip"


def test_importing_the_engine_loads_no_comfyui():
    code = ("import sys, hspace_core, hspace_core.cli, hspace_core.loading; "
            "bad = [m for m in sys.modules if m.split('.')[0] in ('comfy', 'folder_paths', 'server', 'nodes', "
            "'comfy_api', 'comfy_extras', 'open_clip')]; print(bad); assert not bad")
    r = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True)
    assert r.returncode == 0, r.stdout + r.stderr
