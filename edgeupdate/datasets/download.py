"""Fetch official dataset files over HTTP(S), verify their md5 and place them atomically.

Each file is streamed into a temporary file in the destination directory, its md5 is compared with
the official value, and only then is it renamed into place (``os.replace`` is atomic on one file
system), so an interrupted or corrupted download never leaves a half file under the real name.
Mirrors are tried in order until one delivers a file with the right checksum.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import tarfile
import tempfile
import urllib.error
import urllib.request
from collections.abc import Sequence
from pathlib import Path

from edgeupdate.datasets.base import DATASET_NAMES
from edgeupdate.datasets.checksum import file_digest_hex
from edgeupdate.datasets.cifar import CIFAR_LAYOUTS
from edgeupdate.datasets.errors import DatasetError
from edgeupdate.datasets.mnist import IDX_FILES, IDX_MD5

_CHUNK_BYTES = 1 << 20
DOWNLOAD_TIMEOUT_S = 60.0
_USER_AGENT = "edgeupdate-dataset-fetch/0.1 (+python urllib)"

IDX_MIRRORS: dict[str, tuple[str, ...]] = {
    "mnist": (
        "https://ossci-datasets.s3.amazonaws.com/mnist/",
        "https://storage.googleapis.com/cvdf-datasets/mnist/",
        "http://yann.lecun.com/exdb/mnist/",
    ),
    "fashion-mnist": (
        "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",
        "https://github.com/zalandoresearch/fashion-mnist/raw/master/data/fashion/",
    ),
}

CIFAR_ARCHIVES: dict[str, tuple[str, str, tuple[str, ...]]] = {
    # name: (archive file, official md5, mirrors)
    "cifar10": ("cifar-10-python.tar.gz", "c58f30108f718f92721af3b95e74349a", ("https://www.cs.toronto.edu/~kriz/",)),
    "cifar100": ("cifar-100-python.tar.gz", "eb9058c3a382ffc7106e4002c42a8d85", ("https://www.cs.toronto.edu/~kriz/",)),
}


def _has_md5(path: Path, md5: str) -> bool:
    return path.is_file() and file_digest_hex(path, "md5") == md5


def fetch_file(dataset: str, urls: Sequence[str], dest: Path, md5: str, timeout_s: float = DOWNLOAD_TIMEOUT_S) -> None:
    """Download the first of ``urls`` whose content has ``md5`` into ``dest`` (atomic temp file + rename).

    Raises :class:`DatasetError` listing what went wrong with every mirror if none succeeded.
    """
    dest.parent.mkdir(parents=True, exist_ok=True)
    failures: list[str] = []
    for url in urls:
        fd, tmp_name = tempfile.mkstemp(prefix=f".{dest.name}.", suffix=".part", dir=dest.parent)
        tmp = Path(tmp_name)
        try:
            h = hashlib.md5(usedforsecurity=False)
            request = urllib.request.Request(url, headers={"User-Agent": _USER_AGENT})
            with os.fdopen(fd, "wb") as out, urllib.request.urlopen(request, timeout=timeout_s) as response:
                for chunk in iter(lambda: response.read(_CHUNK_BYTES), b""):
                    h.update(chunk)
                    out.write(chunk)
            if h.hexdigest() != md5:
                failures.append(f"{url}: md5 {h.hexdigest()} != official {md5}")
                continue
            os.replace(tmp, dest)
            return
        except (urllib.error.URLError, OSError, ValueError) as e:
            failures.append(f"{url}: {getattr(e, 'reason', None) or e}")
        finally:
            tmp.unlink(missing_ok=True)
    raise DatasetError(f"{dataset}: could not download {dest.name}: " + "; ".join(failures))


def _safe_extract(dataset: str, archive: Path, target: Path) -> None:
    """Extract a tar.gz into ``target`` refusing absolute paths, ``..``, links and devices."""
    with tarfile.open(archive, "r:gz") as tar:
        if hasattr(tarfile, "data_filter"):
            tar.extractall(target, filter="data")
            return
        root = target.resolve()
        for member in tar.getmembers():
            dest = (target / member.name).resolve()
            if not (member.isfile() or member.isdir()) or not dest.is_relative_to(root):
                raise DatasetError(f"{dataset}: archive {archive} has an unsafe member {member.name!r}")
        tar.extractall(target)


def _cifar_complete(name: str, data_dir: Path) -> bool:
    layout = CIFAR_LAYOUTS[name]
    folder = data_dir / name / layout.folder
    return all(_has_md5(folder / f, md5) for f, md5 in layout.md5.items())


def _download_cifar(name: str, data_dir: Path) -> None:
    if _cifar_complete(name, data_dir):
        return
    archive_name, archive_md5, mirrors = CIFAR_ARCHIVES[name]
    root = data_dir / name
    archive = root / archive_name
    if not _has_md5(archive, archive_md5):
        fetch_file(name, [m + archive_name for m in mirrors], archive, archive_md5)
    folder = CIFAR_LAYOUTS[name].folder
    staging = Path(tempfile.mkdtemp(prefix=".extract-", dir=root))
    try:
        try:
            _safe_extract(name, archive, staging)
        except (tarfile.TarError, OSError, EOFError) as e:
            raise DatasetError(f"{name}: archive {archive} cannot be extracted: {e}") from None
        if not (staging / folder).is_dir():
            raise DatasetError(f"{name}: archive {archive} has no folder {folder}/")
        shutil.rmtree(root / folder, ignore_errors=True)
        os.replace(staging / folder, root / folder)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    if not _cifar_complete(name, data_dir):
        raise DatasetError(f"{name}: files extracted from {archive} do not match the official checksums")


def download_dataset(name: str, data_dir: Path) -> None:
    """Make ``<data_dir>/<name>/`` hold the official, md5-verified files of dataset ``name``.

    Files that are already present with the right md5 are kept; missing or damaged ones are fetched
    from the official mirrors. ``digits`` is embedded, so nothing is done for it. The CIFAR archive is
    kept next to the extracted folder so the extraction can be redone without a new download.
    """
    if name not in DATASET_NAMES:
        raise DatasetError(f"unknown dataset {name!r}; choose one of {', '.join(DATASET_NAMES)}")
    data_dir = Path(data_dir)
    if name == "digits":
        return
    if name in IDX_MD5:
        for file_name in IDX_FILES.all():
            dest = data_dir / name / file_name
            md5 = IDX_MD5[name][file_name]
            if not _has_md5(dest, md5):
                fetch_file(name, [m + file_name for m in IDX_MIRRORS[name]], dest, md5)
        return
    _download_cifar(name, data_dir)
