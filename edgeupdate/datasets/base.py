"""The :class:`Dataset` record and the conversion of raw uint8 images into normalised tensors.

Normalisation (all datasets): ``x = (pixel / max_value - mean[c]) / std[c]`` in float32, per channel c.
The constants are the per-channel mean and standard deviation of the *training* split, computed over
all pixels after scaling to [0, 1]:

=============  =================  ===============================  ===============================
dataset        max_value          mean                             std
=============  =================  ===============================  ===============================
digits         16 (sklearn 0..16) 0.3053                           0.3760   (all 1797 images)
mnist          255                0.1307                           0.3081
fashion-mnist  255                0.2860                           0.3530
cifar10        255                (0.4914, 0.4822, 0.4465)         (0.2470, 0.2435, 0.2616)
cifar100       255                (0.5071, 0.4865, 0.4409)         (0.2673, 0.2564, 0.2762)
=============  =================  ===============================  ===============================

MNIST / Fashion-MNIST values were re-measured on the official files (see tests/datasets); the CIFAR
values are the widely published training-set statistics (Krizhevsky 2009 data).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from edgeupdate.training import TensorData

DATASET_NAMES: tuple[str, ...] = ("digits", "mnist", "fashion-mnist", "cifar10", "cifar100")


@dataclass(frozen=True)
class Normalization:
    """Scale raw values by ``1/max_value`` then standardise per channel with ``mean``/``std``."""

    max_value: float
    mean: tuple[float, ...]
    std: tuple[float, ...]


NORMALIZATION: dict[str, Normalization] = {
    "digits": Normalization(16.0, (0.3053,), (0.3760,)),
    "mnist": Normalization(255.0, (0.1307,), (0.3081,)),
    "fashion-mnist": Normalization(255.0, (0.2860,), (0.3530,)),
    "cifar10": Normalization(255.0, (0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616)),
    "cifar100": Normalization(255.0, (0.5071, 0.4865, 0.4409), (0.2673, 0.2564, 0.2762)),
}


# (input_shape, num_classes) of every dataset, known without reading its files (configs are checked
# against the model they build before any data is loaded; tests check the loaders agree).
DATASET_SHAPES: dict[str, tuple[tuple[int, int, int], int]] = {
    "digits": ((1, 8, 8), 10),
    "mnist": ((1, 28, 28), 10),
    "fashion-mnist": ((1, 28, 28), 10),
    "cifar10": ((3, 32, 32), 10),
    "cifar100": ((3, 32, 32), 100),
}


@dataclass(frozen=True)
class Dataset:
    """A loaded dataset: normalised train/test tensors plus their shape and class count.

    Loaded datasets are cached and shared within a process: treat the tensors as read-only
    (take ``subset`` views or copies, never modify them in place).
    """

    name: str
    train: TensorData
    test: TensorData
    input_shape: tuple[int, int, int]
    num_classes: int

    def __repr__(self) -> str:
        return (
            f"Dataset(name={self.name!r}, train={len(self.train)}, test={len(self.test)}, "
            f"input_shape={self.input_shape}, num_classes={self.num_classes})"
        )


def to_tensor_data(images: np.ndarray, labels: np.ndarray, norm: Normalization) -> TensorData:
    """Raw images (N×C×H×W, any numeric dtype) and integer labels → normalised float32 / int64 tensors."""
    if images.ndim != 4:
        raise ValueError(f"images must be N×C×H×W, got shape {images.shape}")
    channels = images.shape[1]
    if channels != len(norm.mean):
        raise ValueError(f"images have {channels} channels but the normalisation has {len(norm.mean)}")
    x = images.astype(np.float32)
    scale = np.array([1.0 / (norm.max_value * s) for s in norm.std], dtype=np.float32).reshape(1, -1, 1, 1)
    shift = np.array([m / s for m, s in zip(norm.mean, norm.std)], dtype=np.float32).reshape(1, -1, 1, 1)
    x *= scale
    x -= shift
    y = np.asarray(labels).astype(np.int64, copy=False)
    return TensorData(torch.from_numpy(np.ascontiguousarray(x)), torch.from_numpy(np.ascontiguousarray(y)))
