"""The release metadata the Comfy registry reads (pyproject.toml), checked as the registry's own parsers
check it: ComfyUI's comfy_config parser (the ComfyUI beside the checkout), comfy-cli's `comfy node
validate` when comfy-cli is installed, and the registry specification's rules; the version has one source;
the icon is in the repository; the publishing workflow publishes on a version tag."""

import re
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())
PROJECT, COMFY = PYPROJECT["project"], PYPROJECT["tool"]["comfy"]


def test_the_registry_specification_holds():
    name = PROJECT["name"]
    assert len(name) < 100 and re.fullmatch(r"[A-Za-z][A-Za-z0-9._-]*", name) and not re.search(r"[._-]{2}", name)
    assert re.fullmatch(r"\d+\.\d+\.\d+", PROJECT["version"])
    assert set(PROJECT["license"]) <= {"file", "text"}  # a table, not a bare string
    assert PROJECT["description"] and PROJECT["keywords"]
    assert re.fullmatch(r"https://github\.com/[\w.-]+/[\w.-]+", PROJECT["urls"]["Repository"])
    assert re.fullmatch(r"[a-z0-9][a-z0-9-]*", COMFY["PublisherId"])
    assert COMFY["DisplayName"].strip()
    assert re.fullmatch(r"(>=|<=|==|~=|>|<)?\d+\.\d+\.\d+", COMFY["requires-comfyui"])


def test_the_icon_is_a_small_square_image_in_this_repository():
    from PIL import Image

    repo = PROJECT["urls"]["Repository"].removeprefix("https://github.com/")
    prefix = f"https://raw.githubusercontent.com/{repo}/main/"
    assert COMFY["Icon"].startswith(prefix), COMFY["Icon"]
    path = ROOT / COMFY["Icon"].removeprefix(prefix)
    tracked = subprocess.run(["git", "ls-files", "--error-unmatch", str(path.relative_to(ROOT))], cwd=ROOT,
                             capture_output=True)
    assert path.is_file() and (tracked.returncode == 0 or not (ROOT / ".git").exists()), path
    with Image.open(path) as im:
        assert im.format in ("PNG", "JPEG", "GIF") and im.width == im.height <= 400


def test_comfyuis_own_parser_reads_the_metadata():
    from tests.comfyui.harness import find_comfyui

    comfy_root, how = find_comfyui()
    if comfy_root is None:
        pytest.skip(f"ComfyUI's comfy_config parser: {how}")
    pytest.importorskip("pydantic_settings", reason="ComfyUI's requirements are not installed")
    sys.path.insert(0, str(comfy_root))
    try:
        from comfy_config import config_parser
    finally:
        sys.path.remove(str(comfy_root))
    config = config_parser.extract_node_configuration(str(ROOT))
    assert config is not None
    assert (config.project.name, config.project.version) == (PROJECT["name"], PROJECT["version"])
    assert config.project.urls.repository == PROJECT["urls"]["Repository"]
    assert config.tool_comfy.publisher_id == COMFY["PublisherId"]
    assert config.tool_comfy.display_name == COMFY["DisplayName"] and config.tool_comfy.icon == COMFY["Icon"]
    assert config.project.supported_os == ["OS Independent"]  # the classifiers are the accepted ones
    assert config.project.supported_accelerators == ["GPU :: NVIDIA CUDA"]
    assert config.project.supported_comfyui_version == COMFY["requires-comfyui"]


def test_comfy_node_validate_passes():
    comfy = shutil.which("comfy")
    if comfy is None:
        pytest.skip("comfy-cli is not installed (pip install comfy-cli; the README's Releasing section)")
    r = subprocess.run([comfy, "--skip-prompt", "--no-json", "node", "validate"], cwd=ROOT, capture_output=True,
                       text=True, timeout=300, stdin=subprocess.DEVNULL)
    out = r.stdout + r.stderr
    assert r.returncode == 0 and "validation checks passed" in out and "Warning" not in out, out


def test_the_version_has_one_source_and_a_changelog_entry():
    version = PROJECT["version"]
    changelog = (ROOT / "CHANGELOG.md").read_text()
    sections = re.findall(r"^## \[([^\]]+)\]", changelog, re.M)
    assert sections[0] == "Unreleased" and sections[1] == version, sections
    code = [ROOT / "__init__.py", *(p for d in ("hspace_core", "hspace_sdworld", "nodes") for p in (ROOT / d).rglob("*.py"))]
    assert [p for p in code if re.search(r"^__version__\s*=", p.read_text(), re.M)] == []


def test_the_publishing_workflow_publishes_the_tagged_version():
    text = (ROOT / ".github" / "workflows" / "publish.yml").read_text()
    assert "uses: Comfy-Org/publish-node-action@v1" in text
    assert "personal_access_token: ${{ secrets.REGISTRY_ACCESS_TOKEN }}" in text
    assert re.search(r"push:\s+tags:\s+- \"v\*\.\*\.\*\"", text)
    assert "v${version}" in text and "CHANGELOG.md" in text  # the tag must name pyproject's version
