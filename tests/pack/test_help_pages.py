"""The node library's help pages (web/docs/<node id>.md, served through WEB_DIRECTORY): one per node, each
naming every input and output of its node, with a picture that is in the repository, the example
workflows that really use the node, and small images."""

import ast
import re
from pathlib import Path

import pytest

from nodes.registry import NODE_CLASS_MAPPINGS, NODE_DISPLAY_NAME_MAPPINGS

ROOT = Path(__file__).resolve().parents[2]
DOCS = ROOT / "web" / "docs"
SD_WORLD = "## In the miniature SD world"  # what the node did there, measured (bench/sd_claims.py)
SD_NODES = ("HSpaceApplyDirection", "HSpaceAsyrpSamplerSD", "HSpaceInvertLatent", "HSpaceDirectionFromPrompts",
            "HSpaceDirectionFromLatentSets", "HSpaceDirectionPCASD", "HSpaceLoadDemoSDModel")
IMAGE = re.compile(r"!\[[^\]]*\]\(([^)\s]+)\)")


def test_the_pack_declares_its_web_directory_without_importing_comfyui():
    tree = ast.parse((ROOT / "__init__.py").read_text())
    values = [node.value.value for node in tree.body if isinstance(node, ast.Assign)
              and any(getattr(t, "id", None) == "WEB_DIRECTORY" for t in node.targets)]
    assert values == ["./web"]
    assert not list((ROOT / "web").rglob("*.js"))  # help pages only: no frontend extension code


def test_every_node_has_a_help_page_and_every_page_a_node():
    pages = {p.stem for p in DOCS.glob("*.md")}
    assert pages == set(NODE_CLASS_MAPPINGS)


def _outputs(cls) -> list[str]:
    return list(getattr(cls, "RETURN_NAMES", None) or cls.RETURN_TYPES)


@pytest.mark.parametrize("node_id", sorted(NODE_CLASS_MAPPINGS))
def test_a_help_page_names_its_node_inputs_outputs_picture_and_workflows(node_id):
    cls = NODE_CLASS_MAPPINGS[node_id]
    text = (DOCS / f"{node_id}.md").read_text()
    assert text.startswith(f"# {NODE_DISPLAY_NAME_MAPPINGS[node_id]}\n")
    spec = cls.INPUT_TYPES()
    names = [n for section in ("required", "optional") for n in spec.get(section, {})]
    quoted = set(re.findall(r"`([^`]+)`", text))
    expanded = set(quoted)
    for q in quoted:  # `weight_1` … `weight_4`, `width`, `height` written together
        expanded |= {part.strip() for part in re.split(r"[,…]", q)}
    for stem, first, last in re.findall(r"`(\w+)_(\d)` … `\w+_(\d)`", text):
        expanded |= {f"{stem}_{i}" for i in range(int(first), int(last) + 1)}
    missing = [n for n in names if n not in expanded and not re.search(rf"`{n}`", text)]
    assert missing == [], f"{node_id}: inputs not described: {missing}"
    outputs = [o for o in _outputs(cls) if f"`{o}`" not in text]
    assert outputs == [], f"{node_id}: outputs not described: {outputs}"
    for heading in ("## Inputs", "## Outputs", "## Ranges that work", "## Example workflow"):
        assert heading in text, (node_id, heading)
    images = IMAGE.findall(text)
    assert images, f"{node_id}: no picture"
    for ref in images:
        assert not ref.startswith(("/", "http")), ref  # relative: the frontend prefixes the docs folder
        assert (DOCS / ref).is_file(), ref
    if node_id in SD_NODES:
        assert SD_WORLD in text and re.search(r"\d", text.split(SD_WORLD, 1)[1].split("\n## ", 1)[0]), node_id
    assert "<!--" not in text, f"{node_id}: a placeholder is left"
    used_in = {p.stem for p in (ROOT / "example_workflows").glob("*.json") if f'"{node_id}"' in p.read_text()}
    examples = text.split("## Example workflow", 1)[1]
    named = set(re.findall(r"`([a-z0-9_]+)`", examples))
    assert named <= used_in, f"{node_id}: named workflows that do not use it: {named - used_in}"
    assert bool(named) == bool(used_in), f"{node_id}: used in {sorted(used_in)}, page names {sorted(named)}"


def test_the_pictures_are_small():
    images = [p for p in (DOCS / "images").iterdir()]
    assert images and all(p.suffix in (".png", ".jpg") for p in images)
    assert max(p.stat().st_size for p in images) < 100 * 1024
    assert sum(p.stat().st_size for p in images) < 1536 * 1024
    referenced = {ref for page in DOCS.glob("*.md") for ref in IMAGE.findall(page.read_text())}
    assert {f"images/{p.name}" for p in images} <= referenced  # no picture left unused
