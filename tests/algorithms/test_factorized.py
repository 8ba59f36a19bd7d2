"""Compact refinement (Chen et al. 2022, Algorithm 1): sizes, init, determinism, frozen parts."""

from __future__ import annotations

import math

import pytest
import torch

from edgeupdate.updates import reconstitution as rules
from edgeupdate.updates import seeded_mask
from edgeupdate.algorithms.factorized import (
    CompactConfig,
    CompactConfigError,
    check_ranks,
    compact_refine,
    factor_layers,
    reconstitute_state,
)
from edgeupdate.models.zoo import build_model, count_parameters
from edgeupdate.training import TensorData, TrainConfig

SHAPE = (1, 8, 8)
CLASSES = 4


def _setup(model_name: str = "tiny-resnet"):
    model = build_model(model_name, SHAPE, CLASSES, seed=0)
    g = torch.Generator().manual_seed(1)
    data = TensorData(torch.randn(64, *SHAPE, generator=g), torch.randint(0, CLASSES, (64,), generator=g))
    return model, {k: v.clone() for k, v in model.state_dict().items()}, data


TRAIN = TrainConfig(epochs=1, batch_size=16, lr=0.01)


def _non_factor_params(model) -> int:
    weights = {layer.name for layer in factor_layers(model)}
    return sum(p.numel() for n, p in model.named_parameters() if n not in weights)


@pytest.mark.parametrize("cfg, per_layer", [
    (CompactConfig("ka", n=2), lambda o, i, m: o * 2 + i * 2 + m + 2),
    (CompactConfig("ka", n=0), lambda o, i, m: m),
    (CompactConfig("ml", rank=3), lambda o, i, m: o * 3),
    (CompactConfig("lra", rank=3), lambda o, i, m: (o + i) * 3),
    (CompactConfig("lru", rank=2), lambda o, i, m: i * 2),      # the paper's orientation: R is r × i
    (CompactConfig("lru-out", rank=2), lambda o, i, m: o * 2),  # L is o × r
    (CompactConfig("bn-only"), lambda o, i, m: 0),              # biases and BN γ/β only
])
def test_update_param_count_matches_paper_formula(cfg, per_layer):
    model, base, data = _setup()
    expected = sum(per_layer(l.o, l.i, l.m) for l in factor_layers(model)) + _non_factor_params(model)

    result = compact_refine(model, base, data, TRAIN, cfg, seed=3)

    assert result.update_param_count == expected
    assert result.model_param_count == count_parameters(model)
    sent = sum(t.numel() for fs in result.factors.values() for t in fs.values())
    assert sent + sum(v.numel() for v in result.dense.values()) == expected + result.update_buffer_count


def test_rm_counts_exactly_the_masked_entries():
    model, base, data = _setup()

    result = compact_refine(model, base, data, TRAIN, CompactConfig("rm", proportion=0.05), seed=3)

    total = count_parameters(model)
    masks = {n: seeded_mask(int(result.params["seed"]), n, p.shape, 0.05) for n, p in model.named_parameters()}
    assert result.update_param_count == sum(int(m.sum()) for m in masks.values())
    assert abs(result.update_param_count - 0.05 * total) < 4 * math.sqrt(0.05 * total)  # Bernoulli(P) per entry
    changed = sum(int((result.state[n] != base[n]).sum()) for n, _ in model.named_parameters())
    assert 0 < changed <= result.update_param_count  # unselected entries never move


def test_ka_with_zero_steps_reproduces_the_base_function():
    model, base, data = _setup()

    result = compact_refine(model, base, data, TrainConfig(epochs=0), CompactConfig("ka", n=3), seed=5)

    refined = build_model("tiny-resnet", SHAPE, CLASSES, seed=0)
    refined.load_state_dict(result.state)
    model.eval(), refined.eval()
    with torch.no_grad():
        assert torch.allclose(refined(data.x), model(data.x), atol=1e-4)
    for layer in factor_layers(model):
        assert torch.allclose(result.state[layer.name], base[layer.name], atol=1e-5)


@pytest.mark.parametrize("cfg, limit_layer", [
    (CompactConfig("ka", n=10), "stem.0.weight"),  # stem conv: o=16, i=1·3·3=9 → m=9
    (CompactConfig("lra", rank=10), "stem.0.weight"),
    (CompactConfig("ml", rank=64), "stem.0.weight"),
    (CompactConfig("lru", rank=12), "stem.0.weight"),
])
def test_rank_larger_than_a_layer_allows_is_a_clear_error(cfg, limit_layer):
    model, base, data = _setup()

    with pytest.raises(CompactConfigError, match=rf"{limit_layer}.*min\(o, i\) = 9"):
        compact_refine(model, base, data, TRAIN, cfg, seed=0)
    tightest = min(layer.m for layer in factor_layers(model))  # the head: o = 4 classes
    check_ranks(model, CompactConfig(cfg.method, n=tightest, rank=tightest))  # the limit itself is fine
    with pytest.raises(CompactConfigError, match=r"head\.2\.weight.*= 4"):
        check_ranks(model, CompactConfig(cfg.method, n=tightest + 1, rank=tightest + 1))


@pytest.mark.parametrize("kwargs, message", [
    ({"method": "svd"}, "unknown method"),
    ({"method": "ka", "n": -1}, "n must be"),
    ({"method": "lra", "rank": 0}, "rank must be"),
    ({"method": "rm", "proportion": 0.0}, "proportion"),
    ({"method": "fp", "compression": 1.0}, "compression"),
    ({"method": "ka", "init_scale": 0.0}, "init_scale"),
])
def test_bad_config_is_rejected(kwargs, message):
    with pytest.raises(CompactConfigError, match=message):
        CompactConfig(**kwargs)


