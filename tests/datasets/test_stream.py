"""The data-arrival layout every party derives from the config."""

import numpy as np
import pytest

from edgeupdate.datasets.stream import StreamSizeError, make_layout


def _layout(**kw):
    labels = np.repeat(np.arange(10), 50)  # 500 samples
    args = dict(num_devices=7, rounds=4, initial_samples=100, samples_per_round=60, partition="iid",
                seed=3, validation_fraction=0.3)
    args.update(kw)
    return make_layout(labels, 200, **args)


def test_round_totals_follow_d1_plus_delta():
    layout = _layout()
    for r in range(1, 5):
        assert len(layout.server_pool(r)) == 100 + 60 * (r - 1)
        assert sum(len(layout.arrivals(d, r)) for d in range(7)) == (100 if r == 1 else 60)


def test_arrivals_are_disjoint_and_prefixes_grow():
    layout = _layout(partition="dirichlet", alpha=0.3)
    seen = np.concatenate([layout.arrivals(d, r) for r in range(1, 5) for d in range(7)])
    assert len(seen) == len(np.unique(seen))
    for d in range(7):
        assert np.array_equal(layout.collected_indices(d, 3)[: len(layout.collected_indices(d, 2))],
                              layout.collected_indices(d, 2))


def test_test_split_and_validation_are_disjoint_and_complete():
    layout = _layout()
    parts = [layout.validation, *layout.device_test]
    allidx = np.concatenate(parts)
    assert len(layout.validation) == 60
    assert sorted(allidx.tolist()) == list(range(200))


def test_same_seed_same_layout_other_seed_differs():
    a, b, c = _layout(), _layout(), _layout(seed=4)
    assert all(np.array_equal(x, y) for x, y in zip(a.device_train, b.device_train))
    assert not all(np.array_equal(x, y) for x, y in zip(a.device_train, c.device_train))


def test_a_stream_larger_than_the_training_set_is_refused_not_clamped():
    assert len(_layout(initial_samples=200, samples_per_round=100).server_pool(4)) == 500  # exactly all of it
    with pytest.raises(StreamSizeError, match="4 rounds need 550 training samples .* has 500") as err:
        _layout(initial_samples=250, samples_per_round=100)
    assert err.value.key == "stream.samples_per_round"
    with pytest.raises(StreamSizeError, match="501 samples asked for D¹, but the training set has 500") as err:
        _layout(initial_samples=501, samples_per_round=0)
    assert err.value.key == "stream.initial_samples"


def test_too_many_devices_for_the_test_set_is_an_error():
    with pytest.raises(ValueError, match="without a test split"):
        make_layout(np.zeros(100, dtype=int), 3, num_devices=5, rounds=1, initial_samples=10,
                    samples_per_round=0, partition="iid", seed=0)


def test_train_rows_are_every_index_any_device_collects_in_the_run():
    layout = _layout()
    rows = layout.train_rows()
    assert np.array_equal(rows, np.sort(layout.server_pool(4))) and len(rows) == 100 + 3 * 60
    touched = np.concatenate([layout.collected_indices(d, r) for r in range(1, 5) for d in range(7)])
    assert np.isin(touched, rows).all()
