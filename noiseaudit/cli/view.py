"""``noiseaudit show`` and ``noiseaudit html``: look at a report."""

from __future__ import annotations

import heapq
from collections.abc import Iterable
from enum import Enum
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.table import Table

from noiseaudit import formats
from noiseaudit.cli.console import (JsonSummary, Overwrite, Quiet, echo_json, exits_on_errors, output_name,
                                    results_console, stdout, text_output)
from noiseaudit.errors import InputError


def match_class(wanted: str, classes: list, report: Path) -> object:
    """The class ``wanted`` names: exactly, else case-insensitively and without spaces around it (as the CSV
    reader trims its cells) when only one class matches that way.

    Anything else is an InputError that lists the report's classes.
    """
    names = {str(c): c for c in classes}
    if wanted in names:
        return names[wanted]
    folded = [name for name in names if name.strip().casefold() == wanted.strip().casefold()]
    if len(folded) == 1:
        return names[folded[0]]
    listed = ", ".join(repr(n) for n in names)
    if folded:
        raise InputError(f"class {wanted!r} matches {' and '.join(map(repr, folded))} but for case; say which "
                         f"(classes: {listed})", path=report)
    raise InputError(f"no class {wanted!r} in this report; its classes are {listed}", path=report)


def named_class(wanted: str, meta: dict, labels: Iterable, report: Path) -> object:
    """:func:`match_class` among the report's classes: its metadata's, else the ``labels`` it holds."""
    return match_class(wanted, meta.get("classes") or sorted({str(v) for v in labels}), report)


SHOWN = ["rank", "path", "given_label", "given_prob", "suggested_label", "suggested_prob", "learned_lr", "loss",
         "is_suspect", "status"]


class GroupBy(str, Enum):
    sample = "sample"
    pair = "pair"
    class_ = "class"
    duplicate = "duplicate"


COPIES = ["duplicate_group", "duplicate_conflict"]


@exits_on_errors
def show_command(
    report: Annotated[Path, typer.Argument(help="Parquet report from noiseaudit scan.")],
    top: Annotated[int, typer.Option("--top", "-n", help="How many rows.")] = 20,
    class_: Annotated[Optional[str], typer.Option("--class", help="Only samples with this given label "
                                                                  "(case-insensitive if unambiguous).")] = None,
    by: Annotated[GroupBy, typer.Option("--by", help="sample: the top suspects; pair: the flags counted by "
                                                     "(given, suggested) class pair; class: by given class; "
                                                     "duplicate: identical inputs whose labels differ.")]
    = GroupBy.sample,
    json_out: Annotated[bool, typer.Option("--json", help="Print one JSON object on stdout: the counts and "
                                                          "the rows.")] = False,
    quiet: Quiet = False,
) -> None:
    """The most suspect samples as a table, with the ones the scan flagged marked (or the flags by class pair
    or by class, or the copies whose labels differ)."""
    from noiseaudit.report.export import check_top
    from noiseaudit.report.io import read_report_table

    check_top(top)
    # plain lists from pyarrow: pandas (or even .to_numpy()) would cost show most of a second of start-up
    table, meta = read_report_table(report, SHOWN + COPIES * (by is GroupBy.duplicate)
                                    + ["predicted_label"] * (by is GroupBy.class_), scan=True)
    col = table.to_pydict()
    if by is GroupBy.duplicate:
        label = None if class_ is None else named_class(class_, meta, col["given_label"], report)
        return _show_duplicates(col, report, label, top, json_out)
    rows = [i for i, status in enumerate(col.get("status") or ["ok"] * table.num_rows) if status == "ok"]
    unranked = table.num_rows - len(rows)  # trusted samples, skipped images
    label = None
    scored = rows  # every scored sample, before --class keeps one class's
    if class_ is not None:
        label = named_class(class_, meta, (col["given_label"][i] for i in rows), report)
        rows = [i for i in rows if str(col["given_label"][i]) == str(label)]
    n_flagged = sum(bool(col["is_suspect"][i]) for i in rows)
    head = {"report": str(report), **({} if label is None else {"class": label}),  # --json: no key, not null
            "n_samples": len(rows), "n_flagged": n_flagged, "n_not_ranked": unranked}
    title = (formats.plural(len(rows), "sample") + (f" labelled {label}" if label is not None else "")
             + f", {n_flagged or 'none'} flagged" + (f" ({unranked} more not ranked: trusted or skipped)"
                                                      if unranked and label is None else ""))
    if by is GroupBy.sample:
        _show_samples(col, rows, top, head, title, json_out)
    else:
        _show_groups(col, rows, by, top, head, title, json_out, scored,
                     bool((meta.get("config") or {}).get("balance_classes")))


