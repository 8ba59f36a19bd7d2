"""Deep Partial Updating family: mask selection, rewinding and the two-step update (thesis ch. 5)."""

from __future__ import annotations

import math

import pytest
import torch

from edgeupdate.algorithms.partial import (
    PartialUpdateConfig,
    first_step,
    partial_update,
    prune_with_rewinding,
    should_reinitialize,
)
from edgeupdate.algorithms.partial_cost import analytic_bytes, shannon_index_bits
from edgeupdate.algorithms.partial_masks import (
    combined_contribution,
    global_contribution,
    maskable_names,
    random_layer_masks,
    rewind,
    top_k_mask,
    update_count,
)
from edgeupdate.models.zoo import build_model
from edgeupdate.seeding import derive_seed, torch_generator
from edgeupdate.training import TensorData, TrainConfig, train

TRAIN = TrainConfig(epochs=2, batch_size=32, lr=0.01, device="cpu")


def _t(values):
    return torch.tensor(values, dtype=torch.float64)


def _data(n: int = 96, seed: int = 0) -> TensorData:
    g = torch_generator(seed, "test-data")
    x = torch.randn(n, 1, 4, 4, generator=g)
    w = torch.randn(16, 3, generator=g)
    y = (x.reshape(n, -1) @ w).argmax(1)
    return TensorData(x, y)


def _mlp(seed: int = 1):
    return build_model("mlp", (1, 4, 4), 3, seed, hidden=(8,))


def _base(seed: int = 1) -> dict[str, torch.Tensor]:
    """A 'deployed' model: the tiny MLP after a short training on other data."""
    model = _mlp(seed)
    train(model, _data(64, seed=99), TRAIN, seed=5)
    return {n: t.detach().clone() for n, t in model.state_dict().items()}


# ---------------------------------------------------------------- top-k, ties, contributions

def test_top_k_mask_selects_exact_global_top_k_across_layers():
    scores = {"a": _t([[0.5, 0.1], [0.9, 0.3]]), "b": _t([0.7, 0.2, 0.8])}

    masks = top_k_mask(scores, 3)

    assert masks["a"].tolist() == [[False, False], [True, False]]
    assert masks["b"].tolist() == [True, False, True]
    assert masks["a"].dtype == torch.bool


def test_top_k_mask_breaks_ties_by_lower_flat_index_in_mapping_order():
    scores = {"a": _t([1.0, 2.0, 2.0]), "b": _t([2.0, 0.0])}

    one, two, three = (top_k_mask(scores, c) for c in (1, 2, 3))

    assert one["a"].tolist() == [False, True, False] and not one["b"].any()
    assert two["a"].tolist() == [False, True, True] and not two["b"].any()
    assert three["a"].tolist() == [False, True, True] and three["b"].tolist() == [True, False]


def test_top_k_mask_all_equal_scores_takes_first_count_positions():
    masks = top_k_mask({"x": torch.zeros(2, 3), "y": torch.zeros(4)}, 4)

    assert masks["x"].reshape(-1).tolist() == [True] * 4 + [False] * 2
    assert not masks["y"].any()


def test_top_k_mask_respects_eligible_entries():
    scores = {"a": _t([5.0, 4.0, 3.0, 2.0])}
    eligible = {"a": torch.tensor([False, True, False, True])}

    masks = top_k_mask(scores, 1, eligible=eligible)

    assert masks["a"].tolist() == [False, True, False, False]
    with pytest.raises(ValueError, match="count must be in"):
        top_k_mask(scores, 3, eligible=eligible)


def test_top_k_mask_rejects_bad_count_and_nan():
    with pytest.raises(ValueError, match="count must be in"):
        top_k_mask({"a": _t([1.0, 2.0])}, 3)
    with pytest.raises(ValueError, match="NaN"):
        top_k_mask({"a": _t([1.0, math.nan])}, 1)
    assert not top_k_mask({"a": _t([1.0, 2.0])}, 0)["a"].any()


def test_combined_contribution_follows_eq_5_10_on_hand_computed_case():
    g = {"a": _t([1.0, 3.0]), "b": _t([4.0])}       # sum 8
    loc = {"a": _t([2.0, 0.0]), "b": _t([2.0])}     # sum 4

    c = combined_contribution(g, loc, 0.5)

    # 0.5·(g/8) + 0.5·(loc/4) = 0.5 · Eq. 5.10
    assert torch.allclose(c["a"], _t([0.5 * 1 / 8 + 0.5 * 2 / 4, 0.5 * 3 / 8]), rtol=0, atol=1e-15)
    assert torch.allclose(c["b"], _t([0.5 * 4 / 8 + 0.5 * 2 / 4]), rtol=0, atol=1e-15)


