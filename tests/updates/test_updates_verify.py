"""The version rule (issue 18): a device only moves forward; base-free packages name the version they replace."""

from __future__ import annotations

import pytest

from update_states import perturbed, small_state
from edgeupdate.updates import FormatError, UpdatePackage, dense_package, sparse_package, state_hash
from edgeupdate.updates.header import read_header, write_header
from edgeupdate.updates.verify import check_version


def _base_free(target_version: int, base_version: int | None):
    return sparse_package(None, perturbed(small_state(), 0.3), method="pruning", target_version=target_version,
                          base_version=base_version)


def test_a_base_free_package_carries_the_version_it_replaces_through_encode_and_decode() -> None:
    pkg = UpdatePackage.decode(_base_free(5, 4).encode())

    assert (pkg.header.base_hash, pkg.header.base_version, pkg.header.target_version) == (None, 4, 5)
    assert pkg.describe()["base_version"] == 4


def test_a_base_free_package_without_a_replaced_version_still_reads_as_before() -> None:
    pkg = UpdatePackage.decode(_base_free(5, None).encode())

    assert (pkg.header.base_hash, pkg.header.base_version) == (None, None)


def test_a_header_that_claims_both_a_base_and_a_replaced_version_is_malformed() -> None:
    base = small_state()
    header = dense_package(perturbed(base, 0.1), method="full", target_version=2, base=base, base_version=1).header
    data = bytearray(write_header(header))
    flags_at = 1 + len(header.method)  # u8 string length, the method, then the flags
    data[flags_at] |= 8

    with pytest.raises(FormatError, match="header flags"):
        read_header(bytes(data), header.format_version, 1 << 20)


@pytest.mark.parametrize("target, held, allowed", [(5, 4, True), (5, 1, True), (5, 5, False), (3, 5, False)])
def test_a_base_free_package_must_target_a_newer_version(target, held, allowed) -> None:
    header = _base_free(target, target - 1).header

    reason = check_version(header, held, "f" * 64)

    assert (reason is None) == allowed
    if not allowed:
        assert f"targets version {target}, not newer than the held version {held}" in reason


def test_a_base_free_package_whose_replaced_version_is_not_older_than_its_target_is_refused() -> None:
    header = _base_free(3, 3).header

    assert "not newer" in check_version(header, 0, "f" * 64)


def test_an_old_base_bound_package_is_refused_even_before_its_base_is_checked() -> None:
    base = small_state()
    header = sparse_package(base, perturbed(base, 0.1), method="dpu", target_version=2, base_version=1).header

    assert "not newer than the held version 4" in check_version(header, 4, state_hash(base))


def test_a_package_bound_to_the_held_state_may_keep_the_version_number() -> None:
    """A budget share of version 3 (held) moved on to version 3 itself by a catch-up."""
    share = small_state()
    header = sparse_package(share, perturbed(share, 0.1), method="dpu-catch-up", target_version=3,
                            base_version=3).header

    assert check_version(header, 3, state_hash(share)) is None
    assert "not newer" in check_version(header, 3, "0" * 64)  # bound to another state: not a move forward
    assert "not newer" in check_version(header, 4, state_hash(share))
