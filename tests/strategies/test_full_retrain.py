"""retrain_dense: the θ¹ every deploying strategy sends is trained once per process and reused."""

from __future__ import annotations

import numpy as np

from edgeupdate.runtime import build_runtime
from edgeupdate.strategies import full
from edgeupdate.updates import state_hash


def test_same_inputs_train_once_and_give_identical_weights(tiny_config, monkeypatch):
    runtime = build_runtime(tiny_config("training.epochs=1"))
    calls = []
    real_train = full.train
    monkeypatch.setattr(full, "train", lambda *a, **k: calls.append(1) or real_train(*a, **k))
    monkeypatch.setattr(full, "_TRAINED", full.LRU(8))
    held = runtime.layout.train_rows()  # the images this run holds
    d1 = runtime.train_subset(held[:60])

    first = full.retrain_dense(runtime, 1, d1, None, runtime.validation())
    first[next(iter(first))].zero_()  # the caller owns its copy: the remembered result is unchanged
    second = full.retrain_dense(runtime, 1, d1, None, runtime.validation())
    other = full.retrain_dense(runtime, 1, runtime.train_subset(held[1:61]), None, runtime.validation())

    assert len(calls) == 2  # the second call reused the first; new data trained again
    assert state_hash(second) != state_hash(runtime.initial_state)
    assert state_hash(second) != state_hash(other)
    monkeypatch.setattr(full, "_TRAINED", full.LRU(8))
    assert state_hash(full.retrain_dense(runtime, 1, d1, None, runtime.validation())) == state_hash(second)
