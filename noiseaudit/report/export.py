"""Suspect lists for human review: CSV, JSON or Label Studio tasks."""

from __future__ import annotations

import html
import json
import re
import numbers
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import quote

from noiseaudit._version import __version__
from noiseaudit.errors import UsageError, check_path, check_switch, check_whole_number, option
from noiseaudit.report.io import atomic_write, check_writable

if TYPE_CHECKING:  # pandas only where used: show imports check_top from here and starts without it
    import pandas as pd

FORMATS = ("csv", "json", "labelstudio")
VERDICTS = ("keep", "relabel", "drop")
UNDECIDED = ("", "unsure")  # verdicts that leave a row as it is, for now: blank, or marked for a second look
VERDICT_HELP = "use keep, relabel or drop; unsure or blank to decide later"
REVIEW_COLUMNS = ("path", "given_label", "given_prob", "suggested_label", "confidence", "learned_lr", "rank",
                  "flagged", "suspicion", "verdict", "new_label")
# the report columns the sheet is made from
REVIEWED_COLUMNS = ("path", "given_label", "given_prob", "suggested_label", "suggested_prob", "learned_lr", "rank",
                    "is_suspect", "suspicion")
DECIMALS = 4  # every number of the sheet, so that a column reads 0.5700, 0.5720, 0.6000
CHOICES = "label"  # the name of the Label Studio Choices tag the tasks pre-annotate (its from_name)


def check_top(top: int) -> None:
    """Refuse a ``--top`` below 1 (``export``, ``show`` and ``html``).

    Parameters
    ----------
    top : int
        How many of the most suspect rows to take.

    Raises
    ------
    UsageError
        ``top`` is below 1.
    """
    check_whole_number("top", top)
    if top < 1:
        raise UsageError(f"{option('top')} must be at least 1, got {top}")


def select_suspects(report: pd.DataFrame, *, top: int | None = None, min_suspicion: float | None = None,
                    flagged: bool = False, given_label: object = None) -> pd.DataFrame:
    """Rows of a report to review, most suspect first.

    Parameters
    ----------
    report : DataFrame
        A report; rows not scored (skipped images, trusted samples) are left out.
    top : int, optional
        The ``top`` most suspect rows.
    min_suspicion : float, optional
        The rows whose ``suspicion`` is at least this.
    flagged : bool
        The flagged rows (``is_suspect``); also what is chosen when none of the three is given.
    given_label : optional
        Only the rows of this given label (compared as text), the three above applied within it: a small
        class reviewed whole, say.

    Returns
    -------
    DataFrame
        The chosen report rows, sorted by ``rank``.

    Raises
    ------
    UsageError
        More than one of the three is given, ``top`` is below 1 or ``min_suspicion`` outside [0, 1], or ``report``
        is not a report (no ``rank`` or ``is_suspect`` column).
    """
    check_switch("flagged", flagged)  # "yes" was taken as True, and "no" too
    chosen = sum(x is not None and x is not False for x in (top, min_suspicion, flagged))
    if chosen > 1:
        raise UsageError(f"choose one of {option('top')}, {option('min_suspicion')} and {option('flagged', True)}")
    from noiseaudit.report.build import check_report, scored

    check_report(report, needs=("rank", "is_suspect") + (() if min_suspicion is None else ("suspicion",)))
    ordered = scored(report).sort_values("rank")
    if given_label is not None:
        ordered = ordered[ordered["given_label"].astype(str) == str(given_label)]
    if top is not None:
        check_top(top)
        return ordered.head(top)
    if min_suspicion is not None:
        if isinstance(min_suspicion, bool) or not isinstance(min_suspicion, numbers.Real) or \
                not 0.0 <= min_suspicion <= 1.0:  # NaN fails too
            raise UsageError(f"{option('min_suspicion')} must be in [0, 1] (suspicion is a ranking score), "
                             f"got {min_suspicion!r}")
        return ordered[ordered["suspicion"] >= min_suspicion]
    return ordered[ordered["is_suspect"]]


