"""Shared pytest fixtures."""

import pytest


@pytest.fixture(scope="module")
def torch_one_thread():
    """Run the module's tests with one torch CPU thread (the machine is shared); restore after."""
    torch = pytest.importorskip("torch")
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
