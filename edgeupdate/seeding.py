"""Every random choice derives from (seed, round, device, purpose).

``derive_seed(seed, "init", round)`` always returns the same 63-bit integer for the same
arguments, in every process, so a Ray actor and the server agree without talking.
"""

from __future__ import annotations

import hashlib

import numpy as np
import torch

SeedPart = int | str


def derive_seed(seed: int, *parts: SeedPart) -> int:
    """A deterministic 63-bit seed for ``(seed, *parts)`` (stable across processes)."""
    text = "\x1f".join([str(int(seed)), *map(str, parts)])  # the seed and parts, unit-separated
    digest = hashlib.blake2b(text.encode(), digest_size=8).digest()
    return int.from_bytes(digest, "little") & ((1 << 63) - 1)


def numpy_rng(seed: int, *parts: SeedPart) -> np.random.Generator:
    """A NumPy generator for ``(seed, *parts)``."""
    return np.random.default_rng(derive_seed(seed, *parts))


def torch_generator(seed: int, *parts: SeedPart) -> torch.Generator:
    """A CPU torch generator for ``(seed, *parts)``."""
    g = torch.Generator()
    g.manual_seed(derive_seed(seed, *parts))
    return g