def review_table(rows: pd.DataFrame) -> pd.DataFrame:
    """The reviewer's sheet for report ``rows`` (from :func:`select_suspects`).

    Parameters
    ----------
    rows : DataFrame
        Report rows.

    Returns
    -------
    DataFrame
        ``path``, ``given_label``, ``given_prob`` (the final model's probability of the given label),
        ``suggested_label``, ``confidence`` (its probability of the suggestion), ``learned_lr``, ``rank``,
        ``flagged``, ``suspicion``, and empty ``verdict`` (``keep``, ``relabel`` or ``drop``) and
        ``new_label`` to fill in. Numbers are rounded to :data:`DECIMALS` places. Where ``given_prob`` is the
        larger, the model prefers the given label, and the suggestion is only its runner-up.

    Raises
    ------
    UsageError
        ``rows`` is not a DataFrame, or lacks a report column the sheet is made from (:data:`REVIEWED_COLUMNS`).
    """
    import pandas as pd

    from noiseaudit.report.build import check_report

    check_report(rows, needs=REVIEWED_COLUMNS)
    return pd.DataFrame({
        "path": rows["path"].to_numpy(),
        "given_label": rows["given_label"].to_numpy(),
        "given_prob": rows["given_prob"].to_numpy().astype(float).round(DECIMALS),
        "suggested_label": rows["suggested_label"].to_numpy(),
        "confidence": rows["suggested_prob"].to_numpy().astype(float).round(DECIMALS),
        "learned_lr": rows["learned_lr"].to_numpy().astype(float).round(DECIMALS),
        "rank": rows["rank"].to_numpy(),
        "flagged": rows["is_suspect"].to_numpy(bool),
        "suspicion": rows["suspicion"].to_numpy().astype(float).round(DECIMALS),
        "verdict": "",
        "new_label": "",
    })


def label_studio_tasks(table: pd.DataFrame, image_prefix: str = "") -> list[dict]:
    """Label Studio tasks with the final model's answer as a pre-annotation: the suggestion, or the given label
    where the model prefers it (a flagged sample whose rate alone is low), so that a reviewer is not led to a
    runner-up class.

    ``data.image`` is ``image_prefix`` and the path percent-encoded (``a b#1.png`` as ``a%20b%231.png``; ``/``
    kept), so that a space, ``#``, ``&`` or ``?`` in a file name still reaches the image behind a URL or a
    ``/data/local-files/?d=`` prefix; ``data.path`` keeps the path as the report has it.

    Pair with a labeling config such as
    ``<View><Image name="image" value="$image"/><Choices name="label" toName="image">...</Choices></View>``.
    """
    tasks = []
    for row in table.itertuples(index=False):
        given_prob = getattr(row, "given_prob", None)  # None: a sheet made before sheets had the column
        prefers_given = given_prob is not None and float(given_prob) > float(row.confidence)
        data = {"image": f"{image_prefix}{quote(str(row.path), safe='/')}", "path": row.path,
                "given_label": str(row.given_label), "rank": int(row.rank), "learned_lr": float(row.learned_lr),
                "flagged": bool(row.flagged)}
        if given_prob is not None:
            data["given_prob"] = float(given_prob)
        tasks.append({
            "data": data,
            "predictions": [{
                "model_version": f"noiseaudit-{__version__}",
                "score": float(given_prob) if prefers_given else float(row.confidence),
                "result": [{"from_name": CHOICES, "to_name": "image", "type": "choices",
                            "value": {"choices": [str(row.given_label if prefers_given else row.suggested_label)]}}],
            }],
        })
    return tasks


def label_studio_config(classes: list) -> str:
    """The Label Studio labeling interface for the tasks: the image and one choice per class."""
    choices = "\n".join(f'    <Choice value="{html.escape(str(c), quote=True)}"/>' for c in classes)
    return (f'<View>\n  <Image name="image" value="$image"/>\n'
            f'  <Choices name="{CHOICES}" toName="image" choice="single" showInLine="true">\n{choices}\n'
            "  </Choices>\n</View>")


