"""One text format per quantity, shared by every command's output and the HTML page.

=====================  ==========================================  ==================
quantity               format                                      examples
=====================  ==========================================  ==================
score in [0, 1]        three decimals (precision, recall, F1,      ``0.838``, ``>0.999``
                       AUROC, AP, precision@k, suspicion)
fraction, probability  a percentage with one decimal (noise         ``22.1%``, ``>99.9%``
                       rates, shares, a model's probabilities)
learned rate           three significant digits, zeros kept        ``0.570``, ``1.00``, ``12.3``
loss                   three decimals                              ``1.857``
duration               seconds, then minutes and seconds            ``4.2 s``, ``7 min 35 s``
=====================  ==========================================  ==================

A value strictly between 0 and 1 is never shown as one of the ends (``1.000``, ``100.0%``):
it reads ``>0.999`` or ``<0.1%`` instead. Missing values (None, NaN) read ``n/a``.
"""

from __future__ import annotations

import math
from typing import Any

MISSING = "n/a"


def _missing(value: float | None) -> bool:
    return value is None or not math.isfinite(float(value))


def _bounded(value: float, scale: float, decimals: int, suffix: str) -> str:
    """``value`` in [0, 1] times ``scale`` at ``decimals``; an inside value that would round to an end says so."""
    text = f"{value * scale:.{decimals}f}"
    step = 10.0 ** -decimals
    if 0.0 < value < 1.0:
        if float(text) >= scale:
            return f">{scale - step:.{decimals}f}{suffix}"
        if float(text) <= 0.0:
            return f"<{step:.{decimals}f}{suffix}"
    return text + suffix


def score(value: float | None) -> str:
    """A score in [0, 1] (precision, recall, F1, AUROC, AP, precision@k, suspicion): ``0.838``."""
    return MISSING if _missing(value) else _bounded(float(value), 1.0, 3, "")


def percent(value: float | None) -> str:
    """A fraction of samples or a probability: ``22.1%``."""
    return MISSING if _missing(value) else _bounded(float(value), 100.0, 1, "%")


def learned_rate(value: float | None) -> str:
    """A learned rate (relative to the base rate, in [0.01, 100]): ``0.570``, ``1.00``, ``12.3``, ``100``."""
    if _missing(value):
        return MISSING
    return f"{float(value):#.3g}".rstrip(".")


def loss(value: float | None) -> str:
    """A training loss: ``1.857``."""
    return MISSING if _missing(value) else f"{float(value):.3f}"


def duration(seconds: float | None) -> str:
    """Elapsed or remaining time: ``4.2 s``, ``41 s``, ``7 min 35 s``, ``1 h 02 min``."""
    if _missing(seconds):
        return MISSING
    s = max(0.0, float(seconds))
    if s < 9.95:
        return f"{s:.1f} s"
    whole = int(round(s))
    if whole < 60:
        return f"{whole} s"
    if whole < 3600:
        return f"{whole // 60} min {whole % 60:02d} s"
    return f"{whole // 3600} h {whole % 3600 // 60:02d} min"


def plural(n: int, word: str) -> str:
    """``n`` and ``word``, with an s unless ``n`` is 1: "1 image", "3 images"."""
    return f"{n} {word}{'' if n == 1 else 's'}"


def skipped_counts(left: list[tuple[str, str]], examples: int = 3) -> dict[str, Any]:
    """The summary keys of the images left out, from their (path, status) pairs in input order."""
    by_status: dict[str, int] = {}
    for _, status in left:
        by_status[status] = by_status.get(status, 0) + 1
    return {"n_skipped": len(left), "skipped_by_status": by_status,
            "skipped_examples": [{"path": p, "status": s} for p, s in left[:examples]]}


def skipped_images(summary: dict[str, Any], where: str) -> str:
    """The summary line of a command that left bad images out (``n_skipped``, ``skipped_by_status``), which are
    in ``where`` ("the report") with their status."""
    counts = ", ".join(f"{v} {k}" for k, v in summary["skipped_by_status"].items())
    examples = summary.get("skipped_examples") or []
    named = ", ".join(f"{e['path']!r} ({e['status']})" for e in examples)
    named += ", ..." if len(examples) < summary["n_skipped"] else ""
    return (f"Skipped {plural(summary['n_skipped'], 'bad image')} ({counts}){': ' + named if named else ''}; "
            f"{'they are' if summary['n_skipped'] > 1 else 'it is'} in {where} with that status.")


def quoted(text: object) -> str:
    """``text`` in quotes as a user typed it, for messages: ``'C:\\data\\a.png'`` with single backslashes, where
    ``repr`` doubles them; ``repr`` itself where the text holds what does not print (a tab, a non-breaking space,
    a control character), so that it shows."""
    text = str(text)
    if not text.isprintable() or ("'" in text and '"' in text):
        return repr(text)
    return f'"{text}"' if "'" in text else f"'{text}'"
