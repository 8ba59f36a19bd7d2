"""The comparison report: the table, the setup and the plots on one page.

:func:`write_report` writes, into a comparison's output directory,

* ``report.md`` — markdown that shows the PNG files next to it (GitHub renders it as is);
* ``report.html`` — one self-contained file: the same content with the plots embedded as base64 PNGs,
  to mail or archive without the directory.

The plots are accuracy vs round, vs bytes received per device, vs the fleet's total bytes
(down + up) and vs simulated time; the last is skipped, with a note saying why, when the metrics
have no simulated clock (no ``round_sim_time_s`` or ``sim_time_s`` column).
"""

from __future__ import annotations

import base64
import html
import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from edgeupdate.configs import ExperimentConfig
from edgeupdate.simulation.fleet_plots import FLEET_PLOT, has_fleet_columns, plot_fleet, tier_outcomes
from edgeupdate.simulation.plots import plot_accuracy_vs_sim_time, plot_accuracy_vs_total_bytes, plot_runs
from edgeupdate.simulation.tables import format_value, to_markdown

#: One compared strategy as the report shows it: (label, base strategy, parameters as text).
StrategyRow = tuple[str, str, str]

REPORT_FILES = ("report.md", "report.html")
TIERS_CSV = "fleet_by_tier.csv"
TIERS_NOTE = ("Push outcomes summed over rounds and devices of each tier; `catch_up_applied` / `budget_applied` "
              "count applied catch-up (or full) packages and budgeted shares; accuracy after the last round.")
NO_CLOCK_NOTE = ("No simulated clock in these runs' metrics (no `round_sim_time_s` or `sim_time_s` column), "
                 "so accuracy vs simulated time is not plotted.")

#: What each table column means (shown under the table).
COLUMN_NOTES = {
    "final_accuracy": "mean test accuracy over devices after the last round",
    "mean_accuracy": "the same, averaged over all rounds",
    "mean_accuracy_diff_vs_ref_pp": "mean over rounds of (accuracy − reference accuracy), percentage points",
    "mean_best_accuracy_diff_vs_ref_pp": "the thesis's metric (§5.5): per round, the test accuracy of the "
                                         "server's best-validation epoch, running maximum over rounds, averaged "
                                         "over rounds, minus the reference's, percentage points",
    "total_bytes_down": "bytes of every package sent to every device, all rounds",
    "bytes_ratio_vs_ref": "total_bytes_down / the reference's total_bytes_down",
    "total_bytes_up": "bytes every device uploaded (new samples for server retraining, encoded updates for FL)",
    "server_time_s": "wall seconds the server spent producing models (retraining or aggregating)",
    "sim_time_s": "simulated duration of the run: the sum over rounds of each round's simulated time",
}


@dataclass(frozen=True)
class Figure:
    """One plot of the report (``path`` None: not drawn, ``note`` says why)."""

    title: str
    path: Path | None
    note: str = ""


def comparison_figures(frames: Mapping[str, pd.DataFrame], out_dir: Path, title: str) -> list[Figure]:
    """Draw the comparison's plots into ``out_dir`` (one line per label)."""
    by_round, by_bytes = plot_runs(frames, out_dir, title=title)
    total = plot_accuracy_vs_total_bytes(frames, out_dir, title=title)
    sim = plot_accuracy_vs_sim_time(frames, out_dir, title=title)
    figures = [
        Figure("Accuracy vs round", by_round),
        Figure("Accuracy vs total bytes (down + up, whole fleet)", total),
        Figure("Accuracy vs simulated time", sim, "" if sim is not None else NO_CLOCK_NOTE),
        Figure("Accuracy vs bytes received per device", by_bytes),
    ]
    if frames and all(has_fleet_columns(df) for df in frames.values()):
        fleet = plot_fleet(frames, out_dir / FLEET_PLOT, title=title)
        figures.append(Figure("The fleet: up to date, accuracy over simulated time, push outcomes, bytes by tier",
                              fleet))
    return figures


