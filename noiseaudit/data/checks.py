"""Is this the dataset the user meant? Checks of a :class:`LabeledSource` before anything is decoded.

A scan of the wrong folder level or the wrong label column trains happily on nonsense: a folder
one level too high gives "classes" named after its subfolders, one holding nearly every image;
a near-constant column gives one label for almost every row; a typo gives a class of one. Each
is refused with a line saying what was found and what was probably meant, unless the user
passes ``force`` (then it is a warning):

- an ImageFolder whose class folders hold images in subfolders;
- classes :data:`MAX_IMBALANCE` times apart or more where the largest holds most rows (a near-constant column;
  a long tail of small classes beside a few large ones, none holding most rows, is real data);
- a class of fewer than :data:`MIN_CLASS` samples where the largest holds at least
  :data:`TINY_AGAINST` times as many (a typo; a small dataset of small classes is fine);
- two classes whose names differ only in letter case, spaces, ``-`` or ``_`` (``Coat`` and ``coat``,
  ``T-shirt`` and ``t_shirt``: one class split in two, as when two annotators' files are joined);
- a label that is a missing value written as text (``nan``, ``null``, ``<NA>``: what pandas writes for a
  missing label after ``astype(str)``), which would train as a class of its own.
"""

from __future__ import annotations

import re
import shlex
import unicodedata
from collections import Counter
from decimal import Decimal, InvalidOperation
from pathlib import PurePosixPath

from noiseaudit.data.source import LabeledSource
from noiseaudit.errors import InputError, NoiseAuditWarning, in_memory, option, warn
from noiseaudit import formats

MISSING_WORDS = frozenset({"nan", "<na>", "nat", "null", "undefined"})  # casefolded; "none" can be a real class
MIN_CLASS = 5
TINY_AGAINST = 10
MAX_IMBALANCE = 100
MOST = 0.5  # ... and the largest holds more than this share of the rows
MIN_UNIQUE = 10  # this many samples or more, each with a label of its own, look like an id column


def check_source(source: LabeledSource, force: bool = False) -> None:
    """Raise an :class:`InputError` for the first problem found (a warning for each with ``force``)."""
    if not source.labels:
        return
    problems = [nested_folders(source)] if source.from_folders else []
    # twin classes first: a class split in two by its spelling is also a tiny class and a lopsided one
    problems += [one_per_class(source), missing_as_text(source), twin_classes(source), imbalance(source),
                 tiny_class(source)]
    problems = [p for p in problems if p is not None]
    if not problems:
        return
    if not force:
        raise InputError(f"{problems[0]}; pass {option('force', True)} to scan anyway", path=source.origin)
    for problem in problems:
        warn(f"{source.origin}: {problem} (going on: {option('force', True)})", NoiseAuditWarning)


def _names(items: list[str], most: int = 4) -> str:
    return ", ".join(items) if len(items) <= most else ", ".join(items[:most - 1]) + f", … {items[-1]}"


def _what(source: LabeledSource) -> tuple[str, str]:
    """How to name a class and a sample of ``source``: ('class folder', 'image') or ('label', 'row')."""
    return ("class folder", "image") if source.from_folders else ("label", "row")


def nested_folders(source: LabeledSource) -> str | None:
    """Class folders with images in subfolders of their own: a folder one level too high, or stray folders."""
    counts = Counter(PurePosixPath(p).parts[0] for p in source.paths)
    nested: Counter = Counter()
    below: dict[str, set[str]] = {}
    for path in source.paths:
        parts = PurePosixPath(path).parts
        if len(parts) > 2:
            nested[parts[0]] += 1
            below.setdefault(parts[0], set()).add(parts[1])
    if not nested or _batches(counts, nested, below):
        return None
    found = ", ".join(f"'{c}' ({formats.plural(n, 'image')}{', in subfolders' if c in nested else ''})"
                      for c, n in sorted(counts.items()))
    top = counts.most_common(1)[0][0]
    worst = top if top in nested else nested.most_common(1)[0][0]
    subs = sorted(below[worst])
    all_below = nested[worst] == counts[worst]
    what = (f"found {formats.plural(len(counts), 'class folder')}, {found}; the images of '{worst}' sit in "
            f"{'its' if all_below else 'some of its'} subfolders ({_names(subs)})")
    if all_below and len(subs) > 1:
        return f"{what}, so the classes are probably one level down: noiseaudit scan " + \
            shlex.quote(f"{source.origin}/{worst}")
    return f"{what}; move those images into the class folder, or make each subfolder a class"


SPLIT_NAMES = frozenset({"train", "training", "val", "valid", "validation", "dev", "test", "testing"})


def _batches(counts: Counter, nested: Counter, below: dict[str, set[str]]) -> bool:
    """Whether the subfolders are batches of each class, not classes: every class folder holds its images in the
    same subfolders (cat/batch_a, dog/batch_a...), and there are more class folders than subfolders, none named
    as a split. A split's folders (train/cat, val/cat) look alike but hold more classes than there are splits."""
    names = set(below.get(next(iter(counts)), set()))
    return (len(counts) > max(len(names), 1) and all(nested[c] == counts[c] and below[c] == names for c in counts)
            and not {c.lower() for c in counts} & SPLIT_NAMES)


def _line_list(source: LabeledSource, label: object, most: int = 3) -> str:
    """'lines 3, 9, … 57' of the rows with ``label`` ('rows …' of a DataFrame; "" for an ImageFolder tree)."""
    lines = [str(line) for line, v in zip(source.lines, source.labels) if v == label and line is not None]
    word = "row" if in_memory(source.origin) else "line"  # a DataFrame's 0-based row, as its errors say
    return f"{word if len(lines) == 1 else word + 's'} {_names(lines, most)}" if lines else ""


