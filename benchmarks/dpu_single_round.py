"""Single-round rewinding-metric ablation on MNIST-MLP, in the spirit of the thesis's Table 5.1.

An MLP 784-512-512-10 is trained on D¹ (1000 random MNIST training samples); then 1000 new samples
arrive and the model is partially updated once on D² = D¹ ∪ δD² with each rewinding metric
(global = GCPU, local = LCPU, combined = DPU) and updating ratio k. Reported per (k, metric):
the training loss right after rewinding, ℓ(w + δw^f ⊙ m), and the final test accuracy, as
mean ± std over seeds. Model selection uses 30 % of the MNIST test set (thesis §5.5); the other
70 % is the test set. A full-update row (all weights retrained from the deployed model, same
epochs) gives the reference.

    PYTHONPATH=. python benchmarks/dpu_single_round.py [--seeds 3] [--epochs 6] [--markdown]

The data directory must hold ``mnist/*-ubyte.gz`` (``--data-dir``, else $EDGEUPDATE_DATA, else the
user cache); the script exits with a message when it does not.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import torch

from edgeupdate.algorithms.partial import PartialUpdateConfig, first_step, partial_update
from edgeupdate.datasets import load_dataset
from edgeupdate.datasets.paths import resolve_data_dir
from edgeupdate.models.zoo import build_model
from edgeupdate.seeding import derive_seed, numpy_rng
from edgeupdate.training import TensorData, TrainConfig, evaluate, train

DEFAULT_DATA_DIR = str(resolve_data_dir())  # $EDGEUPDATE_DATA, else the user cache


# ------------------------------------------------------------------ data


def load_mnist(data_dir: str | Path) -> tuple[TensorData, TensorData] | None:
    """(train, test) normalised MNIST, or ``None`` when the files are not there."""
    directory = Path(data_dir) / "mnist"
    if not (directory / "train-images-idx3-ubyte.gz").exists():
        return None
    ds = load_dataset("mnist", data_dir)
    return ds.train, ds.test


def split_rounds(train_set: TensorData, test_set: TensorData, seed: int, initial: int, new: int
                 ) -> tuple[TensorData, TensorData, TensorData, TensorData]:
    """D¹, D² = D¹ ∪ δD², validation (30 % of test) and test (70 %) for one seed."""
    order = torch.from_numpy(numpy_rng(seed, "single-round", "samples").permutation(len(train_set)))
    d1 = train_set.subset(order[:initial])
    d2 = train_set.subset(order[:initial + new])
    test_order = torch.from_numpy(numpy_rng(seed, "single-round", "validation").permutation(len(test_set)))
    n_val = int(round(0.3 * len(test_set)))
    return d1, d2, test_set.subset(test_order[:n_val]), test_set.subset(test_order[n_val:])


# ------------------------------------------------------------------ experiment


def _mean_std(values: Sequence[float]) -> tuple[float, float]:
    return statistics.fmean(values), (statistics.stdev(values) if len(values) > 1 else 0.0)


def run(args: argparse.Namespace) -> int:
    data = load_mnist(args.data_dir)
    if data is None:
        print(f"skipped: MNIST not found under {Path(args.data_dir) / 'mnist'} "
              "(set --data-dir or $EDGEUPDATE_DATA to a folder holding mnist/*-ubyte.gz)")
        return 0
    train_set, test_set = data
    torch.set_num_threads(args.threads)
    train_cfg = TrainConfig(epochs=args.epochs, batch_size=args.batch_size, lr=args.lr, optimizer="adam",
                            lr_schedule="step", lr_step_epochs=max(1, args.epochs // 3), lr_gamma=0.1,
                            device=args.device)
    init_cfg = TrainConfig(epochs=args.init_epochs, batch_size=args.batch_size, lr=args.lr, optimizer="adam",
                           lr_schedule="step", lr_step_epochs=max(1, args.init_epochs // 3), lr_gamma=0.1,
                           device=args.device)
    selectors = args.selectors.split(",")
    ks = [float(k) for k in args.ks.split(",")]
    loss: dict[tuple[float, str], list[float]] = {}
    acc: dict[tuple[float, str], list[float]] = {}
    full_acc: list[float] = []
    base_acc: list[float] = []
    loss_start: list[float] = []  # training loss on D2 at the deployed weights w
    loss_full: list[float] = []   # ... and at w^f, after step one (all weights trained)
    started = time.perf_counter()
    for seed in range(args.seeds):
        d1, d2, val, test = split_rounds(train_set, test_set, seed, args.initial, args.new)
        model = build_model("mlp", (1, 28, 28), 10, derive_seed(seed, "single-round", "init"))
        train(model, d1, init_cfg, derive_seed(seed, "single-round", "initial-training"), validation=val)
        base = {n: t.detach().clone() for n, t in model.state_dict().items()}
        base_acc.append(evaluate(model, test)[1])
        train(model, d2, train_cfg, derive_seed(seed, "single-round", "full"), validation=val)
        full_acc.append(evaluate(model, test)[1])
        dpu_seed = derive_seed(seed, "single-round", "dpu")
        # Step one depends only on (base, D2, config, seed): compute it once and share w^f across
        # metrics and k, so the metrics are compared on exactly the same full update.
        shared = first_step(model, base, d2, train_cfg, dpu_seed)
        loss_start.append(shared.loss_start)
        loss_full.append(shared.loss_full)
        for k in ks:
            for selector in selectors:
                cfg = PartialUpdateConfig(k=k, selector=selector)
                result = partial_update(model, base, d2, train_cfg, cfg, dpu_seed, validation=val,
                                        first=None if selector == "random" else shared)
                loss.setdefault((k, selector), []).append(result.info.loss_after_rewind)
                acc.setdefault((k, selector), []).append(evaluate(model, test)[1])
        print(f"  seed {seed} done ({time.perf_counter() - started:.0f} s)", file=sys.stderr)
    runtime_s = time.perf_counter() - started

    header = ["k"] + selectors
    rows = []
    for k in ks:
        cells = [f"{k:g}"]
        for selector in selectors:
            lm, ls = _mean_std(loss[(k, selector)])
            am, as_ = _mean_std([100 * a for a in acc[(k, selector)]])
            cells.append(f"{lm:.3f} ± {ls:.3f} ({am:.2f} ± {as_:.2f} %)")
        rows.append(cells)
    bm, bs = _mean_std([100 * a for a in base_acc])
    fm, fs = _mean_std([100 * a for a in full_acc])
    (l0m, l0s), (lfm, lfs) = _mean_std(loss_start), _mean_std(loss_full)
    title = (f"Training loss right after rewinding (final test accuracy), mean ± std over {args.seeds} seeds; "
             f"MNIST MLP 784-512-512-10, |D1| = {args.initial}, |dD2| = {args.new}, "
             f"{args.epochs} epochs per step, Adam lr {args.lr:g} (x0.1 every {max(1, args.epochs // 3)} epochs), "
             f"batch {args.batch_size}")
    footer = [f"deployed model (trained on D1, {args.init_epochs} epochs): test accuracy {bm:.2f} ± {bs:.2f} %",
              f"full updating on D2 (all weights, {args.epochs} epochs from the deployed model): "
              f"test accuracy {fm:.2f} ± {fs:.2f} %",
              f"training loss on D2 at the deployed weights w: {l0m:.3f} ± {l0s:.3f}; "
              f"at w^f after step one (all weights): {lfm:.3f} ± {lfs:.3f}",
              f"runtime: {runtime_s:.0f} s, {torch.get_num_threads()} thread(s)"]
    if args.markdown:
        print(title + "\n")
        print("| " + " | ".join(header) + " |")
        print("|" + "|".join("---" for _ in header) + "|")
        for cells in rows:
            print("| " + " | ".join(cells) + " |")
        print()
        for line in footer:
            print(f"- {line}")
    else:
        print(title)
        widths = [max(len(r[i]) for r in rows + [header]) for i in range(len(header))]
        print("  ".join(h.ljust(w) for h, w in zip(header, widths)))
        for cells in rows:
            print("  ".join(c.ljust(w) for c, w in zip(cells, widths)))
        for line in footer:
            print(line)
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data-dir", default=DEFAULT_DATA_DIR, help="folder holding mnist/ (default: %(default)s)")
    p.add_argument("--seeds", type=int, default=3)
    p.add_argument("--ks", default="0.01,0.05,0.1,0.2", help="updating ratios, comma-separated")
    p.add_argument("--selectors", default="global,local,combined")
    p.add_argument("--epochs", type=int, default=6, help="epochs of each DPU step and of full updating")
    p.add_argument("--init-epochs", type=int, default=9, help="epochs of the initial training on D1")
    p.add_argument("--lr", type=float, default=5e-3)
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--initial", type=int, default=1000, help="|D1|")
    p.add_argument("--new", type=int, default=1000, help="|dD2|, new samples for the single round")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--device", default="cpu", help="cpu | cuda | auto")
    p.add_argument("--markdown", action="store_true", help="print the table as Markdown")
    args = p.parse_args(argv)
    if args.seeds < 1:
        p.error("--seeds must be at least 1")
    for selector in args.selectors.split(","):
        if selector not in ("global", "local", "combined", "random"):
            p.error(f"unknown selector {selector!r} (global, local, combined, random)")
    return run(args)


if __name__ == "__main__":
    raise SystemExit(main())
