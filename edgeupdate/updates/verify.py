"""What a device verifies before it changes its model, in order, and the version rule.

A device that receives ``payload`` while holding the model of ``version`` with state hash ``hash``:

1. **format and length** (:meth:`UpdatePackage.decode`): magic, format version, declared length;
   stops truncated transfers and foreign data (``FormatError``);
2. **checksum**: CRC-32 over everything before it; stops corruption in transit
   (``IntegrityError``);
3. **signature** (with a configured verifier): HMAC-SHA256 or Ed25519 over everything before it,
   checksum included; stops forgery: packages signed with another key, unsigned packages, and
   bytes altered after signing even with the checksum fixed up (``AuthenticationError``);
4. **version** (:func:`check_version`, here): the package must move the device forward; stops
   rollback: a replayed, validly signed old package (``rejected``);
5. **memory**: the apply step's peak memory must fit the device (``no_memory``);
6. **base hash** (:meth:`UpdatePackage.apply`): a base-bound package must be built for exactly
   the weights the device holds; stops a package for another state (``BaseMismatchError``);
7. **result hash**: the new weights must hash to the header's target; stops numerical drift
   (lossy decoding that differs across platforms) and any corruption the earlier checks missed
   (``IntegrityError``).

Only then are the new weights staged and swapped in. Each failure leaves the model untouched.
"""

from __future__ import annotations

from edgeupdate.updates.header import PackageHeader


def check_version(header: PackageHeader, version: int, held_hash: str) -> str | None:
    """Why a device holding ``version`` (state hash ``held_hash``) must refuse ``header``'s
    package, or ``None`` when the version rule allows it.

    The rule: the target version must be newer than the held one. A package bound to exactly the
    held state (base hash equal to ``held_hash``) may keep the version number: a catch-up or
    budget package that moves the device forward within a version line (a budgeted share of
    version v to version v itself). A base-free package fits any state, so only its target
    version (signed, in the header) binds it; the version it replaces (``base_version``, carried
    since issue 18) must be older than that target.
    """
    target = header.target_version
    if header.base_hash is None and header.base_version is not None and header.base_version >= target:
        return (f"version check: package replaces version {header.base_version} but targets version "
                f"{target}, which is not newer")
    if target > version:
        return None
    if target == version and header.base_hash is not None and header.base_hash == held_hash:
        return None  # forward within a version line (catch-up or budget share of this version)
    return (f"version check: package targets version {target}, not newer than the held version {version} "
            f"(a replayed or rolled-back package)")


__all__ = ["check_version"]
