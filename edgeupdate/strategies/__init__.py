"""edgeupdate.strategies."""
