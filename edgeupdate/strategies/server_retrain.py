"""The server-retrain family's base: devices upload samples, the server retrains on Dʳ and pushes.

:class:`ServerRetrainStrategy` keeps the data pool Dʳ = Dʳ⁻¹ ∪ δDʳ and, with ``fleet.students``,
one student model per memory budget (Zhao et al.); a concrete strategy implements
:meth:`ServerRetrainStrategy.retrain` (and usually ``release_package``).

Every round it also records the server's own model quality (:meth:`record_server_accuracy`): the
accuracy of the model this round's retraining produced — the weights of the epoch with the best
validation accuracy, since :func:`~edgeupdate.training.train` keeps those — on the server's
validation split and on the test pool. That is the per-round number the thesis reports (§5.5,
before its running-best pass; see ``mean_best_accuracy_diff_vs_ref_pp`` in ``compare``).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from edgeupdate import protocol as P
from edgeupdate.datasets import NORMALIZATION
from edgeupdate.datasets.codec import decode_samples
from edgeupdate.runtime import DENSE_APPLY_FACTOR
from edgeupdate.seeding import derive_seed
from edgeupdate.strategies.base import EdgeStrategy
from edgeupdate.strategies.versions import DeviceView, ModelVersion
from edgeupdate.training import TensorData, evaluate
from edgeupdate.updates import StateDict, state_hash

#: Bytes a student's budget keeps free for a package's header, checksum and signature.
PACKAGE_HEADER_ALLOWANCE = 4096


class ServerRetrainStrategy(EdgeStrategy):
    """The server retrains on Dʳ = Dʳ⁻¹ ∪ δDʳ and pushes packages; devices only run inference.

    Subclasses implement :meth:`retrain` (and usually :meth:`release_package`). With
    ``fleet.students`` the server also keeps one student per memory budget (:meth:`update_students`).
    """

    trains_students = True

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.pool = TensorData(torch.zeros(0), torch.zeros(0, dtype=torch.long))  # Dʳ, in arrival order
        self.validation = self.runtime.validation()

    def checkpoint_references(self) -> dict[str, Any]:
        return {**super().checkpoint_references(), "validation": self.validation}

    def train_task(self, round_: int, view: DeviceView) -> dict[str, Any] | None:
        if round_ > 1 and self.cfg.stream.source == "devices":
            return {"task": P.TASK_COLLECT}
        return None  # D¹ is server-side; a server-side source needs nothing from the devices

    def next_model(self, round_: int, reports: list[P.DeviceReport]) -> StateDict | None:
        self.pool = self.grow_pool(round_, reports)
        self.log.extra["server_samples"] = float(len(self.pool))
        self.log.server_flops = self.retrain_flops(len(self.pool))
        target = self.retrain(round_, self.latest, self.pool)
        self.record_server_accuracy(target if target is not None else self.latest.weights)
        return target

    def record_server_accuracy(self, weights: StateDict) -> None:
        """Metrics ``server_val_accuracy_frac`` and ``server_test_accuracy_frac`` (fractions in
        [0, 1]): ``weights`` (this round's retrained model, or the held one when the round pushes
        nothing) on the validation split and on the test pool (test set less validation; NaN if empty)."""
        model = self.runtime.new_model()
        model.load_state_dict(weights)
        self.log.extra["server_val_accuracy_frac"] = float(evaluate(model, self.validation)[1])
        self.log.extra["server_test_accuracy_frac"] = float(evaluate(model, self.runtime.test_pool)[1])

    def grow_pool(self, round_: int, reports: list[P.DeviceReport]) -> TensorData:
        """Dʳ: the samples that arrived this round (server-side or uploaded) added to Dʳ⁻¹."""
        layout = self.runtime.layout
        parts = [self.pool]
        if round_ == 1 or self.cfg.stream.source == "server":
            idx = [layout.arrivals(d, round_) for d in range(layout.num_devices)]
            parts.append(self.runtime.train_subset(np.concatenate(idx) if idx else np.zeros(0, dtype=np.int64)))
        else:
            norm = NORMALIZATION[self.runtime.dataset.name]
            parts.extend(decode_samples(r.payload, norm) for r in reports if r.payload)
        parts = [d for d in parts if len(d)]
        return TensorData(torch.cat([d.x for d in parts]), torch.cat([d.y for d in parts]))

    def on_release(self, round_: int) -> None:
        self.update_students(round_, self.pool)

    def update_students(self, round_: int, data: TensorData) -> None:
        """Cut each memory budget's student from the first released model (§3 of Zhao et al.), then
        train it on ``data`` (= Dʳ) by layer-wise knowledge transfer from every new release (§4.1)."""
        if not self.store.students:
            return
        from edgeupdate.algorithms.knowledge_transfer import TransferConfig, transfer_knowledge
        from edgeupdate.algorithms.students import StudentError, fit_student
        from edgeupdate.configs import ConfigError
        from edgeupdate.models.cost import forward_profile

        opts, model, ds = self.cfg.fleet.students, self.cfg.model, self.runtime.dataset
        teacher = self.latest.weights
        for name, line in sorted(self.store.students.items(), key=lambda kv: kv[1].memory_bytes):
            start = line.latest.weights
            if line.spec is None:
                try:
                    line.spec, start = fit_student(
                        model.name, ds.input_shape, ds.num_classes, teacher, data, line.memory_bytes,
                        apply_overhead_bytes=lambda b: (DENSE_APPLY_FACTOR - 1) * b + PACKAGE_HEADER_ALLOWANCE,
                        images=opts.images,
                        seed=derive_seed(self.cfg.seed, "student", line.memory_bytes), min_threshold=opts.min_threshold)
                except StudentError as err:
                    raise ConfigError("fleet.students", f"{name}: {err}") from None
            weights, _ = transfer_knowledge(teacher, start, line.spec, data, self.cfg.training,
                                            derive_seed(self.cfg.seed, "student", line.memory_bytes, round_),
                                            cfg=TransferConfig(trainable=opts.trainable),
                                            validation=self.validation if len(self.validation) else None)
            self.store.set_student(round_, name, ModelVersion(round_, weights, state_hash(weights)))
            student_flops = forward_profile(line.spec.build(), ds.input_shape).flops
            samples = len(data)
            self.log.server_flops += ((3 * student_flops + self.runtime.forward.flops) * samples
                                      * self.cfg.training.epochs_for(samples))

    def retrain_flops(self, samples: int) -> float:
        """FLOPs of one retraining on ``samples`` (forward + backward ≈ 3 forward passes per epoch)."""
        return 3.0 * self.runtime.forward.flops * samples * self.cfg.training.epochs_for(samples)

    def retrain(self, round_: int, deployed: ModelVersion, data: TensorData) -> StateDict | None:
        """Train on ``data`` (= Dʳ) starting from whatever the method wants; return the target."""
        raise NotImplementedError
