"""One self-contained HTML page for a report: summary, plots and a gallery of top suspects.

Plots need matplotlib (the ``html`` extra: ``pip install -e ".[html]"``); thumbnails
and plots are embedded as base64 PNGs, so the file can be mailed or archived alone.
"""

from __future__ import annotations

import base64
import html
import io
from pathlib import Path, PurePosixPath
from typing import Any

import numpy as np
import pandas as pd
from PIL import Image

from noiseaudit import formats
from noiseaudit.data.images import DecodeError, decode_image
from noiseaudit.data.source import IMAGE_EXTENSIONS, resolve_inside
from noiseaudit.errors import InputError, NoiseAuditWarning, UsageError, check_image_dir, option, warn
from noiseaudit.evaluate import evaluate
from noiseaudit.extras import install_hint
from noiseaudit.report.build import check_report, scored
from noiseaudit.report.export import check_top
from noiseaudit.report.groups import concentration_line, flags_by_pair
from noiseaudit.report.summary import samples_word
from noiseaudit.report.truth import split_known, truth_values

CSS = """
body{font-family:system-ui,sans-serif;margin:2em;color:#222;max-width:1200px}
h1{font-size:1.5em} h2{font-size:1.15em;margin-top:1.6em}
table{border-collapse:collapse} td,th{padding:2px 10px;border-bottom:1px solid #ddd;text-align:right}
td:first-child,th:first-child,td.l,th.l{text-align:left}
.plots img{max-width:380px;margin-right:12px}
.gallery{display:flex;flex-wrap:wrap;gap:10px}
.card{width:120px;font-size:11px;border:1px solid #ccc;border-radius:4px;padding:4px;text-align:center;
  position:relative}
.card img{width:112px;height:112px;image-rendering:pixelated;display:block;margin:auto}
.given{color:#b00} .sugg{color:#070}
.name{overflow-wrap:anywhere;color:#555}
.card.flagged{background:#fff4e0;border-color:#e08a00}
.badge{position:absolute;top:6px;left:6px;background:#e08a00;color:#fff;font-weight:bold;padding:0 4px;
  border-radius:3px}
.card.noisy{outline:2px solid #b00;outline-offset:1px}
.gallery.dup{margin-bottom:10px;padding-bottom:10px;border-bottom:1px dashed #ccc}
"""


def _png(fig: Any) -> str:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=90, bbox_inches="tight")
    return base64.b64encode(buf.getvalue()).decode()


def _plots(report: pd.DataFrame, truth_by_row: pd.Series | None) -> dict[str, str]:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        raise UsageError(f"noiseaudit html draws plots with matplotlib: {install_hint('html')}") from None
    from sklearn.metrics import precision_recall_curve

    rows, truth = None, None
    if truth_by_row is not None and truth_by_row.notna().any():
        rows, truth = split_known(report, truth_by_row)
    log_lr = np.log(report["learned_lr"].to_numpy(dtype=np.float64))
    out: dict[str, str] = {}
    fig, ax = plt.subplots(figsize=(5, 3.2))
    bins = np.linspace(log_lr.min(), log_lr.max() + 1e-9, 50)
    if truth is not None:
        known_lr = np.log(rows["learned_lr"].to_numpy(dtype=np.float64))
        ax.hist(known_lr[~truth], bins=bins, alpha=0.6, label="clean", color="#3a7")
        ax.hist(known_lr[truth], bins=bins, alpha=0.6, label="wrong label", color="#c33")
        ax.legend()
    else:
        ax.hist(log_lr, bins=bins, color="#37a")
    ax.set_xlabel("log learned rate")
    ax.set_ylabel("samples")
    ax.set_title("Learned rates")
    out["Learned rates"] = _png(fig)
    plt.close(fig)
    if truth is not None and 0 < truth.sum() < truth.size:
        fig, ax = plt.subplots(figsize=(5, 3.2))
        precision, recall, _ = precision_recall_curve(truth, -rows["rank"].to_numpy())
        ax.plot(recall, precision, color="#37a")
        ax.set_xlabel("recall")
        ax.set_ylabel("precision")
        ax.set_ylim(0, 1.02)
        ax.set_title("Precision-recall of the ranking")
        out["Precision-recall"] = _png(fig)
        plt.close(fig)
    counts = report.groupby("given_label").agg(n=("path", "size"), flagged=("is_suspect", "sum"))
    fig, ax = plt.subplots(figsize=(5, 3.2))
    x = np.arange(len(counts))
    ax.bar(x, counts["n"], color="#bbb", label="samples")
    ax.bar(x, counts["flagged"], color="#c33", label="flagged")
    ax.set_xticks(x, [str(c) for c in counts.index], rotation=45, ha="right")
    ax.set_ylim(0, counts["n"].max() * 1.3)
    ax.legend(loc="upper left", ncol=2)
    ax.set_title("Per class (given label)")
    out["Per class"] = _png(fig)
    plt.close(fig)
    return out


