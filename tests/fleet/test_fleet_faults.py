"""Fault injection: deterministic decisions and real byte corruption."""

import numpy as np
import pytest

from edgeupdate.fleet.faults import FaultConfig, FaultConfigError, corrupt


def test_corrupt_changes_exactly_the_requested_number_of_bytes_and_copies():
    payload = bytes(range(256)) * 4
    out = corrupt(payload, np.random.default_rng(0), num_bytes=3)
    assert len(out) == len(payload) and payload == bytes(range(256)) * 4
    assert sum(a != b for a, b in zip(out, payload)) == 3
    assert corrupt(b"\x00", np.random.default_rng(1)) != b"\x00"
    assert corrupt(b"ab", np.random.default_rng(1), num_bytes=10) != b"ab"
    with pytest.raises(FaultConfigError, match="empty"):
        corrupt(b"", np.random.default_rng(0))


def test_fault_decisions_are_deterministic_and_independent_per_round_and_device():
    faults = FaultConfig(dropout_prob=0.2, corruption_prob=0.5, crash_prob=0.1)
    grid = [(r, d) for r in range(30) for d in range(30)]
    drops = [faults.drops_out(3, r, d) for r, d in grid]
    assert drops == [FaultConfig(0.2, 0.5, 0.1).drops_out(3, r, d) for r, d in grid]
    assert 0.15 < np.mean(drops) < 0.25
    assert 0.45 < np.mean([faults.corrupts(3, r, d) for r, d in grid]) < 0.55
    assert 0.06 < np.mean([faults.crashes(3, r, d) for r, d in grid]) < 0.14
    # different purposes draw independently: dropout and crash do not coincide systematically
    assert drops != [faults.crashes(3, r, d) for r, d in grid]


def test_maybe_corrupt_is_reproducible_and_only_when_decided():
    faults = FaultConfig(corruption_prob=0.5, corrupt_bytes=2)
    payload = b"x" * 100
    results = {(r, d): faults.maybe_corrupt(payload, 11, r, d) for r in range(10) for d in range(10)}
    for (r, d), out in results.items():
        assert out == faults.maybe_corrupt(payload, 11, r, d)
        assert (out != payload) == faults.corrupts(11, r, d)
    assert FaultConfig().maybe_corrupt(payload, 11, 0, 0) == payload


@pytest.mark.parametrize("kwargs", [dict(dropout_prob=1.5), dict(corruption_prob=-0.1),
                                    dict(crash_prob=float("nan")), dict(corrupt_bytes=0)])
def test_fault_config_rejects_bad_values(kwargs):
    with pytest.raises(FaultConfigError):
        FaultConfig(**kwargs)
