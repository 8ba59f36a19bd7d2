"""FedAvg on MNIST with Apple's pfl-research simulator (``pfl[pytorch]`` 0.6.0), for ``fl_vs_pfl.py``.

Runs in the pfl virtualenv and never imports edgeupdate. The devices' training indices and the
test pool come from a split file (``.npz``: ``train`` = devices × samples indices into the MNIST
training set, ``test`` = indices into the test set, optionally ``init_<i>`` = the initial weights
in parameter order) that ``fl_vs_pfl.py`` writes from edgeupdate's own data layout and initial
model, so both simulators start from the same weights and train and test on the same images. MNIST is read
from the official IDX ``.gz`` files with gzip + numpy and normalised (x/255 − 0.1307)/0.3081.

    build/peers/pfl/bin/python benchmarks/pfl_fedavg.py --data-dir DATA --split SPLIT.npz \
        [--rounds 5] [--epochs 1] [--batch-size 32] [--lr 0.05] [--seed 0]

Prints one JSON line: final accuracy, accuracy per round, and time spent in imports, data loading
and training (the parent measures the whole process's wall time itself).
"""

from __future__ import annotations

import argparse
import gzip
import json
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    import torch

T0 = time.perf_counter()
MEAN, STD = 0.1307, 0.3081
MNIST_FILES = ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz",
               "t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz")


def read_idx(path: Path, header: int) -> np.ndarray:
    """The uint8 payload of an IDX ``.gz`` file (16-byte header for images, 8 for labels)."""
    with gzip.open(path, "rb") as f:
        raw = f.read()
    data = np.frombuffer(raw, dtype=np.uint8, offset=header)
    return data.reshape(-1, 28 * 28) if header == 16 else data


