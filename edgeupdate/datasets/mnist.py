"""MNIST and Fashion-MNIST from the four official IDX ``.gz`` files in ``<data_dir>/<name>/``.

Every load verifies each file's md5 against the official published value (about 0.1 s for the
36 MB of Fashion-MNIST), so a damaged or different file is never silently used.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from edgeupdate.datasets.base import NORMALIZATION, Dataset, image_data
from edgeupdate.datasets.errors import corrupt_file
from edgeupdate.datasets.idx import IDX_IMAGES_MAGIC, IDX_LABELS_MAGIC, read_idx_gz

IDX_NAMES = ("mnist", "fashion-mnist")
IDX_NUM_CLASSES = 10
IDX_IMAGE_SIZE = 28


@dataclass(frozen=True)
class IdxFileSet:
    """The four official file names of an IDX dataset."""

    train_images: str = "train-images-idx3-ubyte.gz"
    train_labels: str = "train-labels-idx1-ubyte.gz"
    test_images: str = "t10k-images-idx3-ubyte.gz"
    test_labels: str = "t10k-labels-idx1-ubyte.gz"

    def all(self) -> tuple[str, str, str, str]:
        return (self.train_images, self.train_labels, self.test_images, self.test_labels)


IDX_FILES = IdxFileSet()

# Official md5 of the compressed files (yann.lecun.com / zalandoresearch README); also checked
# against the copies in shared/data (see its README).
IDX_MD5: dict[str, dict[str, str]] = {
    "mnist": {
        "train-images-idx3-ubyte.gz": "f68b3c2dcbeaaa9fbdd348bbdeb94873",
        "train-labels-idx1-ubyte.gz": "d53e105ee54ea40749a09fcbcd1e9432",
        "t10k-images-idx3-ubyte.gz": "9fb629c4189551a2d022fa330f9573f3",
        "t10k-labels-idx1-ubyte.gz": "ec29112dd5afa0611ce80d1b7f02629c",
    },
    "fashion-mnist": {
        "train-images-idx3-ubyte.gz": "8d4fb7e6c68d591d4c3dfef9ec88bf0d",
        "train-labels-idx1-ubyte.gz": "25c81989df183df01b3e8a0aad5dffbe",
        "t10k-images-idx3-ubyte.gz": "bef4ecab320f06d8554ea6380940ec79",
        "t10k-labels-idx1-ubyte.gz": "bb300cfdad3c16e7a12a480ee83cd310",
    },
}


def _read_split(
    name: str, directory: Path, images_file: str, labels_file: str, checksums: Mapping[str, str] | None
) -> tuple[np.ndarray, np.ndarray]:
    images_path, labels_path = directory / images_file, directory / labels_file
    md5 = checksums or {}
    images = read_idx_gz(name, images_path, expected_magic=IDX_IMAGES_MAGIC, expected_md5=md5.get(images_file))
    labels = read_idx_gz(name, labels_path, expected_magic=IDX_LABELS_MAGIC, expected_md5=md5.get(labels_file))
    if images.ndim != 3 or images.shape[1:] != (IDX_IMAGE_SIZE, IDX_IMAGE_SIZE) or images.dtype != np.uint8:
        raise corrupt_file(
            name,
            images_path,
            f"expected uint8 N×{IDX_IMAGE_SIZE}×{IDX_IMAGE_SIZE} images, got {images.dtype} {images.shape}",
        )
    if labels.ndim != 1 or labels.dtype != np.uint8:
        raise corrupt_file(name, labels_path, f"expected uint8 labels of shape (N,), got {labels.dtype} {labels.shape}")
    if labels.shape[0] != images.shape[0]:
        raise corrupt_file(
            name, labels_path, f"{labels.shape[0]} labels but {images_path.name} has {images.shape[0]} images"
        )
    if labels.size and int(labels.max()) >= IDX_NUM_CLASSES:
        raise corrupt_file(name, labels_path, f"label {int(labels.max())} is outside 0..{IDX_NUM_CLASSES - 1}")
    return images, labels


def load_idx_directory(name: str, directory: Path, checksums: Mapping[str, str] | None) -> Dataset:
    """Load an IDX dataset from ``directory`` holding the four official files.

    ``checksums`` maps file name → expected md5 (``None`` skips verification, for user-made files).
    """
    norm = NORMALIZATION[name]
    train_x, train_y = _read_split(name, directory, IDX_FILES.train_images, IDX_FILES.train_labels, checksums)
    test_x, test_y = _read_split(name, directory, IDX_FILES.test_images, IDX_FILES.test_labels, checksums)
    return Dataset(
        name=name,
        train=image_data(train_x[:, None, :, :], train_y, norm),
        test=image_data(test_x[:, None, :, :], test_y, norm),
        input_shape=(1, IDX_IMAGE_SIZE, IDX_IMAGE_SIZE),
        num_classes=IDX_NUM_CLASSES,
    )


def load_idx_dataset(name: str, data_dir: Path) -> Dataset:
    """``mnist`` or ``fashion-mnist`` from ``<data_dir>/<name>/``, md5-verified against the official values."""
    if name not in IDX_MD5:
        raise ValueError(f"{name!r} is not an IDX dataset; choose one of {IDX_NAMES}")
    return load_idx_directory(name, data_dir / name, IDX_MD5[name])
