"""Actor pools: fixed on an embedded cluster (the read stage keeps its CPU), growing onto
joining nodes on a joined cluster up to ``max_actors``."""

from __future__ import annotations

from omni_core.jobs import StageResources, actor_args


def test_pools_grow_only_on_a_joined_cluster():
    from omni_core.ray_helpers import RayConfig, init_ray, shutdown_ray

    init_ray(RayConfig(num_cpus=3, include_dashboard=False), verbose=False)
    try:
        fixed = actor_args(StageResources(num_cpus=1))["compute"]
        grows = actor_args(StageResources(num_cpus=1), grow=True)["compute"]
        capped = actor_args(StageResources(num_cpus=1, max_actors=8), grow=True)["compute"]
    finally:
        shutdown_ray()
    assert (fixed.min_size, fixed.max_size) == (1, 2)  # 3 CPUs, one kept for the read stage
    assert (grows.min_size, grows.initial_size) == (1, 2)
    assert grows.max_size in (None, float("inf"))  # unbounded: grows as nodes join
    assert (capped.initial_size, capped.max_size) == (2, 8)
