"""edgeupdate.simulation."""
