"""CIFAR pickle-batch reader on tiny files in the official format."""

from __future__ import annotations

import os
import pickle
from pathlib import Path

import numpy as np
import pytest
from dataset_files import cifar_batch, py2_cifar_pickle

from edgeupdate.datasets import NORMALIZATION, DatasetError, load_dataset
from edgeupdate.datasets.cifar import load_cifar_directory, read_cifar_batch


def test_cifar10_batches_become_normalised_rgb_images_in_channel_row_column_order(tiny_cifar_dir) -> None:
    data_dir, train_data, train_labels = tiny_cifar_dir("cifar10")

    ds = load_cifar_directory("cifar10", data_dir, checksums=None)

    assert (len(ds.train), len(ds.test)) == (20, 3)
    assert ds.input_shape == (3, 32, 32) and ds.num_classes == 10
    assert ds.train.x.shape == (20, 3, 32, 32) and str(ds.train.x.dtype) == "torch.float32"
    np.testing.assert_array_equal(ds.train.y.numpy(), train_labels)
    norm = NORMALIZATION["cifar10"]
    # The official row layout: 1024 red, then 1024 green, then 1024 blue values, each row-major 32×32.
    for c, h, w in [(0, 0, 0), (1, 5, 7), (2, 31, 30)]:
        raw = train_data[3, c * 1024 + h * 32 + w]
        expected = (raw / 255.0 - norm.mean[c]) / norm.std[c]
        assert float(ds.train.x[3, c, h, w]) == pytest.approx(expected, abs=1e-5)


def test_cifar100_uses_fine_labels(tiny_cifar_dir) -> None:
    data_dir, _, train_labels = tiny_cifar_dir("cifar100")

    ds = load_cifar_directory("cifar100", data_dir, checksums=None)

    assert ds.num_classes == 100 and (len(ds.train), len(ds.test)) == (6, 3)
    np.testing.assert_array_equal(ds.train.y.numpy(), train_labels)


@pytest.mark.parametrize("protocol", [2, 4, 5])
def test_batches_with_str_or_bytes_keys_and_any_protocol_are_read(tmp_path: Path, protocol: int) -> None:
    raw, data, labels = cifar_batch(2, seed=0, label_key=b"labels", num_classes=10, protocol=protocol)
    entry = pickle.loads(raw)
    str_keys = {k.decode(): v for k, v in entry.items()}
    (tmp_path / "bytes_keys").write_bytes(raw)
    (tmp_path / "str_keys").write_bytes(pickle.dumps(str_keys, protocol=protocol))

    for name in ("bytes_keys", "str_keys"):
        images, got_labels = read_cifar_batch("cifar10", tmp_path / name, "labels", 10)
        np.testing.assert_array_equal(images.reshape(2, -1), data)
        np.testing.assert_array_equal(got_labels, labels)


def test_python2_cpickle_batches_like_the_official_files_are_read(tmp_path: Path) -> None:
    data = np.random.default_rng(4).integers(0, 256, size=(3, 3072), dtype=np.uint8)
    path = tmp_path / "data_batch_1"
    path.write_bytes(py2_cifar_pickle(data, [3, 0, 9]))

    images, labels = read_cifar_batch("cifar10", path, "labels", 10)

    np.testing.assert_array_equal(images.reshape(3, -1), data)
    assert labels.tolist() == [3, 0, 9]


def test_load_dataset_rejects_batches_whose_md5_is_not_official(tiny_cifar_dir) -> None:
    data_dir, _, _ = tiny_cifar_dir("cifar10")

    with pytest.raises(DatasetError) as info:
        load_dataset("cifar10", data_dir)

    assert "data_batch_1" in str(info.value) and "c99cafc152244af753f735de768cd75f" in str(info.value)


def test_missing_batch_is_named(tiny_cifar_dir) -> None:
    data_dir, _, _ = tiny_cifar_dir("cifar100")
    (data_dir / "cifar100" / "cifar-100-python" / "test").unlink()

    with pytest.raises(DatasetError, match=r"cifar100: file .*cifar-100-python/test is missing \(set --data-dir"):
        load_cifar_directory("cifar100", data_dir, checksums=None)


class _Exploit:
    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.mkdir, (str(self.marker),))


def test_pickle_that_would_run_code_is_refused_without_running_it(tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    path = tmp_path / "data_batch_1"
    path.write_bytes(pickle.dumps({b"data": _Exploit(marker), b"labels": []}, protocol=2))

    with pytest.raises(DatasetError, match="is not allowed in a CIFAR batch"):
        read_cifar_batch("cifar10", path, "labels", 10)

    assert not marker.exists()


@pytest.mark.parametrize(
    ("entry", "message"),
    [
        ({b"data": np.zeros((2, 100), np.uint8), b"labels": [0, 1]}, "'data' must be uint8 N×3072"),
        ({b"data": np.zeros((2, 3072), np.float32), b"labels": [0, 1]}, "'data' must be uint8 N×3072"),
        ({b"data": np.zeros((2, 3072), np.uint8), b"labels": [0]}, r"\(1,\) labels for 2 images"),
        ({b"data": np.zeros((2, 3072), np.uint8), b"labels": [0, 10]}, r"labels outside 0..9"),
        ({b"data": np.zeros((2, 3072), np.uint8)}, "missing key 'data' or 'labels'"),
        ([1, 2, 3], "expected a pickled dict, got list"),
    ],
)
def test_malformed_batches_are_corrupt_file_errors(tmp_path: Path, entry, message: str) -> None:
    path = tmp_path / "test_batch"
    path.write_bytes(pickle.dumps(entry, protocol=2))

    with pytest.raises(DatasetError, match=message) as info:
        read_cifar_batch("cifar10", path, "labels", 10)

    assert str(path) in str(info.value) and "\n" not in str(info.value)


def test_truncated_pickle_is_a_corrupt_file_error(tmp_path: Path) -> None:
    raw, _, _ = cifar_batch(2, seed=0, label_key=b"labels", num_classes=10)
    path = tmp_path / "test_batch"
    path.write_bytes(raw[: len(raw) // 2])

    with pytest.raises(DatasetError, match="not a readable pickle batch"):
        read_cifar_batch("cifar10", path, "labels", 10)
