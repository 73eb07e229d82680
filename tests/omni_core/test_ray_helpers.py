import sys

import pytest

from omni_core.errors import OmniError
from omni_core.ray_helpers import (
    RayConfig,
    dashboard_url,
    init_ray,
    shutdown_ray,
)


def test_bad_address_is_one_clear_error():
    with pytest.raises(OmniError, match="cannot start or join Ray at 127.0.0.1:1"):
        init_ray(RayConfig(address="127.0.0.1:1"))


LOOPBACK = {"127.0.0.1", "::1", "::ffff:127.0.0.1"}


def _listening(pids: set[int]) -> list[tuple[int, str, int]]:
    import psutil

    found = []
    for pid in pids:
        try:
            conns = psutil.Process(pid).net_connections(kind="inet")
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            continue
        found += [(pid, c.laddr.ip, c.laddr.port) for c in conns
                  if c.status == psutil.CONN_LISTEN]
    return found


def test_two_local_jobs_share_a_machine_and_listen_on_loopback_only():
    """Issue 14 rows 9 and 10: a second job on the same machine (here another process that
    holds its own embedded cluster with a dashboard) starts its own cluster beside it, and no
    port of either cluster listens beyond 127.0.0.1."""
    import subprocess

    import psutil
    import ray

    holder = subprocess.Popen(
        [sys.executable, "-c",
         "import sys\n"
         "from omni_core.ray_helpers import RayConfig, init_ray, shutdown_ray\n"
         "init_ray(RayConfig(num_cpus=1), verbose=False)\n"
         "print('ready', flush=True)\n"
         "sys.stdin.read()\n"
         "shutdown_ray()\n"],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "ready"
        first = {p.pid for p in psutil.Process(holder.pid).children(recursive=True)}
        init_ray(RayConfig(num_cpus=1), verbose=False)
        try:
            assert ray.get_runtime_context().gcs_address.startswith("127.0.0.1:")
            ours = {p.pid for p in psutil.Process().children(recursive=True)}
            ours -= first | {holder.pid}  # its own cluster: processes of its own
            assert ours
            ports = _listening(first) + _listening(ours)
            assert len(ports) >= 6  # GCS, raylet, object manager, agents, dashboard...
            assert [p for p in ports if p[1] not in LOOPBACK] == []
            dashboards = [port for _, _, port in ports if 8265 <= port <= 8315]
            assert len(dashboards) == 2, ports  # 8265 taken by the first: the next free one
            host, _, port = dashboard_url().removeprefix("http://").partition(":")
            assert host == "127.0.0.1" and int(port) in dashboards
        finally:
            shutdown_ray()
    finally:
        holder.communicate(input="", timeout=60)
    assert holder.returncode == 0


def test_dashboard_port_out_of_range_is_refused():
    with pytest.raises(ValueError, match="dashboard_port"):
        RayConfig(dashboard_port=70000)
