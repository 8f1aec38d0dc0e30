"""Shared test setup: CPU, fp32, two threads, deterministic seeds."""
import pytest
import torch

torch.set_num_threads(2)


@pytest.fixture(autouse=True)
def _seeded():
    torch.manual_seed(0)
    yield


@pytest.fixture(scope="session")
def wan_models(tmp_path_factory):
    """A ComfyUI-style models folder with tiny Wan 2.1 and 2.2 files (see wan_testing.py)."""
    from wan_testing import write_tiny_wan

    root = tmp_path_factory.mktemp("comfy_models")
    write_tiny_wan(root, "2.1")
    write_tiny_wan(root, "2.2", seed=10)
    return root
