"""Datasets hold their raw images and normalise per subset, giving exactly the floats of a whole-set conversion."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from edgeupdate.datasets.base import NORMALIZATION, image_data, to_tensor_data


@pytest.mark.parametrize("name,channels", [("mnist", 1), ("cifar10", 3)])
def test_a_subset_is_bitwise_the_whole_set_converted_then_indexed(name, channels):
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, size=(50, channels, 6, 6), dtype=np.uint8)
    labels = rng.integers(0, 10, size=50)
    norm = NORMALIZATION[name]
    whole, split = to_tensor_data(images, labels, norm), image_data(images, labels, norm)
    assert split.raw.dtype == np.uint8 and split.raw.nbytes == whole.x.numel()  # one byte per pixel held
    for index in (torch.tensor([7, 3, 3, 49]), slice(10, 20), torch.arange(0)):
        sub = split.subset(index)
        assert sub.x.dtype == torch.float32 and torch.equal(sub.x, whole.x[index]) and torch.equal(sub.y, whole.y[index])
    assert torch.equal(split.x, whole.x) and len(split) == 50


def test_images_of_the_wrong_shape_are_refused_with_one_line():
    with pytest.raises(ValueError, match="channels"):
        image_data(np.zeros((2, 3, 4, 4), np.uint8), np.zeros(2), NORMALIZATION["mnist"])


def _both(seed: int, n: int, side: int):
    """Random MNIST-like images as floats converted whole, and as a raw split; and the images."""
    rng = np.random.default_rng(seed)
    images = rng.integers(0, 256, size=(n, 1, side, side), dtype=np.uint8)
    labels, norm = rng.integers(0, 10, size=n), NORMALIZATION["mnist"]
    return to_tensor_data(images, labels, norm), image_data(images, labels, norm), images


def test_take_keeps_the_images_raw_and_normalises_them_as_the_whole_set_would():
    whole, split, _ = _both(1, 40, 5)
    index = np.array([2, 5, 5, 39, 0])
    pool = split.take(index)
    assert pool.raw.dtype == np.uint8 and pool.raw.shape == (5, 1, 5, 5) and len(pool) == 5
    assert torch.equal(pool.subset(slice(1, 4)).x, whole.x[index][1:4])
    assert torch.equal(pool.y, whole.y[torch.from_numpy(index)])


def test_a_split_keeping_some_rows_is_still_indexed_as_the_whole_split():
    whole, split, images = _both(2, 30, 4)
    kept = split.keep(np.array([25, 3, 9, 3, 14]))
    assert len(kept) == 4 and kept.raw.nbytes == 4 * 16 and list(kept.rows) == [3, 9, 14, 25]
    index = torch.tensor([14, 3, 25, 25])
    assert torch.equal(kept.subset(index).x, whole.x[index]) and torch.equal(kept.subset(index).y, whole.y[index])
    assert np.array_equal(kept.take(np.array([9, 14])).raw, images[[9, 14]])
    assert np.array_equal(kept.keep(np.array([9, 25])).rows, [9, 25])
    with pytest.raises(IndexError, match="image 4 of the split is not held"):
        kept.subset(torch.tensor([3, 4]))
    with pytest.raises(IndexError, match="image 1 of the split is not held"):
        split.keep(np.zeros(0, dtype=np.int64)).subset(torch.tensor([1]))
    assert split.keep(np.arange(30)) is split  # every row: nothing copied
