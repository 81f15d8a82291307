"""The real-ComfyUI tests: one ComfyUI server per session, or one clear skip reason."""

import shutil

import pytest

from tests.comfyui.harness import ROOT, ComfyServer, find_comfyui, missing_requirements


def comfy_or_skip():
    root, how = find_comfyui()
    if root is None:
        pytest.skip(f"real-ComfyUI tests: {how}")
    missing = missing_requirements()
    if missing:
        pytest.skip(f"real-ComfyUI tests: ComfyUI's requirements are not installed ({', '.join(missing)}); "
                    "install them with the README's test command")
    return root, how


@pytest.fixture(scope="session")
def comfy(tmp_path_factory):
    """A started ComfyUI with the pack in custom_nodes (and the test-only tiny SD checkpoint node), an empty
    input/ folder (the pack fills in the example workflows' faces) and a tiny CLIP in models/text_encoders/
    (the text workflow's twin uses it)."""
    from tests.pack.fixtures import make_models_dir

    root, _ = comfy_or_skip()
    base = tmp_path_factory.mktemp("comfyui")
    server = ComfyServer(root, base)
    server.prepare()
    # the test-only pack whose node stands in for CheckpointLoaderSimple in the SD workflows' twins
    (base / "custom_nodes" / "hspace_test_models").symlink_to(ROOT / "tests" / "comfyui" / "tiny_models_pack",
                                                              target_is_directory=True)
    # the input folder starts empty: the pack places the example workflows' faces when it loads
    clip = make_models_dir(base / "staging")
    (base / "models" / "text_encoders").mkdir(parents=True, exist_ok=True)
    for f in (clip / "clip").iterdir():
        shutil.copy(f, base / "models" / "text_encoders" / f.name)
    server.start()
    yield server
    server.stop()