def test_combined_contribution_keeps_ranking_when_local_total_is_negative():
    g = {"a": _t([1.0, 1.0, 2.0])}
    loc = {"a": _t([-1.0, -3.0, 1.0])}   # total −3: the loss went up

    c = combined_contribution(g, loc, 0.0)

    assert torch.equal(c["a"], loc["a"] / 5.0)


def test_lambda_extremes_equal_pure_global_and_pure_local_ranking():
    gen = torch_generator(3, "lam")
    g = {"w1": torch.rand(20, 30, generator=gen), "w2": torch.rand(50, generator=gen)}
    loc = {"w1": torch.randn(20, 30, generator=gen), "w2": torch.randn(50, generator=gen) + 0.5}
    count = 37

    at_one = top_k_mask(combined_contribution(g, loc, 1.0), count)
    at_zero = top_k_mask(combined_contribution(g, loc, 0.0), count)
    half = top_k_mask(combined_contribution(g, loc, 0.5), count)

    for name in g:
        assert torch.equal(at_one[name], top_k_mask(g, count)[name])
        assert torch.equal(at_zero[name], top_k_mask(loc, count)[name])
    assert any(not torch.equal(half[n], at_one[n]) for n in g)
    assert any(not torch.equal(half[n], at_zero[n]) for n in g)


def test_global_contribution_is_squared_increment():
    c = global_contribution({"w": _t([1.0, -2.0])}, {"w": _t([0.5, 1.0])}, ["w"])

    assert c["w"].tolist() == [0.25, 9.0]


def test_update_count_is_floor_of_k_times_i_at_least_one():
    assert update_count(0.1, 152) == 15
    assert update_count(0.29, 100) == 29
    assert update_count(0.001, 10) == 1
    assert update_count(1.0, 7) == 7
    with pytest.raises(ValueError, match="k must be in"):
        update_count(0.0, 10)


def test_random_layer_masks_choose_round_k_n_per_layer_deterministically():
    shapes = {"w1": (10, 20), "w2": (7,), "w3": (3, 3)}

    masks = random_layer_masks(shapes, 0.25, torch_generator(0, "rpu"))
    again = random_layer_masks(shapes, 0.25, torch_generator(0, "rpu"))
    other = random_layer_masks(shapes, 0.25, torch_generator(1, "rpu"))

    assert [int(masks[n].sum()) for n in shapes] == [50, 2, 2]   # 50, round(1.75), round(2.25)
    assert all(masks[n].shape == torch.Size(s) for n, s in shapes.items())
    assert all(torch.equal(masks[n], again[n]) for n in shapes)
    assert not torch.equal(masks["w1"], other["w1"])


def test_rewind_restores_unmasked_weights_exactly():
    gen = torch_generator(4, "rewind")
    full = {"w": torch.randn(5, 6, generator=gen), "b": torch.randn(6, generator=gen)}
    base = {"w": torch.randn(5, 6, generator=gen), "b": torch.randn(6, generator=gen)}
    mask = torch.rand(5, 6, generator=gen) < 0.3
    full_before = {n: t.clone() for n, t in full.items()}

    out = rewind(full, base, {"w": mask})

    assert torch.equal(out["w"][mask], full["w"][mask])
    assert torch.equal(out["w"][~mask], base["w"][~mask])
    assert torch.equal(out["b"], full["b"])                       # dense name: as in full
    assert all(torch.equal(full[n], full_before[n]) for n in full)  # inputs untouched


def test_maskable_names_default_excludes_biases():
    model = _mlp()

    assert maskable_names(model) == ["1.weight", "3.weight"]
    assert maskable_names(model, mask_biases=True) == ["1.weight", "1.bias", "3.weight", "3.bias"]


# ---------------------------------------------------------------- the two-step update

