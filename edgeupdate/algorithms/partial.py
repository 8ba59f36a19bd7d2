"""Deep Partial Updating and its baselines as pure server-side algorithms (Qu thesis, ch. 5).

:func:`partial_update` is Algorithm 5.2 (DPU) and, by selector, its ablations and baselines:

========== ================================================================ ==================
selector   which ``k·I`` weights change                                     thesis
========== ================================================================ ==================
combined   top-k of ``λ·ĉ_global + (1−λ)·ĉ_local`` (λ = 0.5 ∝ Eq. 5.10)     DPU, Alg. 5.2
global     top-k of ``δw^f ⊙ δw^f`` (Eq. 5.6)                               GCPU, Alg. 5.1
local      top-k of ``−Σ g ⊙ Δw`` (Eq. 5.9)                                 LCPU, Table 5.1
random     ``round(k·n_l)`` random weights per layer, no first step         RPU, §5.5.5
========== ================================================================ ==================

Step one trains every weight from the starting point ``w`` to ``w^f`` (recording the local
contribution), the mask keeps the ``k·I`` weights with the largest contribution, every other
maskable weight is rewound to ``w`` and step two fine-tunes the masked weights only (biases and
normalisation parameters train fully in both steps unless ``mask_biases``). Masked-out weights are
restored to ``w`` after every optimiser step by selection, so they end **bit-identical** to ``w``
and a device that holds ``w`` reproduces the server's model exactly from the masked values plus the
dense tensors.

:func:`prune_with_rewinding` is the pruning baseline of §5.5.5 (Renda et al. 2020), and
:func:`should_reinitialize` the re-initialisation rule of §5.4.2.
"""

from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass, field

import torch
from torch import nn

from edgeupdate.algorithms.partial_masks import (
    combined_contribution,
    global_contribution,
    mask_count,
    maskable_names,
    random_layer_masks,
    rewind,
    top_k_mask,
    update_count,
)
from edgeupdate.algorithms.partial_steps import (
    LocalContribution,
    load_checked,
    snapshot,
    sparse_fine_tune,
    train_loss,
)
from edgeupdate.seeding import derive_seed, torch_generator
from edgeupdate.training import TensorData, TrainConfig, TrainReport, evaluate, resolve_device, train
from edgeupdate.updates import StateDict


SELECTORS: tuple[str, ...] = ("combined", "global", "local", "random")
REWINDING_MODES: tuple[str, ...] = ("one-shot", "iterative")


@dataclass(frozen=True)
class PartialUpdateConfig:
    """What a partial update may change and how the mask is chosen.

    ``k``: updating ratio over the maskable weights I (``0 < k ≤ 1``; ``floor(k·I)``, at least 1,
    weights change). ``lam`` weighs the normalised global against the normalised local
    contribution for ``selector="combined"`` (Eq. 5.11); ``"global"``/``"local"`` are λ = 1 / 0.
    ``rewinding="iterative"`` (single-round use, §5.5) rewinds ``iterative_fraction`` of the
    remaining trainable weights, sparse fine-tunes, and repeats until ``k`` is reached.
    """

    k: float
    selector: str = "combined"
    lam: float = 0.5
    mask_biases: bool = False
    rewinding: str = "one-shot"
    iterative_fraction: float = 0.2

    def __post_init__(self) -> None:
        if not (isinstance(self.k, (int, float)) and 0.0 < self.k <= 1.0):
            raise ValueError(f"PartialUpdateConfig.k must be in (0, 1], got {self.k!r}")
        if self.selector not in SELECTORS:
            raise ValueError(f"PartialUpdateConfig.selector must be one of {', '.join(SELECTORS)}; got {self.selector!r}")
        if not 0.0 <= self.lam <= 1.0:
            raise ValueError(f"PartialUpdateConfig.lam must be in [0, 1], got {self.lam!r}")
        if self.rewinding not in REWINDING_MODES:
            raise ValueError(f"PartialUpdateConfig.rewinding must be one of {', '.join(REWINDING_MODES)}; "
                             f"got {self.rewinding!r}")
        if not 0.0 < self.iterative_fraction < 1.0:
            raise ValueError(f"PartialUpdateConfig.iterative_fraction must be in (0, 1), got {self.iterative_fraction!r}")
        if self.selector == "random" and self.rewinding == "iterative":
            raise ValueError("selector 'random' (RPU) has no first step to rewind; use rewinding='one-shot'")

    @property
    def effective_lam(self) -> float:
        """λ actually used for ranking: ``lam`` for combined, 1 for global, 0 for local."""
        return {"global": 1.0, "local": 0.0}.get(self.selector, self.lam)


