"""Parameters shared by every federated strategy: how devices upload their update.

Every FL strategy's ``Params`` derives from :class:`FederatedParams`, so the compressed uploads
compose with any aggregation rule. In a config::

    [strategy]
    name = "fedavg"            # or fedprox, fedadam, fedmedian, ...
    [strategy.params.upload]
    kind = "topk"              # dense | topk | rm | lru
    fraction = 0.01            # top-k: share of each tensor's entries sent
    precision = "int8"         # fp32 | fp16 | int8 | int8-channel (values of any kind)

or on the command line ``--set strategy.params.upload.kind=topk``. The kinds (see
:mod:`edgeupdate.clients.upload` and :mod:`edgeupdate.clients.upload_structured`):

* ``dense``  — every weight; fp32 sends the trained weights, a lossy precision sends the quantised
  update w − w_global (no positions: all entries);
* ``topk``   — the ``fraction`` largest-magnitude entries of each tensor's update, positions coded
  with ``coding``; with ``error_feedback`` the unsent rest stays on the device and is added to the
  next round's update (Lin et al. 2018, "Deep Gradient Compression"; Stich et al. 2018);
* ``rm``     — structured random mask (Konečný et al. 2016 §2): the device trains only the entries
  of a Bernoulli(``p``) mask regenerated from a per-(round, device) seed; only values are sent;
* ``lru``    — structured low rank (Konečný et al. 2016 §2): each ≥2-D weight's update is L·R with
  R (``rank`` × i) regenerated from a seed; the device trains L and sends it, other tensors dense.

Error feedback applies to the sketched kinds (dense with a lossy precision, topk); the structured
kinds send exactly what was trained (up to quantisation) and keep no residual.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from edgeupdate.clients.upload import UploadSpec


@dataclass(frozen=True)
class FederatedParams:
    """Base of every FL strategy's parameters: the upload encoding (``[strategy.params.upload]``)."""

    upload: UploadSpec = field(default_factory=UploadSpec)