def inline_toml(value: Any) -> str:
    """A value as inline TOML, e.g. ``{kind = "topk", fraction = 0.01}``."""
    if isinstance(value, Mapping):
        return "{" + ", ".join(f"{k} = {inline_toml(v)}" for k, v in value.items()) + "}"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(inline_toml(v) for v in value) + "]"
    if isinstance(value, str):
        return json.dumps(value)
    return str(value)


def setup_lines(cfg: ExperimentConfig, reference: str, seeds: int) -> list[str]:
    """The experiment's setup, one fact per line (markdown)."""
    hidden = f" {cfg.model.hidden}" if cfg.model.name == "mlp" else ""
    t, c = cfg.training, cfg.client
    return [
        f"config `{cfg.name}`: {cfg.num_devices} devices, {cfg.rounds} rounds, {seeds} seed(s) from {cfg.seed}",
        f"data: {cfg.dataset.name}, {cfg.partition.method} partition; {cfg.stream.initial_samples} samples before "
        f"deployment, {cfg.stream.samples_per_round} new per round (source: {cfg.stream.source})",
        f"model: {cfg.model.name}{hidden}; packages in {cfg.package.precision}",
        f"server retraining: {t.epochs} epochs{f' (at least {t.min_steps} steps)' if t.min_steps else ''}, "
        f"batch {t.batch_size}, {t.optimizer} lr {t.lr}",
        f"on-device training (FL): {c.epochs} epochs, batch {c.batch_size}, {c.optimizer} lr {c.lr}, "
        f"fraction_train {c.fraction_train:g}",
        f"fleet: {_fleet_line(cfg)}",
        f"reference row: `{reference}`",
    ]


def _fleet_line(cfg: ExperimentConfig) -> str:
    f = cfg.fleet
    total = sum(f.tiers.values()) or 1.0
    devices = (f"devices from `{f.csv}`" if f.csv else
               ", ".join(f"{100 * share / total:.0f} % {tier}" for tier, share in f.tiers.items()))
    deadline = "no deadline" if math.isinf(f.deadline_s) else f"deadline {f.deadline_s:g} s per phase"
    faults = f.faults
    return (f"{devices}; {deadline}; dropout {faults.dropout_prob:g}, corruption "
            f"{faults.corruption_prob:g}, crash {faults.crash_prob:g}; budgets {'on' if f.budgets else 'off'}")


def strategy_row(label: str, strategy: str, params: Mapping[str, Any], overrides: Sequence[str] = ()) -> StrategyRow:
    """How the report lists one compared strategy."""
    shown = [f"{k} = {inline_toml(v)}" for k, v in params.items()] + [f"--set {o}" for o in overrides]
    return label, strategy, ", ".join(shown) or "defaults"


def render_markdown(cfg: ExperimentConfig, table: pd.DataFrame, entries: Sequence[StrategyRow], figures: Sequence[Figure],
                    *, reference: str, seeds: int, command: str | None, tiers: pd.DataFrame | None = None) -> str:
    """``report.md``: the plots are the PNG files next to it."""
    out = [f"# {cfg.name}: strategies compared", ""]
    if command:
        out += ["```bash", command, "```", ""]
    out += [f"- {line}" for line in setup_lines(cfg, reference, seeds)] + [""]
    out += ["## Results", "", to_markdown(table).rstrip("\n"), ""]
    out += [f"- `{c}`: {COLUMN_NOTES[c]}" for c in table.columns if c in COLUMN_NOTES] + [""]
    out += ["## Strategies", "", "| label | strategy | parameters |", "|---|---|---|"]
    out += [f"| {label} | {base} | `{params}` |" if params != "defaults" else f"| {label} | {base} | defaults |"
            for label, base, params in entries] + [""]
    if tiers is not None:
        out += ["## The fleet by tier", "", to_markdown(tiers).rstrip("\n"), "", TIERS_NOTE, ""]
    out += ["## Plots", ""]
    for fig in figures:
        out += [f"### {fig.title}", ""]
        out += [f"![{fig.title}]({fig.path.name})" if fig.path is not None else f"*{fig.note}*", ""]
    return "\n".join(out)


