"""The embedded default dataset: scikit-learn's 8×8 handwritten digits (no download needed).

1797 images with values 0..16 ship inside scikit-learn. They are split once, stratified by class,
into 1397 train / 400 test images with a fixed seed, so every process gets the same split.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np

from edgeupdate.datasets.base import NORMALIZATION, Dataset, image_data
from edgeupdate.seeding import numpy_rng

DIGITS_TEST_SIZE = 400
DIGITS_SPLIT_SEED = 0
DIGITS_NUM_CLASSES = 10


def stratified_split(labels: np.ndarray, test_size: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Sorted ``(train_idx, test_idx)`` with ``test_size`` test indices spread over classes in proportion
    to class frequency (largest-remainder rounding), chosen at random within each class."""
    classes, counts = np.unique(labels, return_counts=True)
    ideal = counts * (test_size / labels.size)
    take = np.floor(ideal).astype(np.int64)
    # Hand the remaining slots to the classes with the largest fractional parts (ties: lower label).
    order = np.argsort(-(ideal - take), kind="stable")
    take[order[: test_size - int(take.sum())]] += 1
    rng = numpy_rng(seed, "stratified-split")
    test_parts = []
    for cls, k in zip(classes, take):
        members = np.flatnonzero(labels == cls)
        test_parts.append(rng.choice(members, size=int(k), replace=False))
    test_idx = np.sort(np.concatenate(test_parts))
    train_idx = np.setdiff1d(np.arange(labels.size), test_idx)
    return train_idx, test_idx


def _read_digits() -> tuple[np.ndarray, np.ndarray]:
    """``(images float32 1797×8×8 in 0..16, labels int64)``.

    Reads scikit-learn's bundled ``datasets/data/digits.csv.gz`` (64 pixel columns + label) directly:
    importing ``sklearn.datasets`` costs seconds, and every simulated device process loads this.
    Falls back to ``sklearn.datasets.load_digits`` if the file is not where expected.
    """
    spec = importlib.util.find_spec("sklearn")
    for root in (spec.submodule_search_locations or []) if spec else []:
        csv = Path(root) / "datasets" / "data" / "digits.csv.gz"
        if csv.is_file():
            table = np.loadtxt(csv, delimiter=",", dtype=np.float32)
            if table.shape == (1797, 65):
                return table[:, :64].reshape(-1, 8, 8), table[:, 64].astype(np.int64)
    from sklearn.datasets import load_digits

    bunch = load_digits()
    return np.asarray(bunch.images, dtype=np.float32), np.asarray(bunch.target, dtype=np.int64)


def load_digits_dataset() -> Dataset:
    """The digits dataset, shape (1, 8, 8), 10 classes, 1397 train / 400 test."""
    raw_images, labels = _read_digits()
    images = raw_images[:, None, :, :]
    train_idx, test_idx = stratified_split(labels, DIGITS_TEST_SIZE, DIGITS_SPLIT_SEED)
    norm = NORMALIZATION["digits"]
    return Dataset(
        name="digits",
        train=image_data(images[train_idx], labels[train_idx], norm),
        test=image_data(images[test_idx], labels[test_idx], norm),
        input_shape=(1, 8, 8),
        num_classes=DIGITS_NUM_CLASSES,
    )
