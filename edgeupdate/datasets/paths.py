"""Where dataset files live: ``--data-dir`` > ``$EDGEUPDATE_DATA`` > the user cache directory."""

from __future__ import annotations

import os
from pathlib import Path

DATA_DIR_ENV = "EDGEUPDATE_DATA"
CACHE_SUBDIR = "edgeupdate"


def default_cache_dir() -> Path:
    """``$XDG_CACHE_HOME/edgeupdate`` when XDG_CACHE_HOME is an absolute path, else ``~/.cache/edgeupdate``."""
    xdg = os.environ.get("XDG_CACHE_HOME", "")
    # The XDG base-directory spec says relative values must be ignored.
    base = Path(xdg) if xdg and os.path.isabs(xdg) else Path.home() / ".cache"
    return base / CACHE_SUBDIR


def resolve_data_dir(explicit: str | Path | None = None) -> Path:
    """The data directory: ``explicit`` (``--data-dir``) if given, else ``$EDGEUPDATE_DATA`` if set and
    non-empty, else :func:`default_cache_dir`. Returned absolute with ``~`` expanded; not created."""
    if explicit is not None and str(explicit) != "":
        chosen = Path(explicit)
    elif os.environ.get(DATA_DIR_ENV, ""):
        chosen = Path(os.environ[DATA_DIR_ENV])
    else:
        chosen = default_cache_dir()
    return Path(os.path.abspath(chosen.expanduser()))
