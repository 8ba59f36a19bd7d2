"""FedAvg in edgeupdate next to Apple's pfl-research simulator (``pfl[pytorch]`` 0.6.0), same workload.

The workload (the defaults): FedAvg on MNIST, MLP 784-200-200-10, 100 devices × 300 training
images (IID), 5 rounds with every device in every round, 1 local epoch, batch 32, plain SGD
lr 0.05 (no momentum); the server averages the devices' models weighted by sample count. Sides:

* ``edgeupdate``: ``python -m edgeupdate.cli run CONFIG --quiet --no-plots --out DIR`` as a
  subprocess (the other sides draw no figures either; metrics and summary are written), CONFIG
  a TOML written from the arguments (``strategy.name = "fedavg"``, ``stream.initial_samples`` =
  devices × samples, ``stream.samples_per_round = 0``, ``[client]`` for local training). Its
  accuracy is the mean of the devices' accuracies (``summary.json``: ``final_mean_accuracy``).
* ``pfl``: ``benchmarks/pfl_fedavg.py`` in pfl's own virtualenv (it never imports edgeupdate):
  ``FederatedDataset.from_slices``, ``PyTorchModel``, ``FederatedAveraging``, ``SimulatedBackend``
  with ``WeightByDatapoints``, ``NNAlgorithmParams(central_num_iterations, train_cohort_size =
  devices)``, one thread.
* ``torch``: the same FedAvg as a bare PyTorch loop in one process (this file, ``--torch-worker``),
  the floor; it never imports edgeupdate either.

All three use the same images: this script builds edgeupdate's own data layout (seeded IID split
of the 60 000 training images; each device holds the first ``--samples-per-device`` of its share)
and hands the pfl and torch sides the devices' training indices and the devices' test pool (the
MNIST test set minus the ``dataset.validation_fraction`` = 30 % that edgeupdate's server keeps:
7 000 images, 70 per device with 100 devices, so the mean of device accuracies is the pool's
accuracy). Wall time is each subprocess's wall time, start-up, imports and data loading included;
``--repeats`` runs (sides interleaved) give median and range. All sides start from edgeupdate's
initial weights (``--own-init``: pfl and torch draw their own, seeded by ``--seed``); only the
local batch order differs (each side seeds its own shuffle; pfl does not shuffle local batches).

    python3 -m venv build/peers/pfl && build/peers/pfl/bin/pip install "pfl[pytorch]==0.6.0" "torch==2.13.0"
    EDGEUPDATE_DATA=path/to/data PYTHONPATH=. OMP_NUM_THREADS=1 .venv/bin/python benchmarks/fl_vs_pfl.py \
        [--repeats 3] [--rounds 5] [--devices 100] [--samples-per-device 300] [--pfl-python PATH] [--no-torch]
    # quick check:  ... benchmarks/fl_vs_pfl.py --repeats 1 --rounds 1 --devices 10 --samples-per-device 100

(the torch pin picks the local CPU wheel). The target from the issue: edgeupdate's wall time at
most 1.2 × pfl's, at final accuracy within ±0.5 percentage points; the last line says whether it holds.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
sys.path.insert(0, str(HERE))
from pfl_fedavg import MNIST_FILES, load_init, load_mnist, load_split, read_idx  # noqa: E402  (stdlib + numpy only)

DEFAULT_PFL = REPO / "build/peers/pfl/bin/python"
WALL_FACTOR, ACC_PP = 1.2, 0.5


class BenchError(Exception):
    """A one-line error for the user."""


@dataclass
class Side:
    """Measurements of one side over the repeats."""

    name: str
    walls: list[float] = field(default_factory=list)
    accs: list[float] = field(default_factory=list)
    detail: str = ""

    @property
    def wall(self) -> float:
        return statistics.median(self.walls)

    @property
    def acc(self) -> float:
        return statistics.median(self.accs)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--repeats", type=int, default=3, help="runs per side; the table shows medians")
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--devices", type=int, default=100)
    p.add_argument("--samples-per-device", type=int, default=300)
    p.add_argument("--epochs", type=int, default=1)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--lr", type=float, default=0.05)
    p.add_argument("--hidden", default="200,200", help="MLP hidden layer sizes")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--data-dir", type=Path, default=None, help="folder holding mnist/*.gz (default $EDGEUPDATE_DATA)")
    p.add_argument("--pfl-python", type=Path, default=Path(os.environ.get("PFL_PYTHON", DEFAULT_PFL)),
                   help="python of the pfl virtualenv (default $PFL_PYTHON or build/peers/pfl/bin/python)")
    p.add_argument("--no-torch", action="store_true", help="skip the bare PyTorch reference")
    p.add_argument("--own-init", dest="same_init", action="store_false",
                   help="pfl and torch initialise their models themselves (default: edgeupdate's initial weights)")
    p.add_argument("--json", type=Path, default=None, help="also write every measurement here")
    p.add_argument("--torch-worker", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--split", type=Path, default=None, help=argparse.SUPPRESS)
    return p.parse_args(argv)


# ------------------------------------------------------------------ inputs

def data_dir(args: argparse.Namespace) -> Path:
    """The folder holding ``mnist/`` with the four official files, or a one-line error."""
    root = args.data_dir or (Path(os.environ["EDGEUPDATE_DATA"]) if os.environ.get("EDGEUPDATE_DATA") else None)
    if root is None:
        raise BenchError("no MNIST data: pass --data-dir or set EDGEUPDATE_DATA to a folder holding mnist/*.gz")
    missing = [n for n in MNIST_FILES if not (root / "mnist" / n).is_file()]
    if missing:
        raise BenchError(f"MNIST files missing under {root / 'mnist'}: {', '.join(missing)}")
    return root


def check_pfl(python: Path) -> None:
    if not python.is_file():
        raise BenchError(f"pfl virtualenv not found ({python}); create it with: python3 -m venv build/peers/pfl && "
                         'build/peers/pfl/bin/pip install "pfl[pytorch]==0.6.0" "torch==2.13.0" (or pass --pfl-python)')


def write_split(args: argparse.Namespace, root: Path, toml: Path, path: Path) -> int:
    """edgeupdate's layout and initial model for this workload, for the other sides; returns the test size.

    ``train``: devices × samples indices into the training set, ``test``: the devices' test pool,
    ``init_0``, ``init_1``, …: edgeupdate's version-0 weights in parameter order (W₁, b₁, W₂, …).
    """
    import numpy as np

    from edgeupdate.configs import load_config
    from edgeupdate.datasets.stream import make_layout
    from edgeupdate.runtime import config_model
    from edgeupdate.seeding import derive_seed

    labels = read_idx(root / "mnist" / MNIST_FILES[1], 8)
    test_size = len(read_idx(root / "mnist" / MNIST_FILES[3], 8))
    cfg = load_config(toml)
    layout = make_layout(labels, test_size, num_devices=cfg.num_devices, rounds=cfg.rounds,
                         initial_samples=cfg.stream.initial_samples, samples_per_round=cfg.stream.samples_per_round,
                         partition=cfg.partition.method, seed=cfg.seed,
                         validation_fraction=cfg.dataset.validation_fraction)
    train = [layout.collected_indices(d, cfg.rounds) for d in range(cfg.num_devices)]
    if len({len(t) for t in train}) != 1:
        raise BenchError(f"{args.devices} devices × {args.samples_per_device} samples do not split evenly")
    init = {}
    if args.same_init:  # = ExperimentRuntime.initial_state, without loading the dataset
        model = config_model(cfg, derive_seed(cfg.seed, "init", 0))
        init = {f"init_{i}": p.detach().numpy() for i, p in enumerate(model.parameters())}
    np.savez(path, train=np.stack(train), test=layout.test_pool, **init)
    return len(layout.test_pool)


def edgeupdate_config(args: argparse.Namespace) -> str:
    """The TOML of the workload for ``edgeupdate run``."""
    hidden = ", ".join(h for h in args.hidden.split(",") if h)
    return f"""name = "fl-vs-pfl"
