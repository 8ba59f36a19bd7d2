"""Model zoo: the papers' small networks, built by name."""

from edgeupdate.models.zoo import MODEL_NAMES, build_model, count_parameters

__all__ = ["MODEL_NAMES", "build_model", "count_parameters"]
