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
