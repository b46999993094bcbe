"""Labels and trusted labels as pandas DataFrames (the Python API, for notebooks): the same report as the
CSV gives, and errors that name the DataFrame's row."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from noiseaudit import load_model, scan
from noiseaudit.data.csvfile import text_cells
from noiseaudit.errors import InputError, UsageError

OPTIONS = dict(epochs=1, device="cpu", seed=0, workers=1, label_col="digit")


@pytest.fixture(scope="module")
def table(noisy_digits):
    return pd.read_csv(noisy_digits[1])


def test_a_dataframe_gives_the_csvs_report(noisy_digits, table, tmp_path):
    images, csv = noisy_digits
    model = tmp_path / "m.pt"
    from_csv = scan(images, csv, **OPTIONS)
    from_frame = scan(images, table, save_model=str(model), **OPTIONS)
    pd.testing.assert_frame_equal(from_csv, from_frame)  # carried columns keep their types too
    assert from_frame.attrs["noiseaudit"]["config"]["labels_csv"] == "<labels DataFrame>"
    predicted = load_model(model).predict(images, table[["file", "digit"]].head(50), label_col="digit")
    assert (predicted["predicted_label"].to_numpy() == from_frame["predicted_label"].head(50).to_numpy()).all()
    assert (predicted["given_label"].to_numpy() == table["digit"].head(50).to_numpy()).all()


def test_a_trusted_dataframe_is_the_trusted_csv(noisy_digits, table, tmp_path):
    images, csv = noisy_digits
    verified = table.sample(40, random_state=1)[["file", "original_label"]].rename(
        columns={"original_label": "digit"})
    verified.to_csv(tmp_path / "trusted.csv", index=False)
    from_csv = scan(images, csv, trusted=str(tmp_path / "trusted.csv"), **OPTIONS)
    from_frame = scan(images, table, trusted=verified, **OPTIONS)
    assert from_frame["trusted"].sum() == 40
    np.testing.assert_array_equal(from_csv["learned_lr"].to_numpy(), from_frame["learned_lr"].to_numpy())
    assert from_frame.attrs["noiseaudit"]["config"]["trusted"] == "<trusted DataFrame>"


def _with(table: pd.DataFrame, row: int, column: str, value) -> pd.DataFrame:
    changed = table.copy()
    changed[column] = changed[column].astype(object)
    changed.loc[row, column] = value
    return changed


@pytest.mark.parametrize(("edit", "message"), [
    (lambda t: _with(t, 5, "file", "nope.png"), r"^<labels DataFrame> row 5: image 'nope.png' not found"),
    (lambda t: _with(t, 7, "digit", None), r"^<labels DataFrame> row 7: empty label in column 'digit'"),
    (lambda t: pd.concat([t, t.iloc[[2]].assign(digit=11)], ignore_index=True),
     r"^<labels DataFrame> row 1797: 'd0002.png' is listed twice with different labels: '\d' on row 2, '11' here"),
    (lambda t: t.rename(columns={"digit": "lbl"}), r"^<labels DataFrame>: no label column 'digit'"),
    (lambda t: t.head(0), r"^<labels DataFrame>: the labels DataFrame has no rows"),
])
def test_dataframe_errors_name_the_row(noisy_digits, table, tmp_path, edit, message):
    out = tmp_path / "r.parquet"
    with pytest.raises(InputError, match=message):
        scan(noisy_digits[0], edit(table), output=out, **OPTIONS)
    assert not out.exists()


def test_a_trusted_dataframe_error_names_its_row(noisy_digits, table):
    verified = pd.DataFrame({"file": ["d0001.png", "d0002.png"], "digit": [1, 12]})
    with pytest.raises(InputError, match=r"^<trusted DataFrame> row 1: class 12 of 'd0002.png' is not a class"):
        scan(noisy_digits[0], table, trusted=verified, **OPTIONS)


def test_a_series_is_refused_plainly(noisy_digits, table):
    with pytest.raises(UsageError, match=r"^the labels CSV must be a path or a pandas DataFrame, not Series$"):
        scan(noisy_digits[0], table["digit"], epochs=1, device="cpu")


def test_without_a_label_column_the_hint_is_the_keyword(noisy_digits, table):
    with pytest.raises(InputError, match=r"name one with label_col$"):
        scan(noisy_digits[0], table.rename(columns={"digit": "lbl"}), epochs=1, device="cpu")


def test_text_cells_reads_a_frame_as_the_csv_reader_would():
    frame = pd.DataFrame({" path ": ["a.png", None], "y": [3.0, np.nan], "z": [0.5, 1.0], "flag": [True, False]})
    cells = text_cells(frame)
    assert list(cells.columns) == ["path", "y", "z", "flag"]
    assert cells.to_dict("list") == {"path": ["a.png", ""], "y": ["3", ""], "z": ["0.5", "1.0"],
                                     "flag": ["True", "False"]}


def test_a_features_scan_takes_a_trusted_dataframe():
    from noiseaudit import scan_features

    rng = np.random.default_rng(0)
    x = np.concatenate([rng.normal(0, 1, (40, 4)), rng.normal(3, 1, (40, 4))])
    labels = pd.DataFrame({"id": [f"s{i}" for i in range(80)], "label": [0] * 40 + [1] * 40})
    report = scan_features(x, labels, trusted=pd.DataFrame({"id": ["s3", "s50"], "label": [0, 1]}), epochs=2,
                           device="cpu", seed=0)
    assert sorted(report.loc[report["trusted"], "path"]) == ["s3", "s50"]
    with pytest.raises(InputError, match=r"^<trusted DataFrame> row 0: key 'x9' is not in <labels DataFrame>"):
        scan_features(x, labels, trusted=pd.DataFrame({"id": ["x9"], "label": [0]}), epochs=2, device="cpu")


def test_notebook_slips_get_one_clear_error(noisy_digits, table):
    """The table passed where the folder goes gave 'OSError: File name too long' with the DataFrame's repr in it;
    a misspelt option a bare TypeError; epochs=1.5 trained 2 epochs and recorded 1.5."""
    from noiseaudit import scan_features

    images, _ = noisy_digits
    with pytest.raises(UsageError, match=r"^the image folder comes first, as a path, then the labels: "
                                         r"scan\('images/', labels\); got a DataFrame as the image folder$"):
        scan(table, **OPTIONS)
    with pytest.raises(UsageError, match=r"^unknown option 'epochz' \(did you mean 'epochs'\?\); the options are"):
        scan(images, table, epochz=1, device="cpu", label_col="digit")
    with pytest.raises(UsageError, match=r"^unknown option 'quiet'; "):
        scan_features(np.zeros((len(table), 3)), table, quiet=True, label_col="digit")
    for bad in (1.5, "1", True):
        with pytest.raises(UsageError, match=rf"^epochs must be a whole number, got {bad!r}$"):
            scan(images, table, **{**OPTIONS, "epochs": bad})


@pytest.mark.parametrize("call", ["evaluate", "select_suspects", "render_html"])
def test_a_reports_path_where_the_report_goes_says_how_to_read_it(call):
    """evaluate("r.parquet") gave AttributeError: 'str' object has no attribute 'columns'."""
    import noiseaudit

    with pytest.raises(UsageError, match=r"^a report DataFrame is needed, not a str: noiseaudit.read_report\(path\) "
                                         "reads one from its Parquet file$"):
        getattr(noiseaudit, call)("r.parquet")


def test_evaluate_takes_a_whole_k():
    """evaluate(report, k=2.5) was accepted."""
    from noiseaudit import evaluate

    report = pd.DataFrame({"path": ["a", "b"], "given_label": [0, 1], "rank": [1, 2], "is_suspect": [True, False],
                           "original_label": [1, 1]})
    with pytest.raises(UsageError, match=r"^k must be a whole number, got 2.5$"):
        evaluate(report, k=2.5)


def test_python_errors_name_keywords_where_the_command_line_names_flags(noisy_digits, table, tmp_path):
    """scan(..., lr=-1) said "--lr must be a positive number", an option a notebook never typed."""
    from noiseaudit import select_suspects
    from noiseaudit.errors import command_line, option

    images, _ = noisy_digits
    with pytest.raises(UsageError, match=r"^lr must be a positive number, got -1.0$"):
        scan(images, table, **{**OPTIONS, "lr": -1.0})
    with pytest.raises(UsageError, match=r"^rank_by='rate' ranks learned rates; method='plain' ranks by"):
        scan(images, table, **{**OPTIONS, "rank_by": "rate", "method": "plain"})
    with pytest.raises(InputError, match=r"pass force=True to scan anyway$"):
        scan(images, table.assign(digit=table["digit"].where(table.index > 0, 99)), **OPTIONS)  # a class of 1
    report = pd.DataFrame({"path": ["a"], "given_label": [0], "rank": [1], "is_suspect": [True]})
    with pytest.raises(UsageError, match=r"^choose one of top, min_suspicion and flagged=True$"):
        select_suspects(report, top=1, flagged=True)
    (tmp_path / "r.parquet").write_bytes(b"")
    with pytest.raises(UsageError, match=r"output exists; pass overwrite=True to replace it$"):
        scan(images, table, output=tmp_path / "r.parquet", **OPTIONS)
    assert [option("hyper_lr"), option("model", "mlp"), option("force", True), option("cache", False)] == [
        "hyper_lr", "model='mlp'", "force=True", "cache=False"]
    with command_line():
        assert [option("hyper_lr"), option("model", "mlp"), option("force", True), option("cache", False),
                option("truth_csv", flag="--truth")] == ["--hyper-lr", "--model mlp", "--force", "--no-cache",
                                                          "--truth"]
    assert option("truth_csv", flag="--truth") == "truth_csv"  # and back outside the block


def test_a_table_without_report_columns_names_them():
    """review_table(df) on a table that was not a report's rows raised a bare KeyError: 'suggested_label'."""
    from noiseaudit import evaluate, review_table, select_suspects

    hand_made = pd.DataFrame({"path": ["a.png"], "given_label": ["cat"], "rank": [1], "is_suspect": [True]})
    with pytest.raises(UsageError, match=r"^not a report's rows: no column 'given_prob', 'suggested_label', "
                                         r"'suggested_prob', 'learned_lr', 'suspicion' \(a report comes from "
                                         r"noiseaudit.scan"):
        review_table(hand_made)
    with pytest.raises(UsageError, match=r"^not a report's rows: no column 'suspicion' "):
        select_suspects(hand_made, min_suspicion=0.5)
    with pytest.raises(UsageError, match=r"^not a report's rows: no column 'rank' "):
        evaluate(hand_made.drop(columns="rank").assign(original_label="dog"))
    assert list(select_suspects(hand_made)["path"]) == ["a.png"]


