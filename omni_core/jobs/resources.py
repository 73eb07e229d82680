"""What one actor of a stage reserves, validated before Ray starts.

A stage declares CPUs, a GPU fraction and custom resources per actor, and at most how many
actors it gets. Bad values (a negative CPU count, zero actors, infinity) are refused with one
line naming the field, before any cluster is started or joined. :func:`plan_pools` sizes the
pools of a whole DAG together so that one actor of every stage always fits.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from omni_core.errors import OmniError


@dataclass
class StageResources:
    """Per actor of a stage: ``num_cpus``, ``num_gpus`` (a fraction lets several actors share
    one GPU, e.g. 0.25 = four per GPU), ``max_actors`` (None: as many as fit) and ``custom``
    Ray resources (e.g. ``{decode: 1}`` keeps a stage on the nodes that declare ``decode``,
    ray_cluster.yaml's ``cpu_worker``; docs/cluster.md)."""

    num_cpus: float = 1.0
    num_gpus: float = 0.0
    max_actors: int | None = None
    custom: dict[str, float] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for name in ("num_cpus", "num_gpus"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) \
                    or not math.isfinite(value) or value < 0:
                raise ValueError(f"{name} must be a finite number >= 0, got {value!r}")
        if self.num_cpus == 0 and self.num_gpus == 0:
            raise ValueError("an actor must reserve some CPU or GPU (num_cpus and num_gpus "
                             "are both 0)")
        if self.max_actors is not None and (isinstance(self.max_actors, bool)
                                            or not isinstance(self.max_actors, int)
                                            or self.max_actors < 1):
            raise ValueError(f"max_actors must be an integer >= 1 or null, got "
                             f"{self.max_actors!r}")
        for key, value in self.custom.items():
            if isinstance(value, bool) or not isinstance(value, (int, float)) \
                    or not math.isfinite(value) or value < 0:
                raise ValueError(f"custom.{key} must be a finite number >= 0, got {value!r}")


#: per-actor reservations are rounded down to this step (Ray's resource granularity is 1e-4)
_STEP = 1e-4


@dataclass(frozen=True)
class PoolPlan:
    """One stage's actor pool: at most ``size`` actors, each reserving ``num_cpus`` and
    ``num_gpus``; ``scaled``: the requests were scaled down to fit the cluster."""

    size: int
    num_cpus: float
    num_gpus: float
    scaled: bool = False

    def ray_remote_args(self) -> dict[str, float]:
        args = {"num_cpus": self.num_cpus}
        if self.num_gpus:
            args["num_gpus"] = self.num_gpus
        return args


def _down(x: float) -> float:
    return max(round(math.floor(x / _STEP) * _STEP, 4), _STEP)


def plan_pools(stages: Sequence[StageResources], resources: dict[str, float] | None = None,
               *, reserve_cpus: float = 1.0) -> list[PoolPlan]:
    """Size the actor pools of one DAG together, from one snapshot of what the cluster has
    free (``ray.available_resources()`` unless ``resources`` is given).

    The DAG cannot deadlock: one actor of *every* stage fits at once within the CPUs left
    after ``reserve_cpus`` (kept for Ray Data's read and CPU tasks) and within the GPUs. When
    the stages' requests add up to more, each request is scaled down by the same factor, so
    every stage has its first actor and work flows to the end. (Sized one by one, five stages
    of a 2-CPU machine asked 3.75 CPUs between their first actors; whichever actors started
    first held the CPUs, the stage behind them never got one, and the job waited forever:
    measured under CPU load, inpair as a Ray job.) A pool's size is what the stage's own
    request allows alone (``max_actors`` caps it); Ray Data grows a pool from one actor up
    to that size when resources free up. A scaled-down pool never grows past that size, not
    even on a joined cluster: its small reservation would let Ray Data start actors the
    machine has no CPU for (a 2-CPU head grew every pool to two actors for two clips,
    109 s instead of 78 s, each actor loading its models).

    A stage that needs a GPU on a cluster without one is one clear error.
    """
    if resources is None:
        import ray

        resources = dict(ray.available_resources())
    cpus = float(resources.get("CPU", 0.0))
    gpus = float(resources.get("GPU", 0.0))
    budget = cpus - reserve_cpus if cpus > reserve_cpus else cpus / 2
    for res in stages:
        if res.num_gpus > 0 and gpus < res.num_gpus:
            raise OmniError(f"stage needs {res.num_gpus:g} GPU per actor; the cluster has "
                            f"{gpus:g}")
    own_cpu = [min(res.num_cpus, budget) for res in stages]
    cpu_factor = min(1.0, budget / sum(own_cpu)) if sum(own_cpu) > 0 else 1.0
    gpu_total = sum(res.num_gpus for res in stages)
    gpu_factor = min(1.0, gpus / gpu_total) if gpu_total > 0 else 1.0
    plans = []
    for res, own in zip(stages, own_cpu, strict=True):
        size = int(budget // own) if own > 0 else 10**6
        if res.num_gpus > 0:
            size = min(size, int(gpus // res.num_gpus))
        if res.max_actors is not None:
            size = min(size, res.max_actors)
        plans.append(PoolPlan(
            size=max(size, 1),
            num_cpus=_down(own * cpu_factor) if own > 0 else 0.0,
            num_gpus=_down(res.num_gpus * gpu_factor) if res.num_gpus > 0 else 0.0,
            scaled=cpu_factor < 1 or gpu_factor < 1))
    return plans


def actor_args(res: StageResources, plan: PoolPlan, *, grow: bool = False) -> dict[str, Any]:
    """Ray Data ``map`` keyword arguments for a stage's actor pool (``plan`` from
    :func:`plan_pools`): from one actor up to ``plan.size``.

    ``grow`` (a joined cluster, which may autoscale): the pool may grow past that, onto nodes
    that join, up to ``res.max_actors`` (unbounded when None), unless its requests were
    scaled down to fit; an embedded local cluster never grows, so its pools keep the CPU the
    read stage needs."""
    from ray.data import ActorPoolStrategy

    grows = grow and not plan.scaled
    compute = ActorPoolStrategy(min_size=1, max_size=res.max_actors if grows else plan.size)
    args: dict[str, Any] = {"compute": compute, **plan.ray_remote_args()}
    if res.custom:
        args["resources"] = dict(res.custom)
    return args
