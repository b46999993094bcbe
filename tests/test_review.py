"""evaluate on a hand-built report (against scikit-learn), export formats, and apply's refusals."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import average_precision_score, f1_score, precision_score, recall_score, roc_auc_score
from typer.testing import CliRunner

from noiseaudit.cli import app
from noiseaudit.data.source import load_source
from noiseaudit.data.trusted import merge_trusted
from noiseaudit.errors import InputError
from noiseaudit.report.io import write_report


def invoke(*args):
    return CliRunner().invoke(app, [str(a) for a in args])


@pytest.fixture()
def hand_report(tmp_path):
    rng = np.random.default_rng(0)
    n = 200
    truth = rng.random(n) < 0.3
    lr = np.exp(np.where(truth, -0.6, 0.2) + rng.normal(0, 0.4, n))
    loss = np.where(truth, 2.0, 0.3) + rng.normal(0, 0.8, n)
    order = np.argsort(lr, kind="stable")
    rank = np.empty(n, dtype=np.int64)
    rank[order] = np.arange(1, n + 1)
    given = rng.integers(0, 3, n)
    original = np.where(truth, (given + 1) % 3, given)
    report = pd.DataFrame({
        "sample_id": np.arange(n), "path": [f"img/{i}.png" for i in range(n)],
        "given_label": np.array(["a", "b", "c"], dtype=object)[given],
        "predicted_label": "a", "pred_prob": 0.5, "given_prob": rng.random(n),
        "suggested_label": np.array(["a", "b", "c"], dtype=object)[original], "suggested_prob": 0.6,
        "learned_lr": lr, "learned_lr_mean": lr, "loss": loss, "margin": -loss,
        "rank": rank, "suspicion": 1 - rank / n, "is_suspect": rank <= 70,
        "original_label": np.array(["a", "b", "c"], dtype=object)[original],
    })
    path = tmp_path / "hand.parquet"
    write_report(report, {"classes": ["a", "b", "c"]}, path)
    return report, truth, path


def test_evaluate_json_matches_sklearn(hand_report):
    report, truth, path = hand_report
    result = invoke("evaluate", path, "--json")
    assert result.exit_code == 0, result.output
    got = json.loads(result.stdout)
    for key in ("n", "n_noisy", "n_flagged", "precision", "recall", "f1", "auroc", "average_precision",
                "precision_at_k", "signals"):
        assert key in got
    flagged = report["is_suspect"].to_numpy()
    assert got["n"] == 200 and got["n_noisy"] == truth.sum() and got["n_flagged"] == 70
    assert got["precision"] == pytest.approx(precision_score(truth, flagged))
    assert got["recall"] == pytest.approx(recall_score(truth, flagged))
    assert got["f1"] == pytest.approx(f1_score(truth, flagged))
    assert got["auroc"] == pytest.approx(roc_auc_score(truth, -report["rank"]))
    assert got["average_precision"] == pytest.approx(average_precision_score(truth, -report["rank"]))
    assert got["signals"]["loss"]["auroc"] == pytest.approx(roc_auc_score(truth, report["loss"]))
    assert got["signals"]["margin"]["average_precision"] == pytest.approx(
        average_precision_score(truth, -report["margin"]))
    k = int(truth.sum())
    top = np.argsort(report["rank"].to_numpy())[:k]
    assert got["precision_at_k"] == pytest.approx(truth[top].mean())
    assert sum(c["n"] for c in got["per_class"]) == 200
    assert got["true_noise_rate"] == pytest.approx(truth.mean())


def test_evaluate_with_k_and_truth_csv(hand_report, tmp_path):
    report, truth, path = hand_report
    bare = report.drop(columns=["original_label"])
    write_report(bare, {}, tmp_path / "bare.parquet")
    result = invoke("evaluate", tmp_path / "bare.parquet")  # no truth anywhere: the message names the report
    assert result.exit_code == 2 and result.stderr == (f"error: {tmp_path / 'bare.parquet'}: no truth: the report "
                                                       "has no is_noisy or original_label column; pass --truth\n")
    pd.DataFrame({"path": report["path"], "is_noisy": truth}).to_csv(tmp_path / "truth.csv", index=False)
    result = invoke("evaluate", tmp_path / "bare.parquet", "--truth", tmp_path / "truth.csv", "--k", "10", "--json")
    got = json.loads(result.stdout)
    top = np.argsort(report["rank"].to_numpy())[:10]
    assert got["k"] == 10 and got["precision_at_k"] == pytest.approx(truth[top].mean())
    text = invoke("evaluate", path).stdout
    assert "Rankings by signal" in text and "Per class" in text


def test_evaluate_counts_the_rows_it_leaves_out_as_not_ranked(hand_report, tmp_path):
    """Trusted samples and skipped images were left out of every score without a word: recall's denominator
    silently lost their known wrong labels."""
    report, truth, _ = hand_report
    marked = report.assign(status="ok")
    marked.loc[:2, "status"] = "trusted"
    marked.loc[3:4, "status"] = "unreadable"
    marked.loc[:4, ["rank", "is_suspect"]] = [pd.NA, False]
    marked["rank"] = marked["rank"].astype("Int64")
    write_report(marked, {"classes": ["a", "b", "c"]}, tmp_path / "marked.parquet")
    result = invoke("evaluate", tmp_path / "marked.parquet", "--json")
    assert result.exit_code == 0, result.output
    got = json.loads(result.stdout)
    assert (got["n"], got["n_not_ranked"], got["n_unknown"], got["n_noisy"]) == (195, 5, 0, truth[5:].sum())
    text = invoke("evaluate", tmp_path / "marked.parquet").stdout
    assert text.startswith("195 samples (and 5 not ranked: trusted or skipped, left out), ")


def test_evaluate_refuses_true_labels_that_name_the_classes_another_way(hand_report, tmp_path):
    """A researcher's truth CSV with one class spelt 'T-Shirt' for 'T-shirt' (or class indices for names) scored
    every such row as a wrong label: recall 0.625 for 0.880, exit 0, nothing said."""
    report, truth, path = hand_report
    bare = tmp_path / "bare.parquet"
    write_report(report.drop(columns=["original_label"]), {}, bare)
    spelt = report[["path", "original_label"]].replace({"original_label": {"b": "B"}})
    spelt.to_csv(tmp_path / "spelt.csv", index=False)
    result = invoke("evaluate", bare, "--truth", tmp_path / "spelt.csv")
    first = spelt.index[spelt["original_label"] == "B"][0]
    assert result.exit_code == 2 and result.stderr == (
        f"error: {tmp_path / 'spelt.csv'}: original_label 'B' for 'img/{first}.png' is the class 'b' spelt another "
        "way; write the true labels as the given ones are, or every such row counts as a wrong label\n")
    indices = report[["path"]].assign(original_label=report["original_label"].map({"a": 0, "b": 1, "c": 2}))
    indices.to_csv(tmp_path / "indices.csv", index=False)
    result = invoke("evaluate", bare, "--truth", tmp_path / "indices.csv")
    assert result.exit_code == 2 and "no original_label is a class of the report (the first, '" in result.stderr
    assert "the classes: 'a', 'b', 'c'): the true labels must name the classes as the given labels do" in result.stderr
    # a report carrying such a column (the labels CSV's own): the scan's summary shows no scores, evaluate refuses
    write_report(report.replace({"original_label": {"c": "C"}}), {}, tmp_path / "carried.parquet")
    result = invoke("evaluate", tmp_path / "carried.parquet")
    assert result.exit_code == 2 and "is the class 'c' spelt another way" in result.stderr
    # a true class outside the label set (an image of no known class) is a wrong label, said in a warning
    outside = report[["path", "original_label"]].copy()
    outside.loc[0, "original_label"] = "unicorn"
    outside.to_csv(tmp_path / "outside.csv", index=False)
    result = invoke("evaluate", bare, "--truth", tmp_path / "outside.csv", "--json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["n_noisy"] == truth.sum() + (not truth[0])
    assert ("1 original_label value names no class of the report (such as 'unicorn' for 'img/0.png'); they count "
            "as wrong labels") in result.stderr


def test_evaluate_leaves_rows_of_unknown_truth_out(hand_report, tmp_path):
    # Truth checked for some rows only: blank cells are unknown, not right labels (nor, as text, wrong ones).
    report, truth, _ = hand_report
    known = np.arange(len(report)) % 3 != 0
    words = np.where(truth, "yes", "no").astype(object)
    words[~known] = ""
    bare = report.drop(columns=["original_label"])
    write_report(bare, {}, tmp_path / "bare.parquet")
    pd.DataFrame({"path": report["path"], "is_noisy": words}).to_csv(tmp_path / "truth.csv", index=False)
    result = invoke("evaluate", tmp_path / "bare.parquet", "--truth", tmp_path / "truth.csv", "--json")
    assert result.exit_code == 0, result.output
    got = json.loads(result.stdout)
    assert got["n"] == known.sum() and got["n_unknown"] == (~known).sum() and got["n_noisy"] == truth[known].sum()
    assert got["average_precision"] == pytest.approx(average_precision_score(truth[known], -report["rank"][known]))
    assert "of unknown truth, left out" in invoke("evaluate", tmp_path / "bare.parquet", "--truth",
                                                  tmp_path / "truth.csv").stdout
    # A truth CSV that lists the checked rows only: the others are unknown; one listing none is refused.
    checked = pd.DataFrame({"path": report["path"], "is_noisy": truth})[known]
    checked.to_csv(tmp_path / "checked.csv", index=False)
    again = json.loads(invoke("evaluate", tmp_path / "bare.parquet", "--truth", tmp_path / "checked.csv",
                              "--json").stdout)
    assert {k: again[k] for k in ("n", "n_unknown", "average_precision")} == {
        k: got[k] for k in ("n", "n_unknown", "average_precision")}
    pd.DataFrame({"path": ["elsewhere/x.png"], "is_noisy": [True]}).to_csv(tmp_path / "none.csv", index=False)
    result = invoke("evaluate", tmp_path / "bare.parquet", "--truth", tmp_path / "none.csv")
    assert result.exit_code == 2 and "no report path is in the truth CSV (the report's first is 'img/0.png')" in (
        result.stderr)
    # The same from a partial original_label column carried in the report, ints against floats with NaN.
    ints = report.assign(given_label=report["given_label"].map({"a": 0, "b": 1, "c": 2}),
                         original_label=report["original_label"].map({"a": 0.0, "b": 1.0, "c": 2.0}).where(known))
    write_report(ints, {}, tmp_path / "ints.parquet")
    got = json.loads(invoke("evaluate", tmp_path / "ints.parquet", "--json").stdout)
    assert got["n"] == known.sum() and got["n_noisy"] == truth[known].sum()


def test_truth_words_and_class_names():
    from noiseaudit.report.truth import truth_values

    labels = pd.DataFrame({"given_label": ["none", "none", "NA", "b"], "original_label": ["none", "NA", "NA", ""]})
    assert truth_values(labels).tolist() == [False, True, False, pd.NA]  # "none" and "NA" are classes here
    flags = pd.DataFrame({"given_label": list("abcdef"), "is_noisy": ["Yes", "n", " 1 ", "NA", "", None]})
    assert truth_values(flags).tolist() == [True, False, True, pd.NA, pd.NA, pd.NA]
    # labels written as floats ("0.0", a CSV saved by pandas) against whole-number truth: every row counted wrong
    floats = pd.DataFrame({"given_label": ["0.0", "1.0", "2.00", "1.5"], "original_label": [0, 2, 2, 1.5]})
    assert truth_values(floats).tolist() == [False, True, False, False]


def test_evaluate_refuses_an_is_noisy_it_cannot_read(hand_report, tmp_path):
    report, truth, _ = hand_report
    write_report(report.drop(columns=["original_label"]), {}, tmp_path / "bare.parquet")
    words = np.where(truth, "true", "false").astype(object)
    words[5] = "maybe"
    pd.DataFrame({"path": report["path"], "is_noisy": words}).to_csv(tmp_path / "truth.csv", index=False)
    result = invoke("evaluate", tmp_path / "bare.parquet", "--truth", tmp_path / "truth.csv")
    assert result.exit_code == 2
    assert "truth.csv:7: is_noisy: cannot read 'maybe' as true or false" in result.output
    carried = report.drop(columns=["original_label"]).assign(is_noisy=words)
    write_report(carried, {}, tmp_path / "carried.parquet")
    result = invoke("evaluate", tmp_path / "carried.parquet")
    assert result.exit_code == 2 and "is_noisy: cannot read 'maybe' (report row 6) as true or false" in result.output


def test_the_commands_have_python_functions(hand_report, tmp_path):
    # A notebook runs the same workflow as the commands, from the package's top level.
    import noiseaudit

    _, _, path = hand_report
    report, meta = noiseaudit.read_report(path)
    assert noiseaudit.evaluate(report) == json.loads(invoke("evaluate", path, "--json").stdout)
    sheet = noiseaudit.review_table(noiseaudit.select_suspects(report, top=5))
    noiseaudit.write_review(sheet, tmp_path / "py.csv")
    assert invoke("export", path, "-o", tmp_path / "cli.csv", "--top", "5").exit_code == 0
    assert (tmp_path / "py.csv").read_text() == (tmp_path / "cli.csv").read_text()
    labels = tmp_path / "labels.csv"
    report[["path", "given_label"]].rename(columns={"given_label": "label"}).to_csv(labels, index=False)
    reviewed = pd.read_csv(tmp_path / "py.csv", keep_default_na=False).assign(verdict="relabel")
    reviewed.to_csv(tmp_path / "reviewed.csv", index=False)
    result = noiseaudit.apply_review(labels, tmp_path / "reviewed.csv")
    assert result.relabeled + result.already == 5 and result.relabeled == len(result.changes) > 0
    assert len(result.table) == len(report)
    report.attrs["noiseaudit"] = meta
    with pytest.warns(noiseaudit.NoiseAuditWarning, match="show as grey squares"):  # a report of no image files
        assert "<h2>Summary</h2>" in noiseaudit.render_html(report, images_root=tmp_path, top=4)


@pytest.mark.parametrize("fmt", ["csv", "json", "labelstudio"])
def test_export_formats(hand_report, tmp_path, fmt):
    _, _, path = hand_report
    out = tmp_path / f"out.{fmt}"
    assert invoke("export", path, "-o", out, "--top", "5", "--format", fmt).exit_code == 0
    if fmt == "csv":
        sheet = pd.read_csv(out, keep_default_na=False)
        assert list(sheet.columns) == ["path", "given_label", "given_prob", "suggested_label", "confidence",
                                       "learned_lr", "rank", "flagged", "suspicion", "verdict", "new_label"]
        text = pd.read_csv(out, dtype=str, keep_default_na=False)  # one format per column: four decimals
        for col in ("given_prob", "confidence", "learned_lr", "suspicion"):
            assert text[col].str.fullmatch(r"\d+\.\d{4}").all(), text[col].tolist()
        assert sheet["rank"].tolist() == [1, 2, 3, 4, 5] and (sheet["verdict"] == "").all()
    elif fmt == "json":
        records = json.loads(out.read_text())
        assert [r["rank"] for r in records] == [1, 2, 3, 4, 5]
    else:
        tasks = json.loads(out.read_text())
        assert len(tasks) == 5
        pred = tasks[0]["predictions"][0]["result"][0]
        assert pred["type"] == "choices" and pred["value"]["choices"][0] in {"a", "b", "c"}
        assert tasks[0]["data"]["image"].startswith("img/")
        report = hand_report[0].sort_values("rank").head(5)
        for task, row in zip(tasks, report.itertuples()):  # the model's answer: the given label where it prefers it
            answer = row.given_label if row.given_prob > row.suggested_prob else row.suggested_label
            assert task["predictions"][0]["result"][0]["value"]["choices"] == [str(answer)]


@pytest.mark.parametrize(("name", "is_json"), [("sheet.json", True), ("sheet.JSON", True), ("sheet.csv", False),
                                               ("sheet.txt", False)])
def test_export_without_format_follows_the_output_name(hand_report, tmp_path, name, is_json):
    """`export -o review.json` wrote CSV into a .json file; without --format the name now decides."""
    _, _, path = hand_report
    out = tmp_path / name
    assert invoke("export", path, "-o", out, "--top", "3").exit_code == 0
    text = out.read_text()
    if is_json:
        assert [r["rank"] for r in json.loads(text)] == [1, 2, 3]
    else:
        assert text.startswith("path,given_label,")


def test_export_json_summary(hand_report, tmp_path):
    report, _, path = hand_report
    out = tmp_path / "sheet.csv"
    result = invoke("export", path, "-o", out, "--top", "7", "--json")
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    sheet = pd.read_csv(out)
    assert summary == {"rows_written": 7, "flagged": int(sheet["flagged"].sum()), "format": "csv", "output": str(out)}


def test_apply_reads_label_studio_exports_of_the_tasks(hand_report, tmp_path):
    # Export tasks, "annotate" them as Label Studio would, and apply its JSON, JSON-MIN and CSV exports.
    report, _, path = hand_report
    result = invoke("export", path, "-o", tmp_path / "tasks.json", "--top", "4", "--format", "labelstudio")
    assert result.exit_code == 0 and '<Choices name="label" toName="image"' in result.stderr
    assert all(f'<Choice value="{c}"/>' in result.stderr for c in "abc")  # the interface to paste, every class
    tasks = json.loads((tmp_path / "tasks.json").read_text())
    given = [t["data"]["given_label"] for t in tasks]
    other = [next(c for c in "abc" if c != g) for g in given]

    def answer(choice, cancelled=False):
        return {"was_cancelled": cancelled, "result": [
            {"from_name": "label", "to_name": "image", "type": "choices", "value": {"choices": [choice]}}]}
    tasks[0]["annotations"] = [answer(given[0])]  # confirmed: keep
    tasks[1]["annotations"] = [answer(given[1]), answer(other[1])]  # the last submitted answer wins: relabel
    tasks[2]["annotations"] = [answer(other[2], cancelled=True)]  # skipped: unreviewed
    tasks[3]["annotations"] = []
    (tmp_path / "ls.json").write_text(json.dumps(tasks))
    # JSON-MIN and CSV: a record per annotation (task 1 twice, its later answer listed first), which were refused
    # as conflicting verdicts: "also on line None" (a tester's finding)
    answers = [(0, given[0], "2026-12-07T10:00:00Z"), (1, other[1], "2026-12-07T10:05:00Z"),
               (1, given[1], "2026-12-07T10:01:00Z"), (2, "", ""), (3, "", "")]
    flat = [{"image": tasks[i]["data"]["image"], "path": tasks[i]["data"]["path"],
             "given_label": tasks[i]["data"]["given_label"], "id": i, "label": choice,
             **({"annotation_id": 100 + k, "updated_at": when} if when else {})}
            for k, (i, choice, when) in enumerate(answers)]
    (tmp_path / "ls-min.json").write_text(json.dumps(flat))
    pd.DataFrame(flat).to_csv(tmp_path / "ls.csv", index=False)
    labels = tmp_path / "labels.csv"
    report[["path", "given_label"]].rename(columns={"given_label": "label"}).to_csv(labels, index=False)
    for name in ("ls.json", "ls-min.json", "ls.csv"):
        result = invoke("apply", labels, tmp_path / name, "-o", tmp_path / f"fixed-{name}.csv", "--json")
        assert result.exit_code == 0, result.output
        got = json.loads(result.stdout)
        assert (got["relabeled"], got["kept"], got["unreviewed"]) == (1, 1, 2), (name, got)
        fixed = pd.read_csv(tmp_path / f"fixed-{name}.csv")
        assert fixed.loc[fixed["path"] == tasks[1]["data"]["path"], "label"].item() == other[1]
        # the same export is a trusted set (--trusted read a JSON file as CSV: "2 fields where the header has 1")
        verified = merge_trusted(load_source(tmp_path, labels), tmp_path / name, images=False)[1]
        assert [p for p, t in zip(report["path"], verified) if t] == [tasks[0]["data"]["path"],
                                                                      tasks[1]["data"]["path"]], name
    sheet = {"path": flat[0]["path"], "given_label": given[0]}  # export's JSON records, one path twice
    (tmp_path / "twice.json").write_text(json.dumps([dict(sheet, verdict="keep"), dict(sheet, verdict="drop")]))
    result = invoke("apply", labels, tmp_path / "twice.json", "-o", tmp_path / "t.csv")
    assert result.exit_code == 2 and f"twice.json record 2: conflicting verdicts for {flat[0]['path']!r} (also on " \
        "record 1)" in result.stderr


@pytest.mark.parametrize("value", ["1.5", "-0.1", "nan"])
def test_export_refuses_a_suspicion_outside_0_1(hand_report, tmp_path, value):
    """--min-suspicion 1.5 wrote an empty sheet with exit 0."""
    _, _, path = hand_report
    result = invoke("export", path, "-o", tmp_path / "x.csv", "--min-suspicion", value)
    assert result.exit_code == 2 and not (tmp_path / "x.csv").exists()
    assert result.stderr == f"error: --min-suspicion must be in [0, 1] (suspicion is a ranking score), got {value}\n"


def test_inject_pair_map_to_itself_names_the_class_and_file(labels, tmp_path):
    pairs = tmp_path / "map.json"
    pairs.write_text('{"a": "b", "c": "c"}')
    result = invoke("inject", labels, "-o", tmp_path / "x.csv", "--rate", "0.25", "--kind", "asymmetric",
                    "--pairs", pairs)
    assert result.exit_code == 2
    assert result.stderr == f"error: {pairs}: pair map sends class 'c' to itself; a flip must change the label\n"


def test_export_selections(hand_report, tmp_path):
    report, _, path = hand_report
    assert len(pd.read_csv(_export(path, tmp_path, "--flagged"))) == 70
    assert len(pd.read_csv(_export(path, tmp_path, "--min-suspicion", "0.9"))) == (report["suspicion"] >= 0.9).sum()
    result = invoke("export", path, "-o", tmp_path / "x.csv", "--top", "3", "--flagged")
    assert result.exit_code == 2 and "choose one of" in result.stderr


def _export(path, tmp_path, *args):
    out = tmp_path / f"sel{len(list(tmp_path.iterdir()))}.csv"
    assert invoke("export", path, "-o", out, *args).exit_code == 0
    return out


@pytest.fixture()
def labels(tmp_path):
    p = tmp_path / "labels.csv"
    p.write_text("path,label,extra\nimg/0.png,a,x\nimg/1.png,b,y\nimg/2.png,c,z\nimg/3.png,a,w\n")
    return p


def _review(tmp_path, rows):
    p = tmp_path / "review.csv"
    pd.DataFrame(rows, columns=["path", "suggested_label", "verdict", "new_label"]).to_csv(p, index=False)
    return p


def test_apply_relabel_drop_keep(labels, tmp_path):
    review = _review(tmp_path, [("img/0.png", "b", "relabel", ""), ("img/1.png", "a", "relabel", "c"),
                                ("img/2.png", "a", "drop", ""), ("img/3.png", "b", "keep", ""),
                                ("img/3.png", "b", "keep", "")])  # an identical duplicate is fine
    out = tmp_path / "fixed.csv"
    before = labels.read_text()
    result = invoke("apply", labels, review, "-o", out, "--json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout) == {"relabeled": 2, "dropped": 1, "kept": 1, "unreviewed": 0,
                                         "already_relabeled": 0, "already_dropped": 0, "rows_written": 3,
                                         "output": str(out)}
    fixed = pd.read_csv(out)
    assert fixed.to_dict("list") == {"path": ["img/0.png", "img/1.png", "img/3.png"], "label": ["b", "c", "a"],
                                     "extra": ["x", "y", "w"]}
    assert labels.read_text() == before


@pytest.mark.parametrize("rows, message", [
    ([("img/9.png", "b", "relabel", "")], "review.csv:2: path 'img/9.png' is not in labels.csv"),
    ([("img/0.png", "b", "maybe", "")], "review.csv:2: unknown verdict 'maybe'"),
    ([("img/0.png", "b", "relabel", ""), ("img/0.png", "b", "drop", "")], "review.csv:3: conflicting verdicts"),
    ([("img/0.png", "b", "relabel", "zebra")], "review.csv:2: new label 'zebra'"),
])
def test_apply_refuses_bad_reviews(labels, tmp_path, rows, message):
    out = tmp_path / "fixed.csv"
    result = invoke("apply", labels, _review(tmp_path, rows), "-o", out)
    assert result.exit_code == 2
    assert message in result.stderr
    assert not out.exists()


def test_apply_writes_the_input_csvs_delimiter_bom_and_line_endings(tmp_path):
    """An Excel-made CSV (';', a BOM, CRLF) came back with ',' and LF, so the fixed file could not simply
    replace it in the pipeline that reads it."""
    labels = tmp_path / "labels.csv"
    labels.write_bytes(b"\xef\xbb\xbfpath;label;note\r\nimg/0.png;a;x, y\r\nimg/1.png;b;z\r\nimg/2.png;c;w\r\n")
    review = _review(tmp_path, [("img/0.png", "a", "relabel", "b"), ("img/2.png", "c", "drop", "")])
    out = tmp_path / "fixed.csv"
    assert invoke("apply", labels, review, "-o", out).exit_code == 0
    assert out.read_bytes() == b"\xef\xbb\xbfpath;label;note\r\nimg/0.png;b;x, y\r\nimg/1.png;b;z\r\n"
    noisy = tmp_path / "noisy.csv"  # inject keeps the style too
    assert invoke("inject", labels, "-o", noisy, "--rate", "0.34", "--seed", "0").exit_code == 0
    raw = noisy.read_bytes()
    assert raw.startswith(b"\xef\xbb\xbfpath;label;note;original_label;is_noisy\r\n") and b"\n" not in raw.replace(
        b"\r\n", b"")


def test_apply_never_writes_in_place(labels, tmp_path):
    review = _review(tmp_path, [("img/0.png", "b", "relabel", "")])
    result = invoke("apply", labels, review, "-o", labels)
    assert result.exit_code == 2 and result.stderr.strip() == (f"error: {labels}: --output names the labels CSV, an "
                                                                "input of this command")


# ------------------------------------------------------------------- findings of a user test: evaluate


def test_a_truth_csv_replaces_the_reports_own_truth_columns(hand_report, tmp_path):
    # The report carries original_label (as a scan of labels.csv does); a truth CSV of is_noisy alone wins.
    report, truth, path = hand_report
    assert json.loads(invoke("evaluate", path, "--json").stdout)["n_noisy"] == truth.sum() > 0
    pd.DataFrame({"path": report["path"], "is_noisy": False}).to_csv(tmp_path / "clean.csv", index=False)
    result = invoke("evaluate", path, "--truth", tmp_path / "clean.csv", "--json")
    assert result.exit_code == 0, result.output
    got = json.loads(result.stdout)
    assert (got["n"], got["n_unknown"], got["n_noisy"], got["true_noise_rate"]) == (200, 0, 0, 0.0)
    # Truth for half the rows: the other half is unknown, not the report's original_label.
    pd.DataFrame({"path": report["path"][:100], "is_noisy": truth[:100]}).to_csv(tmp_path / "half.csv", index=False)
    got = json.loads(invoke("evaluate", path, "--truth", tmp_path / "half.csv", "--json").stdout)
    assert (got["n"], got["n_unknown"], got["n_noisy"]) == (100, 100, truth[:100].sum())


def test_a_truth_csv_that_lists_a_path_twice(hand_report, tmp_path):
    report, truth, path = hand_report
    rows = pd.DataFrame({"path": report["path"], "is_noisy": np.where(truth, "yes", "no")})
    same = pd.concat([rows, rows.iloc[[1]].assign(path="./img/1.png", is_noisy="true" if truth[1] else "false")])
    same.to_csv(tmp_path / "same.csv", index=False)  # the same path and value, written otherwise: fine
    result = invoke("evaluate", path, "--truth", tmp_path / "same.csv", "--json")
    assert result.exit_code == 0 and json.loads(result.stdout)["n"] == 200, result.output
    assert result.stderr == (f"warning: {tmp_path / 'same.csv'}:202: './img/1.png' repeats line 3 with the same "
                             "truth; 1 repeated row(s) ignored\n")  # as a labels CSV's repeat is named
    other = "no" if truth[1] else "yes"
    pd.concat([rows.iloc[:3], rows.iloc[[1]].assign(is_noisy=other), rows.iloc[3:]]).to_csv(
        tmp_path / "twice.csv", index=False)
    result = invoke("evaluate", path, "--truth", tmp_path / "twice.csv")
    assert result.exit_code == 2
    assert result.stderr.strip() == (f"error: {tmp_path / 'twice.csv'}:5: 'img/1.png' is listed twice with different "
                                     f"truth: is_noisy {rows['is_noisy'][1]!r} on line 3, is_noisy {other!r} here")


def test_truth_rows_not_in_the_report_are_counted_in_one_warning(hand_report, tmp_path):
    report, truth, path = hand_report
    extra = pd.DataFrame({"path": [f"elsewhere/{i}.png" for i in range(3)], "is_noisy": True})
    listed = pd.concat([pd.DataFrame({"path": report["path"], "is_noisy": truth}), extra])
    listed.to_csv(tmp_path / "truth.csv", index=False)
    result = invoke("evaluate", path, "--truth", tmp_path / "truth.csv", "--json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["n_noisy"] == truth.sum()
    assert result.stderr.strip() == (f"warning: {tmp_path / 'truth.csv'}: 3 paths are not in the report "
                                     "(the first: 'elsewhere/0.png' on line 202); ignored")
    pd.DataFrame({"path": report["path"], "is_noisy": truth}).to_csv(tmp_path / "exact.csv", index=False)
    assert invoke("evaluate", path, "--truth", tmp_path / "exact.csv").stderr == ""


@pytest.mark.parametrize("k", ["0", "-3"])
def test_evaluate_refuses_k_below_one(hand_report, k):
    _, _, path = hand_report
    result = invoke("evaluate", path, "--k", k)
    assert result.exit_code == 2 and result.stderr.strip() == f"error: --k must be at least 1, got {k}"


def test_evaluate_lowers_a_k_above_the_scored_rows_and_says_so(hand_report):
    report, truth, path = hand_report
    result = invoke("evaluate", path, "--k", "100000", "--json")
    assert result.exit_code == 0, result.output
    got = json.loads(result.stdout)
    assert got["k"] == 200 and got["signals"]["loss"]["k"] == 200
    assert got["precision_at_k"] == pytest.approx(truth.mean()) and got["recall_at_k"] == 1.0
    assert result.stderr.strip() == ("warning: --k 100000 is more than the 200 scored samples of known truth; "
                                     "using k = 200")
    assert "k = 200" in invoke("evaluate", path, "--k", "100000").stdout


# ---------------------------------------------------------------------- findings of a user test: apply


def test_apply_never_writes_over_the_review(labels, tmp_path):
    review = _review(tmp_path, [("img/0.png", "b", "relabel", "")])
    before = review.read_text()
    result = invoke("apply", labels, review, "-o", review, "--overwrite")
    assert result.exit_code == 2
    assert result.stderr.strip() == f"error: {review}: --output names the reviewed file, an input of this command"
    result = invoke("apply", labels, review, "-o", tmp_path / "." / "review.csv", "--overwrite")
    assert result.exit_code == 2 and review.read_text() == before


def _sheet(tmp_path, rows):
    p = tmp_path / "sheet.csv"
    pd.DataFrame(rows, columns=["path", "given_label", "suggested_label", "verdict", "new_label"]).to_csv(
        p, index=False)
    return p


def test_apply_refuses_the_review_slips_a_tester_made(labels, tmp_path):
    """A new_label typed without a verdict was ignored; 'trouser' for 'Trouser' suggested --allow-new-labels,
    which wrote a twin class; a drop on labels keyed by row number renumbered the rest, silently."""
    out = tmp_path / "fixed.csv"
    sheet = _sheet(tmp_path, [("img/0.png", "a", "b", "", "c")])
    result = invoke("apply", labels, sheet, "-o", out)
    assert result.exit_code == 2 and not out.exists()
    assert result.stderr.strip() == (f"error: {sheet}:2: 'img/0.png' has new_label 'c' but no verdict: write "
                                     "relabel to apply it (or clear new_label)")
    cased = tmp_path / "cased.csv"
    cased.write_text("path,label\nimg/0.png,Trouser\nimg/1.png,Coat\nimg/2.png,Ankle boot\n")
    for typed, meant in (("trouser", "Trouser"), ("Trousers", "Trouser"), ("ankle_boot", "Ankle boot")):
        sheet = _sheet(tmp_path, [("img/1.png", "Coat", "Trouser", "relabel", typed)])
        result = invoke("apply", cased, sheet, "-o", out)
        assert result.exit_code == 2, result.output
        assert result.stderr.strip() == (f"error: {sheet}:2: new label {typed!r} for 'img/1.png' is not a known "
                                         f"class; did you mean {meant!r}?")
    assert invoke("apply", cased, sheet, "-o", out, "--allow-new-labels").exit_code == 0  # asked for: a new class
    nokey = tmp_path / "nokey.csv"
    nokey.write_text("label\na\nb\nc\n")
    sheet = tmp_path / "rows.csv"
    sheet.write_text("path,verdict,new_label\n1,relabel,a\n0,drop,\n")
    result = invoke("apply", nokey, sheet, "-o", tmp_path / "rows-fixed.csv")
    assert result.exit_code == 2 and not (tmp_path / "rows-fixed.csv").exists()
    assert result.stderr.strip().startswith(f"error: {sheet}:3: cannot drop row 0: nokey.csv has no path or id "
                                            "column, so its rows are keyed by number")


def test_a_sheet_may_capitalise_its_headers_and_mark_rows_unsure(labels, tmp_path):
    """'Path,Verdict,New_Label' (a spreadsheet's headers) was 'no path column'; 'unsure' was an unknown verdict,
    so a reviewer had no way to leave a row for a second look with the label they half-believe."""
    sheet = tmp_path / "sheet.csv"
    sheet.write_text("Path,Given_Label,Verdict,New_Label\nimg/0.png,a,Relabel,b\nimg/1.png,b,unsure,c\n")
    result = invoke("apply", labels, sheet, "-o", tmp_path / "fixed.csv", "--json")
    assert result.exit_code == 0, result.output
    got = json.loads(result.stdout)
    assert (got["relabeled"], got["unreviewed"]) == (1, 1)
    assert pd.read_csv(tmp_path / "fixed.csv")["label"].tolist() == ["b", "b", "c", "a"]
    sheet.write_text("path,verdict\nimg/0.png,maybe\n")
    result = invoke("apply", labels, sheet, "-o", tmp_path / "other.csv")
    assert result.stderr.strip() == (f"error: {sheet}:2: unknown verdict 'maybe' (use keep, relabel or drop; unsure "
                                     "or blank to decide later)")


def test_apply_twice_counts_the_relabels_already_made(labels, tmp_path):
    """Applying a sheet again said '0 relabeled, 0 dropped, 672 kept' for 636 relabels already made."""
    sheet = _sheet(tmp_path, [("img/0.png", "a", "b", "relabel", ""), ("img/1.png", "b", "a", "keep", "")])
    assert invoke("apply", labels, sheet, "-o", tmp_path / "once.csv").exit_code == 0
    result = invoke("apply", tmp_path / "once.csv", sheet, "-o", tmp_path / "twice.csv", "--json")
    assert result.exit_code == 0, result.output
    got = json.loads(result.stdout)
    assert (got["relabeled"], got["already_relabeled"], got["kept"]) == (0, 1, 1)
    assert (tmp_path / "twice.csv").read_text() == (tmp_path / "once.csv").read_text()
    result = invoke("apply", tmp_path / "once.csv", sheet, "-o", tmp_path / "thrice.csv")
    assert result.stdout.startswith("0 relabeled (1 relabels applied before), 0 dropped, 1 kept")


def test_apply_twice_takes_the_drops_already_made_as_made(labels, tmp_path):
    """Applying a sheet again exited 0 for its relabels but 2 for its drops ("path ... is not in once.csv"), so a
    pipeline that re-ran its steps broke; a sheet of other labels, none of whose paths is there, is still refused."""
    sheet = _sheet(tmp_path, [("img/0.png", "a", "b", "relabel", ""), ("img/2.png", "c", "a", "drop", "")])
    assert invoke("apply", labels, sheet, "-o", tmp_path / "once.csv").exit_code == 0
    result = invoke("apply", tmp_path / "once.csv", sheet, "-o", tmp_path / "twice.csv", "--json")
    assert result.exit_code == 0, result.output
    got = json.loads(result.stdout)
    assert (got["relabeled"], got["already_relabeled"], got["dropped"], got["already_dropped"]) == (0, 1, 0, 1)
    assert result.stderr == (f"warning: {sheet}:3: a drop verdict names 'img/2.png', which is not in once.csv: taken "
                             "as dropped by an earlier apply of this sheet\n")
    assert (tmp_path / "twice.csv").read_text() == (tmp_path / "once.csv").read_text()
    assert "0 dropped (1 dropped before)" in invoke("apply", tmp_path / "once.csv", sheet, "-o",
                                                    tmp_path / "thrice.csv").stdout
    other = _sheet(tmp_path, [("img/7.png", "a", "b", "drop", ""), ("img/8.png", "c", "a", "drop", "")])
    result = invoke("apply", labels, other, "-o", tmp_path / "other.csv")
    assert result.exit_code == 2 and result.stderr == (f"error: {other}:2: path 'img/7.png' is not in labels.csv (nor "
                                                       "is any other path of the sheet)\n")


def test_apply_reads_spreadsheet_spellings_of_columns_and_refuses_mixed_delimiters(labels, tmp_path):
    """A 'New Label' header was not new_label ("relabel ... has neither new_label nor suggested_label"); a comma
    sheet a European spreadsheet opened as one column, with the verdicts typed beside it and saved with ';', gave
    the header cell 'new_label;Verdict' and applied as 291 rows without a verdict, exit 0."""
    sheet = tmp_path / "spelt.csv"
    sheet.write_text("Path,Verdict,New Label\nimg/0.png,Relabel,c\n")
    result = invoke("apply", labels, sheet, "-o", tmp_path / "fixed.csv", "--json")
    assert result.exit_code == 0 and json.loads(result.stdout)["relabeled"] == 1, result.output
    mixed = tmp_path / "mixed.csv"
    mixed.write_text("path,given_label,new_label;Verdict\r\nimg/0.png,a,;relabel\r\nimg/1.png,b,;drop\r\n")
    result = invoke("apply", labels, mixed, "-o", tmp_path / "fixed2.csv")
    assert result.exit_code == 2 and result.stderr == (
        f"error: {mixed}:1: header cell 'new_label;Verdict' holds a ';': the sheet mixes two delimiters (a "
        "spreadsheet that opened it as one column and saved it with another?); save it with one\n")


def test_apply_refuses_a_stale_review_that_would_change_labels_and_warns_with_force(labels, tmp_path):
    """An older sheet applied to newer labels undid their corrections, with a warning and exit 0."""
    # labels.csv has a, b, c, a: the sheet says img/1.png and img/3.png were given other labels.
    sheet = _sheet(tmp_path, [("img/0.png", "a", "b", "keep", ""), ("img/1.png", "c", "a", "relabel", ""),
                              ("img/2.png", "c", "a", "", ""), ("img/3.png", "b", "c", "drop", "")])
    result = invoke("apply", labels, sheet, "-o", tmp_path / "fixed.csv")
    assert result.exit_code == 2 and not (tmp_path / "fixed.csv").exists()
    assert result.stderr.strip() == (f"error: {sheet}:3: 'img/1.png' was reviewed as 'c', but labels.csv labels it "
                                     "'b' now (1 more rows like it): the sheet reviewed other labels (an older "
                                     "scan's?), and applying it would undo that change; export a new sheet, or pass "
                                     "--force to apply it all the same")
    result = invoke("apply", labels, sheet, "-o", tmp_path / "fixed.csv", "--json", "--force")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["relabeled"] == 1
    assert result.stderr.strip() == (f"warning: {sheet}:3: 2 reviewed rows have a given_label other than the label "
                                     "in labels.csv (the first: 'img/1.png', 'c' here, 'b' there); a review of "
                                     "other labels? Applied all the same")
    fresh = _sheet(tmp_path, [("img/0.png", "a", "b", "keep", ""), ("img/1.png", "b", "a", "relabel", "")])
    assert invoke("apply", labels, fresh, "-o", tmp_path / "fixed2.csv").stderr == ""


def test_apply_warns_once_about_new_labels_that_keep_and_drop_ignore(labels, tmp_path):
    review = _review(tmp_path, [("img/0.png", "b", "relabel", "c"), ("img/1.png", "a", "keep", "c"),
                                ("img/2.png", "a", "Drop", "b")])
    result = invoke("apply", labels, review, "-o", tmp_path / "fixed.csv", "--json")
    assert result.exit_code == 0, result.output
    got = json.loads(result.stdout)
    assert (got["relabeled"], got["kept"], got["dropped"]) == (1, 1, 1)
    assert pd.read_csv(tmp_path / "fixed.csv")["label"].tolist() == ["c", "b", "a"]
    assert result.stderr.strip() == (f"warning: {review}:3: 2 reviewed rows have a keep or drop verdict with a "
                                     "new_label (the first: 'img/1.png', new_label 'c'); only relabel uses "
                                     "new_label, so it is ignored")


def test_apply_to_an_image_folder_writes_a_path_label_csv(tmp_path):
    from PIL import Image

    images = tmp_path / "images"
    for label, names in (("cat", ["1.png", "2.png"]), ("dog", ["3.png"])):
        (images / label).mkdir(parents=True)
        for name in names:
            Image.new("L", (4, 4)).save(images / label / name)
    review = _review(tmp_path, [("cat/2.png", "dog", "relabel", ""), ("dog/3.png", "cat", "drop", "")])
    out = tmp_path / "labels.fixed.csv"
    result = invoke("apply", images, review, "-o", out, "--json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["rows_written"] == 2
    assert out.read_text() == "path,label\ncat/1.png,cat\ncat/2.png,dog\n"
    result = invoke("apply", images, review, "-o", tmp_path / "x.csv", "--label-col", "label")
    assert result.exit_code == 2 and "not of an image folder" in result.stderr


def test_label_studio_image_urls_are_percent_encoded():
    """A space, '#' or '&' in a file name cut the image URL short in Label Studio; the path itself is kept."""
    from noiseaudit.report.export import label_studio_tasks

    sheet = pd.DataFrame({"path": ["dir one/a b#1.png", "x&y?.jpg", "plain/ok.png"], "given_label": ["a"] * 3,
                          "suggested_label": ["b"] * 3, "confidence": [0.9] * 3, "learned_lr": [0.1] * 3,
                          "rank": [1, 2, 3], "flagged": [True] * 3})
    tasks = label_studio_tasks(sheet, image_prefix="/data/local-files/?d=")
    assert [t["data"]["image"] for t in tasks] == ["/data/local-files/?d=dir%20one/a%20b%231.png",
                                                   "/data/local-files/?d=x%26y%3F.jpg",
                                                   "/data/local-files/?d=plain/ok.png"]
    assert [t["data"]["path"] for t in tasks] == sheet["path"].tolist()


def test_evaluate_takes_the_truth_as_a_dataframe(hand_report, tmp_path):
    """evaluate(report, truth_csv=df) raised TypeError: a notebook holding the truth in a DataFrame had to write
    it out first."""
    from noiseaudit import evaluate

    report, truth, path = hand_report
    frame = pd.DataFrame({"path": report["path"], "is_noisy": truth})  # bool column: no yes/no words needed
    frame.to_csv(tmp_path / "truth.csv", index=False)
    assert evaluate(report, truth_csv=frame) == evaluate(report, truth_csv=tmp_path / "truth.csv")
    with pytest.raises(InputError, match=r"^<truth DataFrame> row 3: is_noisy: cannot read 'maybe'"):
        evaluate(report, truth_csv=frame.astype({"is_noisy": object}).assign(
            is_noisy=lambda f: f["is_noisy"].where(f.index != 3, "maybe")))
    with pytest.raises(InputError, match=r"^<truth DataFrame>: truth CSV needs a path column"):
        evaluate(report, truth_csv=frame.rename(columns={"path": "file_name"}).drop(columns="file_name"))


def test_apply_review_takes_the_labels_and_the_filled_in_sheet_as_dataframes(hand_report, tmp_path):
    """A notebook's review loop without files: apply_review(df, sheet) raised TypeError (it wanted paths)."""
    import noiseaudit

    report, _, _ = hand_report
    table = report[["path", "given_label"]].rename(columns={"given_label": "label"})
    table.to_csv(tmp_path / "labels.csv", index=False)
    sheet = noiseaudit.review_table(noiseaudit.select_suspects(report, top=6))
    sheet["verdict"] = ["relabel", "relabel", "drop", "keep", "", ""]
    sheet.to_csv(tmp_path / "reviewed.csv", index=False)
    from_files = noiseaudit.apply_review(tmp_path / "labels.csv", tmp_path / "reviewed.csv")
    from_frames = noiseaudit.apply_review(table, sheet)
    assert (from_frames.relabeled, from_frames.dropped, from_frames.kept, from_frames.unreviewed) == (
        from_files.relabeled, from_files.dropped, from_files.kept, from_files.unreviewed)
    assert from_frames.relabeled >= 1 and from_frames.dropped == 1 and from_frames.unreviewed == 2
    assert from_frames.changes == from_files.changes
    # the same rows and labels; the DataFrame's come back in its own dtypes and index (the file's as text)
    pd.testing.assert_frame_equal(from_frames.table.reset_index(drop=True).astype(str), from_files.table.astype(str))
    assert from_frames.table.dtypes.equals(table.dtypes) and from_frames.table.index.isin(table.index).all()
    with pytest.raises(InputError, match=r"^<reviewed DataFrame> row 1: unknown verdict 'maybe'"):
        noiseaudit.apply_review(table, sheet.assign(verdict=["keep", "maybe", "", "", "", ""]))
    with pytest.raises(InputError, match=r"^<reviewed DataFrame> row 0: path 'x.png' is not in <labels DataFrame>$"):
        noiseaudit.apply_review(table, sheet.assign(path=["x.png", *sheet["path"][1:]]))
    with pytest.raises(InputError, match=r"^<reviewed DataFrame>: reviewed file has no 'verdict' column$"):
        noiseaudit.apply_review(table, sheet.drop(columns="verdict"))


def test_a_whole_number_written_with_a_decimal_point_is_named_as_such(tmp_path):
    """pandas reads an empty new_label column as float, so setting it to 0 wrote 0.0; apply then said the class was
    unknown and suggested --allow-new-labels, which would have added a class '0.0'."""
    labels = tmp_path / "labels.csv"
    labels.write_text("path,label\nimg/0.png,0\nimg/1.png,1\n")
    review = _review(tmp_path, [("img/0.png", "1", "relabel", "1.0")])
    result = invoke("apply", labels, review, "-o", tmp_path / "fixed.csv")
    assert result.exit_code == 2 and result.stderr.strip() == (
        f"error: {review}:2: new label '1.0' for 'img/0.png' is not a known class, but '1' is: a spreadsheet or "
        "pandas wrote the whole number with a decimal point; write the class as the labels have it")


def test_write_review_takes_its_format_from_a_json_name(hand_report, tmp_path):
    """write_review(sheet, 'x.json') wrote CSV into the .json file, which apply_review then refused as not JSON;
    the export command chooses JSON from the name."""
    import noiseaudit

    report, _, _ = hand_report
    sheet = noiseaudit.review_table(noiseaudit.select_suspects(report, top=3))
    noiseaudit.write_review(sheet, tmp_path / "x.json")
    assert [r["path"] for r in json.loads((tmp_path / "x.json").read_text())] == sheet["path"].tolist()


def test_apply_with_its_two_files_swapped_says_so(labels, tmp_path):
    """apply REVIEW LABELS said 'no label column found … name one with --label-col'."""
    review = _review(tmp_path, [("img/0.png", "b", "relabel", "")])
    result = invoke("apply", review, labels, "-o", tmp_path / "fixed.csv")
    assert result.exit_code == 2 and result.stderr.strip() == (
        f"error: {review}: this is a review sheet (it has verdict and new_label columns); the labels CSV comes "
        "first, then the reviewed sheet")


def test_apply_changes_only_the_lines_a_review_touched(tmp_path):
    """apply wrote the whole table anew: quoting, spacing and blank lines changed on rows nobody reviewed, so a
    diff of a version-controlled labels file showed every line. Now only the relabelled and dropped records
    differ, the first with the input's delimiter and line ending."""
    labels = tmp_path / "labels.csv"
    text = ('\ufeffpath;label;note\r\n"img/0.png";a;"kept as quoted"\r\nimg/1.png; b ;spaced\r\n\r\n'
            'img/2.png;c;"two\r\nlines"\r\nimg/3.png;a;x\r\n')
    labels.write_bytes(text.encode("utf-8"))
    review = _review(tmp_path, [("img/1.png", "c", "relabel", "c"), ("img/2.png", "a", "drop", ""),
                                ("img/3.png", "b", "keep", "")])
    out = tmp_path / "fixed.csv"
    result = invoke("apply", labels, review, "-o", out, "--json")
    assert result.exit_code == 0, result.output
    assert out.read_bytes().decode("utf-8") == ('\ufeffpath;label;note\r\n"img/0.png";a;"kept as quoted"\r\n'
                                                'img/1.png;c;spaced\r\n\r\nimg/3.png;a;x\r\n')
    assert json.loads(result.stdout)["rows_written"] == 3
    # a file whose every field is quoted keeps that on the relabelled line (it lost its quotes: a diff showed it)
    labels.write_text('"path","label","note"\n"img/1.png","b","x, y"\n"img/3.png","a","z"\n')
    review = _review(tmp_path, [("img/1.png", "a", "relabel", "a")])
    assert invoke("apply", labels, review, "-o", out, "--overwrite").exit_code == 0
    assert out.read_text() == '"path","label","note"\n"img/1.png","a","x, y"\n"img/3.png","a","z"\n'


def test_evaluate_and_the_page_take_a_sorted_or_filtered_frame(hand_report):
    """evaluate() read its per-class rows by index label as positions: a sorted report gave silently wrong
    per-class counts, a filtered one an IndexError, and render_html on a subset the same (a tester's finding)."""
    from noiseaudit import evaluate, read_report
    from noiseaudit.report.html import render_html

    report, _, path = hand_report
    frame, meta = read_report(path)
    assert frame.attrs["noiseaudit"] == meta  # as on scan's frame (render_html(frame) lost the metadata)
    whole = evaluate(frame)
    assert evaluate(frame.sort_values("rank")) == whole
    assert evaluate(frame.set_index("path", drop=False)) == whole
    subset = frame[frame["given_label"] == "b"]
    by_class = {c["class"]: c for c in whole["per_class"]}
    assert evaluate(subset)["per_class"] == [by_class["b"]]
    with pytest.warns(Warning, match="could not be read"):  # the hand-made report's images do not exist
        assert "<html" in render_html(subset.sort_values("rank"), meta).lower()


@pytest.mark.parametrize("name, what", [("review.xlsx", "an Excel workbook"), ("review.tsv", "tab-separated text")])
def test_export_refuses_a_name_whose_suffix_is_another_format(hand_report, tmp_path, name, what):
    """`export -o review.xlsx` wrote CSV text under an Excel name, which Excel then refused to open."""
    from noiseaudit import write_review
    from noiseaudit.errors import UsageError

    report = hand_report[2]
    out = tmp_path / name
    result = invoke("export", report, "-o", out)
    suffix = out.suffix
    assert result.exit_code == 2 and result.stderr == (f"error: {out}: the review sheet is CSV or JSON, and {suffix} "
                                                       f"names {what}: name a .csv file (spreadsheets open it) or a "
                                                       ".json one\n") and not out.exists()
    assert invoke("export", report, "-o", out, "--format", "csv").exit_code == 0  # asked for: written
    with pytest.raises(UsageError, match="names " + what):
        write_review(pd.DataFrame({"path": []}), tmp_path / ("api" + suffix))


def test_a_sheet_with_accents_opens_right_in_excel_and_its_garbling_is_named(tmp_path):
    """Export wrote UTF-8 without a BOM, so Excel read 'Sac à main' as Windows-1252 and saved 'Sac Ã\\xa0 main', and
    apply said only that the path was not in the labels."""
    from noiseaudit import review_table, write_review

    labels = tmp_path / "labels.csv"
    labels.write_text("path,label\nSac à main/1.png,Sac à main\nb/2.png,b\n", encoding="utf-8")
    table = review_table(pd.DataFrame({
        "path": ["Sac à main/1.png"], "given_label": ["Sac à main"], "given_prob": [0.05], "suggested_label": ["b"],
        "suggested_prob": [0.9], "learned_lr": [0.1], "rank": [1], "is_suspect": [True], "suspicion": [0.9]}))
    sheet = write_review(table, tmp_path / "review.csv")
    assert sheet.read_bytes().startswith(b"\xef\xbb\xbfpath,")  # a BOM: Excel reads it as UTF-8
    plain = write_review(table.assign(path="a/1.png", given_label="a"), tmp_path / "plain.csv")
    assert plain.read_bytes().startswith(b"path,")  # all ASCII: no BOM
    text = sheet.read_text(encoding="utf-8-sig").replace(",,\n", ",relabel,b\n")
    assert ",relabel,b\n" in text
    garbled = tmp_path / "garbled.csv"
    garbled.write_text(text.encode("utf-8").decode("cp1252"), encoding="utf-8-sig")  # what Excel saved back
    result = invoke("apply", labels, garbled, "-o", tmp_path / "fixed.csv")
    assert result.exit_code == 2 and result.stderr == (
        f"error: {garbled}:2: path 'Sac Ã\\xa0 main/1.png' is not in labels.csv, but 'Sac à main/1.png' is: a "
        "spreadsheet read the sheet's UTF-8 as cp1252 and saved it so; open the exported sheet as UTF-8 (Excel: Data "
        "> From Text/CSV, File origin UTF-8) and review it again\n")
