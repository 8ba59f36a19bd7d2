"""Selective layer-wise knowledge transfer from the server model to a student (Zhao et al. §4).

The student (cut by :mod:`edgeupdate.algorithms.students`) is trained batch by batch against the
teacher (§4.1, Figure 2):

* **Groups and blocks.** A *group* is a stage of blocks at one resolution, a *block* a unit whose
  output is an activation map F(X): in residual nets the stages and their residual blocks; in
  plain nets (VGG, MLP) every conv/Linear + ReLU is a block and a pooling or flatten ends a group
  (vgg-tiny: 4 groups of 1; vggnet: 3 conv groups of 2, one FC group of 2; mlp: one group of its
  hidden layers).
* **Pairing, Eq. (3)–(4).** Per batch and group, every teacher block k and student block j are
  compared by the cosine similarity of their l2-normalised maps Q = F(X)/‖F(X)‖; the student's
  maps are first zero-padded to the teacher's width, each kept channel at its teacher index. The
  pair (k*, j*) of largest similarity transfers; pairs change from batch to batch.
* **Loss.** ℓ = λ1·J1 + λ2·Σ_groups J_b + λ3·J3 with J1 = ‖FC^t − FC^s‖₂ (last FC outputs),
  J_b = ‖Q^t_k* − Q^s_j*‖₂ and J3 the binary cross-entropy of the student's softmax against the
  one-hot labels (the paper prints it without the minus sign). λ3 = 0 is the label-free transfer
  of §4.2.
* **What trains.** "our method only updates the weights of the last convolutional layer in each
  group of the student" (``trainable="last-in-group"``); ``"all"`` trains every parameter.

The paper writes each term for one input (and Eq. 4 for "one batch X"); here normalisation,
similarity and distances are per image and averaged over the batch, as minibatch losses are.
Training runs in the project's single loop (:func:`edgeupdate.training.train`, ``loss_fn`` hook),
deterministic from the seed; the teacher stays in eval mode and is never updated. λ1 = λ2 = λ3 = 1
by default: the paper gives no values.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import nn

from edgeupdate.algorithms.filter_pruning import pruning_plan
from edgeupdate.algorithms.students import StudentError, StudentSpec
from edgeupdate.models.zoo import CifarResNet, model_for_state
from edgeupdate.seeding import derive_seed
from edgeupdate.training import TensorData, TrainConfig, TrainReport, train
from edgeupdate.updates import StateDict

TRAINABLE = ("last-in-group", "all")


@dataclass(frozen=True)
class TransferConfig:
    """λ1 (logits, J1), λ2 (block maps, Σ J_b), λ3 (labels, J3) and which student layers train."""

    lambda_logits: float = field(default=1.0, metadata={"min": 0.0})
    lambda_blocks: float = field(default=1.0, metadata={"min": 0.0})
    lambda_labels: float = field(default=1.0, metadata={"min": 0.0})
    trainable: str = field(default="last-in-group", metadata={"choices": TRAINABLE})

    def __post_init__(self) -> None:
        for name in ("lambda_logits", "lambda_blocks", "lambda_labels"):
            if not getattr(self, name) >= 0.0:
                raise StudentError(f"{name} must be >= 0, got {getattr(self, name)!r}")
        if self.trainable not in TRAINABLE:
            raise StudentError(f"trainable must be one of {', '.join(TRAINABLE)}, got {self.trainable!r}")


@dataclass(frozen=True)
class TransferGroup:
    """One group: the modules whose outputs are its block maps, the prunable layer each map's
    channels come from (None: never pruned), and the group's last conv/Linear (§4.1 trains it)."""

    outputs: tuple[str, ...]
    channels: tuple[str | None, ...]
    last_layer: str


