import os
import sys
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared"
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

# one thread per xdist worker (two workers share the 2 cores), else 2. The processes a test starts (ComfyUI
# servers, the command line, torchrun's ranks) inherit it through OMP_NUM_THREADS, which PyTorch reads when it
# starts: with their default of one thread per core, two workers' servers spun against each other (OpenMP
# waits by spinning) and the real-ComfyUI tests ran up to six times longer than alone.
TEST_THREADS = os.environ.get("HSPACE_TEST_THREADS", "1" if os.environ.get("PYTEST_XDIST_WORKER") else "2")
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
