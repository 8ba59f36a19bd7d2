"""IDX (.gz) reader on tiny files written by the test: round trip, normalisation, every corruption."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from dataset_files import idx_bytes, tiny_idx_arrays, write_gz

from edgeupdate.datasets import NORMALIZATION, DatasetError, load_dataset
from edgeupdate.datasets.idx import IDX_IMAGES_MAGIC, IDX_LABELS_MAGIC, read_idx_gz
from edgeupdate.datasets.mnist import load_idx_directory


def test_read_idx_gz_round_trips_images_and_labels(tmp_path: Path) -> None:
    images, labels = tiny_idx_arrays(5, seed=0)
    write_gz(tmp_path / "i.gz", idx_bytes(images))
    write_gz(tmp_path / "l.gz", idx_bytes(labels))

    got_images = read_idx_gz("mnist", tmp_path / "i.gz", expected_magic=IDX_IMAGES_MAGIC)
    got_labels = read_idx_gz("mnist", tmp_path / "l.gz", expected_magic=IDX_LABELS_MAGIC)

    np.testing.assert_array_equal(got_images, images)
    np.testing.assert_array_equal(got_labels, labels)


def test_idx_directory_gives_normalised_nchw_tensors(tiny_idx_dir) -> None:
    folder = tiny_idx_dir("fashion-mnist")
    train_x, train_y = tiny_idx_arrays(7, seed=1)

    ds = load_idx_directory("fashion-mnist", folder, checksums=None)

    norm = NORMALIZATION["fashion-mnist"]
    assert (len(ds.train), len(ds.test)) == (7, 3)
    assert ds.input_shape == (1, 28, 28) and ds.num_classes == 10
    assert ds.train.x.shape == (7, 1, 28, 28) and str(ds.train.x.dtype) == "torch.float32"
    assert str(ds.train.y.dtype) == "torch.int64"
    expected = (train_x[:, None].astype(np.float64) / 255.0 - norm.mean[0]) / norm.std[0]
    np.testing.assert_allclose(ds.train.x.numpy(), expected, rtol=0, atol=1e-5)
    np.testing.assert_array_equal(ds.train.y.numpy(), train_y)


def _error_for(folder: Path, name: str = "mnist") -> str:
    with pytest.raises(DatasetError) as info:
        load_idx_directory(name, folder, checksums=None)
    message = str(info.value)
    assert "\n" not in message and message.startswith(f"{name}: ")
    return message


def test_truncated_gzip_is_a_corrupt_file_error(tiny_idx_dir) -> None:
    folder = tiny_idx_dir()
    target = folder / "train-images-idx3-ubyte.gz"
    target.write_bytes(target.read_bytes()[:-40])

    message = _error_for(folder)

    assert str(target) in message and "corrupt" in message and "gzip" in message


def test_truncated_payload_is_reported_with_sizes(tiny_idx_dir) -> None:
    folder = tiny_idx_dir()
    images, _ = tiny_idx_arrays(7, seed=1)
    target = write_gz(folder / "train-images-idx3-ubyte.gz", idx_bytes(images)[:-100])

    message = _error_for(folder)

    assert str(target) in message and "truncated" in message


def test_trailing_bytes_are_rejected(tiny_idx_dir) -> None:
    folder = tiny_idx_dir()
    _, labels = tiny_idx_arrays(3, seed=2)
    target = write_gz(folder / "t10k-labels-idx1-ubyte.gz", idx_bytes(labels) + b"\x00")

    assert "trailing bytes" in _error_for(folder) and str(target) in _error_for(folder)


def test_labels_file_in_place_of_images_is_a_wrong_magic_error(tiny_idx_dir) -> None:
    folder = tiny_idx_dir()
    (folder / "train-images-idx3-ubyte.gz").write_bytes((folder / "train-labels-idx1-ubyte.gz").read_bytes())

    message = _error_for(folder)

    assert "train-images-idx3-ubyte.gz" in message
    assert f"magic is {IDX_LABELS_MAGIC}, expected {IDX_IMAGES_MAGIC}" in message


def test_non_idx_content_is_rejected(tiny_idx_dir) -> None:
    folder = tiny_idx_dir()
    write_gz(folder / "train-labels-idx1-ubyte.gz", b"<html>not found</html>")

    message = _error_for(folder)

    assert "train-labels-idx1-ubyte.gz" in message and "not an IDX header" in message


def test_plain_uncompressed_file_is_rejected(tiny_idx_dir) -> None:
    folder = tiny_idx_dir()
    images, _ = tiny_idx_arrays(7, seed=1)
    (folder / "train-images-idx3-ubyte.gz").write_bytes(idx_bytes(images))

    assert "not a valid gzip stream" in _error_for(folder)


def test_label_count_must_match_image_count(tiny_idx_dir) -> None:
    folder = tiny_idx_dir()
    write_gz(folder / "t10k-labels-idx1-ubyte.gz", idx_bytes(np.zeros(2, dtype=np.uint8)))

    assert "2 labels but t10k-images-idx3-ubyte.gz has 3 images" in _error_for(folder)


def test_label_outside_the_ten_classes_is_rejected(tiny_idx_dir) -> None:
    folder = tiny_idx_dir()
    write_gz(folder / "t10k-labels-idx1-ubyte.gz", idx_bytes(np.array([1, 2, 12], dtype=np.uint8)))

    assert "label 12 is outside 0..9" in _error_for(folder)


def test_wrong_image_size_is_rejected(tiny_idx_dir) -> None:
    folder = tiny_idx_dir()
    write_gz(folder / "t10k-images-idx3-ubyte.gz", idx_bytes(np.zeros((3, 32, 32), dtype=np.uint8)))

    assert "expected uint8 N×28×28 images" in _error_for(folder)


def test_missing_file_names_path_and_how_to_fix(tiny_idx_dir) -> None:
    folder = tiny_idx_dir()
    (folder / "t10k-images-idx3-ubyte.gz").unlink()

    message = _error_for(folder)

    assert message == (
        f"mnist: file {folder / 't10k-images-idx3-ubyte.gz'} is missing "
        "(set --data-dir or EDGEUPDATE_DATA, or --set dataset.download=true)"
    )


def test_load_dataset_rejects_files_whose_md5_is_not_official(tiny_idx_dir) -> None:
    folder = tiny_idx_dir("mnist")
    data_dir = folder.parent

    with pytest.raises(DatasetError) as info:
        load_dataset("mnist", data_dir)

    message = str(info.value)
    assert str(folder / "train-images-idx3-ubyte.gz") in message
    assert "does not match the official f68b3c2dcbeaaa9fbdd348bbdeb94873" in message


def test_load_dataset_reports_missing_directory(tmp_path: Path) -> None:
    pattern = r"fashion-mnist: file .*fashion-mnist/train-images-idx3-ubyte.gz is missing"
    with pytest.raises(DatasetError, match=pattern):
        load_dataset("fashion-mnist", tmp_path)


def test_gzip_with_bad_crc_is_rejected(tiny_idx_dir) -> None:
    folder = tiny_idx_dir()
    target = folder / "train-labels-idx1-ubyte.gz"
    raw = bytearray(target.read_bytes())
    raw[-8] ^= 0xFF  # CRC32 field in the gzip trailer
    target.write_bytes(bytes(raw))

    assert "not a valid gzip stream" in _error_for(folder)