def transfer_groups(model: nn.Module) -> list[TransferGroup]:
    """The groups and blocks of a zoo model (see the module docstring)."""
    if isinstance(model, CifarResNet):
        groups: list[TransferGroup] = []
        outputs: list[str] = []
        width = None
        for i, block in enumerate(model.layers):
            if outputs and block.conv2.out_channels != width:
                groups.append(TransferGroup(tuple(outputs), (None,) * len(outputs), f"{outputs[-1]}.conv2"))
                outputs = []
            outputs.append(f"layers.{i}")
            width = block.conv2.out_channels
        groups.append(TransferGroup(tuple(outputs), (None,) * len(outputs), f"{outputs[-1]}.conv2"))
        return groups
    if not isinstance(model, nn.Sequential):
        raise StudentError(f"knowledge transfer knows no groups for {type(model).__name__}")
    groups = []
    current: list[tuple[str, str]] = []
    layer = None
    for name, mod in model.named_children():
        if isinstance(mod, (nn.Conv2d, nn.Linear)):
            layer = name
        elif isinstance(mod, nn.ReLU) and layer is not None:
            current.append((name, layer))
        elif isinstance(mod, (nn.MaxPool2d, nn.AvgPool2d, nn.AdaptiveAvgPool2d, nn.Flatten)) and current:
            groups.append(TransferGroup(tuple(o for o, _ in current), tuple(c for _, c in current), current[-1][1]))
            current = []
    if current:
        groups.append(TransferGroup(tuple(o for o, _ in current), tuple(c for _, c in current), current[-1][1]))
    if not groups:
        raise StudentError(f"{type(model).__name__} has no ReLU blocks to transfer knowledge through")
    return groups


def trainable_parameters(student: nn.Module, trainable: str = "last-in-group") -> list[tuple[str, nn.Parameter]]:
    """The named parameters §4.1 updates: the last conv/Linear of every group (or ``all``)."""
    if trainable == "all":
        return list(student.named_parameters())
    if trainable != "last-in-group":
        raise StudentError(f"trainable must be one of {', '.join(TRAINABLE)}, got {trainable!r}")
    layers = {g.last_layer for g in transfer_groups(student)}
    return [(n, p) for n, p in student.named_parameters() if n.rsplit(".", 1)[0] in layers]


def _normalised(maps: torch.Tensor) -> torch.Tensor:
    """Q = F(X)/‖F(X)‖ per image (Eq. 4)."""
    return F.normalize(maps.flatten(1), dim=1)


def _pad(maps: torch.Tensor, index: torch.Tensor | None, channels: int) -> torch.Tensor:
    """Zero-pad a map to ``channels``, channel c going to ``index[c]`` (appended if no index)."""
    if index is None:
        index = torch.arange(maps.shape[1], device=maps.device)
    if maps.shape[1] == channels and torch.equal(index, torch.arange(channels, device=maps.device)):
        return maps
    out = maps.new_zeros((maps.shape[0], channels, *maps.shape[2:]))
    out[:, index] = maps
    return out


class _Recorder:
    """Forward hooks that keep the latest output of some modules."""

    def __init__(self, model: nn.Module, names: Sequence[str]) -> None:
        self.outputs: dict[str, torch.Tensor] = {}
        modules = dict(model.named_modules())

        def keep(name: str):
            def hook(_mod, _inp, out: torch.Tensor) -> None:
                self.outputs[name] = out
            return hook

        self.handles = [modules[n].register_forward_hook(keep(n)) for n in names]

    def close(self) -> None:
        for h in self.handles:
            h.remove()
        self.handles = []
        self.outputs = {}


@dataclass
class TransferTerms:
    """One batch's loss and its parts, and the (teacher, student) block pairs chosen per group."""

    loss: torch.Tensor
    logits: torch.Tensor
    blocks: torch.Tensor
    labels: torch.Tensor
    pairs: list[tuple[int, int]]


