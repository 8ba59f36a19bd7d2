"""edgeupdate.datasets: readers (IDX, CIFAR pickles, embedded digits), download, partitioners.

Pure numpy/torch, no Flower. ``load_dataset(name)`` returns a :class:`Dataset` with normalised
``TensorData`` train/test splits; ``partition_indices`` splits sample indices across devices.
"""

from edgeupdate.datasets.base import DATASET_NAMES, DATASET_SHAPES, NORMALIZATION, Dataset, Normalization
from edgeupdate.datasets.download import download_dataset
from edgeupdate.datasets.errors import DatasetError
from edgeupdate.datasets.partition import PARTITION_METHODS, partition_indices
from edgeupdate.datasets.paths import DATA_DIR_ENV, resolve_data_dir
from edgeupdate.datasets.registry import canonical_name, clear_cache, load_dataset, needs_files

__all__ = [
    "DATASET_NAMES",
    "DATASET_SHAPES",
    "DATA_DIR_ENV",
    "NORMALIZATION",
    "PARTITION_METHODS",
    "Dataset",
    "DatasetError",
    "Normalization",
    "canonical_name",
    "clear_cache",
    "download_dataset",
    "load_dataset",
    "needs_files",
    "partition_indices",
    "resolve_data_dir",
]
