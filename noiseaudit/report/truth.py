"""Which labels are known to be wrong: a report's ``original_label`` or ``is_noisy`` column.

Truth may be known for some rows only (say, the ones a person checked). A blank, NaN or None
cell means "unknown" (in ``is_noisy`` also NA, n/a, null...; in ``original_label`` such words are
labels), and such rows are left out of every score rather than counted as right or wrong.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pandas as pd

from noiseaudit.errors import InputError, NoiseAuditWarning, warn

TRUE_WORDS = frozenset({"true", "1", "yes", "y", "t"})
FALSE_WORDS = frozenset({"false", "0", "no", "n", "f"})
UNKNOWN_WORDS = frozenset({"", "nan", "none", "na", "n/a", "<na>", "null"})


def truth_values(report: pd.DataFrame, *, lenient: bool = False) -> pd.Series | None:
    """Per row: True for a known wrong label, False for a known right one, NA where unknown.

    ``original_label`` != ``given_label`` decides where present (it stays true after labels are
    corrected, while a carried ``is_noisy`` describes the labels as they were injected); else
    ``is_noisy``. None when the report has neither column. An ``is_noisy`` value that is not a
    yes/no word is an :class:`InputError` naming the row; with ``lenient`` (views that show truth
    as a bonus: the scan's summary, the HTML page) a warning, and None.
    """
    if lenient:
        try:
            return truth_values(report)
        except InputError as err:
            warn(f"{err}; shown without scores against it", NoiseAuditWarning)
            return None
    if "original_label" in report.columns:
        original = report["original_label"].map(_label_text)
        given = report["given_label"].map(_label_text)
        wrong = pd.Series((original != given).to_numpy(), index=report.index, dtype="boolean")
        return wrong.mask(original.isna())
    if "is_noisy" in report.columns:
        return yes_no(report["is_noisy"])
    return None


def known_truth(report: pd.DataFrame, *, lenient: bool = False) -> tuple[pd.DataFrame, np.ndarray] | None:
    """The rows of ``report`` whose truth is known (index reset), and their wrong-label mask;
    None when the report has no truth column (see :func:`truth_values` for ``lenient``)."""
    truth = truth_values(report, lenient=lenient)
    return None if truth is None else split_known(report, truth)


def split_known(report: pd.DataFrame, truth: pd.Series) -> tuple[pd.DataFrame, np.ndarray]:
    """The rows of ``report`` where ``truth`` (from :func:`truth_values`) is known (index reset), and
    their wrong-label mask."""
    known = truth.notna().to_numpy()
    rows = report if known.all() else report[known].reset_index(drop=True)
    return rows, truth[known].to_numpy(dtype=bool)


def _label_text(value: object) -> str | None:
    """A label as text for comparison (3, 3.0 and "3" alike); None for a missing or blank one (a
    class may well be called "none", so only real gaps count)."""
    if value is None or value is pd.NA or (isinstance(value, (float, np.floating)) and np.isnan(value)):
        return None
    if isinstance(value, (float, np.floating)) and float(value).is_integer():
        return str(int(value))
    text = str(value).strip()
    whole = _WHOLE.fullmatch(text)  # "3.0" written as text (a CSV of floats): the class 3, as the float 3.0 is
    return (whole.group(1) or text) if whole else text or None


_WHOLE = re.compile(r"([+-]?\d+)\.0*")


def yes_no(column: pd.Series, path: str | Path | None = None, first_line: int = 2, *,
           lines: list[int] | None = None) -> pd.Series:
    """An ``is_noisy`` column as True / False / NA. A value that is not a yes/no word is an
    :class:`InputError` naming its line of ``path`` (the row at 0-based position k on ``lines[k]``,
    by default on line k + first_line), or its report row without one."""
    if pd.api.types.is_bool_dtype(column):
        return column.astype("boolean")
    lowered = column.map(_label_text).str.lower()
    words = lowered.where(~lowered.isin(UNKNOWN_WORDS))
    unreadable = words.notna() & ~words.isin(TRUE_WORDS | FALSE_WORDS)
    if unreadable.any():
        pos = int(np.flatnonzero(unreadable.to_numpy())[0])
        where = "" if path is not None else f" (report row {pos + 1})"
        raise InputError(f"is_noisy: cannot read {column.iloc[pos]!r}{where} as true or false; "
                         "use true/false, 1/0 or yes/no, blank where unknown",
                         path=path, line=None if path is None else lines[pos] if lines else pos + first_line)
    return words.isin(TRUE_WORDS).astype("boolean").mask(words.isna())
