from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def models_dir(tmp_path_factory) -> Path:
    """A models folder (HSPACE_MODELS_DIR) with the pack's model kinds and a tiny CLIP in clip/."""
    from tests.pack.fixtures import make_models_dir

    root = make_models_dir(tmp_path_factory.mktemp("comfy") / "models")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("HSPACE_MODELS_DIR", str(root))
        yield root
