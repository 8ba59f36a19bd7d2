"""edgeupdate.simulation: WIRING AND MEASURING. The runner (Flower's simulation engine on Ray),
the metrics collector, plots, ``compare``, ``sweep``, shared tables and the HTML/markdown report."""
