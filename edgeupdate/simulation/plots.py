"""Plots of a run (or several runs side by side), drawn from the metrics files alone."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402

PLOT_FILES = ("accuracy_vs_round.png", "accuracy_vs_bytes.png")


def per_round(df: pd.DataFrame) -> pd.DataFrame:
    """Fleet view per round: mean/min/max accuracy, bytes per device, cumulative bytes per device."""
    g = df.groupby("round")
    out = pd.DataFrame({
        "mean_accuracy": g["accuracy"].mean(),
        "min_accuracy": g["accuracy"].min(),
        "max_accuracy": g["accuracy"].max(),
        "bytes_down_per_device": g["bytes_down"].mean(),
        "bytes_up_per_device": g["bytes_up"].mean(),
    })
    out["cum_bytes_down_per_device"] = out["bytes_down_per_device"].cumsum()
    out["cum_bytes_total_per_device"] = (out["bytes_down_per_device"] + out["bytes_up_per_device"]).cumsum()
    return out.reset_index()


def plot_runs(frames: Mapping[str, pd.DataFrame], out_dir: Path, title: str = "") -> list[Path]:
    """Draw accuracy vs round and vs cumulative downlink bytes, one line per run."""
    out_dir.mkdir(parents=True, exist_ok=True)
    fig1, ax1 = plt.subplots(figsize=(6.4, 4.2))
    fig2, ax2 = plt.subplots(figsize=(6.4, 4.2))
    for label, df in frames.items():
        pr = per_round(df)
        line, = ax1.plot(pr["round"], pr["mean_accuracy"], marker="o", label=label)
        ax1.fill_between(pr["round"], pr["min_accuracy"], pr["max_accuracy"], alpha=0.15, color=line.get_color())
        ax2.plot(pr["cum_bytes_down_per_device"], pr["mean_accuracy"], marker="o", label=label)
    ax1.set(xlabel="round", ylabel="test accuracy (mean over devices; band = min–max)",
            title=title or "accuracy vs round")
    ax2.set(xlabel="cumulative bytes received per device", ylabel="test accuracy (mean over devices)",
            title=title or "accuracy vs bytes")
    if all((per_round(df)["cum_bytes_down_per_device"] > 0).all() for df in frames.values()):
        ax2.set_xscale("log")
    paths = []
    for fig, ax, name in ((fig1, ax1, PLOT_FILES[0]), (fig2, ax2, PLOT_FILES[1])):
        ax.grid(alpha=0.3)
        ax.legend()
        fig.tight_layout()
        fig.savefig(out_dir / name, dpi=120)
        plt.close(fig)
        paths.append(out_dir / name)
    return paths


def plot_run(run_dir: Path, df: pd.DataFrame | None = None) -> list[Path]:
    """(Re)draw a run's plots from its metrics files."""
    from edgeupdate.simulation.metrics import read_metrics

    from edgeupdate.simulation.fleet_plots import FLEET_PLOT, has_fleet_columns, plot_fleet

    df = read_metrics(run_dir) if df is None else df
    label = str(df["strategy"].iloc[0]) if len(df) else run_dir.name
    paths = plot_runs({label: df}, run_dir, title=run_dir.name)
    if len(df) and has_fleet_columns(df):
        paths.append(plot_fleet({label: df}, run_dir / FLEET_PLOT, title=run_dir.name))
    return paths
