"""edgeupdate: simulate how a retraining server keeps a fleet of edge devices up to date.

Layers (data flows down, never back up): ``configs`` → ``datasets`` / ``models`` →
``updates`` (what is sent; no Flower) → ``algorithms`` (server-side methods; no Flower) →
``strategies`` / ``clients`` (Flower) → ``simulation`` (wiring and measuring) → ``cli``.
"""

__version__ = "0.1.0"
