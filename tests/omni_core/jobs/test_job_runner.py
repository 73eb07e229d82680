"""The runner: validated resources, its own local Ray cluster beside a ``ray start`` one,
progress on a terminal and in a log, no Ray log lines unless asked."""

from __future__ import annotations

import os
import pty
import select
import subprocess
import sys
import textwrap
import time

import pytest

from omni_core.config import ConfigError, load_config
from omni_core.jobs import StageResources
from omni_core.ray_helpers import RayConfig, init_ray, shutdown_ray
from pipelines.inpair.config import InpairConfig


@pytest.mark.parametrize("bad", [
    {"num_cpus": -2}, {"num_cpus": float("inf")}, {"num_gpus": float("nan")},
    {"num_cpus": 0, "num_gpus": 0}, {"max_actors": 0}, {"max_actors": -1},
    {"max_actors": 1.5}, {"custom": {"decode": -1}}, {"num_cpus": True}])
def test_bad_resources_are_refused_before_ray_starts(bad):
    with pytest.raises(ValueError):
        StageResources(**bad)


def test_a_bad_resource_in_a_config_is_one_line_naming_it():
    with pytest.raises(ConfigError, match=r"resources\.visual.*max_actors"):
        load_config(InpairConfig, None, ["resources.visual.max_actors=-1"])
    with pytest.raises(ConfigError, match=r"resources\.prepare.*num_cpus"):
        load_config(InpairConfig, None, ["resources.prepare.num_cpus=-2"])


def test_an_embedded_cluster_starts_beside_a_ray_start_cluster(tmp_path):
    """A ``ray start`` cluster runs on the host (2 CPUs): a job without an address still gets
    its own embedded cluster of the size it asked for, instead of joining that one and failing
    on its sizing ("num_cpus ... must not be provided")."""
    import signal
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    ray_bin = os.path.join(os.path.dirname(sys.executable), "ray")
    head = subprocess.Popen(
        [ray_bin, "start", "--head", "--block", "--node-ip-address", "127.0.0.1", "--port",
         str(port), "--num-cpus", "2", "--include-dashboard", "false",
         "--disable-usage-stats"], env=_env(), start_new_session=True,
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 120
        while True:  # until its GCS answers
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                assert head.poll() is None and time.monotonic() < deadline
                time.sleep(0.5)
        time.sleep(2)  # the head records itself as the host's current cluster
        try:
            resources = init_ray(RayConfig(num_cpus=1, include_dashboard=False), verbose=False)
            assert resources["CPU"] == 1  # ours, not the head's 2
        finally:
            shutdown_ray()
    finally:
        os.killpg(head.pid, signal.SIGTERM)  # --block: stopping it stops that cluster alone
        head.wait(timeout=60)


TOY = textwrap.dedent('''
    import sys, time
    import ray
    from omni_core.jobs import JobContext, Stage, StagePlan, StageResources, WorkItem, run_on_ray
    from omni_core.ray_helpers import RayConfig
    from omni_core.storage import RunFolder

    class Slow(Stage):
        name = "slow"

        def process(self, item):
            time.sleep(0.6)

    ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])
    job = JobContext("toy", RunFolder(sys.argv[1]), "k")
    rows = [WorkItem(f"n{i}").to_row() for i in range(4)]
    done = run_on_ray(job, rows, [StagePlan(Slow, StageResources(num_cpus=0.5, max_actors=1))],
                      RayConfig(num_cpus=2, include_dashboard=False), progress=True)
    print("ROWS", len(done), flush=True)
''')


def _env():
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    env["RAY_USAGE_STATS_ENABLED"] = "0"
    return env


def test_progress_is_drawn_in_place_on_a_terminal(tmp_path):
    script = tmp_path / "toy.py"
    script.write_text(TOY)
    pid, fd = pty.fork()
    if pid == 0:  # the child: a job on a terminal, as a user runs it
        try:
            os.execve(sys.executable, [sys.executable, str(script), str(tmp_path / "out")],
                      _env())
        finally:
            os._exit(127)
    out = b""
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline:
        ready, _, _ = select.select([fd], [], [], 1.0)
        if ready:
            try:
                chunk = os.read(fd, 65536)
            except OSError:  # the child closed the terminal
                break
            if not chunk:
                break
            out += chunk
    _, status = os.waitpid(pid, 0)
    text = out.decode(errors="replace")
    assert os.waitstatus_to_exitcode(status) == 0, text
    assert "ROWS 4" in text
    assert "\x1b[2K" in text and "\x1b[1F" in text  # redrawn in place, one line per stage
    assert "slow [####################] 4/4 items" in text and "done" in text
    for noise in ("core_worker", "INFO", "WARNING", "Progress bars disabled",
                  "max_restarts"):
        assert noise not in text, (noise, text)


def test_progress_is_a_line_every_few_seconds_in_a_log(tmp_path):
    script = tmp_path / "toy.py"
    script.write_text(TOY.replace("time.sleep(0.6)", "time.sleep(2.0)"))
    r = subprocess.run([sys.executable, str(script), str(tmp_path / "out")],
                       capture_output=True, text=True, timeout=240, env=_env())
    assert r.returncode == 0, r.stderr
    lines = [x for x in r.stderr.splitlines() if x.startswith("[")]
    assert len(lines) >= 2, r.stderr  # 8 s of work, a line every 5 s, and the last one
    assert lines[-1].endswith("slow 4/4 done") and "\x1b" not in r.stderr
    for noise in ("core_worker", "INFO", "WARNING", "max_restarts"):
        assert noise not in r.stderr, (noise, r.stderr)
