"""The server's checkpoint: the strategy whole, the run's shared objects by reference."""

from __future__ import annotations

import pickle
import random

import pandas as pd
import pytest
import torch

from edgeupdate.runtime import build_runtime
from edgeupdate.simulation.checkpoint import CheckpointError, Checkpoints
from edgeupdate.simulation.metrics import MetricsCollector
from edgeupdate.strategies.resolve import resolve_strategy
from edgeupdate.strategies.versions import ModelVersion


def _strategy(*overrides: str):
    from edgeupdate.configs import load_config
    from tests.conftest import REPO, TINY

    cfg = load_config(REPO / "configs" / "quickstart.toml", [*TINY, *overrides])
    choice = resolve_strategy(cfg)
    return choice.cls(build_runtime(cfg), choice.params, MetricsCollector(), {0: 10, 1: 10, 2: 11})


def test_a_checkpoint_restores_the_strategy_and_binds_the_runs_own_objects(tmp_path):
    old = _strategy("strategy.name='dpu'", "strategy.params={k=0.1}")
    old.store.release(1, ModelVersion(1, {k: v * 2 for k, v in old.latest.weights.items()}, "h1"))
    old.views[2].version, old.views[2].hash, old.views[2].maybe = 1, "h1", ("h0",)
    old.pool = old.runtime.train_subset(old.runtime.layout.train_rows()[:40])
    torch.manual_seed(3)
    random.seed(4)
    size = Checkpoints(tmp_path).save(1, old, [pd.DataFrame([{"round": 1, "accuracy": 0.5}])], wall_time_s=12.5)
    expected = (torch.rand(3), random.random())

    fresh = _strategy("strategy.name='dpu'", "strategy.params={k=0.1}")
    restored = Checkpoints(tmp_path).load(fresh)

    s = restored.strategy
    assert (restored.round, restored.wall_time_s) == (1, 12.5)
    assert [c.to_dict("records") for c in restored.chunks] == [[{"round": 1, "accuracy": 0.5}]]
    assert s.runtime is fresh.runtime and s.fleet is fresh.fleet and s.collector is fresh.collector
    assert s.validation is fresh.validation  # shared with the run, not copied into the checkpoint
    assert (s.views[2].version, s.views[2].hash, s.views[2].maybe) == (1, "h1", ("h0",))
    assert torch.equal(s.latest.weights["net.0.weight" if "net.0.weight" in s.latest.weights else
                                        next(iter(s.latest.weights))], next(iter(old.latest.weights.values())))
    assert torch.equal(s.pool.x, old.pool.x) and torch.equal(s.pool.y, old.pool.y)
    assert (torch.rand(3).tolist(), random.random()) == (expected[0].tolist(), expected[1])
    assert size < 10 * old.runtime.model_bytes  # two model versions and 40 samples, no dataset


def test_a_checkpoint_of_another_strategy_or_a_broken_one_is_refused(tmp_path):
    Checkpoints(tmp_path).save(2, _strategy("strategy.name='dpu'", "strategy.params={k=0.1}"), [], 1.0)
    with pytest.raises(CheckpointError, match="holds a DPU run, this run uses FullUpdate"):
        Checkpoints(tmp_path).load(_strategy())

    (tmp_path / "checkpoint" / "server" / "round-2.pkl").write_bytes(b"\x80\x05garbage")
    with pytest.raises(CheckpointError, match="cannot read"):
        Checkpoints(tmp_path).load(_strategy("strategy.name='dpu'", "strategy.params={k=0.1}"))

    (tmp_path / "checkpoint" / "LATEST").write_text("3\n")
    with pytest.raises(CheckpointError, match="names round '3', but its server file is missing"):
        Checkpoints(tmp_path).latest_round()


def test_every_strategy_class_can_be_checkpointed_by_name():
    import pickle

    from edgeupdate.strategies.registry import STRATEGIES

    for name, cls in STRATEGIES.items():
        assert pickle.loads(pickle.dumps(cls)) is cls, name


def test_only_the_latest_complete_round_is_kept(tmp_path):
    s = _strategy()
    for r in (1, 2, 3):
        Checkpoints(tmp_path).save(r, s, [], 0.0)
    assert [p.name for p in (tmp_path / "checkpoint" / "server").iterdir()] == ["round-3.pkl"]
    assert Checkpoints(tmp_path).latest_round() == 3



def test_each_rounds_metrics_rows_are_written_once_and_read_back_in_order(tmp_path):
    strategy = _strategy()
    collector = MetricsCollector()
    ckpt = Checkpoints(tmp_path)
    for round_ in (1, 2):
        for dev in range(3):
            collector.add_row(**_row(round_, dev))
        collector.round_summary(round_)
        ckpt.save(round_, strategy, collector.chunks, float(round_))
    with open(tmp_path / "checkpoint" / "rows" / "round-2.pkl", "rb") as fh:
        assert pickle.load(fh)["round"].tolist() == [2, 2, 2]  # round 2's file holds round 2's rows only
    resumed = MetricsCollector()
    resumed.chunks = Checkpoints(tmp_path).load(_strategy()).chunks
    pd.testing.assert_frame_equal(resumed.frame(), collector.frame())

    (tmp_path / "checkpoint" / "rows" / "round-1.pkl").unlink()
    with pytest.raises(CheckpointError, match="cannot read .*round-1.pkl"):
        Checkpoints(tmp_path).load(_strategy())


def _row(round_: int, device_id: int) -> dict:
    return {"round": round_, "device_id": device_id, "strategy": "full", "accuracy": 0.5, "loss": 1.0,
            "bytes_down": 10, "bytes_up": 0, "model_version": round_, "num_examples": 5, "status": "applied"}
