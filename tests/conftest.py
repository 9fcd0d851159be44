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

    from workers.runtime import local_ray_options
    from workers.settings import Settings

    if not ray.is_initialized():  # the options of `deltamem serve`'s own cluster
        ray.init(address="local", **local_ray_options(Settings(
            ray_num_cpus=2, ray_object_store_mb=256, ray_namespace="deltamem-tests")))
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
