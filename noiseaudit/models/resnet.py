"""CIFAR-style ResNet-18: torchvision's network with a 3x3 stem and no stem max-pool."""

from __future__ import annotations

import torch
from torch import nn
from torchvision.models import resnet18


class CifarResNet18(nn.Module):
    def __init__(self, channels: int, num_classes: int):
        super().__init__()
        net = resnet18(weights=None, num_classes=num_classes)
        net.conv1 = nn.Conv2d(channels, 64, kernel_size=3, stride=1, padding=1, bias=False)
        net.maxpool = nn.Identity()
        self.head = net.fc
        net.fc = nn.Identity()
        self.body = net

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.forward_features(x))
