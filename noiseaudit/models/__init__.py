"""Classifiers that expose their penultimate features and a linear head.

Every model here has ``forward_features(x) -> h`` and ``head: nn.Linear`` so
that the trainer can compute last-layer per-sample gradients in closed form.
"""

from __future__ import annotations

from torch import nn

from noiseaudit.config import FEATURE_MODELS, MODELS
from noiseaudit.errors import UsageError
from noiseaudit.models.mlp import MLP, LinearHead
from noiseaudit.models.small_cnn import SmallCNN



SMALL_CNN_UP_TO = {1: 64, 3: 32}  # largest side, by channels, at which the small CNN is the default


def default_model(channels: int, image_size: int) -> str:
    """The small CNN for grayscale images up to 64 px and colour up to 32 px (the automatic size), else ResNet-18.

    Colour from 32 px by measurement (bench/colour_default.py): on 2,000 CIFAR-10 photos the small CNN
    ranked better than ResNet-18 (AP 0.655 over three seeds against 0.505 with 20% symmetric noise) at
    about a twentieth of the training time. Larger inputs were not measured and keep ResNet-18.
    """
    return "small-cnn" if image_size <= SMALL_CNN_UP_TO.get(channels, 0) else "resnet18"


def build_model(name: str, channels: int, image_size: int, num_classes: int) -> nn.Module:
    """Instantiate a model by name, with randomly initialised weights (nothing is downloaded)."""
    if name == "small-cnn":
        return SmallCNN(channels, image_size, num_classes)
    if name == "resnet18":
        from noiseaudit.models.resnet import CifarResNet18  # torchvision is imported only when it is used

        return CifarResNet18(channels, num_classes)
    if name == "mlp":
        return MLP(channels * image_size * image_size, num_classes)
    raise UsageError(f"unknown model {name!r}; choose one of {', '.join(MODELS)}")


def build_feature_model(name: str, dim: int, num_classes: int) -> nn.Module:
    """A model of ``dim``-dimensional feature vectors: ``mlp`` (one hidden layer of 256) or ``linear``."""
    if name == "mlp":
        return MLP(dim, num_classes)
    if name == "linear":
        return LinearHead(dim, num_classes)
    raise UsageError(f"model {name!r} does not take feature vectors; choose one of {', '.join(FEATURE_MODELS)}")


__all__ = ["MODELS", "FEATURE_MODELS", "build_model", "build_feature_model", "default_model", "SmallCNN",
           "MLP", "LinearHead"]
