"""Adaptive entropy coding of small-integer symbols, on ``constriction``'s ANS coder.

``constriction`` (Bamler, https://bamler-lab.github.io/constriction/) is a maintained Rust library
with a numpy API: its ``AnsCoder`` codes whole arrays of symbols in one call, each with its own
model parameters, so an adaptive model costs one Python step per *block*, not per symbol.

Symbols ``s ∈ [0, A)`` are coded in blocks of 16 symbols, then of 1/32 of the symbols already
coded (at most :data:`MAX_BLOCK`). Every symbol of a block is coded with the same categorical
model, built from the counts of all *earlier* blocks: ``P(s) ∝ (K ∗ count)(s)/ΣK + α·base(s)``,
so the decoder rebuilds the model from what it has already decoded and nothing but one model byte
is sent. ``K`` is a small integer smoothing kernel (neighbouring magnitudes are about as likely:
it cuts the cost of learning a smooth distribution from few values), ``base`` is uniform or the
power law ``1/((s+1)(s+2))`` (small symbols likely). The encoder picks (base, α), then ``K``, by
the smallest stream. All model arithmetic is integer convolution plus elementwise IEEE float64
(no float reductions), so encoder and decoder build bit-identical models.

Streams are ANS stacks of ``u32`` words: several streams pushed in reverse decode order share one
coder (:class:`StackEncoder`, :class:`StackDecoder`). A decoder that ends with words left over, or
a word count that is not a whole number of ``u32``, raises ``FormatError``.
"""

from __future__ import annotations

import math
from collections.abc import Iterator

import constriction
import numpy as np

from edgeupdate.updates.errors import FormatError

MAX_BLOCK = 4096
_FIRST_BLOCK = 16
_BLOCK_FRACTION = 32
MAX_SYMBOLS_PER_BYTE = 4096  # format rule for value streams: bounds what a decoder allocates from a short stream
_ALPHAS = (0.25, 1.0, 4.0, 16.0)
_BASES = ("uniform", "power")
_KERNELS = ((1,), (1, 2, 1), (1, 2, 3, 2, 1), (1, 2, 3, 4, 3, 2, 1))
MODELS = tuple((b, a, k) for k in range(len(_KERNELS)) for b in _BASES for a in _ALPHAS)  # index = the model byte
_BERNOULLI = constriction.stream.model.Bernoulli(perfect=False)


