"""The metrics collector: one row per (round, device), written as Parquet and CSV.

Columns (units in the names; ``_s`` columns without ``host`` are simulated seconds):

=================  ===========================================================================
round              1-based round
device_id          the device (Flower partition id); device_tier its fleet tier
strategy           strategy name
accuracy, loss     the deployed model on the device's local test split, after this round
bytes_down         ``len()`` of every payload put into this device's messages this round (a
                   transfer cut at the deadline counts the bytes that arrived)
bytes_up           ``len()`` of what the device uploaded (samples or an update package)
model_version      the version the device holds after the round; model_hash its state hash
num_examples       size of the device's local test split
status             the push: applied | no_update | offline | no_memory | deadline | rejected |
                   lost (``reason`` says why, in the device's words; lost: no answer, and
                   model_version is the last one the server knew; accuracy and loss are NaN)
train_status       the device phase: none | uploaded | trained | offline | no_memory | deadline | lost
base_version       the version the device held when its package was built
package_kind       release | catch-up | full | budget | none; catch_up: catch-up or full
attack             none | replay | forge: an attacker replaced this push's package (fault
                   injection, ``fleet.faults.replay_prob``/``forge_prob``); the device must
                   report ``rejected`` and keep its model
pushed             whether the server released a new version this round
up_to_date         whether the device holds the server's latest state after the round
sim_time_s         seconds the device was busy this round (device phase + push)
transfer_s         push download; apply_s apply/reconstitution on the device; upload_s the
                   device phase's upload; train_s its on-device compute (all simulated)
deadline_s         the per-phase deadline (inf: none)
energy_j           energy of the device's work when its profile gives coefficients (else NaN)
round_start_s      when the round began on the simulated clock; round_sim_time_s how long it
                   lasted (slowest device, cut at the deadline; at least the round interval)
server_sim_s       the server's retraining, charged at ``fleet.server_flop_per_s``
apply_host_s       wall seconds the device process spent applying (timing; not deterministic)
server_time_s      wall seconds the server spent producing the round's model (timing)
=================  ===========================================================================

Strategies may add columns (e.g. ``server_samples``; the DPU family's ``analytic_release_bytes``,
the thesis's S_w·k·I + S_x(k)·I estimate of the release package plus its dense tensors, next to
the measured ``bytes_down``; every server-retrain strategy's ``server_val_accuracy_frac`` and
``server_test_accuracy_frac``, the round's retrained model — its best-validation epoch — on the
validation split and the test pool, as fractions); sums and means are derived, never stored.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pandas as pd
from flwr.app import MetricRecord

from edgeupdate.protocol import DeviceStatus

TIMING_COLUMNS = ("apply_host_s", "server_time_s")
REQUIRED_COLUMNS = ("round", "device_id", "strategy", "accuracy", "loss", "bytes_down", "bytes_up",
                    "model_version", "num_examples")

RoundCallback = Callable[[int, dict[str, float]], None]


class MetricsCollector:
    """Collects per-(round, device) rows and reports a per-round summary.

    The rows of the round in progress are dicts; when the round's summary is taken they become one
    columnar frame (``chunks``), a tenth of the memory, so 10,000 devices × 100 rounds fit."""

    def __init__(self, on_round: RoundCallback | None = None) -> None:
        self.open_rows: list[dict[str, Any]] = []  # the round in progress
        self.chunks: list[pd.DataFrame] = []  # one frame per finished round
        self.on_round = on_round

    def add_row(self, **row: Any) -> None:
        missing = [c for c in REQUIRED_COLUMNS if c not in row]
        if missing:
            raise ValueError(f"metrics row lacks {', '.join(missing)}")
        self.open_rows.append(row)

    def round_summary(self, round_: int) -> MetricRecord:
        """The summary of ``round_`` (its rows, added since the last summary); seals them into a chunk."""
        rows = [r for r in self.open_rows if r["round"] == round_]
        accs = [r["accuracy"] for r in rows if not math.isnan(r["accuracy"])]
        summary = {
            "round": float(round_),
            "mean_accuracy": sum(accs) / len(accs) if accs else float("nan"),
            "min_accuracy": min(accs) if accs else float("nan"),
            "bytes_down": float(sum(r["bytes_down"] for r in rows)),
            "bytes_up": float(sum(r["bytes_up"] for r in rows)),
            "devices": float(len(rows)),
            "applied": float(sum(r.get("status") == DeviceStatus.APPLIED for r in rows)),
            "server_time_s": float(rows[0].get("server_time_s", 0.0)) if rows else 0.0,
            "round_sim_time_s": float(rows[0].get("round_sim_time_s", 0.0)) if rows else 0.0,
        }
        if self.open_rows:
            self.chunks.append(pd.DataFrame(self.open_rows))
            self.open_rows = []
        if self.on_round is not None:
            self.on_round(round_, summary)
        return MetricRecord(summary)

    def frame(self) -> pd.DataFrame:
        parts = [c for c in (*self.chunks, pd.DataFrame(self.open_rows)) if not c.empty]
        if not parts:
            return pd.DataFrame()
        df = pd.concat(parts, ignore_index=True) if len(parts) > 1 else parts[0]
        return df.sort_values(["round", "device_id"], kind="stable").reset_index(drop=True)

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
