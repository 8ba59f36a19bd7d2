"""Run an experiment on Flower's simulation engine (Ray) and write its results.

:func:`run_experiment` is what ``edgeupdate run`` calls. The ServerApp's main function does the
whole server side — wait for the virtual devices, learn which node is which device, run the strategy
for ``rounds`` rounds, write ``metrics.parquet/.csv``, ``summary.json`` and the plots — so that
``flwr run .`` (see :mod:`edgeupdate.app`) produces the same files as our CLI.
"""

from __future__ import annotations

import ctypes
import gc
import json
import logging
import os
import platform
import random
import shutil
import sys
import threading
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import flwr
import pandas as pd
import torch
from flwr.app import Context, MessageType
from flwr.clientapp import ClientApp
from flwr.serverapp import Grid, ServerApp

from edgeupdate import __version__
from edgeupdate.clients.gateway import make_client_app
from edgeupdate.clients.host import host_of
from edgeupdate import protocol as P
from edgeupdate.messages import read_replies, task_message
from edgeupdate.runtime import ExperimentRuntime, experiment_runtime
from edgeupdate.configs import ExperimentConfig, dump_config
from edgeupdate.seeding import derive_seed
from edgeupdate.simulation.checkpoint import CheckpointError, Checkpoints
from edgeupdate.simulation.metrics import MetricsCollector, RoundCallback
from edgeupdate.simulation.progress import RoundProgress
from edgeupdate.simulation.local_ray import LocalRay
from edgeupdate.simulation.ray_cluster import ray_init_args, ray_nodes_served, start_private_ray
from edgeupdate.strategies.attacks import ATTACKS
from edgeupdate.strategies.base import EdgeStrategy, PhaseProgress
from edgeupdate.strategies.exchange import exchange
from edgeupdate.strategies.resolve import StrategyChoice, resolve_strategy
from edgeupdate.strategies.saved_packages import PackageSaver


STORE_DIR = "store"  # under the run directory: the shared model store while the run lasts
NODES_SETTLED_S = 15.0  # fewer nodes than needed and none joined for this long: the run cannot start
NO_NODES_S = 120.0  # no node at all for this long (the Deployment Engine without SuperNodes): give up


class SimulationError(RuntimeError):
    """The simulation could not run to the end (a device failed, nodes never registered, ...)."""


def discover_devices(grid: Grid, runtime: ExperimentRuntime, timeout_s: float = 120.0,
                     restore: tuple[str, int] | None = None,
                     held: dict[int, tuple[int, str]] | None = None,
                     hosts: dict[int, str] | None = None) -> dict[int, int]:
    """Wait until every node registered, then ask each which devices it serves: device id → node id.

    The first reply includes building the node's runtime (loading the dataset, the model), as
    heavy as a round on a busy machine, so callers pass the round timeout. Too many or too few
    nodes, or two nodes claiming one device, fail at once with the counts. ``restore`` =
    (checkpoint folder, round) has every node restore its devices' state first; ``held``, when
    given, receives what each device then holds (version, hash); ``hosts``, device id → the Ray
    node id that answered for it (``""`` outside Ray).
    """
    expected = runtime.num_nodes
    deadline = time.monotonic() + timeout_s
    seen, since = -1, time.monotonic()
    while len(nodes := sorted(grid.get_node_ids())) < expected:
        if len(nodes) != seen:
            seen, since = len(nodes), time.monotonic()
        if not nodes and time.monotonic() - since > min(NO_NODES_S, timeout_s):
            raise SimulationError(f"no node registered within {min(NO_NODES_S, timeout_s):.0f} s; {expected} needed "
                                  f"(start one SuperNode per gateway: flower-supernode --node-config "
                                  f"'partition-id=N', N = 0..{expected - 1})")
        if time.monotonic() > deadline or (nodes and time.monotonic() - since > NODES_SETTLED_S):
            raise SimulationError(f"{len(nodes)} nodes registered, but {runtime.cfg.num_devices} devices at "
                                  f"{runtime.devices_per_node} per node need {expected} "
                                  f"(simulation.devices_per_node sets the group size)")
        time.sleep(0.2)
    if len(nodes) > expected:
        raise SimulationError(f"{len(nodes)} nodes registered, but {runtime.cfg.num_devices} devices at "
                              f"{runtime.devices_per_node} per node need {expected}")
    devices: dict[int, int] = {}
    common = {"checkpoint": restore[0], "restore_round": restore[1]} if restore else {}
    hello = [task_message(n, MessageType.TRAIN, 0, {}, common=common) for n in nodes]
    for reply in exchange(grid, hello, timeout_s):
        node = reply.metadata.src_node_id
        if reply.has_error():
            raise SimulationError(f"node {node} failed: {reply.error.reason}")
        for report in read_replies(reply):
            if report.device_id in devices:
                raise SimulationError(f"device {report.device_id} is served by two nodes ({devices[report.device_id]} "
                                      f"and {node}): give every node its own partition-id")
            devices[report.device_id] = node
            if held is not None:
                held[report.device_id] = (report.model_version, report.model_hash)
            if hosts is not None:
                hosts[report.device_id] = host_of(reply)
    missing = sorted(set(range(runtime.cfg.num_devices)) - set(devices))
    if missing:
        raise SimulationError(f"{len(devices)} of {runtime.cfg.num_devices} devices answered (missing e.g. "
                              f"device {missing[0]}; partition-ids must be 0..{expected - 1})")
    return devices