@dataclass(frozen=True)
class PartialUpdateInfo:
    """What one partial update measured (losses are mean training cross-entropy on ``data``)."""

    loss_start: float            # at the starting point w (before step one)
    loss_full: float             # at w^f after full training (nan for RPU: no step one)
    loss_after_rewind: float     # at w + δw^f ⊙ m (Table 5.1); the last rewinding when iterative
    loss_final: float            # at the returned weights
    changed_count: int           # maskable weights allowed to differ from w (mask size)
    maskable_count: int          # I
    dense_count: int             # values in dense (non-maskable) state entries, sent whole
    dense_names: tuple[str, ...]
    step1_s: float               # wall seconds of full training (step one)
    select_s: float              # wall seconds of scoring, masking and rewinding
    step2_s: float               # wall seconds of sparse fine-tuning (all iterations)
    rewind_losses: tuple[float, ...] = ()          # loss after each rewinding (one entry if one-shot)
    val_accuracy_base: float | None = None         # deployed model ``base`` on ``validation``
    val_accuracy_rewind: float | None = None
    val_accuracy_final: float | None = None

    @property
    def server_s(self) -> float:
        """Total server wall seconds of the update."""
        return self.step1_s + self.select_s + self.step2_s

    def to_dict(self) -> dict[str, object]:
        """Plain values for metrics (tuples become lists)."""
        d = asdict(self)
        d["dense_names"] = list(self.dense_names)
        d["rewind_losses"] = list(self.rewind_losses)
        d["server_s"] = self.server_s
        return d


@dataclass
class PartialUpdateResult:
    """The updated weights and what a device needs to reproduce them.

    ``state``: the full new state dict (CPU). ``masks``: per maskable name, True where the value may
    differ from the reference. ``reference`` names what unmasked maskable weights equal bit for
    bit: ``"base"`` (the deployed model), ``"init"`` (the re-initialisation the device regenerates
    from the seed) or ``"zeros"`` (pruning). Every non-maskable entry in ``state`` is sent dense.
    """

    state: dict[str, torch.Tensor]
    masks: dict[str, torch.Tensor]
    reference: str
    info: PartialUpdateInfo
    step2_report: TrainReport = field(default_factory=TrainReport)


def should_reinitialize(num_samples_now: int, num_samples_at_last_reinit: int) -> bool:
    """Re-initialise when ``|D^r| > 2·|D^last|`` (thesis §5.4.2)."""
    if num_samples_now < 0 or num_samples_at_last_reinit < 0:
        raise ValueError(f"sample counts must be non-negative, got {num_samples_now} and {num_samples_at_last_reinit}")
    return num_samples_now > 2 * num_samples_at_last_reinit


# ----------------------------------------------------------------------------------------------
# the algorithms


@dataclass
class FirstStep:
    """Step one of Algorithm 5.2 (full training from ``w`` to ``w^f``), reusable across selectors.

    Step one depends only on the starting point, the data, ``train_cfg`` and the seed, so one
    :class:`FirstStep` can feed several :func:`partial_update` calls (GCPU/LCPU/DPU, several k) on
    the same data — they then share ``w^f`` exactly, as in the thesis's Table 5.1 ablation.
    """

    start: dict[str, torch.Tensor]        # w: maskable tensors of the starting point
    full_state: dict[str, torch.Tensor]   # w^f: every state entry after full training
    local: dict[str, torch.Tensor] | None # c_local (Eq. 5.9), None when not recorded
    reference: str                        # "base" or "init"
    mask_biases: bool
    loss_start: float
    loss_full: float
    step1_s: float


def first_step(model: nn.Module, base: StateDict, data: TensorData, train_cfg: TrainConfig, seed: int, *,
               init: StateDict | None = None, mask_biases: bool = False, record_local: bool = True) -> FirstStep:
    """Train every weight from ``w`` (``init`` if given, else ``base``) and record ``c_local``.

    Batches are drawn with ``derive_seed(seed, "partial", "step1")``. ``model`` ends holding ``w^f``.
    """
    if len(data) == 0:
        raise ValueError("partial updating needs training data; got an empty dataset")
    device = resolve_device(train_cfg.device)
    load_checked(model, init if init is not None else base, "init" if init is not None else "base")
    model.to(device)
    names = maskable_names(model, mask_biases)
    own = model.state_dict()
    start = {n: own[n].detach().clone() for n in names}
    loss_start = train_loss(model, data)
    local = LocalContribution.zeros(model, names) if record_local else None
    t0 = time.perf_counter()
    train(model, data, train_cfg, derive_seed(seed, "partial", "step1"), on_step=local)
    step1_s = time.perf_counter() - t0
    return FirstStep(start=start, full_state=snapshot(model), local=None if local is None else local.c,
                     reference="init" if init is not None else "base", mask_biases=mask_biases,
                     loss_start=loss_start, loss_full=train_loss(model, data), step1_s=step1_s)


