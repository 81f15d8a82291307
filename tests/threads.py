"""Torch threads for the tests and the processes they start: one per xdist worker (two workers share the 2
cores), else 2; ``HSPACE_TEST_THREADS`` overrides. With their default of one thread per core, two workers'
processes spin against each other (OpenMP waits by spinning) and the real-ComfyUI tests ran up to six times
longer than alone."""

import os


def test_threads() -> str:
    return os.environ.get("HSPACE_TEST_THREADS", "1" if os.environ.get("PYTEST_XDIST_WORKER") else "2")


test_threads.__test__ = False  # a helper, not a test
