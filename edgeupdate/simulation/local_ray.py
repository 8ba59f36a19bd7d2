"""A lean private Ray head on this machine, with warm workers, for runs that do not attach to a cluster.

``ray.init(address="local")``, which Flower's simulation engine calls, starts an autoscaler monitor
and a log monitor, and connects the driver with a runtime env (Flower's ``PYTHONPATH``). Ray then
starts a fresh worker process for each of Flower's actors once the engine asks for them, and only
then does that worker import torch and Flower (about 4 s of CPU each on 2 cores), while the
prestarted idle workers, which lack the runtime env, are killed unused. A simulation on one machine
needs none of it: nothing autoscales, and the node workers' logs are not forwarded.

:class:`LocalRay` starts what ``ray start --head --no-monitor --include-log-monitor=false`` starts,
less the API server (Ray's job and state REST APIs), from this process (Ray's own ``Node``, the
class ``ray start`` and ``ray.init`` use). One worker per CPU starts with the raylet and imports
:data:`WORKER_MODULES` (:mod:`edgeupdate.simulation.node_worker`) before it takes work (Ray's
``enable_worker_prestart`` and ``preload_python_modules``). The driver then connects without a
runtime env, so Flower's actors land on those warm workers; they find this process's ``sys.path``
through ``PYTHONPATH``, set where the head starts (what Flower's runtime env did). Flower sees Ray
initialised and uses it as is; on exit every process the head started is stopped by PID. Linux
also ties them to the thread that started them (``PR_SET_PDEATHSIG``), so a crashed run leaves none
behind.
"""

from __future__ import annotations

import logging
import os
import sys
import threading
import warnings
from collections.abc import Sequence
from types import TracebackType
from typing import Any

log = logging.getLogger(__name__)

# Ray's ray.init tip about accelerator variables (no accelerator is used; Ray's behaviour is kept)
warnings.filterwarnings("ignore", message=r"Tip: In future versions of Ray", category=FutureWarning)

# What a node worker loads before it serves devices (torch, Flower's actor class, the device side of
# edgeupdate; no Arrow serializers): see edgeupdate.simulation.node_worker.
WORKER_MODULES: tuple[str, ...] = ("edgeupdate.simulation.node_worker",)


class LocalRay:
    """A private Ray head for one run, started from a keeper thread, this process its driver.

    ``LocalRay(n).start_in_background()`` returns at once: the caller goes on importing and loading
    while Ray comes up; :meth:`address` waits for it, :meth:`stop` ends it. ``with LocalRay(n) as
    address:`` does all three. ``preload`` names the modules each prestarted worker imports before
    it takes work. Ray's daemons die with the thread that started them, so the keeper thread lives
    until :meth:`stop`; it is a daemon thread, and the daemons also end with the process."""

    def __init__(self, num_cpus: int, preload: Sequence[str] = WORKER_MODULES) -> None:
        if num_cpus < 1:
            raise ValueError(f"num_cpus must be at least 1, got {num_cpus}")
        self.num_cpus = num_cpus
        self.preload = tuple(preload)
        self._node: Any = None
        self._address: str | None = None
        self._error: BaseException | None = None
        self._ready = threading.Event()
        self._release = threading.Event()
        self._thread: threading.Thread | None = None

    def system_config(self) -> dict[str, Any]:
        """Ray system-config keys (``ray_config_def.h``) for the head: ``num_cpus`` workers started
        with the raylet, importing ``preload``; none started again for the first driver."""
        config: dict[str, Any] = {"enable_worker_prestart": True, "prestart_worker_first_driver": False}
        if self.preload:
            config["preload_python_modules"] = list(self.preload)
        return config

    def start_in_background(self) -> LocalRay:
        """Start the head from a keeper thread; return at once."""
        if self._thread is None:
            self._thread = threading.Thread(target=self._keep, name="edgeupdate-ray-head", daemon=True)
            self._thread.start()
        return self

    def address(self) -> str:
        """The head's GCS address, once it is up and this process is connected (raises what the
        start raised)."""
        self.start_in_background()
        self._ready.wait()
        if self._error is not None:
            raise self._error
        assert self._address is not None
        return self._address

    def stop(self) -> None:
        """Disconnect the driver and stop every process the head started (the raylet first, its
        workers with it); wait until they are gone. Safe to call twice."""
        self._release.set()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join()

    def __enter__(self) -> str:
        return self.address()

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()

    def _keep(self) -> None:
        try:
            self._address = self._start()
        except BaseException as exc:  # noqa: BLE001 (raised again in the caller by address())
            self._error = exc
            self._ready.set()
            self._teardown()
            return
        self._ready.set()
        self._release.wait()
        self._teardown()

    def _start(self) -> str:
        import ray
        import ray._private.parameter

        params = ray._private.parameter.RayParams(
            num_cpus=self.num_cpus, num_gpus=0, include_dashboard=False, no_monitor=True,
            include_log_monitor=False, _system_config=self.system_config())
        saved = os.environ.get("PYTHONPATH")
        os.environ["PYTHONPATH"] = os.pathsep.join([*sys.path, *([saved] if saved else [])])
        try:  # the raylet, and every worker it starts, inherit this environment
            self._node = _head_node_class()(params, head=True, shutdown_at_exit=False, spawn_reaper=True,
                                            ray_init_cluster=True)
        finally:
            if saved is None:
                os.environ.pop("PYTHONPATH", None)
            else:
                os.environ["PYTHONPATH"] = saved
        address = str(self._node.address)
        ray.init(address=address, logging_level=logging.ERROR, log_to_driver=False)
        return address

    def _teardown(self) -> None:
        node, self._node = self._node, None
        if node is None:
            return
        import ray

        try:
            if ray.is_initialized():
                ray.shutdown()
            node.kill_all_processes(check_alive=False, allow_graceful=True, wait=True)
        except Exception as exc:  # noqa: BLE001 (shutdown must not hide the run's own result)
            log.warning("stopping the local Ray head: %s", exc)


def _head_node_class() -> type:
    """Ray's ``Node`` without the API server: with ``include_dashboard=False`` Ray still starts a
    dashboard process for its job and state REST APIs (``ray job``, ``ray list``), which a private
    simulation never calls, and waits for it to come up before the raylet starts."""
    import ray._private.node

    class HeadWithoutApiServer(ray._private.node.Node):
        def start_api_server(self, *, include_dashboard: bool | None, raise_on_failure: bool) -> None:
            self._webui_url = None

    return HeadWithoutApiServer
