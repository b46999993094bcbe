"""``noiseaudit predict``: a model saved by ``scan --save-model`` labels new images or feature vectors."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Optional

import typer
from rich.table import Table

from noiseaudit import formats
from noiseaudit.cli.console import JsonSummary, Overwrite, echo_json, exits_on_errors, stdout
from noiseaudit.cli.progress import progress_reporter


def print_summary(summary: dict[str, Any]) -> None:
    """Counts per predicted class, the accuracy against given labels if any, where the file went."""
    out = stdout()
    accuracy = summary.get("accuracy")
    against = "" if accuracy is None else f"; accuracy against the given labels {formats.percent(accuracy)}"
    out.print(f"[bold]{summary['n_samples']}[/] samples predicted by {summary['model']}{against}", highlight=False)
    table = Table(title="Predicted classes")
    table.add_column("class")
    table.add_column("samples", justify="right")
    for name, count in summary["predicted_counts"].items():
        table.add_row(name, str(count))
    out.print(table)
    if summary.get("most_doubted"):
        doubted = Table(title=f"Given labels the model doubts most ({summary['n_disagree']} disagree; "
                              "sort the file by given_prob for all)")
        for name in ("path", "given", "predicted", "p(given)"):
            doubted.add_column(name, justify="right" if name == "p(given)" else "left",
                               overflow="fold" if name == "path" else "ellipsis")  # wrapped, not cut: its end names it
        for row in summary["most_doubted"]:
            doubted.add_row(str(row["path"]), str(row["given_label"]),
                            f"{row['predicted_label']} ({formats.percent(row['pred_prob'])})",
                            formats.percent(row["given_prob"]))
        out.print(doubted)
    if summary.get("n_skipped"):
        out.print(formats.skipped_images(summary, "the file"), highlight=False)
    out.print(f"Predictions written to {summary['output']}", highlight=False)


def most_doubted(frame: Any, top: int = 10) -> list[dict[str, Any]]:
    """The ``top`` predictions that disagree with their given label, lowest probability of that label first."""
    rows = frame[frame["given_label"] != frame["predicted_label"]].sort_values("given_prob", kind="stable").head(top)
    return rows[["path", "given_label", "predicted_label", "pred_prob", "given_prob"]].to_dict("records")


@exits_on_errors
def predict_command(
    model: Annotated[Path, typer.Argument(help="Model file written by noiseaudit scan --save-model.")],
    images_dir: Annotated[Optional[Path], typer.Argument(help="Image folder: every image under it, or those "
                                                              "LABELS_CSV lists; class subfolders named as the "
                                                              "model's classes give the labels. With --features: "
                                                              "the labels or keys CSV, optional.")] = None,
    labels_csv: Annotated[Optional[Path], typer.Argument(help="CSV with a path column (relative to IMAGES_DIR) "
                                                              "and, optionally, a label column.")] = None,
    features: Annotated[Optional[Path], typer.Option(help="Feature vectors for a model trained on them (.npy or "
                                                          "Parquet, as for scan --features).")] = None,
    output: Annotated[Path, typer.Option("--output", "-o", help="Parquet file to write.")] = Path(
        "predictions.parquet"),
    overwrite: Overwrite = False,
    path_col: Annotated[Optional[str], typer.Option("--path-col", "--key-col", help="Path column name; with "
                                                    "--features, the key column (default: auto-detect).")] = None,
    label_col: Annotated[Optional[str], typer.Option(help="Label column name (default: auto-detect; "
                                                          "labels are optional).")] = None,
    device: Annotated[str, typer.Option(help="auto, cpu, cuda, cuda:N or mps.")] = "auto",
    workers: Annotated[int, typer.Option(help="Threads decoding images.")] = 2,
    cache_dir: Annotated[Optional[Path], typer.Option(help="Decoded-image cache (default: $NOISEAUDIT_CACHE_DIR, "
                                                       "else ~/.cache/noiseaudit).")] = None,
    cache: Annotated[bool, typer.Option("--cache/--no-cache", help="Reuse images decoded (or embedded) by an "
                                                                  "earlier scan of the same files.")] = True,
    json_out: JsonSummary = False,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress on stderr.")] = False,
    on_bad_image: Annotated[str, typer.Option(help="fail: stop at the first missing or undecodable image; skip: "
                                                   "leave it out and list it with its status.")] = "fail",
) -> None:
    """Predict the class of every image (or feature vector) with a model saved by scan --save-model."""
    from noiseaudit.errors import input_file
    from noiseaudit.model_io import load_model
    from noiseaudit.report.io import check_writable, save_report

    input_file(model, "model file")  # before the output, as scan checks its inputs first: a missing model is news
    check_writable(output, overwrite, [(model, "model file"), (labels_csv, "labels CSV"), (features, "features file")],
                   image_folder=images_dir if features is None else None)
    saved = load_model(model)
    if features is not None:
        if labels_csv is not None:
            raise typer.BadParameter("with --features give at most one CSV: noiseaudit predict MODEL --features "
                                     "FEATURES [LABELS_CSV]")
        inputs, table = features, images_dir
    elif images_dir is None:
        raise typer.BadParameter("give the image folder (or --features FEATURES for a features model)")
    else:
        inputs, table = images_dir, labels_csv
    with progress_reporter(quiet) as on_progress:
        frame = saved.predict(inputs, table, path_col=path_col, label_col=label_col, device=device,
                              workers=workers, cache=cache, cache_dir=None if cache_dir is None else str(cache_dir),
                              on_progress=on_progress, on_bad_image=on_bad_image)
    meta = frame.attrs["noiseaudit"]
    save_report(frame, meta, output, overwrite=overwrite)
    # as scan's --json: a key that does not apply (the accuracy without given labels) is left out, not null
    summary = {**{k: meta[k] for k in ("model_file", "model", "kind", "n_samples", "accuracy", "n_disagree",
                                       "predicted_counts", "device") if meta[k] is not None}, "output": str(output)}
    if "status" in frame:  # --on-bad-image skip: the images left out, as scan's summary counts them
        bad = frame[frame["status"] != "ok"]
        summary.update(formats.skipped_counts([(str(p), str(s)) for p, s in zip(bad["path"], bad["status"])]))
    if "given_prob" in frame:
        summary["most_doubted"] = most_doubted(frame)
    if json_out:
        echo_json(summary)
    else:
        print_summary(summary)
