"""FP (Chen et al. 2022 §5.1; Li et al. 2017): L1-norm filter pruning, fine-tuned, all remaining params sent."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from edgeupdate.algorithms.factorized import CompactConfig, compact_refine
from edgeupdate.algorithms.filter_pruning import PruneGroup, PruningError, pruning_masks, pruning_plan
from edgeupdate.models.zoo import build_model, count_parameters
from edgeupdate.training import TensorData, TrainConfig

SHAPE = (1, 16, 16)
TRAIN = TrainConfig(epochs=1, batch_size=16, lr=0.01)


def _data(n: int = 48, classes: int = 4) -> TensorData:
    g = torch.Generator().manual_seed(7)
    return TensorData(torch.randn(n, *SHAPE, generator=g), torch.randint(0, classes, (n,), generator=g))


def test_plan_prunes_only_block_internal_channels_of_a_resnet():
    model = build_model("tiny-resnet", SHAPE, 4, seed=0)

    plan = pruning_plan(model)

    assert plan == [PruneGroup(f"layers.{b}.conv1", f"layers.{b}.bn1", (f"layers.{b}.conv2",), ()) for b in range(3)]


def test_plan_follows_a_vgg_chain_into_the_classifier():
    model = build_model("vgg-tiny", SHAPE, 4, seed=0)

    plan = pruning_plan(model)

    assert [(g.conv, g.conv_consumers, g.linear_consumers) for g in plan] == [
        ("0", ("3",), ()), ("3", ("6",), ()), ("6", ("9",), ()), ("9", (), ("14",))]


def test_model_without_conv_layers_is_rejected():
    model = build_model("mlp", SHAPE, 4, seed=0, hidden=(8,))

    with pytest.raises(PruningError, match="no prunable conv"):
        pruning_masks(model, model.state_dict(), 0.5)


def test_lowest_l1_filters_are_removed_and_stay_zero_after_fine_tuning():
    model = build_model("tiny-resnet", SHAPE, 4, seed=0)
    base = {k: v.clone() for k, v in model.state_dict().items()}

    result = compact_refine(model, base, _data(), TRAIN, CompactConfig("fp", compression=0.5), seed=1)

    w = base["layers.1.conv1.weight"]
    norms = w.abs().reshape(w.shape[0], -1).sum(1)
    gone = torch.argsort(norms)[: w.shape[0] // 2]
    keep = result.pruned["layers.1.conv1.weight"].reshape(w.shape[0], -1)
    assert set(torch.nonzero(~keep.any(1)).flatten().tolist()) == set(gone.tolist())
    assert torch.all(result.state["layers.1.conv1.weight"][gone] == 0)
    assert torch.all(result.state["layers.1.bn1.weight"][gone] == 0)
    assert torch.all(result.state["layers.1.conv2.weight"][:, gone] == 0)
    assert not torch.equal(result.state["layers.1.conv2.weight"], base["layers.1.conv2.weight"])


def test_update_counts_every_remaining_parameter():
    model = build_model("tiny-resnet", SHAPE, 4, seed=0)
    base = {k: v.clone() for k, v in model.state_dict().items()}

    result = compact_refine(model, base, _data(), TRAIN, CompactConfig("fp", compression=0.5), seed=1)

    removed = 0
    for cin, o in ((16, 16), (16, 32), (32, 64)):  # block b: conv1 cin→o, bn1, conv2 o→o
        d = o // 2
        removed += d * cin * 9 + 2 * d + o * d * 9
    assert result.update_param_count == count_parameters(model) - removed


def test_masked_model_computes_what_the_physically_pruned_model_computes():
    model = build_model("vgg-tiny", SHAPE, 4, seed=0)
    base = {k: v.clone() for k, v in model.state_dict().items()}
    result = compact_refine(model, base, _data(), TRAIN, CompactConfig("fp", compression=0.5), seed=1)
    masked = build_model("vgg-tiny", SHAPE, 4, seed=0)
    masked.load_state_dict(result.state)

    layers: list[nn.Module] = []
    kept_in = torch.arange(1)
    for mod_name, mod in masked.named_children():
        if isinstance(mod, nn.Conv2d):
            keep = result.pruned[f"{mod_name}.weight"]
            kept = torch.nonzero(keep.reshape(keep.shape[0], -1).any(1)).flatten()
            small = nn.Conv2d(len(kept_in), len(kept), 3, padding=1)
            small.weight.data = mod.weight.data[kept][:, kept_in].clone()
            small.bias.data = mod.bias.data[kept].clone()
            layers.append(small)
            kept_in = kept
        elif isinstance(mod, nn.Linear):
            small = nn.Linear(len(kept_in), mod.out_features)
            small.weight.data = mod.weight.data[:, kept_in].clone()
            small.bias.data = mod.bias.data.clone()
            layers.append(small)
        else:
            layers.append(mod)
    physical = nn.Sequential(*layers)

    x = _data(8).x
    with torch.no_grad():
        assert torch.allclose(physical(x), masked(x), atol=1e-5)
    assert count_parameters(physical) == result.update_param_count


def test_pruned_entries_are_positive_zero_so_the_package_carries_only_kept_values():
    """A negative weight times a 0 mask is −0.0, bitwise not zero: the package would list it."""
    from edgeupdate.algorithms.factorized import build_package

    model = build_model("vgg-tiny", SHAPE, 4, seed=0)
    base = {k: v.clone() for k, v in model.state_dict().items()}
    result = compact_refine(model, base, _data(), TRAIN, CompactConfig("fp", compression=0.9), seed=1)

    for key, keep in result.pruned.items():
        gone = result.state[key][~keep]
        assert not torch.signbit(gone).any(), key
    pkg = build_package(result, base, base_version=1, target_version=2)
    listed = sum(e.count for e in pkg.header.tensors if e.name in result.pruned)
    assert listed == sum(int(keep.sum()) for keep in result.pruned.values())
    assert torch.equal(pkg.apply(base)["9.weight"], result.state["9.weight"])
