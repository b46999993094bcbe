"""Which input size for the backbone: ranking quality against cost at 128, 160 and 224 px.

    python bench/backbone_size.py                       # CIFAR-10N worse labels, 10k photos

For each size, one default scan of the first 10,000 CIFAR-10 training photos with CIFAR-10N's
``worse`` labels, run through the CLI with ``--image-size S`` and an empty cache: its AP and
AUROC, the seconds spent decoding and running the frozen part (cold ``load_s``), and the
training seconds (the trained top sees an S/32 x S/32 map, so its cost grows with S²).
Writes bench/results/backbone_size.json. Needs ``pip install -e ".[pretrained]"``.
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

from real import cli_scan, extract, report_metrics, write_labels

RESULTS = Path(__file__).resolve().parent / "results"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", default="128,160,224")
    ap.add_argument("--n", type=int, default=10_000)
    ap.add_argument("--labels", default="worse")
    ap.add_argument("--images", type=Path, help="an already extracted copy of the CIFAR-10 JPEGs")
    ap.add_argument("--out", type=Path, default=RESULTS / "backbone_size.json")
    args = ap.parse_args()
    runs = {}
    with tempfile.TemporaryDirectory(prefix="noiseaudit-size-") as tmp:
        work = Path(tmp)
        images = args.images or extract(work / "cifar10")
        csv = write_labels(images, args.n, args.labels, work)
        for size in map(int, args.sizes.split(",")):
            out = work / f"{size}.parquet"
            _, wall = cli_scan(images, csv, out, work / f"cache{size}", "--backbone", "efficientnet-lite0",
                               "--image-size", str(size))
            m = report_metrics(out)
            runs[size] = {"average_precision": m["average_precision"], "auroc": m["auroc"], "f1": m["f1"],
                          "load_s": m["timings"]["load_s"], "train_s": m["timings"]["train_s"], "wall_s": wall}
            print(size, runs[size], flush=True)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"n": args.n, "labels": args.labels, "runs": runs}, indent=1))


if __name__ == "__main__":
    main()
