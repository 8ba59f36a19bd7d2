"""`compare`: identical data and seeds for every strategy, one table row each."""

import math

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


def _with_server_accuracy(df, per_round):
    df = df.copy()
    df["server_test_accuracy_frac"] = df["round"].map(dict(enumerate(per_round, start=1)))
    return df


def test_best_accuracy_column_is_the_running_best_server_accuracy_against_the_reference():
    """The thesis's metric on a hand-built frame: running max over rounds, mean, minus the reference's."""
    ref = _with_server_accuracy(_frame("full", [0.8, 0.9, 0.9], 1000), [0.90, 0.95, 0.93])  # best: .90 .95 .95
    dpu = _with_server_accuracy(_frame("dpu", [0.8, 0.9, 0.9], 10), [0.91, 0.80, 0.96])     # best: .91 .91 .96
    frames = {"full": [ref], "dpu": [dpu], "fedavg": [_frame("fedavg", [0.8, 0.9, 0.9], 10)]}

    table = summarise(frames, "full").set_index("strategy")

    # ((.91 − .90) + (.91 − .95) + (.96 − .95)) / 3 → −0.667 pp (without the running best it would
    # be (.01 − .15 + .03) / 3 → −3.67 pp)
    assert table.loc["dpu", "mean_best_accuracy_diff_vs_ref_pp"] == pytest.approx(100 * (0.01 - 0.04 + 0.01) / 3)
    assert table.loc["full", "mean_best_accuracy_diff_vs_ref_pp"] == 0.0
    assert pd.isna(table.loc["fedavg", "mean_best_accuracy_diff_vs_ref_pp"])  # no server model recorded
    # the devices' column is untouched: the same device accuracies → 0
    assert table.loc["dpu", "mean_accuracy_diff_vs_ref_pp"] == pytest.approx(0.0)


def test_best_accuracy_running_max_changes_the_mean():
    ref = _with_server_accuracy(_frame("full", [0.9, 0.9], 1000), [0.90, 0.90])
    dropping = _with_server_accuracy(_frame("dpu", [0.9, 0.9], 10), [0.95, 0.85])  # best: .95 .95
    seeds = {"full": [ref, ref], "dpu": [dropping, _with_server_accuracy(dropping, [0.90, 0.90])]}

    table = summarise(seeds, "full").set_index("strategy")

    assert table.loc["dpu", "mean_best_accuracy_diff_vs_ref_pp"] == pytest.approx((5.0 + 0.0) / 2)
    assert table.loc["dpu", "mean_best_accuracy_diff_vs_ref_pp_std"] == pytest.approx(pd.Series([5.0, 0.0]).std())


def test_best_accuracy_column_is_left_out_when_no_run_recorded_it():
    frames = {"full": [_frame("full", [0.8, 0.9], 1000)], "dpu": [_frame("dpu", [0.79, 0.88], 10)]}
    assert "mean_best_accuracy_diff_vs_ref_pp" not in summarise(frames, "full").columns


def test_per_strategy_params_come_from_the_strategies_table(tiny_config):
    cfg = tiny_config("strategy.name='dpu'", "strategy.params={k=0.02}", "strategies.gcpu={k=0.3}")
    assert strategy_config(cfg, "dpu").strategy.params == {"k": 0.02}
    assert strategy_config(cfg, "gcpu").strategy.params == {"k": 0.3}
    assert strategy_config(cfg, "full").strategy.params == {}
    with pytest.raises(ConfigError, match="strategies.rpu.k"):
        strategy_config(tiny_config("strategies.rpu={k=2.0}"), "rpu")
    with pytest.raises(ConfigError, match="strategy.params.k"):
        strategy_config(tiny_config("strategy.name='dpu'", "strategy.params={k=2.0}"), "dpu")


@pytest.mark.sim
def test_compare_runs_every_strategy_on_the_same_config(tiny_config, tmp_path):
    cfg = tiny_config("strategies.dpu={k=0.05}")
    table = compare(cfg, ["full", "dpu"], tmp_path, log=lambda _m: None)
    assert list(table["strategy"]) == ["full", "dpu"]
    assert (tmp_path / "comparison.csv").exists() and (tmp_path / "comparison.md").exists()
    assert (tmp_path / "accuracy_vs_bytes.png").stat().st_size > 1000
    assert (tmp_path / "accuracy_vs_total_bytes.png").stat().st_size > 1000
    assert "| dpu |" in (tmp_path / "report.md").read_text()
    dpu = table.set_index("strategy").loc["dpu"]
    assert dpu["bytes_ratio_vs_ref"] < 0.25  # 5 % of the weights plus positions and dense biases
    # the server recorded its own model's accuracy every round, so the thesis's column is there
    assert table.set_index("strategy").loc["full", "mean_best_accuracy_diff_vs_ref_pp"] == 0.0
    assert math.isfinite(dpu["mean_best_accuracy_diff_vs_ref_pp"])
    assert "mean_best_accuracy_diff_vs_ref_pp" in (tmp_path / "report.md").read_text()
    runs = {p.name for p in (tmp_path / "runs").iterdir()}
    assert runs == {f"full-s{cfg.seed}", f"dpu-s{cfg.seed}"}


