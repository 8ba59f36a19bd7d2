"""Tiered students (Zhao et al.): activation-based pruning (§3, Eq. 1–2), architecture inference,
memory fitting and layer-wise knowledge transfer (§4.1, Eq. 3–4)."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from edgeupdate.algorithms.filter_pruning import pruning_plan
from edgeupdate.algorithms.knowledge_transfer import (
    KnowledgeTransferLoss,
    TransferConfig,
    fine_tune_student,
    trainable_parameters,
    transfer_groups,
    transfer_knowledge,
    transfer_loss,
)
from edgeupdate.algorithms.students import (
    ActivationStats,
    StudentError,
    StudentSpec,
    activation_zero_fractions,
    derive_student,
    filters_to_keep,
    fit_student,
    prune_student,
    state_bytes,
)
from edgeupdate.datasets import load_dataset
from edgeupdate.models.zoo import ArchitectureError, build_model, infer_architecture, model_for_state
from edgeupdate.training import TrainConfig, evaluate, train

SHAPE = (1, 8, 8)
CLASSES = 10


def _images(n: int = 32, seed: int = 3) -> torch.Tensor:
    return torch.randn(n, *SHAPE, generator=torch.Generator().manual_seed(seed))


def _state(model: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def _randomise_bn(model: nn.Module, seed: int = 5) -> None:
    """Non-trivial BatchNorm statistics, so that copying them is checked too."""
    g = torch.Generator().manual_seed(seed)
    for mod in model.modules():
        if isinstance(mod, nn.modules.batchnorm._BatchNorm):
            mod.running_mean.copy_(torch.randn(mod.running_mean.shape, generator=g) * 0.1)
            mod.running_var.copy_(torch.rand(mod.running_var.shape, generator=g) + 0.5)


def _silence(model: nn.Module, layer: str, filters: list[int]) -> None:
    """Make ``filters`` of ``layer`` output ≤ 0 everywhere, so ReLU zeroes them on every image."""
    mod = model.get_submodule(layer)
    with torch.no_grad():
        mod.weight[filters] = 0
        if getattr(mod, "bias", None) is not None:
            mod.bias[filters] = -1.0
        bn = model.get_submodule(layer.replace("conv", "bn")) if "conv" in layer else None
        if isinstance(bn, nn.BatchNorm2d):
            bn.weight[filters] = 0
            bn.bias[filters] = -1.0


# --------------------------------------------------------------------------- §3: the criterion


def test_zero_fraction_is_measured_on_the_relu_output_of_each_filter():
    conv = nn.Conv2d(1, 3, 1)
    with torch.no_grad():
        conv.weight.copy_(torch.tensor([1.0, -1.0, 0.0]).reshape(3, 1, 1, 1))
        conv.bias.copy_(torch.tensor([0.0, 0.0, -1.0]))
    model = nn.Sequential(conv, nn.ReLU(), nn.Conv2d(3, 2, 1), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
                          nn.Linear(2, 2))
    x = torch.tensor([[1.0, -1.0], [2.0, 0.0]]).reshape(1, 1, 2, 2)

    stats = activation_zero_fractions(model, x)

    assert stats.layers == ("0", "2")
    # filter 0 = x: zero at -1 and 0; filter 1 = -x: zero at 1, 2, 0; filter 2 = -1: zero everywhere
    assert stats.zero_fraction[0].tolist() == [[0.5, 0.75, 1.0]]


def test_threshold_keeps_n_minus_avgc_filters_dropping_the_most_often_silent():
    zero = torch.tensor([[1.0, 0.75, 0.0, 0.5],
                         [1.0, 0.5, 0.25, 1.0]])
    stats = ActivationStats(("conv",), (zero,))

    # P = 0.75: image 1 has {0, 1} safe, image 2 {0, 3}: avgc = 2; filter 2 is never safe,
    # filters 1 and 3 are safe once each, 1 has the lower mean zero fraction
    assert filters_to_keep(stats, 0.75) == ((1, 2),)
    # P = 1.0: safe counts 1 and 2 → avgc = 1.5, rounded half up: 2 go (0 always, 3 once)
    assert filters_to_keep(stats, 1.0) == ((1, 2),)
    # P = 0.5: 3 safe on both images → only the never-safe filter 2 stays
    assert filters_to_keep(stats, 0.5) == ((2,),)
    # P = 0: every filter is always safe, but a layer keeps one
    assert filters_to_keep(stats, 0.0) == ((2,),)
    # width_scale prunes further in the same order
    assert filters_to_keep(stats, 1.0, width_scale=0.5) == ((2,),)
    with pytest.raises(StudentError, match="threshold"):
        filters_to_keep(stats, 1.5)


def test_derive_removes_exactly_the_silent_neurons_and_keeps_the_teachers_function():
    teacher = build_model("mlp", SHAPE, CLASSES, seed=0, hidden=(12, 10))
    with torch.no_grad():
        teacher[1].weight.mul_(0.01)
        teacher[1].bias.fill_(5.0)  # always active ...
        teacher[3].bias.fill_(5.0)
    _silence(teacher, "1", [2, 7])  # ... except these, never active
    _silence(teacher, "3", [0, 4, 9])
    state = _state(teacher)
    x = _images()

    spec, student_state = derive_student("mlp", SHAPE, CLASSES, state, x, threshold=1.0, images=16)

    assert spec.kept == (tuple(i for i in range(12) if i not in (2, 7)), (1, 2, 3, 5, 6, 7, 8))
    assert spec.widths == (10, 7) and spec.images == 16 and spec.threshold == 1.0
    student = spec.build()
    student.load_state_dict(student_state)
    with torch.no_grad():
        assert torch.allclose(student(x), teacher(x), atol=1e-5)
    assert state_bytes(student_state) < state_bytes(state)


# --------------------------------------------------------------------------- the physical student


@pytest.mark.parametrize("name", ["mlp", "vgg-tiny", "tiny-resnet", "resnet20"])
def test_student_that_keeps_every_filter_is_the_teacher(name):
    teacher = build_model(name, SHAPE, CLASSES, seed=1)
    _randomise_bn(teacher)
    state = _state(teacher)
    plan = pruning_plan(teacher, all_layers=True)
    everything = [range(teacher.get_submodule(g.conv).weight.shape[0]) for g in plan]

    spec, student_state = prune_student(name, SHAPE, CLASSES, state, everything)

    assert student_state.keys() == state.keys()
    assert all(torch.equal(student_state[k], state[k]) for k in state)
    student = spec.build()
    student.load_state_dict(student_state)
    teacher.eval(), student.eval()
    x = _images()
    with torch.no_grad():
        assert torch.equal(student(x), teacher(x))


def test_pruned_vgg_keeps_the_teachers_weights_of_kept_filters():
    teacher = build_model("vgg-tiny", SHAPE, CLASSES, seed=2)
    state = _state(teacher)

    spec, s = derive_student("vgg-tiny", SHAPE, CLASSES, state, _images(64), threshold=0.7, images=64)

    k = [torch.tensor(kept) for kept in spec.kept]
    assert sum(spec.widths) < 16 + 16 + 32 + 64  # something was pruned
    assert torch.equal(s["0.weight"], state["0.weight"][k[0]])
    for layer, (prev, cur) in zip(("3", "6", "9"), ((0, 1), (1, 2), (2, 3))):
        assert torch.equal(s[f"{layer}.weight"], state[f"{layer}.weight"][k[cur]][:, k[prev]])
        assert torch.equal(s[f"{layer}.bias"], state[f"{layer}.bias"][k[cur]])
    assert torch.equal(s["14.weight"], state["14.weight"][:, k[3]])
    assert torch.equal(s["14.bias"], state["14.bias"])


def test_pruned_resnet_keeps_the_residual_stream_and_the_kept_inner_filters():
    teacher = build_model("tiny-resnet", SHAPE, CLASSES, seed=2)
    _randomise_bn(teacher)
    state = _state(teacher)

    spec, s = derive_student("tiny-resnet", SHAPE, CLASSES, state, _images(64), threshold=0.7, images=64)

    assert spec.blocks == (1, 1, 1) and spec.kept_blocks == (0, 1, 2)
    assert spec.widths < (16, 32, 64)
    for b, kept in enumerate(spec.kept):
        k = torch.tensor(kept)
        p = f"layers.{b}."
        assert torch.equal(s[p + "conv1.weight"], state[p + "conv1.weight"][k])
        for stat in ("weight", "bias", "running_mean", "running_var"):
            assert torch.equal(s[p + "bn1." + stat], state[p + "bn1." + stat][k])
        assert torch.equal(s[p + "conv2.weight"], state[p + "conv2.weight"][:, k])
        assert torch.equal(s[p + "bn2.running_var"], state[p + "bn2.running_var"])
    assert torch.equal(s["stem.0.weight"], state["stem.0.weight"])
    assert torch.equal(s["head.2.weight"], state["head.2.weight"])


def test_removing_silent_filters_leaves_every_output_unchanged():
    teacher = build_model("vgg-tiny", SHAPE, CLASSES, seed=4)
    _silence(teacher, "0", [3, 5])
    _silence(teacher, "6", [0, 31])
    state = _state(teacher)
    kept = [[i for i in range(16) if i not in (3, 5)], range(16), range(1, 31), range(64)]

    spec, s = prune_student("vgg-tiny", SHAPE, CLASSES, state, kept)

    student = spec.build()
    student.load_state_dict(s)
    x = _images()
    with torch.no_grad():
        assert torch.allclose(student(x), teacher(x), atol=1e-5)
    # the zero-padded student maps sit at the teacher's channel indices: nothing to transfer
    with KnowledgeTransferLoss(teacher, student, spec, TransferConfig()) as loss:
        terms = loss.terms(student, x, torch.zeros(len(x), dtype=torch.long))
    assert float(terms.blocks) < 1e-5 and float(terms.logits) < 1e-4
    assert terms.pairs == [(0, 0)] * 4


def test_shallow_residual_student_keeps_each_stages_transition_and_last_block():
    teacher = build_model("resnet20", SHAPE, CLASSES, seed=0)
    state = _state(teacher)

    spec, s = derive_student("resnet20", SHAPE, CLASSES, state, _images(), threshold=1.0)

    assert spec.kept_blocks == (2, 3, 5, 6, 8) and spec.blocks == (1, 2, 2)
    for new, old in enumerate(spec.kept_blocks):
        k = torch.tensor(spec.kept[new])
        assert torch.equal(s[f"layers.{new}.conv1.weight"], state[f"layers.{old}.conv1.weight"][k])
        assert torch.equal(s[f"layers.{new}.conv2.weight"], state[f"layers.{old}.conv2.weight"][:, k])
        assert torch.equal(s[f"layers.{new}.bn2.weight"], state[f"layers.{old}.bn2.weight"])
    assert "layers.5.conv1.weight" not in s


# --------------------------------------------------------------------------- architecture inference


@pytest.mark.parametrize("name", ["mlp", "vgg-tiny", "tiny-resnet", "resnet20", "vggnet"])
def test_model_for_state_rebuilds_any_student_from_its_weights(name):
    teacher = build_model(name, SHAPE, CLASSES, seed=0)
    spec, s = derive_student(name, SHAPE, CLASSES, _state(teacher), _images(), threshold=0.8)
    reference = spec.build()
    reference.load_state_dict(s)

    device_model = model_for_state(name, SHAPE, CLASSES, s)

    assert {k: v.shape for k, v in device_model.state_dict().items()} == {k: v.shape for k, v in s.items()}
    assert infer_architecture(name, s).widths == spec.widths
    device_model.eval(), reference.eval()
    with torch.no_grad():
        assert torch.equal(device_model(_images()), reference(_images()))


def test_model_for_state_names_what_does_not_fit():
    s = _state(build_model("vgg-tiny", SHAPE, CLASSES, seed=0))
    s["3.weight"] = s["3.weight"][:, :5]

    with pytest.raises(ArchitectureError, match="3.weight"):
        model_for_state("vgg-tiny", SHAPE, CLASSES, s)
    with pytest.raises(ArchitectureError, match="tiny-resnet"):
        model_for_state("tiny-resnet", SHAPE, CLASSES, _state(build_model("mlp", SHAPE, CLASSES, seed=0)))


def test_spec_round_trips_through_json_and_rejects_bad_input():
    spec, _ = derive_student("resnet20", SHAPE, CLASSES, _state(build_model("resnet20", SHAPE, CLASSES, seed=0)),
                             _images(), threshold=0.9)

    again = StudentSpec.from_json(spec.to_json())

    assert again == spec
    assert [p.shape for p in again.build().parameters()] == [p.shape for p in spec.build().parameters()]
    with pytest.raises(StudentError, match="lacks 'kept'"):
        StudentSpec.from_dict({k: v for k, v in spec.to_dict().items() if k != "kept"})
    with pytest.raises(StudentError, match="not JSON"):
        StudentSpec.from_json("{")
    with pytest.raises(StudentError, match="disagree"):
        StudentSpec.from_dict({**spec.to_dict(), "widths": [1, 2, 3, 4, 5]})


# --------------------------------------------------------------------------- memory budgets


def test_fit_student_returns_the_least_pruned_student_within_the_budget():
    state = _state(build_model("vgg-tiny", SHAPE, CLASSES, seed=0))
    x = _images(64)
    full = state_bytes(state)

    roomy, s_roomy = fit_student("vgg-tiny", SHAPE, CLASSES, state, x, full, images=64)
    p1, s_p1 = derive_student("vgg-tiny", SHAPE, CLASSES, state, x, 1.0, images=64)
    assert roomy == p1 and state_bytes(s_roomy) == state_bytes(s_p1)

    budget = full // 4
    spec, s = fit_student("vgg-tiny", SHAPE, CLASSES, state, x, budget, apply_overhead_bytes=1000, images=64)
    assert state_bytes(s) + 1000 <= budget
    assert spec.threshold == 0.7 and spec.width_scale < 1.0  # P alone could not get there
    wider, s_wider = derive_student("vgg-tiny", SHAPE, CLASSES, state, x, 0.7, images=64,
                                    width_scale=round(spec.width_scale + 0.01, 2))
    assert state_bytes(s_wider) + 1000 > budget

    half, s_half = fit_student("vgg-tiny", SHAPE, CLASSES, state, x, budget, apply_overhead_bytes=lambda b: b,
                               images=64)
    assert 2 * state_bytes(s_half) <= budget


def test_fit_student_says_when_nothing_fits():
    state = _state(build_model("vgg-tiny", SHAPE, CLASSES, seed=0))

    with pytest.raises(StudentError, match="no vgg-tiny student fits 200 bytes"):
        fit_student("vgg-tiny", SHAPE, CLASSES, state, _images(), 200)
    with pytest.raises(StudentError, match="budget_bytes"):
        fit_student("vgg-tiny", SHAPE, CLASSES, state, _images(), 0)


# --------------------------------------------------------------------------- §4.1 knowledge transfer


def test_groups_and_the_layers_the_paper_trains():
    resnet = build_model("resnet20", SHAPE, CLASSES, seed=0)
    vggnet = build_model("vggnet", SHAPE, CLASSES, seed=0)

    assert [g.outputs for g in transfer_groups(resnet)] == [
        ("layers.0", "layers.1", "layers.2"), ("layers.3", "layers.4", "layers.5"),
        ("layers.6", "layers.7", "layers.8")]
    assert [(g.outputs, g.channels) for g in transfer_groups(vggnet)] == [
        (("2", "5"), ("0", "3")), (("9", "12"), ("7", "10")), (("16", "19"), ("14", "17")),
        (("24", "27"), ("22", "25"))]
    assert [n for n, _ in trainable_parameters(resnet)] == [
        "layers.2.conv2.weight", "layers.5.conv2.weight", "layers.8.conv2.weight"]


@pytest.fixture(scope="module")
def digits_setup():
    """A trained mlp teacher on digits and a student pruned at P = 1.0 (its silent neurons removed)."""
    ds = load_dataset("digits")
    teacher = build_model("mlp", ds.input_shape, ds.num_classes, seed=0, hidden=(64, 64))
    train(teacher, ds.train, TrainConfig(epochs=8, batch_size=64, lr=0.005), seed=0)
    t_state = _state(teacher)
    spec, s_state = derive_student("mlp", ds.input_shape, ds.num_classes, t_state, ds.train, 1.0, seed=0)
    return ds, t_state, spec, s_state


def test_knowledge_transfer_recovers_the_pruned_student(digits_setup):
    ds, t_state, spec, s_state = digits_setup
    cfg = TrainConfig(epochs=3, batch_size=64, lr=0.003)
    student = spec.build()
    student.load_state_dict(s_state)
    pruned_acc = evaluate(student, ds.test)[1]
    before = transfer_loss(t_state, s_state, spec, ds.test)

    after_state, report = transfer_knowledge(t_state, s_state, spec, ds.train, cfg, seed=1)

    student.load_state_dict(after_state)
    assert spec.widths[0] < 64 or spec.widths[1] < 64
    assert transfer_loss(t_state, after_state, spec, ds.test)["loss"] < 0.7 * before["loss"]
    assert evaluate(student, ds.test)[1] > pruned_acc + 0.03
    assert report.steps == 3 * -(-len(ds.train) // 64)
    # §4.1: only the last layer of each group moved ("3" is the mlp's last hidden layer)
    assert [k for k in s_state if not torch.equal(s_state[k], after_state[k])] == ["3.weight", "3.bias"]
    again, _ = transfer_knowledge(t_state, s_state, spec, ds.train, cfg, seed=1)
    assert all(torch.equal(again[k], after_state[k]) for k in again)


def test_label_free_transfer_and_fine_tuning_baseline(digits_setup):
    ds, t_state, spec, s_state = digits_setup
    cfg = TrainConfig(epochs=1, batch_size=64, lr=0.003)
    no_labels = TransferConfig(lambda_labels=0.0, trainable="all")
    before = transfer_loss(t_state, s_state, spec, ds.test, cfg=no_labels)

    kt, _ = transfer_knowledge(t_state, s_state, spec, ds.train, cfg, seed=2, cfg=no_labels)
    ft, _ = fine_tune_student(s_state, spec, ds.train, cfg, seed=2, trainable="all")

    assert transfer_loss(t_state, kt, spec, ds.test, cfg=no_labels)["loss"] < before["loss"]
    assert before["labels"] > 0 and all(not torch.equal(ft[k], s_state[k]) for k in ("1.weight", "5.weight"))
    with pytest.raises(StudentError, match="trainable"):
        TransferConfig(trainable="head")


def test_build_model_rejects_widths_that_do_not_fit_the_architecture():
    with pytest.raises(ValueError, match="vgg-tiny: widths must list 4"):
        build_model("vgg-tiny", SHAPE, CLASSES, seed=0, widths=(8, 8))
    with pytest.raises(ValueError, match="resnet20: widths must list 5"):
        build_model("resnet20", SHAPE, CLASSES, seed=0, widths=(4,) * 9, blocks=(1, 2, 2))
    with pytest.raises(ValueError, match="only for residual"):
        build_model("mlp", SHAPE, CLASSES, seed=0, blocks=(1, 1, 1))
    with pytest.raises(ValueError, match="positive integers"):
        build_model("mlp", SHAPE, CLASSES, seed=0, widths=(8, 0))
