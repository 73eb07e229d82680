"""Starting or joining Ray.

By default a job runs on an embedded local cluster sized to this machine, started even when
another cluster runs on the host. Every port it opens (GCS, raylet, object manager, workers,
agents, metrics, dashboard) listens on 127.0.0.1 only, and the dashboard takes 8265 or the
next free port, so two jobs (or two users) can share a workstation. ``address`` joins an
existing cluster instead (``auto``, ``host:6379`` or ``ray://host:10001``), which is what
``ray job submit`` gives a driver.

Actor pools are sized for a whole DAG at once by :func:`omni_core.jobs.resources.plan_pools`.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import os
import re
import socket
import sys
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from typing import TextIO

from .errors import OmniError
from .urls import redact

log = logging.getLogger(__name__)


@dataclass
class RayConfig:
    """How a job gets its Ray cluster."""

    address: str | None = None  # None: start an embedded local cluster
    num_cpus: int | None = None  # local only; default: all cores of this machine
    num_gpus: int | None = None  # local only; default: what Ray detects
    object_store_memory_gb: float | None = None  # local only; default: Ray's choice
    #: local only: the address every Ray port of the embedded cluster listens on;
    #: None lets Ray choose (the machine's network address, ports on all interfaces)
    node_ip_address: str | None = "127.0.0.1"
    include_dashboard: bool = True
    dashboard_host: str = "127.0.0.1"  # never 0.0.0.0 unless asked
    dashboard_port: int | None = None  # None: 8265, or the next free port up to 8315
    namespace: str = "omni"
    log_to_driver: bool = True

    def __post_init__(self) -> None:
        if self.num_cpus is not None and self.num_cpus < 1:
            raise ValueError("num_cpus must be at least 1")
        if self.dashboard_port is not None and not 1 <= self.dashboard_port <= 65535:
            raise ValueError("dashboard_port must be a port number (1-65535) or null")


def init_ray(cfg: RayConfig | None = None, *, verbose: bool = True) -> dict[str, float]:
    """Start or join Ray (idempotent); returns the cluster's total resources.

    With no address (and no ``RAY_ADDRESS``) a new embedded cluster is started even when a
    ``ray start`` cluster already runs on this host (Ray would otherwise join it and refuse
    the local sizing). ``verbose=False`` keeps Ray's own log lines (its INFO/WARNING lines,
    the workers' output) off the console; they stay in Ray's session logs.
    """
    import ray

    cfg = cfg or RayConfig()
    if ray.is_initialized():
        return dict(ray.cluster_resources())
    if cfg.address is None and os.environ.get("RAY_ADDRESS"):
        # inside `ray job submit` (or with RAY_ADDRESS exported): join that cluster
        cfg = dataclasses.replace(cfg, address=os.environ["RAY_ADDRESS"])
    # Keep Ray's own progress output tidy and its usage stats off the network.
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    if not verbose:
        _quiet_ray()
    kwargs: dict = {"namespace": cfg.namespace,
                    "log_to_driver": cfg.log_to_driver and verbose,
                    "configure_logging": True,
                    "logging_level": logging.WARNING if verbose else logging.ERROR}
    if cfg.address:
        kwargs["address"] = cfg.address
    else:
        kwargs.update(
            address="local",  # never join whatever `ray start` left running on the host
            num_cpus=cfg.num_cpus or os.cpu_count() or 1,
            include_dashboard=cfg.include_dashboard,
            dashboard_host=cfg.dashboard_host,
            dashboard_port=cfg.dashboard_port,
        )
        if cfg.node_ip_address:
            kwargs["_node_ip_address"] = cfg.node_ip_address
        if cfg.num_gpus is not None:
            kwargs["num_gpus"] = cfg.num_gpus
        if cfg.object_store_memory_gb:
            kwargs["object_store_memory"] = int(cfg.object_store_memory_gb * 1024**3)
    if cfg.address and cfg.address != "auto":
        _check_reachable(cfg.address)
    local_ip = None if cfg.address else cfg.node_ip_address
    try:
        with _node_address_as_given(local_ip):
            context = ray.init(**kwargs)
    except Exception as exc:  # Ray raises RpcError, ConnectionError, RuntimeError...
        where = cfg.address or "a local cluster"
        raise OmniError(redact(f"cannot start or join Ray at {where}: {exc}")) from exc
    if local_ip:
        node_ip = ray.get_runtime_context().gcs_address.rpartition(":")[0]
        if node_ip != local_ip:
            log.warning("Ray ignored node_ip_address=%s (its cluster listens at %s)",
                        local_ip, node_ip)
    global _dashboard
    _dashboard = getattr(context, "dashboard_url", None) or None
    return dict(ray.cluster_resources())


_dashboard: str | None = None


def dashboard_url() -> str | None:
    """``http://host:port`` of the dashboard of the cluster :func:`init_ray` started or
    joined (the port is 8265 or the next free one), or None without a dashboard."""
    if not _dashboard:
        return None
    return _dashboard if "://" in _dashboard else f"http://{_dashboard}"


@contextlib.contextmanager
def _node_address_as_given(ip: str | None) -> Iterator[None]:
    """Let a local cluster's node address be a loopback address.

    Ray turns a loopback node address into the machine's network address before it starts
    its processes, and those bind their gRPC ports to every interface; with a loopback node
    address they bind to it alone. Ray offers no setting for this, so the conversion is
    switched off while ``ray.init`` starts the cluster (``init_ray`` checks the result)."""
    from ray._private import services

    original = getattr(services, "resolve_ip_for_localhost", None)
    if not ip or original is None:
        yield
        return
    services.resolve_ip_for_localhost = lambda host: ip if host == ip else original(host)
    try:
        yield
    finally:
        services.resolve_ip_for_localhost = original


def _quiet_ray() -> None:
    """Ray's Python messages a user cannot act on (Ray Data's plan and progress-bar notices)
    stay in Ray's session logs. Ray Data sets its loggers up when it is imported, so import
    it first."""
    import ray.data  # noqa: F401  (configures its loggers; ours must come after)

    for name in ("ray", "ray.data", "ray.train", "ray.tune"):
        logging.getLogger(name).setLevel(logging.ERROR)


#: a line of Ray's C++ core log (glog style): "[2026-12-03 07:56:45,388 E 12044 12044] ..."
_CORE_LOG = re.compile(rb"^\[\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d+ [DIWEF] \d+ \d+\] ")


@contextlib.contextmanager
def core_log_filter(enabled: bool = True) -> Iterator[TextIO]:
    """Keep the C++ core's log lines (e.g. "constructor arguments in the object store and
    max_restarts > 0", written by Ray straight to file descriptor 2) off the console while a
    job runs; every other line of standard error passes through. Yields a stream to the real
    standard error (a progress display should write there: it keeps its terminal)."""
    sys.stderr.flush()
    real = os.dup(2)
    stream = os.fdopen(os.dup(real), "w", buffering=1)
    if not enabled:
        try:
            yield stream
        finally:
            stream.close()
            os.close(real)
        return
    read, write = os.pipe()
    os.dup2(write, 2)
    os.close(write)
    sink = os.dup(real)  # the pump's own way out: it may outlive this block (see below)

    def pump() -> None:
        with os.fdopen(read, "rb") as pipe:
            for line in pipe:
                if not _CORE_LOG.match(line):
                    try:
                        os.write(sink, line)
                    except OSError:
                        pass
        os.close(sink)

    thread = threading.Thread(target=pump, name="omni-stderr", daemon=True)
    thread.start()
    try:
        yield stream
    finally:
        sys.stderr.flush()
        os.dup2(real, 2)  # the pipe's writer is gone: the pump drains it and ends
        thread.join(timeout=2)  # (a process that inherited the pipe keeps it open longer)
        stream.close()
        os.close(real)


def _check_reachable(address: str, timeout: float = 5.0) -> None:
    """Fail in seconds on an address nobody listens on (Ray itself waits minutes for GCS)."""
    hostport = address.split("://", 1)[-1].rstrip("/")
    host, _, port = hostport.rpartition(":")
    if not host or not port.isdigit():
        raise OmniError(f"Ray address {redact(address)!r}: expected host:port, ray://host:port "
                        "or auto")
    try:
        socket.create_connection((host, int(port)), timeout=timeout).close()
    except OSError as exc:
        raise OmniError(f"cannot start or join Ray at {redact(address)}: nothing answers there "
                        f"({exc.strerror or exc})") from exc


def shutdown_ray() -> None:
    import ray

    global _dashboard
    _dashboard = None
    if ray.is_initialized():
        ray.shutdown()
