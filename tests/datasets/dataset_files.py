"""Writers of tiny dataset files in the official formats (IDX .gz, CIFAR pickle batches)."""

from __future__ import annotations

import gzip
import pickle
import struct
from pathlib import Path

import numpy as np

# shared/ sits beside the checkout (…/work/shared next to …/work/<worktree>).
SHARED_DATA_DIR = Path(__file__).resolve().parents[2] / ".." / "shared" / "data"


def idx_bytes(array: np.ndarray, magic: int | None = None) -> bytes:
    """Uncompressed IDX encoding of a uint8 array (magic 0x0803 for 3-D, 0x0801 for 1-D by default)."""
    array = np.ascontiguousarray(array, dtype=np.uint8)
    if magic is None:
        magic = 0x0800 | array.ndim
    return struct.pack(">I", magic) + struct.pack(f">{array.ndim}I", *array.shape) + array.tobytes()


def write_gz(path: Path, payload: bytes) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(gzip.compress(payload, mtime=0))
    return path


def tiny_idx_arrays(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    return rng.integers(0, 256, size=(n, 28, 28), dtype=np.uint8), rng.integers(0, 10, size=n, dtype=np.uint8)


def cifar_batch(
    n: int, seed: int, label_key: bytes, num_classes: int, protocol: int = 2
) -> tuple[bytes, np.ndarray, np.ndarray]:
    """A pickled batch in the official layout (bytes keys) → (pickle bytes, data N×3072, labels)."""
    rng = np.random.default_rng(seed)
    data = rng.integers(0, 256, size=(n, 3072), dtype=np.uint8)
    labels = rng.integers(0, num_classes, size=n).tolist()
    entry = {b"batch_label": b"tiny batch", label_key: labels, b"data": data, b"filenames": [b"x.png"] * n}
    if label_key == b"fine_labels":
        entry[b"coarse_labels"] = [v // 5 for v in labels]
    return pickle.dumps(entry, protocol=protocol), data, np.asarray(labels)


def py2_cifar_pickle(data: np.ndarray, labels: list[int]) -> bytes:
    """A batch as Python 2's cPickle (protocol 2) writes it: ``str`` keys/data, ``numpy.core`` names.

    The official CIFAR files were made this way; Python 3 can only read them with ``encoding="latin1"``.
    Hand-assembled opcodes (see ``pickletools``), since Python 3 cannot produce Python 2 strings.
    """
    n, width = data.shape

    def binint2(v: int) -> bytes:
        return b"M" + struct.pack("<H", v)

    def short_str(text: bytes) -> bytes:
        return b"U" + bytes([len(text)]) + text

    out = b"\x80\x02}q\x00(" + short_str(b"data")
    out += b"cnumpy.core.multiarray\n_reconstruct\nq\x01cnumpy\nndarray\nq\x02K\x00\x85q\x03"
    out += short_str(b"b") + b"\x87q\x04Rq\x05("
    out += b"K\x01" + binint2(n) + binint2(width) + b"\x86q\x06"
    out += b"cnumpy\ndtype\nq\x07" + short_str(b"u1") + b"K\x00K\x01\x87q\x08Rq\x09(K\x03" + short_str(b"|")
    out += b"NNNJ\xff\xff\xff\xffJ\xff\xff\xff\xffK\x00tq\x0ab"
    out += b"\x89T" + struct.pack("<I", data.size) + data.tobytes() + b"tq\x0bb"
    out += short_str(b"labels") + b"]q\x0c(" + b"".join(b"K" + bytes([v]) for v in labels) + b"e"
    return out + b"u."
