"""Actor pools of a DAG sized together: one actor of every stage always fits, so no stage
waits forever for a CPU its upstream stages hold; pools grow onto joining nodes only on a
joined cluster, up to ``max_actors``."""

from __future__ import annotations

import sys
import time

import pytest

from omni_core.errors import OmniError
from omni_core.jobs import PoolPlan, StageResources, actor_args, plan_pools

#: the in-pair DAG's default requests (prepare, audio, visual, caption, finish)
INPAIR = [StageResources(), StageResources(), StageResources(), StageResources(num_cpus=0.5),
          StageResources(num_cpus=0.25, max_actors=1)]


@pytest.mark.parametrize("cluster,stages,expect", [
    # 2 CPUs, one kept for the read tasks: the five first actors share the other one
    ({"CPU": 2}, INPAIR, [(1, 0.2666), (1, 0.2666), (1, 0.2666), (2, 0.1333), (1, 0.0666)]),
    # a single stage asking for more than there is shrinks to what is left
    ({"CPU": 2}, [StageResources(num_cpus=2)], [(1, 1.0)]),
    ({"CPU": 1}, [StageResources()], [(1, 0.5)]),
    # room for everyone: the requests stand, each pool may grow to what its request allows
    ({"CPU": 16}, INPAIR, [(15, 1.0), (15, 1.0), (15, 1.0), (30, 0.5), (1, 0.25)]),
    ({"CPU": 16}, [StageResources(num_cpus=2, max_actors=3)], [(3, 2.0)]),
])
def test_first_actors_of_every_stage_fit_together(cluster, stages, expect):
    plans = plan_pools(stages, cluster)
    assert [(p.size, p.num_cpus) for p in plans] == expect
    assert all(p.scaled for p in plans) == (cluster == {"CPU": 2} and stages is INPAIR)
    budget = cluster["CPU"] - 1 if cluster["CPU"] > 1 else cluster["CPU"] / 2
    assert sum(p.num_cpus for p in plans) <= budget + 1e-9


def test_gpu_stages_share_the_gpus_there_are():
    plans = plan_pools([StageResources(num_gpus=1), StageResources(num_gpus=0.5),
                        StageResources()], {"CPU": 16, "GPU": 1})
    assert [p.num_gpus for p in plans] == [0.6666, 0.3333, 0.0]
    assert [p.size for p in plans] == [1, 2, 15]
    assert all(p.scaled for p in plans)
    eight = plan_pools([StageResources(num_gpus=0.5)], {"CPU": 64, "GPU": 8})
    assert eight == [PoolPlan(size=16, num_cpus=1.0, num_gpus=0.5)]
    assert eight[0].ray_remote_args() == {"num_cpus": 1.0, "num_gpus": 0.5}


def test_gpu_stage_without_gpu_is_a_clear_error():
    with pytest.raises(OmniError, match="needs 1 GPU per actor; the cluster has 0"):
        plan_pools([StageResources(), StageResources(num_gpus=1)], {"CPU": 8})


def test_pools_grow_only_on_a_joined_cluster():
    plan = PoolPlan(size=2, num_cpus=1.0, num_gpus=0.0)
    fixed = actor_args(StageResources(), plan)["compute"]
    grows = actor_args(StageResources(), plan, grow=True)["compute"]
    capped = actor_args(StageResources(max_actors=8), plan, grow=True)["compute"]
    assert (fixed.min_size, fixed.max_size) == (1, 2)
    assert grows.min_size == 1
    assert grows.max_size in (None, float("inf"))  # unbounded: grows as nodes join
    assert (capped.min_size, capped.max_size) == (1, 8)
    # requests scaled down to fit a small cluster: no growth past what fits at full request
    small = PoolPlan(size=2, num_cpus=0.25, num_gpus=0.0, scaled=True)
    assert actor_args(StageResources(), small, grow=True)["compute"].max_size == 2
    tagged = actor_args(StageResources(custom={"decode": 1}), plan)
    assert tagged["resources"] == {"decode": 1} and tagged["num_cpus"] == 1.0


class Slow:
    """A stage that loads 'a model' once and takes a moment per batch."""

    def __init__(self, k):
        self.k = k

    def __call__(self, batch):
        time.sleep(0.05)
        batch["id"] = batch["id"] + self.k
        return batch


def test_a_dag_asking_for_more_cpus_than_there_are_completes():
    """Five actor stages asking 1 CPU each on a 2-CPU embedded cluster: planned together, all
    first actors run at once and the dataset finishes."""
    import ray
    from ray import cloudpickle

    from omni_core.ray_helpers import RayConfig, init_ray, shutdown_ray

    # test modules are not importable on Ray workers: ship the actor class by value
    cloudpickle.register_pickle_by_value(sys.modules[__name__])
    init_ray(RayConfig(num_cpus=2, include_dashboard=False), verbose=False)
    try:
        stages = [StageResources(num_cpus=1)] * 5
        plans = plan_pools(stages)
        assert sum(p.num_cpus for p in plans) <= 1.0 + 1e-9
        ds = ray.data.range(200, override_num_blocks=20)
        for k, (res, plan) in enumerate(zip(stages, plans, strict=True)):
            ds = ds.map_batches(Slow, fn_constructor_kwargs={"k": k}, batch_size=10,
                                **actor_args(res, plan))
        assert ds.sum("id") == sum(range(200)) + 200 * sum(range(5))
    finally:
        shutdown_ray()
