"""The table of registered strategies: ``@register`` puts a class under its ``name``.

Looking a name up (registered names, ``module:Class`` plug-ins) is :mod:`edgeupdate.strategies.resolve`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:  # the base imports nothing from here; this is for the annotation only
    from edgeupdate.strategies.base import EdgeStrategy

STRATEGIES: dict[str, type[EdgeStrategy]] = {}


def register(cls: type[EdgeStrategy]) -> type[EdgeStrategy]:
    """Class decorator: make ``cls`` available as ``strategy.name = cls.name``."""
    STRATEGIES[cls.name] = cls
    return cls
