"""Fixtures for the datasets tests."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pytest
from dataset_files import cifar_batch, idx_bytes, tiny_idx_arrays, write_gz

from edgeupdate.datasets import clear_cache


@pytest.fixture(autouse=True)
def _fresh_dataset_cache() -> Iterator[None]:
    clear_cache()
    yield
    clear_cache()


@pytest.fixture
def tiny_idx_dir(tmp_path: Path) -> Callable[[str], Path]:
    """Write the four official IDX .gz names with tiny content (7 train, 3 test) into ``tmp/<name>/``."""

    def make(name: str = "mnist") -> Path:
        folder = tmp_path / name
        train_x, train_y = tiny_idx_arrays(7, seed=1)
        test_x, test_y = tiny_idx_arrays(3, seed=2)
        write_gz(folder / "train-images-idx3-ubyte.gz", idx_bytes(train_x))
        write_gz(folder / "train-labels-idx1-ubyte.gz", idx_bytes(train_y))
        write_gz(folder / "t10k-images-idx3-ubyte.gz", idx_bytes(test_x))
        write_gz(folder / "t10k-labels-idx1-ubyte.gz", idx_bytes(test_y))
        return folder

    return make


@pytest.fixture
def tiny_cifar_dir(tmp_path: Path) -> Callable[[str], tuple[Path, np.ndarray, np.ndarray]]:
    """Write tiny official-format CIFAR batches under ``tmp/<name>/<folder>/``.

    Returns (data_dir, train data N×3072, train labels) in file order.
    """

    def make(name: str = "cifar10") -> tuple[Path, np.ndarray, np.ndarray]:
        if name == "cifar10":
            folder = tmp_path / "cifar10" / "cifar-10-batches-py"
            files = {f"data_batch_{i}": 4 for i in range(1, 6)} | {"test_batch": 3}
            key, classes = b"labels", 10
        else:
            folder = tmp_path / "cifar100" / "cifar-100-python"
            files = {"train": 6, "test": 3}
            key, classes = b"fine_labels", 100
        folder.mkdir(parents=True)
        train_data, train_labels = [], []
        for i, (file_name, n) in enumerate(files.items()):
            raw, data, labels = cifar_batch(n, seed=i, label_key=key, num_classes=classes)
            (folder / file_name).write_bytes(raw)
            if "test" not in file_name:
                train_data.append(data)
                train_labels.append(labels)
        return tmp_path, np.concatenate(train_data), np.concatenate(train_labels)

    return make