def label_studio_answers(tasks: list[dict]) -> list[dict[str, str]]:
    """Label Studio's JSON export of the tasks :func:`label_studio_tasks` made, as review records:
    ``path``, ``given_label`` and the class the annotator chose under ``label`` ("" where no
    annotation was submitted; the last submitted one wins)."""
    records = []
    for task in tasks:
        data, chosen = task.get("data") or {}, ""
        for annotation in task.get("annotations") or []:
            if annotation.get("was_cancelled"):
                continue
            for item in annotation.get("result") or []:
                picked = (item.get("value") or {}).get("choices") or []
                if item.get("type") == "choices" and item.get("from_name") == CHOICES and picked:
                    chosen = str(picked[0])
        records.append({"path": str(data.get("path", "")), "given_label": str(data.get("given_label", "")),
                        CHOICES: chosen})
    return records


def last_answers(sheet: pd.DataFrame, lines: list[int | None]) -> tuple[pd.DataFrame, list[int | None]]:
    """Label Studio's JSON-MIN and CSV exports hold a record per annotation (``annotation_id``, ``updated_at``):
    where a task was annotated twice, the last submitted answer wins, as in its JSON export. They were refused as
    conflicting verdicts."""
    import pandas as pd

    if "annotation_id" not in sheet.columns or "path" not in sheet.columns:
        return sheet, lines
    when = sheet["updated_at"] if "updated_at" in sheet.columns else \
        pd.to_numeric(sheet["annotation_id"], errors="coerce").fillna(-1)
    latest = sheet.assign(_when=when.to_numpy()).sort_values("_when", kind="stable")
    latest = latest.drop_duplicates("path", keep="last")
    keep = sorted(sheet.index.get_indexer(latest.index))
    return sheet.iloc[keep].reset_index(drop=True), [lines[i] for i in keep]


def verdicts_from_choices(sheet: pd.DataFrame) -> pd.DataFrame:
    """A reviewed sheet that holds the chosen class in ``label`` (Label Studio's exports) instead of
    verdicts: ``keep`` where it is the given label, ``relabel`` to it where not, unreviewed where blank."""
    chosen, given = sheet[CHOICES], sheet["given_label"]
    verdict = chosen.where(chosen == "", "relabel").where(chosen != given, "keep")
    return sheet.assign(verdict=verdict, new_label=chosen.where(verdict == "relabel", ""))


def as_reviewed(sheet: pd.DataFrame) -> pd.DataFrame:
    """A reviewed sheet (cells as text) as ``apply`` and ``--trusted`` read it: its columns named as export writes
    them, whatever their letter case, surrounding spaces and word separators (a spreadsheet's "Verdict", "New
    Label"; a name already there as written is left as it is), and Label Studio's chosen classes as verdicts. A
    table with no ``verdict`` column then is not a reviewed sheet."""
    names = {str(c): re.sub(r"[\s_-]+", "_", str(c).strip().lower()) for c in sheet.columns}  # "New Label"
    known = set(REVIEW_COLUMNS) | {CHOICES}
    taken = set(map(str, sheet.columns))
    rename = {c: low for c, low in names.items() if low in known and low != c and low not in taken}
    sheet = sheet.rename(columns=rename) if rename else sheet
    if "verdict" not in sheet.columns and {CHOICES, "given_label", "path"} <= set(sheet.columns):
        sheet = verdicts_from_choices(sheet)
    return sheet


def read_verdict(row: dict, origin: str, line: int | None) -> str:
    """A reviewed row's verdict in lower case (blank, ``unsure`` or one of :data:`VERDICTS`); any other is an
    InputError naming the sheet and line."""
    from noiseaudit.errors import InputError

    verdict = row["verdict"].lower()
    if verdict not in VERDICTS + UNDECIDED:
        raise InputError(f"unknown verdict {row['verdict']!r} ({VERDICT_HELP})", path=origin, line=line)
    return verdict


def relabel_target(row: dict) -> str:
    """The label a ``relabel`` row asks for: its ``new_label``, else the suggestion ("" where it has neither)."""
    return row.get("new_label", "") or row.get("suggested_label", "")


