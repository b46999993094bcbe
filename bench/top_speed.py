"""Speed of the fine-tuned top: the channels-last forward (models/mbconv.py) against the blocks' own.

    python bench/top_speed.py                     # 128 px, --finetune top and deep, batch 128, bf16 where native

One training step (forward, cross-entropy, backward, SGD step) of ``Lite0Top`` on a batch of
cached activations, timed alternately through the blocks' own modules (eval-mode BatchNorm,
``nn.Conv2d``) and through ``Lite0Top.forward_features`` (1x1 convolutions as matmuls, the frozen
BatchNorm folded, dense 5x5 depthwise kernels on small maps), in interleaved rounds so that
both see the same machine. Reports the median milliseconds of each and their ratio.
Results: bench/results/top_speed.json.
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from noiseaudit.backbone import SPLIT, autocast_precision
from noiseaudit.models import efficientnet as lite0

RESULTS = Path(__file__).resolve().parent / "results"


def module_features(top: lite0.Lite0Top, x: torch.Tensor) -> torch.Tensor:
    """The pooled embedding through the blocks' own forward: what the fast path replaces."""
    for block in top.blocks:
        x = block(x)
    return top.conv_head(x).mean(dim=(2, 3))


def step_seconds(top: lite0.Lite0Top, features, x: torch.Tensor, y: torch.Tensor, opt: torch.optim.Optimizer,
                 bf16: bool) -> float:
    t0 = time.perf_counter()
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
        logits = top.head(features(x))
    loss = F.cross_entropy(logits.float(), y)
    opt.zero_grad(set_to_none=True)
    loss.backward()
    opt.step()
    return time.perf_counter() - t0


def measure(finetune: str, size: int, batch: int, rounds: int, bf16: bool) -> dict:
    split = SPLIT[finetune]
    net = lite0.load_pretrained(size)
    with torch.no_grad():
        # cached activations are stored contiguous (N, C, H, W), as the encoder writes them
        x = lite0.Lite0Bottom(net, split)(torch.rand(batch, 3, size, size) * 2 - 1).contiguous()
    top = lite0.Lite0Top(lite0.load_pretrained(size), split, 10).train()
    y = torch.randint(0, 10, (batch,))
    opt = torch.optim.SGD(top.parameters(), lr=0.0, momentum=0.9)  # lr 0: every round sees the same weights
    paths = {"modules": lambda z: module_features(top, z), "fast": top.forward_features}
    times: dict[str, list[float]] = {k: [] for k in paths}
    for r in range(rounds + 2):
        for name, features in (paths.items() if r % 2 == 0 else reversed(paths.items())):
            t = step_seconds(top, features, x, y, opt, bf16)
            if r >= 2:  # the first rounds warm up oneDNN's kernels
                times[name].append(t)
    med = {k: float(np.median(v)) * 1000 for k, v in times.items()}
    return {"finetune": finetune, "split": split, "image_size": size, "batch": batch, "input": list(x.shape[1:]),
            "bf16": bf16, "rounds": rounds, "ms_modules": med["modules"], "ms_fast": med["fast"],
            "speedup": med["modules"] / med["fast"]}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--finetune", default="top,deep")
    ap.add_argument("--size", type=int, default=128)
    ap.add_argument("--batch", type=int, default=128)
    ap.add_argument("--rounds", type=int, default=10)
    args = ap.parse_args()
    bf16 = autocast_precision(torch.device("cpu")) == "bf16"
    rows = [measure(f, args.size, args.batch, args.rounds, bf16) for f in args.finetune.split(",")]
    out = {"rows": rows, "machine": {"cpu": platform.processor() or platform.machine(),
                                     "threads": torch.get_num_threads(), "torch": torch.__version__}}
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "top_speed.json").write_text(json.dumps(out, indent=1))
    for r in rows:
        print(f"{r['finetune']:5s} {r['input']}: modules {r['ms_modules']:.0f} ms, fast {r['ms_fast']:.0f} ms, "
              f"x{r['speedup']:.2f}")


if __name__ == "__main__":
    main()
