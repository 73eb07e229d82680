"""The job contract: how every batch job of the suite runs (docs/architecture.md).

A job is a list of items and a list of stages. Each stage (:class:`Stage`) declares its
name, its steps, its code version and (through the config) its resources; it loads its models
once in a timed ``setup`` and works on one item at a time in ``process``, where an exception
becomes an error row and the run goes on. The runner (:func:`run_on_ray` on Ray Data actor
pools, :func:`run_in_process` here) streams the items through the stages and shows progress.
Finished work is recorded in a :class:`ResultStore` under a result key (config, stage
versions, checkpoints), so a rerun skips exactly what was made the same way. The job ends
with one :class:`JobSummary` (``summary.json``, the closing table) carrying its provenance.
"""

from .provenance import file_identity, provenance, weights_mode
from .resources import PoolPlan, StageResources, actor_args, plan_pools
from .runner import StagePlan, run_in_process, run_on_ray, start_ray
from .stage import JobContext, SetupRecord, Stage, WorkItem, collect_setup
from .store import ResultStore, result_key
from .summary import JobSummary, driver_stage, read_summary, stage_rows, summarize_items

__all__ = ["JobContext", "JobSummary", "PoolPlan", "ResultStore", "SetupRecord", "Stage",
           "StagePlan", "StageResources", "WorkItem", "actor_args", "collect_setup",
           "driver_stage", "file_identity", "plan_pools", "provenance", "read_summary",
           "result_key", "run_in_process", "run_on_ray", "stage_rows", "start_ray",
           "summarize_items", "weights_mode"]
