"""Context-modelled position coding (``coding = "context"``): significance flags given row and column.

A tensor's mask is viewed as a matrix: output channels (dim 0) × the rest. One *orientation*
makes its rows (output neurons) the coded lines, the other its columns (input features). Then:

1. the number of flags in every line, ``n_l`` (adaptive categorical, :mod:`.entropy`); their sum
   must equal the table's count;
2. the lines with ``0 < n_l < L`` in order of decreasing ``n_l`` (ties by index), a block of lines
   at a time. Flag ``j`` of line ``l`` is coded with ``P(1) = n_l · w_j / Σ w``, where
   ``w_j = Q·h_j + m`` and ``h_j`` counts the flags already decoded at position ``j`` of earlier
   lines. So the line's known count sets the density, and the positions that were often set in
   earlier (denser) lines get most of it: DPU's masks cluster by output neuron *and* by input
   feature, which this captures and the i.i.d. bound H(k) does not.

Lines with ``n_l = 0`` or ``n_l = L`` cost nothing beyond their count. The encoder tries both
orientations and every prior strength ``m`` and keeps the smallest stream; its first byte names the
choice. All probabilities are one float64 division of exact integers, so they are bit-identical on
both sides. Layout: ``u8 variant | u8 count model | ANS words``.
"""

from __future__ import annotations

import math

import numpy as np

from edgeupdate.updates.entropy import StackDecoder, StackEncoder, best_adaptive_model
from edgeupdate.updates.errors import FormatError

_Q = 16
_PRIORS = (1, 4, 16, 64)
_MAX_LINE = 1 << 16  # line length bound: the count alphabet is L + 1
MAX_LINES_PER_BYTE = 4096  # format rule: bounds the line counts a decoder allocates from a short stream
_MAX_BLOCKS = 256
_P_MAX = 1.0 - 2.0 ** -16


def matrix_shape(shape: tuple[int, ...] | int) -> tuple[int, int]:
    """(rows, columns) of a tensor's mask: dim 0 × the rest; ``(1, numel)`` for 0-d/1-d tensors."""
    if isinstance(shape, int):
        return 1, shape
    if len(shape) < 2:
        return 1, math.prod(shape)
    return shape[0], math.prod(shape[1:])


def _lines(mask: np.ndarray, orientation: int) -> np.ndarray:
    return mask if orientation == 0 else mask.T


