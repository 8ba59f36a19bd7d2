"""How to train (:class:`TrainConfig`), apart from the training loop so that configs load without torch.

The CLI reads a config before it imports torch, so that a run's Ray head can start while the rest
loads; :mod:`edgeupdate.training` re-exports the class.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

__all__ = ["TrainConfig"]


@dataclass(frozen=True)
class TrainConfig:
    """How to train: epochs, batch, optimiser and learning-rate schedule.

    ``min_steps`` (default 0: off) gives small datasets at least that many optimiser steps: a
    training on ``n`` samples runs :meth:`epochs_for` ``(n)`` epochs, ``epochs`` stretched so that
    ``epochs × ceil(n / batch_size) ≥ min_steps``, and a step schedule stretches with it (its drops
    fall at the same fractions of the run). Epoch budgets scaled down to save time on large data
    then do not starve the first rounds, where data are few and steps cheap.
    """

    epochs: int = field(default=5, metadata={"min": 0})
    batch_size: int = field(default=64, metadata={"min": 1})
    lr: float = field(default=0.001, metadata={"gt": 0.0})
    optimizer: str = field(default="adam", metadata={"choices": ("adam", "sgd")})
    momentum: float = field(default=0.9, metadata={"min": 0.0, "max": 1.0})
    nesterov: bool = False
    weight_decay: float = field(default=0.0, metadata={"min": 0.0})
    lr_schedule: str = field(default="constant", metadata={"choices": ("constant", "step", "cosine")})
    lr_step_epochs: int = field(default=20, metadata={"min": 1})
    lr_gamma: float = field(default=0.1, metadata={"gt": 0.0})
    device: str = field(default="auto", metadata={"choices": ("auto", "cpu", "cuda")})
    min_steps: int = field(default=0, metadata={"min": 0})

    def epochs_for(self, num_samples: int) -> int:
        """Epochs a training on ``num_samples`` samples runs (``epochs``, stretched by ``min_steps``)."""
        batches = max(1, math.ceil(num_samples / self.batch_size))
        if self.epochs == 0 or batches * self.epochs >= self.min_steps:
            return self.epochs
        return math.ceil(self.min_steps / batches)
