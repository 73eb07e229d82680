"""A toy job written only against the public job contract (omni_core.jobs), run on Ray:
the worked example of docs/architecture.md ("add a stage") as a test."""

from __future__ import annotations

import json
import sys
import time

import pytest

from omni_core.errors import OmniError
from omni_core.jobs import (
    JobContext,
    JobSummary,
    ResultStore,
    Stage,
    StagePlan,
    StageResources,
    WorkItem,
    collect_setup,
    provenance,
    result_key,
    run_in_process,
    run_on_ray,
    stage_rows,
)
from omni_core.manifests import errors_frame
from omni_core.ray_helpers import RayConfig, shutdown_ray
from omni_core.storage import RunFolder

# Ray workers cannot import a test module: its stages travel by value.
pytest.importorskip("ray").cloudpickle.register_pickle_by_value(sys.modules[__name__])


class Square(Stage):
    """Squares the number; refuses 13 (an error row, the run goes on)."""

    name = "square"
    steps = ("check", "square")

    def setup(self, delay: float = 0.0) -> None:
        time.sleep(delay)  # "model loading": booked as setup, never as compute

    def process(self, item: WorkItem) -> None:
        n = item.data["n"]
        if n == 13:
            raise OmniError("13 is unlucky")
        self.step("square")
        item.data["square"] = n * n


class Record(Stage):
    """Writes each finished item's result into the store (what a rerun skips)."""

    name = "record"

    def process(self, item: WorkItem) -> None:
        store = ResultStore(self.out, "toy")
        store.put("numbers", item.item, self.job.key, {"square": item.data["square"]})


def run_toy(out, numbers, *, on_ray: bool, factor: int = 1):
    folder = RunFolder(out)
    key = result_key({"factor": factor}, Square.version, Record.version)
    store = ResultStore(folder, "toy")
    todo = [n for n in numbers if not store.done("numbers", f"n{n}", key)]
    job = JobContext("toy", folder, key)
    items = [WorkItem(f"n{n}", {"n": n}) for n in todo]
    plans = [StagePlan(Square, StageResources(num_cpus=0.5), {"delay": 0.3}),
             StagePlan(Record, StageResources(num_cpus=0.25, max_actors=1))]
    t0 = time.perf_counter()
    if on_ray:
        rows = run_on_ray(job, [i.to_row() for i in items], plans,
                          RayConfig(num_cpus=2, include_dashboard=False), progress=False)
        done = [WorkItem.from_row(r) for r in rows]
    else:
        done = run_in_process(job, items, plans, progress=False)
    setup = collect_setup(job)
    errors = errors_frame([e for i in done for e in i.tables.get("errors", [])])
    stages = stage_rows([(p.stage.name, p.stage.step_names()) for p in plans],
                        [i.stats() for i in done], setup=setup.seconds, actors=setup.actors)
    summary = JobSummary.build(
        "toy", folder.out, total=len(numbers), skipped=len(numbers) - len(todo),
        stages=stages, errors=errors, counts={"numbers": len(done)},
        wall_s=time.perf_counter() - t0, result_key=key,
        provenance=provenance({"factor": factor}, weights="debug", inputs=["range"],
                              checkpoints=setup.checkpoints))
    summary.write(folder)
    return summary, done


@pytest.mark.parametrize("on_ray", [True, False], ids=["ray", "in-process"])
def test_toy_job_through_the_public_contract(tmp_path, on_ray):
    try:
        summary, done = run_toy(tmp_path / "out", [1, 2, 13, 4], on_ray=on_ray)
        squares = {i.item: i.data.get("square") for i in done}
        assert squares == {"n1": 1, "n2": 4, "n13": None, "n4": 16}
        data = json.loads((tmp_path / "out" / "summary.json").read_text())
        assert list(data) == ["job", "out", "items", "stages", "errors_by_stage", "counts",
                              "timing", "result_key", "details", "provenance"]
        assert data["items"] == {"total": 4, "done": 4, "skipped": 0, "failed": 1}
        sq, rec = data["stages"]
        assert (sq["stage"], sq["in"], sq["out"], sq["failed"]) == ("square", 4, 3, 1)
        assert [(s["step"], s["in"], s["failed"]) for s in sq["steps"]] == [
            ("check", 4, 1), ("square", 3, 0)]
        assert (rec["in"], rec["out"]) == (3, 3)  # the failed item skipped the later stage
        # compute is the sum of the items' step times, setup is separate and counted once
        assert sq["compute_s"] == pytest.approx(sum(s["seconds"] for s in sq["steps"]),
                                                abs=2e-3)
        assert sq["compute_s"] < 0.3 <= sq["setup_s"] and sq["actors"] >= 1
        assert data["timing"]["setup_s"] >= 0.3
        assert data["errors_by_stage"] == {"check": 1}
        prov = data["provenance"]
        assert prov["config"] == {"factor": 1} and prov["weights"]["mode"] == "debug"
        assert prov["git_commit"] and prov["suite_version"]
        assert not (tmp_path / "out" / "_setup").exists()  # setup records consumed

        again, _ = run_toy(tmp_path / "out", [1, 2, 13, 4], on_ray=on_ray)
        assert again.items == {"total": 4, "done": 1, "skipped": 3, "failed": 1}  # 13 retried
        changed, _ = run_toy(tmp_path / "out", [1, 2, 13, 4], on_ray=on_ray, factor=2)
        assert changed.items["skipped"] == 0  # another result key: everything again
    finally:
        shutdown_ray()


def test_closing_table_names_every_stage_and_step(tmp_path):
    summary, _ = run_toy(tmp_path / "out", [1, 13], on_ray=False)
    text = "\n".join(summary.lines())
    assert text.startswith("toy: 2 items (2 this run, 0 finished by an earlier run, 1 failed)")
    for word in ("square", "check", "record", "errors by step: check 1", "summary.json"):
        assert word in text


class NeedsCheckpoint(Stage):
    """A stage whose model file is missing: its pre-flight says so."""

    name = "needs"

    @classmethod
    def preflight(cls, path: str) -> None:
        from pathlib import Path

        if not Path(path).is_file():
            raise OmniError(f"missing checkpoint {path}")

    def setup(self, path: str) -> None:
        raise AssertionError("setup must not run when the pre-flight fails")

    def process(self, item: WorkItem) -> None:
        pass


@pytest.mark.parametrize("on_ray", [False, True])
def test_preflight_fails_the_job_before_any_worker_starts(tmp_path, on_ray):
    import ray

    job = JobContext("toy", RunFolder(tmp_path), "k")
    plans = [StagePlan(Square), StagePlan(NeedsCheckpoint, params={"path": str(tmp_path / "x")})]
    items = [WorkItem("n1", {"n": 1})]
    with pytest.raises(OmniError, match="missing checkpoint"):
        if on_ray:
            run_on_ray(job, [i.to_row() for i in items], plans,
                       RayConfig(num_cpus=1, include_dashboard=False), progress=False)
        else:
            run_in_process(job, items, plans, progress=False)
    assert not ray.is_initialized()
    assert not (tmp_path / "_setup").exists()  # not even the first stage was set up
