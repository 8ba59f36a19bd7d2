"""`compare`: identical data and seeds for every strategy, one table row each."""

import pandas as pd
import pytest

from edgeupdate.configs import ConfigError
from edgeupdate.simulation.compare import compare, strategy_config, summarise


def _frame(strategy, accs, bytes_down, server_time=1.0):
    rows = [{"round": r + 1, "device_id": d, "strategy": strategy, "accuracy": a, "bytes_down": bytes_down,
             "bytes_up": 0, "server_time_s": server_time} for r, a in enumerate(accs) for d in range(2)]
    return pd.DataFrame(rows)


def test_summary_reports_differences_and_ratios_against_the_reference():
    frames = {"full": [_frame("full", [0.8, 0.9], 1000)], "dpu": [_frame("dpu", [0.79, 0.88], 10)]}
    table = summarise(frames, "full").set_index("strategy")
    assert table.loc["dpu", "mean_accuracy_diff_vs_ref_pp"] == pytest.approx(-1.5)
    assert table.loc["dpu", "bytes_ratio_vs_ref"] == pytest.approx(0.01)
    assert table.loc["full", "bytes_ratio_vs_ref"] == 1.0
    assert table.loc["dpu", "final_accuracy"] == pytest.approx(0.88)
    assert table.loc["dpu", "total_bytes_down"] == 40


def test_per_strategy_params_come_from_the_strategies_table(tiny_config):
    cfg = tiny_config("strategy.name='dpu'", "strategy.params={k=0.02}", "strategies.gcpu={k=0.3}")
    assert strategy_config(cfg, "dpu").strategy.params == {"k": 0.02}
    assert strategy_config(cfg, "gcpu").strategy.params == {"k": 0.3}
    assert strategy_config(cfg, "full").strategy.params == {}
    with pytest.raises(ConfigError, match="strategy.params.k"):
        strategy_config(tiny_config("strategies.rpu={k=2.0}"), "rpu")


def test_compare_runs_every_strategy_on_the_same_config(tiny_config, tmp_path):
    cfg = tiny_config("strategies.dpu={k=0.05}")
    table = compare(cfg, ["full", "dpu"], tmp_path, log=lambda _m: None)
    assert list(table["strategy"]) == ["full", "dpu"]
    assert (tmp_path / "comparison.csv").exists() and (tmp_path / "comparison.md").exists()
    assert (tmp_path / "accuracy_vs_bytes.png").stat().st_size > 1000
    dpu = table.set_index("strategy").loc["dpu"]
    assert dpu["bytes_ratio_vs_ref"] < 0.25  # 5 % of the weights plus positions and dense biases
    runs = {p.name for p in (tmp_path / "runs").iterdir()}
    assert runs == {f"full-s{cfg.seed}", f"dpu-s{cfg.seed}"}
