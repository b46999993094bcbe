"""Absolute paths in a labels CSV that lie inside the image folder are accepted and stored relative
(issue 18, item 5); the review loop and ``evaluate --truth`` still find their rows."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
from test_errors import assert_user_error, invoke, scan_args, write_images

from noiseaudit.data.pathmatch import PathIndex
from noiseaudit.report.io import read_report


def absolute_csv(tmp_path: Path, top: Path, n: int = 8) -> tuple[Path, Path, list[str]]:
    """Images under tmp_path/images/sub and a labels CSV naming them by absolute paths under ``top``."""
    images = tmp_path / "images"
    names = write_images(images / "sub", n=n)
    labels = ["a", "b"] * (n // 2)
    csv = tmp_path / "labels.csv"
    csv.write_text("path,label\n" + "".join(f"{top}/sub/{name},{lab}\n" for name, lab in zip(names, labels)))
    return images, csv, [f"sub/{n}" for n in names]


def test_absolute_paths_inside_are_stored_relative(tmp_path):
    images, csv, relative = absolute_csv(tmp_path, tmp_path / "images")
    out = tmp_path / "r.parquet"
    result = invoke(*scan_args(images, csv, out))
    assert result.exit_code == 0, result.output
    report, _ = read_report(out)
    assert report["path"].tolist() == relative


def test_absolute_paths_through_the_folder_as_the_user_named_it(tmp_path):
    (tmp_path / "link").symlink_to(tmp_path / "images", target_is_directory=True)
    images, csv, relative = absolute_csv(tmp_path, tmp_path / "link")
    out = tmp_path / "r.parquet"
    result = invoke(*scan_args(tmp_path / "link", csv, out))
    assert result.exit_code == 0, result.output
    assert read_report(out)[0]["path"].tolist() == relative


def test_absolute_path_outside_is_refused_naming_the_line(tmp_path):
    images, csv, _ = absolute_csv(tmp_path, tmp_path / "images")
    write_images(tmp_path / "elsewhere", n=1)
    csv.write_text(csv.read_text() + f"{tmp_path}/elsewhere/img0.png,a\n")
    out = tmp_path / "r.parquet"
    assert_user_error(invoke(*scan_args(images, csv, out)), out, f"{csv}:10: absolute path "
                      f"'{tmp_path}/elsewhere/img0.png' is outside the image folder {images}")


def test_review_of_an_absolute_path_csv_applies(tmp_path):
    images, csv, relative = absolute_csv(tmp_path, tmp_path / "images")
    out = tmp_path / "r.parquet"
    assert invoke(*scan_args(images, csv, out)).exit_code == 0
    review = tmp_path / "review.csv"
    assert invoke("export", out, "-o", review, "--top", "3").exit_code == 0
    sheet = pd.read_csv(review)
    sheet["verdict"], sheet["new_label"] = "relabel", "b"
    sheet.to_csv(review, index=False)
    fixed = tmp_path / "fixed.csv"
    result = invoke("apply", csv, review, "-o", fixed)
    assert result.exit_code == 0, result.output
    table = pd.read_csv(fixed)
    changed = table[table["path"].isin([f"{images}/{p}" for p in sheet["path"]])]
    assert len(changed) == 3 and (changed["label"] == "b").all()
    assert table["path"].str.startswith(str(images)).all()  # the CSV keeps its own paths


def test_evaluate_truth_csv_with_absolute_paths(tmp_path):
    images, csv, _ = absolute_csv(tmp_path, tmp_path / "images")
    out = tmp_path / "r.parquet"
    assert invoke(*scan_args(images, csv, out)).exit_code == 0
    truth = tmp_path / "truth.csv"
    table = pd.read_csv(csv)
    table["is_noisy"] = [True, False, False, False] * 2
    table.to_csv(truth, index=False)
    result = invoke("evaluate", out, "--truth", truth, "--json")
    assert result.exit_code == 0, result.output
    assert '"n_noisy": 2' in result.stdout


def test_path_index_breaks_ties_by_the_shared_folder():
    index = PathIndex(["/data/photos/cat/1.jpg", "/data/photos/old/cat/1.jpg", "/data/photos/dog/2.jpg",
                       "rel/3.jpg", "./rel/4.jpg"])
    index.learn_root(["cat/1.jpg", "dog/2.jpg", "old/cat/1.jpg"])
    assert [index.row(p) for p in ("cat/1.jpg", "old/cat/1.jpg", "dog/2.jpg", "rel/3.jpg", "rel/4.jpg",
                                   "missing.jpg")] == [0, 1, 2, 3, 4, None]
