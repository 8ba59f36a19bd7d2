"""The metrics collector: one row per (round, device), written as Parquet and CSV.

Columns (units in the names):

=================  ===========================================================================
round              1-based round
device_id          the device (Flower partition id)
strategy           strategy name
accuracy, loss     the deployed model on the device's local test split, after this round
bytes_down         ``len()`` of every package put into this device's messages this round
bytes_up           ``len()`` of what the device uploaded (samples or an update package)
model_version      the version the device holds after the round
num_examples       size of the device's local test split
status             applied | no_update | rejected | ... (see ``edgeupdate.protocol``)
base_version       the version the device held when the package was built
package_kind       release | catch-up | none
pushed             whether the server released a new version this round
apply_s            wall seconds the device spent verifying + applying (timing; not deterministic)
server_time_s      wall seconds the server spent producing the round's model (timing)
=================  ===========================================================================

Strategies may add columns (e.g. ``server_samples``); sums and means are derived, never stored.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pandas as pd
from flwr.app import MetricRecord

TIMING_COLUMNS = ("apply_s", "server_time_s")
REQUIRED_COLUMNS = ("round", "device_id", "strategy", "accuracy", "loss", "bytes_down", "bytes_up",
                    "model_version", "num_examples")

RoundCallback = Callable[[int, dict[str, float]], None]


class MetricsCollector:
    """Collects per-(round, device) rows and reports a per-round summary."""

    def __init__(self, on_round: RoundCallback | None = None) -> None:
        self.rows: list[dict[str, Any]] = []
        self.on_round = on_round

    def add_row(self, **row: Any) -> None:
        missing = [c for c in REQUIRED_COLUMNS if c not in row]
        if missing:
            raise ValueError(f"metrics row lacks {', '.join(missing)}")
        self.rows.append(row)

    def round_summary(self, round_: int) -> MetricRecord:
        rows = [r for r in self.rows if r["round"] == round_]
        accs = [r["accuracy"] for r in rows if not math.isnan(r["accuracy"])]
        summary = {
            "round": float(round_),
            "mean_accuracy": sum(accs) / len(accs) if accs else float("nan"),
            "min_accuracy": min(accs) if accs else float("nan"),
            "bytes_down": float(sum(r["bytes_down"] for r in rows)),
            "bytes_up": float(sum(r["bytes_up"] for r in rows)),
            "devices": float(len(rows)),
            "applied": float(sum(r.get("status") == "applied" for r in rows)),
            "server_time_s": float(rows[0].get("server_time_s", 0.0)) if rows else 0.0,
        }
        if self.on_round is not None:
            self.on_round(round_, summary)
        return MetricRecord(summary)

    def frame(self) -> pd.DataFrame:
        df = pd.DataFrame(self.rows)
        if not df.empty:
            df = df.sort_values(["round", "device_id"], kind="stable").reset_index(drop=True)
        return df

    def write(self, out_dir: Path) -> pd.DataFrame:
        """Write ``metrics.parquet`` and ``metrics.csv`` into ``out_dir``; return the frame."""
        df = self.frame()
        out_dir.mkdir(parents=True, exist_ok=True)
        df.to_parquet(out_dir / "metrics.parquet", index=False)
        df.to_csv(out_dir / "metrics.csv", index=False)
        return df


def read_metrics(run_dir: Path) -> pd.DataFrame:
    """Read a run's metrics (Parquet if present, else CSV)."""
    pq, csv = run_dir / "metrics.parquet", run_dir / "metrics.csv"
    if pq.exists():
        return pd.read_parquet(pq)
    if csv.exists():
        return pd.read_csv(csv)
    raise FileNotFoundError(f"{run_dir} holds no metrics.parquet or metrics.csv")
