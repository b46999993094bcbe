"""Speed of the fine-tuned top: the channels-last forward (models/mbconv.py) against the blocks' own.

    python bench/top_speed.py                     # 128 px, --finetune top and deep, batch 128, bf16 where native

One training step (forward, cross-entropy, backward, SGD step) of ``Lite0Top`` on a batch of
cached activations, timed alternately through the blocks' own modules (eval-mode BatchNorm,
``nn.Conv2d``) and through ``Lite0Top.forward_features`` (1x1 convolutions as matmuls, the frozen
BatchNorm folded, dense 5x5 depthwise kernels on small maps), in interleaved rounds so that
both see the same machine. Reports the median milliseconds of each and their ratio.
Results: bench/results/top_speed.json.

    python bench/top_speed.py --dense --sizes 128,160,192,224   # how large a map the dense depthwise form pays on

``--dense`` times the fast path of ``--finetune deep`` alone, alternately with the dense 5x5
depthwise form limited to 8x8 maps (64 positions, ``mbconv.DENSE_MAX_POSITIONS``) and up to
``mbconv.DENSE_MAX_POSITIONS_BF16_CPU``, at each input size, in bfloat16 where the CPU runs it
natively and in float32 (bench/results/top_speed_dense.json).
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
from noiseaudit.models import mbconv

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


def setup(finetune: str, size: int, batch: int) -> tuple[lite0.Lite0Top, torch.Tensor, torch.Tensor,
                                                         torch.optim.Optimizer]:
    net = lite0.load_pretrained(size)
    with torch.no_grad():
        # cached activations are stored contiguous (N, C, H, W), as the encoder writes them
        x = lite0.Lite0Bottom(net, SPLIT[finetune])(torch.rand(batch, 3, size, size) * 2 - 1).contiguous()
    top = lite0.Lite0Top(lite0.load_pretrained(size), SPLIT[finetune], 10).train()
    y = torch.randint(0, 10, (batch,))
    opt = torch.optim.SGD(top.parameters(), lr=0.0, momentum=0.9)  # lr 0: every round sees the same weights
    return top, x, y, opt


def interleaved(variants: dict, rounds: int, step) -> dict[str, float]:
    """Median milliseconds of ``step(variant)`` per variant, alternating their order each round."""
    times: dict[str, list[float]] = {k: [] for k in variants}
    for r in range(rounds + 2):
        for name, variant in (variants.items() if r % 2 == 0 else reversed(variants.items())):
            t = step(variant)
            if r >= 2:  # the first rounds warm up oneDNN's kernels
                times[name].append(t)
    return {k: float(np.median(v)) * 1000 for k, v in times.items()}


def measure(finetune: str, size: int, batch: int, rounds: int, bf16: bool) -> dict:
    top, x, y, opt = setup(finetune, size, batch)
    paths = {"modules": lambda z: module_features(top, z), "fast": top.forward_features}
    med = interleaved(paths, rounds, lambda features: step_seconds(top, features, x, y, opt, bf16))
    return {"finetune": finetune, "split": SPLIT[finetune], "image_size": size, "batch": batch,
            "input": list(x.shape[1:]), "bf16": bf16, "rounds": rounds, "ms_modules": med["modules"],
            "ms_fast": med["fast"], "speedup": med["modules"] / med["fast"]}


def measure_dense(size: int, batch: int, rounds: int, bf16: bool) -> dict:
    """The deep top's fast step with the dense depthwise form up to 8x8 maps against up to 14x14 ones."""
    top, x, y, opt = setup("deep", size, batch)
    small, large = mbconv.DENSE_MAX_POSITIONS, mbconv.DENSE_MAX_POSITIONS_BF16_CPU

    def step(limit: int) -> float:
        saved = mbconv.dense_limit
        mbconv.dense_limit = lambda _: limit
        try:
            return step_seconds(top, top.forward_features, x, y, opt, bf16)
        finally:
            mbconv.dense_limit = saved

    med = interleaved({f"dense_to_{small}": small, f"dense_to_{large}": large}, rounds, step)
    return {"image_size": size, "batch": batch, "input": list(x.shape[1:]), "bf16": bf16, "rounds": rounds,
            **{f"ms_{k}": v for k, v in med.items()},
            "speedup": med[f"dense_to_{small}"] / med[f"dense_to_{large}"]}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--finetune", default="top,deep")
    ap.add_argument("--size", type=int, default=128)
    ap.add_argument("--batch", type=int, default=128)
    ap.add_argument("--rounds", type=int, default=10)
    ap.add_argument("--dense", action="store_true", help="compare the dense depthwise limits (deep) instead")
    ap.add_argument("--sizes", default="128,160,192,224", help="input sizes for --dense")
    args = ap.parse_args()
    bf16 = autocast_precision(torch.device("cpu")) == "bf16"
    machine = {"cpu": platform.processor() or platform.machine(), "threads": torch.get_num_threads(),
               "torch": torch.__version__}
    if args.dense:
        rows = [measure_dense(int(size), args.batch, args.rounds, precision) for precision in sorted({bf16, False})
                for size in args.sizes.split(",")]
        (RESULTS / "top_speed_dense.json").write_text(json.dumps({"rows": rows, "machine": machine}, indent=1))
        for r in rows:
            print(json.dumps(r))
        return
    rows = [measure(f, args.size, args.batch, args.rounds, bf16) for f in args.finetune.split(",")]
    out = {"rows": rows, "machine": machine}
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "top_speed.json").write_text(json.dumps(out, indent=1))
    for r in rows:
        print(f"{r['finetune']:5s} {r['input']}: modules {r['ms_modules']:.0f} ms, fast {r['ms_fast']:.0f} ms, "
              f"x{r['speedup']:.2f}")


if __name__ == "__main__":
    main()
