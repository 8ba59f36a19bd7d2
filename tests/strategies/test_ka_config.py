"""KA-family settings the model cannot hold fail when the run is prepared, as one config line, before training."""

from __future__ import annotations

import pytest

from edgeupdate.cli import main
from edgeupdate.configs import ConfigError, load_config
from edgeupdate.simulation.compare import compare
from edgeupdate.strategies import resolve_strategy

from tests.conftest import REPO

QUICKSTART = REPO / "configs" / "quickstart.toml"
RESNET = ["model.name='tiny-resnet'"]  # digits: the stem conv is 16 × (1·3·3) → min(o, i) = 9


@pytest.mark.parametrize("strategy, params, key", [
    ("ka", "{n=10}", "strategy.params.n"),
    ("ml", "{rank=10}", "strategy.params.rank"),
    ("lra", "{rank=10}", "strategy.params.rank"),
    ("lru", "{rank=10}", "strategy.params.rank"),
    ("lru-out", "{rank=10}", "strategy.params.rank"),
])
def test_rank_above_a_layers_min_o_i_is_a_config_error_naming_the_key(strategy, params, key):
    with pytest.raises(ConfigError) as err:
        resolve_strategy(load_config(QUICKSTART, [*RESNET, f"strategy.name='{strategy}'", f"strategy.params={params}"]))

    assert err.value.key == key
    assert "stem.0.weight" in str(err.value) and "min(o, i) = 9" in str(err.value)
    assert "\n" not in str(err.value)


def test_the_largest_rank_the_model_allows_is_accepted():
    choice = resolve_strategy(load_config(QUICKSTART, [*RESNET, "strategy.name='ka'", "strategy.params={n=9}"]))
    assert choice.params.n == 9


def test_filter_pruning_on_a_model_without_conv_filters_is_a_config_error():
    with pytest.raises(ConfigError, match="model.name: fp needs prunable conv filters"):
        resolve_strategy(load_config(QUICKSTART, ["strategy.name='fp'", "strategy.params={}"]))


def test_compare_rejects_an_impossible_rank_in_the_strategies_table_before_running_anything(tmp_path):
    cfg = load_config(QUICKSTART, [*RESNET, "strategies.ka={n=12}"])
    ran = []

    with pytest.raises(ConfigError, match="strategy.params.n"):
        compare(cfg, ["full", "ka"], tmp_path, run=lambda c, _choice, d: ran.append(c), log=lambda _m: None)
    assert ran == []


def test_cli_run_exits_2_with_one_line_and_writes_nothing(tmp_path, capsys):
    out = tmp_path / "out"

    code = main(["run", str(QUICKSTART), "--set", "strategy.name='ka'", "--set", "strategy.params={n=65}",
                 "--out", str(out)])

    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1
    assert err.startswith("error: config: strategy.params.n: ka n=65 exceeds layer")
    assert not out.exists()


def test_refinement_epochs_and_lr_override_the_training_table_only_for_the_compact_update(tiny_config, monkeypatch):
    """``epochs``/``lr`` retune the compact refinement (round ≥ 2) without touching θ¹'s training."""
    import edgeupdate.strategies.ka as ka_module
    from edgeupdate.simulation.metrics import MetricsCollector
    from edgeupdate.runtime import build_runtime
    from edgeupdate.strategies.resolve import strategy_class, validate_strategy

    cfg = tiny_config("strategy.name='rm'", "strategy.params={epochs=3, lr=0.02}", "training.lr=0.001",
                      "training.epochs=1")
    seen = []

    def fake_refine(model, base, data, train_cfg, compact_cfg, seed, validation=None):
        seen.append(train_cfg)
        raise RuntimeError("stop here")

    monkeypatch.setattr(ka_module, "compact_refine", fake_refine)
    strategy = strategy_class("rm")(build_runtime(cfg), validate_strategy("rm", cfg.strategy.params),
                                    MetricsCollector(), {})
    with pytest.raises(RuntimeError, match="stop here"):
        strategy.retrain(2, strategy.latest, strategy.runtime.train_subset(strategy.runtime.layout.server_pool(2)))

    assert (seen[0].epochs, seen[0].lr) == (3, 0.02)
    assert (cfg.training.epochs, cfg.training.lr) == (1, 0.001)
