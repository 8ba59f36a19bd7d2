"""`sweep`: grid syntax and its one-line errors, the table built from metrics, and a real sweep."""

from __future__ import annotations

import pandas as pd
import pytest

from edgeupdate.cli import main
from edgeupdate.configs import ConfigError, load_config
from edgeupdate.simulation.sweep import (GridError, SweepError, _write_markdown, parse_grid, point_row, sweep,
                                         sweep_points, table_of, verdict)

from tests.conftest import REPO, TINY

QUICKSTART = str(REPO / "configs" / "quickstart.toml")


@pytest.mark.parametrize("spec, needle", [
    ("ka.n", "expected STRATEGY.PARAM=V1,V2,..."),
    ("n=1,2", "expected STRATEGY.PARAM=V1,V2,..."),
    (".n=1", "expected STRATEGY.PARAM=V1,V2,..."),
    ("ka.=1", "expected STRATEGY.PARAM=V1,V2,..."),
    ("ka.n=", "no values after '='"),
    ("ka.n=1,,2", "empty value in the list"),
    ("ka.n=2,2", "a value is listed twice"),
])
def test_malformed_grid_is_a_one_line_error(spec, needle):
    with pytest.raises(GridError, match=needle.replace(".", r"\.")):
        parse_grid([spec])


def test_grid_values_are_toml_scalars_and_two_grids_of_one_strategy_combine(tiny_config):
    axes = parse_grid(["rm.proportion=0.01, 0.05", "ka.n=0,1", "ka.deploy=true,false", "full.init=warm"])
    assert axes[0].values == (0.01, 0.05) and axes[3].values == ("warm",)

    points = sweep_points(tiny_config(), ["ka", "rm", "full"], axes)

    assert [p.label for p in points] == ["ka-n=0-deploy=true", "ka-n=0-deploy=false", "ka-n=1-deploy=true",
                                        "ka-n=1-deploy=false", "rm-proportion=0.01", "rm-proportion=0.05",
                                        "full-init=warm"]
    assert points[2].config.strategy.params == {"n": 1, "deploy": True}


def test_the_same_parameter_twice_is_an_error():
    with pytest.raises(GridError, match="ka.n is given twice"):
        parse_grid(["ka.n=1", "ka.n=2"])


@pytest.mark.parametrize("strategies, spec, needle", [
    (["rm"], "ka.n=1", "strategy 'ka' is not in --strategies (rm)"),
    ([], "zz.n=1", "'zz' is neither a strategy"),
    ([], "ka.k=1", "--param-grid ka.k=1: strategy.params.k: unknown key"),
    ([], "ka.n=-1", "--param-grid ka.n=-1: strategy.params.n: must be >= 0"),
    ([], "ka.n=abc", "strategy.params.n: expected integer, got 'abc'"),
    ([], "ka.n=2,17", "--param-grid ka.n=17: strategy.params.n: ka n=17 exceeds layer"),
    ([], "rm.proportion=0", "strategy.params.proportion"),
])
def test_names_and_values_are_checked_against_the_config_before_anything_runs(tiny_config, strategies, spec,
                                                                             needle):
    with pytest.raises(GridError) as err:
        sweep_points(tiny_config(), strategies, parse_grid([spec]))
    assert needle in str(err.value) and "\n" not in str(err.value)


def test_a_sweep_needs_an_update_round_after_the_deployment(tiny_config):
    with pytest.raises(ConfigError, match="rounds"):
        sweep_points(tiny_config("rounds=1"), ["ka"], [])
    with pytest.raises(GridError, match="nothing to sweep"):
        sweep_points(tiny_config(), [], [])


