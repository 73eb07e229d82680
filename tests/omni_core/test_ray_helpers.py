import sys

import pytest

from omni_core.errors import OmniError
from omni_core.ray_helpers import RayConfig, init_ray, plan_actor_pool, shutdown_ray


@pytest.mark.parametrize("res,ask,expect", [
    # 2-CPU machine: one CPU stays free for the read stage, so one 1-CPU actor
    ({"CPU": 2}, dict(num_cpus=1), (1, 1.0, 0.0)),
    # asking for 2 CPUs per actor on that machine shrinks the actor to what is left
    ({"CPU": 2}, dict(num_cpus=2), (1, 1.0, 0.0)),
    ({"CPU": 1}, dict(num_cpus=1), (1, 0.5, 0.0)),
    ({"CPU": 16}, dict(num_cpus=2), (7, 2.0, 0.0)),
    ({"CPU": 16}, dict(num_cpus=2, max_size=3), (3, 2.0, 0.0)),
    ({"CPU": 16, "GPU": 8}, dict(num_cpus=1, num_gpus=0.5), (15, 1.0, 0.5)),
    ({"CPU": 64, "GPU": 8}, dict(num_cpus=1, num_gpus=0.5), (16, 1.0, 0.5)),
])
def test_pool_plans_leave_room_for_the_rest_of_the_dag(res, ask, expect):
    plan = plan_actor_pool(resources=res, **ask)
    assert (plan.size, plan.num_cpus, plan.num_gpus) == expect
    assert plan.size * plan.num_cpus <= max(res["CPU"] - 1, plan.num_cpus)


def test_gpu_stage_without_gpu_is_a_clear_error():
    with pytest.raises(OmniError, match="needs 1 GPU per actor; the cluster has 0"):
        plan_actor_pool(num_cpus=1, num_gpus=1, resources={"CPU": 8})


class Double:
    """An actor that loads 'a model' once and maps batches."""

    def __init__(self):
        self.k = 2

    def __call__(self, batch):
        batch["id"] = batch["id"] * self.k
        return batch


def test_actor_pool_dag_completes_on_two_cpus():
    """The measured failure: a pool that reserves every CPU starves the read stage. Our plan on
    a 2-CPU embedded cluster must let the whole DAG finish."""
    import ray
    from ray import cloudpickle

    # test modules are not importable on Ray workers: ship the actor class by value
    cloudpickle.register_pickle_by_value(sys.modules[__name__])
    resources = init_ray(RayConfig(num_cpus=2, include_dashboard=False))
    try:
        assert resources["CPU"] == 2
        plan = plan_actor_pool(num_cpus=2)
        assert plan.num_cpus + 1 <= 2  # one CPU left for the read tasks
        ds = ray.data.range(200, override_num_blocks=8).map_batches(
            Double, compute=plan.strategy(), batch_size=25, **plan.ray_remote_args())
        assert ds.sum("id") == 2 * sum(range(200))
        assert init_ray() == resources  # idempotent
    finally:
        shutdown_ray()


def test_bad_address_is_one_clear_error():
    with pytest.raises(OmniError, match="cannot start or join Ray at 127.0.0.1:1"):
        init_ray(RayConfig(address="127.0.0.1:1"))
