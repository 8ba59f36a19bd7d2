"""CIFAR-10 / CIFAR-100 from the official "python version" pickle batches.

Layout under ``<data_dir>/<name>/`` (what the official tar.gz extracts to):

* cifar10:  ``cifar-10-batches-py/data_batch_1 .. data_batch_5`` (train) and ``test_batch``;
  each a pickled dict with ``b"data"`` (uint8, 10000×3072: 1024 red, 1024 green, 1024 blue values of a
  32×32 image in row-major order) and ``b"labels"`` (list of 0..9).
* cifar100: ``cifar-100-python/train`` (50000) and ``test`` (10000) with ``b"fine_labels"`` (0..99).

The batches are Python 2 pickles. They are read with an unpickler that only resolves the NumPy
names needed to rebuild an ndarray, so a tampered file cannot run code. Every file's md5 is checked
against the official value (the ones torchvision also lists).
"""

from __future__ import annotations

import io
import pickle
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from edgeupdate.datasets.base import NORMALIZATION, Dataset, image_data
from edgeupdate.datasets.checksum import read_verified
from edgeupdate.datasets.errors import corrupt_file

CIFAR_IMAGE_SHAPE = (3, 32, 32)
CIFAR_ROW_BYTES = 3 * 32 * 32


@dataclass(frozen=True)
class CifarLayout:
    """Where a CIFAR variant keeps its batches and which key holds its labels."""

    folder: str
    train_files: tuple[str, ...]
    test_files: tuple[str, ...]
    label_key: str
    num_classes: int
    md5: Mapping[str, str]


CIFAR_LAYOUTS: dict[str, CifarLayout] = {
    "cifar10": CifarLayout(
        folder="cifar-10-batches-py",
        train_files=tuple(f"data_batch_{i}" for i in range(1, 6)),
        test_files=("test_batch",),
        label_key="labels",
        num_classes=10,
        md5={
            "data_batch_1": "c99cafc152244af753f735de768cd75f",
            "data_batch_2": "d4bba439e000b95fd0a9bffe97cbabec",
            "data_batch_3": "54ebc095f3ab1f0389bbae665268c751",
            "data_batch_4": "634d18415352ddfa80567beed471001a",
            "data_batch_5": "482c414d41f54cd18b22e5b47cb7c3cb",
            "test_batch": "40351d587109b95175f43aff81a1287e",
        },
    ),
    "cifar100": CifarLayout(
        folder="cifar-100-python",
        train_files=("train",),
        test_files=("test",),
        label_key="fine_labels",
        num_classes=100,
        md5={
            "train": "16019d7e3df5f24257cddd939b257f8d",
            "test": "f0ef6b0ae62326f3e7ffdfab6717acfc",
        },
    ),
}

# (module, name) pairs an ndarray pickle may reference, across NumPy 1.x / 2.x and pickle protocols.
_ALLOWED_GLOBALS = {
    ("numpy.core.multiarray", "_reconstruct"),
    ("numpy._core.multiarray", "_reconstruct"),
    ("numpy.core.multiarray", "scalar"),
    ("numpy._core.multiarray", "scalar"),
    ("numpy.core.numeric", "_frombuffer"),
    ("numpy._core.numeric", "_frombuffer"),
    ("numpy", "ndarray"),
    ("numpy", "dtype"),
    ("_codecs", "encode"),
}


class _NumpyOnlyUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str) -> Any:
        if (module, name) not in _ALLOWED_GLOBALS:
            raise pickle.UnpicklingError(f"global {module}.{name} is not allowed in a CIFAR batch")
        if module.startswith("numpy.core."):  # NumPy 2 moved these; avoid the deprecated alias
            module = "numpy._core." + module[len("numpy.core.") :]
        return super().find_class(module, name)


def _str_keys(entry: Mapping[Any, Any]) -> dict[str, Any]:
    return {(k.decode("latin1") if isinstance(k, bytes) else str(k)): v for k, v in entry.items()}


def read_cifar_batch(
    dataset: str, path: Path, label_key: str, num_classes: int, expected_md5: str | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """One pickle batch → ``(images uint8 N×3×32×32, labels int64 N)``; any problem is a DatasetError."""
    raw = read_verified(dataset, path, expected_md5)
    try:
        # latin1 is how NumPy arrays pickled under Python 2 must be decoded.
        entry = _NumpyOnlyUnpickler(io.BytesIO(raw), encoding="latin1").load()
    except Exception as e:  # pickle raises many types (UnpicklingError, EOFError, ValueError, ...)
        raise corrupt_file(dataset, path, f"not a readable pickle batch ({type(e).__name__}: {e})") from None
    if not isinstance(entry, Mapping):
        raise corrupt_file(dataset, path, f"expected a pickled dict, got {type(entry).__name__}")
    fields = _str_keys(entry)
    if "data" not in fields or label_key not in fields:
        raise corrupt_file(dataset, path, f"missing key 'data' or '{label_key}' (has {sorted(fields)})")
    data = np.asarray(fields["data"])
    if data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != CIFAR_ROW_BYTES:
        raise corrupt_file(dataset, path, f"'data' must be uint8 N×{CIFAR_ROW_BYTES}, got {data.dtype} {data.shape}")
    try:
        labels = np.asarray(fields[label_key], dtype=np.int64)
    except (TypeError, ValueError) as e:
        raise corrupt_file(dataset, path, f"'{label_key}' is not a list of integers ({e})") from None
    if labels.shape != (data.shape[0],):
        raise corrupt_file(dataset, path, f"{labels.shape} labels for {data.shape[0]} images")
    if labels.size and (labels.min() < 0 or labels.max() >= num_classes):
        raise corrupt_file(dataset, path, f"labels outside 0..{num_classes - 1}")
    return data.reshape(-1, *CIFAR_IMAGE_SHAPE), labels


def _read_files(
    name: str, directory: Path, files: tuple[str, ...], layout: CifarLayout, checksums: Mapping[str, str] | None
) -> tuple[np.ndarray, np.ndarray]:
    md5 = checksums or {}
    pairs = [read_cifar_batch(name, directory / f, layout.label_key, layout.num_classes, md5.get(f)) for f in files]
    return np.concatenate([p[0] for p in pairs]), np.concatenate([p[1] for p in pairs])


def load_cifar_directory(name: str, data_dir: Path, checksums: Mapping[str, str] | None) -> Dataset:
    """Load ``cifar10``/``cifar100`` batches from ``<data_dir>/<name>/<folder>/``.

    ``checksums`` maps batch file name → md5 (``None`` skips verification, for user-made files).
    """
    layout = CIFAR_LAYOUTS[name]
    directory = data_dir / name / layout.folder
    train_x, train_y = _read_files(name, directory, layout.train_files, layout, checksums)
    test_x, test_y = _read_files(name, directory, layout.test_files, layout, checksums)
    norm = NORMALIZATION[name]
    return Dataset(
        name=name,
        train=image_data(train_x, train_y, norm),
        test=image_data(test_x, test_y, norm),
        input_shape=CIFAR_IMAGE_SHAPE,
        num_classes=layout.num_classes,
    )


def load_cifar_dataset(name: str, data_dir: Path) -> Dataset:
    """``cifar10`` or ``cifar100`` from ``<data_dir>/<name>/``, md5-verified against the official values."""
    if name not in CIFAR_LAYOUTS:
        raise ValueError(f"{name!r} is not a CIFAR dataset; choose one of {tuple(CIFAR_LAYOUTS)}")
    return load_cifar_directory(name, data_dir, CIFAR_LAYOUTS[name].md5)