def _show_samples(col: dict, rows: list[int], top: int, head: dict, title: str, json_out: bool) -> None:
    shown = heapq.nsmallest(top, rows, key=lambda i: col["rank"][i])
    if json_out:
        fields = [name for name in SHOWN if name != "status"]
        echo_json({**head, "rows": [{name: col[name][i] for name in fields} for i in shown]})
        return
    out = Table(title=title + ("" if head["n_flagged"] else " (most suspect first)"))
    for name in ("rank", "path", "given", "suggested", "learned rate", "loss", "flagged"):
        out.add_column(name, justify="left" if name in ("path", "given", "suggested", "flagged") else "right",
                       overflow="fold" if name == "path" else "ellipsis")  # a path's end names the file: wrap it
    for i in shown:
        out.add_row(str(col["rank"][i]), str(col["path"][i]),
                    f"{col['given_label'][i]} ({formats.percent(col['given_prob'][i])})",
                    f"{col['suggested_label'][i]} ({formats.percent(col['suggested_prob'][i])})",
                    formats.learned_rate(col["learned_lr"][i]), formats.loss(col["loss"][i]),
                    "yes" if col["is_suspect"][i] else "")
    stdout().print(out)


def _show_duplicates(col: dict, report: Path, label: object, top: int, json_out: bool) -> None:
    """The groups of identical inputs whose labels differ (those holding ``label`` if given), trusted samples
    included, first sample first."""
    if "duplicate_conflict" not in col:
        raise InputError("this report was made before noiseaudit looked for identical inputs; scan again to "
                         "see them", path=report)
    groups: dict[int, list[int]] = {}
    for i, conflict in enumerate(col["duplicate_conflict"]):
        if conflict:
            groups.setdefault(col["duplicate_group"][i], []).append(i)
    if label is not None:
        groups = {g: rows for g, rows in groups.items() if any(str(col["given_label"][i]) == str(label)
                                                               for i in rows)}
    shown = sorted(groups)[:top]
    fields = ("duplicate_group", "path", "given_label", "rank", "is_suspect", "status")
    if json_out:
        echo_json({"report": str(report), **({} if label is None else {"class": label}), "n_groups": len(groups),
                   "n_samples": sum(map(len, groups.values())),
                   "rows": [{f: col[f][i] for f in fields if f in col} for g in shown for i in groups[g]]})
        return
    out = Table(title=f"{formats.plural(len(groups), 'group')} of identical inputs with different labels"
                + (f", holding {label}" if label is not None else ""))
    for name in ("group", "path", "given", "rank", "flagged"):
        out.add_column(name, justify="right" if name in ("group", "rank") else "left",
                       overflow="fold" if name == "path" else "ellipsis")
    statuses = col.get("status") or ["ok"] * len(col["path"])
    for g in shown:
        for k, i in enumerate(groups[g]):
            out.add_row(str(g) if k == 0 else "", str(col["path"][i]), str(col["given_label"][i]),
                        str(col["rank"][i]) if statuses[i] == "ok" else statuses[i],
                        "yes" if col["is_suspect"][i] else "", end_section=k == len(groups[g]) - 1)
    stdout().print(out)
    if len(groups) > len(shown):
        stdout().print(f"{len(groups) - len(shown)} more; --top {len(groups)} shows all", highlight=False)