def partial_update(model: nn.Module, base: StateDict, data: TensorData, train_cfg: TrainConfig,
                   cfg: PartialUpdateConfig, seed: int, *, validation: TensorData | None = None,
                   init: StateDict | None = None, first: FirstStep | None = None) -> PartialUpdateResult:
    """One DPU-family update of the deployed weights ``base`` on ``data`` (Algorithm 5.2).

    The starting point ``w`` is ``init`` when given (re-initialisation, §5.4.2: train from the
    seeded random init and rewind toward it) and ``base`` otherwise. Step one trains all weights
    for ``train_cfg.epochs`` epochs (:func:`first_step`; pass ``first`` to reuse one computed
    with the same ``base``/``init``, data and config — its ``step1_s`` is then reported again);
    step two sparse-fine-tunes for as many epochs with a fresh optimiser and the learning-rate
    schedule restarted (batches from ``derive_seed(seed, "partial", "step2", i)`` for the i-th
    fine-tuning). RPU (``selector="random"``) has no step one: it draws its masks with
    ``torch_generator(seed, "partial", "rpu-mask")`` and fine-tunes from ``w``. With
    ``validation`` the best candidate of the last fine-tuning is kept (the rewound point
    included). ``model`` supplies the architecture and ends holding the returned weights.
    """
    if len(data) == 0:
        raise ValueError("partial_update needs training data; got an empty dataset")
    device = resolve_device(train_cfg.device)
    lam = cfg.effective_lam
    val_base = None
    if validation is not None:
        load_checked(model, base, "base")
        model.to(device)
        val_base = evaluate(model, validation)[1]

    if cfg.selector == "random":
        load_checked(model, init if init is not None else base, "init" if init is not None else "base")
        model.to(device)
        names = maskable_names(model, cfg.mask_biases)
        own = model.state_dict()
        start = {n: own[n].detach().clone() for n in names}
        loss_start, loss_full = train_loss(model, data), math.nan
        step1_s, local, reference = 0.0, None, ("init" if init is not None else "base")
    else:
        if first is None:
            first = first_step(model, base, data, train_cfg, seed, init=init, mask_biases=cfg.mask_biases,
                               record_local=lam < 1.0)
        else:
            if first.mask_biases != cfg.mask_biases:
                raise ValueError(f"first step was computed with mask_biases={first.mask_biases}, "
                                 f"config asks for {cfg.mask_biases}")
            if first.local is None and lam < 1.0:
                raise ValueError("first step did not record the local contribution, which "
                                 f"selector {cfg.selector!r} needs (record_local=True)")
            if first.reference != ("init" if init is not None else "base"):
                raise ValueError(f"first step started from {first.reference!r}, this call from "
                                 f"{'init' if init is not None else 'base'!r}")
            load_checked(model, first.full_state, "first.full_state")
            model.to(device)
        names = list(first.start)
        start = {n: t.to(device) for n, t in first.start.items()}
        local = None
        if lam < 1.0:
            assert first.local is not None
            local = LocalContribution({n: t.to(device).clone() for n, t in first.local.items()})
        loss_start, loss_full, step1_s, reference = first.loss_start, first.loss_full, first.step1_s, first.reference

    own = model.state_dict()
    maskable_total = sum(start[n].numel() for n in names)
    dense_names = tuple(n for n in own if n not in start)
    target = update_count(cfg.k, maskable_total)
    t_select = 0.0
    step2_s = 0.0
    report = TrainReport()
    val_rewind = val_final = None
    rewind_losses: list[float] = []

    if cfg.selector == "random":
        masks = random_layer_masks({n: start[n].shape for n in names}, cfg.k,
                                   torch_generator(seed, "partial", "rpu-mask"))
        rewind_losses.append(loss_start)
        s2 = time.perf_counter()
        report, val_rewind, val_final = sparse_fine_tune(
            model, data, train_cfg, derive_seed(seed, "partial", "step2", 0), masks, start, validation)
        step2_s += time.perf_counter() - s2
    else:
        eligible: dict[str, torch.Tensor] | None = None
        remaining = maskable_total
        iteration = 0
        while True:
            s = time.perf_counter()
            if cfg.rewinding == "iterative":
                count = max(target, math.floor(remaining * (1.0 - cfg.iterative_fraction)))
            else:
                count = target
            current = model.state_dict()
            g = global_contribution(current, start, names)
            if local is None:
                scores = combined_contribution(g, g, 1.0)
            else:
                loc = local.c if eligible is None else local.restricted(eligible)
                scores = combined_contribution(g, loc, lam)
            masks = top_k_mask(scores, count, eligible=eligible)
            model.load_state_dict(rewind(current, start, masks))
            t_select += time.perf_counter() - s
            rewind_losses.append(train_loss(model, data))
            eligible, remaining = masks, count
            last = count == target
            s2 = time.perf_counter()
            report, val_rewind, val_final = sparse_fine_tune(
                model, data, train_cfg, derive_seed(seed, "partial", "step2", iteration), masks, start,
                validation if last else None,
                on_step=None if (last or local is None) else local)
            step2_s += time.perf_counter() - s2
            iteration += 1
            if last:
                break

    state = {n: t.detach().cpu().clone() for n, t in model.state_dict().items()}
    info = PartialUpdateInfo(
        loss_start=loss_start, loss_full=loss_full, loss_after_rewind=rewind_losses[-1],
        loss_final=train_loss(model, data), changed_count=mask_count(masks),
        maskable_count=maskable_total, dense_count=sum(state[n].numel() for n in dense_names),
        dense_names=dense_names, step1_s=step1_s, select_s=t_select, step2_s=step2_s,
        rewind_losses=tuple(rewind_losses), val_accuracy_base=val_base,
        val_accuracy_rewind=val_rewind, val_accuracy_final=val_final)
    return PartialUpdateResult(state=state, masks={n: m.cpu() for n, m in masks.items()},
                               reference=reference, info=info, step2_report=report)


