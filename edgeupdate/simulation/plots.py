"""Plots of a run (or several runs side by side), drawn from the metrics files alone.

* :func:`plot_runs` — accuracy vs round and vs cumulative bytes received per device (a run's own
  plots, and the first two of a comparison);
* :func:`plot_accuracy_vs_total_bytes`, :func:`plot_accuracy_vs_sim_time` — a comparison's view
  across families: accuracy against everything the fleet transferred (down + up) and against the
  simulated clock (when the metrics have one).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402
from matplotlib.ticker import EngFormatter, LogLocator, NullFormatter  # noqa: E402

PLOT_FILES = ("accuracy_vs_round.png", "accuracy_vs_bytes.png")
TOTAL_BYTES_PLOT = "accuracy_vs_total_bytes.png"
SIM_TIME_PLOT = "accuracy_vs_sim_time.png"


#: Per-line marker and dash pattern, so runs whose curves coincide (e.g. FedProx with a small μ
#: and FedAvg) stay distinguishable.
_STYLES = [("o", "-"), ("s", "--"), ("^", "-."), ("D", ":"), ("v", "-"), ("P", "--"), ("X", "-."), ("*", ":")]


def line_style(i: int) -> dict[str, str]:
    """Matplotlib keyword arguments for the ``i``-th line of a figure."""
    marker, dash = _STYLES[i % len(_STYLES)]
    return {"marker": marker, "linestyle": dash}


def round_sim_times(df: pd.DataFrame) -> pd.Series | None:
    """Simulated duration of each round (index: round), or None when the metrics have no clock.

    ``round_sim_time_s`` (one value per round, repeated on its rows) is used when present;
    otherwise the slowest device's ``sim_time_s`` (the round lasts until its last device is done).
    """
    g = df.groupby("round")
    if "round_sim_time_s" in df.columns and df["round_sim_time_s"].notna().any():
        return g["round_sim_time_s"].max().fillna(0.0).astype(float)
    if "sim_time_s" in df.columns and df["sim_time_s"].notna().any():
        return g["sim_time_s"].max().fillna(0.0).astype(float)
    return None


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
    out["cum_bytes_total"] = (g["bytes_down"].sum() + g["bytes_up"].sum()).cumsum()  # whole fleet, down + up
    sim = round_sim_times(df)
    if sim is not None:
        out["round_sim_time_s"] = sim
        out["cum_sim_time_s"] = sim.cumsum()
    return out.reset_index()


def plot_runs(frames: Mapping[str, pd.DataFrame], out_dir: Path, title: str = "") -> list[Path]:
    """Draw accuracy vs round and vs cumulative downlink bytes, one line per run."""
    out_dir.mkdir(parents=True, exist_ok=True)
    fig1, ax1 = plt.subplots(figsize=(6.4, 4.2))
    fig2, ax2 = plt.subplots(figsize=(6.4, 4.2))
    for i, (label, df) in enumerate(frames.items()):
        pr = per_round(df)
        line, = ax1.plot(pr["round"], pr["mean_accuracy"], label=label, **line_style(i))
        ax1.fill_between(pr["round"], pr["min_accuracy"], pr["max_accuracy"], alpha=0.15, color=line.get_color())
        ax2.plot(pr["cum_bytes_down_per_device"], pr["mean_accuracy"], label=label, **line_style(i))
    ax1.set(xlabel="round", ylabel="test accuracy (mean over devices; band = min–max)",
            title=title or "accuracy vs round")
    ax2.set(xlabel="cumulative bytes received per device", ylabel="test accuracy (mean over devices)",
            title=title or "accuracy vs bytes")
    if all((per_round(df)["cum_bytes_down_per_device"] > 0).all() for df in frames.values()):
        log_bytes_axis(ax2)
    return [_save(fig1, ax1, out_dir / PLOT_FILES[0]), _save(fig2, ax2, out_dir / PLOT_FILES[1])]


def log_bytes_axis(ax) -> None:
    """An x axis of bytes labelled in SI units (``1.2 MB``): logarithmic with ticks at 1, 2 and 5 ×
    10ᵏ and no minor labels (they ran together), or linear when the data span less than a decade."""
    lo, hi = ax.dataLim.intervalx
    if hi < 10 * lo:
        ax.xaxis.set_major_formatter(EngFormatter(unit="B", places=2))
        return
    ax.set_xscale("log")
    ax.xaxis.set_major_locator(LogLocator(base=10, subs=(1.0, 2.0, 5.0)))
    ax.xaxis.set_major_formatter(EngFormatter(unit="B", places=1))
    ax.xaxis.set_minor_formatter(NullFormatter())


def _save(fig, ax, path: Path) -> Path:
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def plot_accuracy_vs_total_bytes(frames: Mapping[str, pd.DataFrame], out_dir: Path, title: str = "") -> Path:
    """Mean accuracy after each round against the fleet's cumulative bytes down + up (log x)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    for i, (label, df) in enumerate(frames.items()):
        pr = per_round(df)
        ax.plot(pr["cum_bytes_total"], pr["mean_accuracy"], label=label, **line_style(i))
    ax.set(xlabel="cumulative bytes transferred by the fleet (down + up)",
           ylabel="test accuracy (mean over devices)", title=title or "accuracy vs total bytes")
    if all((per_round(df)["cum_bytes_total"] > 0).all() for df in frames.values()):
        log_bytes_axis(ax)
    return _save(fig, ax, out_dir / TOTAL_BYTES_PLOT)


