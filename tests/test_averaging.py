"""The weight average behind the final model (noiseaudit.optim.averaging, train's average_last_epoch)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from sklearn.datasets import load_digits
from torch import nn

from noiseaudit.data.dataset import SampleData
from noiseaudit.optim.averaging import WeightAverage
from noiseaudit.train import TrainConfig, normaliser, predict, train


def _set(model: nn.Module, value: float) -> None:
    with torch.no_grad():
        for p in model.parameters():
            p.fill_(value)


def test_the_average_is_the_mean_of_the_updates_and_round_trips_mid_window():
    model = nn.Linear(3, 2)
    model.bias.requires_grad_(False)  # only what trains is averaged
    average = WeightAverage(model)
    for value in (1.0, 2.0):
        _set(model, value)
        average.update(model)
    restored = WeightAverage(model)
    restored.load_state_dict(average.state_dict())
    for avg in (average, restored):
        _set(model, 6.0)
        avg.update(model)  # mean of 1, 2 and 6
        _set(model, 0.0)
        avg.copy_to(model)
        assert torch.all(model.weight == 3.0) and torch.all(model.bias == 0.0)
    empty = WeightAverage(model)
    _set(model, 5.0)
    empty.copy_to(model)  # nothing averaged: the model is left as it is
    assert torch.all(model.weight == 5.0)
    with pytest.raises(ValueError, match="averaged parameters differ"):
        WeightAverage(nn.Linear(3, 2)).load_state_dict({"steps": 1, "mean": {"other": torch.zeros(1)}})


class _Net(nn.Module):
    """A two-layer network without BatchNorm (the average leaves buffers alone)."""

    def __init__(self) -> None:
        super().__init__()
        self.hidden, self.head = nn.Linear(64, 32), nn.Linear(32, 10)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return torch.relu(self.hidden(x.flatten(1)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.forward_features(x))


def test_training_predicts_with_the_mean_of_the_last_epochs_weights():
    d = load_digits()
    images = torch.from_numpy((d.images * 255 / 16).round().astype(np.uint8)[:, None])
    data = SampleData(images, torch.from_numpy(d.target.astype(np.int64)), list(range(10)), 8)
    model = _Net()
    seen: list[list[torch.Tensor]] = []

    def on_step(epoch: int, step: int, steps: int, loss: float | None) -> None:
        if epoch == 2 and loss is None:  # after each step of the last of 3 epochs (not the epoch-end call)
            seen.append([p.detach().clone() for p in model.parameters()])

    torch.manual_seed(0)
    result = train(data, model, TrainConfig(epochs=3, average_last_epoch=True), torch.device("cpu"),
                   torch.Generator().manual_seed(0), on_step=on_step)
    assert len(seen) == 15  # 1,797 digits / batch 128
    for p, snapshots in zip(model.parameters(), zip(*seen)):
        torch.testing.assert_close(p.detach(), torch.stack(snapshots).mean(0), rtol=1e-5, atol=1e-6)
    last = [s.clone() for s in seen[-1]]
    assert any(not torch.equal(p.detach(), s) for p, s in zip(model.parameters(), last))  # not the last step's
    mean, std = normaliser(data.inputs, model)
    np.testing.assert_allclose(result.probs, predict(model, data.inputs, mean, std), rtol=1e-6, atol=1e-7)


def test_models_without_batchnorm_average_and_a_scan_says_which_final_model_it_used(noisy_digits):
    from noiseaudit import scan
    from noiseaudit.models import build_model
    from noiseaudit.optim.averaging import fits

    assert fits(build_model("small-cnn", 1, 8, 10)) and fits(build_model("mlp", 1, 8, 10))
    assert not fits(build_model("resnet18", 3, 32, 10))  # its BatchNorm statistics belong to the last step
    images, csv = noisy_digits
    options = dict(label_col="digit", epochs=1, device="cpu", seed=0, workers=1)
    assert scan(images, csv, **options).attrs["noiseaudit"]["final_model"] == "mean of the last epoch's weights"
    assert scan(images, csv, model="resnet18", batch_size=512, **options).attrs["noiseaudit"]["final_model"] \
        == "last step's weights"
