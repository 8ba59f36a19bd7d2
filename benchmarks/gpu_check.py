"""The CUDA path: server retraining on a GPU, packages a CPU-only device applies bit for bit.

Devices never have a GPU here, but the retraining server may (``training.device = "auto"`` picks
CUDA when present). This script checks, side by side on one machine, that

* ``resolve_device("auto")`` picks the GPU and training runs there;
* a full retraining, a DPU round (Algorithm 5.2) and a KA refinement (Algorithm 1) on the GPU give
  packages that a CPU device applies to exactly the server's state (target hash verified), and
* how long each takes on the CPU and on the GPU (wall seconds, ratio).

    PYTHONPATH=. python benchmarks/gpu_check.py [--data-dir DIR] [--samples 10000] [--epochs 3]

MNIST is read from ``<data-dir>/mnist`` when present (else random data of MNIST's shape).
Prints a markdown table; exits non-zero if any package fails to reproduce the server's state.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import torch

from edgeupdate.algorithms.factorized import CompactConfig, build_package, compact_refine
from edgeupdate.algorithms.partial import PartialUpdateConfig, partial_update
from edgeupdate.datasets import load_dataset
from edgeupdate.datasets.paths import resolve_data_dir
from edgeupdate.models.zoo import build_model
from edgeupdate.seeding import torch_generator
from edgeupdate.training import TensorData, TrainConfig, evaluate, resolve_device, train
from edgeupdate.updates import UpdatePackage, dense_package, sparse_package, state_hash

SHAPE = (1, 28, 28)
DEFAULT_DATA_DIR = str(resolve_data_dir())  # $EDGEUPDATE_DATA, else the user cache


def _data(data_dir: str, samples: int) -> tuple[TensorData, TensorData, str]:
    if (Path(data_dir) / "mnist" / "train-images-idx3-ubyte.gz").exists():
        ds = load_dataset("mnist", data_dir)
        return ds.train.subset(slice(0, samples)), ds.test.subset(slice(0, 2000)), "MNIST"
    g = torch_generator(0, "gpu-check")
    return (TensorData(torch.randn(samples, *SHAPE, generator=g), torch.randint(0, 10, (samples,), generator=g)),
            TensorData(torch.randn(2000, *SHAPE, generator=g), torch.randint(0, 10, (2000,), generator=g)),
            "random data of MNIST shape")


def _device_applies(package: UpdatePackage, base: dict[str, torch.Tensor]) -> bool:
    """A CPU device decodes and applies the encoded package; apply() checks the target hash."""
    cpu_base = {k: v.detach().cpu().clone() for k, v in base.items()}
    state = UpdatePackage.decode(package.encode()).apply(cpu_base)
    return state_hash(state) == package.header.target_hash


def _methods(train_set: TensorData, cfg: TrainConfig, base: dict[str, torch.Tensor]
             ) -> dict[str, Callable[[], tuple[UpdatePackage, dict[str, torch.Tensor]]]]:
    def full():
        model = build_model("mlp", SHAPE, 10, seed=0)
        model.load_state_dict(base)
        train(model, train_set, cfg, seed=1)
        target = {k: v.detach().cpu() for k, v in model.state_dict().items()}
        return dense_package(target, method="full", target_version=1, base=base, base_version=0), target

    def dpu():
        result = partial_update(build_model("mlp", SHAPE, 10, seed=0), base, train_set, cfg,
                                PartialUpdateConfig(k=0.005), seed=1)
        target = {k: v.detach().cpu() for k, v in result.state.items()}
        return sparse_package(base, target, method="dpu", target_version=1, base_version=0,
                              dense_names=result.info.dense_names), target

    def ka():
        result = compact_refine(build_model("mlp", SHAPE, 10, seed=0), base, train_set, cfg,
                                CompactConfig("ka", n=2), seed=1)
        return build_package(result, base, base_version=0, target_version=1), result.state

    return {"full retrain": full, "dpu (k=0.005)": dpu, "ka (n=2)": ka}


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data-dir", default=DEFAULT_DATA_DIR)
    p.add_argument("--samples", type=int, default=10000)
    p.add_argument("--epochs", type=int, default=3)
    p.add_argument("--gpu", default="cuda", help="the accelerator to compare with the CPU (cpu: a dry run)")
    args = p.parse_args(argv)
    if args.gpu == "cuda" and not torch.cuda.is_available():
        print("no CUDA device: nothing to check (the CPU path is what `make test` covers)")
        return 0
    gpu_name = torch.cuda.get_device_name(0) if args.gpu == "cuda" else "none (dry run)"
    print(f"auto device: {resolve_device('auto')}; GPU: {gpu_name}; torch {torch.__version__}")
    train_set, test_set, source = _data(args.data_dir, args.samples)
    base = {k: v.clone() for k, v in build_model("mlp", SHAPE, 10, seed=0).state_dict().items()}
    rows, ok = [], True
    for name in _methods(train_set, TrainConfig(epochs=1), base):
        times, results = {}, {}
        for side, dev in (("cpu", "cpu"), ("gpu", args.gpu)):
            cfg = TrainConfig(epochs=args.epochs, batch_size=128, lr=1e-3, device=dev)
            run = _methods(train_set, cfg, base)[name]
            if dev == "cuda":
                torch.cuda.synchronize()
            t0 = time.perf_counter()
            package, target = run()
            if dev == "cuda":
                torch.cuda.synchronize()
            times[side] = time.perf_counter() - t0
            applied = _device_applies(package, base)
            ok &= applied
            model = build_model("mlp", SHAPE, 10, seed=0)
            model.load_state_dict(target)
            results[side] = (len(package.encode()), evaluate(model, test_set)[1], applied)
        rows.append((name, times["cpu"], times["gpu"], results["cpu"], results["gpu"]))
    print(f"\n{source}: {len(train_set)} samples, {args.epochs} epochs, MLP 784-512-512-10\n")
    print("| method | CPU s | GPU s | CPU / GPU | package B (CPU, GPU) | accuracy (CPU, GPU) | CPU device applies GPU package exactly |")
    print("|---|---:|---:|---:|---|---|---|")
    for name, cpu_s, gpu_s, cpu, gpu in rows:
        print(f"| {name} | {cpu_s:.2f} | {gpu_s:.2f} | {cpu_s / gpu_s:.1f} | {cpu[0]}, {gpu[0]} | "
              f"{cpu[1]:.4f}, {gpu[1]:.4f} | {'yes' if gpu[2] else 'NO'} |")
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
