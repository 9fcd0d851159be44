"""Shared fixtures: one local Ray cluster on loopback for the whole session, and databases."""

from __future__ import annotations

import os

import pytest

pytest_plugins = ["tests.service_fixtures"]

os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")
os.environ.setdefault("RAY_AUTH_MODE", "disabled")
os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


@pytest.fixture(scope="session")
def ray_cluster():
    """One local Ray for every test that needs it (started on first use)."""
    import ray

    if not ray.is_initialized():
        ray.init(address="local", num_cpus=2, object_store_memory=256 * 2**20, include_dashboard=False,
                 _node_ip_address="127.0.0.1", log_to_driver=False, namespace="deltamem-tests",
                 configure_logging=False)
    yield ray
    ray.shutdown()


def _gpu_usable() -> bool:
    from agent.memory.backend import gpu_available

    return gpu_available()


def pytest_collection_modifyitems(config, items):
    """Skip ``gpu``-marked tests unless CuPy and a usable CUDA GPU are present."""
    gpu_items = [it for it in items if "gpu" in it.keywords]
    if gpu_items and not _gpu_usable():
        skip = pytest.mark.skip(reason="needs CuPy and a usable CUDA GPU")
        for it in gpu_items:
            it.add_marker(skip)