def _lines_of(source: LabeledSource, label: object, most: int = 3) -> str:
    lines = _line_list(source, label, most)
    return f" ({lines})" if lines else ""


def tiny_class(source: LabeledSource) -> str | None:
    """Classes of fewer than MIN_CLASS samples beside one at least TINY_AGAINST times larger (a typo?)."""
    counts = Counter(source.labels).most_common()
    big, n_big = counts[0]
    tiny = [(c, n) for c, n in counts[1:] if n < MIN_CLASS and n_big >= TINY_AGAINST * n]
    if not tiny:
        return None
    kind, unit = _what(source)
    c, n = tiny[-1]
    more = f" (and {formats.plural(len(tiny) - 1, 'other')} under {MIN_CLASS})" if len(tiny) > 1 else ""
    typo = "" if source.from_folders else " (a typo?)"
    return (f"{kind} '{c}' has {formats.plural(n, unit)}{_lines_of(source, c)} against {n_big} for '{big}'{more}: "
            f"too few to learn what the class looks like{typo}")


def missing_as_text(source: LabeledSource) -> str | None:
    """A label that reads as a missing value ('nan', 'null', '<NA>'): an export wrote the blanks as text."""
    counts = Counter(source.labels)
    missing = [c for c in counts if isinstance(c, str) and c.casefold() in MISSING_WORDS]
    if not missing or source.from_folders:
        return None
    c = missing[0]
    where = ", ".join(filter(None, [formats.plural(counts[c], _what(source)[1]), _line_list(source, c)]))
    return (f"label '{c}' ({where}) looks like a missing value written as text, and would train as a class of its "
            "own; fill in those labels or leave the rows out")


def one_per_class(source: LabeledSource) -> str | None:
    """Every sample a class of its own: an id or file-name column taken for the labels."""
    n = len(source.labels)
    if n < MIN_UNIQUE or len(set(source.labels)) < n:
        return None
    kind, unit = _what(source)
    first = ", ".join(repr(str(c)) for c in source.labels[:3])
    mistake = ("the wrong folder level" if source.from_folders else
               f"an id column (this is '{source.label_col}'; name the label column with {option('label_col')})")
    return f"each of the {n} {unit}s has a {kind} of its own ({first}, …): probably {mistake}"


_DECIMAL_COMMA = re.compile(r"[+-]?\d+,(\d{1,2}|\d{4,})")  # '2,0' as European spreadsheets write 2.0 ('1,000': a
# thousands separator, so three digits after the comma are not read as a decimal)


def _number(label: object) -> Decimal | None:
    """The finite number a label writes, exactly (ids longer than a float holds stay apart), else None; a
    decimal comma reads as a point."""
    text = str(label).strip()
    if _DECIMAL_COMMA.fullmatch(text):
        text = text.replace(",", ".")
    try:
        value = Decimal(text)
    except InvalidOperation:
        return None
    return value.normalize() if value.is_finite() else None


def twin_key(label: object) -> str:
    """What two spellings of one class share: a number's value ('01', '1.0' and '1' are 1; -1 is not), else the
    name without its Unicode form, case, spaces, '-' and '_'."""
    number = _number(label)
    if number is not None:
        return f"number {number}"
    return re.sub(r"[\s_-]+", "", unicodedata.normalize("NFKC", str(label))).casefold()


def twin_classes(source: LabeledSource) -> str | None:
    """Two classes whose names are the same but for their Unicode form (NFC against NFD), letter case, spaces,
    '-' and '_', or two writings of one number ('01' and '1', '1.0' and '1'): one class split in two. Numbers
    that differ are left alone: -1 and 1 are two classes."""
    counts = Counter(source.labels)
    seen: dict[str, object] = {}
    for label in sorted(counts, key=lambda c: (-counts[c], str(c))):
        key = twin_key(label)
        if key not in seen:
            seen[key] = label
            continue
        kind, unit = _what(source)
        first = seen[key]
        both = [", ".join(filter(None, [formats.plural(counts[c], unit), _line_list(source, c)]))
                for c in (first, label)]
        if key.startswith("number "):
            how = ("are one number written two ways (a leading zero, a decimal point or comma: a spreadsheet may "
                   "rewrite some cells)")
        elif unicodedata.normalize("NFC", str(first)) == unicodedata.normalize("NFC", str(label)):
            how = ("are one name in two Unicode forms (composed and decomposed accents: macOS writes file names "
                   "decomposed), which print alike but compare apart")
        else:
            how = "differ only in letter case, spaces, '-' or '_'"
        return (f"{kind}s {first!r} ({both[0]}) and {label!r} ({both[1]}) {how}: one class split in two? Give them "
                "one spelling")
    return None


def imbalance(source: LabeledSource) -> str | None:
    """The largest class MAX_IMBALANCE times the smallest or more, holding most rows: one label holds almost
    everything. A long-tailed dataset (a tester's 1,200 down to 5 in ten classes, the largest 39%) passes."""
    counts = Counter(source.labels).most_common()
    (big, n_big), (small, n_small) = counts[0], counts[-1]
    n = len(source.labels)
    if len(counts) < 2 or n_big < MAX_IMBALANCE * n_small or n_big <= MOST * n:
        return None
    kind, unit = _what(source)
    mistake = ("the wrong folder level" if source.from_folders else
               f"the wrong label column (this is '{source.label_col}'; name another with {option('label_col')})")
    return (f"{kind} '{big}' holds {n_big} of {formats.plural(n, unit)} ({formats.percent(n_big / n)}) and "
            f"'{small}' only {n_small}: classes {n_big // n_small}x apart usually mean {mistake}")
