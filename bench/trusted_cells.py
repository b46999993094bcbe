"""Detection rows with a trusted set, for ``bench/detect.py --trusted 0.01,0.02,0.05``.

For each (dataset, noise, seed) cell of the matrix: the same injected noise, then a random
fraction of the samples (nested: the 1% are among the 2%, those among the 5%) is trusted,
i.e. carries its true label and is marked as in ``--trusted``. The learned-rate trainer runs
once without a trusted set and once per fraction; every AP is taken on the rows that are
not trusted in that fraction, the run without a trusted set included, so the two are
compared on the same samples. Results: bench/results/detect_trusted.json and .md.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch
from common import NOISE_CELLS, make_noise, run

from noiseaudit.metrics import precision_recall_f1, ranking_metrics
from noiseaudit.report.threshold import choose_threshold
from noiseaudit.config import TRUSTED_WEIGHT
from noiseaudit.scan import ranking_score
from noiseaudit.train import TrainConfig


def trusted_mask(n: int, frac: float, seed: int) -> np.ndarray:
    """The first round(frac * n) of a seeded permutation: nested across fractions."""
    mask = np.zeros(n, dtype=bool)
    mask[np.random.default_rng(1000 + seed).permutation(n)[: int(round(frac * n))]] = True
    return mask


def mean_aps(cells: list[dict], key) -> dict[str, dict]:
    """Per group of cells (``key(cell)``) and score: mean AP, its mean difference from ``rate_none`` on the
    same seeds, and the seeds (cells without a score are left out of its mean)."""
    out: dict[str, dict] = {}
    for group in dict.fromkeys(key(c) for c in cells):
        aps = [c["ap"] for c in cells if key(c) == group]
        out[group] = {}
        for k in dict.fromkeys(k for a in aps for k in a):
            have = [a for a in aps if k in a]
            out[group][k] = {"mean": float(np.mean([a[k] for a in have])), "seeds": len(have),
                             "delta_vs_rate_none": float(np.mean([a[k] - a["rate_none"] for a in have]))}
    return out


def _score(truth: np.ndarray, result, labels: np.ndarray, keep: np.ndarray, seed: int) -> dict:
    score = ranking_score(result.signals, "learned-lr")[keep]
    m = ranking_metrics(truth[keep], -score)
    disagrees = (result.probs.argmax(1) != labels)[keep]
    t = choose_threshold(score, result.signals["loss"][keep], disagrees, seed=seed)
    flagged = np.zeros(keep.sum(), dtype=bool)
    flagged[t.order[: t.n_flagged]] = True
    return {"average_precision": m["average_precision"], "auroc": m["auroc"],
            "f1": precision_recall_f1(truth[keep], flagged)[2], "estimated_noise_rate": t.estimated_noise_rate}


def run_trusted_cell(name: str, x: np.ndarray, y: np.ndarray, noise: str, seed: int, epochs: int,
                     fracs: list[float], device: str, weight: float = TRUSTED_WEIGHT) -> dict:
    noisy = make_noise(x, y, noise, seed, device)
    base = run(x, noisy.labels, TrainConfig(epochs=epochs), seed, device)
    out = {"dataset": name, "noise": noise, "seed": seed, "weight": weight, "fracs": {},
           "base_all": _score(noisy.is_noisy, base.result, noisy.labels, np.ones(len(y), dtype=bool), seed)}
    for frac in fracs:
        trusted = trusted_mask(len(y), frac, seed)
        labels = np.where(trusted, y, noisy.labels)  # verified rows carry the truth
        truth = labels != y
        r = run(x, labels, TrainConfig(epochs=epochs, trusted_weight=weight), seed, device,
                trusted=torch.from_numpy(trusted))
        keep = ~trusted
        out["fracs"][str(frac)] = {"base": _score(truth, base.result, noisy.labels, keep, seed),
                                   "trusted": _score(truth, r.result, labels, keep, seed),
                                   "seconds": r.seconds, "base_seconds": base.seconds}
    return out


def summarise_trusted(cells: list[dict]) -> str:
    """Markdown: AP on the untrusted rows without and with each trusted fraction (mean over seeds), with the
    issue's floors (+0.03 on instance and 40% pair-flip noise at 2%, no loss beyond 0.005 on symmetric)."""
    groups: dict[tuple[str, str, float], list[dict]] = {}
    for c in cells:
        groups.setdefault((c["dataset"], c["noise"], c["weight"]), []).append(c)
    fracs = sorted({float(f) for c in cells for f in c["fracs"]})
    head = ("| dataset | noise | w | seeds | AP, none trusted | " +
            " | ".join(f"AP {f:.0%} trusted (Δ)" for f in fracs) + " | floor at 2% |")
    lines = [head, "|" + "---|" * (head.count("|") - 1)]
    for (ds, noise, w), cs in sorted(groups.items()):
        cells_md, delta2 = [], None
        for f in fracs:
            have = [c["fracs"][str(f)] for c in cs if str(f) in c["fracs"]]
            if not have:
                cells_md.append("-")
                continue
            d = float(np.mean([h["trusted"]["average_precision"] - h["base"]["average_precision"] for h in have]))
            ap = float(np.mean([h["trusted"]["average_precision"] for h in have]))
            cells_md.append(f"{ap:.3f} ({d:+.3f})")
            if f == 0.02:
                delta2 = d
        kind, rate = NOISE_CELLS[noise]
        need = -0.005 if kind == "symmetric" else 0.03 if (kind == "instance" or rate >= 0.4) else None
        floor = "-" if need is None or delta2 is None else f"≥ {need:+.3f} {'ok' if delta2 >= need else 'MISSED'}"
        base = float(np.mean([c["base_all"]["average_precision"] for c in cs]))
        lines.append(f"| {ds} | {noise} | {w} | {len(cs)} | {base:.3f} | " + " | ".join(cells_md) + f" | {floor} |")
    return "\n".join(lines) + "\n"


def add_trusted(datasets: list[str], noises: list[str], seeds: list[int], fracs: list[float], epochs: dict,
                load, device: str, out: Path, weight: float = TRUSTED_WEIGHT) -> None:
    """Run the trusted rows for every selected cell not yet in ``out`` (merged by cell and weight)."""
    store = json.loads(out.read_text()) if out.exists() else {}
    for name in datasets:
        x, y = load(name)
        for noise in noises:
            for seed in seeds:
                key = f"{name}/{noise}/{seed}/{weight}"
                if key in store and all(str(f) in store[key]["fracs"] for f in fracs):
                    continue
                store[key] = run_trusted_cell(name, x, y, noise, seed, epochs[name], fracs, device, weight)
                fr = store[key]["fracs"]
                print(key, {f: round(v["trusted"]["average_precision"] - v["base"]["average_precision"], 4)
                            for f, v in fr.items()}, flush=True)
                out.write_text(json.dumps(store, indent=1))
                out.with_suffix(".md").write_text(summarise_trusted(list(store.values())))
