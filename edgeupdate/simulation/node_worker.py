"""What a node worker (a Ray worker that will host Flower's ClientApp actor) loads before it takes work.

:class:`~edgeupdate.simulation.local_ray.LocalRay` names this module in Ray's
``preload_python_modules``, so each worker imports it while the server is still starting:

* torch, Flower's actor class (its module pulls in the simulation engine) and the device side of
  edgeupdate, which the ClientApp needs on its first message;
* a frozen heap (``gc.freeze``): the imported modules' objects live as long as the worker, so the
  full garbage collections while it serves devices skip them;
* no Arrow serializers. Ray's serialization context registers serializers for Ray Data's Arrow
  objects in every worker where pyarrow is installed, and imports pyarrow to do so: about 43 MB and
  0.15 s per worker. Node workers carry messages of bytes and numbers, never Arrow tables, so the
  registration is skipped here (pyarrow itself stays importable).
"""

from __future__ import annotations

import gc

gc.disable()  # no collections while torch and Flower are imported: frozen below, then collected as usual

import ray._private.arrow_serialization  # noqa: E402

import edgeupdate.clients.gateway  # noqa: E402, F401  (the ClientApp's modules)
import flwr.simulation.ray_transport.ray_actor  # noqa: E402, F401  (Flower's actor class)
import torch  # noqa: E402, F401


def _no_arrow_serializers(_serialization_context: object) -> None:
    """Ray Data's Arrow serializers, left out: node workers never carry Arrow objects."""


ray._private.arrow_serialization._register_custom_datasets_serializers = _no_arrow_serializers
gc.freeze()
gc.enable()
