"""Running a job's stages: on Ray Data actor pools, or in this process.

One runner for every batch job of the suite:

* :func:`run_on_ray` starts or joins Ray once (an embedded local cluster by default, even
  when a ``ray start`` cluster runs on the host; ``ray.address`` / ``--address`` /
  ``RAY_ADDRESS`` joins a cluster), builds one Ray Data pipeline of the stages (an actor pool
  per stage sized from its :class:`~omni_core.jobs.resources.StageResources`), streams the
  items through it and shows progress;
* :func:`run_in_process` runs the same stages one item at a time in this process, for jobs
  bound to one device (sampling, evaluation).

Both book setup and compute the same way (:mod:`omni_core.jobs.stage`) and return the last
stage's rows; the job then merges its results and writes its summary
(:mod:`omni_core.jobs.summary`).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from omni_core.ray_helpers import RayConfig, core_log_filter, dashboard_url, init_ray
from omni_core.weights import unrecorded

from .feed import InputFeed
from .progress import _LOCAL_BOARDS, ProgressBoard, ProgressView
from .resources import StageResources, actor_args, plan_pools
from .stage import JobContext, Stage, WorkItem


@dataclass
class StagePlan:
    """One stage of a run: its class, what each actor reserves, its constructor parameters,
    whether it turns one row into several (``fan_out``), and what its items are called."""

    stage: type[Stage]
    resources: StageResources = field(default_factory=StageResources)
    params: dict[str, Any] = field(default_factory=dict)
    fan_out: bool = False
    unit: str = "items"
    #: rows per call for a stage that takes batches (``ds.map_batches``): e.g. the stage that
    #: publishes results, one part per batch (:meth:`ResultStore.put_part`)
    batch_size: int | None = None


def preflight(plans: Sequence[StagePlan]) -> None:
    """Every stage's :meth:`Stage.preflight`, on the driver, before any worker starts: a
    missing checkpoint is one line in milliseconds (nothing is booked as loaded)."""
    with unrecorded():
        for p in plans:
            p.stage.preflight(**p.params)


def start_ray(cfg: RayConfig, *, verbose: bool = False) -> dict[str, float]:
    """Start or join Ray once for a job (idempotent)."""
    return init_ray(cfg, verbose=verbose)


def run_on_ray(job: JobContext, rows: Sequence[dict[str, Any]] | InputFeed,
               plans: Sequence[StagePlan], ray_config: RayConfig, *, progress: bool = True,
               verbose: bool = False) -> list[dict[str, Any]]:
    """Stream ``rows`` (a list, or an :class:`~omni_core.jobs.feed.InputFeed` the driver
    wrote page by page) through the stages on Ray Data; returns the last stage's rows (a
    stage that publishes its results per batch returns one small row per batch, so nothing
    that grows with the items comes back to the driver)."""
    import ray

    n = len(rows)
    if not n:
        return []
    preflight(plans)
    with core_log_filter(not verbose) as stderr:
        start_ray(ray_config, verbose=verbose)
        joined = bool(ray_config.address or os.environ.get("RAY_ADDRESS"))
        if progress and not verbose and dashboard_url():  # (verbose: Ray prints it itself)
            print(f"Ray dashboard: {dashboard_url()}", file=stderr, flush=True)
        ctx = ray.data.DataContext.get_current()
        ctx.enable_progress_bars = False  # our own display (omni_core.jobs.progress)
        ctx.execution_options.verbose_progress = False
        board = view = None
        if progress:
            name = f"omni-progress-{job.run}"
            board = ray.remote(num_cpus=0)(ProgressBoard).options(name=name).remote(
                [p.stage.name for p in plans], n, [p.unit for p in plans])
            job = _with_board(job, name)
            view = ProgressView(lambda: ray.get(board.snapshot.remote(), timeout=10),
                                stream=stderr)
        try:
            if isinstance(rows, InputFeed):
                ds = ray.data.read_datasource(rows.datasource(),
                                              override_num_blocks=rows.blocks)
            else:
                ds = ray.data.from_items(list(rows), override_num_blocks=max(1, n))
            pools = plan_pools([p.resources for p in plans])
            for p, pool in zip(plans, pools, strict=True):
                kwargs = {"fn_constructor_kwargs": {"job": job, **p.params},
                          **actor_args(p.resources, pool, grow=joined)}
                if p.batch_size:
                    ds = ds.map_batches(p.stage, batch_size=p.batch_size, **kwargs)
                elif p.fan_out:
                    ds = ds.flat_map(p.stage, **kwargs)
                else:
                    ds = ds.map(p.stage, **kwargs)
            return list(ds.iter_rows())
        finally:
            if view is not None:
                view.close()
            if board is not None:
                ray.kill(board)


def run_in_process(job: JobContext, items: Sequence[WorkItem], plans: Sequence[StagePlan],
                   *, progress: bool = True) -> list[WorkItem]:
    """Run the stages here, one item through all of them before the next (each stage set up
    once, timed as setup); returns the items."""
    preflight(plans)
    board = view = None
    if progress:
        name = f"omni-progress-{job.run}"
        board = ProgressBoard([p.stage.name for p in plans], len(items),
                              [p.unit for p in plans])
        _LOCAL_BOARDS[name] = board
        job = _with_board(job, name)
        view = ProgressView(board.snapshot)
    try:
        stages = [p.stage(job, **p.params) for p in plans]
        for item in items:
            for st in stages:
                if item.failed is None:
                    st.timed(item, st.process)
                st.report(done=1, failed=int(item.failed is not None), out=1)
        return list(items)
    finally:
        if view is not None:
            view.close()
        if board is not None:
            _LOCAL_BOARDS.pop(job.board or "", None)


def _with_board(job: JobContext, name: str) -> JobContext:
    from dataclasses import replace

    return replace(job, board=name)