def prune_with_rewinding(model: nn.Module, init: StateDict, data: TensorData, train_cfg: TrainConfig,
                         k: float, seed: int, *, validation: TensorData | None = None,
                         mask_biases: bool = False) -> PartialUpdateResult:
    """The pruning baseline of thesis §5.5.5 (Renda et al. 2020, learning-rate rewinding).

    Trains all weights from ``init`` (the same random init every round), keeps the ``floor(k·I)``
    maskable weights of largest magnitude across all layers (one-shot global magnitude pruning;
    ties as in :func:`top_k_mask`), zeroes the rest and fine-tunes the survivors with a fresh
    optimiser and the learning-rate schedule restarted from its initial value. The result is a
    sparse model sent whole: ``masks`` are the non-zero positions, ``reference`` is ``"zeros"``.
    """
    if len(data) == 0:
        raise ValueError("prune_with_rewinding needs training data; got an empty dataset")
    device = resolve_device(train_cfg.device)
    load_checked(model, init, "init")
    model.to(device)
    names = maskable_names(model, mask_biases)
    own = model.state_dict()
    maskable_total = sum(own[n].numel() for n in names)
    dense_names = tuple(n for n in own if n not in names)
    zeros = {n: torch.zeros_like(own[n]) for n in names}
    loss_start = train_loss(model, data)

    t0 = time.perf_counter()
    train(model, data, train_cfg, derive_seed(seed, "pruning", "train"))
    t1 = time.perf_counter()
    loss_full = train_loss(model, data)
    full = model.state_dict()
    masks = top_k_mask({n: full[n].abs() for n in names}, update_count(k, maskable_total))
    model.load_state_dict(rewind(full, zeros, masks))
    t2 = time.perf_counter()
    loss_pruned = train_loss(model, data)
    report, val_rewind, val_final = sparse_fine_tune(model, data, train_cfg,
                                                      derive_seed(seed, "pruning", "fine-tune"),
                                                      masks, zeros, validation)
    t3 = time.perf_counter()
    state = {n: t.detach().cpu().clone() for n, t in model.state_dict().items()}
    info = PartialUpdateInfo(
        loss_start=loss_start, loss_full=loss_full, loss_after_rewind=loss_pruned,
        loss_final=train_loss(model, data), changed_count=mask_count(masks),
        maskable_count=maskable_total, dense_count=sum(state[n].numel() for n in dense_names),
        dense_names=dense_names, step1_s=t1 - t0, select_s=t2 - t1, step2_s=t3 - t2,
        rewind_losses=(loss_pruned,), val_accuracy_rewind=val_rewind, val_accuracy_final=val_final)
    return PartialUpdateResult(state=state, masks={n: m.cpu() for n, m in masks.items()},
                               reference="zeros", info=info, step2_report=report)


__all__ = [
    "PartialUpdateConfig", "PartialUpdateInfo", "PartialUpdateResult", "SELECTORS", "REWINDING_MODES",
    "FirstStep", "first_step", "partial_update", "prune_with_rewinding", "should_reinitialize",
    # re-exported building blocks
    "maskable_names", "combined_contribution", "global_contribution", "top_k_mask",
    "random_layer_masks", "rewind", "update_count",
]
