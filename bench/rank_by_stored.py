"""``--rank-by`` on the stored reports of earlier bench/real.py runs, without training again.

    python bench/rank_by_stored.py --work /tmp/realbench      # the --work folder those runs kept

A scan's report holds everything the ranking uses (``learned_lr``, ``given_prob``, ``loss``) and
its count (``is_suspect``), so the mean rank ``--rank-by rate+prob`` gives can be recomputed
with the scan's own functions: the sizes and ``--finetune top`` rows of results/real.md that were
measured while the rate ranked alone. Checked against fresh scans: on the 10k rows rerun with
``--rank-by auto`` the recomputed AP and F1 agree to 4 decimals. Results:
bench/results/rank_by_stored.json.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import pandas as pd

from noiseaudit.metrics import precision_recall_f1, ranking_metrics
from noiseaudit.report.threshold import rank_order, rank_sum

RESULTS = Path(__file__).resolve().parent / "results"


def rescored(report: pd.DataFrame) -> dict[str, float]:
    """AP of the stored ranking, of each signal, and of the mean rank; F1 of the same count both ways."""
    r = report[report["status"] == "ok"]
    truth = (r["given_label"].astype(str) != r["original_label"].astype(str)).to_numpy()
    mixed = rank_sum(np.log(r["learned_lr"].to_numpy(np.float64)), r["given_prob"].to_numpy(np.float64))
    order = rank_order(mixed, r["loss"].to_numpy(np.float64))
    n = int(r["is_suspect"].sum())
    flagged = np.zeros(len(r), dtype=bool)
    flagged[order[:n]] = True
    suspect = np.empty(len(r))
    suspect[order] = -np.arange(len(r), dtype=np.float64)  # higher = more suspect
    ap = lambda s: ranking_metrics(truth, s)["average_precision"]  # noqa: E731
    f1 = lambda f: precision_recall_f1(truth, f)[2]  # noqa: E731
    return {"stored_ranking": ap(-r["rank"].to_numpy(np.float64)), "rate": ap(-r["learned_lr"].to_numpy(np.float64)),
            "given_prob": ap(-r["given_prob"].to_numpy(np.float64)), "mean_rank": ap(suspect),
            "mean_rank_auroc": ranking_metrics(truth, suspect)["auroc"],
            "f1_stored": f1(r["is_suspect"].to_numpy(bool)), "f1_mean_rank": f1(flagged), "n": len(r)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--work", type=Path, required=True, help="bench/real.py's --work folder")
    ap.add_argument("--out", type=Path, default=RESULTS / "rank_by_stored.json")
    args = ap.parse_args()
    out = {}
    for path in sorted(args.work.glob("report_*.parquet")):
        out[path.stem.removeprefix("report_")] = row = rescored(pd.read_parquet(path))
        print(path.stem, {k: round(v, 4) for k, v in row.items()}, flush=True)
    args.out.write_text(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
