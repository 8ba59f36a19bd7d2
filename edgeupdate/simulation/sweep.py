"""Accuracy vs update size (Chen et al. 2022, Fig. 4): strategies × parameter grids.

Every grid point is one strategy with one parameter setting, run as a real simulation through
:func:`edgeupdate.simulation.compare.run_all` (the machinery ``compare`` uses): the devices receive
real encoded packages, reconstitute from their own weights and verify the result hash. The sweep
measures the *last* round's update against the round before it — with the KA family's
``deploy = true`` and ``rounds = 2``, round 1 deploys θ¹ (trained on D¹, identical for every
point) and round 2 is the single update on D² that Fig. 4 plots.

Per point it records the update size both in the paper's unit (``update_params`` and
``update_pct`` = parameters sent / model parameters, when the strategy reports them) and as the
bytes each device received, the accuracy before and after the update and its lift, and how many
devices applied the package (a device whose reconstitution does not hash to the server's result
rejects it; the sweep says so and records the device's reason).

Grid syntax (``--param-grid``, repeatable): ``STRATEGY.PARAM=V1,V2,...``, values as TOML scalars
(``ka.n=0,1,2``, ``rm.proportion=0.005,0.01``, ``full.init=warm``); two grids of one strategy
combine as a product. Strategies without a grid run once with their configured parameters.
"""

from __future__ import annotations

import itertools
import math
import tomllib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from edgeupdate.configs import ConfigError, ExperimentConfig
from edgeupdate.protocol import DeviceStatus
from edgeupdate.simulation.compare import LabelledRun, Runner, prepare, run_all, simulation_runner
from edgeupdate.simulation.tables import to_markdown

GRID_SYNTAX = "STRATEGY.PARAM=V1,V2,... (e.g. ka.n=1,2,4)"
COLUMNS = ["strategy", "params", "update_params", "update_pct", "bytes_down", "bytes_pct", "initial_accuracy",
           "accuracy", "lift", "applied_devices", "devices", "server_time_s", "wall_time_s", "reject_reason"]


class GridError(ValueError):
    """A ``--param-grid`` (or the strategy list) cannot be swept; ``str()`` is one line."""


@dataclass(frozen=True)
class GridAxis:
    """One ``--param-grid``: the values one parameter of one strategy takes."""

    strategy: str
    param: str
    values: tuple[Any, ...]

    @property
    def spec(self) -> str:
        return f"{self.strategy}.{self.param}={','.join(_show(v) for v in self.values)}"


@dataclass(frozen=True)
class SweepPoint:
    """One run of the sweep: a strategy, its grid values, and the prepared run (config and checked
    parameters)."""

    strategy: str
    overrides: dict[str, Any]
    run: LabelledRun

    @property
    def config(self) -> ExperimentConfig:
        return self.run.config

    @property
    def params(self) -> str:
        return ",".join(f"{k}={_show(v)}" for k, v in self.overrides.items())

    @property
    def label(self) -> str:
        return "-".join([self.strategy, *(f"{k}={_show(v)}" for k, v in self.overrides.items())])


def _show(value: Any) -> str:
    return str(value).lower() if isinstance(value, bool) else str(value)


def _value(text: str) -> Any:
    try:
        return tomllib.loads(f"v = {text}")["v"]
    except tomllib.TOMLDecodeError:
        return text  # like --set: anything that is not TOML is a string


def parse_grid(specs: Sequence[str]) -> list[GridAxis]:
    """Parse ``--param-grid`` strings (syntax only; :func:`sweep_points` checks names and values)."""
    axes: list[GridAxis] = []
    seen: set[tuple[str, str]] = set()
    for spec in specs:
        key, eq, values = spec.partition("=")
        strategy, dot, param = key.strip().rpartition(".")
        if not eq or not dot or not strategy or not param:
            raise GridError(f"--param-grid {spec!r}: expected {GRID_SYNTAX}")
        items = [v.strip() for v in values.split(",")]
        if not any(items):
            raise GridError(f"--param-grid {spec!r}: no values after '='")
        if not all(items):
            raise GridError(f"--param-grid {spec!r}: empty value in the list")
        parsed = tuple(_value(v) for v in items)
        if len(set(map(repr, parsed))) != len(parsed):
            raise GridError(f"--param-grid {spec!r}: a value is listed twice")
        if (strategy, param) in seen:
            raise GridError(f"--param-grid {spec!r}: {strategy}.{param} is given twice")
        seen.add((strategy, param))
        axes.append(GridAxis(strategy, param, parsed))
    return axes