def verified_rows(sheet: pd.DataFrame, lines: list[int], origin: str) -> tuple[pd.DataFrame, list[int]]:
    """A reviewed sheet (:func:`as_reviewed`) as the verified labels it holds: ``path`` and ``label`` for each
    ``keep`` (the given label) and ``relabel`` (:func:`relabel_target`), with their lines; ``drop`` and unreviewed
    rows are left out. An unknown verdict is an InputError naming its line."""
    import pandas as pd

    from noiseaudit.errors import InputError, header_line

    missing = [c for c in ("path", "given_label") if c not in sheet.columns]
    if missing:
        raise InputError(f"a reviewed sheet (it has a verdict column) needs {' and '.join(missing)} as noiseaudit "
                         "export writes them", path=origin, line=header_line(origin))
    rows, kept = [], []
    for row, line in zip(sheet.to_dict("records"), lines):
        verdict = read_verdict(row, origin, line)
        if verdict in ("keep", "relabel"):
            rows.append((row["path"], row["given_label"] if verdict == "keep" else relabel_target(row)))
            kept.append(line)
    return pd.DataFrame(rows, columns=["path", "label"], dtype=object), kept


def _ascii(table: pd.DataFrame) -> bool:
    """Whether every column name and text cell of ``table`` is ASCII."""
    names = "".join(map(str, table.columns))
    return names.isascii() and all(table[c].astype(str).str.cat().isascii() for c in table.columns)


# names whose format the review sheet is not: a spreadsheet that opens the file expects that format and refuses text
NOT_A_SHEET = {".xlsx": "an Excel workbook", ".xls": "an Excel workbook", ".ods": "an OpenDocument spreadsheet",
               ".tsv": "tab-separated text", ".parquet": "a Parquet file"}


def review_format(path: str | Path, fmt: str | None) -> str:
    """The format a review sheet is written in: ``fmt``, else by ``path``'s suffix (``.json``: JSON, else CSV). A
    suffix that names another format (``.xlsx``, ``.tsv``) is refused rather than given CSV text under it."""
    suffix = Path(path).suffix.lower()
    if fmt is None:
        if suffix in NOT_A_SHEET:
            raise UsageError(f"{path}: the review sheet is CSV or JSON, and {suffix} names {NOT_A_SHEET[suffix]}: "
                             "name a .csv file (spreadsheets open it) or a .json one")
        fmt = "json" if suffix == ".json" else "csv"
    if fmt not in FORMATS:
        raise UsageError(f"unknown format {fmt!r}; choose one of {', '.join(FORMATS)}")
    return fmt


def write_review(table: pd.DataFrame, path: str | Path, fmt: str | None = None, image_prefix: str = "",
                 overwrite: bool = False) -> Path:
    """Write a review sheet atomically (a temp file, then renamed); an existing file is kept unless ``overwrite``
    (a sheet may hold a reviewer's verdicts: rerunning a notebook cell must not wipe them).

    Parameters
    ----------
    table : DataFrame
        A sheet from :func:`review_table`.
    path : str or Path
        Where to write it.
    fmt : {"csv", "json", "labelstudio"}, optional
        CSV; JSON records; or Label Studio tasks with the suggestion as a pre-annotation. By default JSON
        records for a ``.json`` name, else CSV (as ``noiseaudit export`` chooses).
    image_prefix : str
        Prepended to each path in Label Studio tasks (where the tool serves the images from).
    overwrite : bool
        Replace an existing ``path``.

    Returns
    -------
    Path
        ``path``.

    Raises
    ------
    UsageError
        An unknown ``fmt``, or ``path`` exists and ``overwrite`` is False.
    """
    if not hasattr(table, "to_csv"):  # a DataFrame; pandas is not imported here
        raise UsageError(f"the review sheet must be a pandas DataFrame (review_table's), not {type(table).__name__}")
    check_path(path, "output")  # before its suffix is read
    fmt = review_format(path, fmt)
    check_writable(path, overwrite, text=True)
    if fmt == "csv":  # with a BOM where it holds more than ASCII, which Excel otherwise reads as Windows-1252
        encoding = "utf-8" if _ascii(table) else "utf-8-sig"
        return atomic_write(path, lambda tmp: table.to_csv(tmp, index=False, float_format=f"%.{DECIMALS}f",
                                                           encoding=encoding), replace=overwrite)
    payload = label_studio_tasks(table, image_prefix) if fmt == "labelstudio" else json.loads(
        table.to_json(orient="records"))
    return atomic_write(path, lambda tmp: tmp.write_text(json.dumps(payload, indent=1)), replace=overwrite)
