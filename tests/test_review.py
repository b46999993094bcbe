"""evaluate on a hand-built report (against scikit-learn), export formats, and apply's refusals."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import average_precision_score, f1_score, precision_score, recall_score, roc_auc_score
from typer.testing import CliRunner

from noiseaudit.cli import app
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
    assert invoke("evaluate", tmp_path / "bare.parquet").exit_code == 2  # no truth anywhere
    pd.DataFrame({"path": report["path"], "is_noisy": truth}).to_csv(tmp_path / "truth.csv", index=False)
    result = invoke("evaluate", tmp_path / "bare.parquet", "--truth", tmp_path / "truth.csv", "--k", "10", "--json")
    got = json.loads(result.stdout)
    top = np.argsort(report["rank"].to_numpy())[:10]
    assert got["k"] == 10 and got["precision_at_k"] == pytest.approx(truth[top].mean())
    text = invoke("evaluate", path).stdout
    assert "Rankings by signal" in text and "Per class" in text


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
    assert result.relabeled + result.kept == 5 and result.relabeled == len(result.changes) > 0
    assert len(result.table) == len(report)
    report.attrs["noiseaudit"] = meta
    assert "<h2>Summary</h2>" in noiseaudit.render_html(report, images_root=tmp_path, top=4)


@pytest.mark.parametrize("fmt", ["csv", "json", "labelstudio"])
def test_export_formats(hand_report, tmp_path, fmt):
    _, _, path = hand_report
    out = tmp_path / f"out.{fmt}"
    assert invoke("export", path, "-o", out, "--top", "5", "--format", fmt).exit_code == 0
    if fmt == "csv":
        sheet = pd.read_csv(out, keep_default_na=False)
        assert list(sheet.columns) == ["path", "given_label", "suggested_label", "confidence", "learned_lr", "rank",
                                       "flagged", "suspicion", "verdict", "new_label"]
        text = pd.read_csv(out, dtype=str, keep_default_na=False)  # one format per column: four decimals
        for col in ("confidence", "learned_lr", "suspicion"):
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
    flat = [{"image": t["data"]["image"], "path": t["data"]["path"], "given_label": t["data"]["given_label"],
             "id": i, "label": choice} for i, (t, choice) in enumerate(zip(tasks, [given[0], other[1], "", ""]))]
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
                                         "rows_written": 3, "output": str(out)}
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


def test_apply_never_writes_in_place(labels, tmp_path):
    review = _review(tmp_path, [("img/0.png", "b", "relabel", "")])
    result = invoke("apply", labels, review, "-o", labels)
    assert result.exit_code == 2 and "in place" in result.stderr
