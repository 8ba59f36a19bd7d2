"""The real MNIST / Fashion-MNIST files in shared/data (beside the checkout); skipped when absent."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from dataset_files import SHARED_DATA_DIR

from edgeupdate.datasets import load_dataset

# Test-set class counts of the official files (a fingerprint of the real data).
OFFICIAL_TEST_COUNTS = {
    "mnist": [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009],
    "fashion-mnist": [1000] * 10,
}
FIRST_TRAIN_LABELS = {"mnist": [5, 0, 4, 1, 9, 2, 1, 3], "fashion-mnist": [9, 0, 0, 3, 0, 2, 7, 2]}


def _require(name: str) -> Path:
    if not (SHARED_DATA_DIR / name / "train-images-idx3-ubyte.gz").is_file():
        pytest.skip(f"real {name} files not present under {SHARED_DATA_DIR.resolve()}")
    return SHARED_DATA_DIR


@pytest.mark.parametrize("name", ["mnist", "fashion-mnist"])
def test_real_idx_dataset_loads_with_official_shape_labels_and_unit_statistics(name: str) -> None:
    data_dir = _require(name)

    ds = load_dataset(name, data_dir)

    assert (len(ds.train), len(ds.test)) == (60000, 10000)
    assert ds.train.x.shape == (60000, 1, 28, 28) and ds.input_shape == (1, 28, 28) and ds.num_classes == 10
    assert np.bincount(ds.test.y.numpy(), minlength=10).tolist() == OFFICIAL_TEST_COUNTS[name]
    assert ds.train.y[:8].tolist() == FIRST_TRAIN_LABELS[name]
    # The documented mean/std constants standardise the training split.
    assert abs(float(ds.train.x.mean())) < 1e-3
    assert abs(float(ds.train.x.std()) - 1.0) < 1e-3


def test_real_dataset_is_cached_per_name_and_directory(monkeypatch: pytest.MonkeyPatch) -> None:
    data_dir = _require("mnist")
    monkeypatch.setenv("EDGEUPDATE_DATA", str(data_dir))

    via_env = load_dataset("mnist")
    via_arg = load_dataset("MNIST", data_dir)

    assert via_env is via_arg