@pytest.mark.parametrize("selector", ["combined", "global", "local", "random"])
def test_partial_update_changes_exactly_the_masked_weights(selector):
    base = _base()
    cfg = PartialUpdateConfig(k=0.1, selector=selector)

    result = partial_update(_mlp(), base, _data(), TRAIN, cfg, seed=7)

    names = ["1.weight", "3.weight"]
    target = update_count(0.1, 16 * 8 + 8 * 3)
    assert result.info.changed_count == target == sum(int(m.sum()) for m in result.masks.values())
    assert result.info.maskable_count == 152 and result.reference == "base"
    changed = 0
    for n in names:
        m = result.masks[n]
        assert torch.equal(result.state[n][~m], base[n][~m])     # bit-identical where masked out
        changed += int((result.state[n] != base[n]).sum())
    assert changed == target                                     # every masked weight moved
    assert set(result.info.dense_names) == {"1.bias", "3.bias"}
    assert not torch.equal(result.state["1.bias"], base["1.bias"])  # biases train fully


def test_partial_update_rewinds_toward_init_when_reinitialising():
    base, init = _base(), {n: t.clone() for n, t in _mlp(seed=11).state_dict().items()}

    result = partial_update(_mlp(), base, _data(), TRAIN, PartialUpdateConfig(k=0.05), seed=7, init=init)

    assert result.reference == "init"
    for n, m in result.masks.items():
        assert torch.equal(result.state[n][~m], init[n][~m])


def test_partial_update_with_masked_biases_keeps_unmasked_biases():
    base = _base()

    result = partial_update(_mlp(), base, _data(), TRAIN, PartialUpdateConfig(k=0.1, mask_biases=True), seed=2)

    assert set(result.masks) == {"1.weight", "1.bias", "3.weight", "3.bias"}
    assert result.info.dense_names == ()
    for n, m in result.masks.items():
        assert torch.equal(result.state[n][~m], base[n][~m])


def test_partial_update_is_deterministic_per_seed():
    base, data, cfg = _base(), _data(), PartialUpdateConfig(k=0.2)

    a = partial_update(_mlp(), base, data, TRAIN, cfg, seed=3)
    b = partial_update(_mlp(), base, data, TRAIN, cfg, seed=3)
    c = partial_update(_mlp(), base, data, TRAIN, cfg, seed=4)

    assert all(torch.equal(a.state[n], b.state[n]) for n in a.state)
    assert all(torch.equal(a.masks[n], b.masks[n]) for n in a.masks)
    assert any(not torch.equal(a.state[n], c.state[n]) for n in a.state)


def test_shared_first_step_gives_the_same_update_as_a_fresh_one():
    base, data = _base(), _data()
    shared = first_step(_mlp(), base, data, TRAIN, seed=9)

    for selector in ("global", "local", "combined"):
        cfg = PartialUpdateConfig(k=0.1, selector=selector)
        fresh = partial_update(_mlp(), base, data, TRAIN, cfg, seed=9)
        reused = partial_update(_mlp(), base, data, TRAIN, cfg, seed=9, first=shared)
        assert all(torch.equal(fresh.state[n], reused.state[n]) for n in fresh.state)
        assert all(torch.equal(fresh.masks[n], reused.masks[n]) for n in fresh.masks)
    assert shared.local is not None and all(not t.eq(0).all() for t in shared.local.values())


def test_first_step_must_match_the_update_it_feeds():
    base, data = _base(), _data()
    no_local = first_step(_mlp(), base, data, TRAIN, seed=9, record_local=False)

    with pytest.raises(ValueError, match="did not record the local contribution"):
        partial_update(_mlp(), base, data, TRAIN, PartialUpdateConfig(k=0.1), seed=9, first=no_local)
    with pytest.raises(ValueError, match="mask_biases"):
        partial_update(_mlp(), base, data, TRAIN, PartialUpdateConfig(k=0.1, selector="global", mask_biases=True),
                       seed=9, first=no_local)


def test_local_selector_ranks_by_accumulated_minus_grad_times_step():
    """Replays step one with the documented seed and checks the mask is top-k of −Σ g⊙Δw."""
    base, data = _base(), _data()
    names = ["1.weight", "3.weight"]
    acc = {n: torch.zeros_like(base[n]) for n in names}

    def on_step(grads, deltas):
        for n in names:
            acc[n] -= grads[n] * deltas[n]

    replay = _mlp()
    replay.load_state_dict(base)
    train(replay, data, TRAIN, derive_seed(7, "partial", "step1"), on_step=on_step)

    result = partial_update(_mlp(), base, data, TRAIN, PartialUpdateConfig(k=0.1, selector="local"), seed=7)

    expected = top_k_mask(acc, update_count(0.1, 152))
    assert all(torch.equal(result.masks[n], expected[n]) for n in names)