def _show_groups(col: dict, rows: list[int], by: GroupBy, top: int, head: dict, title: str, json_out: bool,
                 scored: list[int], balanced: bool) -> None:
    """The flags by class pair or by class among ``rows``; by class, also how often the model predicts each class
    among all the ``scored`` rows, and the classes it barely learned (``balanced``: the scan trained so)."""
    from noiseaudit.report.groups import (concentration_line, flags_by_class, flags_by_pair, largest_pair_share,
                                          unlearned, unlearned_line)

    given = [col["given_label"][i] for i in rows]
    flagged = [bool(col["is_suspect"][i]) for i in rows]
    if by is GroupBy.pair:
        groups = flags_by_pair(given, [col["suggested_label"][i] for i in rows], flagged)
    else:
        predicted = [col["predicted_label"][i] for i in scored]
        groups = flags_by_class(given, flagged, predicted)
    shown = groups[:top]
    n_classes = len(set(given))
    concentrated = by is GroupBy.pair and "class" not in head and n_classes >= 3 and bool(groups)
    if json_out:  # the line under the table, as numbers: the share in each class's largest pair, and an even one's
        extra = {"largest_pair_share": largest_pair_share(groups), "even_pair_share": 1 / (n_classes - 1)} \
            if concentrated else {}
        echo_json({**head, "by": by.value, "n_groups": len(groups), **extra, "rows": shown})
        return
    if by is GroupBy.pair:
        out = Table(title=f"{title}, in {len(groups)} class pairs (given → suggested)")
        for name in ("given", "suggested", "flagged", "of the flags", "of the class"):
            out.add_column(name, justify="left" if name in ("given", "suggested") else "right")
        for g in shown:
            out.add_row(str(g["given_label"]), str(g["suggested_label"]), str(g["n_flagged"]),
                        formats.percent(g["share_of_flagged"]), formats.percent(g["share_of_class"]))
    else:
        out = Table(title=title + ", by given class",
                    caption="predicted: the samples the model predicts as the class, whatever their given label")
        for name in ("class", "samples", "flagged", "share", "predicted"):
            out.add_column(name, justify="left" if name == "class" else "right")
        for g in shown:
            out.add_row(str(g["given_label"]), str(g["n_samples"]), str(g["n_flagged"]),
                        formats.percent(g["share_flagged"]), str(g["n_predicted"]))
    stdout().print(out)
    if len(groups) > len(shown):
        stdout().print(f"{len(groups) - len(shown)} more; --top {len(groups)} shows all", highlight=False)
    if concentrated:
        stdout().print(concentration_line(groups, n_classes), highlight=False)
    if by is GroupBy.class_ and (barely := unlearned(groups, len(scored),
                                                     len({col["given_label"][i] for i in scored}))):
        stdout().print(unlearned_line(barely, balanced), highlight=False)


@exits_on_errors
def html_command(
    report: Annotated[Path, typer.Argument(help="Parquet report from noiseaudit scan.")],
    output: Annotated[Path, typer.Option("--output", "-o", help="HTML file to write.")],
    images_dir: Annotated[Optional[Path], typer.Option(help="Image folder (default: the one scanned).")] = None,
    top: Annotated[int, typer.Option(help="Suspects in the gallery.")] = 48,
    overwrite: Overwrite = False,
    json_out: JsonSummary = False,
    quiet: Quiet = False,
) -> None:
    """A self-contained HTML page: summary, learned-rate histogram, PR curve, per-class counts, gallery and
    flags by class pair."""
    from noiseaudit.report.export import check_top
    from noiseaudit.errors import check_image_dir
    from noiseaudit.report.html import render_html
    from noiseaudit.report.io import atomic_write, check_writable, read_report

    check_top(top)
    check_writable(text_output(output, json_out), overwrite, [(report, "report")], image_folder=images_dir, text=True)
    if images_dir is not None:
        check_image_dir(images_dir, hint="")  # before the report is read and the page drawn
    frame, meta = read_report(report, scan=True)
    page = render_html(frame, meta, images_dir, top)
    atomic_write(output, lambda tmp: tmp.write_text(page, encoding="utf-8"), replace=overwrite)
    if json_out:
        from noiseaudit.report.build import scored

        n = len(scored(frame))  # as the page counts: skipped images and trusted samples are not ranked
        echo_json({"samples": n, "gallery": min(top, n), "bytes": len(page.encode("utf-8")), "output": str(output)})
    elif (out := results_console(output, quiet)) is not None:
        out.print(f"Wrote {output_name(output)}", highlight=False)