class KnowledgeTransferLoss:
    """ℓ(student, x, y) of §4.1 against a fixed teacher; pass as ``loss_fn`` to ``train``.

    Call :meth:`close` (or use as a context manager) to remove the forward hooks.
    """

    def __init__(self, teacher: nn.Module, student: nn.Module, spec: StudentSpec, cfg: TransferConfig) -> None:
        self.teacher, self.student, self.cfg = teacher, student, cfg
        self.teacher.eval()
        for p in self.teacher.parameters():
            p.requires_grad_(False)
        t_groups, s_groups = transfer_groups(teacher), transfer_groups(student)
        if len(t_groups) != len(s_groups):
            raise StudentError(f"teacher has {len(t_groups)} groups, student {len(s_groups)}")
        self.groups = list(zip(t_groups, s_groups))
        plan = pruning_plan(student, all_layers=True)
        if len(plan) != len(spec.kept):
            raise StudentError(f"spec lists {len(spec.kept)} pruned layers, the student has {len(plan)}")
        self.kept = {g.conv: torch.tensor(k, dtype=torch.long) for g, k in zip(plan, spec.kept)}
        self.t_rec = _Recorder(teacher, [o for g in t_groups for o in g.outputs])
        self.s_rec = _Recorder(student, [o for g in s_groups for o in g.outputs])

    def close(self) -> None:
        self.t_rec.close()
        self.s_rec.close()

    def __enter__(self) -> "KnowledgeTransferLoss":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def terms(self, student: nn.Module, x: torch.Tensor, y: torch.Tensor) -> TransferTerms:
        teacher = self.teacher
        if next(teacher.parameters()).device != x.device:
            teacher.to(x.device)
        with torch.no_grad():
            t_logits = teacher(x)
        s_logits = student(x)
        t_out, s_out = self.t_rec.outputs, self.s_rec.outputs
        blocks = s_logits.new_zeros(())
        pairs = []
        for t_group, s_group in self.groups:
            t_maps = [t_out[o] for o in t_group.outputs]
            s_maps = []
            for o, layer in zip(s_group.outputs, s_group.channels):
                index = self.kept.get(layer) if layer is not None else None
                s_maps.append((s_out[o], None if index is None else index.to(x.device)))
            width = max([m.shape[1] for m in t_maps] + [int(i[-1]) + 1 if i is not None else m.shape[1]
                                                          for m, i in s_maps])
            q_t = [_normalised(_pad(m, None, width)) for m in t_maps]
            q_s = [_normalised(_pad(m, i, width)) for m, i in s_maps]
            if any(q.shape != q_t[0].shape for q in q_t + q_s):
                raise StudentError(f"group {t_group.outputs} has blocks of different shapes")
            with torch.no_grad():  # Eq. (3): choose the best pair on this batch
                sim = torch.stack([torch.stack([(a * b).sum(1).mean() for b in q_s]) for a in q_t])
            k, j = divmod(int(torch.argmax(sim)), len(q_s))
            pairs.append((k, j))
            blocks = blocks + torch.linalg.vector_norm(q_t[k] - q_s[j], dim=1).mean()
        logits = torch.linalg.vector_norm(t_logits - s_logits, dim=1).mean()
        onehot = F.one_hot(y, s_logits.shape[1]).to(s_logits.dtype)
        labels = F.binary_cross_entropy(F.softmax(s_logits, dim=1), onehot, reduction="sum") / len(y)
        c = self.cfg
        loss = c.lambda_logits * logits + c.lambda_blocks * blocks + c.lambda_labels * labels
        return TransferTerms(loss, logits.detach(), blocks.detach(), labels.detach(), pairs)

    def __call__(self, student: nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return self.terms(student, x, y).loss


def _models(spec: StudentSpec, teacher_state: Mapping[str, torch.Tensor],
            student_state: Mapping[str, torch.Tensor]) -> tuple[nn.Module, nn.Module]:
    teacher = model_for_state(spec.model, spec.input_shape, spec.num_classes, teacher_state)
    student = spec.build()
    try:
        student.load_state_dict(dict(student_state), strict=True)
    except RuntimeError as exc:
        raise StudentError(f"student state does not match its spec: {str(exc).splitlines()[-1].strip()}") from None
    return teacher, student


def _freeze_except(student: nn.Module, trainable: str) -> list[tuple[str, nn.Parameter]]:
    named = trainable_parameters(student, trainable)
    chosen = {n for n, _ in named}
    for n, p in student.named_parameters():
        p.requires_grad_(n in chosen)
    return named


def transfer_knowledge(teacher_state: Mapping[str, torch.Tensor], student_state: Mapping[str, torch.Tensor],
                       spec: StudentSpec, data: TensorData, train_cfg: TrainConfig, seed: int, *,
                       cfg: TransferConfig = TransferConfig(),
                       validation: TensorData | None = None) -> tuple[StateDict, TrainReport]:
    """Train the student from ``student_state`` with ℓ against the teacher on ``data`` (§4.1).

    Returns the student's new state (CPU) and the training report. With ``validation`` the epoch
    of best validation accuracy is kept. Deterministic from ``seed``.
    """
    teacher, student = _models(spec, teacher_state, student_state)
    named = _freeze_except(student, cfg.trainable)
    with KnowledgeTransferLoss(teacher, student, spec, cfg) as loss:
        report = train(student, data, train_cfg, derive_seed(seed, "student-transfer"), params=named,
                       loss_fn=loss, validation=validation)
    return {k: v.detach().cpu().clone() for k, v in student.state_dict().items()}, report


def fine_tune_student(student_state: Mapping[str, torch.Tensor], spec: StudentSpec, data: TensorData,
                      train_cfg: TrainConfig, seed: int, *, trainable: str = "last-in-group",
                      validation: TensorData | None = None) -> tuple[StateDict, TrainReport]:
    """The *independent* student of §5.2: the same layers trained on the labels alone (cross-entropy)."""
    student = spec.build()
    student.load_state_dict(dict(student_state), strict=True)
    named = _freeze_except(student, trainable)
    report = train(student, data, train_cfg, derive_seed(seed, "student-fine-tune"), params=named,
                   validation=validation)
    return {k: v.detach().cpu().clone() for k, v in student.state_dict().items()}, report


@torch.no_grad()
def transfer_loss(teacher_state: Mapping[str, torch.Tensor], student_state: Mapping[str, torch.Tensor],
                  spec: StudentSpec, data: TensorData, *, cfg: TransferConfig = TransferConfig(),
                  batch_size: int = 128) -> dict[str, float]:
    """Mean ℓ and its parts (``loss``, ``logits`` J1, ``blocks`` ΣJ_b, ``labels`` J3) on ``data``, eval mode."""
    teacher, student = _models(spec, teacher_state, student_state)
    student.eval()
    sums = {"loss": 0.0, "logits": 0.0, "blocks": 0.0, "labels": 0.0}
    with KnowledgeTransferLoss(teacher, student, spec, cfg) as loss:
        for start in range(0, len(data), batch_size):
            x, y = data.x[start:start + batch_size], data.y[start:start + batch_size]
            t = loss.terms(student, x, y)
            for key in sums:
                sums[key] += float(getattr(t, key)) * len(y)
    return {k: v / max(len(data), 1) for k, v in sums.items()}


def paper_train_config(model: str, epochs: int, *, device: str = "auto") -> TrainConfig:
    """§5's schedules: ResNets SGD + Nesterov (momentum 0.9, lr 0.1, weight decay 5e-4, cosine,
    batch 128); VGG-like nets Adam (lr 0.001 for compressed models, ×0.98 per epoch)."""
    from edgeupdate.models.zoo import RESIDUAL_MODELS

    if model in RESIDUAL_MODELS:
        return TrainConfig(epochs=epochs, batch_size=128, lr=0.1, optimizer="sgd", momentum=0.9, nesterov=True,
                           weight_decay=5e-4, lr_schedule="cosine", device=device)
    return TrainConfig(epochs=epochs, batch_size=128, lr=0.001, optimizer="adam", lr_schedule="step",
                       lr_step_epochs=1, lr_gamma=0.98, device=device)
