"""Download code exercised against local ``file://`` mirrors (no network): checksum, atomic placement,
mirror fallback, CIFAR archive extraction and its path-traversal guard."""

from __future__ import annotations

import dataclasses
import hashlib
import io
import tarfile
from pathlib import Path

import pytest
from dataset_files import SHARED_DATA_DIR, cifar_batch

from edgeupdate.datasets import DatasetError, download_dataset, load_dataset
from edgeupdate.datasets import cifar as cifar_module
from edgeupdate.datasets import download as download_module
from edgeupdate.datasets.download import fetch_file
from edgeupdate.datasets.mnist import IDX_FILES


def _md5(data: bytes) -> str:
    return hashlib.md5(data).hexdigest()


def _leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name.endswith(".part"))


def test_fetch_file_places_a_verified_copy(tmp_path: Path) -> None:
    source = tmp_path / "mirror" / "blob.gz"
    source.parent.mkdir()
    source.write_bytes(b"official bytes")
    dest = tmp_path / "data" / "mnist" / "blob.gz"

    fetch_file("mnist", [source.as_uri()], dest, _md5(b"official bytes"))

    assert dest.read_bytes() == b"official bytes"
    assert _leftovers(dest.parent) == []


def test_fetch_file_skips_a_mirror_with_wrong_content_and_uses_the_next(tmp_path: Path) -> None:
    (tmp_path / "bad").mkdir()
    (tmp_path / "good").mkdir()
    (tmp_path / "bad" / "f").write_bytes(b"tampered")
    (tmp_path / "good" / "f").write_bytes(b"official")
    dest = tmp_path / "out" / "f"

    mirrors = [(tmp_path / "bad" / "f").as_uri(), (tmp_path / "good" / "f").as_uri()]

    fetch_file("mnist", mirrors, dest, _md5(b"official"))

    assert dest.read_bytes() == b"official"


def test_fetch_file_failure_leaves_no_file_and_names_every_mirror(tmp_path: Path) -> None:
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "f").write_bytes(b"tampered")
    dest = tmp_path / "out" / "f"
    urls = [(tmp_path / "bad" / "f").as_uri(), (tmp_path / "nowhere" / "f").as_uri()]

    with pytest.raises(DatasetError) as info:
        fetch_file("mnist", urls, dest, _md5(b"official"))

    message = str(info.value)
    assert message.startswith("mnist: could not download f: ") and "\n" not in message
    assert f"{urls[0]}: md5 {_md5(b'tampered')} != official {_md5(b'official')}" in message
    assert urls[1] in message
    assert not dest.exists() and _leftovers(dest.parent) == []


def test_download_then_load_mnist_from_a_local_mirror(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    if not (SHARED_DATA_DIR / "mnist" / "t10k-images-idx3-ubyte.gz").is_file():
        pytest.skip(f"real mnist files not present under {SHARED_DATA_DIR.resolve()}")
    mirror = (SHARED_DATA_DIR / "mnist").resolve().as_uri() + "/"
    monkeypatch.setitem(download_module.IDX_MIRRORS, "mnist", ((tmp_path / "dead").as_uri() + "/", mirror))
    data_dir = tmp_path / "cache"
    # A damaged file already in place must be replaced, not trusted.
    (data_dir / "mnist").mkdir(parents=True)
    (data_dir / "mnist" / "t10k-labels-idx1-ubyte.gz").write_bytes(b"junk")

    ds = load_dataset("mnist", data_dir, download=True)

    assert (len(ds.train), len(ds.test)) == (60000, 10000)
    assert sorted(p.name for p in (data_dir / "mnist").iterdir()) == sorted(IDX_FILES.all())


def _tar_gz(members: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        for name, payload in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(payload)
            tar.addfile(info, io.BytesIO(payload))
    return buffer.getvalue()


def _serve_cifar_archive(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, members: dict[str, bytes]) -> None:
    archive = _tar_gz(members)
    mirror = tmp_path / "mirror"
    mirror.mkdir()
    (mirror / "cifar-100-python.tar.gz").write_bytes(archive)
    monkeypatch.setitem(
        download_module.CIFAR_ARCHIVES,
        "cifar100",
        ("cifar-100-python.tar.gz", _md5(archive), (mirror.as_uri() + "/",)),
    )
    batch_md5 = {Path(k).name: _md5(v) for k, v in members.items() if k.startswith("cifar-100-python/")}
    layout = dataclasses.replace(cifar_module.CIFAR_LAYOUTS["cifar100"], md5=batch_md5)
    monkeypatch.setitem(cifar_module.CIFAR_LAYOUTS, "cifar100", layout)


def test_download_extracts_the_cifar_archive_and_load_verifies_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    train, _, _ = cifar_batch(5, seed=1, label_key=b"fine_labels", num_classes=100)
    test, _, _ = cifar_batch(2, seed=2, label_key=b"fine_labels", num_classes=100)
    members = {"cifar-100-python/train": train, "cifar-100-python/test": test, "cifar-100-python/meta": b"m"}
    _serve_cifar_archive(tmp_path, monkeypatch, members)
    data_dir = tmp_path / "cache"

    ds = load_dataset("cifar100", data_dir, download=True)

    assert (len(ds.train), len(ds.test)) == (5, 2)
    assert ds.train.x.shape == (5, 3, 32, 32)
    assert (data_dir / "cifar100" / "cifar-100-python.tar.gz").is_file()
    assert sorted(p.name for p in (data_dir / "cifar100").iterdir()) == ["cifar-100-python", "cifar-100-python.tar.gz"]
    assert (data_dir / "cifar100" / "cifar-100-python" / "train").read_bytes() == train


def test_archive_with_path_traversal_is_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    train, _, _ = cifar_batch(1, seed=1, label_key=b"fine_labels", num_classes=100)
    _serve_cifar_archive(tmp_path, monkeypatch, {"cifar-100-python/train": train, "../../escaped": b"x"})
    data_dir = tmp_path / "cache"

    with pytest.raises(DatasetError, match="cannot be extracted"):
        download_dataset("cifar100", data_dir)

    assert not (tmp_path / "escaped").exists() and not (data_dir / "escaped").exists()
    assert [p.name for p in (data_dir / "cifar100").iterdir()] == ["cifar-100-python.tar.gz"]


def test_digits_needs_no_download_and_unknown_names_are_errors(tmp_path: Path) -> None:
    download_dataset("digits", tmp_path)

    assert list(tmp_path.iterdir()) == []
    with pytest.raises(DatasetError, match="unknown dataset 'svhn'"):
        download_dataset("svhn", tmp_path)
