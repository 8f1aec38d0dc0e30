"""Shared test setup: CPU, fp32, two threads, deterministic seeds."""
import pytest
import torch

torch.set_num_threads(2)


@pytest.fixture(autouse=True)
def _seeded():
    torch.manual_seed(0)
    yield