Draw = Callable[[Path, pd.DataFrame], None]  # (run directory, its metrics) → figures in that directory


def draw_figures(out_dir: Path, df: pd.DataFrame) -> None:
    """A run's figures (:func:`~edgeupdate.simulation.plots.plot_run`), drawn from its metrics."""
    from edgeupdate.simulation.plots import plot_run  # matplotlib: loaded once the rounds are over

    plot_run(out_dir, df)


class FiguresInBackground:
    """Draws a run's figures on a thread of its own, so that they are drawn while Flower's engine
    stops (its worker threads notice the end within their 1 s queue timeout) and Ray's processes
    exit, instead of after. :meth:`wait` waits for them; :meth:`raise_failure` raises what drawing
    raised."""

    def __init__(self) -> None:
        self._thread: threading.Thread | None = None
        self._error: BaseException | None = None

    def __call__(self, out_dir: Path, df: pd.DataFrame) -> None:
        def draw() -> None:
            try:
                draw_figures(out_dir, df)
            except BaseException as exc:  # noqa: BLE001 (raised again by raise_failure)
                self._error = exc

        self._thread = threading.Thread(target=draw, name="edgeupdate-figures", daemon=True)
        self._thread.start()

    def wait(self) -> None:
        if self._thread is not None:
            self._thread.join()
            self._thread = None

    def raise_failure(self) -> None:
        if self._error is not None:
            error, self._error = self._error, None
            raise error


def run_server(grid: Grid, runtime: ExperimentRuntime, choice: StrategyChoice, out_dir: Path,
               on_round: RoundCallback | None = None, resume: bool = False,
               on_phase: PhaseProgress | None = None, draw: Draw | None = draw_figures) -> dict[str, Any]:
    """The whole server side of a run of ``choice`` (built and checked once, before); returns the
    summary it wrote. A checkpoint is written at the end of every round; ``resume=True`` continues
    from the last complete one (from round 1 when there is none). The server trains with
    ``simulation.server_threads`` torch threads (0: the process's setting), restored afterwards.
    ``draw(out_dir, metrics)`` draws the figures once the results are written (``None``: none;
    :func:`run_experiment` draws them on a thread while the engine stops, :class:`FiguresInBackground`)."""
    threads, previous = runtime.cfg.simulation.server_threads, torch.get_num_threads()
    if threads:
        torch.set_num_threads(threads)
    try:
        return _serve(grid, runtime, choice, out_dir, on_round, resume, on_phase, draw)
    finally:
        torch.set_num_threads(previous)


