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