@pytest.mark.parametrize("cfg", [CompactConfig("ka", n=2), CompactConfig("lra", rank=2),
                                 CompactConfig("ml", rank=2), CompactConfig("lru", rank=2),
                                 CompactConfig("rm", proportion=0.05)])
def test_same_seed_gives_bit_identical_result(cfg):
    model, base, data = _setup()

    a = compact_refine(model, base, data, TRAIN, cfg, seed=11)
    b = compact_refine(model, base, data, TRAIN, cfg, seed=11)

    assert all(torch.equal(a.state[k], b.state[k]) for k in a.state)
    assert not all(torch.equal(a.state[k], base[k]) for k in base)  # training did change the model


@pytest.mark.parametrize("cfg", [CompactConfig("ka", n=2), CompactConfig("lra", rank=2),
                                 CompactConfig("ml", rank=2), CompactConfig("lru", rank=2)])
def test_server_state_is_the_device_reconstitution_of_the_base(cfg):
    model, base, data = _setup()

    result = compact_refine(model, base, data, TRAIN, cfg, seed=2)
    device = reconstitute_state(base, result.factors, result.dense, cfg.method, result.params)

    assert set(device) == set(base)
    assert all(torch.equal(device[k], result.state[k]) for k in base)


def test_refinement_lowers_the_training_loss():
    model, base, data = _setup()
    cfg = TrainConfig(epochs=4, batch_size=16, lr=0.01)

    report = compact_refine(model, base, data, cfg, CompactConfig("ka", n=2), seed=2).report

    assert report.epoch_losses[-1] < report.epoch_losses[0]


def test_ka_without_augment_keeps_singular_vectors():
    """n = 0: only s′ learns, so each new weight is U·diag(s′)·Vᵀ with the old U, V (Eq. 15)."""
    model, base, data = _setup()

    result = compact_refine(model, base, data, TrainConfig(epochs=2, batch_size=16, lr=0.05),
                            CompactConfig("ka", n=0), seed=2)

    layer = factor_layers(model)[3]
    u, s, v = rules.svd_factors(base[layer.name])
    new = rules.as_matrix(result.state[layer.name]).double()
    s_new = torch.diagonal(u.T @ new @ v)
    assert torch.allclose(u @ torch.diag(s_new) @ v.T, new, atol=1e-5)
    assert not torch.allclose(s_new, s, atol=1e-4)


@pytest.mark.parametrize("method", ["lru", "lru-out"])
def test_lru_update_has_rank_at_most_r_and_ml_keeps_the_top_filters(method):
    model, base, data = _setup()
    layer = factor_layers(model)[5]

    lru = compact_refine(model, base, data, TRAIN, CompactConfig(method, rank=2), seed=2)
    ml = compact_refine(model, base, data, TRAIN, CompactConfig("ml", rank=3), seed=2)

    delta = rules.as_matrix(lru.state[layer.name] - base[layer.name]).double()
    assert int(torch.linalg.matrix_rank(delta, atol=1e-6)) == 2
    _, _, v = rules.svd_factors(base[layer.name])
    w = rules.as_matrix(ml.state[layer.name]).double()
    assert torch.allclose(w @ v[:, :3] @ v[:, :3].T, w, atol=1e-5)  # rows lie in span of the top-3 filters
    assert math.isclose(ml.update_fraction, ml.update_param_count / count_parameters(model))


def _known_shapes() -> torch.nn.Module:
    """Conv 1→4 (3×3, no bias): o = 4, i = 9; BN(4): 8 parameters; FC 144→3: o = 3, i = 144, 3 biases."""
    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Conv2d(1, 4, 3, bias=False), torch.nn.BatchNorm2d(4), torch.nn.ReLU(),
                               torch.nn.Flatten(), torch.nn.Linear(4 * 6 * 6, 3))


@pytest.mark.parametrize("method, rank, factor_shapes, expected", [
    ("lru", 1, {"0.weight": {"R": (1, 9)}, "4.weight": {"R": (1, 144)}}, 9 + 144 + 8 + 3),
    ("lru", 2, {"0.weight": {"R": (2, 9)}, "4.weight": {"R": (2, 144)}}, 18 + 288 + 8 + 3),
    ("lru-out", 1, {"0.weight": {"L": (4, 1)}, "4.weight": {"L": (3, 1)}}, 4 + 3 + 8 + 3),
])
def test_lru_parameter_count_on_layers_of_known_shape(method, rank, factor_shapes, expected):
    """Chen et al.'s Table 1 counts r·i per layer for LRU (learned R, r × i); lru-out sends o·r."""
    model = _known_shapes()
    base = {k: v.clone() for k, v in model.state_dict().items()}
    g = torch.Generator().manual_seed(1)
    data = TensorData(torch.randn(32, 1, 8, 8, generator=g), torch.randint(0, 3, (32,), generator=g))

    result = compact_refine(model, base, data, TRAIN, CompactConfig(method, rank=rank), seed=3)

    assert {k: {f: tuple(t.shape) for f, t in fs.items()} for k, fs in result.factors.items()} == factor_shapes
    assert result.update_param_count == expected
    assert set(result.dense) == {"1.weight", "1.bias", "1.running_mean", "1.running_var", "1.num_batches_tracked",
                                 "4.bias"}
