"""Byte axes stay readable, and wide report tables scroll in their own box."""

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import pytest  # noqa: E402

from edgeupdate.simulation.plots import log_bytes_axis  # noqa: E402


@pytest.mark.parametrize("lo, hi, scale", [(1.215e6, 1.22e6, "linear"), (2e3, 3e6, "log")])
def test_byte_axes_label_major_ticks_in_si_units_only(lo, hi, scale):
    fig, ax = plt.subplots()
    ax.plot([lo, hi], [0.5, 0.9])
    log_bytes_axis(ax)
    fig.canvas.draw()

    labels = [t.get_text() for t in ax.get_xticklabels() if t.get_text()]
    minor = [t.get_text() for t in ax.xaxis.get_minorticklabels() if t.get_text()]
    plt.close(fig)
    assert ax.get_xscale() == scale
    assert len(labels) >= 2 and all(label.endswith("B") and "10^" not in label and "×" not in label for label in labels)
    assert minor == []