def test_inject_file_takes_a_dataframe(noisy_digits, table, tmp_path):
    """inject_file(df, ...) raised TypeError: the DataFrame is a labels CSV, its images looked up only with
    images_dir."""
    from noiseaudit import inject_file

    clean = table[["file", "original_label"]].rename(columns={"original_label": "digit"})
    clean.to_csv(tmp_path / "clean.csv", index=False)
    from_file = inject_file(tmp_path / "clean.csv", 0.2, "asymmetric", seed=3, label_col="digit")
    from_frame = inject_file(clean, 0.2, "asymmetric", seed=3, label_col="digit")
    assert from_frame.table["is_noisy"].sum() == round(0.2 * len(clean)) and from_frame.classes == from_file.classes
    pd.testing.assert_frame_equal(from_frame.table, from_file.table, check_dtype=False)  # the same draw
    assert from_frame.table["digit"].dtype == from_frame.table["original_label"].dtype == clean["digit"].dtype
    np.testing.assert_array_equal(from_frame.noise_matrix, from_file.noise_matrix)
    with_images = inject_file(clean, 0.2, "asymmetric", seed=3, label_col="digit", images_dir=noisy_digits[0])
    pd.testing.assert_frame_equal(with_images.table, from_frame.table)
    with pytest.raises(UsageError, match=r"^kind='instance' trains a model: pass features \(or images_dir for "):
        inject_file(clean, 0.2, "instance", label_col="digit")
    with pytest.raises(InputError, match=r"^<labels DataFrame>: input already has a 'original_label' column"):
        inject_file(table, 0.2, label_col="digit")


