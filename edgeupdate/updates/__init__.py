"""edgeupdate.updates."""
