"""Attacks on the push (issue 18), without Ray: the archive, the forgeries, the push hook and the
server's check that an attacked device applied nothing."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from edgeupdate import protocol as P
from edgeupdate.runtime import build_runtime
from edgeupdate.simulation.metrics import MetricsCollector
from edgeupdate.strategies.attacks import PackageArchive, SentPackage, attacker_key, tampered
from edgeupdate.strategies.base import EdgeStrategy, FleetInvariantError, NoParams
from edgeupdate.strategies.versions import ModelVersion
from tests.clients.device_helpers import TestDevice
from edgeupdate.updates import AuthenticationError, HmacKey, UpdatePackage, sparse_package, state_hash


def test_the_archive_offers_only_older_packages_of_the_line_not_bound_to_the_held_state():
    archive = PackageArchive(keep_versions=2)
    for version, base in ((1, None), (2, "a"), (2, "b"), (3, None)):
        archive.record(SentPackage(f"{version}{base}".encode(), "main", version, base))
    archive.record(SentPackage(b"student", "student-1", 1, None))
    archive.record(SentPackage(b"1None", "main", 1, None))  # the same bytes again: recorded once

    older = archive.older("main", 2, held_hash="b")

    assert [s.payload for s in older] == [b"2a"]  # version 1 was dropped (2 versions kept), 2b is bound to "b"
    assert [s.payload for s in archive.older("student-1", 5, "x")] == [b"student"]


def test_a_tampered_package_keeps_a_valid_checksum_so_only_the_signature_refuses_it():
    key = HmacKey(b"server")
    state = {"w": torch.arange(12, dtype=torch.float32)}
    payload = sparse_package(state, {"w": state["w"] + 1}, method="dpu", target_version=2, base_version=1).encode(key)
    rng = np.random.default_rng(3)

    altered = tampered(payload, 32, rng)

    assert altered != payload and len(altered) == len(payload) and altered[-32:] == payload[-32:]
    with pytest.raises(AuthenticationError, match="signature does not verify"):
        UpdatePackage.decode(altered, key)
    other = attacker_key(key, 0)
    assert isinstance(other, HmacKey) and other.sign(b"x") != key.sign(b"x")


def _strategy(tiny_config, tmp_path, *faults: str) -> EdgeStrategy:
    csv = tmp_path / "fleet.csv"
    csv.write_text("device_id,tier\n" + "".join(f"{i},rpi-gateway\n" for i in range(3)))
    runtime = build_runtime(tiny_config(f"fleet.csv={csv}", "model.hidden=[8]", "package.signing=hmac", *faults))
    return EdgeStrategy(runtime, NoParams(), MetricsCollector(), {0: 10, 1: 11, 2: 12})


def _release(strategy: EdgeStrategy, round_: int, seed: float) -> None:
    """Version ``round_``, sent as a base-free package (like pruning)."""
    base = strategy.latest
    target = {k: v + seed for k, v in strategy.runtime.initial_state.items()}
    strategy.release = sparse_package(None, target, method="prune", target_version=round_, base_version=base.number)
    weights = strategy.release.apply(base.weights)
    strategy.store.release(round_, ModelVersion(round_, weights, state_hash(weights)))
    strategy.push = strategy._push_plan(round_, 0.0)


def _device(strategy: EdgeStrategy, device_id: int, root) -> TestDevice:
    return TestDevice(strategy.runtime, root / "store", device_id)


def test_a_replay_sends_an_older_validly_signed_package_that_the_device_refuses(tiny_config, tmp_path):
    strategy = _strategy(tiny_config, tmp_path, "fleet.faults.replay_prob=1.0")
    devices = {d: _device(strategy, d, tmp_path) for d in range(3)}
    _release(strategy, 1, 0.5)
    for view in strategy.store.in_order():  # round 1: nothing older to replay, the release arrives
        push, fields = strategy.push.for_device(view)
        assert push.attack == "none"
        assert devices[view.device_id].try_apply(fields["package"])[0] == "applied"
        view.version, view.hash = 1, devices[view.device_id].hash
    version_1 = fields["package"]
    _release(strategy, 2, 0.25)

    view = strategy.store.in_order()[0]
    push, fields = strategy.push.for_device(view)

    assert push.attack == "replay" and push.outcome.status == P.DeviceStatus.REJECTED and push.outcome.fault == "replay"
    assert fields["package"] == version_1  # validly signed by the server, base-free: only the version check stops it
    UpdatePackage.decode(fields["package"], strategy.runtime.package_verifier())
    status, reason = devices[0].try_apply(fields["package"])
    assert status == P.DeviceStatus.REJECTED and "not newer than the held version 1" in reason


def test_a_forgery_is_refused_and_the_server_fails_the_run_if_an_attacked_device_applied(tiny_config, tmp_path):
    strategy = _strategy(tiny_config, tmp_path, "fleet.faults.forge_prob=1.0")
    _release(strategy, 1, 0.5)
    device = _device(strategy, 1, tmp_path)
    view = strategy.store.in_order()[1]
    genuine = strategy.push.package_for(view).payload

    push, fields = strategy.push.for_device(view)
    strategy.log.push[1] = push

    assert push.attack == "forge" and fields["package"] != genuine
    status, reason = device.try_apply(fields["package"])
    assert status == P.DeviceStatus.REJECTED and "signature does not verify" in reason
    refused = P.DeviceReport(11, 1, 0, strategy.runtime.initial_hash, P.DeviceStatus.REJECTED, b"", {}, reason)
    strategy._check_report(1, refused)
    applied = P.DeviceReport(11, 1, 1, strategy.latest.hash, P.DeviceStatus.APPLIED, b"", {}, "")
    with pytest.raises(FleetInvariantError, match="did not refuse a forge attack"):
        strategy._check_report(1, applied)