def blocks(n: int) -> Iterator[tuple[int, int]]:
    """``[start, end)`` of each block for ``n`` symbols: 16, then 1/32 of those before, at most ``MAX_BLOCK``."""
    start = 0
    while start < n:
        end = min(n, start + max(_FIRST_BLOCK, min(MAX_BLOCK, start // _BLOCK_FRACTION)))
        yield start, end
        start = end


def _base(alphabet: int, kind: str) -> np.ndarray:
    s = np.arange(alphabet, dtype=np.float64)
    if kind == "uniform":
        return np.full(alphabet, 1.0 / alphabet)
    return (alphabet + 1.0) / (alphabet * (s + 1.0) * (s + 2.0))  # Σ 1/((s+1)(s+2)) = A/(A+1), normalised


def _block_models(symbols: np.ndarray, alphabet: int, model: int) -> Iterator[tuple[int, int, np.ndarray]]:
    """(start, end, probabilities) of every block; ``symbols`` holds at least those decoded so far."""
    kind, alpha, k = MODELS[model]
    kernel = np.array(_KERNELS[k], dtype=np.int64)
    prior = alpha * _base(alphabet, kind)
    counts = np.zeros(alphabet, dtype=np.int64)
    for start, end in blocks(symbols.size):
        smooth = np.convolve(counts, kernel)[kernel.size // 2: kernel.size // 2 + alphabet]
        yield start, end, smooth.astype(np.float64) / float(kernel.sum()) + prior
        counts += np.bincount(symbols[start:end], minlength=alphabet)[:alphabet]


class StackEncoder:
    """Collects streams; ``push`` them in *reverse* of the order the decoder reads them."""

    def __init__(self) -> None:
        self._coder = constriction.stream.stack.AnsCoder()

    def push_adaptive(self, symbols: np.ndarray, alphabet: int, model: int) -> None:
        s = np.ascontiguousarray(symbols, dtype=np.int32)
        if s.size and (int(s.min()) < 0 or int(s.max()) >= alphabet):
            raise ValueError(f"symbols must lie in [0, {alphabet})")
        if alphabet == 1:  # nothing to code: every symbol is 0
            return
        parts = list(_block_models(s, alphabet, model))
        for start, end, probs in reversed(parts):
            self._coder.encode_reverse(s[start:end], constriction.stream.model.Categorical(probs, perfect=False))

    def push_bernoulli(self, bits: np.ndarray, p: np.ndarray) -> None:
        if bits.size:
            self._coder.encode_reverse(np.ascontiguousarray(bits, dtype=np.int32), _BERNOULLI,
                                       np.ascontiguousarray(p, dtype=np.float64))

    def bits(self) -> int:
        return int(self._coder.num_bits())

    def data(self) -> bytes:
        return self._coder.get_compressed().astype("<u4").tobytes()


class StackDecoder:
    """Reads the streams of a :class:`StackEncoder` in order; :meth:`finish` checks nothing is left."""

    def __init__(self, data: bytes, what: str) -> None:
        if len(data) % 4:
            raise FormatError(f"{what}: entropy-coded stream of {len(data)} bytes is not whole 32-bit words")
        words = np.frombuffer(data, dtype="<u4").astype(np.uint32)
        if words.size and words[-1] == 0:
            raise FormatError(f"{what}: entropy-coded stream ends in a zero word")
        self._coder = constriction.stream.stack.AnsCoder(words)
        self.what = what

    def adaptive(self, count: int, alphabet: int, model: int) -> np.ndarray:
        if not 0 <= model < len(MODELS):
            raise FormatError(f"{self.what}: unknown entropy model {model}")
        out = np.zeros(count, dtype=np.int64)
        if alphabet == 1:
            return out
        for start, end, probs in _block_models(out, alphabet, model):
            out[start:end] = self._coder.decode(constriction.stream.model.Categorical(probs, perfect=False), end - start)
        return out

    def bernoulli(self, p: np.ndarray) -> np.ndarray:
        if p.size == 0:
            return np.zeros(0, dtype=np.int64)
        return self._coder.decode(_BERNOULLI, np.ascontiguousarray(p, dtype=np.float64)).astype(np.int64)

    def finish(self) -> None:
        if not self._coder.is_empty():
            raise FormatError(f"{self.what}: entropy-coded stream has data left after its symbols")


def _bits(push, model: int) -> int:
    enc = StackEncoder()
    push(enc, model)
    return enc.bits()


def _best_model(push) -> int:
    """(base, α) with no smoothing first, then the smoothing kernel: the model byte of the smallest stream."""
    plain = [m for m, (_, _, k) in enumerate(MODELS) if k == 0]
    first = min(plain, key=lambda m: _bits(push, m))
    kind, alpha, _ = MODELS[first]
    same = [m for m, (b, a, _) in enumerate(MODELS) if (b, a) == (kind, alpha)]
    return min(same, key=lambda m: _bits(push, m))


def best_adaptive_model(symbols: np.ndarray, alphabet: int) -> int:
    """The model byte whose adaptive stream for ``symbols`` is smallest."""
    return _best_model(lambda enc, m: enc.push_adaptive(symbols, alphabet, m))


def empirical_entropy_bits(symbols: np.ndarray) -> float:
    """Empirical (order-0) entropy of ``symbols`` in bits per symbol (0 for fewer than 2 distinct)."""
    if symbols.size == 0:
        return 0.0
    _, counts = np.unique(symbols, return_counts=True)
    p = counts / symbols.size
    return float(-(p * np.log2(p)).sum()) if counts.size > 1 else 0.0


# --- int8 value symbols ---------------------------------------------------------------------------

_MAGNITUDES = 128  # |q| ∈ [0, 127]
# Bucketed magnitudes (for few values, where learning 128 probabilities costs too much): the bucket
# index is coded adaptively, the offset inside the bucket uniformly (exp-Golomb-like, two per octave).
_EDGES = np.array([0, 1, 2, 3, 4, 6, 8, 12, 16, 24, 32, 48, 64, 96, 128], dtype=np.int64)
_WIDTHS = np.diff(_EDGES)
_BUCKETED = 0x80
_UNIFORM = constriction.stream.model.Uniform()


def _push_magnitudes(enc: StackEncoder, mags: np.ndarray, model: int) -> None:
    if model & _BUCKETED:
        bucket = np.searchsorted(_EDGES, mags, side="right") - 1
        wide = _WIDTHS[bucket] > 1
        if wide.any():
            enc._coder.encode_reverse((mags - _EDGES[bucket])[wide].astype(np.int32), _UNIFORM,
                                      _WIDTHS[bucket][wide].astype(np.int32))
        enc.push_adaptive(bucket, _WIDTHS.size, model & ~_BUCKETED)
    else:
        enc.push_adaptive(mags, _MAGNITUDES, model)


def _magnitude_model(mags: np.ndarray) -> int:
    """The smallest of the adaptive models, over the full alphabet or over buckets."""
    full = _best_model(lambda enc, m: _push_magnitudes(enc, mags, m))
    bucketed = _best_model(lambda enc, m: _push_magnitudes(enc, mags, _BUCKETED | m)) | _BUCKETED
    return min((full, bucketed), key=lambda m: _bits(lambda enc, mm: _push_magnitudes(enc, mags, mm), m))


def encode_int8_symbols(q: np.ndarray) -> bytes:
    """Entropy-code int8 symbols ``q`` ∈ [−127, 127]: adaptive magnitudes, then adaptive signs of the non-zero ones.

    Layout: ``u8 magnitude model | u8 sign model | ANS words``; magnitude model bit 7: bucketed.
    """
    q = np.asarray(q, dtype=np.int64)
    if q.size and (q.min() < -127 or q.max() > 127):
        raise ValueError("int8 symbols must lie in [-127, 127]")
    mags = np.abs(q)
    signs = (q[q != 0] < 0).astype(np.int64)
    mm, sm = _magnitude_model(mags), best_adaptive_model(signs, 2)
    enc = StackEncoder()
    enc.push_adaptive(signs, 2, sm)
    _push_magnitudes(enc, mags, mm)
    return bytes((mm, sm)) + enc.data()


def decode_int8_symbols(data: bytes, count: int) -> np.ndarray:
    """Inverse of :func:`encode_int8_symbols` for ``count`` symbols (an int8 array)."""
    if len(data) < 2:
        raise FormatError("entropy-coded values: missing model bytes")
    dec = StackDecoder(data[2:], "entropy-coded values")
    mm = data[0]
    if mm & _BUCKETED:
        bucket = dec.adaptive(count, _WIDTHS.size, mm & ~_BUCKETED)
        mags = _EDGES[bucket].copy()
        wide = _WIDTHS[bucket] > 1
        if wide.any():
            mags[wide] += dec._coder.decode(_UNIFORM, _WIDTHS[bucket][wide].astype(np.int32)).astype(np.int64)
    else:
        mags = dec.adaptive(count, _MAGNITUDES, mm)
    nonzero = mags != 0
    signs = dec.adaptive(int(nonzero.sum()), 2, data[1])
    dec.finish()
    q = mags.copy()
    q[np.flatnonzero(nonzero)[signs == 1]] *= -1
    return q.astype(np.int8)


def scale_bytes(precision: str, n_channels: int) -> int:
    """Bytes of float32 scales in front of int8 symbols."""
    return 4 * n_channels if precision == "int8-channel" else 4


def pack_entropy(plain: bytes, precision: str, n_channels: int) -> bytes | None:
    """Entropy-pack plain int8 value bytes (scales kept raw, symbols coded); None when the stream
    would hold more than :data:`MAX_SYMBOLS_PER_BYTE` symbols per byte (the decoder's allocation bound)."""
    if precision not in ("int8", "int8-channel"):
        raise ValueError(f"entropy value coding needs int8 symbols, not precision {precision!r}")
    head = scale_bytes(precision, n_channels)
    coded = encode_int8_symbols(np.frombuffer(plain[head:], dtype=np.int8))
    if len(plain) - head > MAX_SYMBOLS_PER_BYTE * len(coded):
        return None
    return plain[:head] + coded


def unpack_entropy(packed: bytes, precision: str, count: int, n_channels: int) -> bytes:
    """Inverse of :func:`pack_entropy`: the plain value bytes for ``count`` values."""
    if precision not in ("int8", "int8-channel"):
        raise FormatError(f"entropy-coded values with precision {precision!r}")
    head = scale_bytes(precision, n_channels)
    if len(packed) < head:
        raise FormatError(f"entropy-coded values: {len(packed)} bytes cannot hold {head} scale bytes")
    if count > MAX_SYMBOLS_PER_BYTE * (len(packed) - head):
        raise FormatError(f"entropy-coded values: {count} symbols in {len(packed) - head} bytes "
                          f"(at most {MAX_SYMBOLS_PER_BYTE} per byte)")
    return packed[:head] + decode_int8_symbols(packed[head:], count).tobytes()


def bits_per_symbol(nbytes: int, count: int) -> float:
    """Coded bits per symbol (``nan`` for no symbols)."""
    return 8.0 * nbytes / count if count else math.nan
