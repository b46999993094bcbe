"""Scale without a GPU: a features scan of a million rows on this CPU box.

    python bench/scale.py                          # 1,000,000 x 256 float32, 10 classes, 10% symmetric noise
    python bench/scale.py --rows 20000 --dim 64    # the 20k x 64 check (target: within 60 s on 2 cores)

Synthetic features with class structure (10 Gaussian classes whose means lie 0.35 sd apart per
dimension, so that they overlap) are written to a .npy and a labels CSV (``label`` and the truth
in ``original_label``) under bench/.data/, then scanned as a user would:
``noiseaudit scan --features x.npy labels.csv -o report.parquet --json --quiet``, in a subprocess
whose wall time and own peak RSS (``ru_maxrss``, through a small launcher) are measured. For reference, the same interpreter
importing noiseaudit and nothing else gives the import-only RSS. The trainer's per-sample state is
counted from the same objects the scan allocates: the learned rates, the signal recorder, the
targets and the epoch order. Results: bench/results/scale.json.
"""

from __future__ import annotations

import argparse
import json
import platform
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import torch

from noiseaudit.optim import PerSampleRate
from noiseaudit.signals import SignalRecorder

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "results"
DATA = ROOT / "bench" / ".data"


def make_data(rows: int, dim: int, classes: int, noise: float, seed: int, dest: Path) -> tuple[Path, Path]:
    """x.npy (float32, written a block at a time) and labels.csv with ``noise`` of the labels flipped."""
    dest.mkdir(parents=True, exist_ok=True)
    x_path, csv_path = dest / f"x_{rows}_{dim}.npy", dest / f"labels_{rows}_{dim}.csv"
    if x_path.exists() and csv_path.exists():
        return x_path, csv_path
    rng = np.random.default_rng(seed)
    means = rng.normal(0.0, 0.35, size=(classes, dim)).astype(np.float32)
    y = rng.integers(0, classes, size=rows)
    x = np.lib.format.open_memmap(x_path, mode="w+", dtype=np.float32, shape=(rows, dim))
    for start in range(0, rows, 65536):
        part = y[start:start + 65536]
        x[start:start + len(part)] = means[part] + rng.standard_normal((len(part), dim), dtype=np.float32)
    x.flush()
    del x
    given = y.copy()
    flip = rng.choice(rows, int(round(noise * rows)), replace=False)
    given[flip] = (y[flip] + rng.integers(1, classes, size=flip.size)) % classes  # never the same class
    with open(csv_path, "w") as fh:
        fh.write("label,original_label\n")
        fh.writelines(f"{g},{o}\n" for g, o in zip(given.tolist(), y.tolist()))
    return x_path, csv_path


# A small launcher between this process and the measured one: Linux carries the peak RSS of the address space a
# child leaves at exec (a copy of its parent's) into the child's ru_maxrss, so a child spawned straight from this
# process, which has held the generated features, would report at least this process's own peak.
LAUNCHER = ("import resource, subprocess, sys; r = subprocess.run(sys.argv[1:]); "
            "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss, file=sys.stderr); sys.exit(r.returncode)")


def child_run(cmd: list[str]) -> tuple[subprocess.CompletedProcess, float, float]:
    """Run ``cmd`` through the launcher; its result, wall seconds and its own peak RSS in MB."""
    t0 = time.perf_counter()
    proc = subprocess.run([sys.executable, "-c", LAUNCHER, *cmd], capture_output=True, text=True, check=False)
    wall = time.perf_counter() - t0
    *rest, peak_kb = proc.stderr.strip().splitlines() or ["0"]
    if proc.returncode not in (0, 1):
        raise SystemExit(f"{cmd[:4]} failed ({proc.returncode}): {chr(10).join(rest)[-2000:]}")
    return proc, wall, int(peak_kb) / 1024


def per_sample_state(rows: int, classes: int) -> dict[str, float]:
    """Bytes per sample the trainer holds beyond the features (learned-lr, meta auto), from its own objects."""
    rates = PerSampleRate(rows, classes)
    recorder = SignalRecorder(rows, rate_names=("learned_lr", "learned_lr_given"))
    rate_bytes = sum(t.nbytes for t in rates.log_rate_vectors())
    recorder_bytes = sum(t.nbytes for t in recorder.sums()) + sum(t.nbytes for t in recorder.last_rate.values())
    targets = torch.zeros(rows, dtype=torch.int64).nbytes
    order = torch.randperm(rows).nbytes
    out = {"rates": rate_bytes / rows, "recorder": recorder_bytes / rows, "targets": targets / rows,
           "epoch_order": order / rows}
    out["total"] = sum(out.values())
    out["prediction_probs"] = 4.0 * classes  # the final (N, K) float32 probabilities, built after training
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rows", type=int, default=1_000_000)
    ap.add_argument("--dim", type=int, default=256)
    ap.add_argument("--classes", type=int, default=10)
    ap.add_argument("--noise", type=float, default=0.1)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--extra", default="", help="more scan options, e.g. '--epochs 5'")
    args = ap.parse_args()
    x_path, csv_path = make_data(args.rows, args.dim, args.classes, args.noise, args.seed, DATA / "scale")
    features_mb = args.rows * args.dim * 4 / 2**20
    _, _, import_mb = child_run([sys.executable, "-c", "import noiseaudit.scan, noiseaudit.cli"])
    out = DATA / "scale" / f"report_{args.rows}_{args.dim}.parquet"
    cmd = [sys.executable, "-m", "noiseaudit.cli", "scan", "--features", str(x_path), str(csv_path), "-o", str(out),
           "--overwrite", "--json", "--quiet", "--seed", str(args.seed), *args.extra.split()]
    proc, wall, peak_mb = child_run(cmd)
    summary = json.loads(proc.stdout)
    state = per_sample_state(args.rows, args.classes)
    result = {
        "rows": args.rows, "dim": args.dim, "classes": args.classes, "noise": args.noise, "extra": args.extra,
        "wall_s": wall, "timings": summary["timings"], "features_mb": features_mb, "peak_rss_mb": peak_mb,
        "peak_rss_over_features": peak_mb / features_mb, "import_only_rss_mb": import_mb,
        "per_sample_state_bytes": state, "report_mb": out.stat().st_size / 2**20,
        "truth": {k: summary["truth"][k] for k in ("auroc", "average_precision", "f1", "precision", "recall")},
        "estimated_noise_rate": summary["estimated_noise_rate"],
        "machine": {"cpu": platform.processor() or platform.machine(), "threads": torch.get_num_threads(),
                    "torch": torch.__version__},
    }
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / "scale.json"
    saved = json.loads(path.read_text()) if path.exists() else {}
    saved[f"{args.rows}x{args.dim}"] = result
    path.write_text(json.dumps(saved, indent=1))
    print(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
