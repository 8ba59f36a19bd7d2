"""edgeupdate.configs."""
