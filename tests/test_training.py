"""The training loop's budget: epochs, ``min_steps`` stretching and the learning-rate schedule."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from edgeupdate.configs import ConfigError, load_config
from edgeupdate.datasets.base import NORMALIZATION, image_data, to_tensor_data
from edgeupdate.training import TensorData, TrainConfig, evaluate, lr_at, train


def _data(n: int) -> TensorData:
    g = torch.Generator().manual_seed(0)
    return TensorData(torch.randn(n, 1, 2, 2, generator=g), torch.randint(0, 3, (n,), generator=g))


def _model() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Flatten(), nn.Linear(4, 3))


def test_min_steps_stretches_epochs_only_when_the_data_are_too_few() -> None:
    cfg = TrainConfig(epochs=15, batch_size=128, min_steps=480)
    assert cfg.epochs_for(1000) == 60      # 8 batches per epoch: 60 × 8 = 480 steps
    assert cfg.epochs_for(3000) == 20      # 24 batches: 15 epochs would be 360 steps
    assert cfg.epochs_for(4000) == 15      # 32 batches × 15 = 480: no stretch
    assert cfg.epochs_for(60000) == 15
    assert TrainConfig(epochs=15, batch_size=128).epochs_for(10) == 15  # off by default
    assert TrainConfig(epochs=0, min_steps=480).epochs_for(10) == 0     # zero epochs stays zero


def test_training_runs_the_stretched_number_of_steps() -> None:
    data = _data(40)  # 3 batches of 16
    plain = train(_model(), data, TrainConfig(epochs=2, batch_size=16), seed=1)
    stretched = train(_model(), data, TrainConfig(epochs=2, batch_size=16, min_steps=30), seed=1)
    assert plain.steps == 6 and len(plain.epoch_losses) == 2
    assert stretched.steps == 30 and len(stretched.epoch_losses) == 10


def test_step_schedule_drops_at_the_same_fractions_of_a_stretched_run() -> None:
    cfg = TrainConfig(epochs=15, lr=5e-3, lr_schedule="step", lr_step_epochs=5, lr_gamma=0.1, min_steps=480)
    plain = [lr_at(cfg, e) for e in range(15)]
    assert plain == pytest.approx([5e-3] * 5 + [5e-4] * 5 + [5e-5] * 5)
    stretched = [lr_at(cfg, e, 60) for e in range(60)]
    assert stretched == pytest.approx([5e-3] * 20 + [5e-4] * 20 + [5e-5] * 20)
    cosine = TrainConfig(epochs=10, lr=1.0, lr_schedule="cosine")
    assert lr_at(cosine, 20, 40) == pytest.approx(0.5)  # half-way through the stretched run


def test_negative_min_steps_is_a_config_error(tmp_path) -> None:
    path = tmp_path / "bad.toml"
    path.write_text('name = "x"\n[training]\nmin_steps = -1\n')
    with pytest.raises(ConfigError, match="min_steps"):
        load_config(path)



def test_evaluating_raw_images_batch_by_batch_equals_evaluating_their_floats() -> None:
    gen = torch.Generator().manual_seed(3)
    images = torch.randint(0, 256, (70, 1, 4, 4), generator=gen, dtype=torch.uint8).numpy()
    labels = torch.randint(0, 10, (70,), generator=gen).numpy()
    norm = NORMALIZATION["mnist"]
    model = nn.Sequential(nn.Flatten(), nn.Linear(16, 10))
    floats = evaluate(model, to_tensor_data(images, labels, norm), batch_size=1024)
    assert evaluate(model, image_data(images, labels, norm), batch_size=16) == pytest.approx(floats, rel=1e-6)
    assert evaluate(model, image_data(images, labels, norm), batch_size=1024) == floats