def plot_accuracy_vs_sim_time(frames: Mapping[str, pd.DataFrame], out_dir: Path, title: str = "") -> Path | None:
    """Mean accuracy after each round against the simulated clock at the round's end.

    Runs without a simulated clock (see :func:`round_sim_times`) are left out; None (and no file)
    when no run has one.
    """
    if all(round_sim_times(df) is None for df in frames.values()):
        return None
    out_dir.mkdir(parents=True, exist_ok=True)
    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    for i, (label, df) in enumerate(frames.items()):  # i over all runs: each keeps its style across plots
        pr = per_round(df)
        if "cum_sim_time_s" not in pr.columns:
            continue
        ax.plot(pr["cum_sim_time_s"], pr["mean_accuracy"], label=label, **line_style(i))
    ax.set(xlabel="simulated time at the end of the round (s)", ylabel="test accuracy (mean over devices)",
           title=title or "accuracy vs simulated time")
    return _save(fig, ax, out_dir / SIM_TIME_PLOT)


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


SWEEP_COLORS = {"ka": "C0", "ml": "C1", "lra": "C2", "rm": "C3", "lru": "C4", "fp": "C5", "lru-out": "C6",
                "bn-only": "C7"}  # same colour in every sweep


def plot_sweep(table: pd.DataFrame, path: Path, title: str = "") -> Path:
    """Accuracy vs update size, one line per strategy (Chen et al. 2022, Fig. 4): against the paper's
    "Update %" (parameters sent / model parameters) and against the bytes each device received.

    The y-axis shows the band around the initial accuracy where the methods differ; a point far
    below it (a collapsed low-rank method) sits on the bottom edge as a "v" labelled with its value.
    """
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 4.4), sharey=True)
    initial = 100 * table["initial_accuracy"].median()
    top = 100 * table["accuracy"].max()
    floor = initial - max(2.0, top - initial)
    for name, rows in table.groupby("strategy", sort=False):
        err = 100 * rows["accuracy_std"] if "accuracy_std" in rows else None
        for ax, x in ((ax1, "update_pct"), (ax2, "bytes_down")):
            pts = rows.dropna(subset=[x]).sort_values(x)
            if not len(pts):
                continue
            y = 100 * pts["accuracy"]
            line = ax.errorbar(pts[x], y.clip(lower=floor), yerr=None if err is None else err[pts.index],
                               marker="o", capsize=3, label=str(name).upper(), color=SWEEP_COLORS.get(str(name)))
            for xv, yv in zip(pts[x][y < floor], y[y < floor]):
                ax.plot([xv], [floor], marker="v", markersize=9, color=line[0].get_color())
                ax.annotate(f"{yv:.0f}%", (xv, floor), textcoords="offset points", xytext=(4, 6), fontsize=7,
                            color=line[0].get_color())
    for ax in (ax1, ax2):
        ax.axhline(initial, color="grey", linestyle="--", label="before the update")
        ax.set_xscale("log")
        ax.grid(True, which="both", alpha=0.3)
        ax.xaxis.set_minor_formatter(NullFormatter())  # 2×10³, 3×10³, ... collide on a short decade
    ax1.set_ylim(floor - 0.05 * (top - floor), top + 0.1 * (top - floor))
    ax1.set(xlabel="update size (% of the model's parameters)", ylabel="test accuracy (%)")
    ax2.set(xlabel="update size (bytes received per device)")
    ax1.legend(fontsize=8)
    fig.suptitle(title or "accuracy vs update size")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path