def _serve(grid: Grid, runtime: ExperimentRuntime, choice: StrategyChoice, out_dir: Path,
           on_round: RoundCallback | None, resume: bool, on_phase: PhaseProgress | None,
           draw: Draw | None) -> dict[str, Any]:
    cfg = runtime.cfg
    random.seed(derive_seed(cfg.seed, "flower-sampling"))
    torch.manual_seed(derive_seed(cfg.seed, "server"))
    t0 = time.perf_counter()
    out_dir.mkdir(parents=True, exist_ok=True)
    checkpoints = Checkpoints(out_dir)
    store = out_dir / STORE_DIR
    done = checkpoints.latest_round() if resume else 0
    if not done:  # a fresh start: nothing of an earlier run in this directory may leak in
        checkpoints.clear()
        shutil.rmtree(store, ignore_errors=True)
    (out_dir / "config.toml").write_text(dump_config(cfg))
    held: dict[int, tuple[int, str]] = {}
    hosts: dict[int, str] = {}
    devices = discover_devices(grid, runtime, timeout_s=cfg.simulation.round_timeout_s,
                               restore=(checkpoints.nodes_dir, done) if done else None, held=held, hosts=hosts)
    collector = MetricsCollector(on_round=on_round)
    strategy = choice.cls(runtime, choice.params, collector, devices)
    if cfg.simulation.save_packages:
        strategy.saver = PackageSaver(out_dir, resume_after=done if done else None)
    earlier_wall_s = 0.0
    if done:
        restored = checkpoints.load(strategy)
        strategy, collector.chunks, earlier_wall_s = restored.strategy, restored.chunks, restored.wall_time_s
        del restored
        rebind_devices(strategy, devices, held)
    strategy.store_dir = str(store.resolve())
    strategy.checkpoint_dir = checkpoints.nodes_dir

    checkpoint_bytes: list[int] = []  # per round of this process: server file + node files

    def checkpoint(round_: int) -> None:
        server = checkpoints.save(round_, strategy, collector.chunks, earlier_wall_s + time.perf_counter() - t0)
        checkpoint_bytes.append(server + checkpoints.node_bytes(round_))

    strategy.run_rounds(grid, done + 1, cfg.rounds, cfg.simulation.round_timeout_s, after_round=checkpoint,
                        on_progress=on_phase)
    wall_s = earlier_wall_s + time.perf_counter() - t0
    version_log = strategy.version_log
    del strategy  # its data pools, model states and caches: the results below need none of them
    release_freed_memory()  # the node workers are still up: this keeps the run's peak lower
    df = collector.write(out_dir)
    pd.DataFrame(version_log).to_csv(out_dir / "versions.csv", index=False)
    summary = {
        "name": cfg.name, "strategy": cfg.strategy.name, "seed": cfg.seed, "rounds": cfg.rounds,
        "num_devices": cfg.num_devices, "nodes": runtime.num_nodes, "devices_per_node": runtime.devices_per_node,
        "wall_time_s": round(wall_s, 3),
        "final_mean_accuracy": float(df[df["round"] == cfg.rounds]["accuracy"].mean()),
        "mean_accuracy": float(df.groupby("round")["accuracy"].mean().mean()),
        "total_bytes_down": int(df["bytes_down"].sum()), "total_bytes_up": int(df["bytes_up"].sum()),
        "server_time_s": round(float(df.groupby("round")["server_time_s"].first().sum()), 3),
        "sim_time_s": float(df.groupby("round")["round_sim_time_s"].first().sum()),
        "status_counts": {str(k): int(v) for k, v in df["status"].value_counts().sort_index().items()},
        "attacks": attack_counts(df),
        "lost": lost_counts(df),
        "checkpoint_bytes_per_round": checkpoint_bytes,  # rounds this process ran (a resumed run: after the resume)
        "ray_nodes": ray_nodes_served(hosts),
        "versions": {"edgeupdate": __version__, "flwr": flwr.__version__, "torch": torch.__version__,
                     "python": platform.python_version()},
    }
    (out_dir / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    if draw is not None:
        draw(out_dir, df)
    checkpoints.clear()  # the run is complete: its results are written
    shutil.rmtree(store, ignore_errors=True)  # the weights the devices held; versions.csv names them
    return summary


def release_freed_memory() -> None:
    """Collect garbage and hand the freed heap back to the OS (glibc's ``malloc_trim``; elsewhere
    only the collection)."""
    gc.collect()
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        pass


def rebind_devices(strategy: EdgeStrategy, devices: dict[int, int], held: dict[int, tuple[int, str]]) -> None:
    """After a resume: the nodes have new ids, and every restored device must hold a state the
    checkpoint says it may hold (its known state, or one it was being sent when it was lost). The
    server learns no more than it knew: a lost device's state is learnt at its next report, as in a
    run that never stopped."""
    if set(devices) != set(strategy.views):
        raise CheckpointError(f"the checkpoint has {len(strategy.views)} devices, this run {len(devices)}")
    for dev, view in strategy.views.items():
        view.node_id = devices[dev]
        version, digest = held[dev]
        if digest not in (view.hash, *view.maybe):
            raise CheckpointError(f"device {dev} restored a state (version {version}, hash {digest[:16]}) the "
                                  f"checkpoint does not expect (version {view.version}, hash {view.hash[:16]})")


def attack_counts(df: pd.DataFrame) -> dict[str, dict[str, int]]:
    """Per attack kind (replay, forge): how many pushes an attacker replaced and how many of those
    the device rejected (the run fails on any other outcome, see ``EdgeStrategy._check_report``)."""
    attack = df["attack"] if "attack" in df else pd.Series("none", index=df.index)
    return {kind: {"attempts": int((attack == kind).sum()),
                   "rejected": int(((attack == kind) & (df["status"] == P.DeviceStatus.REJECTED)).sum())}
            for kind in ATTACKS}


def lost_counts(df: pd.DataFrame) -> dict[str, Any]:
    """Device-rounds without an answer (status or train_status ``lost``), and how often each reason came."""
    lost = (df["status"] == P.DeviceStatus.LOST) | (df.get("train_status", "") == P.DeviceStatus.LOST)
    reasons = df.loc[df["status"] == P.DeviceStatus.LOST, "reason"].value_counts()
    return {"device_rounds": int(lost.sum()), "reasons": {str(k): int(v) for k, v in reasons.head(5).items()}}


def make_server_app(runtime_for: Callable[[Context], ExperimentRuntime],
                    out_dir_for: Callable[[Context], Path], progress: bool = True,
                    choice: StrategyChoice | None = None, resume: bool = False,
                    draw: Draw | None = draw_figures) -> ServerApp:
    """A ServerApp running :func:`run_server`; the runtime and output dir come from the context, the
    strategy from ``choice`` (resolved from the runtime's config when not given)."""
    app = ServerApp()

    @app.main()
    def main(grid: Grid, context: Context) -> None:
        runtime = runtime_for(context)
        chosen = choice or resolve_strategy(runtime.cfg)
        again = resume or str(context.run_config.get("resume", "false")).lower() == "true"  # flwr run --run-config
        run_server(grid, runtime, chosen, out_dir_for(context), progress_printer(runtime.cfg) if progress else None,
                   resume=again, on_phase=RoundProgress(runtime.cfg.rounds) if progress else None, draw=draw)

    return app


def progress_printer(cfg: ExperimentConfig, stream=sys.stdout) -> RoundCallback:
    """A one-line-per-round progress display."""
    t0 = time.perf_counter()

    def show(round_: int, s: dict[str, float]) -> None:
        devices = max(s["devices"], 1.0)
        print(f"round {round_:>3}/{cfg.rounds}  acc {s['mean_accuracy']:.4f} (min {s['min_accuracy']:.4f})  "
              f"down {s['bytes_down'] / devices / 1000:9.1f} kB/device  up {s['bytes_up'] / devices / 1000:8.1f} kB/device  "
              f"applied {int(s['applied'])}/{int(s['devices'])}  server {s['server_time_s']:.1f} s  "
              f"sim {s['round_sim_time_s']:.4g} s  "
              f"elapsed {time.perf_counter() - t0:.1f} s", file=stream, flush=True)

    return show


def backend_config(cfg: ExperimentConfig, head_address: str | None = None) -> dict[str, Any]:
    """Ray settings: one CPU per device process (Ray's default of 2 serialises small machines), on a
    local Ray (``head_address``: the run's own lean head) or a running cluster
    (:func:`~edgeupdate.simulation.ray_cluster.ray_init_args`)."""
    sim = cfg.simulation
    return {
        "client_resources": {"num_cpus": sim.num_cpus_per_device, "num_gpus": 0.0},
        "init_args": {**ray_init_args(cfg, head_address), "include_dashboard": False,
                      "logging_level": logging.ERROR, "log_to_driver": False},
    }


def run_experiment(cfg: ExperimentConfig, out_dir: Path, *, choice: StrategyChoice | None = None,
                   data_dir: str | None = None, progress: bool = True, verbose: bool = False,
                   resume: bool = False, ray_head: LocalRay | None = None, plots: bool = True) -> dict[str, Any]:
    """Run ``cfg`` on Flower's simulation engine; write results into ``out_dir``; return the summary.
    ``resume=True`` continues the run in ``out_dir`` from its last checkpoint.

    ``choice`` is ``cfg``'s strategy, built and checked by :func:`resolve_strategy`; callers that
    resolved it already (``compare`` and ``sweep`` do, once per label) pass it, else it is resolved here.
    ``ray_head`` is the run's private Ray head if the caller started it already
    (:func:`~edgeupdate.simulation.ray_cluster.start_private_ray`, as the CLI does before it imports
    the rest); else one starts here, in the background, unless ``cfg`` attaches to a cluster. The
    head is stopped when the run ends, or fails. ``plots=False`` draws no figures."""
    head = ray_head or start_private_ray(cfg)
    figures = FiguresInBackground() if plots else None
    try:
        from flwr.simulation import run_simulation

        choice = choice or resolve_strategy(cfg)  # parameters against the whole config, once, before any output
        runtime = experiment_runtime(cfg, data_dir)  # fail fast on data and fleet problems (Ray is stopped)
        runtime.fleet  # noqa: B018 (builds and validates the fleet)
        runtime.signing_key()  # reads package.key_file, if any
        client_app: ClientApp = make_client_app(lambda _ctx: experiment_runtime(cfg, data_dir))
        server_app = make_server_app(lambda _ctx: runtime, lambda _ctx: out_dir, progress, choice, resume,
                                     draw=figures)
        if not verbose:  # Flower's run_simulation deprecation banner is a WARNING; errors still show
            logging.getLogger("flwr").setLevel(logging.ERROR)
        os.environ.setdefault("RAY_DEDUP_LOGS", "0")
        (out_dir / "summary.json").unlink(missing_ok=True)  # written again only when this run completes
        with warnings.catch_warnings():
            if not verbose:  # Ray's FutureWarning about accelerator variables (no accelerator is used)
                warnings.filterwarnings("ignore", category=FutureWarning, module=r"ray\.")
            head_address = head.address() if head is not None else None  # this process is then its driver
            run_simulation(server_app=server_app, client_app=client_app, num_supernodes=runtime.num_nodes,
                           backend_config=backend_config(cfg, head_address), verbose_logging=verbose)
    finally:
        if head is not None:
            head.stop()
        if figures is not None:
            figures.wait()
    summary_path = out_dir / "summary.json"
    if not summary_path.exists():
        raise SimulationError("the simulation ended without writing results (see the log above)")
    if figures is not None:
        figures.raise_failure()
    return json.loads(summary_path.read_text())
