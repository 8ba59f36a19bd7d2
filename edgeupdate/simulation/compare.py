"""Compare strategies on identical data, fleet and seeds.

Every strategy runs the same config (only ``strategy`` changes; its parameters come from the
config's ``[strategies.<name>]`` table, or ``[strategy.params]`` when it is the config's own
strategy). With ``seeds = N`` each strategy runs with seeds ``seed … seed+N−1`` and the table shows
means (and standard deviations). Outputs in ``out_dir``:

* ``runs/<strategy>-s<seed>/`` — each run's own files;
* ``comparison.csv`` / ``comparison.md`` — one row per strategy;
* ``accuracy_vs_round.png`` / ``accuracy_vs_bytes.png`` — all strategies on one figure.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import pandas as pd

from edgeupdate.configs import ExperimentConfig
from edgeupdate.configs.schema import StrategyConfig
from edgeupdate.simulation.metrics import read_metrics
from edgeupdate.simulation.plots import plot_runs
from edgeupdate.strategies.registry import validate_strategy

COLUMNS = ["strategy", "final_accuracy", "mean_accuracy", "mean_accuracy_diff_vs_ref_pp", "total_bytes_down",
           "bytes_ratio_vs_ref", "total_bytes_up", "server_time_s"]


def strategy_config(cfg: ExperimentConfig, name: str, overrides: Mapping[str, Any] | None = None) -> ExperimentConfig:
    """``cfg`` with strategy ``name`` and its parameters from the config, ``overrides`` on top;
    validated against the whole config (raises ConfigError naming the key)."""
    params = {**cfg.strategies.get(name, cfg.strategy.params if name == cfg.strategy.name else {}), **(overrides or {})}
    out = dataclasses.replace(cfg, strategy=StrategyConfig(name=name, params=dict(params)))
    validate_strategy(name, out.strategy.params, out)
    return out


Runner = Callable[[ExperimentConfig, Path], object]


def simulation_runner(data_dir: str | None = None) -> Runner:
    """Run a config on Flower's simulation engine into a directory (no progress lines)."""
    from edgeupdate.simulation.runner import run_experiment

    return lambda c, d: run_experiment(c, d, data_dir=data_dir, progress=False)


def run_all(configs: Mapping[str, ExperimentConfig], out_dir: Path, *, seeds: int = 1,
            run: Runner | None = None, data_dir: str | None = None,
            log: Callable[[str], None] = print) -> dict[str, list[pd.DataFrame]]:
    """Run every labelled config ``seeds`` times (seeds seed … seed+N−1) into
    ``out_dir/runs/<label>-s<seed>/``; return each label's per-seed metrics frames."""
    run = run or simulation_runner(data_dir)
    frames: dict[str, list[pd.DataFrame]] = {}
    for label, config in configs.items():
        for i in range(seeds):
            seeded = dataclasses.replace(config, seed=config.seed + i)
            run_dir = out_dir / "runs" / f"{label}-s{seeded.seed}"
            log(f"{label} (seed {seeded.seed}) → {run_dir}")
            run(seeded, run_dir)
            frames.setdefault(label, []).append(read_metrics(run_dir))
    return frames


def _per_round_accuracy(df: pd.DataFrame) -> pd.Series:
    return df.groupby("round")["accuracy"].mean()


def summarise(frames: dict[str, list[pd.DataFrame]], reference: str) -> pd.DataFrame:
    """The comparison table from each strategy's per-seed metrics frames."""
    ref_runs = frames[reference]
    rows = []
    for name, runs in frames.items():
        per_seed = []
        for i, df in enumerate(runs):
            acc = _per_round_accuracy(df)
            ref_df = ref_runs[i]
            ref_acc = _per_round_accuracy(ref_df)
            per_seed.append({
                "final_accuracy": acc.iloc[-1], "mean_accuracy": acc.mean(),
                "mean_accuracy_diff_vs_ref_pp": 100 * (acc - ref_acc).mean(),
                "total_bytes_down": df["bytes_down"].sum(),
                "bytes_ratio_vs_ref": df["bytes_down"].sum() / max(ref_df["bytes_down"].sum(), 1),
                "total_bytes_up": df["bytes_up"].sum(),
                "server_time_s": df.groupby("round")["server_time_s"].first().sum(),
            })
        seeds = pd.DataFrame(per_seed)
        row = {"strategy": name, **seeds.mean().to_dict()}
        if len(runs) > 1:
            row.update({f"{c}_std": seeds[c].std() for c in ("final_accuracy", "mean_accuracy",
                                                                "mean_accuracy_diff_vs_ref_pp")})
        row["seeds"] = len(runs)
        rows.append(row)
    table = pd.DataFrame(rows)
    return table[COLUMNS + [c for c in table.columns if c not in COLUMNS]]


def to_markdown(table: pd.DataFrame) -> str:
    """A GitHub-flavoured markdown table (no extra dependency)."""
    def fmt(v):
        if isinstance(v, float):
            if abs(v) >= 1000:
                return f"{v:,.0f}"
            return f"{v:.4g}" if abs(v) < 1 else f"{v:.2f}"
        return str(v)
    head = "| " + " | ".join(table.columns) + " |"
    sep = "|" + "|".join("---" if c == "strategy" else "---:" for c in table.columns) + "|"
    body = ["| " + " | ".join(fmt(v) for v in row) + " |" for row in table.itertuples(index=False)]
    return "\n".join([head, sep, *body]) + "\n"


def compare(cfg: ExperimentConfig, strategies: Sequence[str], out_dir: Path, *, reference: str | None = None,
            seeds: int = 1, run: Runner | None = None, data_dir: str | None = None,
            log: Callable[[str], None] = print) -> pd.DataFrame:
    """Run each strategy (× seeds), write the comparison files, return the table."""
    reference = reference or strategies[0]
    if reference not in strategies:
        strategies = [reference, *strategies]
    configs = {name: strategy_config(cfg, name) for name in strategies}  # validate all before running any
    frames = run_all(configs, out_dir, seeds=seeds, run=run, data_dir=data_dir, log=lambda m: log(f"compare: {m}"))
    table = summarise(frames, reference)
    table.to_csv(out_dir / "comparison.csv", index=False)
    (out_dir / "comparison.md").write_text(
        f"Reference: `{reference}`; config `{cfg.name}`; {seeds} seed(s) from {cfg.seed}.\n\n" + to_markdown(table))
    plot_runs({name: runs[0] for name, runs in frames.items()}, out_dir, title=f"{cfg.name}: strategies compared")
    return table