def _thumbnail(root: Path, path: str) -> tuple[str, bool]:
    """The image at ``path`` under ``root`` as a base64 PNG, and whether it was read (else a grey square)."""
    try:
        file = resolve_inside(root, path, origin=str(root), line=None)
        arr, found = decode_image(file, 112), True
    except (InputError, DecodeError, OSError):
        arr, found = np.full((112, 112, 3), 200, dtype=np.uint8), False
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, format="PNG")
    return base64.b64encode(buf.getvalue()).decode(), found


def _are_pictures(paths: Any) -> bool:
    """Whether a report's paths name images: feature-vector reports keyed by ids or row numbers have none to show."""
    return any(PurePosixPath(str(p)).suffix.lower() in IMAGE_EXTENSIONS for p in paths)


class _Cards:
    """Cards of the page, each a sample's thumbnail (where ``pictures``), what is said of it and its path under
    the image folder; counts the thumbnails tried and the paths that could not be read under ``root``."""

    def __init__(self, root: Path) -> None:
        self.root, self.tried, self.unread = root, 0, []

    def card(self, path: str, pictures: bool, body: str, kind: str = "card", badge: str = "") -> str:
        e, picture = html.escape, ""
        if pictures:
            png, found = _thumbnail(self.root, path)
            self.tried += 1
            self.unread += [] if found else [str(path)]
            picture = f'<img alt="{e(str(path))}" src="data:image/png;base64,{png}">'
        return (f'<div class="{kind}" title="{e(str(path))}">{badge}{picture}{body}'
                f'<div class="name">{e(str(path))}</div></div>')  # the whole path: train/cat/0129.jpg and
        # train/truck/0129.jpg, both in one gallery, showed as two cards named 0129.jpg


def _pairs_section(report: pd.DataFrame, top: int = 10) -> str:
    """The flags by (given, suggested) class pair, largest first ("" when nothing is flagged)."""
    groups = flags_by_pair(report["given_label"].tolist(), report["suggested_label"].tolist(),
                           report["is_suspect"].astype(bool).tolist())
    if not groups:
        return ""
    e = html.escape
    rows = "".join(f"<tr><td class=l>{e(str(g['given_label']))}</td><td class=l>{e(str(g['suggested_label']))}</td>"
                   f"<td>{g['n_flagged']}</td><td>{formats.percent(g['share_of_flagged'])}</td>"
                   f"<td>{formats.percent(g['share_of_class'])}</td></tr>" for g in groups[:top])
    line = concentration_line(groups, report["given_label"].nunique())
    note = f"<p>{line}</p>" if line else ""
    head = "".join(f"<th{' class=l' if i < 2 else ''}>{name}</th>"
                   for i, name in enumerate(("given", "suggested", "flagged", "of the flags", "of the class")))
    rest = len(groups) - top
    more = (f"<p>and {formats.plural(rest, 'more pair')} ({sum(g['n_flagged'] for g in groups[top:])} flags): "
            f"<code>noiseaudit show REPORT --by pair</code> lists every one</p>") if rest > 0 else ""
    return f"<h2>Flags by class pair</h2>{note}<table><tr>{head}</tr>{rows}</table>{more}"


