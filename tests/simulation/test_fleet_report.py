"""The fleet view of a comparison: per-tier outcome table, fleet figure, report section."""

from __future__ import annotations

import pandas as pd

from edgeupdate.simulation.compare import resolve_entry, summarise
from edgeupdate.simulation.fleet_plots import plot_fleet, tier_outcomes
from edgeupdate.simulation.report import TIERS_CSV, write_report


def _frame(statuses_lora: list[str]) -> pd.DataFrame:
    rows = []
    for r in (1, 2):
        for d, tier in enumerate(("lora-sf7", "lora-sf7", "nbiot")):
            status = statuses_lora[(r - 1) * 2 + d] if tier == "lora-sf7" else "applied"
            rows.append({"round": r, "device_id": d, "strategy": "x", "device_tier": tier, "status": status,
                         "accuracy": 0.5 + 0.1 * r, "loss": 1.0, "bytes_down": 100 if status == "applied" else 40,
                         "bytes_up": 0, "server_time_s": 0.1, "up_to_date": status == "applied",
                         "catch_up": r == 2 and d == 2, "package_kind": "catch-up" if r == 2 and d == 2 else "release",
                         "round_sim_time_s": 1800.0, "sim_time_s": 10.0})
    return pd.DataFrame(rows)


def test_tier_outcomes_count_each_tiers_push_results():
    frames = {"full": _frame(["deadline", "offline", "deadline", "deadline"]),
              "dpu": _frame(["applied", "offline", "applied", "rejected"])}

    table = tier_outcomes(frames).set_index(["strategy", "tier"])

    assert table.loc[("full", "lora-sf7"), ["applied", "offline", "deadline"]].tolist() == [0, 1, 3]
    assert table.loc[("dpu", "lora-sf7"), ["applied", "offline", "rejected"]].tolist() == [2, 1, 1]
    assert table.loc[("dpu", "nbiot"), ["devices", "applied", "catch_up_applied"]].tolist() == [1, 2, 1]
    assert table.loc[("full", "lora-sf7"), "bytes_down_per_device"] == 80.0


def test_a_fleet_comparison_report_has_the_tier_table_and_the_fleet_figure(tiny_config, tmp_path):
    cfg = tiny_config("strategies.dpu={k=0.05}", "fleet.tiers={lora-sf7=3, nbiot=1}", "fleet.deadline_s=600.0")
    frames = {"full": _frame(["deadline"] * 4), "dpu": _frame(["applied"] * 4)}
    table = summarise({k: [v] for k, v in frames.items()}, "full")

    write_report(tmp_path, cfg, table, frames, [resolve_entry(cfg, "full").row(), resolve_entry(cfg, "dpu").row()],
                 reference="full")

    text = (tmp_path / "report.md").read_text()
    assert "## The fleet by tier" in text and "![The fleet" in text
    assert "fleet: 75 % lora-sf7, 25 % nbiot; deadline 600 s per phase;" in text  # shares of the mixture
    html = (tmp_path / "report.html").read_text()
    assert "The fleet by tier" in html
    assert html.count('<div class="wide"><table>') == 3 and ".wide{overflow-x:auto" in html  # tables scroll in a box
    assert len(pd.read_csv(tmp_path / TIERS_CSV)) == 4
    assert (tmp_path / "fleet.png").stat().st_size > 0


def test_the_fleet_figure_draws_one_run_per_tier(tmp_path):
    path = plot_fleet({"full": _frame(["deadline", "offline", "applied", "applied"])}, tmp_path / "f.png")
    assert path.stat().st_size > 0
