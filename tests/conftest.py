import pytest
import torch


@pytest.fixture(autouse=True, scope="session")
def one_thread():
    """2 shared CPUs: torch's intra-op threads only add contention for the tests' small ops."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)