# ---------------------------------------------------------------------------------- labels
TOPK = "strategies.fedavg-topk={strategy='fedavg', upload={kind='topk', fraction=0.01, precision='fp16'}}"


def test_a_label_runs_its_base_strategy_with_its_own_params(tiny_config):
    cfg = tiny_config(TOPK, "strategies.fedprox={proximal_mu=0.1}")
    topk = strategy_config(cfg, "fedavg-topk").strategy
    assert topk.name == "fedavg"
    assert topk.params == {"upload": {"kind": "topk", "fraction": 0.01, "precision": "fp16"}}
    assert strategy_config(cfg, "fedavg").strategy.params == {}  # the plain row keeps its defaults
    assert strategy_config(cfg, "fedprox").strategy.params == {"proximal_mu": 0.1}


@pytest.mark.parametrize(("overrides", "label", "message"), [
    (["strategies.fedavg-topk={strategy='fedavgg'}"], "fedavg-topk",
     r"^strategies\.fedavg-topk\.strategy: unknown strategy 'fedavgg' \(known: "),
    (["strategies.fedavg-topk={strategy=3}"], "fedavg-topk",
     r"^strategies\.fedavg-topk\.strategy: expected the name of a strategy, got 3$"),
    (["strategies.fedavg-topk={strategy='fedavg', upload={kind='topk', fraction=2.0}}"], "fedavg-topk",
     r"^strategies\.fedavg-topk\.upload\.fraction: "),
    (["strategies.fedavg-topk={strategy='fedavg', proximal_mu=0.1}"], "fedavg-topk",
     r"^strategies\.fedavg-topk\.proximal_mu: unknown key"),
    ([], "fedavg-topk", r"^strategies\.fedavg-topk: 'fedavg-topk' is neither a strategy \(known: .*\) nor a "
                        r"\[strategies\.fedavg-topk\] table with strategy = \"<name>\"$"),
])
def test_bad_labels_are_one_line_config_errors(tiny_config, overrides, label, message):
    with pytest.raises(ConfigError, match=message) as err:
        strategy_config(tiny_config(*overrides), label)
    assert "\n" not in str(err.value)


def test_cli_compare_rejects_a_bad_label_before_running_anything(tmp_path, capsys):
    from edgeupdate.cli import main
    from tests.conftest import REPO

    code = main(["compare", str(REPO / "configs" / "quickstart.toml"), "--strategies", "full,fedavg-topk",
                 "--set", "strategies.fedavg-topk={strategy='fedavg', upload={kind='zip'}}", "--out", str(tmp_path / "c")])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1
    assert err[0].startswith("error: config: strategies.fedavg-topk.upload")
    assert not (tmp_path / "c" / "runs").exists()


# ---------------------------------------------------------------------------------- report
def _writer(rounds: int, devices: int, clock: bool):
    """A stand-in for one simulation: writes a metrics file derived from the config it is given."""
    seen = []

    def run(cfg, _choice, run_dir):
        seen.append((cfg.strategy.name, cfg.strategy.params))
        fl = cfg.strategy.name.startswith("fed")
        compressed = bool(cfg.strategy.params.get("upload"))
        rows = []
        for r in range(1, rounds + 1):
            for d in range(devices):
                row = {"round": r, "device_id": d, "strategy": cfg.strategy.name, "accuracy": 0.5 + 0.1 * r,
                       "loss": 1.0, "bytes_down": 1000, "bytes_up": (10 if compressed else 400) if fl else 50,
                       "model_version": r, "num_examples": 10, "status": "applied", "server_time_s": 0.5}
                if clock:
                    row.update(sim_time_s=1.0 + d, round_sim_time_s=10.0 * r)
                rows.append(row)
        run_dir.mkdir(parents=True)
        pd.DataFrame(rows).to_csv(run_dir / "metrics.csv", index=False)

    return run, seen


