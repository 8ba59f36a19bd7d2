"""Real simulations on Flower's engine (Ray): files, bytes, determinism, plug-in strategies."""

from __future__ import annotations

import pandas as pd
import pytest
import torch

from edgeupdate.simulation.metrics import REQUIRED_COLUMNS, TIMING_COLUMNS
from edgeupdate.simulation.runner import run_experiment
from edgeupdate.updates import dense_package

from tests.conftest import REPO

RUN_FILES = ["metrics.parquet", "metrics.csv", "config.toml", "summary.json",
             "accuracy_vs_round.png", "accuracy_vs_bytes.png"]

pytestmark = pytest.mark.sim  # every test here runs real simulations


def _no_ray_left() -> bool:
    """No live Ray process among this test process's descendants (others' simulations may run)."""
    import psutil

    def alive(p):
        try:
            return p.status() != psutil.STATUS_ZOMBIE and any(
                n in " ".join(p.cmdline()) for n in ("raylet", "gcs_server", "ray::"))
        except psutil.Error:
            return False

    return not [p for p in psutil.Process().children(recursive=True) if alive(p)]


def test_full_runs_deterministically_and_measures_real_bytes(tiny_config, tmp_path):
    cfg = tiny_config()
    run_experiment(cfg, tmp_path / "a", progress=False)
    run_experiment(cfg, tmp_path / "b", progress=False)

    for name in RUN_FILES:
        assert (tmp_path / "a" / name).stat().st_size > 0, name
    a = pd.read_csv(tmp_path / "a" / "metrics.csv")
    b = pd.read_csv(tmp_path / "b" / "metrics.csv")
    assert set(REQUIRED_COLUMNS) <= set(a.columns)
    assert len(a) == cfg.rounds * cfg.num_devices
    pd.testing.assert_frame_equal(a.drop(columns=list(TIMING_COLUMNS)), b.drop(columns=list(TIMING_COLUMNS)))
    assert (a["status"] == "applied").all() and (a["model_version"] == a["round"]).all()

    # bytes_down is the length of the dense package: every weight in fp32 plus a header
    from edgeupdate.runtime import build_runtime

    state = build_runtime(cfg).initial_state
    expected = len(dense_package(state, method="full", target_version=1, base=state, base_version=0).encode())
    assert (a["bytes_down"] == expected).all()
    weights_bytes = sum(t.numel() * 4 for t in state.values())
    assert weights_bytes < expected < weights_bytes + 2048
    # round 1 uses the server's D¹; later rounds the devices upload δD (1 byte/pixel + label)
    assert (a[a["round"] == 1]["bytes_up"] == 0).all()
    assert a[a["round"] == 2]["bytes_up"].sum() == 3 * 15 + 30 * 65
    assert _no_ray_left()


def test_fedavg_devices_train_and_upload(tiny_config, tmp_path):
    cfg = tiny_config("strategy.name='fedavg'", "strategy.params={}", "client.epochs=5", "client.lr=0.1")
    summary = run_experiment(cfg, tmp_path, progress=False)
    df = pd.read_csv(tmp_path / "metrics.csv")
    assert (df["bytes_up"] > 0).all()  # every device uploads its trained weights each round
    assert (df["model_version"] == df["round"]).all()
    assert summary["final_mean_accuracy"] > 0.3


def test_custom_strategy_from_a_file_runs_through_the_simulation(tiny_config, tmp_path, monkeypatch):
    monkeypatch.chdir(REPO)
    cfg = tiny_config("strategy.name='examples/top_delta.py:TopDelta'", "strategy.params={fraction=0.1}",
                      "training.epochs=3")
    run_experiment(cfg, tmp_path, progress=False)
    df = pd.read_csv(tmp_path / "metrics.csv")
    full_bytes = sum(t.numel() * 4 for t in
                     __import__("edgeupdate.runtime", fromlist=["x"]).build_runtime(cfg).initial_state.values())
    round2 = df[df["round"] == 2]
    assert (round2["status"] == "applied").all()
    assert (round2["bytes_down"] < 0.3 * full_bytes).all()  # ≈10 % of the values plus positions
