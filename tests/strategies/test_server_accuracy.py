"""Server-retrain strategies record their own model's accuracy every round (thesis §5.5's metric)."""

from __future__ import annotations

import pytest
import torch

from edgeupdate.runtime import build_runtime
from edgeupdate.simulation.metrics import MetricsCollector
from edgeupdate.strategies.resolve import strategy_class, validate_strategy
from edgeupdate.training import evaluate


@pytest.mark.parametrize("name, params", [("full", "{}"), ("dpu", "{k=0.05}")])
def test_next_model_records_the_retrained_models_validation_and_test_accuracy(tiny_config, name, params):
    cfg = tiny_config(f"strategy.name='{name}'", f"strategy.params={params}")
    strategy = strategy_class(name)(build_runtime(cfg), validate_strategy(name, cfg.strategy.params),
                                    MetricsCollector(), {})

    target = strategy.next_model(1, [])

    model = strategy.runtime.new_model()
    model.load_state_dict(target)
    extra = strategy.log.extra
    assert extra["server_test_accuracy_frac"] == evaluate(model, strategy.runtime.test_pool)[1]
    assert extra["server_val_accuracy_frac"] == evaluate(model, strategy.validation)[1]
    # not the untrained factory model's accuracy: the number follows the round's retraining
    untrained = strategy.runtime.new_model()
    assert extra["server_test_accuracy_frac"] != evaluate(untrained, strategy.runtime.test_pool)[1]
    assert len(strategy.runtime.test_pool) > 0 and len(strategy.validation) > 0
    assert all(torch.isfinite(t).all() for t in target.values() if t.dtype.is_floating_point)
