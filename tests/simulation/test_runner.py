"""The server side of a run: settings it applies to its own process, and puts back."""

from __future__ import annotations

import pandas as pd
import pytest
import torch

from edgeupdate.configs import load_config
from edgeupdate.runtime import build_runtime
from edgeupdate.simulation import runner
from edgeupdate.strategies.resolve import resolve_strategy

from tests.conftest import REPO, TINY


@pytest.mark.parametrize("server_threads, expected", [(2, 2), (0, 1)])
def test_the_server_trains_with_server_threads_and_restores_the_process_setting(
        monkeypatch, tmp_path, server_threads, expected):
    cfg = load_config(REPO / "configs" / "quickstart.toml", [*TINY, f"simulation.server_threads={server_threads}"])
    seen = []

    def discovery_that_stops(*_args, **_kwargs):
        seen.append(torch.get_num_threads())
        raise runner.SimulationError("stop here")

    monkeypatch.setattr(runner, "discover_devices", discovery_that_stops)
    torch.set_num_threads(1)  # the tests' setting (conftest)
    with pytest.raises(runner.SimulationError, match="stop here"):
        runner.run_server(object(), build_runtime(cfg), resolve_strategy(cfg), tmp_path / "run")
    assert seen == [expected]
    assert torch.get_num_threads() == 1


def _metrics(rounds: int = 3) -> pd.DataFrame:
    return pd.DataFrame([{"round": r, "device_id": d, "strategy": "full", "accuracy": 0.5 + 0.1 * r,
                          "bytes_down": 1000 * r, "bytes_up": 10} for r in range(1, rounds + 1) for d in range(2)])


def test_figures_drawn_in_the_background_are_all_there_once_waited_for(tmp_path):
    figures = runner.FiguresInBackground()
    figures(tmp_path, _metrics())
    figures.wait()
    figures.raise_failure()
    assert {"accuracy_vs_round.png", "accuracy_vs_bytes.png"} <= {p.name for p in tmp_path.glob("*.png")}


def test_a_figure_that_fails_in_the_background_fails_the_caller_once(tmp_path):
    figures = runner.FiguresInBackground()
    figures(tmp_path, _metrics().drop(columns=["accuracy"]))
    figures.wait()
    with pytest.raises(KeyError, match="accuracy"):
        figures.raise_failure()
    figures.raise_failure()  # reported once
