"""What a node worker (a Ray worker that will host Flower's ClientApp actor) loads before it takes work.

:class:`~edgeupdate.simulation.local_ray.LocalRay` names this module in Ray's
``preload_python_modules``, so each worker imports it while the server is still starting:

* torch, Flower's actor class and the device side of edgeupdate, which the ClientApp needs on its
  first message;
* Flower's actor class without the rest of ``flwr.simulation``. The package's ``__init__`` imports
  ``run_simulation`` and with it the SuperLink's state, its CLI and FastAPI (about 0.7 s of CPU
  per worker), which a worker never calls. The package module is registered first with its
  ``__init__`` deferred (:func:`import_deferring_init`), so importing the actor's module runs only
  that module; the first attribute a worker ever reads from ``flwr.simulation`` itself runs the
  ``__init__`` then;
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

import importlib  # noqa: E402
import importlib.util  # noqa: E402
import sys  # noqa: E402
from types import ModuleType  # noqa: E402

import ray._private.arrow_serialization  # noqa: E402

import edgeupdate.clients.gateway  # noqa: E402, F401  (the ClientApp's modules)
import torch  # noqa: E402, F401

ACTOR_PACKAGE, ACTOR_MODULE = "flwr.simulation", "flwr.simulation.ray_transport.ray_actor"  # Flower's ClientAppActor


def import_deferring_init(module: str, package: str) -> ModuleType:
    """Import ``module`` without running ``package``'s ``__init__`` yet. ``package`` is registered
    as a module with its ``__path__`` (its submodules import as usual) and a PEP 562
    ``__getattr__``: the first lookup of a name the package does not hold yet runs the real
    ``__init__``, once. A package imported already is left as it is."""
    if package not in sys.modules:
        spec = importlib.util.find_spec(package)
        if spec is None or spec.loader is None or spec.submodule_search_locations is None:
            raise ImportError(f"{package} is not a package that can be imported here")
        pkg = importlib.util.module_from_spec(spec)
        loader = spec.loader

        def run_init(name: str) -> object:
            del pkg.__dict__["__getattr__"]
            loader.exec_module(pkg)
            return getattr(pkg, name)

        pkg.__getattr__ = run_init  # type: ignore[method-assign]
        sys.modules[package] = pkg
    return importlib.import_module(module)


import_deferring_init(ACTOR_MODULE, ACTOR_PACKAGE)


def _no_arrow_serializers(_serialization_context: object) -> None:
    """Ray Data's Arrow serializers, left out: node workers never carry Arrow objects."""


ray._private.arrow_serialization._register_custom_datasets_serializers = _no_arrow_serializers
gc.freeze()
gc.enable()
