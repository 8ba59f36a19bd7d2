"""Server wall time of one DPU-family round vs one full-update round on the same data.

Both sides start from the same deployed MLP 784-512-512-10, train on the same D (MNIST, or random
data of MNIST shape when the files are absent — wall time does not depend on pixel values) with
the same epochs, batch and validation-based model selection. A full-update round is one training
run; a DPU round is step one (full training while recording the local contribution), scoring +
top-k + rewinding, and step two (sparse fine-tuning). Medians over ``--repeats`` after one
untimed warm-up round. Wall time is what the issue asks for; the process CPU seconds are printed
beside it because on a shared machine wall time also measures the other jobs (check ``loadavg``).

    PYTHONPATH=. python benchmarks/dpu_server_cost.py [--samples 2000] [--epochs 4] [--k 0.005]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from dpu_single_round import DEFAULT_DATA_DIR, load_mnist  # noqa: E402

from edgeupdate.algorithms.partial import PartialUpdateConfig, partial_update  # noqa: E402
from edgeupdate.models.zoo import build_model, count_parameters  # noqa: E402
from edgeupdate.seeding import derive_seed, torch_generator  # noqa: E402
from edgeupdate.training import TensorData, TrainConfig, train  # noqa: E402


def _data(args: argparse.Namespace) -> tuple[TensorData, TensorData, str]:
    loaded = load_mnist(args.data_dir)
    if loaded is not None:
        train_set, test_set = loaded
        return train_set.subset(slice(0, args.samples)), test_set.subset(slice(0, 3000)), "MNIST"
    g = torch_generator(0, "server-cost", "synthetic")
    x = torch.randn(args.samples + 3000, 1, 28, 28, generator=g)
    y = torch.randint(0, 10, (args.samples + 3000,), generator=g)
    return TensorData(x[:args.samples], y[:args.samples]), TensorData(x[args.samples:], y[args.samples:]), \
        "synthetic (MNIST not found)"


def run(args: argparse.Namespace) -> int:
    torch.set_num_threads(args.threads)
    data, validation, source = _data(args)
    cfg = TrainConfig(epochs=args.epochs, batch_size=args.batch_size, lr=args.lr, lr_schedule="step",
                      lr_step_epochs=max(1, args.epochs // 3), device=args.device)
    model = build_model("mlp", (1, 28, 28), 10, seed=1)
    train(model, data.subset(slice(0, len(data) // 2)), cfg, seed=2)  # the deployed model
    base = {n: t.detach().clone() for n, t in model.state_dict().items()}

    times: dict[str, list[float]] = {"full": []}
    cpu: dict[str, list[float]] = {"full": []}
    parts: dict[str, list[tuple[float, float, float]]] = {}
    for rep in range(-1, args.repeats):  # rep −1: warm-up, not recorded
        model.load_state_dict(base)
        t, c = time.perf_counter(), time.process_time()
        train(model, data, cfg, derive_seed(rep, "server-cost", "full"), validation=validation)
        if rep >= 0:
            times["full"].append(time.perf_counter() - t)
            cpu["full"].append(time.process_time() - c)
        for selector in args.selectors.split(","):
            pcfg = PartialUpdateConfig(k=args.k, selector=selector)
            t, c = time.perf_counter(), time.process_time()
            result = partial_update(model, base, data, cfg, pcfg, derive_seed(rep, "server-cost", "dpu"),
                                    validation=validation)
            if rep < 0:
                continue
            times.setdefault(selector, []).append(time.perf_counter() - t)
            cpu.setdefault(selector, []).append(time.process_time() - c)
            i = result.info
            parts.setdefault(selector, []).append((i.step1_s, i.select_s, i.step2_s))

    full_s = statistics.median(times["full"])
    full_cpu = statistics.median(cpu["full"])
    names = {"full": "full update", "combined": "DPU", "global": "GCPU", "local": "LCPU", "random": "RPU"}
    print(f"server wall time per round: MLP 784-512-512-10 ({count_parameters(model)} params), "
          f"{len(data)} samples of {source}, {args.epochs} epochs per training, batch {args.batch_size}, "
          f"k = {args.k:g}, median of {args.repeats}, {torch.get_num_threads()} thread(s), device {args.device}, "
          f"load average {os.getloadavg()[0]:.1f}")
    print(f"{'method':<12} {'round_s':>9} {'ratio':>7} {'cpu_s':>8} {'cpu_ratio':>9}   "
          f"{'step1_s':>8} {'select_s':>9} {'step2_s':>8}")
    print(f"{names['full']:<12} {full_s:9.2f} {1.0:7.2f} {full_cpu:8.2f} {1.0:9.2f}")
    for selector, values in times.items():
        if selector == "full":
            continue
        med, med_cpu = statistics.median(values), statistics.median(cpu[selector])
        s1, sel, s2 = (statistics.median(p[j] for p in parts[selector]) for j in range(3))
        print(f"{names.get(selector, selector):<12} {med:9.2f} {med / full_s:7.2f} {med_cpu:8.2f} "
              f"{med_cpu / full_cpu:9.2f}   {s1:8.2f} {sel:9.3f} {s2:8.2f}")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data-dir", default=DEFAULT_DATA_DIR)
    p.add_argument("--samples", type=int, default=2000)
    p.add_argument("--epochs", type=int, default=3)
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--lr", type=float, default=5e-3)
    p.add_argument("--k", type=float, default=0.005)
    p.add_argument("--selectors", default="combined,global,random")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--device", default="cpu")
    args = p.parse_args(argv)
    if args.samples < 2 or args.repeats < 1 or args.epochs < 1:
        p.error("--samples must be ≥ 2, --repeats and --epochs ≥ 1")
    return run(args)


if __name__ == "__main__":
    raise SystemExit(main())