@pytest.mark.sim
@pytest.mark.parametrize("clock", [False, True])
def test_compare_writes_a_report_with_table_plots_and_labels(tiny_config, tmp_path, clock):
    # Prepare
    cfg = tiny_config(TOPK)
    run, seen = _writer(rounds=2, devices=3, clock=clock)
    # Execute
    table = compare(cfg, ["full", "fedavg", "fedavg-topk"], tmp_path, run=run, command="edgeupdate compare x",
                    log=lambda _m: None)
    # Assert: each label ran its base strategy with its params
    assert seen == [("full", {"init": "warm"}), ("fedavg", {}),  # quickstart: full with init = "warm"
                    ("fedavg", {"upload": {"kind": "topk", "fraction": 0.01, "precision": "fp16"}})]
    rows = table.set_index("strategy")
    assert list(rows.index) == ["full", "fedavg", "fedavg-topk"]
    assert rows.loc["fedavg-topk", "total_bytes_up"] == 2 * 3 * 10
    csv = pd.read_csv(tmp_path / "comparison.csv")
    assert "total_bytes_up" in csv.columns
    md = (tmp_path / "report.md").read_text()
    page = (tmp_path / "report.html").read_text()
    assert "edgeupdate compare x" in md and "| fedavg-topk |" in md
    assert 'upload = {kind = "topk", fraction = 0.01, precision = "fp16"}' in md
    for name in ("accuracy_vs_round.png", "accuracy_vs_total_bytes.png"):
        assert (tmp_path / name).stat().st_size > 1000 and f"]({name})" in md
    # the HTML page is self-contained: every plot embedded, no file referenced
    assert page.count('src="data:image/png;base64,') == (4 if clock else 3) and ".png" not in page
    if clock:  # Σ over rounds of round_sim_time_s: 10 + 20 s
        assert list(csv["sim_time_s"]) == [30.0, 30.0, 30.0]
        assert (tmp_path / "accuracy_vs_sim_time.png").stat().st_size > 1000
        assert "](accuracy_vs_sim_time.png)" in md
    else:
        assert "sim_time_s" not in csv.columns
        assert not (tmp_path / "accuracy_vs_sim_time.png").exists()
        assert "not plotted" in md and "not plotted" in page


def test_summary_sim_time_uses_the_slowest_device_without_a_round_column():
    frames = {"full": [_frame("full", [0.8, 0.9], 1000)]}
    frames["full"][0]["sim_time_s"] = [3.0, 5.0, 2.0, 1.0]  # rounds 1 and 2, two devices each
    assert summarise(frames, "full").loc[0, "sim_time_s"] == 5.0 + 2.0


def test_a_label_can_change_config_keys_for_its_own_row(tiny_config):
    cfg = tiny_config("strategies.dpu-int8={strategy='dpu', k=0.05, set=['package.precision=int8', "
                      "'fleet.budgets=true']}")

    labelled = strategy_config(cfg, "dpu-int8")

    assert (labelled.strategy.name, labelled.strategy.params) == ("dpu", {"k": 0.05})
    assert (labelled.package.precision, labelled.fleet.budgets) == ("int8", True)
    assert (cfg.package.precision, cfg.fleet.budgets) == ("fp32", False)  # other rows keep the config


@pytest.mark.parametrize("value, message", [
    ("['package.precision=fp7']", "strategies.x.set: package.precision: must be one of"),
    ("'package.precision=int8'", "strategies.x.set: expected a list"),
])
def test_bad_label_overrides_are_one_line_config_errors(tiny_config, value, message):
    cfg = tiny_config(f"strategies.x={{strategy='full', set={value}}}")
    with pytest.raises(ConfigError, match=message.replace(".", r"\.")):
        strategy_config(cfg, "x")


def test_resume_continues_a_run_only_when_it_was_started_with_the_same_config(tmp_path, monkeypatch):
    import dataclasses

    from edgeupdate.configs import dump_config, load_config
    from edgeupdate.simulation import runner
    from edgeupdate.simulation.compare import simulation_runner
    from tests.conftest import REPO, TINY

    calls = []
    monkeypatch.setattr(runner, "run_experiment", lambda cfg, run_dir, **kw: calls.append((run_dir.name, kw["resume"])))
    cfg = load_config(REPO / "configs" / "quickstart.toml", TINY)
    for name, started_with in (("same", cfg), ("changed", dataclasses.replace(cfg, seed=cfg.seed + 1))):
        (tmp_path / name).mkdir()
        (tmp_path / name / "config.toml").write_text(dump_config(started_with))

    run = simulation_runner(resume=True)
    for name in ("same", "changed", "new"):
        run(cfg, None, tmp_path / name)

    assert calls == [("same", True), ("changed", False), ("new", False)]  # the others start afresh
