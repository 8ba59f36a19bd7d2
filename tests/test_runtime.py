"""A run's runtime holds only the training images its devices can collect, indexed as the whole set."""

from __future__ import annotations

import gc

import numpy as np
import torch

from edgeupdate.configs import config_from_dict
from edgeupdate.datasets import load_dataset
from edgeupdate.runtime import build_runtime


def _cfg(rounds: int = 3):
    return config_from_dict({"name": "t", "seed": 5, "rounds": rounds, "num_devices": 4,
                             "dataset": {"name": "digits"}, "partition": {"method": "iid"},
                             "stream": {"initial_samples": 100, "samples_per_round": 50, "source": "devices"},
                             "model": {"name": "mlp", "hidden": [16]}, "strategy": {"name": "full"}})


def test_the_runtime_keeps_only_the_rows_its_devices_collect_and_serves_them_as_the_whole_set_would():
    runtime = build_runtime(_cfg())
    whole = load_dataset("digits").train
    rows = runtime.layout.train_rows()
    assert len(runtime.dataset.train) == len(rows) == 200 < len(whole)
    index = runtime.layout.arrivals(2, 3)
    got, want = runtime.train_subset(index), whole.subset(torch.as_tensor(index))
    assert torch.equal(got.x, want.x) and torch.equal(got.y, want.y)


def test_the_whole_split_is_not_kept_once_the_runtime_is_built():
    import weakref

    runtime = build_runtime(_cfg())
    whole = weakref.ref(load_dataset("digits"))
    gc.collect()
    assert whole() is None  # only the runtime's rows stay in memory
    assert np.array_equal(runtime.dataset.train.rows, runtime.layout.train_rows())
