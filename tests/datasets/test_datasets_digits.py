"""The embedded digits dataset and load_dataset's name handling."""

from __future__ import annotations

import numpy as np
import pytest

from edgeupdate.datasets import DATASET_NAMES, DatasetError, load_dataset
from edgeupdate.datasets.digits import stratified_split


def test_digits_needs_no_files_and_has_the_documented_split(tmp_path) -> None:
    ds = load_dataset("digits", tmp_path / "does-not-exist")

    assert (len(ds.train), len(ds.test)) == (1397, 400)
    assert ds.input_shape == (1, 8, 8) and ds.num_classes == 10
    assert ds.train.x.shape == (1397, 1, 8, 8) and str(ds.train.x.dtype) == "torch.float32"
    assert str(ds.test.y.dtype) == "torch.int64"
    assert abs(float(ds.train.x.mean())) < 0.05 and abs(float(ds.train.x.std()) - 1.0) < 0.05


def test_digits_split_is_stratified_disjoint_and_deterministic() -> None:
    y = load_dataset("digits").train.y.numpy()  # any label vector will do; this one is at hand

    train, test = stratified_split(y, 300, seed=0)
    train2, test2 = stratified_split(y, 300, seed=0)

    assert np.intersect1d(train, test).size == 0 and train.size + test.size == y.size
    np.testing.assert_array_equal(test, test2)
    np.testing.assert_array_equal(train, train2)
    expected = np.bincount(y) * 300 / y.size
    assert np.all(np.abs(np.bincount(y[test]) - expected) < 1.0)


def test_same_dataset_object_is_returned_within_a_process() -> None:
    assert load_dataset("digits") is load_dataset(" Digits ")


@pytest.mark.parametrize("alias", ["fashion_mnist", "FMNIST", "CIFAR-10"])
def test_common_spellings_are_accepted_but_unknown_names_are_not(alias: str, tmp_path) -> None:
    with pytest.raises(DatasetError, match="is missing"):
        load_dataset(alias, tmp_path)
    with pytest.raises(DatasetError, match=f"unknown dataset 'imagenet'; choose one of {', '.join(DATASET_NAMES)}"):
        load_dataset("imagenet", tmp_path)


def test_fast_csv_path_equals_scikit_learn_load_digits() -> None:
    from sklearn.datasets import load_digits

    from edgeupdate.datasets.digits import _read_digits

    images, labels = _read_digits()
    bunch = load_digits()

    np.testing.assert_array_equal(images, bunch.images)
    np.testing.assert_array_equal(labels, bunch.target)
