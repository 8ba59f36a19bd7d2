"""edgeupdate.updates: WHAT IS SENT to a device. Pure torch/numpy; never imports Flower.

An :class:`UpdatePackage` is a header (method, base version + hash, target version + hash,
tensor table) and a body (dense tensors, sparse positions + values, factor sets, seeded parts).
``encode``/``decode`` give its exact bytes; ``apply`` checks the base hash, builds the new state
without touching its input, and checks the result hash.
"""

from edgeupdate.updates.auth import Ed25519Signer, Ed25519Verifier, HmacKey, Signer, Verifier
from edgeupdate.updates.builders import (
    LayerFactors,
    dense_package,
    factor_package,
    seeded_package,
    sparse_package,
)
from edgeupdate.updates.errors import (
    AuthenticationError,
    BaseMismatchError,
    FormatError,
    IntegrityError,
    PackageError,
)
from edgeupdate.updates.files import apply_package_file, inspect_package_file, load_package_file, load_state_file, save_state_file
from edgeupdate.updates.hashing import StateDict, state_hash
from edgeupdate.updates.package import FORMAT_VERSION, FactorInfo, PackageHeader, TensorInfo, UpdatePackage
from edgeupdate.updates.positions import CODINGS, decode_positions, encode_positions, entropy_bound_bits
from edgeupdate.updates.reconstitution import (
    RULES,
    deterministic_linalg,
    initial_factors,
    random_left_factor,
    random_right_factor,
    reconstitute,
    svd_factors,
)
from edgeupdate.updates.seeded import (
    mask_positions,
    register_initializer,
    resolve_initializer,
    seeded_mask,
    zoo_initializer_name,
)
from edgeupdate.updates.values import PRECISIONS, QuantisationError, quantisation_error

__all__ = [
    "AuthenticationError", "BaseMismatchError", "CODINGS", "Ed25519Signer", "Ed25519Verifier", "FORMAT_VERSION",
    "FactorInfo", "FormatError", "HmacKey", "IntegrityError", "LayerFactors", "PRECISIONS", "PackageError",
    "PackageHeader", "QuantisationError", "RULES", "Signer", "StateDict", "TensorInfo", "UpdatePackage", "Verifier",
    "apply_package_file", "decode_positions", "dense_package", "deterministic_linalg", "encode_positions",
    "entropy_bound_bits", "factor_package", "initial_factors", "inspect_package_file", "load_package_file",
    "load_state_file", "mask_positions", "quantisation_error", "random_left_factor", "random_right_factor", "reconstitute",
    "register_initializer", "resolve_initializer", "save_state_file", "seeded_mask", "seeded_package",
    "sparse_package", "state_hash", "svd_factors", "zoo_initializer_name",
]