def test_more_notebook_slips_get_one_clear_error(noisy_digits, table, tmp_path, monkeypatch):
    """select_suspects(top='5'), a non-callable on_progress and predict(None) raised bare TypeErrors; '~' in a path
    from Python was not expanded ("image folder not found"), though pandas expands it."""
    from noiseaudit import select_suspects

    images, csv = noisy_digits
    report = pd.DataFrame({"path": ["a"], "given_label": [0], "rank": [1], "is_suspect": [True], "suspicion": [0.9]})
    with pytest.raises(UsageError, match=r"^top must be a whole number, got '5'$"):
        select_suspects(report, top="5")
    with pytest.raises(UsageError, match=r"^min_suspicion must be in \[0, 1\] .* got '0.5'$"):
        select_suspects(report, min_suspicion="0.5")
    with pytest.raises(UsageError, match=r"^on_progress must be a function on_progress\(stage, done, total, info\), "
                                         r"not bool$"):
        scan(images, table, on_progress=True, **OPTIONS)
    monkeypatch.setenv("HOME", str(images.parent))
    model = tmp_path / "m.pt"
    report = scan("~/images", "~/labels.csv", output="~/r.parquet", save_model=str(model), **OPTIONS)
    assert len(report) == len(table) and (images.parent / "r.parquet").is_file()
    (images.parent / "r.parquet").unlink()  # the folder is the module's
    with pytest.raises(UsageError, match=r"m.pt: a model trained on images predicts from an image folder \(a path\), "
                                         r"not a NoneType$"):
        load_model(model).predict(None)


