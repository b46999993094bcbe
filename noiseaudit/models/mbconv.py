"""A faster forward for EfficientNet's MBConv blocks when their BatchNorm is frozen.

The same function as the blocks' own ``forward`` in eval-mode BatchNorm, computed on
channels-last (B, H, W, C) tensors with the modules' own parameters (so the state dict,
the gradients and what trains are unchanged):

- a 1x1 convolution is a matmul over the channel axis (``F.linear``);
- a frozen BatchNorm is a per-channel affine map ``x * scale + shift``, folded into the
  convolution before it: its scale multiplies the (small) weight and its shift becomes the bias,
  so no pass over the (large) activations is spent on it, forward or backward. The weight,
  the BatchNorm's affine parameters and their gradients are the modules' own. On a 2-core CPU
  these layers are memory-bound: a ``deep`` training step at 128 px in bfloat16 took 160 ms
  with the BatchNorm applied to the activations and 117 ms folded (bench/README.md);
- a depthwise convolution with a 5x5 kernel on a small map (at most ``DENSE_MAX_POSITIONS``
  positions: the 4x4 and 8x8 maps of the top stages at 128 px) is a per-channel dense matrix
  over the map's positions, built from the kernel: oneDNN's bfloat16 backward of that
  convolution on CPU took 270 ms a batch, the matrix form 35 ms (3x3 kernels keep
  ``F.conv2d``, which is fast there). In bfloat16 on CPU the dense form also pays on the
  10x10 to 14x14 maps of 160 to 224 px (``DENSE_MAX_POSITIONS_BF16_CPU``): a ``deep`` training
  step ran 1.45x to 1.71x faster than through ``F.conv2d``, while in float32 it ran from 17%
  slower to 7% faster there (``bench/top_speed.py --dense``), so float32 and GPUs (unmeasured)
  keep the 8x8 limit.

Measured in ``bench/README.md`` ("Speed of the fine-tuned top").
"""

from __future__ import annotations

from functools import lru_cache

import torch
import torch.nn.functional as F
from torch import nn

DENSE_MAX_POSITIONS = 64  # input positions up to which a 5x5 depthwise convolution runs as a dense matrix
DENSE_MAX_POSITIONS_BF16_CPU = 196  # the same for bfloat16 activations on CPU (14x14 maps)


def dense_limit(x: torch.Tensor) -> int:
    """How many input positions a 5x5 depthwise convolution of ``x`` runs as a dense matrix up to."""
    if x.dtype == torch.bfloat16 and x.device.type == "cpu":
        return DENSE_MAX_POSITIONS_BF16_CPU
    return DENSE_MAX_POSITIONS


def bn_affine(bn: nn.BatchNorm2d) -> tuple[torch.Tensor, torch.Tensor]:
    """(scale, shift) of a frozen BatchNorm: ``bn(x) = x * scale + shift``, differentiable in its affine parameters."""
    scale = bn.weight * torch.rsqrt(bn.running_var + bn.eps)
    return scale, bn.bias - bn.running_mean * scale


def pointwise(x: torch.Tensor, conv: nn.Conv2d, bn: nn.BatchNorm2d) -> torch.Tensor:
    """1x1 convolution (no bias) then frozen BatchNorm, on (B, H, W, C), with the BatchNorm folded into the weights."""
    scale, shift = bn_affine(bn)
    return F.linear(x, conv.weight.flatten(1) * scale[:, None], shift)


def same_padding(conv: nn.Conv2d) -> tuple[int, int, int, int]:
    """(left, right, top, bottom) of a TF-'SAME' convolution's static padding, plus its own padding."""
    static = getattr(getattr(conv, "static_padding", None), "padding", (0, 0, 0, 0))
    ph, pw = conv.padding if isinstance(conv.padding, tuple) else (0, 0)
    left, right, top, bottom = static
    return left + pw, right + pw, top + ph, bottom + ph


@lru_cache(maxsize=64)
def spatial_taps(k: int, h: int, w: int, stride: int, pad: tuple[int, int, int, int]) -> torch.Tensor:
    """(k*k, out positions, in positions) 0/1 tensor: which input position each kernel tap reads for each output."""
    left, right, top, bottom = pad
    oh, ow = (h + top + bottom - k) // stride + 1, (w + left + right - k) // stride + 1
    taps = torch.zeros(k * k, oh * ow, h * w)
    oy, ox = torch.meshgrid(torch.arange(oh), torch.arange(ow), indexing="ij")
    for i in range(k):
        for j in range(k):
            iy, ix = oy * stride + i - top, ox * stride + j - left
            inside = (iy >= 0) & (iy < h) & (ix >= 0) & (ix < w)
            out = (oy * ow + ox)[inside]
            taps[i * k + j, out, (iy * w + ix)[inside]] = 1.0
    return taps


def depthwise(x: torch.Tensor, conv: nn.Conv2d, bn: nn.BatchNorm2d) -> torch.Tensor:
    """Depthwise k x k convolution with TF-'SAME' padding, then frozen BatchNorm, on (B, H, W, C)."""
    b, h, w, c = x.shape
    k, stride = conv.weight.shape[-1], conv.stride[0]
    left, right, top, bottom = same_padding(conv)
    scale, shift = bn_affine(bn)
    weight = conv.weight * scale[:, None, None, None]  # the BatchNorm's scale folded into the kernel
    if k >= 5 and h * w <= dense_limit(x):
        taps = spatial_taps(k, h, w, stride, (left, right, top, bottom)).to(x.device)
        matrix = torch.einsum("tqp,ct->cqp", taps.to(weight.dtype), weight.flatten(1))  # (C, out, in)
        y = torch.einsum("bpc,cqp->bqc", x.reshape(b, h * w, c), matrix.to(x.dtype))
        oh, ow = (h + top + bottom - k) // stride + 1, (w + left + right - k) // stride + 1
        return y.reshape(b, oh, ow, c) + shift.to(y.dtype)
    xc = x.permute(0, 3, 1, 2)  # a channels-last NCHW view, no copy
    if (left, top) == (right, bottom):
        y = F.conv2d(xc, weight, shift, conv.stride, (top, left), conv.dilation, conv.groups)
    else:
        y = F.conv2d(F.pad(xc, (left, right, top, bottom)), weight, shift, conv.stride, 0, conv.dilation, conv.groups)
    return y.permute(0, 2, 3, 1)


def mbconv(block: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """An efficientnet-lite MBConv block (no squeeze-excitation, ReLU6, no drop-connect) on (B, H, W, C)."""
    args = block._block_args
    if getattr(block, "has_se", False):
        raise ValueError("mbconv: blocks with squeeze-excitation are not supported")
    out = x
    if args.expand_ratio != 1:
        out = F.relu6(pointwise(out, block._expand_conv, block._bn0))
    out = F.relu6(depthwise(out, block._depthwise_conv, block._bn1))
    out = pointwise(out, block._project_conv, block._bn2)
    if block.id_skip and args.stride == 1 and args.input_filters == args.output_filters:
        out = out + x
    return out
