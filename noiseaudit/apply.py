"""Apply reviewers' verdicts to a labels CSV: relabel, drop or keep, never in place."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from noiseaudit.data.csvfile import read_text_table
from noiseaudit.data.pathmatch import PathIndex
from noiseaudit.data.source import LABEL_COLUMN_NAMES, find_key_column, pick_column
from noiseaudit.errors import InputError, input_file
from noiseaudit.report.export import CHOICES, VERDICTS, label_studio_answers, verdicts_from_choices


@dataclass
class ApplyResult:
    table: pd.DataFrame
    relabeled: int = 0
    dropped: int = 0
    kept: int = 0
    unreviewed: int = 0
    changes: list[tuple[str, str, str]] = field(default_factory=list)  # (path, old, new)


def read_reviewed(path: str | Path) -> tuple[pd.DataFrame, list[int | None]]:
    """A reviewed export, cells as text: the CSV or JSON records of ``export``, or Label Studio's export
    of the ``--format labelstudio`` tasks (JSON, JSON-MIN or CSV), whose chosen classes become verdicts."""
    sheet, lines = _read_sheet(input_file(path, "reviewed file"))
    if "verdict" not in sheet.columns and {CHOICES, "given_label", "path"} <= set(sheet.columns):
        sheet = verdicts_from_choices(sheet)
    return sheet, lines


def _read_sheet(path: Path) -> tuple[pd.DataFrame, list[int | None]]:
    if path.suffix.lower() == ".json":
        try:
            records = json.loads(path.read_text(encoding="utf-8"))
        except ValueError as exc:
            raise InputError(f"not valid JSON ({exc})", path=path) from None
        if not isinstance(records, list) or not all(isinstance(r, dict) for r in records):
            raise InputError("expected a JSON list of records as written by `noiseaudit export --format json`, "
                             "or Label Studio's export of `--format labelstudio` tasks", path=path)
        if records and all("annotations" in r and "data" in r for r in records):  # Label Studio's JSON export
            records = label_studio_answers(records)
        frame = pd.DataFrame(records).fillna("").astype(str)
        return frame.apply(lambda c: c.str.strip()), [None] * len(frame)
    report_hint = (f": export the suspects first (noiseaudit export {path} -o review.csv), fill in verdict and "
                   "new_label, then apply that")  # the report itself, most likely
    return read_text_table(path, "reviewed file", report_hint)


def apply_review(labels_csv: str | Path, reviewed_path: str | Path, *, path_col: str | None = None,
                 label_col: str | None = None, allow_new_labels: bool = False) -> ApplyResult:
    """The labels table with a reviewed sheet's verdicts applied (``noiseaudit apply``).

    Returns an :class:`ApplyResult`: the new ``table`` (write it with ``to_csv``), the counts
    ``relabeled``, ``dropped``, ``kept`` and ``unreviewed``, and ``changes`` as (path, old, new).

    ``relabel`` sets the label to ``new_label``, or to ``suggested_label`` when
    ``new_label`` is empty; ``drop`` removes the row; ``keep`` or an empty
    verdict leaves it. Unknown paths, unknown verdicts, conflicting rows for one
    path and (unless ``allow_new_labels``) labels outside the known classes are
    refused, naming the reviewed file and line. Rows are matched on the table's path column (an absolute
    path there matches the report's path relative to the image folder, :class:`PathIndex`); for the
    labels of feature vectors, on its key (id) column, or on the 0-based row number when it has neither.
    """
    labels_csv, reviewed_path = Path(labels_csv), Path(reviewed_path)
    table, _ = read_text_table(labels_csv)
    columns = list(table.columns)
    lcol = pick_column(columns, label_col, LABEL_COLUMN_NAMES, "label", labels_csv)
    pcol = find_key_column(columns, path_col, lcol, labels_csv)  # None: keyed by row number (features)
    reviewed, lines = read_reviewed(reviewed_path)
    for needed in ("path", "verdict"):
        if needed not in reviewed.columns:
            raise InputError(f"reviewed file has no {needed!r} column", path=reviewed_path, line=1)
    known = set(table[lcol])
    index = PathIndex(table[pcol] if pcol is not None else map(str, range(len(table))))
    index.learn_root(reviewed["path"])
    decisions: dict[int, tuple[str, str, int | None]] = {}
    for rec, line in zip(reviewed.to_dict("records"), lines):
        p, verdict = rec["path"], rec["verdict"].lower()
        i = index.row(p)
        if i is None:
            raise InputError(f"path {p!r} is not in {labels_csv.name}", path=reviewed_path, line=line)
        if verdict not in VERDICTS and verdict != "":
            raise InputError(f"unknown verdict {rec['verdict']!r} (use keep, relabel or drop)",
                             path=reviewed_path, line=line)
        target = ""
        if verdict == "relabel":
            target = rec.get("new_label", "") or rec.get("suggested_label", "")
            if not target:
                raise InputError(f"relabel of {p!r} has neither new_label nor suggested_label",
                                 path=reviewed_path, line=line)
            if target not in known and not allow_new_labels:
                raise InputError(f"new label {target!r} for {p!r} is not a known class "
                                 "(pass --allow-new-labels to add one)", path=reviewed_path, line=line)
        if i in decisions and decisions[i][:2] != (verdict, target):
            raise InputError(f"conflicting verdicts for {p!r} (also on line {decisions[i][2]})",
                             path=reviewed_path, line=line)
        decisions[i] = (verdict, target, line)

    result = ApplyResult(table=table)
    drop = []
    for i, (verdict, target, _) in decisions.items():
        p = index.paths[i]
        if verdict == "drop":
            drop.append(i)
            result.dropped += 1
        elif verdict == "relabel" and target != table.at[i, lcol]:
            result.changes.append((p, table.at[i, lcol], target))
            table.at[i, lcol] = target
            result.relabeled += 1
        elif verdict == "":
            result.unreviewed += 1
        else:
            result.kept += 1
    result.table = table.drop(index=drop).reset_index(drop=True)
    return result