def test_partial_update_reports_losses_and_times():
    result = partial_update(_mlp(), _base(), _data(), TRAIN, PartialUpdateConfig(k=0.1), seed=1,
                            validation=_data(60, seed=42))
    info = result.info

    assert info.loss_full < info.loss_after_rewind < info.loss_start   # on this example
    assert math.isfinite(info.loss_start) and math.isfinite(info.loss_final)
    assert info.step1_s > 0 and info.step2_s > 0 and info.server_s >= info.step1_s + info.step2_s
    assert info.val_accuracy_final >= info.val_accuracy_rewind
    assert info.val_accuracy_base is not None
    assert info.to_dict()["changed_count"] == 15


def test_iterative_rewinding_reaches_k_in_20_percent_steps():
    base = _base()
    cfg = PartialUpdateConfig(k=0.3, rewinding="iterative", iterative_fraction=0.2)

    result = partial_update(_mlp(), base, _data(), TrainConfig(epochs=1, batch_size=32, lr=0.01, device="cpu"),
                            cfg, seed=5)

    # 152 → 121 → 96 → 76 → 60 → 48 → 45 (= floor(0.3·152)): six rewindings
    assert len(result.info.rewind_losses) == 6
    assert result.info.changed_count == 45
    for n, m in result.masks.items():
        assert torch.equal(result.state[n][~m], base[n][~m])


def test_prune_with_rewinding_returns_sparse_model():
    init = {n: t.clone() for n, t in _mlp(seed=11).state_dict().items()}

    result = prune_with_rewinding(_mlp(), init, _data(), TRAIN, 0.1, seed=3)

    assert result.reference == "zeros"
    assert result.info.changed_count == 15
    for n, m in result.masks.items():
        assert not result.state[n][~m].any()
    nonzero = sum(int((result.state[n] != 0).sum()) for n in result.masks)
    assert nonzero == 15


def test_partial_update_rejects_mismatched_base():
    bad = {n: t for n, t in _base().items() if n != "3.bias"}

    with pytest.raises(ValueError, match="base does not match the model"):
        partial_update(_mlp(), bad, _data(), TRAIN, PartialUpdateConfig(k=0.1), seed=0)


@pytest.mark.parametrize("kwargs, message", [
    ({"k": 0.0}, "k must be in"),
    ({"k": 1.5}, "k must be in"),
    ({"k": 0.1, "selector": "magic"}, "selector must be one of"),
    ({"k": 0.1, "lam": 1.2}, "lam must be in"),
    ({"k": 0.1, "rewinding": "twice"}, "rewinding must be one of"),
    ({"k": 0.1, "iterative_fraction": 1.0}, "iterative_fraction"),
    ({"k": 0.1, "selector": "random", "rewinding": "iterative"}, "no first step"),
])
def test_config_rejects_bad_values(kwargs, message):
    with pytest.raises(ValueError, match=message):
        PartialUpdateConfig(**kwargs)


def test_selector_sets_effective_lambda():
    assert PartialUpdateConfig(k=0.1, selector="global", lam=0.3).effective_lam == 1.0
    assert PartialUpdateConfig(k=0.1, selector="local", lam=0.3).effective_lam == 0.0
    assert PartialUpdateConfig(k=0.1, lam=0.3).effective_lam == 0.3


# ---------------------------------------------------------------- re-initialisation and cost

def test_should_reinitialize_when_data_more_than_doubles():
    assert should_reinitialize(2001, 1000)
    assert not should_reinitialize(2000, 1000)
    with pytest.raises(ValueError, match="non-negative"):
        should_reinitialize(-1, 0)


def test_analytic_bytes_matches_thesis_formula():
    assert shannon_index_bits(0.5) == pytest.approx(1.0)
    assert shannon_index_bits(1.0) == 0.0
    assert analytic_bytes(1.0, 1000) == 4000.0
    assert analytic_bytes(0.5, 1000) == pytest.approx((32 * 500 + 1000) / 8)
    assert analytic_bytes(0.5, 1000, value_bits=8) == pytest.approx((8 * 500 + 1000) / 8)
    h = 0.01 * math.log2(100) + 0.99 * math.log2(1 / 0.99)
    assert analytic_bytes(0.01, 669_706) == pytest.approx((32 * 0.01 + h) * 669_706 / 8)
