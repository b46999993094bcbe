"""``noiseaudit scan``."""

from __future__ import annotations

import importlib.util
import shlex
import warnings
from pathlib import Path
from typing import Annotated, Any, Optional

import typer
from rich.table import Table

from noiseaudit import formats
from noiseaudit.cli.console import BROKEN_PIPE, discard_stdout, echo_json, exits_on_errors, stderr, stdout
from noiseaudit.cli.progress import progress_reporter
from noiseaudit.config import MIDPOINT, RANKED_BY, RATE_AND_PROB, make_config
from noiseaudit.errors import NoiseAuditHint, UsageError, option
from noiseaudit.extras import install_hint

METRIC_NAMES = (("precision", "precision"), ("recall", "recall"), ("F1", "f1"), ("AUROC", "auroc"),
                ("AP", "average_precision"))
SCORED_BY = {RANKED_BY["learned-lr"]: "the learned rates", RANKED_BY["plain"]: "the training losses",
             RANKED_BY["dba"]: "the DBA selections", RATE_AND_PROB: "the learned rates"}  # the count; the mix orders


def _how_counted(threshold: dict[str, Any]) -> str:
    if threshold.get("method") == "noise-rate":
        return "as --noise-rate asks"
    if threshold.get("method") == "disagreements":
        return "estimated from the model's disagreements"
    return f"estimated from {SCORED_BY.get(threshold.get('ranked_by', ''), 'the scores')}"


def _name(path: Path | None) -> str | None:
    return None if path is None else str(path)


def check_inputs_exist(images_dir: Path, labels_csv: Path | None, features: Path | None,
                       trusted: Path | None) -> None:
    """The checks ``scan`` makes of its input paths, made first: they need no torch, whose import takes seconds,
    so a mistyped path is refused at once. With ``--features`` the first argument is the labels CSV."""
    from noiseaudit.errors import check_image_dir, input_file

    if features is not None:
        input_file(features.expanduser(), "features file")
        input_file(images_dir.expanduser(), "labels CSV")
    else:
        check_image_dir(images_dir.expanduser())
        if labels_csv is not None:
            input_file(labels_csv.expanduser(), "labels CSV")
    if trusted is not None:
        input_file(trusted.expanduser(), "trusted labels CSV")


def print_summary(summary: dict[str, Any], output: Path, balanced: bool = False) -> None:
    """The human summary: counts, the top of the ranking with its flags, truth scores if known."""
    out = stdout()
    n_flagged = summary["n_flagged"]
    flagged = (f"[bold]{n_flagged}[/] flagged as likely wrong labels" if n_flagged else "[bold]none[/] flagged")
    out.print(f"[bold]{summary['n_samples']}[/] samples, {summary['n_classes']} classes: {flagged} "
              f"({formats.percent(summary['estimated_noise_rate'])}, {_how_counted(summary['threshold'])}); "
              f"model {summary['model']} on {summary['device']}, "
              f"{formats.duration(summary['timings'].get('total_s', 0))}", highlight=False)
    if summary.get("model_choice"):  # why a backbone, or none, on colour images
        out.print(summary["model_choice"], highlight=False)
    from noiseaudit.report.groups import unlearned_line
    from noiseaudit.report.summary import at_chance, heavy_flagging

    chance = at_chance(summary["model_agreement"], summary["majority_share"], summary["n_samples"],
                       summary["n_classes"])
    note = chance or heavy_flagging(summary["estimated_noise_rate"], summary["model_agreement"],
                                    summary["threshold"].get("method", ""))
    if note:
        out.print(note, highlight=False)
    elif summary["threshold"].get("rule") == MIDPOINT:
        out.print(midpoint_note(summary["threshold"]), highlight=False)
    if summary.get("unlearned_classes"):
        out.print(unlearned_line(summary["unlearned_classes"], balanced), highlight=False)
    title = ("Top suspects (most suspect first" if n_flagged else "Most suspect (none is flagged; for a look")
    mixed = summary["threshold"].get("ranked_by") == RATE_AND_PROB  # then the rate column is not in order
    title += ", by learned rate and p(given) together)" if mixed else ")"
    table = Table(title=title)
    for col in ("rank", "path", "given label", "suggested label", "learned rate", "flagged"):
        table.add_column(col, justify="right" if col in ("rank", "learned rate") else "left",
                         overflow="fold" if col == "path" else "ellipsis")  # a path's end names the file: wrap it
    for row in summary["top_suspects"]:
        table.add_row(str(row["rank"]), str(row["path"]),
                      f"{row['given_label']} ({formats.percent(row['given_prob'])})",
                      f"{row['suggested_label']} ({formats.percent(row['suggested_prob'])})",
                      formats.learned_rate(row["learned_lr"]), "yes" if row["is_suspect"] else "")
    out.print(table)
    copies = summary.get("duplicates") or {}
    if copies.get("groups"):
        out.print(duplicates_line(copies, output), highlight=False)
    if summary.get("n_trusted"):
        out.print(f"{summary['n_trusted']} trusted samples trained with their verified labels and steered the "
                  "rates; they are in the report, not ranked (status trusted).", highlight=False)
    if summary.get("n_skipped"):
        out.print(formats.skipped_images(summary, "the report"), highlight=False)
    truth = summary.get("truth")
    if truth:
        where = f" among the {truth['n_known']} samples of known truth" if truth["n_known"] < summary["n_samples"] else ""
        out.print(f"Against the known wrong labels ({truth['n_noisy']}, {formats.percent(truth['true_noise_rate'])}"
                  f"{where}): "
                  + ", ".join(f"{name} {formats.score(truth[key])}" for name, key in METRIC_NAMES),
                  highlight=False)
    out.print(f"Report written to {output}", highlight=False)
    if summary.get("model_file"):
        out.print(f"Model written to {summary['model_file']} (noiseaudit predict {summary['model_file']} IMAGES_DIR)",
                  highlight=False)