def _duplicates_section(report: pd.DataFrame, cards: _Cards, what: str, top: int = 10) -> str:
    """The groups of identical ``what`` (images, feature vectors) whose labels differ, each a row of cards ("" when
    none or the report predates the column)."""
    if "duplicate_conflict" not in report.columns or not report["duplicate_conflict"].any():
        return ""
    conflicting = report[report["duplicate_conflict"].astype(bool)]
    groups = list(conflicting.groupby("duplicate_group", sort=True))
    pictures = _are_pictures(conflicting["path"])
    e, rows = html.escape, []
    for _, group in groups[:top]:
        row_cards = []
        for row in group.itertuples(index=False):
            where = "trusted" if row.status == "trusted" else (f"#{row.rank}" if pd.notna(row.rank) else row.status)
            said = f'<div>{e(str(where))}</div><div class="given">given: {e(str(row.given_label))}</div>'
            row_cards.append(cards.card(row.path, pictures, said))
        rows.append(f'<div class="gallery dup">{"".join(row_cards)}</div>')
    more = (f"<p>and {formats.plural(len(groups) - top, 'more group')}: the report's rows with "
            "<code>duplicate_conflict</code> list every one</p>") if len(groups) > top else ""
    return (f"<h2>Identical {what}, different labels</h2><p>{formats.plural(len(groups), 'group')} of identical "
            f"{what} carry different labels ({len(conflicting)} samples): at least one label in each group is "
            f"wrong.</p>{''.join(rows)}{more}")


def _scanned(config: dict[str, Any]) -> str:
    """What was scanned, by file names alone (a shared page should not show the scanner's folders): the labels
    file, the image folder and the features file that the run's config names (a table from Python is left
    out), joined by " · "; "" where it names none."""
    names = [Path(str(config[k])).name for k in ("labels_csv", "images_dir", "features")
             if config.get(k) and not str(config[k]).startswith("<")]
    return " · ".join(dict.fromkeys(names))


