"""A device cannot be rolled back or fooled (issue 18): replayed old packages, forged ones, public keys only."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest
import torch

from edgeupdate import protocol as P
from edgeupdate.runtime import build_runtime
from edgeupdate.strategies.attacks import attacker_key, tampered
from edgeupdate.strategies.pruning import Pruning
from edgeupdate.strategies.push import top_changes_package
from edgeupdate.strategies.versions import ModelVersion
from tests.clients.device_helpers import TestDevice
from edgeupdate.updates import (
    Ed25519Signer,
    Ed25519Verifier,
    HmacKey,
    UpdatePackage,
    dense_package,
    sparse_package,
    state_hash,
)


def _runtime(tiny_config, tmp_path, *overrides: str):
    csv = tmp_path / "fleet.csv"
    csv.write_text("device_id,tier,memory_bytes\n" + "".join(f"{i},rpi-gateway,{1 << 30}\n" for i in range(3)))
    return build_runtime(tiny_config(f"fleet.csv={csv}", "model.hidden=[24]", *overrides))


def _device(runtime, root) -> TestDevice:
    return TestDevice(runtime, root / "store")


def _pruned(state, keep: float, seed: int):
    """A sparse model as pruning makes it: most weights zero, biases dense."""
    g = torch.Generator().manual_seed(seed)
    return {k: v * (torch.rand(v.shape, generator=g) < keep) if v.dim() > 1 else v + 0.1 * seed
            for k, v in state.items()}


def _pruning_release(runtime, round_: int, base: ModelVersion, target):
    strategy = SimpleNamespace(cfg=runtime.cfg, _dense=[k for k, v in target.items() if v.dim() < 2], name="pruning")
    return Pruning.release_package(strategy, round_, base, target)


def test_a_replayed_old_base_free_pruning_package_is_refused_by_a_device_holding_a_newer_version(tiny_config, tmp_path):
    runtime = _runtime(tiny_config, tmp_path, "package.signing=hmac")
    key = runtime.signing_key()
    v1, v2 = _pruned(runtime.initial_state, 0.2, 1), _pruned(runtime.initial_state, 0.2, 2)
    initial = ModelVersion(0, runtime.initial_state, runtime.initial_hash)
    old = _pruning_release(runtime, 1, initial, v1)
    new = _pruning_release(runtime, 2, ModelVersion(1, v1, state_hash(v1)), v2)
    assert old.header.base_hash is None and old.header.base_version == 0 and new.header.base_version == 1
    device = _device(runtime, tmp_path)
    assert device.try_apply(old.encode(key)) == (P.DeviceStatus.APPLIED, "")
    assert device.try_apply(new.encode(key)) == (P.DeviceStatus.APPLIED, "")

    status, reason = device.try_apply(old.encode(key))  # validly signed, fits any state

    assert status == P.DeviceStatus.REJECTED
    assert reason.startswith("version check: package targets version 1, not newer than the held version 2")
    assert (device.version, device.hash) == (2, state_hash(v2))
    assert device.try_apply(new.encode(key))[0] == P.DeviceStatus.REJECTED  # the same version again


def test_a_replayed_old_base_bound_package_is_refused_with_the_version_reason(tiny_config, tmp_path):
    runtime = _runtime(tiny_config, tmp_path)
    s0 = runtime.initial_state
    s1 = {k: v + 0.5 for k, v in s0.items()}
    s2 = {k: v * 2 for k, v in s1.items()}
    old = dense_package(s1, method="full", target_version=1, base=s0, base_version=0).encode()
    new = sparse_package(s1, s2, method="dpu", target_version=2, base_version=1).encode()
    device = _device(runtime, tmp_path)
    for package in (old, new):
        assert device.try_apply(package)[0] == P.DeviceStatus.APPLIED

    status, reason = device.try_apply(old)

    assert status == P.DeviceStatus.REJECTED and "not newer than the held version 2" in reason
    assert device.hash == state_hash(s2)


def test_a_catch_up_after_a_budget_share_moves_forward_within_the_same_version(tiny_config, tmp_path):
    runtime = _runtime(tiny_config, tmp_path)
    s0 = runtime.initial_state
    base = ModelVersion(0, s0, runtime.initial_hash)
    target = ModelVersion(1, {k: v + 0.5 for k, v in s0.items()}, "")
    share = top_changes_package(base, target, 10, method="full-budget", coding="golomb")
    device = _device(runtime, tmp_path)
    assert device.try_apply(share.encode()) == (P.DeviceStatus.APPLIED, "")
    assert device.version == 1
    shared = device.weights

    catch_up = sparse_package(shared, target.weights, method="full-catch-up", target_version=1, base_version=1)

    assert device.try_apply(catch_up.encode()) == (P.DeviceStatus.APPLIED, "")
    assert device.hash == state_hash(target.weights)


def test_with_ed25519_devices_hold_only_the_public_key_and_refuse_forgeries(tiny_config, tmp_path):
    runtime = _runtime(tiny_config, tmp_path, "package.signing=ed25519")
    key = runtime.signing_key()
    verifier = runtime.package_verifier()
    assert isinstance(key, Ed25519Signer) and isinstance(verifier, Ed25519Verifier)
    assert not hasattr(verifier, "sign")
    assert verifier.public_bytes() == key.verifier().public_bytes()
    s1 = {k: v + 0.5 for k, v in runtime.initial_state.items()}
    package = dense_package(s1, method="full", target_version=1, base=runtime.initial_state, base_version=0)
    genuine = package.encode(key)
    assert len(genuine) == len(package.encode()) + 64
    assert UpdatePackage.decode(genuine, key).header == package.header  # the server re-reads its own (budgets)
    device = _device(runtime, tmp_path)

    forged = package.encode(attacker_key(key, runtime.cfg.seed))
    altered = tampered(genuine, 64, np.random.default_rng(0))
    unsigned = package.encode()

    for payload, why in ((forged, "signature does not verify"), (altered, "signature does not verify"),
                         (unsigned, "unsigned")):
        status, reason = device.try_apply(payload)
        assert status == P.DeviceStatus.REJECTED and why in reason
        assert device.hash == runtime.initial_hash
    assert device.try_apply(genuine) == (P.DeviceStatus.APPLIED, "")


def test_the_ed25519_key_derives_from_the_seed_or_comes_from_a_key_file(tiny_config, tmp_path):
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
    from cryptography.hazmat.primitives.serialization import Encoding, NoEncryption, PrivateFormat

    a = _runtime(tiny_config, tmp_path, "package.signing=ed25519").package_verifier().public_bytes()
    again = _runtime(tiny_config, tmp_path, "package.signing=ed25519").package_verifier().public_bytes()
    other = _runtime(tiny_config, tmp_path, "package.signing=ed25519", "seed=7").package_verifier().public_bytes()
    assert a == again and a != other
    private = Ed25519PrivateKey.generate()
    pem = tmp_path / "server.pem"
    pem.write_bytes(private.private_bytes(Encoding.PEM, PrivateFormat.PKCS8, NoEncryption()))

    runtime = _runtime(tiny_config, tmp_path, "package.signing=ed25519", f"package.key_file={pem}")

    assert runtime.package_verifier().public_bytes() == Ed25519Verifier(private.public_key()).public_bytes()


def test_an_unreadable_key_file_is_a_config_error_naming_the_key(tiny_config, tmp_path):
    from edgeupdate.configs import ConfigError

    bad = tmp_path / "bad.key"
    bad.write_text("not a key")
    runtime = _runtime(tiny_config, tmp_path, "package.signing=ed25519", f"package.key_file={bad}")

    with pytest.raises(ConfigError, match="package.key_file"):
        runtime.signing_key()


def test_hmac_devices_verify_with_the_shared_secret(tiny_config, tmp_path):
    runtime = _runtime(tiny_config, tmp_path, "package.signing=hmac")

    assert isinstance(runtime.package_verifier(), HmacKey)
    assert _runtime(tiny_config, tmp_path).package_verifier() is None