def _above(share: float, bound: float) -> str:
    """``share`` as a percentage with the decimals that show it above ``bound`` (20.03%, not 20.0%, over 0.2)."""
    for decimals in range(1, 7):
        shown = f"{share * 100:.{decimals}f}"
        if float(shown) > bound * 100:
            return shown + "%"
    return f"{share * 100!r}%"


def midpoint_note(threshold: dict[str, Any]) -> str:
    """Why a count between its two brackets is uncertain, and what to do about it."""
    return (f"The count is midway between the {threshold['upper_count']} samples of low rate and the "
            f"{threshold['lower_count']} of them the model disputes. Instance-dependent noise looks like this, and "
            "so do hard but correct samples of data already cleaned: after a review, pass the reviewed sheet as "
            "--trusted, or set the count with --noise-rate.")


def duplicates_line(copies: dict[str, Any], output: Path) -> str:
    """What the summary says of samples with identical inputs (:func:`noiseaudit.report.summary.duplicate_counts`)."""
    line = (f"{formats.plural(copies['samples'], 'sample')} are identical {copies['of']} in "
            f"{formats.plural(copies['groups'], 'group')}")
    if not copies["conflicting_groups"]:
        return line + ", each with one label (report column duplicate_group)."
    return (line + f"; {formats.plural(copies['conflicting_groups'], 'group')} ({copies['conflicting_samples']} "
            "samples) carry different labels, so at least one label in each is wrong: noiseaudit show "
            f"{shlex.quote(str(output))} --by duplicate lists them.")


def next_steps(output: Path, n_flagged: int, images: bool = True) -> list[tuple[str, str]]:
    """The commands that come after a scan, with the real report name: (command, what it gives); a scan of
    feature vectors has no thumbnails to show."""
    report = shlex.quote(str(output))
    review = output.parent / ("review.csv" if output.stem == "report" else f"{output.stem}-review.csv")
    page = shlex.quote(str(output.with_suffix(".html")))
    html_note = "" if importlib.util.find_spec("matplotlib") else f"; needs {install_hint('html')}"
    return [
        (f"noiseaudit show {report}", "the top suspects; --class C for one class, --by pair for where the flags fall"),
        (f"noiseaudit export {report} -o {shlex.quote(str(review))} {'--flagged' if n_flagged else '--top 50'}",
         "a sheet to review: fill in verdict, then noiseaudit apply"),
        (f"noiseaudit html {report} -o {page}", ("a page with thumbnails" if images else "a page of plots and tables")
         + html_note),
    ]


def print_next_steps(output: Path, n_flagged: int, images: bool = True) -> None:
    steps = next_steps(output, n_flagged, images)
    width = max(len(cmd) for cmd, _ in steps)
    err = stderr()
    err.print("Next:", highlight=False)
    for cmd, what in steps:
        err.print(f"  {cmd.ljust(width)}  # {what}", highlight=False, markup=False)


INPUTS, OUTPUT, MODEL, TRAINING = "Inputs", "Output", "Model", "Training"
VERIFIED, FLAGS, RUN = "Verified labels", "Ranking and flags", "Running"  # scan --help groups its options


