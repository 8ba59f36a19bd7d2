"""The run's private Ray head: only the processes a simulation uses, workers warm before Flower asks
for them, and nothing left running when it stops (or when the run it serves fails)."""

from __future__ import annotations

import sys

import psutil
import pytest

from edgeupdate.configs import ConfigError
from edgeupdate.simulation.local_ray import LocalRay
from edgeupdate.simulation.ray_cluster import start_private_ray

pytestmark = pytest.mark.sim


def _ray_processes() -> dict[int, str]:
    """This process's descendants that belong to Ray, pid → command line."""
    found = {}
    for p in psutil.Process().children(recursive=True):
        try:
            cmd = " ".join(p.cmdline())
        except psutil.Error:
            continue
        if "ray" in cmd and p.status() != psutil.STATUS_ZOMBIE:
            found[p.pid] = cmd
    return found


def test_the_head_runs_without_monitors_or_api_server_and_stops_every_process():
    import ray

    with LocalRay(1, preload=()) as address:
        assert ray.is_initialized() and ray.get_runtime_context().gcs_address == address
        running = _ray_processes()
        assert any("gcs_server" in c for c in running.values()) and any("raylet" in c for c in running.values())
        for absent in ("monitor.py", "log_monitor.py", "dashboard/dashboard.py"):  # what ray.init adds
            assert not any(absent in c for c in running.values()), absent
        assert ray.available_resources().get("CPU") == 1.0
    assert not ray.is_initialized()
    assert not [pid for pid in running if psutil.pid_exists(pid) and psutil.Process(pid).status() != psutil.STATUS_ZOMBIE]


def test_workers_start_with_the_head_and_import_the_preloaded_modules_before_any_task():
    import ray

    probe = "xml.dom.minidom"  # nothing in Ray, Flower or edgeupdate imports it
    assert probe not in sys.modules

    @ray.remote(num_cpus=1)
    def imported(name: str) -> bool:
        return name in sys.modules

    with LocalRay(1, preload=(probe,)):
        assert ray.get(imported.remote(probe))


def test_node_workers_come_warm_without_flowers_server_side_or_ray_datas_arrow_serializers():
    import ray

    names = ("torch", "flwr.simulation.ray_transport.ray_actor", "edgeupdate.clients.gateway", "pyarrow",
             "fastapi", "flwr.server.superlink.linkstate")

    @ray.remote(num_cpus=1)
    def modules(_payload: bytes) -> dict[str, bool]:  # an argument: the worker deserialises with its context
        return {name: name in sys.modules for name in names}

    @ray.remote(num_cpus=1)
    def whole_package() -> str:  # what flwr.simulation's own __init__ defines is still there when asked for
        from flwr.simulation import run_simulation

        return run_simulation.__module__

    with LocalRay(1):
        loaded = ray.get(modules.remote(b"x" * 200_000))  # large enough to travel through the object store
        completed = ray.get(whole_package.remote())
    assert loaded == {"torch": True, "flwr.simulation.ray_transport.ray_actor": True,
                      "edgeupdate.clients.gateway": True, "pyarrow": False,
                      "fastapi": False, "flwr.server.superlink.linkstate": False}
    assert completed == "flwr.simulation.run_simulation"


def test_a_cluster_address_starts_no_private_head(tiny_config):
    assert start_private_ray(tiny_config("simulation.ray_address='auto'")) is None
    with pytest.raises(ValueError, match="num_cpus must be at least 1"):
        LocalRay(0)


def test_a_run_that_fails_before_the_engine_starts_stops_the_head_it_started(tiny_config, tmp_path):
    import dataclasses

    import ray

    from edgeupdate.simulation.runner import run_experiment

    cfg = tiny_config("simulation.num_cpus=1")
    bad = dataclasses.replace(cfg, strategy=dataclasses.replace(cfg.strategy, params={"no_such_param": 1}))
    with pytest.raises(ConfigError, match="no_such_param"):
        run_experiment(bad, tmp_path / "run", progress=False)
    assert not ray.is_initialized()
    assert not _ray_processes()
