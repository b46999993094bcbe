"""Start-up time of the commands that train nothing: ``noiseaudit --help`` and ``noiseaudit show REPORT``; and of
``noiseaudit scan`` refusing a mistyped labels CSV or an option out of range (exit 2), which checks both before it
loads torch.

    python bench/startup.py                          # this checkout, 9 runs of each
    python bench/startup.py --label before --source /tmp/old-checkout

Each command runs as a fresh process, as a user's shell starts it, ``--runs`` times after one
untimed warm-up (so the files are in the page cache, as on a second call); the figure is the
median wall time, with the minimum and maximum beside it. One more run with ``-X importtime``
records which heavy libraries the command imported (torch, torchvision, sklearn, scipy,
matplotlib). ``show`` reads a 4,000-row report written by this script (the sample scan's size).
The target is under 1 s for both, on 2 cores.

``--source DIR`` measures another checkout (its package first on ``PYTHONPATH``, this venv's
libraries), so a before/after pair runs on the same machine. Results are merged by label into
bench/results/startup.json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

RESULTS = Path(__file__).resolve().parent / "results"
HEAVY = ("torch", "torchvision", "sklearn", "scipy", "matplotlib")
TARGET_S = 1.0


def fake_report(path: Path, n: int = 4000) -> Path:
    """A report of ``n`` samples with every column a scan writes (values made up; the shape is what counts)."""
    from noiseaudit.report.io import write_report

    rng = np.random.default_rng(0)
    classes = [f"class{k}" for k in range(10)]
    lr = np.exp(rng.normal(0, 0.3, n))
    rank = np.empty(n, dtype=np.int64)
    rank[np.argsort(lr)] = np.arange(1, n + 1)
    given = rng.integers(0, 10, n)
    frame = pd.DataFrame({
        "sample_id": np.arange(n), "path": [f"img_{i:05d}.png" for i in range(n)],
        "given_label": [classes[g] for g in given], "predicted_label": [classes[g] for g in given],
        "pred_prob": rng.random(n).astype(np.float32), "given_prob": rng.random(n).astype(np.float32),
        "suggested_label": [classes[(g + 1) % 10] for g in given], "suggested_prob": rng.random(n).astype(np.float32),
        "learned_lr": lr.astype(np.float32), "learned_lr_mean": lr.astype(np.float32),
        "loss": rng.random(n).astype(np.float32), "margin": rng.normal(size=n).astype(np.float32), "rank": rank,
        "suspicion": (1 - rank / n).astype(np.float32), "is_suspect": rank <= n // 5, "status": "ok"})
    write_report(frame, {"classes": classes, "n_samples": n}, path)
    return path


def command(source: Path | None) -> tuple[list[str], dict[str, str]]:
    """How to start the CLI: the venv's entry point for this checkout, ``python -m`` for another."""
    env = dict(os.environ)
    if source is None:
        script = Path(sys.executable).with_name("noiseaudit")
        return ([str(script)] if script.exists() else [sys.executable, "-m", "noiseaudit.cli"]), env
    env["PYTHONPATH"] = os.pathsep.join([str(source), env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    return [sys.executable, "-m", "noiseaudit.cli"], env


def timed(argv: list[str], env: dict[str, str], cwd: Path, code: int = 0) -> float:
    t0 = time.perf_counter()
    proc = subprocess.run(argv, env=env, cwd=cwd, capture_output=True, text=True)
    wall = time.perf_counter() - t0
    if proc.returncode != code:
        raise SystemExit(f"{' '.join(argv)} failed ({proc.returncode}): {proc.stderr.strip()}")
    return wall


def heavy_imports(cli_args: list[str], env: dict[str, str], cwd: Path) -> list[str]:
    """The heavy top-level packages ``noiseaudit CLI_ARGS`` imports (from ``python -X importtime``)."""
    argv = [sys.executable, "-X", "importtime", "-m", "noiseaudit.cli", *cli_args]
    err = subprocess.run(argv, env=env, cwd=cwd, capture_output=True, text=True).stderr
    names = {line.rsplit("|", 1)[-1].strip() for line in err.splitlines() if line.startswith("import time:")}
    return [h for h in HEAVY if h in names]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--runs", type=int, default=9)
    ap.add_argument("--label", default="after")
    ap.add_argument("--source", type=Path, default=None, help="another checkout to measure (default: this one)")
    ap.add_argument("--out", type=Path, default=RESULTS / "startup.json")
    args = ap.parse_args()
    base, env = command(args.source)
    figures = {}
    with tempfile.TemporaryDirectory(prefix="noiseaudit-startup-") as tmp:
        cwd = Path(tmp)  # not a checkout: `python -m` puts the working directory first on sys.path
        report = fake_report(cwd / "report.parquet")
        (cwd / "images").mkdir()
        (cwd / "labels.csv").write_text("path,label\na.png,x\n")
        for name, extra, code in (("--help", ["--help"], 0), ("show REPORT", ["show", str(report)], 0),
                                  ("scan, a mistyped CSV", ["scan", "images", "labls.csv"], 2),
                                  ("scan --epochs 0", ["scan", "images", "labels.csv", "--epochs", "0"], 2)):
            argv = base + extra
            timed(argv, env, cwd, code)  # warm-up: files in the page cache
            walls = [timed(argv, env, cwd, code) for _ in range(args.runs)]
            figures[name] = {"median_s": round(statistics.median(walls), 3), "min_s": round(min(walls), 3),
                             "max_s": round(max(walls), 3), "runs": args.runs,
                             "under_target": statistics.median(walls) < TARGET_S,
                             "heavy_imports": heavy_imports(extra, env, cwd)}
            print(f"{args.label}: noiseaudit {name}: median {figures[name]['median_s']:.3f} s "
                  f"(min {figures[name]['min_s']:.3f}, max {figures[name]['max_s']:.3f}; {args.runs} runs); "
                  f"imports {', '.join(figures[name]['heavy_imports']) or 'none of ' + '/'.join(HEAVY)}", flush=True)
    results = json.loads(args.out.read_text()) if args.out.exists() else {}
    results["target_s"] = TARGET_S
    results[args.label] = {"machine": f"{platform.machine()}, {os.cpu_count()} cores",
                           "load_average_1min": round(os.getloadavg()[0], 2),
                           "source": "this checkout" if args.source is None else str(args.source), **figures}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=1) + "\n")


if __name__ == "__main__":
    main()