seed = {args.seed}
rounds = {args.rounds}
num_devices = {args.devices}

[dataset]
name = "mnist"
validation_fraction = 0.3

[partition]
method = "iid"

[stream]
initial_samples = {args.devices * args.samples_per_device}
samples_per_round = 0

[model]
name = "mlp"
hidden = [{hidden}]

[client]
epochs = {args.epochs}
batch_size = {args.batch_size}
lr = {args.lr}
optimizer = "sgd"
momentum = 0.0
fraction_train = 1.0

[strategy]
name = "fedavg"

[simulation]
torch_threads = 1
"""


# ------------------------------------------------------------------ sides

def timed(cmd: list[str], env: dict[str, str], what: str) -> tuple[float, str]:
    """(wall seconds, stdout) of ``cmd``; a failure becomes a one-line error with its last stderr line."""
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, env=env, cwd=REPO, capture_output=True, text=True)
    wall = time.perf_counter() - t0
    if proc.returncode != 0:
        last = (proc.stderr.strip() or proc.stdout.strip() or "no output").splitlines()[-1]
        raise BenchError(f"{what} failed (exit {proc.returncode}): {last}")
    return wall, proc.stdout


def worker_json(stdout: str, what: str) -> dict:
    for line in reversed(stdout.strip().splitlines()):
        if line.startswith("{"):
            return json.loads(line)
    raise BenchError(f"{what} printed no result line")


def run_edgeupdate(args: argparse.Namespace, env: dict[str, str], toml: Path, tmp: Path,
                   i: int) -> tuple[float, float, str]:
    out = tmp / f"edgeupdate-{i}"
    wall, _ = timed([sys.executable, "-m", "edgeupdate.cli", "run", str(toml), "--quiet", "--no-plots",
                     "--out", str(out)], env, "edgeupdate run")
    summary = json.loads((out / "summary.json").read_text())
    per_round: dict[int, list[float]] = {}
    with (out / "metrics.csv").open() as f:
        for row in csv.DictReader(f):
            if row.get("accuracy"):
                per_round.setdefault(int(row["round"]), []).append(float(row["accuracy"]))
    accs = " ".join(f"{sum(v) / len(v):.4f}" for _, v in sorted(per_round.items()))
    detail = f"in-process wall {summary['wall_time_s']:.1f} s; mean device accuracy per round {accs}"
    return wall, float(summary["final_mean_accuracy"]), detail


def run_worker(cmd: list[str], env: dict[str, str], what: str) -> tuple[float, float, str]:
    wall, stdout = timed(cmd, env, what)
    res = worker_json(stdout, what)
    accs = " ".join(f"{r['accuracy']:.4f}" for r in res["rounds"])
    detail = (f"imports {res['import_s']:.1f} s, data {res['data_s']:.1f} s, rounds {res['train_s']:.1f} s; "
              f"accuracy per round {accs}")
    return wall, float(res["accuracy"]), detail


def worker_args(args: argparse.Namespace, root: Path, split: Path) -> list[str]:
    return ["--data-dir", str(root), "--split", str(split), "--rounds", str(args.rounds),
            "--epochs", str(args.epochs), "--batch-size", str(args.batch_size), "--lr", str(args.lr),
            "--hidden", args.hidden, "--seed", str(args.seed)]


def torch_worker(args: argparse.Namespace) -> int:
    """The bare PyTorch FedAvg (no edgeupdate, no pfl); prints one JSON line like ``pfl_fedavg.py``."""
    t0 = time.perf_counter()
    import torch
    import torch.nn.functional as F

    torch.set_num_threads(1)
    torch.manual_seed(args.seed)
    t_import = time.perf_counter()
    xtr, ytr, xte, yte = load_mnist(args.data_dir / "mnist")
    train_idx, test_idx = load_split(args.split)
    users = [(torch.from_numpy(xtr[ix]), torch.from_numpy(ytr[ix])) for ix in train_idx]
    x_test, y_test = torch.from_numpy(xte[test_idx]), torch.from_numpy(yte[test_idx])
    t_data = time.perf_counter()

    def mlp() -> torch.nn.Module:
        layers: list[torch.nn.Module] = []
        width = 28 * 28
        for units in (int(h) for h in args.hidden.split(",") if h):
            layers += [torch.nn.Linear(width, units), torch.nn.ReLU()]
            width = units
        return torch.nn.Sequential(*layers, torch.nn.Linear(width, 10))

    global_model, local = mlp(), mlp()
    load_init(global_model, args.split)
    gen = torch.Generator().manual_seed(args.seed)
    rounds: list[dict[str, float]] = []
    last = time.perf_counter()
    for r in range(args.rounds):
        total = {k: torch.zeros_like(v) for k, v in global_model.state_dict().items()}
        weight = 0
        for x, y in users:
            local.load_state_dict(global_model.state_dict())
            opt = torch.optim.SGD(local.parameters(), lr=args.lr)
            for _ in range(args.epochs):
                order = torch.randperm(len(y), generator=gen)
                for s in range(0, len(y), args.batch_size):
                    idx = order[s:s + args.batch_size]
                    opt.zero_grad(set_to_none=True)
                    F.cross_entropy(local(x[idx]), y[idx]).backward()
                    opt.step()
            with torch.no_grad():
                for k, v in local.state_dict().items():
                    total[k].add_(v, alpha=len(y))
            weight += len(y)
        global_model.load_state_dict({k: v / weight for k, v in total.items()})
        with torch.no_grad():
            acc = float((global_model(x_test).argmax(1) == y_test).float().mean())
        now = time.perf_counter()
        rounds.append({"round": r + 1, "accuracy": acc, "seconds": now - last})
        last = now
    print(json.dumps({"accuracy": rounds[-1]["accuracy"], "rounds": rounds, "import_s": t_import - t0,
                      "data_s": t_data - t_import, "train_s": time.perf_counter() - t_data,
                      "test_images": int(len(test_idx)), "devices": len(users)}))
    return 0


# ------------------------------------------------------------------ report

def report(sides: list[Side], args: argparse.Namespace, test_images: int) -> str:
    by = {s.name: s for s in sides}
    pfl = by["pfl"]
    lines = [f"FedAvg, MNIST, MLP 784-{args.hidden.replace(',', '-')}-10, {args.devices} devices × "
             f"{args.samples_per_device} images (IID), {args.rounds} rounds, {args.epochs} local epoch(s), "
             f"batch {args.batch_size}, SGD lr {args.lr}; accuracy on the devices' test pool "
             f"({test_images} MNIST test images: the test set minus edgeupdate's 30 % server validation split); "
             f"{'same initial weights on all sides' if args.same_init else 'each side its own initial weights'}; "
             f"{args.repeats} repeat(s), wall = subprocess wall incl. start-up", "",
             "| side | wall s (median, min–max) | final accuracy | ratio to pfl |", "|---|---|---|---|"]
    for s in sides:
        lines.append(f"| {s.name} | {s.wall:.1f} ({min(s.walls):.1f}–{max(s.walls):.1f}) | {100 * s.acc:.2f} % | "
                     f"{s.wall / pfl.wall:.2f}× |")
    lines.append("")
    lines += [f"- {s.name}: {s.detail}" for s in sides]
    eu = by["edgeupdate"]
    ratio, diff = eu.wall / pfl.wall, 100 * (eu.acc - pfl.acc)
    holds = ratio <= WALL_FACTOR and abs(diff) <= ACC_PP
    lines += ["", f"Target (issue): edgeupdate wall ≤ {WALL_FACTOR} × pfl wall at accuracy within ±{ACC_PP} pp: "
                  f"{'HOLDS' if holds else 'does NOT hold'} (wall {ratio:.2f} × pfl, accuracy {diff:+.2f} pp)"]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.torch_worker:
        return torch_worker(args)
    try:
        if args.repeats < 1 or args.rounds < 1 or args.devices < 1 or args.samples_per_device < 1:
            raise BenchError("--repeats, --rounds, --devices and --samples-per-device must be >= 1")
        root = data_dir(args)
        check_pfl(args.pfl_python)
        env = {**os.environ, "EDGEUPDATE_DATA": str(root), "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "1"),
               "PYTHONPATH": os.pathsep.join(p for p in (str(REPO), os.environ.get("PYTHONPATH", "")) if p)}
        with tempfile.TemporaryDirectory(prefix="fl-vs-pfl-") as name:
            tmp = Path(name)
            split, toml = tmp / "split.npz", tmp / "config.toml"
            toml.write_text(edgeupdate_config(args))
            test_images = write_split(args, root, toml, split)
            sides = [Side("edgeupdate"), Side("pfl")] + ([] if args.no_torch else [Side("torch")])
            wargs = worker_args(args, root, split)
            for i in range(args.repeats):
                for side in sides:
                    if side.name == "edgeupdate":
                        wall, acc, side.detail = run_edgeupdate(args, env, toml, tmp, i)
                    elif side.name == "pfl":
                        wall, acc, side.detail = run_worker([str(args.pfl_python), str(HERE / "pfl_fedavg.py"), *wargs],
                                                            env, "pfl side")
                    else:
                        wall, acc, side.detail = run_worker([sys.executable, str(Path(__file__).resolve()),
                                                             "--torch-worker", *wargs], env, "torch side")
                    side.walls.append(wall)
                    side.accs.append(acc)
                    print(f"repeat {i + 1}/{args.repeats} {side.name}: {wall:.1f} s, accuracy {acc:.4f}",
                          file=sys.stderr, flush=True)
    except BenchError as err:
        print(f"fl_vs_pfl: {err}", file=sys.stderr)
        return 2 if "failed" not in str(err) else 1
    print(report(sides, args, test_images))
    if args.json is not None:
        args.json.write_text(json.dumps({"args": {k: str(v) for k, v in vars(args).items()},
                                         "sides": [vars(s) for s in sides]}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
