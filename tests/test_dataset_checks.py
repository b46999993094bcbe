"""A scan of the wrong folder level or label column is refused before training (issue 18, item 4).

Exit 2 with one line saying what was found and what was probably meant, nothing written; ``--force``
goes on with the same words as a warning.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from test_errors import assert_user_error, invoke, scan_args, write_images

from noiseaudit.data.checks import check_source, imbalance
from noiseaudit.data.source import LabeledSource, load_source
from noiseaudit.errors import InputError


def one_level_too_high(tmp_path: Path) -> Path:
    """DIR/Dataset/<3 classes>/... and DIR/Examples/*: the layout a new user scanned for 7 minutes."""
    top = tmp_path / "hands"
    for c in ("0", "1", "2"):
        write_images(top / "Dataset" / c, n=4)
    write_images(top / "Examples", n=2)
    return top


def labelled_images(tmp_path: Path, labels: list[str]) -> tuple[Path, Path, Path]:
    """One small image per label under tmp_path/images, a labels.csv listing them (line k + 2 is labels[k]) and
    where the report would go."""
    images = tmp_path / "images"
    names = write_images(images, n=len(labels))
    csv = tmp_path / "labels.csv"
    csv.write_text("path,label\n" + "".join(f"{n},{lab}\n" for n, lab in zip(names, labels)))
    return images, csv, tmp_path / "r.parquet"


def test_class_folders_holding_class_subfolders_point_one_level_down(tmp_path):
    top = one_level_too_high(tmp_path)
    out = tmp_path / "r.parquet"
    line = assert_user_error(invoke(*scan_args(top, None, out)), out)
    assert line == (f"error: {top}: found 2 class folders, 'Dataset' (12 images, in subfolders), 'Examples' "
                    f"(2 images); the images of 'Dataset' sit in its subfolders (0, 1, 2), so the classes are "
                    f"probably one level down: noiseaudit scan {top}/Dataset; pass --force to scan anyway")


def test_the_suggested_folder_scans(tmp_path):
    top = one_level_too_high(tmp_path)
    out = tmp_path / "r.parquet"
    result = invoke(*scan_args(top / "Dataset", None, out))
    assert result.exit_code == 0, result.output
    assert "12 samples, 3 classes" in result.stdout


def test_stray_subfolder_in_one_class(tmp_path):
    root = tmp_path / "tree"
    write_images(root / "cats", n=4)
    write_images(root / "dogs", n=4)
    write_images(root / "dogs" / "old", n=2)
    out = tmp_path / "r.parquet"
    assert_user_error(invoke(*scan_args(root, None, out)), out,
                      "the images of 'dogs' sit in some of its subfolders (old); move those images into the class "
                      "folder, or make each subfolder a class; pass --force")


def test_the_same_subfolders_in_every_class_are_batches_not_classes(tmp_path):
    """cat/batch_a, cat/batch_b, dog/batch_a... was refused with 'the classes are probably one level down:
    noiseaudit scan .../cat', which would scan batch_a against batch_b (a tester's finding). A split's tree, the
    same shape but fewer splits than classes, still points one level down."""
    root = tmp_path / "tree"
    for c in ("cat", "dog", "owl"):
        for batch in ("batch_a", "batch_b"):
            write_images(root / c / batch, n=2)
    assert check_source(load_source(root)) is None
    splits = tmp_path / "splits"
    for split in ("train", "val"):
        for c in ("cat", "dog", "owl"):
            write_images(splits / split / c, n=2)
    with pytest.raises(InputError, match="so the classes are probably one level down"):
        check_source(load_source(splits))


def test_force_goes_on_and_warns_with_the_same_words(tmp_path):
    top = one_level_too_high(tmp_path)
    out = tmp_path / "r.parquet"
    result = invoke(*scan_args(top, None, out, "--force"))
    assert result.exit_code == 0, result.output
    warnings = [x for x in result.stderr.splitlines() if x.startswith("warning: ")]
    assert len(warnings) == 1 and "probably one level down" in warnings[0]
    assert warnings[0].endswith("(going on: --force)")
    assert "14 samples, 2 classes" in result.stdout and out.exists()


def test_a_label_typo_of_one_row_is_named_by_its_line(tmp_path):
    labels = ["a", "b"] * 12
    labels[6] = "bb"
    images, csv, out = labelled_images(tmp_path, labels)
    assert_user_error(invoke(*scan_args(images, csv, out)), out,
                      f"{csv}: label 'bb' has 1 row (line 8) against 12 for 'b': too few to learn what the class "
                      "looks like (a typo?); pass --force to scan anyway")


def test_a_small_dataset_of_small_classes_is_fine(tmp_path):
    root = tmp_path / "tree"
    for c, n in (("a", 3), ("b", 4), ("c", 2)):
        write_images(root / c, n=n)
    check_source(load_source(root))  # no error: nothing here is ten times another class


def test_a_label_column_holding_almost_everything(tmp_path):
    images = tmp_path / "images"
    names = write_images(images, n=202)
    labels = ["photo"] * 200 + ["cat", "dog"]
    csv = tmp_path / "labels.csv"
    csv.write_text("path,label,category\n" + "".join(f"{n},{lab},x\n" for n, lab in zip(names, labels)))
    out = tmp_path / "r.parquet"
    assert_user_error(invoke(*scan_args(images, csv, out)), out,
                      "label 'photo' holds 200 of 202 rows (99.0%) and 'dog' only 1: classes 200x apart usually "
                      "mean the wrong label column (this is 'label'; name another with --label-col)")


def test_a_long_tail_of_classes_is_scanned_without_force(tmp_path):
    """A long-tail tester's ten classes, 1,200 down to 5 (the largest 39% of the rows), were refused as 'the wrong
    label column' until --force, which also waived the checks for classes spelt alike."""
    sizes = {"Automobile": 1200, "dog": 800, "Air Plane": 500, "Frog": 300, "bird": 150, "Horse": 80,
             "cargo ship": 40, "Deer": 20, "cat": 10, "pickup truck": 5}
    labels = [c for c, n in sizes.items() for _ in range(n)]
    source = LabeledSource(root=tmp_path, paths=[f"{i}.jpg" for i in range(len(labels))], labels=labels,
                           lines=list(range(2, len(labels) + 2)), origin="labels.csv")
    check_source(source)  # no error
    assert imbalance(source) is None
    most = LabeledSource(root=tmp_path, paths=[f"{i}.jpg" for i in range(1005)], labels=["a"] * 1000 + ["b"] * 5,
                         lines=list(range(2, 1007)), origin="labels.csv")
    assert "classes 200x apart usually mean the wrong label column" in imbalance(most)


def test_wildly_unbalanced_class_folders(tmp_path):
    root = tmp_path / "tree"
    write_images(root / "many", n=200)
    write_images(root / "few", n=2)
    out = tmp_path / "r.parquet"
    assert_user_error(invoke(*scan_args(root, None, out)), out,
                      "class folder 'many' holds 200 of 202 images (99.0%) and 'few' only 2: classes 100x apart "
                      "usually mean the wrong folder level")


def test_a_folder_scan_names_what_it_leaves_out(tmp_path):
    """Files without an image extension, class folders without an image and files beside the class folders were
    dropped silently; each kind is now one warning line. A GIF is an image (as it is when a CSV lists it)."""
    from PIL import Image

    top = tmp_path / "photos"
    write_images(top / "cats", n=4)
    write_images(top / "dogs", n=4)
    Image.new("L", (8, 8), 90).save(top / "dogs" / "extra.gif")
    (top / "cats" / "notes.txt").write_text("x")
    (top / "cats" / ".DS_Store").write_text("x")  # hidden: left out without a word
    (top / "birds").mkdir()
    (top / "README.md").write_text("x")
    out = tmp_path / "r.parquet"
    result = invoke(*scan_args(top, None, out))
    assert result.exit_code == 0, result.output
    assert "9 samples, 2 classes" in result.stdout
    assert result.stderr.splitlines() == [
        f"warning: {top}: 1 file(s) without an image extension (.bmp, .gif, .jfif, .jpe, .jpeg, .jpg, .png, .tif, "
        ".tiff, .webp) left out: 'cats/notes.txt'",
        f"warning: {top}: 1 class folder(s) without an image, so not classes: 'birds'",
        f"warning: {top}: 1 file(s) outside the class folders left out: 'README.md'"]


def test_classes_differing_only_in_case_or_separators_are_one_class_split_in_two(tmp_path):
    """'Coat' and 'coat' (two annotators' files joined) scanned as two classes flagged 60% of the sample data
    with no word why; now refused, naming both spellings and where each is used."""
    labels = ["T-shirt", "bag"] * 12
    labels[2] = labels[6] = labels[10] = "t_shirt"
    images, csv, out = labelled_images(tmp_path, labels)
    assert_user_error(invoke(*scan_args(images, csv, out)), out,
                      f"{csv}: labels 'T-shirt' (9 rows, lines 2, 6, … 24) and 't_shirt' (3 rows, lines 4, 8, 12) "
                      "differ only in letter case, spaces, '-' or '_': one class split in two? Give them one "
                      "spelling; pass --force to scan anyway")
    result = invoke(*scan_args(images, csv, out, "--force"))
    assert result.exit_code == 0, result.output
    assert "warning: " in result.stderr and "one class split in two" in result.stderr and out.exists()


def test_a_single_twin_is_named_as_a_twin_not_as_a_tiny_class(tmp_path):
    """One 'coat' among 'Coat' rows (a review applied with --allow-new-labels) was blamed on a typo or the label
    column; the check that names the cause comes first."""
    labels = ["Coat", "bag"] * 12
    labels[4] = "coat"
    images, csv, out = labelled_images(tmp_path, labels)
    assert_user_error(invoke(*scan_args(images, csv, out)), out,
                      f"{csv}: labels 'Coat' (11 rows, lines 2, 4, … 24) and 'coat' (1 row, line 6) differ only in "
                      "letter case")


def test_distinct_names_are_not_twins(tmp_path):
    root = tmp_path / "tree"
    for c in ("shirt", "t-shirt", "Shirts"):
        write_images(root / c, n=3)
    check_source(load_source(root))  # differ by more than case and separators: no error


def test_a_missing_label_written_as_text_is_not_a_class(tmp_path):
    """df["label"].astype(str).to_csv(...) writes a missing label as 'nan'; it trained as a class of its own."""
    labels = ["a", "b"] * 12
    labels[3] = labels[9] = "nan"
    images, csv, out = labelled_images(tmp_path, labels)
    assert_user_error(invoke(*scan_args(images, csv, out)), out,
                      f"{csv}: label 'nan' (2 rows, lines 5, 11) looks like a missing value written as text, and "
                      "would train as a class of its own; fill in those labels or leave the rows out; pass --force")
    csv.write_text(csv.read_text().replace(",nan\n", ",none\n"))  # 'none' can be a real class (no defect)
    assert "missing value" not in invoke(*scan_args(images, csv, out)).stderr


def test_numbers_are_not_twins_and_unicode_forms_are(tmp_path):
    """Labels -1 and 1 were refused as one class split in two ('-' stripped); class folders 'café' written
    composed and decomposed (as macOS names files) were two classes that print alike."""
    import unicodedata

    images, csv, out = labelled_images(tmp_path, [-1, 1] * 12)
    check_source(load_source(images, csv))  # two classes, no error
    root = tmp_path / "tree"
    composed, decomposed = unicodedata.normalize("NFC", "café"), unicodedata.normalize("NFD", "café")
    write_images(root / composed, n=6)
    write_images(root / decomposed, n=5)
    with pytest.raises(InputError, match=r"are one name in two Unicode forms \(composed and decomposed accents"):
        check_source(load_source(root))


def test_one_number_written_two_ways_is_one_class_split_in_two(tmp_path):
    """Labels '1' and '01' (a spreadsheet that kept some cells as text) trained as two classes, silently; long ids
    that one float cannot tell apart stay two classes."""
    labels = ["1", "2"] * 12
    labels[4] = labels[8] = "01"
    images, csv, out = labelled_images(tmp_path, labels)
    assert_user_error(invoke(*scan_args(images, csv, out)), out,
                      f"{csv}: labels '1' (10 rows, lines 2, 4, … 24) and '01' (2 rows, lines 6, 10) are one number "
                      "written two ways (a leading zero, a decimal point or comma: a spreadsheet may rewrite some "
                      "cells): one "
                      "class split in two? Give them one spelling; pass --force")
    labels[4] = labels[8] = "1.0"
    images, csv, out = labelled_images(tmp_path / "b", labels)
    with pytest.raises(InputError, match=r"labels '1' \(10 rows.*and '1.0' \(2 rows.*one number written two ways"):
        check_source(load_source(images, csv))
    labels[4] = labels[8] = "1,0"  # a European spreadsheet's decimal comma scanned as a third class, silently
    images, csv, out = labelled_images(tmp_path / "d", ["x"] * len(labels))
    csv.write_text("path;label\n" + "".join(f"{n};{lab}\n" for n, lab in zip(sorted(os.listdir(images)), labels)))
    with pytest.raises(InputError, match=r"labels '1' \(10 rows.*and '1,0' \(2 rows.*one number written two ways"):
        check_source(load_source(images, csv))
    csv.write_text(csv.read_text().replace("1,0\n", "1,000\n"))  # a thousands separator: not one
    check_source(load_source(images, csv))
    ids = ["12345678901234567890", "12345678901234567891"] * 12  # equal as floats, two classes
    images, csv, out = labelled_images(tmp_path / "c", ids)
    check_source(load_source(images, csv))


def test_a_label_column_with_one_value_a_row_is_refused(tmp_path):
    """200 rows in 200 classes (an id column taken for the labels) scanned and flagged 89%."""
    images, csv, out = labelled_images(tmp_path, [f"id{i:03d}" for i in range(24)])
    assert_user_error(invoke(*scan_args(images, csv, out)), out,
                      f"{csv}: each of the 24 rows has a label of its own ('id000', 'id001', 'id002', …): probably "
                      "an id column (this is 'label'; name the label column with --label-col); pass --force")
