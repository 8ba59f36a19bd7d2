"""edgeupdate.clients."""