def test_options_of_the_wrong_type_are_named(noisy_digits, table):
    """lr='0.1' failed at '<' with a TypeError; resume='no' resumed and augment='off' augmented (a non-empty string
    is true); inject_file's rate and seed as strings, its arguments swapped, and scan_features given images_dir
    were bare TypeErrors."""
    from noiseaudit import inject_file, scan_features

    images, _ = noisy_digits
    for option, value, message in [("lr", "0.1", "lr must be a number, got '0.1'"),
                                   ("noise_rate", True, "noise_rate must be a number, got True"),
                                   ("seed", 1.0, "seed must be a whole number, got 1.0"),
                                   ("resume", "no", "resume must be True or False, got 'no'"),
                                   ("augment", "off", r"augment must be True or False \(or None\), got 'off'")]:
        with pytest.raises(UsageError, match=f"^{message}$"):
            scan(images, table, **{**OPTIONS, option: value})
    clean = table[["file", "original_label"]].rename(columns={"original_label": "digit"})
    with pytest.raises(UsageError, match=r"^rate must be a number, got '0.2'$"):
        inject_file(clean, "0.2", label_col="digit")
    with pytest.raises(UsageError, match=r"^the labels come first, .* got a float as the labels$"):
        inject_file(0.2, clean, label_col="digit")
    flipped = inject_file(clean, 0.1, "asymmetric", pairs_file={3: 8, 8: 3}, seed=0, label_col="digit")
    changed = flipped.table[flipped.table["is_noisy"]]
    assert set(changed["original_label"]) <= {3, 8} and len(changed) > 0
    with pytest.raises(UsageError, match=r"^scan_features takes no images_dir; give features and labels"):
        scan_features(np.zeros((len(table), 3)), table, images_dir="x", label_col="digit")


