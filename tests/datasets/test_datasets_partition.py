"""Partitioners: disjoint, complete, non-empty, deterministic; Dirichlet skew and shard label counts."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from edgeupdate.datasets import partition_indices

METHODS = ("iid", "dirichlet", "shards")


def _labels(num_classes: int = 10, per_class: int = 60, seed: int = 0) -> np.ndarray:
    # Uneven class sizes so that shard cuts cannot line up with class boundaries by luck.
    rng = np.random.default_rng(seed)
    sizes = per_class + np.arange(num_classes) * 7
    return rng.permutation(np.repeat(np.arange(num_classes), sizes))


def _assert_valid(parts: list[np.ndarray], n: int, num_parts: int) -> None:
    assert len(parts) == num_parts
    assert all(p.size > 0 for p in parts), [p.size for p in parts]
    assert all(p.dtype == np.int64 for p in parts)
    joined = np.concatenate(parts)
    assert joined.size == n, "parts overlap or miss indices"
    np.testing.assert_array_equal(np.sort(joined), np.arange(n))


@pytest.mark.parametrize("method", METHODS)
def test_parts_are_disjoint_complete_and_non_empty(method: str) -> None:
    y = _labels()

    parts = partition_indices(y, 12, method, seed=3)

    _assert_valid(parts, y.size, 12)


@pytest.mark.parametrize("method", METHODS)
def test_same_seed_same_parts_other_seed_other_parts(method: str) -> None:
    y = _labels()

    first = partition_indices(y, 8, method, seed=11)
    again = partition_indices(y, 8, method, seed=11)
    other = partition_indices(y, 8, method, seed=12)

    assert all(np.array_equal(a, b) for a, b in zip(first, again))
    assert not all(np.array_equal(a, b) for a, b in zip(first, other))


def test_iid_sizes_differ_by_at_most_one_and_mix_labels() -> None:
    y = _labels()

    parts = partition_indices(y, 7, "iid", seed=0)

    sizes = [p.size for p in parts]
    assert max(sizes) - min(sizes) <= 1
    assert all(np.unique(y[p]).size == 10 for p in parts)


def _mean_label_skew(y: np.ndarray, parts: list[np.ndarray]) -> float:
    """Mean total-variation distance between each part's label histogram and the global one."""
    k = int(y.max()) + 1
    global_dist = np.bincount(y, minlength=k) / y.size
    return float(np.mean([0.5 * np.abs(np.bincount(y[p], minlength=k) / p.size - global_dist).sum() for p in parts]))


def test_dirichlet_skew_decreases_as_alpha_grows() -> None:
    y = _labels(per_class=300)

    skews = [
        np.mean([_mean_label_skew(y, partition_indices(y, 20, "dirichlet", seed=s, alpha=a)) for s in range(3)])
        for a in (0.05, 0.5, 5.0, 500.0)
    ]

    assert skews[0] > skews[1] > skews[2] > skews[3], skews
    assert skews[0] > 0.6 and skews[3] < 0.1, skews


def test_dirichlet_gives_every_part_data_even_for_tiny_alpha() -> None:
    y = _labels(per_class=5)

    parts = partition_indices(y, y.size - 3, "dirichlet", seed=1, alpha=0.01)

    _assert_valid(parts, y.size, y.size - 3)


@pytest.mark.parametrize("shards_per_part", [1, 2, 3])
def test_shards_give_at_most_shards_per_part_labels(shards_per_part: int) -> None:
    y = _labels()

    parts = partition_indices(y, 10, "shards", seed=5, shards_per_part=shards_per_part)

    _assert_valid(parts, y.size, 10)
    assert max(np.unique(y[p]).size for p in parts) <= shards_per_part


def test_shards_are_near_equal_when_there_are_many_per_class() -> None:
    y = _labels()  # 10 classes of 60..123 samples

    parts = partition_indices(y, 25, "shards", seed=5, shards_per_part=2)

    sizes = np.array([p.size for p in parts])
    target = y.size / 25
    assert np.all(np.abs(sizes - target) <= 0.35 * target), sizes


