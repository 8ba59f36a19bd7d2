"""Counted costs of running and training a model (what the fleet model charges a device)."""

from __future__ import annotations

import pytest
from torch import nn

from edgeupdate.models.cost import forward_profile, inference_cost, optimizer_slots, training_cost
from edgeupdate.models.zoo import build_model


def test_forward_flops_of_an_mlp_are_two_per_multiply_add_plus_elementwise_layers():
    model = nn.Sequential(nn.Flatten(), nn.Linear(4, 3), nn.ReLU(), nn.Linear(3, 2))

    profile = forward_profile(model, (1, 2, 2))

    # flatten 4 outputs, linear 2·4·3 + 3 bias, relu 3, linear 2·3·2 + 2 bias
    assert profile.flops == 4 + (24 + 3) + 3 + (12 + 2)
    assert profile.activation_elements == 4 + 3 + 3 + 2
    assert profile.largest_activation_elements == 4
    assert profile.parameter_elements == 4 * 3 + 3 + 3 * 2 + 2


def test_conv_flops_count_every_output_position():
    model = nn.Sequential(nn.Conv2d(2, 4, 3, padding=1, bias=False))

    profile = forward_profile(model, (2, 5, 5))

    assert profile.flops == 2 * 2 * 9 * 4 * 5 * 5


def test_training_costs_three_forward_passes_per_sample_and_epoch():
    profile = forward_profile(build_model("mlp", (1, 8, 8), 10, seed=0, hidden=[32]), (1, 8, 8))

    cost = training_cost(profile, num_samples=100, epochs=2, batch_size=16, optimizer="sgd")

    assert cost.flops == pytest.approx(3 * profile.flops * 100 * 2)


def test_training_needs_far_more_memory_than_inference():
    profile = forward_profile(build_model("tiny-resnet", (1, 28, 28), 10, seed=0), (1, 28, 28))

    train = training_cost(profile, num_samples=500, epochs=1, batch_size=64, optimizer="adam")
    infer = inference_cost(profile)

    assert train.peak_memory_bytes > 20 * infer.peak_memory_bytes  # thesis Table 4.2: 47–103×


def test_optimizer_state_and_batch_size_raise_training_memory():
    profile = forward_profile(build_model("mlp", (1, 8, 8), 10, seed=0, hidden=[32]), (1, 8, 8))
    sgd = training_cost(profile, 100, 1, 8, "sgd", momentum=0.0)

    assert training_cost(profile, 100, 1, 8, "adam").peak_memory_bytes > sgd.peak_memory_bytes
    assert training_cost(profile, 100, 1, 32, "sgd").peak_memory_bytes > sgd.peak_memory_bytes
    assert (optimizer_slots("adam", 0.0), optimizer_slots("sgd", 0.9), optimizer_slots("sgd", 0.0)) == (2, 1, 0)


def test_bad_training_arguments_are_rejected():
    profile = forward_profile(nn.Sequential(nn.Flatten(), nn.Linear(4, 2)), (1, 2, 2))
    with pytest.raises(ValueError, match="batch_size"):
        training_cost(profile, 10, 1, 0)