def _png_data_uri(path: Path) -> str:
    return "data:image/png;base64," + base64.b64encode(path.read_bytes()).decode("ascii")


def render_html(cfg: ExperimentConfig, table: pd.DataFrame, entries: Sequence[StrategyRow], figures: Sequence[Figure],
                *, reference: str, seeds: int, command: str | None, tiers: pd.DataFrame | None = None) -> str:
    """``report.html``: self-contained, the plots embedded as base64 PNGs."""
    e = html.escape

    def html_table(df: pd.DataFrame) -> str:
        head = "".join(f"<th>{e(c)}</th>" for c in df.columns)
        rows = "".join("<tr>" + "".join(f"<td>{e(format_value(v, c))}</td>" for v, c in zip(row, df.columns))
                       + "</tr>" for row in df.itertuples(index=False))
        return f"<div class=\"wide\"><table><tr>{head}</tr>{rows}</table></div>"

    fleet = (f"<h2>The fleet by tier</h2>{html_table(tiers)}<p>{e(TIERS_NOTE.replace('`', ''))}</p>"
             if tiers is not None else "")
    notes = "".join(f"<li><code>{e(c)}</code>: {e(COLUMN_NOTES[c])}</li>" for c in table.columns if c in COLUMN_NOTES)
    setup = "".join(f"<li>{e(line).replace('`', '')}</li>" for line in setup_lines(cfg, reference, seeds))
    strategies = "".join(f"<tr><td>{e(label)}</td><td>{e(base)}</td><td><code>{e(params)}</code></td></tr>"
                         for label, base, params in entries)
    plots = "".join(
        f"<h3>{e(fig.title)}</h3>" + (f'<img alt="{e(fig.title)}" src="{_png_data_uri(fig.path)}">'
                                      if fig.path is not None else f"<p><em>{e(fig.note)}</em></p>")
        for fig in figures)
    cmd = f"<pre>{e(command)}</pre>" if command else ""
    style = ("body{font-family:sans-serif;max-width:1100px;margin:2em auto;padding:0 1em}"
             "table{border-collapse:collapse}td,th{border:1px solid #ccc;padding:3px 8px}"
             "td{text-align:right}td:first-child{text-align:left}img{max-width:100%}"
             "pre{background:#f4f4f4;padding:.6em;white-space:pre-wrap}"
             ".wide{overflow-x:auto;max-width:100%}")  # wide tables scroll in their own box
    return (f"<!DOCTYPE html><html><head><meta charset=\"utf-8\"><title>{e(cfg.name)}: strategies compared</title>"
            f"<style>{style}</style></head><body><h1>{e(cfg.name)}: strategies compared</h1>{cmd}<ul>{setup}</ul>"
            f"<h2>Results</h2>{html_table(table)}<ul>{notes}</ul>"
            f"<h2>Strategies</h2><div class=\"wide\"><table><tr><th>label</th><th>strategy</th><th>parameters</th></tr>"
            f"{strategies}</table></div>"
            f"{fleet}<h2>Plots</h2>{plots}</body></html>\n")


def write_report(out_dir: Path, cfg: ExperimentConfig, table: pd.DataFrame, frames: Mapping[str, pd.DataFrame],
                 entries: Sequence[StrategyRow], *, reference: str, seeds: int = 1,
                 command: str | None = None) -> list[Path]:
    """Draw the plots and write ``report.md`` and ``report.html`` into ``out_dir``; return their paths."""
    figures = comparison_figures(frames, out_dir, title=f"{cfg.name}: strategies compared")
    tiers = None
    if frames and all(has_fleet_columns(df) for df in frames.values()):
        tiers = tier_outcomes(frames)
        tiers.to_csv(out_dir / TIERS_CSV, index=False)
    kwargs = dict(reference=reference, seeds=seeds, command=command, tiers=tiers)
    md = out_dir / REPORT_FILES[0]
    md.write_text(render_markdown(cfg, table, entries, figures, **kwargs))
    page = out_dir / REPORT_FILES[1]
    page.write_text(render_html(cfg, table, entries, figures, **kwargs))
    return [md, page]