def test_shards_with_fewer_shards_than_classes_still_partition_everything() -> None:
    y = _labels()

    parts = partition_indices(y, 2, "shards", seed=0, shards_per_part=2)

    _assert_valid(parts, y.size, 2)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"num_parts": 0, "method": "iid"}, "num_parts must be a positive integer"),
        ({"num_parts": 3.0, "method": "iid"}, "num_parts must be a positive integer"),
        ({"num_parts": True, "method": "iid"}, "num_parts must be a positive integer"),
        ({"num_parts": 21, "method": "dirichlet"}, "num_parts=21 is more than the 20 samples"),
        ({"num_parts": 2, "method": "random"}, "unknown partition method 'random'"),
        ({"num_parts": 2, "method": "dirichlet", "alpha": 0.0}, "alpha must be a finite number > 0"),
        ({"num_parts": 2, "method": "dirichlet", "alpha": -1.0}, "alpha must be a finite number > 0"),
        ({"num_parts": 2, "method": "dirichlet", "alpha": float("nan")}, "alpha must be a finite number > 0"),
        ({"num_parts": 2, "method": "dirichlet", "alpha": "0.5"}, "alpha must be a finite number > 0"),
        ({"num_parts": 2, "method": "shards", "shards_per_part": 0}, "shards_per_part must be a positive integer"),
        ({"num_parts": 11, "method": "shards", "shards_per_part": 2}, "22 shards is more than the 20 samples"),
    ],
)
def test_impossible_requests_raise_value_error(kwargs: dict, message: str) -> None:
    y = np.arange(20) % 4

    with pytest.raises(ValueError, match=message):
        partition_indices(y, seed=0, **kwargs)


@pytest.mark.parametrize(
    ("labels", "message"),
    [
        (np.zeros((4, 2), dtype=np.int64), "1-D"),
        (np.zeros(0, dtype=np.int64), "empty"),
        (np.zeros(4, dtype=np.float32), "integers"),
    ],
)
def test_bad_labels_raise_value_error(labels: np.ndarray, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        partition_indices(labels, 2, "iid", seed=0)


@settings(max_examples=40, deadline=None)
@given(
    labels=st.lists(st.integers(0, 5), min_size=1, max_size=60),
    num_parts=st.integers(1, 8),
    method=st.sampled_from(METHODS),
    seed=st.integers(0, 2**31),
    alpha=st.floats(0.01, 10.0),
    shards_per_part=st.integers(1, 3),
)
def test_any_feasible_request_gives_a_valid_partition(labels, num_parts, method, seed, alpha, shards_per_part) -> None:
    y = np.asarray(labels, dtype=np.int64)
    needed = num_parts * (shards_per_part if method == "shards" else 1)
    if needed > y.size and method != "iid":  # IID gives some parts nothing instead (test below)
        with pytest.raises(ValueError):
            partition_indices(y, num_parts, method, seed, alpha=alpha, shards_per_part=shards_per_part)
        return

    parts = partition_indices(y, num_parts, method, seed, alpha=alpha, shards_per_part=shards_per_part)
    if needed > y.size:
        return

    _assert_valid(parts, y.size, num_parts)


def test_an_iid_fleet_larger_than_the_data_gives_one_sample_to_a_seeded_choice_of_devices():
    labels = np.arange(20) % 4
    parts = partition_indices(labels, 50, "iid", seed=3)
    sizes = [len(p) for p in parts]
    assert len(parts) == 50 and sorted(sizes) == [0] * 30 + [1] * 20
    assert sorted(np.concatenate(parts).tolist()) == list(range(20))
    assert sizes[:20] != [1] * 20  # not simply the first 20 devices
    assert [p.tolist() for p in parts] == [p.tolist() for p in partition_indices(labels, 50, "iid", seed=3)]
