"""How edgeupdate scales with the fleet, next to Flower's own floor measured in the same run.

    EDGEUPDATE_DATA=path/to/data python benchmarks/fleet_scale.py                  # 100, 1,000, 10,000 devices
    EDGEUPDATE_DATA=path/to/data python benchmarks/fleet_scale.py --sizes 1000 --rounds 3 --floor per-device
    EDGEUPDATE_DATA=path/to/data python benchmarks/fleet_scale.py --sizes 100000 --rounds 3

Each row runs ``configs/scale-mnist.toml`` (DPU k = 0.05, MLP 784-200-200-10 on MNIST, D¹ = 2,000,
δD = 1,000 uploaded by the devices, 50 test images per device) at one fleet size, as a subprocess:
wall seconds including start-up, seconds per device-round, and the peak resident memory of the
run's whole process tree (the CLI, Ray's raylet and GCS, the node workers), sampled every 0.2 s
(PSS every 1 s), summed as RSS (shared library pages counted once per process) and as PSS
(counted once). The node workers train nothing in this run and keep one torch thread each; the
server retrains with ``--server-threads`` (default one per core) while they wait.
Next to it, Flower's no-op floor: a ServerApp that sends one TRAIN and one EVALUATE message per
node per round to a ClientApp that only replies, on the same simulation engine and settings (the
same lean private Ray head, its workers warm with Flower's actor module), with
as many nodes as the run used (``--floor nodes``, default) or one node per device (``--floor
per-device``: what one device per node costs in Flower itself). Prints a markdown table.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import psutil

REPO = Path(__file__).resolve().parent.parent
CONFIG = REPO / "configs" / "scale-mnist.toml"


def measure(cmd: list[str], env: dict[str, str] | None = None) -> tuple[float, float, float]:
    """Wall seconds, peak summed RSS (MB) and peak summed PSS (MB) of ``cmd`` and all its descendants.

    RSS counts a shared library's pages in every process that maps it (libtorch, in the CLI and in
    every node worker); PSS splits shared pages between the processes that share them, so the PSS
    sum is the memory the run really occupies."""
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    peak = peak_pss = 0.0
    root = psutil.Process(proc.pid)
    done = threading.Event()

    def sample() -> None:
        nonlocal peak, peak_pss
        tick = 0
        while not done.is_set():
            with_pss = tick % 5 == 0  # PSS reads /proc/<pid>/smaps_rollup: once a second is enough
            tick += 1
            try:
                procs = [root, *root.children(recursive=True)]
                rss = pss = 0
                for p in procs:
                    try:
                        if with_pss:
                            info = p.memory_full_info()
                            rss, pss = rss + info.rss, pss + getattr(info, "pss", info.rss)
                        else:
                            rss += p.memory_info().rss
                    except psutil.Error:
                        pass
                peak = max(peak, rss / 1e6)
                if with_pss:
                    peak_pss = max(peak_pss, pss / 1e6)
            except psutil.Error:
                pass
            done.wait(0.2)

    watcher = threading.Thread(target=sample, daemon=True)
    watcher.start()
    _, err = proc.communicate()
    done.set()
    watcher.join()
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(cmd[:4])} ... failed ({proc.returncode}): {err.strip().splitlines()[-1:]}")
    return time.perf_counter() - t0, peak, peak_pss


def noop_floor(nodes: int, rounds: int) -> None:
    """Flower alone: one TRAIN and one EVALUATE message per node per round, replies carry nothing."""
    import logging

    from flwr.app import ConfigRecord, Context, Message, MessageType, RecordDict
    from flwr.clientapp import ClientApp
    from flwr.serverapp import Grid, ServerApp
    from flwr.simulation import run_simulation

    client = ClientApp()

    @client.train()
    def train(msg: Message, _context: Context) -> Message:
        return Message(RecordDict({"reply": ConfigRecord({"ok": 1})}), reply_to=msg)

    @client.evaluate()
    def evaluate(msg: Message, _context: Context) -> Message:
        return Message(RecordDict({"reply": ConfigRecord({"ok": 1})}), reply_to=msg)

    server = ServerApp()

    @server.main()
    def main(grid: Grid, _context: Context) -> None:
        while len(grid.get_node_ids()) < nodes:
            time.sleep(0.2)
        ids = list(grid.get_node_ids())
        for r in range(rounds):
            for kind in (MessageType.TRAIN, MessageType.EVALUATE):
                msgs = [Message(RecordDict({"task": ConfigRecord({"round": r})}), dst_node_id=n, message_type=kind)
                        for n in ids]
                replies = list(grid.send_and_receive(msgs, timeout=3600))
                assert len(replies) == nodes and not any(m.has_error() for m in replies)

    logging.getLogger("flwr").setLevel(logging.WARNING)
    # the same Ray as edgeupdate's runs: its lean private head, workers warm with Flower's actor module
    from edgeupdate.simulation.local_ray import LocalRay

    with LocalRay(os.cpu_count() or 1, preload=("flwr.simulation.ray_transport.ray_actor",)):
        run_simulation(server_app=server, client_app=client, num_supernodes=nodes,
                       backend_config={"client_resources": {"num_cpus": 1, "num_gpus": 0.0}})


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", default="100,1000,10000", help="comma-separated fleet sizes")
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--floor", choices=("nodes", "per-device", "none"), default="nodes")
    parser.add_argument("--server-threads", type=int, default=os.cpu_count() or 1,
                        help="simulation.server_threads: the server retrains while the node workers wait "
                             "(default: one per core; node workers keep simulation.torch_threads = 1)")
    parser.add_argument("--noop", nargs=2, type=int, metavar=("NODES", "ROUNDS"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    sys.path.insert(0, str(REPO))
    if args.noop:
        noop_floor(*args.noop)
        return
    from edgeupdate.fleet.gateways import devices_per_node

    env = {**os.environ, "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "1")}
    rows = ["| devices | nodes | rounds | wall s | s per device-round | peak RSS MB | peak PSS MB | Flower no-op floor s "
            "(nodes) | floor peak RSS MB | wall / floor |", "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for size in (int(s) for s in args.sizes.split(",")):
        nodes = -(-size // devices_per_node(size))
        with tempfile.TemporaryDirectory() as tmp:
            wall, peak, pss = measure([sys.executable, "-m", "edgeupdate.cli", "run", str(CONFIG), "--quiet",
                                  "--set", f"num_devices={size}", "--set", f"rounds={args.rounds}",
                                  "--set", f"simulation.server_threads={args.server_threads}",
                                  "--out", str(Path(tmp) / "run")], env)
            summary = json.loads((Path(tmp) / "run" / "summary.json").read_text())
        floor_nodes = size if args.floor == "per-device" else nodes
        if args.floor == "none":
            floor, floor_peak, ratio = float("nan"), float("nan"), float("nan")
        else:
            floor, floor_peak, _ = measure([sys.executable, __file__, "--noop", str(floor_nodes), str(args.rounds)], env)
            ratio = wall / floor
        rows.append(f"| {size:,} | {summary['nodes']} | {args.rounds} | {wall:.1f} | {wall / (size * args.rounds):.2e} "
                    f"| {peak:,.0f} | {pss:,.0f} | {floor:.1f} ({floor_nodes:,}) | {floor_peak:,.0f} | {ratio:.2f} |")
        print(rows[-1], file=sys.stderr, flush=True)
    print("\n".join(rows))


if __name__ == "__main__":
    main()
