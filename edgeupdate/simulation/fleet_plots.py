"""The fleet view of one or more runs (``fleet.png`` and a per-tier table), from the metrics alone.

Four panels, one line or bar group per run (strategy):

* fraction of the fleet holding the server's latest model, per round (per tier for a single run);
* fleet accuracy against the simulated clock (end of each round);
* what the push did to each device per round (applied, no_update, offline, deadline, no_memory,
  rejected), stacked;
* bytes received per device, by tier.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from edgeupdate.protocol import DeviceStatus  # noqa: E402

FLEET_PLOT = "fleet.png"
STATUS_COLORS = {DeviceStatus.APPLIED: "tab:green", DeviceStatus.NO_UPDATE: "tab:gray", DeviceStatus.OFFLINE: "tab:blue",
                 DeviceStatus.DEADLINE: "tab:orange", DeviceStatus.NO_MEMORY: "tab:purple",
                 DeviceStatus.REJECTED: "tab:red"}
_LINESTYLES = ("-", "--", ":", "-.")


def has_fleet_columns(df: pd.DataFrame) -> bool:
    """Whether ``df`` carries the fleet columns this plot needs."""
    return {"device_tier", "up_to_date", "round_sim_time_s", "status"} <= set(df.columns)


def round_end_s(df: pd.DataFrame) -> pd.Series:
    """Simulated time at the end of each round (cumulative round durations), indexed by round."""
    return df.groupby("round")["round_sim_time_s"].first().cumsum()


def _time_unit(seconds: float) -> tuple[float, str]:
    for scale, unit in ((86400.0, "days"), (3600.0, "hours"), (60.0, "minutes")):
        if seconds >= 2 * scale:
            return scale, unit
    return 1.0, "seconds"


def plot_fleet(frames: Mapping[str, pd.DataFrame], path: Path, title: str = "") -> Path:
    """Draw the four fleet panels for ``frames`` (label → metrics) into ``path``."""
    fig, axes = plt.subplots(2, 2, figsize=(12.5, 8.5))
    ax_up, ax_time, ax_status, ax_bytes = axes.ravel()
    tiers = sorted({t for df in frames.values() for t in df["device_tier"].unique()})
    tier_colors = {t: plt.get_cmap("tab10")(i % 10) for i, t in enumerate(tiers)}
    longest = max((round_end_s(df).iloc[-1] for df in frames.values() if len(df)), default=1.0)
    scale, unit = _time_unit(longest)
    width = 0.8 / max(len(frames), 1)
    for i, (label, df) in enumerate(frames.items()):
        style = _LINESTYLES[i % len(_LINESTYLES)]
        overall = df.groupby("round")["up_to_date"].mean()
        if len(frames) > 1:  # one line per run; per-tier lines would be unreadable
            ax_up.plot(overall.index, overall.values, linestyle=style, marker="o", label=label)
            continue_tiers = False
        else:
            ax_up.plot(overall.index, overall.values, color="black", marker="o", label="all devices")
            continue_tiers = True
        for tier, part in df.groupby("device_tier") if continue_tiers else ():
            share = part.groupby("round")["up_to_date"].mean()
            ax_up.plot(share.index, share.values, color=tier_colors[tier], alpha=0.8, label=tier)
        acc = df.groupby("round")["accuracy"].mean()
        ax_time.plot(round_end_s(df).reindex(acc.index) / scale, acc.values, linestyle=style, marker="o", label=label)
        counts = pd.crosstab(df["round"], df["status"])
        bottom = np.zeros(len(counts))
        x = counts.index.to_numpy() + (i - (len(frames) - 1) / 2) * width
        for status, color in STATUS_COLORS.items():
            if status in counts:
                ax_status.bar(x, counts[status], width, bottom=bottom, color=color, edgecolor="white",
                              label=status if i == 0 else None, hatch="//" if i % 2 else None)
                bottom += counts[status].to_numpy()
        per_tier = df.groupby("device_tier")["bytes_down"].sum() / df.groupby("device_tier")["device_id"].nunique()
        xs = np.arange(len(tiers)) + (i - (len(frames) - 1) / 2) * width
        ax_bytes.bar(xs, [per_tier.get(t, 0) for t in tiers], width, label=label, hatch="//" if i % 2 else None)
    ax_up.set(xlabel="round", ylabel="fraction of devices holding the latest model", ylim=(-0.03, 1.03),
              title="fleet up to date")
    ax_up.legend(fontsize=7, ncol=2)
    ax_time.set(xlabel=f"simulated time ({unit})", ylabel="test accuracy (mean over devices)",
                title="accuracy vs simulated time")
    ax_time.legend()
    ax_status.set(xlabel="round" + (" (bars: " + ", ".join(frames) + ")" if len(frames) > 1 else ""),
                  ylabel="devices", title="push outcome per round")
    ax_status.legend(fontsize=8)
    ax_bytes.set_xticks(np.arange(len(tiers)), tiers, rotation=20)
    ax_bytes.set(ylabel="bytes received per device (whole run)", title="bytes by tier")
    if any(ax_bytes.containers):
        ax_bytes.set_yscale("log")
    ax_bytes.legend()
    for ax in axes.ravel():
        ax.grid(alpha=0.3)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


OUTCOMES = (DeviceStatus.APPLIED, DeviceStatus.OFFLINE, DeviceStatus.DEADLINE, DeviceStatus.NO_MEMORY,
            DeviceStatus.REJECTED)


def tier_outcomes(frames: Mapping[str, pd.DataFrame]) -> pd.DataFrame:
    """One row per (run, tier): devices, push outcomes over the run, catch-ups and budgeted shares
    applied, final accuracy and bytes received per device."""
    rows = []
    for label, df in frames.items():
        last = df["round"].max()
        for tier, part in df.groupby("device_tier"):
            applied = part[part["status"] == DeviceStatus.APPLIED]
            rows.append({
                "strategy": label, "tier": tier, "devices": part["device_id"].nunique(),
                **{str(status): int((part["status"] == status).sum()) for status in OUTCOMES},
                "catch_up_applied": int(applied["catch_up"].sum()),
                "budget_applied": int((applied["package_kind"] == "budget").sum()),
                "final_accuracy": float(part[part["round"] == last]["accuracy"].mean()),
                "bytes_down_per_device": float(part["bytes_down"].sum() / part["device_id"].nunique()),
            })
    return pd.DataFrame(rows)