def sweep_points(cfg: ExperimentConfig, strategies: Sequence[str], axes: Sequence[GridAxis]) -> list[SweepPoint]:
    """Every point, each config validated against the whole config before anything runs."""
    if cfg.rounds < 2:
        raise ConfigError("rounds", "a sweep measures the last round's update against the round before: "
                                    "rounds must be >= 2 (e.g. 2: deploy θ¹, then one update)")
    names = list(dict.fromkeys(strategies)) or list(dict.fromkeys(a.strategy for a in axes))
    if not names:
        raise GridError("nothing to sweep: give --strategies or at least one --param-grid")
    for axis in axes:
        if axis.strategy not in names:
            raise GridError(f"--param-grid {axis.spec}: strategy {axis.strategy!r} is not in --strategies "
                            f"({','.join(names)})")
    points: list[SweepPoint] = []
    for name in names:
        mine = [a for a in axes if a.strategy == name]
        for combo in itertools.product(*(a.values for a in mine)):
            overrides = {a.param: v for a, v in zip(mine, combo)}
            try:
                prepared = prepare(cfg, name, overrides)
            except ConfigError as err:
                where = ",".join(f"{name}.{k}={_show(v)}" for k, v in overrides.items())
                raise GridError(f"--param-grid {where}: {err}" if where else f"--strategies {name}: {err}") from None
            points.append(SweepPoint(name, overrides, prepared))
    return points


def point_row(point: SweepPoint, runs: Sequence[pd.DataFrame], dense_model_bytes: int) -> dict[str, Any]:
    """The sweep table's row for ``point`` from its per-seed metrics (means over seeds)."""
    per_seed = []
    for df in runs:
        last = int(df["round"].max())
        now, before = df[df["round"] == last], df[df["round"] == last - 1]
        reasons = [str(r) for r in now.get("reason", pd.Series(dtype=str)).fillna("") if str(r)]
        per_seed.append({
            "update_params": float(now["update_params"].iloc[0]) if "update_params" in now else math.nan,
            "model_params": float(now["model_params"].iloc[0]) if "model_params" in now else math.nan,
            "bytes_down": float(now["bytes_down"].mean()),
            "initial_accuracy": float(before["accuracy"].mean()),
            "accuracy": float(now["accuracy"].mean()),
            "applied_devices": int((now["status"] == DeviceStatus.APPLIED).sum()),
            "devices": len(now),
            "server_time_s": float(now["server_time_s"].iloc[0]),
            "reject_reason": reasons[0] if reasons else "",
        })
    seeds = pd.DataFrame(per_seed)
    row: dict[str, Any] = {"strategy": point.strategy, "params": point.params}
    for col in ("update_params", "model_params", "bytes_down", "initial_accuracy", "accuracy", "server_time_s"):
        row[col] = float(seeds[col].mean())
    row["lift"] = row["accuracy"] - row["initial_accuracy"]
    row["update_pct"] = 100 * row["update_params"] / row["model_params"]
    row["bytes_pct"] = 100 * row["bytes_down"] / dense_model_bytes
    row["applied_devices"] = int(seeds["applied_devices"].min())
    row["devices"] = int(seeds["devices"].max())
    row["reject_reason"] = next((r for r in seeds["reject_reason"] if r), "")
    if len(runs) > 1:
        lifts = seeds["accuracy"] - seeds["initial_accuracy"]
        row.update(accuracy_std=float(seeds["accuracy"].std()), lift_std=float(lifts.std()),
                   seed_lifts=" ".join(f"{v:.6f}" for v in lifts))  # in seed order, for paired comparisons
    row.update(dense_model_bytes=dense_model_bytes, seeds=len(runs), label=point.label)
    return row


def dense_model_bytes(cfg: ExperimentConfig) -> int:
    """Encoded size of the whole model as a dense fp32 package (the "send everything" reference)."""
    from edgeupdate.runtime import config_model
    from edgeupdate.updates import dense_package

    state = config_model(cfg, seed=0).state_dict()
    return len(dense_package(state, method="full", target_version=1).encode())


def table_of(rows: Sequence[Mapping[str, Any]]) -> pd.DataFrame:
    table = pd.DataFrame(list(rows))
    return table[COLUMNS + [c for c in table.columns if c not in COLUMNS]]


def verdict(table: pd.DataFrame, method: str = "ka", rivals: Sequence[str] = ("rm", "lru"),
            max_update_pct: float = 1.0) -> list[str]:
    """Chen et al.'s claim as checks: ``method``'s best lift at ≤ ``max_update_pct`` % vs each rival's
    best lift at its smallest update size that is equal or larger (several points of one size, e.g. a
    learning-rate grid, count as tuning of that size); one line each, empty if not testable."""
    if "update_pct" not in table or method not in set(table["strategy"]):
        return []
    small = table[(table["strategy"] == method) & (table["update_pct"] <= max_update_pct)]
    if small.empty:
        return [f"{method}: no point at <= {max_update_pct:g} % of the model's parameters"]
    best = small.loc[small["lift"].idxmax()]
    lines = []
    for rival in rivals:
        pts = table[(table["strategy"] == rival) & (table["update_params"] >= best["update_params"])]
        if pts.empty:
            lines.append(f"{rival}: no point with >= {best['update_params']:.0f} parameters to compare with")
            continue
        same_size = pts[pts["update_params"] == pts["update_params"].min()]
        other = same_size.loc[same_size["lift"].idxmax()]
        ok = best["lift"] >= other["lift"]
        lines.append(f"{method} {best['params']} ({best['update_params']:.0f} params, {best['update_pct']:.2f} %) "
                     f"lift {100 * best['lift']:+.2f} pp {'>=' if ok else '<'} {rival} {other['params']} "
                     f"({other['update_params']:.0f} params, {other['update_pct']:.2f} %) "
                     f"lift {100 * other['lift']:+.2f} pp: {'holds' if ok else 'FAILS'}{_paired(best, other)}")
    return lines