def load_mnist(mnist_dir: Path) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(train x, train y, test x, test y); x float32 N×784 normalised, y int64."""
    xtr, ytr, xte, yte = (read_idx(mnist_dir / name, 16 if "images" in name else 8) for name in MNIST_FILES)
    norm = lambda x: ((x.astype(np.float32) / 255.0 - MEAN) / STD).astype(np.float32)  # noqa: E731
    return norm(xtr), ytr.astype(np.int64), norm(xte), yte.astype(np.int64)


def load_split(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """(devices × samples training indices, test-pool indices) written by ``fl_vs_pfl.py``."""
    with np.load(path) as z:
        return z["train"], z["test"]


def load_init(model: torch.nn.Module, path: Path) -> bool:
    """Copy the split file's ``init_<i>`` arrays into ``model.parameters()`` in order; False if it has none."""
    import torch

    with np.load(path) as z:
        arrays = [z[f"init_{i}"] for i in range(sum(k.startswith("init_") for k in z.files))]
    params = list(model.parameters())
    if not arrays:
        return False
    if len(arrays) != len(params) or any(a.shape != tuple(p.shape) for a, p in zip(arrays, params)):
        raise ValueError(f"{path}: initial weights do not fit the model")
    with torch.no_grad():
        for a, p in zip(arrays, params):
            p.copy_(torch.from_numpy(a))
    return True


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data-dir", type=Path, required=True, help="folder holding mnist/*.gz")
    p.add_argument("--split", type=Path, required=True, help=".npz with train (devices × samples) and test indices")
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--epochs", type=int, default=1)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--lr", type=float, default=0.05)
    p.add_argument("--hidden", default="200,200")
    p.add_argument("--seed", type=int, default=0)
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    import torch
    import torch.nn.functional as F
    from pfl.aggregate.simulate import SimulatedBackend
    from pfl.aggregate.weighting import WeightByDatapoints
    from pfl.algorithm import FederatedAveraging, NNAlgorithmParams
    from pfl.callback.base import TrainingProcessCallback
    from pfl.data.dataset import Dataset
    from pfl.data.federated_dataset import FederatedDataset
    from pfl.data.sampling import get_user_sampler
    from pfl.hyperparam import NNEvalHyperParams, NNTrainHyperParams
    from pfl.metrics import Weighted
    from pfl.model.pytorch import PyTorchModel

    torch.set_num_threads(1)
    torch.manual_seed(args.seed)
    np.random.seed(args.seed)
    t_import = time.perf_counter()

    xtr, ytr, xte, yte = load_mnist(args.data_dir / "mnist")
    train_idx, test_idx = load_split(args.split)
    users = [(xtr[ix], ytr[ix]) for ix in train_idx]
    train_data = FederatedDataset.from_slices(users, get_user_sampler("minimize_reuse", list(range(len(users)))))
    test_data = Dataset((xte[test_idx], yte[test_idx]))
    t_data = time.perf_counter()

    class MLP(torch.nn.Module):
        """784-h-…-10 ReLU MLP with pfl's ``loss`` and ``metrics`` hooks."""

        def __init__(self, hidden: list[int]) -> None:
            super().__init__()
            layers: list[torch.nn.Module] = []
            width = 28 * 28
            for units in hidden:
                layers += [torch.nn.Linear(width, units), torch.nn.ReLU()]
                width = units
            layers.append(torch.nn.Linear(width, 10))
            self.net = torch.nn.Sequential(*layers)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.net(x)

        def loss(self, x: torch.Tensor, y: torch.Tensor, eval: bool = False) -> torch.Tensor:  # noqa: A002
            self.eval() if eval else self.train()
            return F.cross_entropy(self(x), y.long())  # pfl's to_tensor hands labels over as float32

        @torch.no_grad()
        def metrics(self, x: torch.Tensor, y: torch.Tensor) -> dict[str, Weighted]:
            self.eval()
            logits, y = self(x), y.long()
            n = len(y)
            return {"loss": Weighted(float(F.cross_entropy(logits, y, reduction="sum")), n),
                    "accuracy": Weighted(float((logits.argmax(1) == y).sum()), n)}

    net = MLP([int(h) for h in args.hidden.split(",") if h])
    load_init(net, args.split)  # edgeupdate's version-0 weights, when the split file has them
    model = PyTorchModel(model=net, local_optimizer_create=torch.optim.SGD,
                         central_optimizer=torch.optim.SGD(net.parameters(), lr=1.0))  # w ← w + mean Δ
    backend = SimulatedBackend(training_data=train_data, val_data=None, postprocessors=[WeightByDatapoints()])
    eval_params = NNEvalHyperParams(local_batch_size=1000)
    rounds: list[dict[str, float]] = []
    last = [time.perf_counter()]

    class Record(TrainingProcessCallback):
        """Evaluates the central model on the test pool after every round (pfl's ``model.evaluate``)."""

        def after_central_iteration(self, aggregate_metrics, model,  # type: ignore[no-untyped-def]
                                    *, central_iteration):
            rounds.append({"round": central_iteration + 1, "accuracy": accuracy(model)})
            now = time.perf_counter()
            rounds[-1]["seconds"] = now - last[0]
            last[0] = now
            return False, aggregate_metrics.__class__()

    def accuracy(model: PyTorchModel) -> float:
        metrics = model.evaluate(test_data, eval_params=eval_params)
        return float(next(v.overall_value for k, v in metrics if str(k) == "accuracy"))

    FederatedAveraging().run(
        algorithm_params=NNAlgorithmParams(central_num_iterations=args.rounds, evaluation_frequency=1,
                                           train_cohort_size=len(users), val_cohort_size=0),
        backend=backend, model=model,
        model_train_params=NNTrainHyperParams(local_learning_rate=args.lr, local_num_epochs=args.epochs,
                                              local_batch_size=args.batch_size),
        model_eval_params=eval_params, callbacks=[Record()])
    t_train = time.perf_counter()
    print(json.dumps({"accuracy": rounds[-1]["accuracy"], "rounds": rounds, "import_s": t_import - T0,
                      "data_s": t_data - t_import, "train_s": t_train - t_data,
                      "test_images": int(len(test_idx)), "devices": len(users)}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
