"""Which labels are known to be wrong: a report's ``original_label`` or ``is_noisy`` column.

Truth may be known for some rows only (say, the ones a person checked). A blank, NaN or None
cell means "unknown" (in ``is_noisy`` also NA, n/a, null...; in ``original_label`` such words are
labels), and such rows are left out of every score rather than counted as right or wrong.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd

from noiseaudit.errors import InputError, NoiseAuditWarning, warn
from noiseaudit.formats import plural

TRUE_WORDS = frozenset({"true", "1", "yes", "y", "t"})
FALSE_WORDS = frozenset({"false", "0", "no", "n", "f"})
UNKNOWN_WORDS = frozenset({"", "nan", "none", "na", "n/a", "<na>", "null"})


def truth_values(report: pd.DataFrame, *, lenient: bool = False, source: str | None = None) -> pd.Series | None:
    """Per row: True for a known wrong label, False for a known right one, NA where unknown.

    ``original_label`` != ``given_label`` decides where present (it stays true after labels are
    corrected, while a carried ``is_noisy`` describes the labels as they were injected); else
    ``is_noisy``. None when the report has neither column. An ``is_noisy`` value that is not a
    yes/no word is an :class:`InputError` naming the row; with ``lenient`` (views that show truth
    as a bonus: the scan's summary, the HTML page) a warning, and None. True labels that name the classes another
    way are refused too (:func:`check_truth_classes`); ``source`` names the file they came from, if not the report.
    """
    if lenient:
        try:
            return truth_values(report, source=source)
        except InputError as err:
            warn(f"{err}; shown without scores against it", NoiseAuditWarning)
            return None
    if "original_label" in report.columns:
        original = report["original_label"].map(_label_text)
        given = report["given_label"].map(_label_text)
        # the classes: the given labels, and the metadata's where a report frame carries it (a subset may lack some)
        classes = pd.concat([given, pd.Series((report.attrs.get("noiseaudit") or {}).get("classes") or [],
                                              dtype=object).map(_label_text)])
        check_truth_classes(original, classes, lambda i: f" for {report['path'].iloc[i]!r}" if "path" in report else "",
                            path=source)
        wrong = pd.Series((original != given).to_numpy(), index=report.index, dtype="boolean")
        return wrong.mask(original.isna())
    if "is_noisy" in report.columns:
        return yes_no(report["is_noisy"])
    return None


def check_truth_classes(original: pd.Series, classes: pd.Series, where: Callable[[int], str],
                        path: str | None = None) -> None:
    """Refuse true labels (``original``, as :func:`_label_text`) that name the ``classes`` another way, or
    none of them: 'T-Shirt' for 'T-shirt', class indices for names. Each would count as a wrong label, and the
    scores would look plausible and be wrong. A few labels outside the classes (a sample of no class the labels
    know) are counted as wrong, with a warning. ``where(i)`` names row ``i`` in a message, ``path`` the file."""
    from noiseaudit.data.checks import twin_key

    classes = set(classes.dropna())
    named = original.notna().to_numpy()
    foreign = named & ~original.isin(classes).to_numpy()
    if not foreign.any():
        return
    twins = {twin_key(c): c for c in classes}
    rows = np.flatnonzero(foreign)
    for i in rows:
        twin = twins.get(twin_key(original.iloc[i]))
        if twin is not None:
            raise InputError(f"original_label {original.iloc[i]!r}{where(i)} is the class {twin!r} spelt another way; "
                             f"write the true labels as the given ones are, or every such row counts as a wrong "
                             "label", path=path)
    first = rows[0]
    shown = ", ".join(repr(c) for c in sorted(classes, key=str)[:6]) + (", …" if len(classes) > 6 else "")
    if len(rows) == named.sum():
        raise InputError(f"no original_label is a class of the report (the first, {original.iloc[first]!r}"
                         f"{where(first)}; the classes: {shown}): the true labels must name the classes as the given "
                         "labels do", path=path)
    where_file = f"{path}: " if path else ""
    warn(f"{where_file}{plural(len(rows), 'original_label value')} name{'s' * (len(rows) == 1)} no class of the "
         f"report (such as "
         f"{original.iloc[first]!r}{where(first)}); they count as wrong labels whose true class is none of its",
         NoiseAuditWarning)


def known_truth(report: pd.DataFrame, *, lenient: bool = False,
                source: str | None = None) -> tuple[pd.DataFrame, np.ndarray] | None:
    """The rows of ``report`` whose truth is known (index reset), and their wrong-label mask;
    None when the report has no truth column (see :func:`truth_values` for ``lenient`` and ``source``)."""
    truth = truth_values(report, lenient=lenient, source=source)
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
