"""Speed of the frozen part and of the final prediction, side by side in one run.

    python bench/frozen_speed.py            # 128 px, the default split, fp32 (and bf16 where the CPU runs it)

1. The frozen bottom of EfficientNet-Lite0 (stem and blocks 0-14, what a cold scan runs on every
   photo and its mirror image): the modules' own forward (``nn.Conv2d`` with TF-'SAME' padding
   modules, eval-mode ``BatchNorm2d``, ``ReLU6``) in chunks of 256 images, as scans ran it before,
   against ``Lite0Bottom`` (models/frozen.py: BatchNorm folded, in-place ReLU6, padding inside the
   convolution) in chunks of 16, 32, 64 and 256.
2. The final prediction over every sample: batches of 512 (as before) against 64, for the top
   trained over cached activations, ResNet-18 at 32 px and the small CNN at 28 px.

Timed in interleaved rounds so that every variant sees the same machine; the medians (ms per
image) and their ratios go to bench/results/frozen_speed.json.
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

from noiseaudit.backbone import SPLIT, autocast_precision
from noiseaudit.models import build_model
from noiseaudit.models import efficientnet as lite0
from noiseaudit.models.frozen import chunked

RESULTS = Path(__file__).resolve().parent / "results"
CHUNKS = (16, 32, 64, 256)


def module_bottom(net: torch.nn.Module, split: int) -> Callable[[torch.Tensor], torch.Tensor]:
    """The stem and blocks through their own modules: what ``Lite0Bottom`` replaced."""
    stem = torch.nn.Sequential(net._conv_stem, net._bn0, torch.nn.ReLU6())
    blocks = list(net._blocks[:split])

    def forward(x: torch.Tensor) -> torch.Tensor:
        x = stem(x)
        for block in blocks:
            x = block(x)
        return x
    return forward


def per_image_ms(fn: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor, bf16: bool) -> float:
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
        t0 = time.perf_counter()
        fn(x)
        return 1000 * (time.perf_counter() - t0) / x.shape[0]


def interleaved(variants: dict[str, Callable[[], float]], rounds: int) -> dict[str, float]:
    """Median of each variant over ``rounds``, the variants taking turns within each round."""
    for run in variants.values():  # warm-up: oneDNN picks and caches its kernels on the first call
        run()
    times: dict[str, list[float]] = {name: [] for name in variants}
    for _ in range(rounds):
        for name, run in variants.items():
            times[name].append(run())
    return {name: float(np.median(t)) for name, t in times.items()}


def frozen_part(size: int, images: int, rounds: int, bf16: bool) -> dict:
    split = SPLIT["top"]
    net = lite0.load_pretrained(size).to(memory_format=torch.channels_last)
    bottom = lite0.Lite0Bottom(lite0.load_pretrained(size), split).to(memory_format=torch.channels_last)
    old = module_bottom(net, split)
    x = (torch.rand(images, 3, size, size) * 2 - 1).contiguous(memory_format=torch.channels_last)
    with torch.no_grad():
        err = float((old(x[:8]) - bottom(x[:8])).abs().max() / old(x[:8]).abs().max())
    variants: dict[str, Callable[[], float]] = {
        "modules, chunks of 256": lambda: per_image_ms(lambda v: chunked(old, v, 256), x, bf16)}
    for c in CHUNKS:
        variants[f"folded, chunks of {c}"] = lambda c=c: per_image_ms(
            lambda v: chunked(bottom.forward_chunk, v, c), x, bf16)
    ms = interleaved(variants, rounds)
    base = ms["modules, chunks of 256"]
    return {"ms_per_image": ms, "speedup_vs_modules_256": {k: base / v for k, v in ms.items()},
            "max_relative_difference": err, "images": images, "image_size": size}


def prediction(rounds: int, samples: int) -> dict:
    models = {
        "lite0 top (192x4x4 cached input)": (lite0.Lite0Top(lite0.load_pretrained(128), SPLIT["top"], 10),
                                             (192, 4, 4)),
        "resnet18, 32 px": (build_model("resnet18", 3, 32, 10), (3, 32, 32)),
        "small-cnn, 28 px": (build_model("small-cnn", 1, 28, 10), (1, 28, 28)),
    }
    out = {}
    for name, (model, shape) in models.items():
        model.eval()
        x = torch.randn(samples, *shape)
        ms = interleaved({f"batch {b}": lambda b=b: per_image_ms(
            lambda v: torch.cat([model(part) for part in v.split(b)]), x, False) for b in (512, 64)}, rounds)
        out[name] = {"ms_per_sample": ms, "speedup_64_vs_512": ms["batch 512"] / ms["batch 64"]}
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--size", type=int, default=128)
    ap.add_argument("--images", type=int, default=512)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--out", type=Path, default=RESULTS / "frozen_speed.json")
    args = ap.parse_args()
    torch.manual_seed(0)
    precisions = ["fp32"] + (["bf16"] if autocast_precision(torch.device("cpu")) == "bf16" else [])
    results = {"machine": {"cpu": platform.processor() or platform.machine(), "threads": torch.get_num_threads(),
                           "torch": torch.__version__, "bf16_native": "bf16" in precisions},
               "frozen_part": {p: frozen_part(args.size, args.images, args.rounds, p == "bf16") for p in precisions},
               "prediction": prediction(args.rounds, 2048)}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=1))
    for p, r in results["frozen_part"].items():
        for k, v in r["ms_per_image"].items():
            print(f"frozen part {p} {k}: {v:.2f} ms/image ({r['speedup_vs_modules_256'][k]:.2f}x)")
    for name, r in results["prediction"].items():
        print(f"prediction {name}: 512 {r['ms_per_sample']['batch 512']:.3f} / 64 {r['ms_per_sample']['batch 64']:.3f}"
              f" ms/sample ({r['speedup_64_vs_512']:.2f}x)")


if __name__ == "__main__":
    main()
