"""Fixtures of the spatial-simulator tests: the SCALE-Sim runner (from benchmarks/bench_systolic.py)."""
import importlib.util
from pathlib import Path

import pytest

import attnsim

BENCH = Path(__file__).resolve().parents[2] / "benchmarks" / "bench_systolic.py"


@pytest.fixture(scope="session")
def bench_systolic():
    spec = importlib.util.spec_from_file_location("bench_systolic", BENCH)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


@pytest.fixture(scope="session")
def fusemax():
    return attnsim.load_arch("fusemax_like")
