"""Demo tests: one torch thread (tiny models on a shared 2-core machine)."""

import pytest
import torch


@pytest.fixture(autouse=True)
def one_thread():
    """One thread avoids OpenMP spin contention when another process keeps a core busy."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)
