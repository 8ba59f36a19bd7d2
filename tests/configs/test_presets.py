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
