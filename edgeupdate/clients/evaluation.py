"""Batched evaluation: devices that hold the same weights are evaluated in one pass.

Each distinct model is run once per process over the devices' whole test pool (the test set less
the server's validation part), keeping every image's loss and whether it was classified right; a
device's accuracy and loss are then segment sums over the images it tests on. So 10,000 devices
holding three models cost three forward passes, not 10,000, and the numbers do not depend on how
devices are grouped into nodes.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F

from edgeupdate.lru import LRU
from edgeupdate.runtime import ExperimentRuntime
from edgeupdate.updates import StateDict


class PoolEvaluator:
    """Per-image loss and correctness of each distinct model on the test pool (LRU of ``capacity``)."""

    def __init__(self, runtime: ExperimentRuntime, capacity: int = 8, batch_size: int = 1024) -> None:
        self.runtime = runtime
        self.batch_size = batch_size
        self._results: LRU[str, tuple[np.ndarray, np.ndarray]] = LRU(capacity)
        self._positions: dict[int, np.ndarray] = {}  # per device: drawn once per process, not every round

    def per_image(self, digest: str, weights: StateDict) -> tuple[np.ndarray, np.ndarray]:
        """``(loss, correct)`` of the model ``weights`` (hash ``digest``) on every pool image."""
        return self._results.get_or_compute(digest, lambda: self._on_pool(weights))

    @torch.no_grad()
    def _on_pool(self, weights: StateDict) -> tuple[np.ndarray, np.ndarray]:
        pool = self.runtime.test_pool
        model = self.runtime.model_for(weights)
        model.eval()
        losses, correct = [], []
        for start in range(0, len(pool), self.batch_size):
            batch = pool.subset(slice(start, start + self.batch_size))  # raw images, normalised here
            logits, y = model(batch.x), batch.y
            losses.append(F.cross_entropy(logits, y, reduction="none").double().numpy())
            correct.append((logits.argmax(1) == y).numpy())
        return np.concatenate(losses), np.concatenate(correct)

    def positions(self, device_id: int) -> np.ndarray:
        """Where the device's test images sit in the pool."""
        if device_id not in self._positions:
            layout = self.runtime.layout
            self._positions[device_id] = np.searchsorted(layout.test_pool, layout.test_indices(device_id))
        return self._positions[device_id]

    def evaluate(self, held: dict[int, tuple[str, StateDict]]) -> dict[int, tuple[float, float, int]]:
        """``{device: (loss, accuracy, test images)}`` for devices holding ``(hash, weights)``; a
        device holding no model (a student device before its first student) gets NaN."""
        out: dict[int, tuple[float, float, int]] = {}
        by_model: dict[str, list[int]] = {}
        for dev, (digest, weights) in held.items():
            if weights:
                by_model.setdefault(digest, []).append(dev)
            else:
                out[dev] = (math.nan, math.nan, len(self.positions(dev)))
        for digest, devices in by_model.items():
            loss, correct = self.per_image(digest, held[devices[0]][1])
            for dev, (l_sum, c_sum, n) in zip(devices, _segment_sums(loss, correct, [self.positions(d) for d in devices])):
                out[dev] = (l_sum / n, c_sum / n, n)
        return out


def _segment_sums(loss: np.ndarray, correct: np.ndarray,
                  positions: Sequence[np.ndarray]) -> list[tuple[float, float, int]]:
    """Per device: (sum of losses, number right, images) over its positions in the pool."""
    sizes = np.array([len(p) for p in positions])
    flat = np.concatenate(positions) if positions else np.zeros(0, dtype=np.int64)
    starts = np.concatenate([[0], np.cumsum(sizes)[:-1]]).astype(np.int64)
    loss_sums = np.add.reduceat(loss[flat], starts) if len(flat) else np.zeros(len(sizes))
    right = np.add.reduceat(correct[flat].astype(np.int64), starts) if len(flat) else np.zeros(len(sizes))
    return [(float(l), float(c), int(n)) for l, c, n in zip(loss_sums, right, sizes)]
