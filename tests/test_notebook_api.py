"""A cleanlab user's notebook: what the Python API hands back and leaves behind (a third first-hour test).

Each test names what it did before the fix.
"""

from __future__ import annotations

import random

import numpy as np
import pandas as pd
import pytest
import torch

import noiseaudit as na
from noiseaudit.errors import InputError, UsageError

FAST = dict(epochs=1, device="cpu", seed=0)


@pytest.fixture(scope="module")
def digits() -> tuple[np.ndarray, np.ndarray]:
    from sklearn.datasets import load_digits

    x, y = load_digits(return_X_y=True)
    return x[:300].astype(np.float32), y[:300]


def test_apply_review_hands_a_dataframe_back_in_its_own_types():
    """Every column came back as text: an int label column of 0..3 counted no 0 afterwards, an int id '0'."""
    labels = pd.DataFrame({"id": np.arange(40), "label": np.arange(40) % 4, "extra": 1.5, "flag": True},
                          index=np.arange(40) + 1000)
    sheet = pd.DataFrame({"path": ["3", "5", "7"], "given_label": [3, 1, 3], "suggested_label": [0, 0, 0],
                          "verdict": ["relabel", "drop", "keep"], "new_label": ["2", "", ""]})
    result = na.apply_review(labels, sheet)
    assert result.table.dtypes.to_dict() == labels.dtypes.to_dict()
    assert result.table.index.tolist() == [i + 1000 for i in range(40) if i != 5]  # the caller's index, less 5
    assert result.table.loc[1003, "label"] == 2 and (result.table["label"] == 0).sum() == 10
    assert result.changes == [("3", "3", "2")]
    categorical = labels.assign(label=labels["label"].astype("category"))
    sheet.loc[0, "new_label"] = "cat"
    added = na.apply_review(categorical, sheet, allow_new_labels=True).table["label"]
    assert isinstance(added.dtype, pd.CategoricalDtype) and added.loc[1003] == "cat" and added.notna().all()
    as_ints = na.apply_review(labels, sheet, allow_new_labels=True).table["label"]  # "cat" does not fit int64
    assert as_ints.dtype == object and as_ints.loc[1003] == "cat" and as_ints.loc[1002] == 2


@pytest.mark.parametrize(("call", "message"), [
    (lambda df: na.read_report(df), "the report must be a path, not DataFrame"),
    (lambda df: na.load_model(df), "the model file must be a path, not DataFrame"),
    (lambda df: na.apply_review(df, [1]), "the reviewed file must be a path or a pandas DataFrame, not list"),
    (lambda df: na.apply_review([1, 2], df), "the labels CSV must be a path or a pandas DataFrame, not list"),
    (lambda df: na.write_review([1], "x.csv"), r"the review sheet must be a pandas DataFrame \(review_table's\), "
                                               "not list"),
    (lambda df: na.write_review(df, None), "the output must be a path, not NoneType"),
])
def test_a_wrong_argument_type_is_one_line(call, message):
    """Each was a bare TypeError ('expected str, bytes or os.PathLike object') or AttributeError."""
    with pytest.raises(UsageError, match=rf"^{message}$"):
        call(pd.DataFrame({"path": ["a.png"], "label": ["x"]}))


def test_write_report_onto_a_file_that_was_there_says_so(tmp_path):
    """It said the file was 'written by something else while this ran', of a file there before the call."""
    out = tmp_path / "r.parquet"
    out.write_bytes(b"old")
    report = pd.DataFrame({"path": ["a"], "rank": [1]})
    with pytest.raises(UsageError, match=rf"^{out}: output exists; pass overwrite=True to replace it$"):
        na.write_report(report, {}, out, overwrite=False)
    assert out.read_bytes() == b"old"
    na.write_report(report, {}, out)
    assert na.read_report(out)[0]["path"].tolist() == ["a"]


def test_a_scan_leaves_the_callers_random_streams_as_they_were(digits):
    """Every scan reseeded the global generators: a notebook's next np.random.rand() was the same after every
    call, whatever it had seeded."""
    x, y = digits
    for seed in (1, 2):
        random.seed(seed), np.random.seed(seed), torch.manual_seed(seed)
        na.scan_features(x, y, **FAST)
        after = random.random(), np.random.rand(), torch.rand(1).item()
        random.seed(seed), np.random.seed(seed), torch.manual_seed(seed)
        assert after == (random.random(), np.random.rand(), torch.rand(1).item())
    first, again = na.scan_features(x, y, **FAST), na.scan_features(x, y, **FAST)
    pd.testing.assert_frame_equal(first, again)  # and its own run is as reproducible as before


def test_options_that_do_not_apply_are_refused(digits):
    """scan(features=...) trained on the images and recorded the file; scan_features(image_size=32) was taken
    and used by nothing; scan_features(model='foo') listed the image models."""
    x, y = digits
    with pytest.raises(UsageError, match=r"^scan takes images; feature vectors go to scan_features\(features, "
                                         r"labels\)$"):
        na.scan("images", "labels.csv", features="x.npy")
    for name, value in (("image_size", 32), ("workers", 4), ("on_bad_image", "skip")):
        with pytest.raises(UsageError, match=rf"^{name} is an option of images; scan_features uses its feature "
                                             "vectors as given$"):
            na.scan_features(x, y, **{name: value})
    with pytest.raises(UsageError, match=r"^unknown model 'foo'; choose one of mlp, linear$"):
        na.scan_features(x, y, model="foo")
    with pytest.raises(UsageError, match=r"^unknown model 'linear'; choose one of small-cnn, resnet18, mlp$"):
        na.scan("images", "labels.csv", model="linear")


