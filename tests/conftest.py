"""Shared fixtures: seeded generators, the location of the public benchmark files, one torch thread."""

from pathlib import Path

import numpy as np
import pytest
import torch

BENCHMARKS = Path(__file__).resolve().parents[2] / "shared" / "benchmarks"


@pytest.fixture
def rng():
    return np.random.default_rng(20261122)


@pytest.fixture
def benchmarks_dir():
    if not BENCHMARKS.is_dir():
        pytest.skip(f"benchmark networks not found at {BENCHMARKS}")
    return BENCHMARKS


@pytest.fixture
def one_torch_thread():
    """Torch on one thread for the test (training results then do not depend on the thread count)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
