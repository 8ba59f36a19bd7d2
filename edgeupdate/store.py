"""The shared, content-addressed model store: each distinct weight state once per run.

A fleet of 10,000 devices holds a handful of distinct models. A device keeps only its version and
hash; the weights live here, one file per state hash (``<root>/<hash>.pt``), written atomically
(temporary file, then rename) so a crash part-way never leaves a readable half-state. Every process
keeps its own small LRU of states it read; a state read from disk is checked against its hash, so
nothing unverified is ever handed to a device. Version 0 (the factory image, regenerable from the
seed) and the empty state of a student device before its first model need no file.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable
from pathlib import Path

import torch

from edgeupdate.lru import LRU
from edgeupdate.updates import StateDict, state_hash


class StoreError(RuntimeError):
    """A state is missing from the store or its file does not hash to its name."""


class ModelStore:
    """States by hash under ``root``, with a per-process LRU of ``capacity`` states."""

    def __init__(self, root: Path, known: dict[str, StateDict] | None = None, capacity: int = 8) -> None:
        self.root = Path(root)
        self._known = dict(known or {})  # regenerable states (factory image, empty student)
        self._cache: LRU[str, StateDict] = LRU(capacity)

    def path(self, digest: str) -> Path:
        return self.root / f"{digest}.pt"

    def __contains__(self, digest: str) -> bool:
        return digest in self._known or digest in self._cache or self.path(digest).exists()

    def put(self, weights: StateDict, digest: str | None = None) -> str:
        """Store ``weights`` (once: an existing file of that hash is kept); return their hash."""
        digest = digest or state_hash(weights)
        if digest not in self._known and not self.path(digest).exists():
            self.root.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(dir=self.root, prefix=f".{digest[:16]}-", suffix=".tmp")
            try:
                with os.fdopen(fd, "wb") as fh:
                    torch.save({k: v.detach().cpu() for k, v in weights.items()}, fh)
                os.replace(tmp, self.path(digest))
            finally:
                if os.path.exists(tmp):
                    os.unlink(tmp)
        self._remember(digest, weights)
        return digest

    def get(self, digest: str) -> StateDict:
        """The state of hash ``digest`` (read-only by convention: callers copy before changing it)."""
        if digest in self._known:
            return self._known[digest]
        cached = self._cache.get(digest)
        if cached is not None:
            return cached
        try:
            weights = torch.load(self.path(digest), weights_only=True)
        except FileNotFoundError:
            raise StoreError(f"no state {digest[:16]} in the model store {self.root}") from None
        if state_hash(weights) != digest:
            raise StoreError(f"the stored state {self.path(digest)} does not hash to its name")
        self._remember(digest, weights)
        return weights

    def _remember(self, digest: str, weights: StateDict) -> None:
        if digest in self._known:
            return
        self._cache.put(digest, weights)


class ApplyCache:
    """Applying a package to a base, once per (base hash, payload digest) in a process.

    Every device still decodes (checksum, signature) and checks base and result hashes itself;
    what is shared is the arithmetic and the stored result.
    """

    def __init__(self, capacity: int = 64) -> None:
        self._results: LRU[tuple[str, str], tuple[str, str]] = LRU(capacity)

    def get_or_apply(self, key: tuple[str, str], apply: Callable[[], tuple[str, str]]) -> tuple[str, str]:
        """``(result hash, error)`` of ``apply()`` for ``key``; computed on the first call only."""
        return self._results.get_or_compute(key, apply)
