"""Fig. 4b of Chen et al. 2022: test accuracy vs update size for KA, ML, LRA, RM, LRU, FP on MNIST.

tiny-ResNet is trained on D¹ (2 % of the MNIST training set), then refined on D² (100 %, or
``--d2-fraction`` of it) by every method at several sizes.  Each refinement is packaged, encoded,
decoded and applied to the initial model exactly as a device would; the run fails loudly if the
device's state does not hash to the server's.  Prints a table and writes ``ka_sweep.csv`` and
``ka_sweep.png`` (accuracy vs Update %) to ``--out``.

    PYTHONPATH=$PWD python benchmarks/ka_sweep.py --out runs/ka-sweep            # small default
    PYTHONPATH=$PWD python benchmarks/ka_sweep.py --d2-fraction 1 --epochs 3     # the paper's D²
"""

from __future__ import annotations

import argparse
import csv
import gzip
import struct
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from edgeupdate.algorithms.factorized import CompactConfig, build_package, compact_refine
from edgeupdate.models.zoo import build_model, count_parameters
from edgeupdate.seeding import derive_seed
from edgeupdate.training import TensorData, TrainConfig, evaluate, train
from edgeupdate.updates import UpdatePackage, dense_package, state_hash

MNIST_MEAN, MNIST_STD = 0.1307, 0.3081


def _read_idx(path: Path) -> np.ndarray:
    with gzip.open(path, "rb") as fh:
        raw = fh.read()
    magic, = struct.unpack(">I", raw[:4])
    ndim = magic & 0xFF
    dims = struct.unpack(f">{ndim}I", raw[4:4 + 4 * ndim])
    return np.frombuffer(raw, dtype=np.uint8, offset=4 + 4 * ndim).reshape(dims)


def load_mnist(data_dir: Path) -> tuple[TensorData, TensorData] | None:
    """MNIST train/test via ``edgeupdate.datasets`` if present, else a local IDX reader; None if absent."""
    try:
        from edgeupdate.datasets import load_dataset  # type: ignore[attr-defined]
    except ImportError:
        load_dataset = None
    if load_dataset is not None:
        try:
            ds = load_dataset("mnist", data_dir)
            return ds.train, ds.test
        except Exception as exc:  # missing files → fall through to the message below
            print(f"edgeupdate.datasets could not load MNIST: {exc}", file=sys.stderr)
            return None
    folder = data_dir / "mnist"
    files = ["train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz",
             "t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"]
    if not all((folder / f).exists() for f in files):
        return None
    arrays = [_read_idx(folder / f) for f in files]

    def to_data(images: np.ndarray, labels: np.ndarray) -> TensorData:
        x = (torch.from_numpy(images.astype(np.float32) / 255.0) - MNIST_MEAN) / MNIST_STD
        return TensorData(x.unsqueeze(1).contiguous(), torch.from_numpy(labels.astype(np.int64)))

    return to_data(arrays[0], arrays[1]), to_data(arrays[2], arrays[3])


def _floats(text: str) -> list[float]:
    return [float(v) for v in text.split(",") if v.strip()]


def _ints(text: str) -> list[int]:
    return [int(v) for v in text.split(",") if v.strip()]


