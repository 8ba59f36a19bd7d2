"""Model zoo: the papers' small networks, built by name (and narrower, for pruned students)."""

from edgeupdate.models.zoo import (
    MODEL_NAMES,
    RESIDUAL_MODELS,
    Architecture,
    ArchitectureError,
    build_model,
    count_parameters,
    infer_architecture,
    model_for_state,
)

__all__ = ["MODEL_NAMES", "RESIDUAL_MODELS", "Architecture", "ArchitectureError", "build_model", "count_parameters",
           "infer_architecture", "model_for_state"]