@pytest.mark.parametrize("args, needle", [
    (["--param-grid", "ka.n"], "expected STRATEGY.PARAM"),
    (["--param-grid", "ka.n=1", "--strategies", "rm"], "not in --strategies"),
    (["--param-grid", "ka.n=99"], "exceeds layer"),
    (["--param-grid", "ka.n=1", "--seeds", "0"], "--seeds"),
])
def test_cli_bad_grid_exits_2_with_one_line_and_writes_nothing(args, needle, tmp_path, capsys):
    out = tmp_path / "out"
    assert main(["sweep", QUICKSTART, *args, "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip()
    assert needle in err and len(err.splitlines()) == 1 and err.startswith("error: ")
    assert not out.exists()


def test_cli_resume_needs_the_directory_to_resume(capsys):
    assert main(["sweep", QUICKSTART, "--param-grid", "ka.n=1", "--resume"]) == 2
    assert "--resume needs --out" in capsys.readouterr().err


def _metrics(accuracies, bytes_down, status=("applied", "applied"), reason=("", "")):
    rows = []
    for r, acc in enumerate(accuracies, 1):
        for d in range(2):
            last = r == len(accuracies)
            rows.append({"round": r, "device_id": d, "accuracy": acc + 0.01 * d, "bytes_down": bytes_down[r - 1],
                         "status": status[d] if last else "applied", "reason": reason[d] if last else "",
                         "server_time_s": 2.0 * r, "update_params": 75.0 if last else 1000.0,
                         "model_params": 1000.0})
    return pd.DataFrame(rows)


def test_point_row_measures_the_last_round_against_the_round_before(tiny_config):
    point = sweep_points(tiny_config(), ["ka"], parse_grid(["ka.n=1"]))[0]
    frame = _metrics([0.80, 0.85], [4000, 300], status=("applied", "rejected"),
                     reason=("", "result hash 12ab differs from target version 2 hash 34cd"))

    row = point_row(point, [frame], dense_model_bytes=4000)

    assert row["update_params"] == 75 and row["update_pct"] == pytest.approx(7.5)
    assert row["bytes_down"] == 300 and row["bytes_pct"] == pytest.approx(7.5)
    assert row["initial_accuracy"] == pytest.approx(0.805) and row["lift"] == pytest.approx(0.05)
    assert (row["applied_devices"], row["devices"]) == (1, 2)
    assert row["reject_reason"].startswith("result hash")
    assert row["params"] == "n=1" and row["server_time_s"] == 4.0


def test_seeds_give_the_table_their_spread(tiny_config, tmp_path):
    point = sweep_points(tiny_config(), ["ka"], parse_grid(["ka.n=1"]))[0]
    seeds = [_metrics([0.80, 0.85], [4000, 300]), _metrics([0.80, 0.83], [4000, 300]),
             _metrics([0.70, 0.78], [4000, 300])]  # lifts +5, +3, +8 pp

    row = point_row(point, seeds, dense_model_bytes=4000)
    row["wall_time_s"] = 60.0  # sweep() adds it from the runs' summaries

    assert row["seeds"] == 3 and row["lift"] == pytest.approx((0.05 + 0.03 + 0.08) / 3)
    assert row["lift_std"] == pytest.approx(pd.Series([0.05, 0.03, 0.08]).std())  # sample std (n − 1)
    assert row["accuracy_std"] == pytest.approx(pd.Series([0.855, 0.835, 0.785]).std())
    assert [float(v) for v in row["seed_lifts"].split()] == pytest.approx([0.05, 0.03, 0.08])
    path = tmp_path / "sweep.md"
    _write_markdown(table_of([row]), tiny_config(), 3, path)
    head, _, first = path.read_text().splitlines()[2:5]
    assert "| lift | accuracy_std | lift_std |" in head
    assert f"| {row['lift_std']:.4g} |" in first


def _table(rows):
    return pd.DataFrame([{"strategy": s, "params": p, "update_params": u, "update_pct": u / 10, "lift": lift}
                         for s, p, u, lift in rows])


def test_verdict_compares_ka_at_small_size_with_rivals_at_equal_or_larger_size():
    table = _table([("ka", "n=0", 9.0, 0.02), ("ka", "n=1", 30.0, 0.05), ("rm", "p=a", 5.0, 0.05),
                    ("rm", "p=b", 9.5, 0.01), ("lru", "r=1", 12.0, 0.03)])

    lines = verdict(table)

    assert lines[0].startswith("ka n=0 (9 params, 0.90 %) lift +2.00 pp >= rm p=b") and lines[0].endswith("holds")
    assert lines[1].startswith("ka n=0") and "lru r=1" in lines[1] and lines[1].endswith("FAILS")
    assert verdict(table[table["strategy"] != "ka"]) == []


def test_verdict_pairs_the_seeds_when_both_sides_ran_the_same_seeds():
    table = _table([("ka", "n=0", 9.0, 0.02), ("lru", "rank=1", 20.0, 0.021)])
    table["seed_lifts"] = ["0.010000 0.030000 0.020000", "0.015000 0.025000 0.023000"]

    (line,) = verdict(table, rivals=("lru",))

    assert line.endswith("lift +2.10 pp: FAILS (per seed -0.50 / +0.50 / -0.30 pp)")


def test_verdict_gives_each_side_its_best_tuned_point_of_one_size():
    table = _table([("ka", "lr=a", 9.0, 0.02), ("ka", "lr=b", 9.0, 0.03), ("lru", "lr=a", 12.0, 0.01),
                    ("lru", "lr=b", 12.0, 0.035), ("lru", "lr=c", 12.0, 0.02), ("rm", "p=big", 50.0, 0.9)])

    lines = verdict(table, rivals=("lru",))

    assert lines == ["ka lr=b (9 params, 0.90 %) lift +3.00 pp < lru lr=b (12 params, 1.20 %) lift +3.50 pp: FAILS"]


@pytest.mark.sim
def test_sweep_cli_runs_real_simulations_and_writes_csv_and_plot(tmp_path, capsys):
    sets = [a for o in TINY for a in ("--set", o)]
    out = tmp_path / "sweep"

    code = main(["sweep", QUICKSTART, *sets, "--param-grid", "ka.n=0,1", "--out", str(out), "--quiet"])

    assert code == 0, capsys.readouterr().err
    table = pd.read_csv(out / "sweep.csv")
    assert list(table["params"]) == ["n=0", "n=1"]
    # MLP 64-16-10: KA sends s′ (m + n per layer) plus U′, V′ (n·(o + i)) and both biases (16 + 10).
    assert list(table["update_params"]) == [16 + 10 + 26, 16 + 10 + 26 + (16 + 64 + 1) + (10 + 16 + 1)]
    assert list(table["model_params"]) == [64 * 16 + 16 + 16 * 10 + 10] * 2
    assert (table["applied_devices"] == table["devices"]).all() and (table["devices"] == 3).all()
    assert table["bytes_down"].iloc[0] < table["bytes_down"].iloc[1] < table["dense_model_bytes"].iloc[0]
    assert table["initial_accuracy"].nunique() == 1  # the same θ¹ deployed before every update
    for label in ("ka-n=0", "ka-n=1"):
        metrics = pd.read_csv(out / "runs" / f"{label}-s42" / "metrics.csv")
        assert set(metrics["status"]) == {"applied"}
        assert (metrics[metrics["round"] == 1]["bytes_down"] > table["dense_model_bytes"].iloc[0] - 1).all()
    assert 5_000 < (out / "sweep.png").stat().st_size < 200_000
    assert "| ka | n=0 |" in (out / "sweep.md").read_text()

    # --resume reuses finished runs: nothing is simulated again and the table is the same.
    capsys.readouterr()
    assert main(["sweep", QUICKSTART, *sets, "--param-grid", "ka.n=0,1", "--out", str(out), "--resume"]) == 0
    assert capsys.readouterr().out.count("reusing the finished run") == 2
    pd.testing.assert_frame_equal(pd.read_csv(out / "sweep.csv"), table)

    # A point whose simulation fails is reported; the finished points stay in the table.
    def broken(cfg, _choice, run_dir):
        raise RuntimeError("simulated crash")

    cfg = load_config(QUICKSTART, TINY)
    with pytest.raises(SweepError, match=r"1 of 3 points failed \(ka-n=2\)"):
        sweep(cfg, ["ka"], parse_grid(["ka.n=0,1,2"]), out, resume=True, run=broken, log=lambda _m: None)
    assert list(pd.read_csv(out / "sweep.csv")["params"]) == ["n=0", "n=1"]
