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

    df = read_metrics(run_dir) if df is None else df
    label = str(df["strategy"].iloc[0]) if len(df) else run_dir.name
    return plot_runs({label: df}, run_dir, title=run_dir.name)


def plot_sweep(table: pd.DataFrame, path: Path, title: str = "") -> Path:
    """Accuracy vs update size, one line per strategy (Chen et al. 2022, Fig. 4): against the paper's
    "Update %" (parameters sent / model parameters) and against the bytes each device received."""
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 4.4), sharey=True)
    for name, rows in table.groupby("strategy", sort=False):
        err = 100 * rows["accuracy_std"] if "accuracy_std" in rows else None
        for ax, x in ((ax1, "update_pct"), (ax2, "bytes_down")):
            pts = rows.dropna(subset=[x]).sort_values(x)
            if len(pts):
                ax.errorbar(pts[x], 100 * pts["accuracy"], yerr=None if err is None else err[pts.index],
                            marker="o", capsize=3, label=str(name).upper())
    initial = 100 * table["initial_accuracy"].median()
    for ax in (ax1, ax2):
        ax.axhline(initial, color="grey", linestyle="--", label="before the update")
        ax.set_xscale("log")
        ax.grid(True, which="both", alpha=0.3)
    ax1.set(xlabel="update size (% of the model's parameters)", ylabel="test accuracy (%)")
    ax2.set(xlabel="update size (bytes received per device)")
    ax1.legend(fontsize=8)
    fig.suptitle(title or "accuracy vs update size")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path
