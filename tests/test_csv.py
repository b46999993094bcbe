"""CSV reading: delimiters, quoting, line numbers, and a property test over generated tables."""

from __future__ import annotations

import csv
import io
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from noiseaudit.data.csvfile import read_text_table
from noiseaudit.errors import InputError


@pytest.mark.parametrize("delimiter", [",", ";", "\t", "|"])
def test_delimiters_are_sniffed(tmp_path, delimiter):
    p = tmp_path / "l.csv"
    p.write_text(delimiter.join(["path", "label", "note"]) + "\n" + delimiter.join(["a b.png", "cat", "x"]) + "\n")
    frame, lines = read_text_table(p)
    assert list(frame.columns) == ["path", "label", "note"]
    assert frame.iloc[0].tolist() == ["a b.png", "cat", "x"] and lines == [2]


def test_quoted_commas_multiline_fields_and_blank_lines_keep_true_line_numbers(tmp_path):
    p = tmp_path / "l.csv"
    p.write_text('path,label,note\n"a,1.png",cat,"two\nlines"\n\n  \nb.png,dog,plain\n')
    frame, lines = read_text_table(p)
    assert frame["path"].tolist() == ["a,1.png", "b.png"]
    assert frame["note"].tolist() == ["two\nlines", "plain"]
    assert lines == [2, 6]


def test_extra_field_is_an_error_on_its_line(tmp_path):
    p = tmp_path / "l.csv"
    p.write_text("path,label\na.png,cat\nb.png,dog,oops\n")
    with pytest.raises(InputError, match=r"l\.csv:3: 3 fields where the header has 2"):
        read_text_table(p)


def test_duplicate_header_is_an_error(tmp_path):
    p = tmp_path / "l.csv"
    p.write_text("path,label,label\na.png,cat,dog\n")
    with pytest.raises(InputError, match="appears twice"):
        read_text_table(p)


cell = st.text(alphabet=st.characters(blacklist_categories=("Cs", "Cc"), blacklist_characters="\ufeff"),
               min_size=1, max_size=12).filter(lambda s: s.strip() == s and s)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(rows=st.lists(st.tuples(cell, cell), min_size=1, max_size=8), bom=st.booleans(),
       delimiter=st.sampled_from([",", ";", "\t"]))
def test_round_trip_of_any_table_written_by_csv_module(tmp_path_factory, rows, bom, delimiter):
    buf = io.StringIO()
    writer = csv.writer(buf, delimiter=delimiter, quoting=csv.QUOTE_ALL)
    writer.writerow(["path", "label"])
    writer.writerows(rows)
    p = Path(tmp_path_factory.mktemp("h")) / "l.csv"
    p.write_text(("\ufeff" if bom else "") + buf.getvalue(), encoding="utf-8")
    frame, lines = read_text_table(p)
    assert list(frame.columns) == ["path", "label"]
    assert [tuple(r) for r in frame.itertuples(index=False)] == rows
    assert lines[0] == 2 and lines == sorted(lines)


def test_what_spreadsheets_and_pandas_add_is_read_as_they_mean_it(tmp_path):
    """Excel's 'sep=;' line, its stray trailing commas and a pandas index (to_csv without index=False) each gave
    'empty column name in the header'."""
    p = tmp_path / "l.csv"
    p.write_text("sep=;\npath;label\na.png;cat\nb.png;dog\n")
    frame, lines = read_text_table(p)
    assert frame.to_dict("list") == {"path": ["a.png", "b.png"], "label": ["cat", "dog"]} and lines == [3, 4]
    p.write_text("path,label,,\na.png,cat,,\nb.png,dog,,\n")
    assert list(read_text_table(p)[0].columns) == ["path", "label"]
    p.write_text(",path,label\n0,a.png,cat\n1,b.png,dog\n")
    assert read_text_table(p)[0].to_dict("list") == {"path": ["a.png", "b.png"], "label": ["cat", "dog"]}
    p.write_text("path,,label\na.png,x,cat\n")
    with pytest.raises(InputError, match=r"l\.csv:1: column 2 has no name in the header but holds values \('x', …\); "
                                         "name it$"):
        read_text_table(p)


@pytest.mark.parametrize(("content", "message"), [
    (b"\x1f\x8b\x08\x00\x00\x00\x00\x00\x00\x03\xff",
     r"l\.csv: not a labels CSV but a gzip-compressed file; decompress it first \(gunzip\)$"),
    (b"PK\x03\x04\x14\x00\x06\x00\x08\x00\x00\x00!\x00\xb7",
     r"l\.csv: not a labels CSV but a zip archive \(an Excel .xlsx workbook is one\); save the sheet as "
     r"\"CSV UTF-8\"$"),
    (b"# labels from the 2024 pass\npath,label\na.png,cat\n",
     r"l\.csv:2: 2 fields where the header has 1; line 1 starts with '#', a comment\? CSV has none: delete it$"),
])
def test_files_that_are_not_plain_csv_are_named_as_what_they_are(tmp_path, content, message):
    """A .csv.gz or an .xlsx said 'not UTF-8 text (byte 0x8b, probably Latin-1)'; a comment line, '2 fields where
    the header has 1' alone."""
    p = tmp_path / "l.csv"
    p.write_bytes(content)
    with pytest.raises(InputError, match=message):
        read_text_table(p)
