"""Time the README's sample scan and score it against the injected truth.

    python bench/sample_scan.py            # writes bench/results/sample_scan.json

Runs the installed ``noiseaudit`` CLI exactly as the README does (defaults),
so interpreter start and import time are included in ``wall_s``.
"""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "report.parquet"
        cmd = ["noiseaudit", "scan", "sample_data/images", "sample_data/labels.csv", "-o", str(out), "--json"]
        t0 = time.perf_counter()
        proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, check=True)
        wall = time.perf_counter() - t0
    summary = json.loads(proc.stdout)
    result = {
        "command": " ".join(cmd[:4]) + " -o report.parquet",
        "wall_s": round(wall, 2),
        "cpu_count": os.cpu_count(),
        "machine": platform.machine(),
        "python": platform.python_version(),
        "timings": summary["timings"],
        "n_samples": summary["n_samples"],
        "n_flagged": summary["n_flagged"],
        "estimated_noise_rate": summary["estimated_noise_rate"],
        "truth": summary.get("truth"),
    }
    dest = ROOT / "bench" / "results" / "sample_scan.json"
    dest.parent.mkdir(parents=True, exist_ok=True)
    dest.write_text(json.dumps(result, indent=2) + "\n")
    json.dump(result, sys.stdout, indent=2)


if __name__ == "__main__":
    main()
