"""The one exception type of the datasets layer."""

from __future__ import annotations

from pathlib import Path

HINT = "set --data-dir or EDGEUPDATE_DATA, or --set dataset.download=true"


class DatasetError(Exception):
    """A dataset cannot be loaded: a file is missing, corrupt, has a bad checksum or bad format.

    The message is one line that names the dataset and the file and says what is wrong.
    """


def missing_file(dataset: str, path: Path) -> DatasetError:
    """The error for a file that is not where the loader looks for it."""
    return DatasetError(f"{dataset}: file {path} is missing ({HINT})")


def corrupt_file(dataset: str, path: Path, what: str) -> DatasetError:
    """The error for a file that exists but cannot be used; ``what`` says why."""
    return DatasetError(
        f"{dataset}: file {path} is corrupt: {what} (delete it and --set dataset.download=true, "
        "or point --data-dir / EDGEUPDATE_DATA at a good copy)"
    )
