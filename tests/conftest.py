import os
import sys
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared"
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

# one thread per xdist worker (two workers share the 2 cores), else 2
torch.set_num_threads(int(os.environ.get("HSPACE_TEST_THREADS", "1" if os.environ.get("PYTEST_XDIST_WORKER") else "2")))


@pytest.fixture(scope="session")
def shared_dir() -> Path:
    """../shared with the official Asyrp data; tests that need it skip when it is absent."""
    if not (SHARED / "asyrp_official").is_dir():
        pytest.skip(f"reference data not found at {SHARED}/asyrp_official (the project's ../shared folder)")
    return SHARED
