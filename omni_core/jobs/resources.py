"""What one actor of a stage reserves, validated before Ray starts.

A stage declares CPUs, a GPU fraction and custom resources per actor, and at most how many
actors it gets. Bad values (a negative CPU count, zero actors, infinity) are refused with one
line naming the field, before any cluster is started or joined.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any


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


def actor_args(res: StageResources, *, grow: bool = False) -> dict[str, Any]:
    """Ray Data ``map`` keyword arguments for a stage's actor pool, sized from what the cluster
    has now (:func:`omni_core.ray_helpers.plan_actor_pool`; Ray must be running).

    ``grow`` (a joined cluster, which may autoscale): the pool starts at that size and may
    grow onto nodes that join, up to ``max_actors`` (unbounded when None); an embedded local
    cluster never grows, so its pools keep the CPU the read stage needs."""
    from ray.data import ActorPoolStrategy

    from omni_core.ray_helpers import plan_actor_pool

    plan = plan_actor_pool(res.num_cpus, res.num_gpus, max_size=res.max_actors)
    compute = (ActorPoolStrategy(min_size=1, initial_size=plan.size, max_size=res.max_actors)
               if grow else plan.strategy())
    args: dict[str, Any] = {"compute": compute, **plan.ray_remote_args()}
    if res.custom:
        args["resources"] = dict(res.custom)
    return args
