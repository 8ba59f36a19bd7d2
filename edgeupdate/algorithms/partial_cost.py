"""The thesis's analytic server-to-device cost of a partial update (§5.5 "Indexing").

A partial update sends ``k·I`` values of ``S_w`` bits and a mask over ``I`` weights; encoded at the
Shannon bound the mask costs ``S_x(k) = k·log2(1/k) + (1−k)·log2(1/(1−k))`` bits per weight, so the
payload is ``S_w·k·I + S_x(k)·I`` bits. These are the numbers the thesis reports; the package layer
measures real encoded sizes.
"""

from __future__ import annotations

import math

#: Bits per value S_w at each package precision (``package.precision``).
VALUE_BITS = {"fp32": 32, "fp16": 16, "int8": 8, "int8-channel": 8}


def shannon_index_bits(k: float) -> float:
    """``S_x(k)``: bits per weight to encode a Bernoulli(k) mask at the entropy bound (0 at k = 1)."""
    if not 0.0 < k <= 1.0:
        raise ValueError(f"updating ratio k must be in (0, 1], got {k!r}")
    if k == 1.0:
        return 0.0
    return k * math.log2(1.0 / k) + (1.0 - k) * math.log2(1.0 / (1.0 - k))


def analytic_bytes(k: float, num_weights: int, value_bits: int = 32) -> float:
    """``(S_w·k·I + S_x(k)·I) / 8`` bytes for updating ratio ``k`` over ``I = num_weights`` weights."""
    if num_weights < 0:
        raise ValueError(f"num_weights must be non-negative, got {num_weights}")
    if value_bits <= 0:
        raise ValueError(f"value_bits must be positive, got {value_bits}")
    return (value_bits * k * num_weights + shannon_index_bits(k) * num_weights) / 8.0
