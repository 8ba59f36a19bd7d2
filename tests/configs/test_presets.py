"""Every preset in configs/ loads, and every strategy label it defines validates against it (fast:
no data, no training)."""

from __future__ import annotations

import dataclasses

import pytest

from edgeupdate.configs import load_config
from edgeupdate.simulation.compare import prepare

from tests.conftest import REPO

PRESETS = sorted((REPO / "configs").glob("*.toml"))


def test_the_presets_are_found():
    assert "dpu-mnist-table52.toml" in {p.name for p in PRESETS} and len(PRESETS) >= 8


@pytest.mark.parametrize("preset", PRESETS, ids=lambda p: p.name)
def test_every_preset_and_each_of_its_labels_validates(preset):
    cfg = load_config(preset)
    labels = dict.fromkeys([cfg.strategy.name, *cfg.strategies])
    for label in labels:
        run = prepare(cfg, label)  # raises ConfigError naming the key on any bad parameter or override
        assert run.config.strategy.name == run.entry.strategy


def test_table52_preset_is_the_thesis_pairing_with_the_reference_codes_budget():
    cfg = load_config(REPO / "configs" / "dpu-mnist-table52.toml")
    runs = {label: prepare(cfg, label) for label in ("full", "dpu", "gcpu")}
    train = {label: r.config.training for label, r in runs.items()}

    assert cfg.rounds == 30 and list(cfg.model.hidden) == [512, 512]
    assert (train["full"].epochs, train["full"].lr_step_epochs) == (60, 20)  # lr ×0.1 every third
    for label in ("dpu", "gcpu"):
        assert (train[label].epochs, train[label].lr_step_epochs) == (30, 10)
        assert runs[label].choice.params.k == 0.005 and runs[label].choice.params.skip_if_no_gain
        # apart from the budget, every label trains with the same recipe
        assert dataclasses.replace(train[label], epochs=60, lr_step_epochs=20) == train["full"]
    assert runs["dpu"].choice.params.reinitialize and runs["dpu"].choice.params.reinit_init == "factory"
    assert not runs["gcpu"].choice.params.reinitialize
    assert runs["full"].choice.params.init == "same-seed"


def _documented_sweep(preset: str, out: str) -> list[str]:
    """The arguments of the ``edgeupdate sweep`` command written in ``preset``'s header comment."""
    import shlex

    lines = (REPO / "configs" / preset).read_text().splitlines()
    start = next(i for i, line in enumerate(lines) if f"edgeupdate sweep configs/{preset}" in line
                 and any(out in later for later in lines[i:i + 6]))
    words: list[str] = []
    for line in lines[start:]:
        words += shlex.split(line.lstrip("#").replace("\\", " "))
        if out in line:
            break
    return words[words.index("sweep") + 2:]


def test_the_ka_sweep_documented_in_its_preset_validates_every_point():
    """Issue #17's KA comparison: KA n = 0, 1, 2, paper-LRU r = 1, 2, lru-out r = 1, 9, RM at the
    same sizes and bn-only — 13 points, each checked against the model before anything runs."""
    import argparse

    from edgeupdate.models.zoo import build_model
    from edgeupdate.algorithms.factorized import factor_layers
    from edgeupdate.simulation.sweep import parse_grid, sweep_points

    parser = argparse.ArgumentParser()
    parser.add_argument("--strategies")
    parser.add_argument("--param-grid", action="append", default=[])
    parser.add_argument("--seeds", type=int)
    parser.add_argument("--out")
    args = parser.parse_args(_documented_sweep("ka-mnist.toml", "runs/ka-mnist-paper"))
    cfg = load_config(REPO / "configs" / "ka-mnist.toml")

    points = sweep_points(cfg, args.strategies.split(","), parse_grid(args.param_grid))

    assert args.seeds == 3
    assert sorted(p.label for p in points) == sorted(
        ["ka-n=0", "ka-n=1", "ka-n=2", "lru-rank=1", "lru-rank=2", "lru-out-rank=1", "lru-out-rank=9", "bn-only",
         *(f"rm-proportion={p}" for p in ("0.00977", "0.0286", "0.0353", "0.0507", "0.0608"))])
    # RM's proportions are the other methods' sizes (parameters sent / model parameters)
    model = build_model("tiny-resnet", (1, 28, 28), 10, seed=0)
    total = sum(p.numel() for p in model.parameters())
    layers = factor_layers(model)
    other = total - sum(p.numel() for n, p in model.named_parameters() if n in {l.name for l in layers})
    sizes = {"ka0": sum(l.m for l in layers) + other, "ka1": sum(l.m + l.o + l.i + 1 for l in layers) + other,
             "ka2": sum(l.m + 2 * (l.o + l.i + 1) for l in layers) + other,
             "lru1": sum(l.i for l in layers) + other, "lru2": sum(2 * l.i for l in layers) + other}
    assert sizes["lru1"] == 2147  # the count for the paper's LRU at r = 1
    proportions = sorted(p.overrides["proportion"] for p in points if p.strategy == "rm")
    for proportion, size in zip(proportions, sorted(sizes.values())):
        assert abs(proportion * total - size) <= 3
