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

from dataclasses import dataclass, replace

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
    """A loaded dataset: train/test splits (raw images, normalised per subset) plus their shape and class count.

    Loaded datasets are cached and shared within a process: treat the tensors as read-only
    (take ``subset`` views or copies, never modify them in place).
    """

    name: str
    train: ImageData
    test: ImageData
    input_shape: tuple[int, int, int]
    num_classes: int

    def keeping_train(self, rows: np.ndarray) -> "Dataset":
        """This dataset holding only the training images at ``rows`` (:meth:`ImageData.keep`)."""
        return replace(self, train=self.train.keep(rows))

    def __repr__(self) -> str:
        return (
            f"Dataset(name={self.name!r}, train={len(self.train)}, test={len(self.test)}, "
            f"input_shape={self.input_shape}, num_classes={self.num_classes})"
        )


def _check_images(images: np.ndarray, norm: Normalization) -> None:
    if images.ndim != 4:
        raise ValueError(f"images must be N×C×H×W, got shape {images.shape}")
    channels = images.shape[1]
    if channels != len(norm.mean):
        raise ValueError(f"images have {channels} channels but the normalisation has {len(norm.mean)}")


def _normalise(images: np.ndarray, norm: Normalization) -> torch.Tensor:
    """``(pixel / max_value − mean[c]) / std[c]`` in float32, element by element."""
    x = images.astype(np.float32)
    scale = np.array([1.0 / (norm.max_value * s) for s in norm.std], dtype=np.float32).reshape(1, -1, 1, 1)
    shift = np.array([m / s for m, s in zip(norm.mean, norm.std)], dtype=np.float32).reshape(1, -1, 1, 1)
    x *= scale
    x -= shift
    return torch.from_numpy(np.ascontiguousarray(x))


def _labels(labels: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(np.asarray(labels).astype(np.int64, copy=False)))


def to_tensor_data(images: np.ndarray, labels: np.ndarray, norm: Normalization) -> TensorData:
    """Raw images (N×C×H×W, any numeric dtype) and integer labels → normalised float32 / int64 tensors."""
    _check_images(images, norm)
    return TensorData(_normalise(images, norm), _labels(labels))


@dataclass(frozen=True, eq=False)
class ImageData:
    """A dataset split held as its raw images, normalised when a subset is taken.

    Every process of a run (the server and each node) holds the datasets it reads; raw 8-bit MNIST
    is 47 MB where the float32 copy is 188 MB. ``subset(index)`` returns exactly the
    :class:`~edgeupdate.training.TensorData` that :func:`to_tensor_data` of all images would give
    at those indices (the normalisation is element-wise); ``x`` normalises what is held.

    A split may hold only some of its images (``rows``: their sorted indices in the whole split,
    see :meth:`keep`); ``subset`` still takes indices into the whole split and refuses one that is
    not held.
    """

    raw: np.ndarray  # N×C×H×W, as read (uint8 for the image files)
    y: torch.Tensor  # int64, N
    norm: Normalization
    rows: np.ndarray | None = None  # indices into the whole split of the images held (None: all, in order)

    def __len__(self) -> int:
        return int(self.y.shape[0])

    @property
    def x(self) -> torch.Tensor:
        """All images held, normalised (a new float32 tensor each time: take subsets where you can)."""
        return _normalise(self.raw, self.norm)

    def subset(self, index: torch.Tensor | slice) -> TensorData:
        """The images at ``index`` (indices into the whole split, or a slice of what is held)."""
        if self.rows is not None and not isinstance(index, slice):
            index = torch.from_numpy(self._positions(np.asarray(index, dtype=np.int64)))
        rows = index.numpy() if isinstance(index, torch.Tensor) else index
        return TensorData(_normalise(self.raw[rows], self.norm), self.y[index])

    def take(self, index: np.ndarray) -> "ImageData":
        """The images at ``index``, still raw, as a split of their own (a 7,000-image MNIST test pool:
        5.5 MB, not 22 MB of floats)."""
        rows = np.asarray(index, dtype=np.int64)
        if self.rows is not None:
            rows = self._positions(rows)
        return ImageData(np.ascontiguousarray(self.raw[rows]), self.y[torch.from_numpy(rows)], self.norm)

    def keep(self, rows: np.ndarray) -> "ImageData":
        """This split holding only the images at ``rows`` (indices into the whole split), still
        indexed as the whole split; itself when ``rows`` is every image."""
        rows = np.unique(np.asarray(rows, dtype=np.int64))
        if self.rows is None and len(rows) == len(self):
            return self
        held = self.take(rows)  # refuses a row this split does not hold
        return ImageData(held.raw, held.y, self.norm, rows)

    def _positions(self, index: np.ndarray) -> np.ndarray:
        """Where the images at ``index`` (indices into the whole split) sit in what is held."""
        assert self.rows is not None
        pos = np.searchsorted(self.rows, index)
        found = self.rows[np.minimum(pos, len(self.rows) - 1)] if len(self.rows) else np.full(len(index), -1)
        missing = (pos >= len(self.rows)) | (found != index)
        if missing.any():
            raise IndexError(f"image {int(index[missing][0])} of the split is not held here "
                             f"({len(self.rows)} images are: the run's devices never collect the others)")
        return pos


def image_data(images: np.ndarray, labels: np.ndarray, norm: Normalization) -> ImageData:
    """A split of raw images (N×C×H×W) and integer labels, normalised per subset (:class:`ImageData`)."""
    _check_images(images, norm)
    return ImageData(np.ascontiguousarray(images), _labels(labels), norm)
