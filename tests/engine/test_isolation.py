"""The engine imports only torch, numpy, safetensors, pillow (open_clip for text-guided training, tqdm
for the command line's progress bars) and never ComfyUI; inside it, no module imports one above it
(LAYERS)."""

import ast
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
ALLOWED = {"torch", "numpy", "safetensors", "PIL", "open_clip", "lpips", "tqdm", "hspace_core"}


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
                    assert path.parent.name == "discovery", f"{path} imports open_clip"
                if top == "tqdm":
                    assert path.parent.name == "cli", f"{path} imports tqdm (progress reaches hosts by callback)"


def test_importing_the_engine_loads_no_comfyui():
    code = ("import sys, hspace_core, hspace_core.cli, hspace_core.loading; "
            "bad = [m for m in sys.modules if m.split('.')[0] in ('comfy', 'folder_paths', 'server', 'nodes', "
            "'comfy_api', 'comfy_extras', 'open_clip')]; print(bad); assert not bad")
    r = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True)
    assert r.returncode == 0, r.stdout + r.stderr


# hspace_core's modules from the bottom up; a module may import from a lower layer, or from its own
# package (directions, discovery, demo, unets). Every module must be listed (README, development).
LAYERS = [
    {"errors"},
    {"schedule", "seeding", "distributed"},
    {"unets", "checkpoint_files"},
    {"model"},
    {"loading", "images"},
    {"directions"},  # direction values: base, deltablock, io, project
    {"sampling"},
    {"variants", "host", "noise_maps"},
    {"flow", "fluxspace"},  # the flow step; FluxSpace's arithmetic (torch only)
    {"interval"},
    {"inversion"},
    {"editing"},
    {"calibrate", "folder_job"},
    {"discovery"},  # direction finders: record, supervised, pca, clip_model, clip
    {"demo"},
    {"cli"},
    {"__main__"},
]
LAYER_OF = {unit: i for i, units in enumerate(LAYERS) for unit in units}


def _unit(module: str) -> str:
    """hspace_core.discovery.clip -> "discovery"; hspace_core.sampling -> "sampling"."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "__init__"


def _imports(path: Path) -> list[tuple[str, int]]:
    """Every hspace_core module ``path`` imports, at module level or inside functions, with the line."""
    package = ".".join(path.relative_to(ROOT).with_suffix("").parts[:-1])
    out = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.level > 0:
            base = package.split(".")[:len(package.split(".")) - node.level + 1]
            target = ".".join(base + ([node.module] if node.module else []))
            names = [target] if node.module else [f"{target}.{a.name}" for a in node.names]
            out += [(n, node.lineno) for n in names]
        elif isinstance(node, ast.ImportFrom) and (node.module or "").startswith("hspace_core"):
            out.append((node.module, node.lineno))
        elif isinstance(node, ast.Import):
            out += [(a.name, node.lineno) for a in node.names if a.name.startswith("hspace_core")]
    return out


def test_no_module_imports_one_above_it():
    for path in sorted((ROOT / "hspace_core").rglob("*.py")):
        source = ".".join(path.relative_to(ROOT).with_suffix("").parts)
        unit = _unit(source)
        if unit == "__init__":
            continue  # the package's front door re-exports from every layer
        assert unit in LAYER_OF, f"{source} is in no layer: add it to LAYERS"
        for target, line in _imports(path):
            other = _unit(target)
            if other == unit:
                continue
            assert other in LAYER_OF, f"{source}:{line} imports {target}, which is in no layer"
            assert LAYER_OF[other] < LAYER_OF[unit], \
                f"{source}:{line} imports {target}: layer {LAYER_OF[other]} ({other}) is not below {LAYER_OF[unit]} ({unit})"