def _refuse_image_options(ctx: typer.Context) -> None:
    """An option that only images use, given with --features, is refused: it was dropped without a word."""
    from noiseaudit.config import IMAGE_OPTIONS

    # by the source's name: typer now vendors click, and ParameterSource lives in whichever is installed
    given = [name for name in IMAGE_OPTIONS if getattr(ctx.get_parameter_source(name), "name", "") == "COMMANDLINE"]
    if given:
        flags = " ".join(option(name, ctx.params[name]) for name in given)
        raise UsageError(f"{flags}: {'these apply' if len(given) > 1 else 'it applies'} to images, not to "
                         "--features (the vectors are used as given)")


@exits_on_errors
def scan_command(
    ctx: typer.Context,
    images_dir: Annotated[Path, typer.Argument(
        help="Image folder (one subfolder per class if no CSV is given); with --features, the labels CSV.")],
    labels_csv: Annotated[Optional[Path], typer.Argument(help="CSV with a path column and a label column.")] = None,
    features: Annotated[Optional[Path], typer.Option(rich_help_panel=INPUTS,
        help="Feature vectors instead of images (embeddings, tabular columns): a .npy row-aligned with the labels CSV,"
             " or a Parquet file (one list column or numeric columns; joined on the CSV's key column if it has it)."
    )] = None,
    path_col: Annotated[Optional[str], typer.Option("--path-col", "--key-col", rich_help_panel=INPUTS,
        help="Path column name; with --features, the key (path or id) column (default: auto-detect; for features, "
             "optional).")] = None,
    label_col: Annotated[Optional[str], typer.Option(rich_help_panel=INPUTS,
        help="Label column name (default: auto-detect).")] = None,
    on_bad_image: Annotated[str, typer.Option(rich_help_panel=INPUTS,
        help="fail: stop at the first missing or undecodable image; skip: leave it out and list it with its status."
    )] = "fail",
    trusted: Annotated[Optional[Path], typer.Option(rich_help_panel=VERIFIED,
        help="A CSV of verified labels (same path and label columns as the labels CSV): those samples steer the "
             "per-sample rates and are kept out of the ranking; paths not in the labels CSV are extra samples."
    )] = None,
    trusted_weight: Annotated[float, typer.Option(rich_help_panel=VERIFIED,
        help="With --trusted: weight in [0, 1] of the trusted samples' class references against the whole data's."
    )] = 0.5,
    backbone: Annotated[str, typer.Option(rich_help_panel=MODEL,
        help="auto: the pretrained efficientnet-lite0 for colour images when the 'pretrained' extra is installed and a"
             " quick probe says it fits (else from scratch); none: always from scratch; or efficientnet-lite0."
    )] = "auto",
    # "20,000" is noiseaudit.backbone.LARGE_FROM, not imported here: that module loads torch at start-up
    finetune: Annotated[str, typer.Option(rich_help_panel=MODEL,
        help="With a backbone: auto (deep), none (a head on frozen embeddings), top (its last stage and head, on "
             "cached activations: about 2.5x faster, ranks worse), deep (its last two stages: 4 epochs at 128 px below"
             " 20,000 images, 6 at 160 px from there) or all (the whole network; for GPUs).")] = "auto",
    model: Annotated[Optional[str], typer.Option(rich_help_panel=MODEL,
        help="From-scratch model: small-cnn (the default for grayscale up to 64 px and colour up to 32 px; about 4 s "
             "an epoch per 1,000 colour 32-px images on 2 CPU cores), resnet18 (the default above; about 20x that "
             "time, and it ranked worse on 2,000 CIFAR-10 photos) or mlp (a hidden layer on the pixels); on "
             "--features, mlp (default) or linear.")] = None,
    image_size: Annotated[Optional[int], typer.Option(rich_help_panel=MODEL,
        help="Resize images to this square side (default: from the data; with a backbone 128, 160 for deep from 20,000"
             " images).")] = None,
    augment: Annotated[Optional[bool], typer.Option("--augment/--no-augment", rich_help_panel=MODEL,
        help="From scratch or with --finetune all: random shifts and flips; with --finetune top, deep or none: a "
             "cached mirror image of each photo, one of the two per visit (default: on with a backbone, off from "
             "scratch).")] = None,
    method: Annotated[str, typer.Option(rich_help_panel=TRAINING,
        help="learned-lr; plain (uniform rates, ranked by loss); or dba (Dynamic Batch Adaptation, ranked by how often"
             " a sample is selected).")] = "learned-lr",
    epochs: Annotated[Optional[int], typer.Option(rich_help_panel=TRAINING,
        help="Training epochs (default: 10 from scratch and on --features, 6 with a backbone; deep 4 below 20,000 "
             "images).")] = None,
    batch_size: Annotated[int, typer.Option(rich_help_panel=TRAINING, help="Batch size.")] = 128,
    lr: Annotated[Optional[float], typer.Option(rich_help_panel=TRAINING,
        help="Base learning rate (SGD, momentum 0.9; default: 0.05 from scratch, 0.02 with a backbone, 0.01 on "
             "--features).")] = None,
    hyper_lr: Annotated[Optional[float], typer.Option(rich_help_panel=TRAINING,
        help="Step size of the per-sample rate update (default: 0.05 from scratch, 0.2 with a backbone, 0.3 on "
             "--features).")] = None,
    margin_weight: Annotated[float, typer.Option(rich_help_panel=TRAINING,
        help="Weight of the sample's own probability margin in the rate update, beside its class alignment.")] = 0.5,
    meta: Annotated[str, typer.Option(rich_help_panel=TRAINING,
        help="Meta-objective of the rate update: given, given+predicted (better on class-pair confusions), or auto "
             "(learn both, rank by the one the disagreement structure favours).")] = "auto",
    schedule: Annotated[str, typer.Option(rich_help_panel=TRAINING,
        help="Base LR schedule: constant, cosine, step, two-regime (large step until the loss plateaus, then a tenth),"
             " or mlr-snet (a shipped schedule network sets each step's rate from the batch loss; --lr is then not "
             "used).")] = "constant",
    layerwise: Annotated[bool, typer.Option("--layerwise/--no-layerwise", rich_help_panel=TRAINING,
        help="Scale each layer's rate by 1 + ln(1 + 1/(|g_l| + eps)) of its gradient g_l (a small gradient, a flat "
             "region: a larger step).")] = False,
    layerwise_rule: Annotated[str, typer.Option(rich_help_panel=TRAINING,
        help="With --layerwise: grad-norm (the formula above) or secant (a running curvature estimate, gradient change"
             " over parameter change).")] = "grad-norm",
    balance_classes: Annotated[bool, typer.Option("--balance-classes/--no-balance-classes", rich_help_panel=TRAINING,
        help="Train on the logits plus log(class frequency) and rank with the logits alone (logit adjustment), so "
             "that small classes are not disputed for being small; a no-op on balanced labels.")] = False,
    noise_rate: Annotated[Optional[float], typer.Option(rich_help_panel=FLAGS,
        help="Flag this fraction of samples (default: estimate it).")] = None,
    rank_by: Annotated[str, typer.Option(rich_help_panel=FLAGS,
        help="rate: rank by the learned rate alone; rate+prob: by the mean of its rank and the final model's "
             "probability of the given label; auto: rate+prob with a pretrained backbone, rate from scratch and on "
             "--features. The count"
             " of flags is the same either way.")] = "auto",
    output: Annotated[Path, typer.Option("--output", "-o", rich_help_panel=OUTPUT,
        help="Parquet report to write.")] = Path("report.parquet"),
    overwrite: Annotated[bool, typer.Option("--overwrite", rich_help_panel=OUTPUT,
        help="Replace an existing report (and --save-model file).")] = False,
    save_model: Annotated[Optional[Path], typer.Option(rich_help_panel=OUTPUT,
        help="Also write the trained classifier here (e.g. model.pt), for noiseaudit predict.")] = None,
    json_out: Annotated[bool, typer.Option("--json", rich_help_panel=OUTPUT,
        help="Print a JSON summary on stdout.")] = False,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", rich_help_panel=OUTPUT,
        help="No progress or hints on stderr.")] = False,
    fail_above: Annotated[Optional[float], typer.Option(rich_help_panel=OUTPUT,
        help="Exit 1 if the flagged fraction exceeds this.")] = None,
    device: Annotated[str, typer.Option(rich_help_panel=RUN, help="auto, cpu, cuda, cuda:N or mps.")] = "auto",
    seed: Annotated[int, typer.Option(rich_help_panel=RUN, help="Seed for everything random.")] = 0,
    workers: Annotated[int, typer.Option(rich_help_panel=RUN, help="Threads decoding images.")] = 2,
    checkpoint_dir: Annotated[Optional[Path], typer.Option(rich_help_panel=RUN,
        help="Where to checkpoint every epoch and on Ctrl-C/SIGTERM (default: OUTPUT.ckpt).")] = None,
    resume: Annotated[bool, typer.Option("--resume", rich_help_panel=RUN,
        help="Continue from the checkpoint of an interrupted scan.")] = False,
    cache_dir: Annotated[Optional[Path], typer.Option(rich_help_panel=RUN,
        help="Decoded-image cache (default: $NOISEAUDIT_CACHE_DIR, else ~/.cache/noiseaudit).")] = None,
    cache: Annotated[bool, typer.Option("--cache/--no-cache", rich_help_panel=RUN,
        help="Reuse images decoded by an earlier scan of the same files.")] = True,
    force: Annotated[bool, typer.Option("--force", rich_help_panel=RUN,
        help="Scan even when the data looks like the wrong folder level or label column (images in subfolders of the "
             "class folders, a class of fewer than 5 samples beside a large one, classes 100x apart, two classes spelt "
             "alike but for case, spaces, '-' or '_', one number written two ways ('1', '01'), a label 'nan' or "
             "'null').")] = False,
) -> None:
    """Train with per-sample learned rates and write a report ranking every sample by suspicion."""
    if fail_above is not None and not 0.0 <= fail_above <= 1.0:
        raise UsageError(f"--fail-above is a fraction of the samples, from 0 to 1 (5% is 0.05), got {fail_above:g}")
    if features is not None and labels_csv is not None:
        raise typer.BadParameter("with --features give only the labels CSV: noiseaudit scan --features FEATURES "
                                 "LABELS_CSV")
    if features is not None:
        _refuse_image_options(ctx)
    options: dict[str, Any] = dict(
        label_col=label_col, model=model, backbone=backbone, method=method, epochs=epochs, batch_size=batch_size,
        lr=lr, hyper_lr=hyper_lr, margin_weight=margin_weight, meta=meta, schedule=schedule, layerwise=layerwise,
        layerwise_rule=layerwise_rule, balance_classes=balance_classes, resume=resume,
        checkpoint_dir=_name(checkpoint_dir), noise_rate=noise_rate, device=device, seed=seed, force=force,
        trusted=_name(trusted), trusted_weight=trusted_weight,
        save_model=_name(save_model), rank_by=rank_by)
    if features is None:
        options.update(path_col=path_col, finetune=finetune, image_size=image_size, augment=augment,
                       on_bad_image=on_bad_image, cache=cache, cache_dir=_name(cache_dir), workers=workers)
    # the options and the input paths are checked before torch loads (seconds): a mistake is refused at once
    make_config(images_dir=None if features else str(images_dir), features=_name(features), **options)
    check_inputs_exist(images_dir, labels_csv, features, trusted)
    from noiseaudit.distributed import job
    from noiseaudit.report.summary import summarize
    from noiseaudit.scan import scan, scan_features

    if quiet:
        warnings.simplefilter("ignore", NoiseAuditHint)
    follower = job()[1] > 0  # under torchrun, rank 0 reports for everyone
    with progress_reporter(quiet or follower) as on_progress:
        run: dict[str, Any] = dict(output=output, overwrite=overwrite, on_progress=on_progress)
        if features is not None:
            report = scan_features(features, images_dir, key_col=path_col, **run, **options)
        else:
            report = scan(images_dir, labels_csv, **run, **options)
    if follower:
        return
    summary = summarize(report, report.attrs["noiseaudit"])
    summary["output"] = str(output)
    if save_model is not None:
        summary["model_file"] = str(save_model)
    over = fail_above is not None and summary["estimated_noise_rate"] > fail_above
    if fail_above is not None:
        summary["fail_above"], summary["over_fail_above"] = fail_above, over
    broken = False
    try:
        if json_out:
            echo_json(summary)
        else:
            print_summary(summary, output, bool(report.attrs["noiseaudit"]["config"].get("balance_classes")))
            if not quiet:
                print_next_steps(output, summary["n_flagged"], images=features is None)
    except BrokenPipeError:  # `| head` read what it wanted: the gate below still gives its exit code and reason
        broken = True
        discard_stdout()
    except OSError as exc:  # stdout on a full disk
        raise OSError(exc.errno, f"{exc.strerror} (the report is written to {output} all the same)",
                      exc.filename) from None
    if over:  # said even with -q, as an error is: it is why the exit code is 1
        stderr().print(f"flagged {summary['n_flagged']:,} of {summary['n_samples']:,} samples "
                       f"({_above(summary['estimated_noise_rate'], fail_above)}), above --fail-above {fail_above:g}: "
                       "exit 1", highlight=False)
        raise typer.Exit(1)
    if fail_above is not None and summary["model_at_chance"]:  # a gate fails closed on a count that means nothing
        stderr().print(f"the model learned nothing (it agrees with {formats.percent(summary['model_agreement'])} "
                       "of the given labels, as always predicting the most common one would), so its count cannot "
                       f"pass --fail-above {fail_above:g}: exit 1", highlight=False)
        raise typer.Exit(1)
    if broken:
        raise typer.Exit(BROKEN_PIPE)
