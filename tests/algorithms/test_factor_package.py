"""Packages from compact refinement: the device's reconstitution reproduces the server's state."""

from __future__ import annotations

import pytest
import torch

from edgeupdate.algorithms.factorized import CompactConfig, build_package, compact_refine
from edgeupdate.models.zoo import build_model
from edgeupdate.training import TensorData, TrainConfig
from edgeupdate.updates import BaseMismatchError, UpdatePackage, state_hash

SHAPE = (1, 8, 8)
CLASSES = 4
TRAIN = TrainConfig(epochs=1, batch_size=16, lr=0.01)
CONFIGS = [CompactConfig("ka", n=2), CompactConfig("ka", n=0), CompactConfig("ml", rank=3), CompactConfig("lra", rank=2),
           CompactConfig("lru", rank=2), CompactConfig("rm", proportion=0.05), CompactConfig("lru-out", rank=2),
           CompactConfig("bn-only"), CompactConfig("fp", compression=0.5)]


@pytest.fixture(scope="module")
def setup():
    model = build_model("tiny-resnet", SHAPE, CLASSES, seed=0)
    g = torch.Generator().manual_seed(1)
    data = TensorData(torch.randn(64, *SHAPE, generator=g), torch.randint(0, CLASSES, (64,), generator=g))
    return model, {k: v.clone() for k, v in model.state_dict().items()}, data


@pytest.mark.parametrize("cfg", CONFIGS, ids=lambda c: f"{c.method}-{c.size_param[0]}={c.size_param[1]}")
def test_device_reconstitution_reproduces_the_server_state_exactly(setup, cfg):
    model, base, data = setup
    result = compact_refine(model, base, data, TRAIN, cfg, seed=4)

    wire = build_package(result, base, base_version=0, target_version=1).encode()
    device_state = UpdatePackage.decode(wire).apply({k: v.clone() for k, v in base.items()})

    assert state_hash(device_state) == state_hash(result.state)
    assert state_hash(device_state) != state_hash(base)


@pytest.mark.parametrize("cfg", CONFIGS[:-1], ids=lambda c: f"{c.method}-{c.size_param[0]}={c.size_param[1]}")
def test_package_bytes_are_the_counted_update(setup, cfg):
    model, base, data = setup
    result = compact_refine(model, base, data, TRAIN, cfg, seed=4)

    sizes = build_package(result, base, base_version=0, target_version=1).byte_breakdown()

    int_buffers = sum(v.numel() for v in result.dense.values() if not v.dtype.is_floating_point)
    floats = result.update_param_count + result.update_buffer_count - int_buffers
    assert sizes["factor_bytes"] + sizes["values_bytes"] + sizes["dense_bytes"] == 4 * floats + 8 * int_buffers
    assert sizes["positions_bytes"] == 0  # seeds and SVDs replace positions


def test_bn_only_sends_only_biases_and_normalisation_parameters_dense(setup):
    model, base, data = setup
    result = compact_refine(model, base, data, TRAIN, CompactConfig("bn-only"), seed=4)
    pkg = build_package(result, base, base_version=0, target_version=1)

    norm = {f"{m}.{p}" for m, mod in model.named_modules() if isinstance(mod, torch.nn.BatchNorm2d)
            for p in ("weight", "bias", "running_mean", "running_var", "num_batches_tracked")}
    biases = {n for n, _ in model.named_parameters() if n.endswith(".bias")}
    assert {t.name for t in pkg.header.tensors} == norm | biases
    assert {t.kind for t in pkg.header.tensors} == {"dense"}
    assert result.factors == {}
    device = UpdatePackage.decode(pkg.encode()).apply({k: v.clone() for k, v in base.items()})
    for name, p in model.named_parameters():
        if name not in norm | biases:  # every conv/FC weight stays as the device had it
            assert torch.equal(device[name], base[name]), name
    assert any(not torch.equal(device[n], base[n]) for n in biases)
    assert result.update_param_count == sum(p.numel() for n, p in model.named_parameters() if n in norm | biases)


def test_ka_package_is_rejected_by_a_device_whose_weights_differ_from_the_base(setup):
    model, base, data = setup
    result = compact_refine(model, base, data, TRAIN, CompactConfig("ka", n=2), seed=4)
    pkg = UpdatePackage.decode(build_package(result, base, base_version=0, target_version=1).encode())
    drifted = {k: v.clone() for k, v in base.items()}
    drifted["layers.1.conv1.weight"][0, 0, 0, 0] += 1e-6

    with pytest.raises(BaseMismatchError, match="base version 0"):
        pkg.apply(drifted)


def test_lossy_factor_package_is_consistent_with_its_own_target(setup):
    model, base, data = setup
    result = compact_refine(model, base, data, TRAIN, CompactConfig("ka", n=2), seed=4)

    pkg = build_package(result, base, base_version=0, target_version=1, precision="fp16")
    device_state = UpdatePackage.decode(pkg.encode()).apply(base)

    assert state_hash(device_state) == pkg.header.target_hash
    fp32 = build_package(result, base, base_version=0, target_version=1)
    assert pkg.byte_breakdown()["factor_bytes"] * 2 == fp32.byte_breakdown()["factor_bytes"]
    for k in result.factors:
        assert torch.allclose(device_state[k], result.state[k], atol=2e-3)