def _schedule(counts: np.ndarray) -> list[np.ndarray]:
    """Blocks of line indices with ``n > 0`` in decreasing-count order (at most ``_MAX_BLOCKS`` blocks)."""
    order = np.argsort(-counts, kind="stable")
    order = order[counts[order] > 0]
    if order.size == 0:
        return []
    size = -(-order.size // _MAX_BLOCKS)
    return [order[i:i + size] for i in range(0, order.size, size)]


def _probabilities(n: np.ndarray, history: np.ndarray, done: int, prior: int) -> np.ndarray:
    """P(flag = 1) for lines with counts ``n`` (rows) at every position, given the ``history``."""
    w = _Q * history + prior
    total = float(_Q * done + history.size * prior)
    return np.minimum((n[:, None] * w[None, :]).astype(np.float64) / total, _P_MAX)


def _encode_variant(mask: np.ndarray, variant: int, count_model: int | None = None) -> tuple[bytes, int]:
    orientation, prior = divmod(variant, len(_PRIORS))
    lines = _lines(mask, orientation)
    length = lines.shape[1]
    counts = lines.sum(axis=1, dtype=np.int64)
    cm = best_adaptive_model(counts, length + 1) if count_model is None else count_model
    history = np.zeros(length, dtype=np.int64)
    done = 0
    bits, probs = [], []
    for block in _schedule(counts):
        n = counts[block]
        coded = block[n < length]
        if coded.size:
            bits.append(lines[coded].reshape(-1))
            probs.append(_probabilities(counts[coded], history, done, _PRIORS[prior]).reshape(-1))
        history += lines[block].sum(axis=0, dtype=np.int64)
        done += int(n.sum())
    enc = StackEncoder()
    if bits:
        enc.push_bernoulli(np.concatenate(bits), np.concatenate(probs))
    enc.push_adaptive(counts, length + 1, cm)
    return bytes((variant, cm)) + enc.data(), cm


def encode_context(positions: np.ndarray, shape: tuple[int, ...]) -> bytes:
    """The smallest context-coded stream of sorted flat ``positions`` over all variants."""
    rows, cols = matrix_shape(shape)
    mask = np.zeros(rows * cols, dtype=np.uint8)
    mask[positions] = 1
    mask = mask.reshape(rows, cols)
    best: bytes | None = None
    for orientation, length in enumerate((cols, rows)):
        if length > _MAX_LINE:
            continue
        cm = None
        for prior in range(len(_PRIORS)):
            data, cm = _encode_variant(mask, orientation * len(_PRIORS) + prior, cm)
            if n_lines_ok(mask.shape[orientation], len(data)) and (best is None or len(data) < len(best)):
                best = data
    if best is None:
        raise ValueError(f"context coding of shape {shape}: no orientation has lines of at most {_MAX_LINE} "
                         f"weights and at most {MAX_LINES_PER_BYTE} lines per stream byte")
    return best


def n_lines_ok(n_lines: int, nbytes: int) -> bool:
    """The format's bound on lines per stream byte (so a short stream cannot make the decoder allocate much)."""
    return n_lines <= MAX_LINES_PER_BYTE * max(nbytes - 2, 1)


def context_supported(shape: tuple[int, ...]) -> bool:
    """Whether some orientation of ``shape`` has lines short enough for context coding."""
    return min(matrix_shape(shape)) <= _MAX_LINE


def decode_context(data: bytes, shape: tuple[int, ...], count: int) -> np.ndarray:
    """Inverse of :func:`encode_context`: sorted flat positions; ``FormatError`` on any inconsistency."""
    if len(data) < 2:
        raise FormatError("context positions: missing variant bytes")
    variant, cm = data[0], data[1]
    if variant >= 2 * len(_PRIORS):
        raise FormatError(f"context positions: unknown variant {variant}")
    orientation, prior = divmod(variant, len(_PRIORS))
    rows, cols = matrix_shape(shape)
    n_lines, length = (rows, cols) if orientation == 0 else (cols, rows)
    if length > _MAX_LINE:
        raise FormatError(f"context positions: line of {length} weights exceeds {_MAX_LINE}")
    if not n_lines_ok(n_lines, len(data)):
        raise FormatError(f"context positions: {n_lines} lines in a {len(data)}-byte stream")
    dec = StackDecoder(data[2:], "context positions")
    counts = dec.adaptive(n_lines, length + 1, cm)
    if int(counts.sum()) != count:
        raise FormatError(f"context positions: line counts sum to {int(counts.sum())}, table says {count}")
    lines = np.zeros((n_lines, length), dtype=np.uint8)
    history = np.zeros(length, dtype=np.int64)
    done = 0
    for block in _schedule(counts):
        n = counts[block]
        coded = block[n < length]
        lines[block[n == length]] = 1
        if coded.size:
            p = _probabilities(counts[coded], history, done, _PRIORS[prior])
            flags = dec.bernoulli(p.reshape(-1)).reshape(coded.size, length)
            if not np.array_equal(flags.sum(axis=1), counts[coded]) or flags.max(initial=0) > 1:
                raise FormatError("context positions: a line's flags disagree with its count")
            lines[coded] = flags
        history += lines[block].sum(axis=0, dtype=np.int64)
        done += int(n.sum())
    dec.finish()
    mask = lines if orientation == 0 else lines.T
    return np.flatnonzero(mask.reshape(-1)).astype(np.int64)
