"""Shared fixtures: seeded generators and the location of the public benchmark files."""

from pathlib import Path

import numpy as np
import pytest

BENCHMARKS = Path(__file__).resolve().parents[2] / "shared" / "benchmarks"


@pytest.fixture
def rng():
    return np.random.default_rng(20261122)


@pytest.fixture
def benchmarks_dir():
    if not BENCHMARKS.is_dir():
        pytest.skip(f"benchmark networks not found at {BENCHMARKS}")
    return BENCHMARKS