def render_html(report: pd.DataFrame, metadata: dict[str, Any] | None = None, images_root: str | Path | None = None,
                top: int = 48) -> str:
    """The self-contained HTML page of a report (``noiseaudit html``), as a string.

    Parameters
    ----------
    report : DataFrame
        A report (:func:`noiseaudit.scan` or :func:`noiseaudit.read_report`).
    metadata : dict, optional
        The run's metadata; by default ``report.attrs["noiseaudit"]``.
    images_root : str or Path, optional
        Where the thumbnails' images are (a folder); by default the scan's image folder.
    top : int
        How many of the most suspect samples the gallery shows (at least 1).

    Returns
    -------
    str
        The page: summary, plots (they need matplotlib), the gallery and the flags by class pair.

    Raises
    ------
    UsageError
        ``top`` below 1.
    InputError
        ``images_root`` is missing or not a folder.

    Warns
    -----
    NoiseAuditWarning
        Some of the gallery's images could not be read under the folder (they show as grey squares).
    """
    check_top(top)
    check_report(report)
    metadata = report.attrs.get("noiseaudit", {}) if metadata is None else metadata
    report = report.reset_index(drop=True)  # a sorted or filtered frame: rows are taken by position
    if images_root:
        root = check_image_dir(images_root, hint="")
    else:
        root = Path(metadata.get("images_root") or ".").resolve()
    e = html.escape
    what = samples_word(metadata)
    thumbs = _Cards(root)
    duplicates = _duplicates_section(report, thumbs, what)  # trusted samples too: a copy may contradict one
    ranked = scored(report)
    unranked = len(report) - len(ranked)  # skipped images, trusted samples
    report = ranked
    truth = truth_values(report, lenient=True)
    n, flagged = len(report), int(report["is_suspect"].sum())
    scanned = _scanned(metadata.get("config", {}))
    rows = [*([("scanned", scanned)] if scanned else []), ("samples", n),
            *([("not ranked (skipped, trusted)", unranked)] if unranked else []),
            ("classes", report["given_label"].nunique()), ("flagged", flagged),
            ("estimated noise rate", formats.percent(flagged / n) if n else formats.MISSING),
            ("model", metadata.get("model", "?")), ("device", metadata.get("device", "?")),
            ("epochs", metadata.get("config", {}).get("epochs", "?")), ("seed", metadata.get("seed", "?")),
            ("noiseaudit", metadata.get("version", "?"))]
    if truth is not None and truth.notna().any():
        m = evaluate(report)
        unknown = f" (truth unknown for {m['n_unknown']})" if m["n_unknown"] else ""
        rows += [("known wrong labels", f"{m['n_noisy']}{unknown}"),
                 ("precision / recall / F1", " / ".join(formats.score(m[k]) for k in ("precision", "recall", "f1"))),
                 ("AUROC / AP", " / ".join(formats.score(m[k]) for k in ("auroc", "average_precision")))]
    summary = "".join(f"<tr><td>{e(str(k))}</td><td>{e(str(v))}</td></tr>" for k, v in rows)
    pairs = _pairs_section(report)
    plots = "".join(f'<img alt="{e(t)}" src="data:image/png;base64,{b}">' for t, b in _plots(report, truth).items())
    cards = []
    known_wrong = None if truth is None else truth.fillna(False).to_numpy(bool)
    ordered = report.sort_values("rank").head(top)
    pictures = _are_pictures(ordered["path"])
    for pos, row in zip(ordered.index, ordered.itertuples(index=False)):
        wrong = known_wrong is not None and bool(known_wrong[pos])
        kind = "card" + (" flagged" if row.is_suspect else "") + (" noisy" if wrong else "")
        badge = '<span class="badge">flagged</span>' if row.is_suspect else ""
        cards.append(thumbs.card(
            row.path, pictures,
            f"<div>#{row.rank} · η={formats.learned_rate(row.learned_lr)}</div>"
            f'<div class="given">given: {e(str(row.given_label))} ({formats.percent(row.given_prob)})</div>'
            f'<div class="sugg">suggested: {e(str(row.suggested_label))} ({formats.percent(row.suggested_prob)})</div>',
            kind, badge))
    unread = thumbs.unread
    if unread:
        warn(f"{root}: {len(unread)} of the page's {thumbs.tried} images could not be read there (the "
             f"first: {unread[0]!r}) and show as grey squares; name their folder with "
             f"{option('images_root', flag='--images-dir')}",
             NoiseAuditWarning)
    legend = (f" Orange cards marked <b>flagged</b> are among the {flagged} samples the scan flags as likely wrong "
              "labels" if flagged else " None is flagged: these are the most suspect, for a look")
    legend += "; red outline: a known wrong label." if truth is not None else "."
    legend += (" η is the sample's learned rate, relative to the base rate (it starts at 1; wrong labels end low);"
               " the percentages are the final model's probabilities.")
    title = "noiseaudit report" + (f": {e(scanned)}" if scanned else "")
    return (f"<!doctype html><html><head><meta charset='utf-8'><title>{title}</title>"
            f"<style>{CSS}</style></head><body><h1>{title}</h1>"
            f"<h2>Summary</h2><table>{summary}</table>"
            f'<h2>Plots</h2><div class="plots">{plots}</div>'
            f"<h2>Top {len(cards)} suspects</h2>"
            f"<p>Most suspect first.{legend} Hover a card for its full path.</p>"
            f'<div class="gallery">{"".join(cards)}</div>{duplicates}{pairs}</body></html>')
