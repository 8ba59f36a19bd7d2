"""The training mechanics of partial updating (thesis ch. 5): checked loading, the local
contribution recorder (Eq. 5.9), and step two's sparse fine-tuning with masked-out weights pinned
to their rewound values by exact selection after every optimiser step.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

import torch
from torch import nn

from edgeupdate.algorithms.partial_masks import NamedTensors
from edgeupdate.training import TensorData, TrainConfig, TrainReport, evaluate, train
from edgeupdate.updates import StateDict


def load_checked(model: nn.Module, state: StateDict, what: str) -> None:
    own = model.state_dict()
    missing = [n for n in own if n not in state]
    extra = [n for n in state if n not in own]
    if missing or extra:
        raise ValueError(f"{what} does not match the model: missing {missing[:3]}, unexpected {extra[:3]}")
    for name, value in own.items():
        if tuple(state[name].shape) != tuple(value.shape):
            raise ValueError(f"{what}[{name!r}] has shape {tuple(state[name].shape)}, model expects {tuple(value.shape)}")
    model.load_state_dict(dict(state))


def snapshot(model: nn.Module) -> dict[str, torch.Tensor]:
    return {n: t.detach().clone() for n, t in model.state_dict().items()}


def restorer(model: nn.Module, masks: Mapping[str, torch.Tensor],
              anchor: Mapping[str, torch.Tensor]) -> Callable[[nn.Module], None]:
    """A post-step hook that puts every masked-out weight back to ``anchor`` (exact selection)."""
    params = dict(model.named_parameters())
    targets = []
    for name, mask in masks.items():
        p = params[name]
        targets.append((p, mask.to(p.device), anchor[name].to(p.device, p.dtype)))

    def restore(_model: nn.Module) -> None:
        with torch.no_grad():
            for p, m, a in targets:
                p.copy_(torch.where(m, p, a))

    return restore


class LocalContribution:
    """Accumulates ``c_local = −Σ_q g(w^{q−1}) ⊙ Δw^q`` (Eq. 5.9) from ``train``'s ``on_step``.

    Accumulated in the parameters' dtype (as the reference implementation does); the
    normalisation and ranking then run in float64.
    """

    def __init__(self, c: NamedTensors) -> None:
        self.c = c

    @classmethod
    def zeros(cls, model: nn.Module, names: list[str]) -> "LocalContribution":
        params = dict(model.named_parameters())
        return cls({n: torch.zeros_like(params[n]).detach() for n in names})

    def __call__(self, grads: NamedTensors, deltas: NamedTensors) -> None:
        for n, c in self.c.items():
            c.addcmul_(grads[n], deltas[n], value=-1.0)

    def restricted(self, masks: Mapping[str, torch.Tensor]) -> NamedTensors:
        return {n: torch.where(masks[n].to(t.device), t, torch.zeros_like(t)) for n, t in self.c.items()}


def train_loss(model: nn.Module, data: TensorData) -> float:
    return evaluate(model, data)[0]


def sparse_fine_tune(model: nn.Module, data: TensorData, cfg: TrainConfig, seed: int,
                      masks: Mapping[str, torch.Tensor], anchor: Mapping[str, torch.Tensor],
                      validation: TensorData | None,
                      on_step: Callable[[NamedTensors, NamedTensors], None] | None = None,
                      ) -> tuple[TrainReport, float | None, float | None]:
    """Step two: train with masked-out weights pinned to ``anchor``.

    With ``validation`` the candidate with the best validation accuracy is kept, the rewound
    starting point included (it wins ties, as in the reference code). Returns the report and the
    validation accuracies at the rewound point and of the kept weights.
    """
    val_rewind = None
    rewound = None
    if validation is not None:
        val_rewind = evaluate(model, validation)[1]
        rewound = snapshot(model)
    report = train(model, data, cfg, seed, post_step=restorer(model, masks, anchor),
                   on_step=on_step, validation=validation)
    val_final = None
    if validation is not None:
        best = report.best_val_accuracy
        if best is None or best <= val_rewind:  # type: ignore[operator]
            model.load_state_dict(rewound)  # type: ignore[arg-type]
            val_final = val_rewind
        else:
            val_final = best
    return report, val_rewind, val_final
