import os
import sys
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared"
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from tests.threads import test_threads  # noqa: E402

# the processes a test starts (ComfyUI servers, the command line, torchrun's ranks) inherit the count through
# OMP_NUM_THREADS, which PyTorch reads when it starts
TEST_THREADS = test_threads()
torch.set_num_threads(int(TEST_THREADS))
if os.environ.get("PYTEST_XDIST_WORKER"):
    os.environ.setdefault("OMP_NUM_THREADS", TEST_THREADS)
    os.environ.setdefault("MKL_NUM_THREADS", TEST_THREADS)


@pytest.fixture(scope="session")
def shared_dir() -> Path:
    """../shared with the official Asyrp data; tests that need it skip when it is absent."""
    if not (SHARED / "asyrp_official").is_dir():
        pytest.skip(f"reference data not found at {SHARED}/asyrp_official (the project's ../shared folder)")
    return SHARED


@pytest.fixture(scope="session", autouse=True)
def subprocess_temp_folder(tmp_path_factory):
    """The processes a test starts write their temporary files (torchrun's torchelastic_* folders, one per
    launch) under pytest's own base folder, which pytest prunes, instead of leaving them in /tmp."""
    folder = tmp_path_factory.mktemp("subprocess_tmp")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("TMPDIR", str(folder))
        yield folder
