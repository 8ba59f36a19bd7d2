"""``load_dataset(name)``: one entry point for every dataset, shared within a process while in use."""

from __future__ import annotations

import threading
import weakref
from pathlib import Path

from edgeupdate.datasets.base import DATASET_NAMES, Dataset
from edgeupdate.datasets.cifar import load_cifar_dataset
from edgeupdate.datasets.digits import load_digits_dataset
from edgeupdate.datasets.errors import DatasetError
from edgeupdate.datasets.mnist import load_idx_dataset
from edgeupdate.datasets.paths import resolve_data_dir

_ALIASES = {"fashion_mnist": "fashion-mnist", "fashionmnist": "fashion-mnist", "fmnist": "fashion-mnist",
            "cifar-10": "cifar10", "cifar_10": "cifar10", "cifar-100": "cifar100", "cifar_100": "cifar100"}


def canonical_name(name: str) -> str:
    """The canonical dataset name (case-insensitive, a few common spellings accepted)."""
    if not isinstance(name, str):
        raise DatasetError(f"dataset name must be a string, got {type(name).__name__}")
    key = name.strip().lower()
    key = _ALIASES.get(key, key)
    if key not in DATASET_NAMES:
        raise DatasetError(f"unknown dataset {name!r}; choose one of {', '.join(DATASET_NAMES)}")
    return key


def needs_files(name: str) -> bool:
    """Whether the dataset is read from the data directory (everything but the embedded ``digits``)."""
    return canonical_name(name) != "digits"


# Weak: a dataset stays loaded while something holds it (a run's runtime holds only the training
# images its devices collect, so the whole split is freed once the runtime is built).
_loaded: "weakref.WeakValueDictionary[tuple[str, Path | None], Dataset]" = weakref.WeakValueDictionary()
_lock = threading.Lock()


def _load_cached(name: str, data_dir: Path | None) -> Dataset:
    with _lock:
        dataset = _loaded.get((name, data_dir))
        if dataset is None:
            dataset = _read(name, data_dir)
            _loaded[(name, data_dir)] = dataset
        return dataset


def _read(name: str, data_dir: Path | None) -> Dataset:
    if name == "digits":
        return load_digits_dataset()
    assert data_dir is not None
    if name in ("mnist", "fashion-mnist"):
        return load_idx_dataset(name, data_dir)
    return load_cifar_dataset(name, data_dir)


def load_dataset(name: str, data_dir: str | Path | None = None, *, download: bool = False) -> Dataset:
    """Load dataset ``name`` (one of :data:`DATASET_NAMES`), normalised, with its train and test split.

    Files are read from ``<data_dir>/<name>/`` where ``data_dir`` is resolved by
    :func:`resolve_data_dir` (``--data-dir`` > ``$EDGEUPDATE_DATA`` > user cache dir). ``digits`` is
    embedded and ignores ``data_dir``. With ``download=True`` missing or damaged files are fetched first.
    A loaded dataset is shared within the process, keyed on (name, resolved directory), for as long
    as anything holds it: treat it as read-only.
    Raises :class:`DatasetError` with a one-line message when files are missing or corrupt.
    """
    key = canonical_name(name)
    if key == "digits":
        return _load_cached(key, None)
    directory = resolve_data_dir(data_dir)
    if download:
        from edgeupdate.datasets.download import download_dataset

        download_dataset(key, directory)
    return _load_cached(key, directory)


def clear_cache() -> None:
    """Forget every shared dataset (tests: the next load reads the files again)."""
    with _lock:
        _loaded.clear()
