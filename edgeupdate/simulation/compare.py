"""Compare strategies on identical data, fleet and seeds.

Every entry of ``--strategies`` is a *label*. A label is a registered strategy (``full``, ``dpu``,
``fedavg``, ...) whose parameters come from the config's ``[strategies.<name>]`` table (or
``[strategy.params]`` when it is the config's own strategy), or a table that names its base
strategy, so one comparison can hold several configurations of the same strategy::

    [strategies.fedavg-topk]
    strategy = "fedavg"                                           # the base strategy
    upload = { kind = "topk", fraction = 0.01, precision = "fp16" }  # its parameters

    [strategies.dpu-int8]
    strategy = "dpu"
    k = 0.005
    set = ["package.precision=int8"]  # config overrides for this row only (as --set)

With ``seeds = N`` each label runs with seeds ``seed … seed+N−1`` and the table shows means (and
standard deviations). Outputs in ``out_dir``:

* ``runs/<label>-s<seed>/`` — each run's own files;
* ``comparison.csv`` / ``comparison.md`` — one row per label;
* ``accuracy_vs_round.png``, ``accuracy_vs_bytes.png`` (bytes received per device),
  ``accuracy_vs_total_bytes.png`` (the fleet's bytes down + up) and, when the metrics carry a
  simulated clock, ``accuracy_vs_sim_time.png``;
* ``report.md`` and ``report.html`` — the table, the setup and the plots on one page
  (:mod:`edgeupdate.simulation.report`).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from edgeupdate.configs import ConfigError, ExperimentConfig
from edgeupdate.configs.schema import StrategyConfig
from edgeupdate.simulation.metrics import read_metrics
from edgeupdate.simulation.plots import round_sim_times
from edgeupdate.simulation.report import StrategyRow, strategy_row, write_report
from edgeupdate.simulation.tables import to_markdown
from edgeupdate.strategies.registry import STRATEGIES
from edgeupdate.strategies.resolve import StrategyChoice, resolve_strategy, strategy_class

COLUMNS = ["strategy", "final_accuracy", "mean_accuracy", "mean_accuracy_diff_vs_ref_pp",
           "mean_best_accuracy_diff_vs_ref_pp", "total_bytes_down",
           "bytes_ratio_vs_ref", "total_bytes_up", "server_time_s", "sim_time_s"]
BASE_KEY = "strategy"  # in a [strategies.<label>] table: the base strategy the label configures
SET_KEY = "set"  # in a [strategies.<label>] table: config overrides for this row only


@dataclass(frozen=True)
class Entry:
    """One row of a comparison: its label, base strategy and parameters (and where they came from)."""

    label: str
    strategy: str
    params: dict[str, Any]
    overrides: tuple[str, ...] = ()
    key: str = "strategy.params"  # the config key the parameters came from, for error messages

    def config(self, cfg: ExperimentConfig) -> ExperimentConfig:
        """``cfg`` running this entry: its strategy and parameters, its overrides applied."""
        if self.overrides:
            from edgeupdate.configs import apply_overrides, config_from_dict
            from edgeupdate.configs.loader import config_to_dict

            try:
                cfg = config_from_dict(apply_overrides(config_to_dict(cfg), self.overrides))
            except ConfigError as err:
                raise ConfigError(f"strategies.{self.label}.{SET_KEY}", str(err)) from None
        return dataclasses.replace(cfg, strategy=StrategyConfig(name=self.strategy, params=dict(self.params)))

    def row(self) -> StrategyRow:
        """This entry as the report lists it."""
        return strategy_row(self.label, self.strategy, self.params, self.overrides)


@dataclass(frozen=True)
class LabelledRun:
    """A label ready to run: its entry, its config, and its strategy built and checked once."""

    entry: Entry
    config: ExperimentConfig
    choice: StrategyChoice


def resolve_entry(cfg: ExperimentConfig, label: str) -> Entry:
    """The base strategy and parameters behind ``label`` (ConfigError naming the key); the
    parameters are checked when the label is prepared (:func:`prepare`)."""

    table = cfg.strategies.get(label)
    overrides: tuple[str, ...] = ()
    if table is not None and SET_KEY in table:
        raw = table[SET_KEY]
        if not isinstance(raw, list) or not all(isinstance(x, str) and "=" in x for x in raw):
            raise ConfigError(f"strategies.{label}.{SET_KEY}", f"expected a list of \"key=value\" strings, got {raw!r}")
        overrides = tuple(raw)
        table = {k: v for k, v in table.items() if k != SET_KEY}
    return dataclasses.replace(_resolve_strategy(cfg, label, table), overrides=overrides)


def _resolve_strategy(cfg: ExperimentConfig, label: str, table: dict[str, Any] | None) -> Entry:
    if table is not None and BASE_KEY in table:
        base, params = table[BASE_KEY], {k: v for k, v in table.items() if k != BASE_KEY}
        key = f"strategies.{label}.{BASE_KEY}"
        if not isinstance(base, str) or not base:
            raise ConfigError(key, f"expected the name of a strategy, got {base!r}")
        try:
            strategy_class(base)
        except ConfigError as err:
            raise ConfigError(key, err.problem) from None
        return Entry(label, base, dict(params), key=f"strategies.{label}")
    if table is None and label not in STRATEGIES and ":" not in label:
        raise ConfigError(f"strategies.{label}",
                          f"{label!r} is neither a strategy (known: {', '.join(sorted(STRATEGIES))}) nor a "
                          f"[strategies.{label}] table with {BASE_KEY} = \"<name>\"")
    strategy_class(label)
    if table is not None:
        return Entry(label, label, dict(table), key=f"strategies.{label}")
    params = cfg.strategy.params if label == cfg.strategy.name else {}
    return Entry(label, label, dict(params))


def prepare(cfg: ExperimentConfig, label: str, overrides: Mapping[str, Any] | None = None) -> LabelledRun:
    """``label`` ready to run on ``cfg``: its parameters from the config with ``overrides`` on top,
    built and checked against the whole config once (raises ConfigError naming the key)."""
    entry = resolve_entry(cfg, label)
    if overrides:
        entry = dataclasses.replace(entry, params={**entry.params, **overrides})
    config = entry.config(cfg)
    return LabelledRun(entry, config, resolve_strategy(config, key=entry.key))


def strategy_config(cfg: ExperimentConfig, label: str, overrides: Mapping[str, Any] | None = None) -> ExperimentConfig:
    """``cfg`` running the strategy behind ``label`` (see :func:`prepare`)."""
    return prepare(cfg, label, overrides).config


Runner = Callable[[ExperimentConfig, StrategyChoice, Path], object]


def same_config(cfg: ExperimentConfig, run_dir: Path) -> bool:
    """Whether ``run_dir`` was started with exactly ``cfg``."""
    from edgeupdate.configs import dump_config

    cfg_file = run_dir / "config.toml"
    return cfg_file.exists() and cfg_file.read_text() == dump_config(cfg)


def finished_run(cfg: ExperimentConfig, run_dir: Path) -> bool:
    """Whether ``run_dir`` holds a complete run of exactly ``cfg`` (for ``--resume``)."""
    return (run_dir / "summary.json").exists() and same_config(cfg, run_dir)


def simulation_runner(data_dir: str | None = None, resume: bool = False) -> Runner:
    """Run a config on Flower's simulation engine into a directory (no progress lines); with
    ``resume``, a directory holding an unfinished run of the same config continues from its checkpoint."""
    from edgeupdate.simulation.runner import run_experiment

    return lambda c, choice, d: run_experiment(c, d, choice=choice, data_dir=data_dir, progress=False,
                                               resume=resume and same_config(c, d))


def run_all(runs: Mapping[str, LabelledRun], out_dir: Path, *, seeds: int = 1,
            run: Runner | None = None, data_dir: str | None = None, resume: bool = False,
            log: Callable[[str], None] = print) -> dict[str, list[pd.DataFrame]]:
    """Run every prepared label ``seeds`` times (seeds seed … seed+N−1) into
    ``out_dir/runs/<label>-s<seed>/``; return each label's per-seed metrics frames. With ``resume``,
    runs that finished with the same config are reused and unfinished ones continue from their
    last checkpoint."""
    run = run or simulation_runner(data_dir, resume)
    frames: dict[str, list[pd.DataFrame]] = {}
    for label, prepared in runs.items():
        for i in range(seeds):
            seeded = dataclasses.replace(prepared.config, seed=prepared.config.seed + i)
            run_dir = out_dir / "runs" / f"{label}-s{seeded.seed}"
            if resume and finished_run(seeded, run_dir):
                log(f"{label} (seed {seeded.seed}): reusing the finished run in {run_dir}")
            else:
                log(f"{label} (seed {seeded.seed}) → {run_dir}")
                run(seeded, prepared.choice, run_dir)
            frames.setdefault(label, []).append(read_metrics(run_dir))
    return frames


def _per_round_accuracy(df: pd.DataFrame) -> pd.Series:
    return df.groupby("round")["accuracy"].mean()


def running_best_accuracy(df: pd.DataFrame) -> pd.Series:
    """The thesis's per-round accuracy (§5.5): the test accuracy of the server's best-validation
    epoch each round (``server_test_accuracy_frac``), after a running-best pass (the running
    maximum over rounds). Empty when the run did not record it (e.g. federated strategies)."""
    if "server_test_accuracy_frac" not in df.columns:
        return pd.Series(dtype=float)
    return df.groupby("round")["server_test_accuracy_frac"].first().cummax()


def total_sim_time_s(df: pd.DataFrame) -> float:
    """The run's simulated duration (sum of its rounds' simulated times); NaN without a clock."""
    rounds = round_sim_times(df)
    return float(rounds.sum()) if rounds is not None else math.nan


def summarise(frames: Mapping[str, list[pd.DataFrame]], reference: str) -> pd.DataFrame:
    """The comparison table from each label's per-seed metrics frames.

    ``sim_time_s`` is present when any run has a simulated clock (NaN for those without).
    ``mean_best_accuracy_diff_vs_ref_pp`` (the thesis's metric, :func:`running_best_accuracy`,
    averaged over rounds, minus the reference's, in percentage points) is present when a run and
    its reference recorded the server's accuracy; the devices' ``mean_accuracy_diff_vs_ref_pp``
    stays the primary number.
    """
    ref_runs = frames[reference]
    rows = []
    for name, runs in frames.items():
        per_seed = []
        for i, df in enumerate(runs):
            acc = _per_round_accuracy(df)
            ref_df = ref_runs[i]
            ref_acc = _per_round_accuracy(ref_df)
            best_diff = running_best_accuracy(df) - running_best_accuracy(ref_df)
            per_seed.append({
                "final_accuracy": acc.iloc[-1], "mean_accuracy": acc.mean(),
                "mean_accuracy_diff_vs_ref_pp": 100 * (acc - ref_acc).mean(),
                "mean_best_accuracy_diff_vs_ref_pp": 100 * best_diff.mean() if best_diff.notna().any() else math.nan,
                "total_bytes_down": df["bytes_down"].sum(),
                "bytes_ratio_vs_ref": df["bytes_down"].sum() / max(ref_df["bytes_down"].sum(), 1),
                "total_bytes_up": df["bytes_up"].sum(),
                "server_time_s": df.groupby("round")["server_time_s"].first().sum(),
                "sim_time_s": total_sim_time_s(df),
            })
        seeds = pd.DataFrame(per_seed)
        row = {"strategy": name, **seeds.mean().to_dict()}
        if len(runs) > 1:
            row.update({f"{c}_std": seeds[c].std() for c in ("final_accuracy", "mean_accuracy",
                                                                "mean_accuracy_diff_vs_ref_pp",
                                                                "mean_best_accuracy_diff_vs_ref_pp")})
        row["seeds"] = len(runs)
        rows.append(row)
    table = pd.DataFrame(rows)
    for optional in ("sim_time_s", "mean_best_accuracy_diff_vs_ref_pp", "mean_best_accuracy_diff_vs_ref_pp_std"):
        if optional in table.columns and table[optional].isna().all():
            table = table.drop(columns=[optional])
    columns = [c for c in COLUMNS if c in table.columns]
    return table[columns + [c for c in table.columns if c not in columns]]


def compare(cfg: ExperimentConfig, strategies: Sequence[str], out_dir: Path, *, reference: str | None = None,
            seeds: int = 1, run: Runner | None = None, data_dir: str | None = None, command: str | None = None,
            resume: bool = False, log: Callable[[str], None] = print) -> pd.DataFrame:
    """Run each label (× seeds), write the comparison files and the report, return the table.
    ``resume=True`` reuses finished runs in ``out_dir`` and continues unfinished ones."""

    labels = list(dict.fromkeys(strategies))  # a label given twice runs once
    reference = reference or labels[0]
    if reference not in labels:
        labels = [reference, *labels]
    runs = {label: prepare(cfg, label) for label in labels}  # every label checked once, before any runs
    frames = run_all(runs, out_dir, seeds=seeds, run=run, data_dir=data_dir, resume=resume,
                     log=lambda m: log(f"compare: {m}"))
    table = summarise(frames, reference)
    out_dir.mkdir(parents=True, exist_ok=True)
    table.to_csv(out_dir / "comparison.csv", index=False)
    (out_dir / "comparison.md").write_text(
        f"Reference: `{reference}`; config `{cfg.name}`; {seeds} seed(s) from {cfg.seed}.\n\n" + to_markdown(table))
    write_report(out_dir, cfg, table, {label: f[0] for label, f in frames.items()}, [r.entry.row() for r in runs.values()],
                 reference=reference, seeds=seeds, command=command)
    return table