def _paired(a: Mapping[str, Any], b: Mapping[str, Any]) -> str:
    """``a``'s lift minus ``b``'s, seed by seed (the same θ¹ on both sides), when both ran several seeds."""
    la, lb = (str(p.get("seed_lifts", "") or "").split() for p in (a, b))
    if len(la) < 2 or len(la) != len(lb):
        return ""
    diffs = [100 * (float(x) - float(y)) for x, y in zip(la, lb)]
    return f" (per seed {' / '.join(f'{d:+.2f}' for d in diffs)} pp)"


class SweepError(RuntimeError):
    """Some points could not be run; the table holds the others."""


def sweep(cfg: ExperimentConfig, strategies: Sequence[str], axes: Sequence[GridAxis], out_dir: Path, *,
          seeds: int = 1, run: Runner | None = None, data_dir: str | None = None, resume: bool = False,
          log: Callable[[str], None] = print) -> pd.DataFrame:
    """Run every point (× seeds); write ``sweep.csv``, ``sweep.md`` and ``sweep.png`` after each
    point (a long sweep can be read while it runs); return the table.

    A point whose simulation fails is reported and skipped, and :class:`SweepError` is raised at the
    end; ``resume=True`` reuses the runs in ``out_dir`` that finished with the same config and
    continues unfinished ones from their last checkpoint.
    """
    from edgeupdate.simulation.plots import plot_sweep

    points = sweep_points(cfg, strategies, axes)  # every point validated before the first run
    dense = dense_model_bytes(cfg)
    out_dir.mkdir(parents=True, exist_ok=True)
    simulate = run or simulation_runner(data_dir, resume)

    rows: list[dict[str, Any]] = []
    failed: list[str] = []
    table = pd.DataFrame()
    for i, point in enumerate(points, 1):
        try:
            frames = run_all({point.label: point.run}, out_dir, seeds=seeds, run=simulate, resume=resume,
                             log=lambda m, i=i: log(f"sweep [{i}/{len(points)}]: {m}"))
        except Exception as err:  # one failed simulation must not throw away hours of finished points
            log(f"sweep: {point.label} FAILED: {type(err).__name__}: {err}")
            failed.append(point.label)
            continue
        row = point_row(point, frames[point.label], dense)
        row["wall_time_s"] = sum(_wall_time(out_dir / "runs" / f"{point.label}-s{point.config.seed + k}")
                                 for k in range(seeds)) / seeds
        if row["applied_devices"] < row["devices"]:
            log(f"sweep: WARNING {point.label}: only {row['applied_devices']} of {row['devices']} devices applied "
                f"the update; a device rejected it: {row['reject_reason']}")
        rows.append(row)
        table = table_of(rows)
        table.to_csv(out_dir / "sweep.csv", index=False)
        _write_markdown(table, cfg, seeds, out_dir / "sweep.md")
        plot_sweep(table, out_dir / "sweep.png", title=f"{cfg.name}: accuracy vs update size")
    if failed:
        raise SweepError(f"{len(failed)} of {len(points)} points failed ({', '.join(failed)}); the others are in "
                         f"{out_dir}/sweep.csv; rerun with --resume to run only what is missing")
    return table


def _wall_time(run_dir: Path) -> float:
    """The run's ``wall_time_s`` from its summary.json (device discovery, round 1 and the update;
    not Ray's start-up)."""
    import json

    return float(json.loads((run_dir / "summary.json").read_text())["wall_time_s"])


def _write_markdown(table: pd.DataFrame, cfg: ExperimentConfig, seeds: int, path: Path) -> None:
    spread = ["accuracy_std", "lift_std"] if "lift_std" in table else []  # over seeds (sample std)
    shown = table[["strategy", "params", "update_params", "update_pct", "bytes_down", "bytes_pct",
                   "initial_accuracy", "accuracy", "lift", *spread, "applied_devices", "devices"]].copy()
    checks = verdict(table)
    text = (f"Config `{cfg.name}`; {seeds} seed(s) from {cfg.seed}; update = round {cfg.rounds} vs round "
            f"{cfg.rounds - 1}; dense fp32 model = {int(table['dense_model_bytes'].iloc[0])} B.\n\n"
            + to_markdown(shown) + ("\n" + "\n".join(f"- {c}" for c in checks) + "\n" if checks else ""))
    path.write_text(text)
