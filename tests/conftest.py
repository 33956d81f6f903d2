"""Shared test set-up."""
import pytest
import torch


@pytest.fixture(autouse=True)
def one_thread():
    """Every test's models are tiny: one torch thread runs them fastest, and on a busy 2-core
    machine two intra-op threads contend and slow down several-fold."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
