"""Position codings for sparse updates: which of a tensor's I weights changed.

Positions are flat (row-major) indices, strictly increasing. Four codings:

* ``bitmap``: one bit per weight, ``ceil(I/8)`` bytes whatever the density.
* ``varint``: gaps ``g_0 = p_0``, ``g_j = p_j - p_{j-1} - 1`` as LEB128 varints.
* ``golomb``: Golomb-Rice code of the same gaps with parameter ``b``: ``g >> b`` in unary and the
  low ``b`` bits in binary. The unary parts and the fixed-width remainders are stored as two bit
  streams (same total bits as interleaving, but both decode vectorised). ``b`` is the exact
  minimiser of the coded size ``Σ(g_j >> b) + n·(1 + b)``; since ``Σ g_j < I`` that cost is at most
  ``I/2^b + n(1+b)`` for *any* mask, close to the Shannon bound of a Bernoulli(k) mask
  ``H(k)·I`` (thesis ch. 5 "Indexing", S_x(k)) for the whole range k ∈ [0.001, 0.2].

* ``context``: significance flags conditioned on their row and column, entropy-coded with
  adaptive probabilities (:mod:`edgeupdate.updates.context`); needs the tensor's shape.

``auto`` picks whichever coding is smallest for the tensor at hand.
"""

from __future__ import annotations

import math

import numpy as np

from edgeupdate.updates.context import context_supported, decode_context, encode_context
from edgeupdate.updates.errors import FormatError

CODINGS = ("bitmap", "varint", "golomb", "context")
_MAX_RICE_BITS = 40


def entropy_bound_bits(k: float) -> float:
    """H(k) = k·log2(1/k) + (1−k)·log2(1/(1−k)): bits per weight for a Bernoulli(k) mask."""
    if k <= 0.0 or k >= 1.0:
        return 0.0
    return -k * math.log2(k) - (1.0 - k) * math.log2(1.0 - k)


def _gaps(positions: np.ndarray) -> np.ndarray:
    p = np.asarray(positions, dtype=np.int64)
    if p.size == 0:
        return p
    return np.diff(p, prepend=-1) - 1


def _check_positions(positions: np.ndarray, numel: int) -> np.ndarray:
    p = np.ascontiguousarray(positions, dtype=np.int64).reshape(-1)
    if p.size and (p[0] < 0 or p[-1] >= numel or np.any(np.diff(p) <= 0)):
        raise ValueError(f"positions must be strictly increasing in [0, {numel})")
    return p


# --- bitmap -------------------------------------------------------------------------------------

def _bitmap_encode(p: np.ndarray, numel: int) -> bytes:
    bits = np.zeros(numel, dtype=np.uint8)
    bits[p] = 1
    return np.packbits(bits, bitorder="little").tobytes()


def _bitmap_decode(data: bytes, numel: int, count: int) -> np.ndarray:
    if len(data) != (numel + 7) // 8:
        raise FormatError(f"bitmap has {len(data)} bytes, expected {(numel + 7) // 8} for {numel} weights")
    bits = np.unpackbits(np.frombuffer(data, dtype=np.uint8), bitorder="little")
    if bits[numel:].any():
        raise FormatError("bitmap has bits set past the end of the tensor")
    p = np.flatnonzero(bits[:numel]).astype(np.int64)
    if p.size != count:
        raise FormatError(f"bitmap marks {p.size} positions, table says {count}")
    return p


# --- gap + LEB128 varint ------------------------------------------------------------------------

def _varint_lengths(values: np.ndarray) -> np.ndarray:
    lengths = np.ones(values.shape, dtype=np.int64)
    v = values >> 7
    while np.any(v):
        lengths += v > 0
        v >>= 7
    return lengths


def _varint_encode(p: np.ndarray, numel: int) -> bytes:
    g = _gaps(p)
    if g.size == 0:
        return b""
    lengths = _varint_lengths(g)
    starts = np.concatenate(([0], np.cumsum(lengths)[:-1]))
    out = np.zeros(int(lengths.sum()), dtype=np.uint8)
    for j in range(int(lengths.max())):
        sel = lengths > j
        byte = (g[sel] >> (7 * j)) & 0x7F
        cont = (lengths[sel] > j + 1).astype(np.int64) << 7
        out[starts[sel] + j] = (byte | cont).astype(np.uint8)
    return out.tobytes()


def _varint_decode(data: bytes, numel: int, count: int) -> np.ndarray:
    arr = np.frombuffer(data, dtype=np.uint8).astype(np.int64)
    ends = np.flatnonzero(arr < 0x80)
    if ends.size != count or (count and ends[-1] != arr.size - 1) or (count == 0 and arr.size):
        raise FormatError(f"varint positions: found {ends.size} complete varints in {arr.size} bytes, table says {count}")
    if count == 0:
        return np.zeros(0, dtype=np.int64)
    starts = np.concatenate(([0], ends[:-1] + 1))
    lengths = ends - starts + 1
    if lengths.max() > 5:
        raise FormatError("varint positions: gap longer than 5 bytes")
    g = np.zeros(count, dtype=np.int64)
    for j in range(int(lengths.max())):
        sel = lengths > j
        g[sel] |= (arr[starts[sel] + j] & 0x7F) << (7 * j)
    return _positions_from_gaps(g, numel)


# --- Golomb-Rice --------------------------------------------------------------------------------

def rice_cost_bits(gaps: np.ndarray, b: int) -> int:
    """Exact coded size in bits of ``gaps`` under Rice parameter ``b``."""
    return int(np.sum(gaps >> b)) + gaps.size * (1 + b)