@dataclass
class Row:
    method: str
    param: str
    update_params: int
    update_pct: float
    bytes: int
    accuracy: float
    lift: float
    refine_s: float


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data-dir", type=Path, default=Path("/work/shared/data"))
    ap.add_argument("--out", type=Path, default=Path("runs/ka-sweep"))
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--d1-fraction", type=float, default=0.02)
    ap.add_argument("--d2-fraction", type=float, default=0.1, help="share of the training set used as D² (paper: 1)")
    ap.add_argument("--test-size", type=int, default=5000)
    ap.add_argument("--init-epochs", type=int, default=10)
    ap.add_argument("--epochs", type=int, default=1, help="refinement epochs on D²")
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--ka-n", type=_ints, default=[0, 1, 3])
    ap.add_argument("--ml-rank", type=_ints, default=[1, 4])
    ap.add_argument("--lra-rank", type=_ints, default=[1, 4])
    ap.add_argument("--lru-rank", type=_ints, default=[1, 2, 4])
    ap.add_argument("--rm-p", type=_floats, default=[0.01, 0.02, 0.05])
    ap.add_argument("--fp-c", type=_floats, default=[0.5])
    ap.add_argument("--threads", type=int, default=1,
                    help="torch threads (1 avoids oversubscription on a shared machine)")
    ap.add_argument("--no-full", action="store_true", help="skip the dense full-retraining reference")
    args = ap.parse_args(argv)

    torch.set_num_threads(args.threads)
    loaded = load_mnist(args.data_dir)
    if loaded is None:
        print(f"SKIP: MNIST not found under {args.data_dir} (need mnist/*-ubyte.gz)")
        return 0
    train_all, test = loaded
    test = test.subset(slice(0, args.test_size))
    torch.manual_seed(args.seed)
    order = torch.randperm(len(train_all), generator=torch.Generator().manual_seed(derive_seed(args.seed, "split")))
    d1 = train_all.subset(order[: int(round(args.d1_fraction * len(train_all)))])
    d2 = train_all.subset(order[: int(round(args.d2_fraction * len(train_all)))])  # D² ⊃ D¹

    model = build_model("tiny-resnet", (1, 28, 28), 10, seed=args.seed)
    t0 = time.perf_counter()
    train(model, d1, TrainConfig(epochs=args.init_epochs, batch_size=args.batch_size, lr=args.lr), seed=args.seed)
    base = {k: v.detach().clone() for k, v in model.state_dict().items()}
    _, init_acc = evaluate(model, test)
    total = count_parameters(model)
    print(f"tiny-resnet {total} params | D1 {len(d1)} D2 {len(d2)} test {len(test)} | "
          f"initial accuracy {init_acc:.4f} ({time.perf_counter() - t0:.0f} s)", flush=True)

    refine_cfg = TrainConfig(epochs=args.epochs, batch_size=args.batch_size, lr=args.lr)
    grid: list[CompactConfig] = (
        [CompactConfig("ka", n=n) for n in args.ka_n]
        + [CompactConfig("ml", rank=r) for r in args.ml_rank]
        + [CompactConfig("lra", rank=r) for r in args.lra_rank]
        + [CompactConfig("lru", rank=r) for r in args.lru_rank]
        + [CompactConfig("rm", proportion=p) for p in args.rm_p]
        + [CompactConfig("fp", compression=c) for c in args.fp_c])
    rows: list[Row] = []
    header = f"{'method':<6} {'param':<12} {'update_params':>13} {'update_%':>9} {'bytes':>8} {'accuracy':>9} {'lift':>8} {'refine_s':>8}"
    print(header, flush=True)

    def emit(row: Row) -> None:
        rows.append(row)
        print(f"{row.method:<6} {row.param:<12} {row.update_params:>13} {row.update_pct:>9.3f} {row.bytes:>8} "
              f"{row.accuracy:>9.4f} {row.lift:>+8.4f} {row.refine_s:>8.1f}", flush=True)

    for cfg in grid:
        result = compact_refine(model, base, d2, refine_cfg, cfg, seed=derive_seed(args.seed, "refine"))
        pkg = build_package(result, base, base_version=0, target_version=1)
        wire = pkg.encode()
        device = UpdatePackage.decode(wire).apply(base)
        if state_hash(device) != state_hash(result.state):
            raise RuntimeError(f"{cfg.method}: device reconstitution differs from the server state")
        refined = build_model("tiny-resnet", (1, 28, 28), 10, seed=args.seed)
        refined.load_state_dict(device)
        _, acc = evaluate(refined, test)
        name, value = cfg.size_param
        emit(Row(cfg.method, f"{name}={value:g}", result.update_param_count, 100 * result.update_fraction,
                 len(wire), acc, acc - init_acc, result.wall_s))

    if not args.no_full:
        full = build_model("tiny-resnet", (1, 28, 28), 10, seed=args.seed)
        full.load_state_dict(base)
        t0 = time.perf_counter()
        train(full, d2, refine_cfg, seed=derive_seed(args.seed, "refine", "full"))
        wall = time.perf_counter() - t0
        full_state = {k: v.detach().clone() for k, v in full.state_dict().items()}
        wire = dense_package(full_state, method="full", target_version=1).encode()
        _, acc = evaluate(full, test)
        emit(Row("full", "-", total, 100.0, len(wire), acc, acc - init_acc, wall))

    args.out.mkdir(parents=True, exist_ok=True)
    with open(args.out / "ka_sweep.csv", "w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(["method", "param", "update_params", "update_pct", "bytes", "accuracy", "lift",
                         "refine_s", "initial_accuracy", "model_params", "d1", "d2", "epochs", "seed"])
        for r in rows:
            writer.writerow([r.method, r.param, r.update_params, f"{r.update_pct:.4f}", r.bytes, f"{r.accuracy:.4f}",
                             f"{r.lift:.4f}", f"{r.refine_s:.2f}", f"{init_acc:.4f}", total, len(d1), len(d2),
                             args.epochs, args.seed])
    _plot(rows, init_acc, args.out / "ka_sweep.png", f"tiny-ResNet / MNIST, |D1|={len(d1)}, |D2|={len(d2)}")
    _verdict(rows)
    print(f"wrote {args.out / 'ka_sweep.csv'} and {args.out / 'ka_sweep.png'}")
    return 0


def _plot(rows: list[Row], init_acc: float, path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.5))
    for method in dict.fromkeys(r.method for r in rows):
        pts = sorted((r.update_pct, 100 * r.accuracy) for r in rows if r.method == method)
        ax.plot([p[0] for p in pts], [p[1] for p in pts], marker="o", label=method.upper())
    ax.axhline(100 * init_acc, color="grey", linestyle="--", label="initial")
    ax.set_xscale("log")
    ax.set_xlabel("update size (% of model parameters)")
    ax.set_ylabel("test accuracy (%)")
    ax.set_title(title)
    ax.legend()
    ax.grid(True, which="both", alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def _verdict(rows: list[Row]) -> None:
    """The issue's criterion: KA's lift at ≤ 1 % vs RM's and LRU's at equal or larger size."""
    ka = [r for r in rows if r.method == "ka" and r.update_pct <= 1.0]
    if not ka:
        print("verdict: no KA point at ≤ 1 % update size")
        return
    best = max(ka, key=lambda r: r.lift)
    for method in ("rm", "lru"):
        rivals = [r for r in rows if r.method == method and r.update_params >= best.update_params]
        if not rivals:
            print(f"verdict: no {method.upper()} point at ≥ {best.update_params} params")
            continue
        rival = min(rivals, key=lambda r: r.update_params)
        ok = best.lift >= rival.lift
        print(f"verdict: KA {best.param} ({best.update_params} params, {best.update_pct:.2f} %) lift {best.lift:+.4f} "
              f"{'≥' if ok else '<'} {method.upper()} {rival.param} ({rival.update_params} params) lift {rival.lift:+.4f}")


if __name__ == "__main__":
    raise SystemExit(main())