def test_swapped_features_and_labels_are_named_in_one_short_line(table):
    """scan_features(labels_df, X) quoted whole feature rows: a message of 20 KB at 784 dimensions."""
    from noiseaudit import scan_features

    x = np.random.default_rng(0).normal(size=(len(table), 784))
    with pytest.raises(UsageError, match=r"^labels must be one per sample \(a sequence, a DataFrame or a CSV path\), "
                                         r"not of shape \(1797, 784\); the features come first") as info:
        scan_features(table, x, label_col="digit")
    assert len(str(info.value)) < 200


def test_what_other_libraries_call_an_option_is_pointed_to_it_and_frames_say_row(noisy_digits, table):
    """learning_rate= suggested noise_rate; a DataFrame's check named its rows as 'lines'."""
    images, _ = noisy_digits
    with pytest.raises(UsageError, match=r"^unknown option 'learning_rate' \(did you mean 'lr'\?\)"):
        scan(images, table, learning_rate=0.1, label_col="digit")
    with pytest.raises(UsageError, match=r"^unknown option 'random_state' \(did you mean 'seed'\?\)"):
        scan(images, table, random_state=0, label_col="digit")
    with pytest.raises(InputError, match=r"label '99' has 3 rows \(rows 0, 1, 2\) against"):
        scan(images, table.assign(digit=table["digit"].where(table.index > 2, 99)), **OPTIONS)


def test_a_heavily_flagging_scan_warns_a_notebook_once(noisy_digits, table, monkeypatch, tmp_path):
    """The command line's summary asked for a review when a scan flagged over 30%; a notebook got only the
    DataFrame, almost every row flagged. (The threshold is lowered here so that an ordinary scan counts as heavy.)"""
    import warnings

    import noiseaudit.report.summary as summary
    from noiseaudit.errors import HeavyFlagging

    from test_errors import invoke

    images, csv = noisy_digits
    monkeypatch.setattr(summary, "HEAVY_FLAGGING", 0.0)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        report = scan(images, table, **OPTIONS)
    heavy = [str(w.message) for w in caught if issubclass(w.category, HeavyFlagging)]
    assert heavy == [f"{int(report['is_suspect'].sum())} of {len(report)} samples flagged. That is a lot. Either many "
                     f"labels are wrong, or the model is too weak for this data (it agrees with "
                     f"{100 * (report['predicted_label'] == report['given_label']).mean():.1f}% of the given labels) "
                     "and hard samples are flagged beside wrong ones: review a sample of the flags before acting on "
                     "the count."]
    result = invoke("scan", images, csv, "--label-col", "digit", "-o", tmp_path / "r.parquet", "--epochs", "1",
                    "--device", "cpu", "--quiet")
    assert result.exit_code == 0 and "warning:" not in result.stderr and "That is a lot" in result.stdout


def test_a_dataframes_string_labels_stay_strings(noisy_digits, table):
    """Labels a DataFrame holds as strings ("0".."9", or a categorical of them) came back as int64 in every label
    column and in the classes, so a merge back on the caller's frame matched no label (a tester's finding). A
    file's labels are still read as ints where they are written as ints, and a DataFrame's ints stay ints."""
    from noiseaudit.data.source import load_source, read_label_table

    images, _ = noisy_digits
    as_text = table.assign(digit=table["digit"].astype(str))
    for labels in (as_text, as_text.assign(digit=as_text["digit"].astype("category"))):
        source = load_source(images, labels, label_col="digit")
        assert source.labels[:3] == [str(v) for v in table["digit"][:3]]
    assert load_source(images, table, label_col="digit").labels[:3] == table["digit"][:3].tolist()
    assert read_label_table(["3", "4", "3"]).labels == ["3", "4", "3"]
    assert read_label_table([3, 4, 3]).labels == [3, 4, 3]
    report = scan(images, as_text, **OPTIONS)
    assert report["given_label"].map(type).eq(str).all() and report.attrs["noiseaudit"]["classes"][0] == "0"
    joined = as_text.merge(report[["path", "given_label"]], left_on="file", right_on="path")
    assert (joined["digit"] == joined["given_label"]).all()
