"""edgeupdate.algorithms."""