def best_rice_parameter(gaps: np.ndarray) -> int:
    """The ``b`` that minimises the Rice-coded size of ``gaps`` (0 for an empty list)."""
    if gaps.size == 0:
        return 0
    top = max(1, int(gaps.max()).bit_length())
    costs = [rice_cost_bits(gaps, b) for b in range(min(top, _MAX_RICE_BITS) + 1)]
    return int(np.argmin(costs))


def _golomb_encode(p: np.ndarray, numel: int, b: int) -> bytes:
    g = _gaps(p)
    if g.size == 0:
        return b""
    q = g >> b
    terminators = np.cumsum(q + 1) - 1
    unary = np.zeros(int(terminators[-1]) + 1, dtype=np.uint8)
    unary[terminators] = 1
    rem = b""
    if b:
        r = g & ((1 << b) - 1)
        shifts = np.arange(b - 1, -1, -1, dtype=np.int64)
        rbits = ((r[:, None] >> shifts[None, :]) & 1).astype(np.uint8).reshape(-1)
        rem = np.packbits(rbits).tobytes()
    return np.packbits(unary).tobytes() + rem


def _golomb_decode(data: bytes, numel: int, count: int, b: int) -> np.ndarray:
    if not 0 <= b <= _MAX_RICE_BITS:
        raise FormatError(f"golomb parameter b={b} out of range")
    if count == 0:
        if data:
            raise FormatError("golomb positions: bytes present but the table says 0 positions")
        return np.zeros(0, dtype=np.int64)
    rem_bytes = (count * b + 7) // 8
    if rem_bytes >= len(data):
        raise FormatError(f"golomb positions: {len(data)} bytes cannot hold {count} positions with b={b}")
    unary = np.unpackbits(np.frombuffer(data[: len(data) - rem_bytes], dtype=np.uint8))
    ones = np.flatnonzero(unary)
    if ones.size != count or unary.size - ones[-1] > 8:
        raise FormatError(f"golomb positions: unary stream holds {ones.size} codes, table says {count}")
    q = np.diff(ones, prepend=-1) - 1
    g = q.astype(np.int64) << b
    if b:
        rbits = np.unpackbits(np.frombuffer(data[len(data) - rem_bytes :], dtype=np.uint8))
        if rbits[count * b :].any():
            raise FormatError("golomb positions: non-zero padding after the remainders")
        shifts = np.arange(b - 1, -1, -1, dtype=np.int64)
        g |= (rbits[: count * b].reshape(count, b).astype(np.int64) << shifts[None, :]).sum(axis=1)
    return _positions_from_gaps(g, numel)


def _positions_from_gaps(g: np.ndarray, numel: int) -> np.ndarray:
    if g.size and int(g.sum()) + g.size > numel:
        raise FormatError(f"positions run past the end of a tensor of {numel} weights")
    return np.cumsum(g + 1) - 1


# --- public API ---------------------------------------------------------------------------------

def _shape(numel: int, shape: tuple[int, ...] | None) -> tuple[int, ...]:
    if shape is None:
        return (numel,)
    if math.prod(shape) != numel:
        raise ValueError(f"shape {shape} does not hold {numel} weights")
    return tuple(shape)


def encode_positions(positions: np.ndarray, numel: int, coding: str,
                     shape: tuple[int, ...] | None = None) -> tuple[str, bytes, dict[str, int]]:
    """Encode sorted flat ``positions`` of a tensor with ``numel`` weights (``shape``: for ``context``).

    Returns ``(coding, data, params)``; ``coding="auto"`` resolves to the smallest coding.
    """
    p = _check_positions(positions, numel)
    if coding == "auto":
        shp = _shape(numel, shape)
        results = [encode_positions(p, numel, c, shp) for c in CODINGS if c != "context"]
        if context_supported(shp):
            try:
                results.append(encode_positions(p, numel, "context", shp))
            except ValueError:  # no orientation within the format's bounds: not a candidate
                pass
        return min(results, key=lambda t: len(t[1]))
    if coding == "context":
        return coding, encode_context(p, _shape(numel, shape)), {}
    if coding == "bitmap":
        return coding, _bitmap_encode(p, numel), {}
    if coding == "varint":
        return coding, _varint_encode(p, numel), {}
    if coding == "golomb":
        b = best_rice_parameter(_gaps(p))
        return coding, _golomb_encode(p, numel, b), {"b": b}
    raise ValueError(f"unknown position coding {coding!r}; expected one of {CODINGS + ('auto',)}")


def decode_positions(data: bytes, numel: int, count: int, coding: str, params: dict,
                     shape: tuple[int, ...] | None = None) -> np.ndarray:
    """Inverse of :func:`encode_positions`; raises ``FormatError`` on any inconsistency."""
    if coding == "context":
        if shape is not None and math.prod(shape) != numel:
            raise FormatError(f"context positions: shape {shape} does not hold {numel} weights")
        return decode_context(data, (numel,) if shape is None else tuple(shape), count)
    if coding == "bitmap":
        return _bitmap_decode(data, numel, count)
    if coding == "varint":
        return _varint_decode(data, numel, count)
    if coding == "golomb":
        b = params.get("b")
        if not isinstance(b, int):
            raise FormatError("golomb positions: missing integer parameter 'b'")
        return _golomb_decode(data, numel, count, b)
    raise FormatError(f"unknown position coding {coding!r}")


def positions_size_bytes(positions: np.ndarray, numel: int, coding: str, shape: tuple[int, ...] | None = None) -> int:
    """Encoded size in bytes of ``positions`` under ``coding``."""
    return len(encode_positions(positions, numel, coding, shape)[1])