def test_labels_given_as_an_array_are_named_as_one(digits):
    """Errors spoke of '<labels DataFrame>' and 'the labels DataFrame has no rows' of a NumPy array."""
    x, y = digits
    with pytest.raises(InputError, match=r"^<array>: features have 300 rows but <labels ndarray> has 299 samples"):
        na.scan_features(x, y[:-1])
    with pytest.raises(InputError, match=r"^<labels list>: the labels are an empty list$"):
        na.scan_features(np.zeros((0, 4)), [])


def test_a_features_scan_records_no_image_folder(digits):
    """images_root was the working directory, where there is no image folder."""
    x, y = digits
    meta = na.scan_features(x, y, **FAST).attrs["noiseaudit"]
    assert meta["images_root"] is None and meta["config"]["features"] == "<ndarray>"


def test_a_trusted_table_without_keys_says_what_names_its_rows(digits):
    """It said 'name one with path_col', an option scan_features refuses; an 'id' column of keys was not found."""
    x, y = digits
    with pytest.raises(InputError, match=r"^<trusted DataFrame>: no key column found \(looked for path, .*"
                                         r"id, key.*; columns are \['label'\]; name the column of keys \(the labels' "
                                         r"keys, or their 0-based row numbers where they have no key column\) 'id'$"):
        na.scan_features(x, y, trusted=pd.DataFrame({"label": [0, 1]}), **FAST)
    report = na.scan_features(x, y, trusted=pd.DataFrame({"id": ["0", "1"], "label": [y[0], y[1]]}), **FAST)
    assert report["trusted"].sum() == 2


def test_features_and_labels_in_two_orders_are_refused(digits):
    """A shuffled features DataFrame beside its labels Series was paired row by row: 1401 of 1797 flagged."""
    x, y = digits
    features, labels = pd.DataFrame(x), pd.Series(y)
    with pytest.raises(UsageError, match=r"^features and labels are paired by position, but their indexes differ "
                                         r"\(at row 0: 208 in the features, 0 in the labels\): put them in one order"):
        na.scan_features(features.sample(frac=1, random_state=0), labels)
    shuffled = features.sample(frac=1, random_state=0)
    report = na.scan_features(shuffled, labels.loc[shuffled.index], **FAST)  # one order: paired as given
    assert report["given_label"].tolist() == y[shuffled.index].tolist()


def test_inject_file_hands_a_dataframe_back_in_its_own_types():
    """The int label column came back as object, original_label too, and an int id column as text."""
    frame = pd.DataFrame({"id": np.arange(50), "label": np.arange(50) % 5}, index=np.arange(50) + 7)
    result = na.inject_file(frame, 0.2, seed=0)
    table = result.table
    assert table.dtypes.to_dict() == {"id": np.dtype("int64"), "label": np.dtype("int64"),
                                      "original_label": np.dtype("int64"), "is_noisy": np.dtype("bool")}
    assert table.index.equals(frame.index) and table["original_label"].equals(frame["label"])
    assert int(table["is_noisy"].sum()) == 10 == int((table["label"] != table["original_label"]).sum())
    assert repr(result) == "InjectionResult(10 of 50 labels changed, 5 classes; .table, .noise_matrix)"


def test_a_saved_features_model_takes_labels_as_an_array_and_prints_short(digits, tmp_path):
    """predict(X, y) refused an array of labels that scan_features took; repr() was 2,000 characters of tensors."""
    x, y = digits
    report = na.scan_features(x, y, save_model=str(tmp_path / "m.pt"), **FAST)
    model = na.load_model(tmp_path / "m.pt")
    predicted = model.predict(x, y)
    assert predicted["given_label"].tolist() == y.tolist()
    assert predicted["predicted_label"].tolist() == report["predicted_label"].tolist()
    assert repr(model) == f"SavedModel({str(tmp_path / 'm.pt')!r}: mlp, features, 10 classes)"


def test_small_type_slips():
    """select_suspects(flagged='no') selected the flagged rows; recall_at_k was an np.float64 beside floats."""
    report = pd.DataFrame({"path": ["a", "b"], "given_label": [0, 1], "rank": [1, 2], "is_suspect": [True, False]})
    with pytest.raises(UsageError, match=r"^flagged must be True or False, got 'no'$"):
        na.select_suspects(report, flagged="no")
    metrics = na.ranking_metrics(np.array([True, False, True]), np.array([0.9, 0.1, 0.5]))
    assert all(type(v) in (float, int) for v in metrics.values())


def test_a_truth_table_without_a_truth_column_lists_its_columns():
    """It said what it needs but not what it found: a path,clean CSV gave no hint that 'clean' was the trouble."""
    report = pd.DataFrame({"path": ["a", "b"], "given_label": [0, 1], "rank": [1, 2], "is_suspect": [True, False],
                           "suspicion": [0.9, 0.1]})
    with pytest.raises(InputError, match=r"^<truth DataFrame>: truth CSV needs a path column and is_noisy or "
                                         r"original_label; its columns are \['path', 'clean'\] \(a column of true "
                                         r"labels goes by the name original_label\)$"):
        na.evaluate(report, truth_csv=pd.DataFrame({"path": ["a", "b"], "clean": [0, 0]}))


def test_a_warning_points_at_the_callers_line(digits):
    """The input checks' warnings were located at noiseaudit/scan.py:318, not at the notebook's line."""
    import warnings

    x, y = digits
    labels = np.where(y == 9, 8, y)
    labels[np.flatnonzero(y == 9)[0]] = 9  # a class of one sample: a warning under force=True
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        na.scan_features(x, labels, force=True, **FAST)
    ours = [w for w in caught if issubclass(w.category, na.NoiseAuditWarning)]
    assert ours and all(w.filename == __file__ for w in ours), [(w.filename, w.lineno) for w in ours]
