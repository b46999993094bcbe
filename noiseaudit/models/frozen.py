"""An inference-only forward for the frozen bottom of EfficientNet-Lite0, BatchNorm folded into the weights.

The frozen part runs once per image (and its mirror image), so on a CPU it is most of a cold
scan. There, measured on 2 AVX2 cores at 128 px ([bench/README.md](../../bench/README.md),
"Speed of the frozen part"), the modules' own forward spends more time in memory-bound layers
than in convolutions: the eval-mode BatchNorm, ReLU6 (out of place) and the zero padding of
TF-'SAME' convolutions each write a copy of every activation. Here:

- each convolution carries its BatchNorm folded in, ``w * scale`` and a bias ``shift``;
- ReLU6 is an in-place clamp and the residual an in-place add;
- padding that is the same on both sides goes to ``F.conv2d``; only the stride-2 layers, whose
  'SAME' padding is lopsided, pad explicitly;
- images go through in chunks of ``CHUNK``, whose activations stay in the CPU's caches
  (in chunks of 256 every layer streams from memory, at 2-6x the time).

The same function as the modules' forward up to rounding (``tests/test_backbone.py`` checks
it in float64); nothing here trains.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

from noiseaudit.models.mbconv import same_padding

CHUNK = 16  # images per forward pass on CPU (measured: 16-32 best at 128 px, 256 several times slower)


class FoldedConv(nn.Module):
    """A convolution followed by its eval-mode BatchNorm (and ReLU6 with ``act``), as one convolution with a bias."""

    def __init__(self, conv: nn.Conv2d, bn: nn.BatchNorm2d, act: bool):
        super().__init__()
        with torch.no_grad():
            scale = bn.weight * torch.rsqrt(bn.running_var + bn.eps)
            self.register_buffer("weight", conv.weight * scale.reshape(-1, 1, 1, 1))
            self.register_buffer("bias", bn.bias - bn.running_mean * scale)
        left, right, top, bottom = same_padding(conv)
        symmetric = (left, top) == (right, bottom)
        self.padding = (top, left) if symmetric else (0, 0)
        self.pad = None if symmetric else (left, right, top, bottom)
        self.stride, self.groups, self.act = conv.stride, conv.groups, act

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.pad is not None:
            x = F.pad(x, self.pad)
        y = F.conv2d(x, self.weight, self.bias, self.stride, self.padding, 1, self.groups)
        return y.clamp_(0.0, 6.0) if self.act else y


class FoldedMBConv(nn.Module):
    """An efficientnet-lite MBConv block (no squeeze-excitation, ReLU6) from :class:`FoldedConv` layers."""

    def __init__(self, block: nn.Module):
        super().__init__()
        args = block._block_args
        if getattr(block, "has_se", False):
            raise ValueError("FoldedMBConv: blocks with squeeze-excitation are not supported")
        expand = [FoldedConv(block._expand_conv, block._bn0, True)] if args.expand_ratio != 1 else []
        self.convs = nn.Sequential(*expand, FoldedConv(block._depthwise_conv, block._bn1, True),
                                   FoldedConv(block._project_conv, block._bn2, False))
        self.residual = bool(block.id_skip and args.stride == 1 and args.input_filters == args.output_filters)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.convs(x)
        return y.add_(x) if self.residual else y


def chunked(forward: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor, chunk: int = CHUNK) -> torch.Tensor:
    """``forward`` over ``x`` in pieces of ``chunk`` images (on CPU; one piece elsewhere), concatenated."""
    if x.device.type != "cpu" or x.shape[0] <= chunk:
        return forward(x)
    return torch.cat([forward(part) for part in x.split(chunk)])
