"""DATASET_SHAPES (used to check configs before any data is read) agrees with what the loaders return."""

from __future__ import annotations

import pytest

from edgeupdate.datasets import DATASET_NAMES, DATASET_SHAPES, load_dataset
from edgeupdate.datasets.cifar import load_cifar_directory
from edgeupdate.datasets.mnist import load_idx_directory


def test_every_dataset_has_a_shape_entry() -> None:
    assert set(DATASET_SHAPES) == set(DATASET_NAMES)


def test_digits_loader_matches_the_table() -> None:
    ds = load_dataset("digits")
    assert (ds.input_shape, ds.num_classes) == DATASET_SHAPES["digits"]


@pytest.mark.parametrize("name", ["mnist", "fashion-mnist"])
def test_idx_loader_matches_the_table(tiny_idx_dir, name: str) -> None:
    ds = load_idx_directory(name, tiny_idx_dir(name), checksums=None)
    assert (ds.input_shape, ds.num_classes) == DATASET_SHAPES[name]


@pytest.mark.parametrize("name", ["cifar10", "cifar100"])
def test_cifar_loader_matches_the_table(tiny_cifar_dir, name: str) -> None:
    data_dir, _, _ = tiny_cifar_dir(name)
    ds = load_cifar_directory(name, data_dir, checksums=None)
    assert (ds.input_shape, ds.num_classes) == DATASET_SHAPES[name]
