"""What applying a package costs a device, from its header (the no_memory check relies on it)."""

from __future__ import annotations

import pytest
import torch

from edgeupdate.algorithms.factorized import CompactConfig, build_package, compact_refine
from edgeupdate.models.zoo import build_model
from edgeupdate.training import TensorData, TrainConfig
from edgeupdate.updates import dense_package, sparse_package
from edgeupdate.updates.cost import apply_cost, state_bytes


def _state(hidden=(32,)):
    model = build_model("mlp", (1, 8, 8), 10, seed=0, hidden=list(hidden))
    return model, {k: v.clone() for k, v in model.state_dict().items()}


def test_dense_package_holds_old_model_new_model_and_the_package():
    _, base = _state()
    target = {k: v + 1 for k, v in base.items()}
    pkg = dense_package(target, method="full", target_version=1)
    wire = pkg.encode()

    cost = apply_cost(pkg.header, len(wire), state_bytes(base))

    assert cost.peak_memory_bytes == 2 * state_bytes(base) + len(wire)


def test_sparse_package_stages_only_the_tensors_it_touches():
    _, base = _state()
    target = dict(base)
    target["1.bias"] = base["1.bias"] + 1  # one small tensor changes
    pkg = sparse_package(base, target, method="dpu", target_version=1)
    wire = pkg.encode()

    cost = apply_cost(pkg.header, len(wire), state_bytes(base))

    assert cost.peak_memory_bytes == state_bytes(base) + len(wire) + base["1.bias"].numel() * 4
    assert cost.flops == 2 * base["1.bias"].numel() + state_bytes(base)  # writes + hashing the result


def test_ka_reconstitution_needs_an_svd_working_set_a_sparse_package_does_not():
    model, base = _state(hidden=(48,))
    g = torch.Generator().manual_seed(0)
    data = TensorData(torch.randn(32, 1, 8, 8, generator=g), torch.randint(0, 10, (32,), generator=g))
    result = compact_refine(model, base, data, TrainConfig(epochs=1, batch_size=16), CompactConfig("ka", n=2), seed=1)
    ka = build_package(result, base, base_version=0, target_version=1)
    sparse = sparse_package(base, result.state, method="delta", target_version=1)

    ka_cost = apply_cost(ka.header, len(ka.encode()), state_bytes(base))
    sparse_cost = apply_cost(sparse.header, len(sparse.encode()), state_bytes(base))

    o, i = 48, 64  # the first layer: its float64 view, SVD factors, augmented factors and product
    assert ka_cost.peak_memory_bytes - state_bytes(base) - len(ka.encode()) > 8 * 2 * o * i
    assert ka_cost.flops > 4 * o * i * min(o, i)  # at least the SVD of that layer
    assert ka_cost.peak_memory_bytes > sparse_cost.peak_memory_bytes


def test_negative_sizes_are_rejected():
    _, base = _state()
    pkg = dense_package(base, method="full", target_version=1)
    with pytest.raises(ValueError):
        apply_cost(pkg.header, -1, 10)
