import pytest

import attnsim


@pytest.fixture(scope="session")
def h100():
    return attnsim.load_arch("h100_sxm5_80gb")


@pytest.fixture(scope="session")
def a100():
    return attnsim.load_arch("a100_sxm4_80gb")
