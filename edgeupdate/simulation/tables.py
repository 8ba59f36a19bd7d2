"""Markdown tables and cell formatting shared by ``compare``, ``sweep`` and the reports."""

from __future__ import annotations

import math
from typing import Any

import pandas as pd


def format_value(v: Any, column: str = "") -> str:
    """A table cell: byte totals as integers, thousands separators for large numbers, 4 significant
    digits for small ones, "—" for a missing value."""
    if isinstance(v, float):
        if math.isnan(v):
            return "—"
        if abs(v) >= 1000 or column.startswith("total_bytes"):
            return f"{v:,.0f}"
        return f"{v:.4g}" if abs(v) < 1 else f"{v:.2f}"
    return str(v)


def to_markdown(table: pd.DataFrame) -> str:
    """A GitHub-flavoured markdown table (no extra dependency)."""
    head = "| " + " | ".join(table.columns) + " |"
    sep = "|" + "|".join("---" if c == "strategy" else "---:" for c in table.columns) + "|"
    body = ["| " + " | ".join(format_value(v, c) for v, c in zip(row, table.columns)) + " |"
            for row in table.itertuples(index=False)]
    return "\n".join([head, sep, *body]) + "\n"
