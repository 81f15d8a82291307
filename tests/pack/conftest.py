import os
from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def models_dir(tmp_path_factory) -> Path:
    """A models folder (HSPACE_MODELS_DIR) with the pack's model kinds and a tiny CLIP in clip/."""
    from tests.pack.fixtures import make_models_dir

    root = make_models_dir(tmp_path_factory.mktemp("comfy") / "models")
    old = os.environ.get("HSPACE_MODELS_DIR")
    os.environ["HSPACE_MODELS_DIR"] = str(root)
    yield root
    if old is None:
        os.environ.pop("HSPACE_MODELS_DIR", None)
    else:
        os.environ["HSPACE_MODELS_DIR"] = old
