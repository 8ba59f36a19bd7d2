"""edgeupdate.datasets."""
