"""show and html: the page is self-contained and renders, thumbnails included, in headless Chromium."""

from __future__ import annotations

import re

import numpy as np
import pandas as pd
import pytest
from PIL import Image
from typer.testing import CliRunner

from noiseaudit import read_report, scan
from noiseaudit.cli import app
from noiseaudit.report.browser import dump_dom, find_chromium, screenshot


@pytest.fixture(scope="module")
def report_path(noisy_digits, tmp_path_factory):
    image_dir, csv = noisy_digits
    out = tmp_path_factory.mktemp("html") / "r.parquet"
    scan(image_dir, csv, output=out, label_col="digit", epochs=3, seed=0, device="cpu")
    return out


def test_show_lists_top_rows_and_filters_by_class(report_path):
    result = CliRunner().invoke(app, ["show", str(report_path), "--top", "5", "--class", "3"])
    assert result.exit_code == 0, result.output
    assert "labelled 3" in result.stdout
    ranks = [int(m) for m in re.findall(r"^│\s+(\d+) │", result.stdout, flags=re.M)]
    assert len(ranks) == 5 and ranks == sorted(ranks)


def test_html_is_self_contained(report_path, tmp_path):
    page = tmp_path / "report.html"
    result = CliRunner().invoke(app, ["html", str(report_path), "-o", str(page), "--top", "12"])
    assert result.exit_code == 0, result.output
    text = page.read_text()
    assert "noiseaudit report" in text and "AUROC / AP" in text
    assert text.count('class="card') == 12
    assert len(re.findall(r'src="data:image/png;base64,', text)) == 12 + 3  # thumbnails + 3 plots
    assert not re.search(r'src="(?!data:)', text)  # nothing fetched from outside
    # what was scanned, by file name only, and what η means (a tester sharing the page found neither)
    config = read_report(report_path)[1]["config"]
    names = " · ".join(config[k].rstrip("/").rsplit("/", 1)[-1] for k in ("labels_csv", "images_dir"))
    assert f"<title>noiseaudit report: {names}</title>" in text and "<td>scanned</td>" in text
    assert "η is the sample's learned rate" in text and str(report_path.parent.parent) not in text


def test_html_warns_when_the_gallerys_images_are_not_in_the_folder(report_path, tmp_path):
    """A wrong --images-dir gave a page of grey squares with exit 0 and no word."""
    empty = tmp_path / "elsewhere"
    empty.mkdir()
    result = CliRunner().invoke(app, ["html", str(report_path), "-o", str(tmp_path / "a.html"), "--top", "5",
                                      "--images-dir", str(empty)])
    assert result.exit_code == 0, result.output
    assert re.fullmatch(rf"warning: {re.escape(str(empty))}: 5 of the page's 5 images could not be read there "
                        r"\(the first: '.+'\) and show as grey squares; name their folder with --images-dir\n",
                        result.stderr), result.stderr
    result = CliRunner().invoke(app, ["html", str(report_path), "-o", str(tmp_path / "b.html"), "--top", "5"])
    assert result.exit_code == 0 and result.stderr == ""


def test_html_json_summary(report_path, tmp_path):
    import json

    page = tmp_path / "report.html"
    result = CliRunner().invoke(app, ["html", str(report_path), "-o", str(page), "--top", "5", "--json"])
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert summary["gallery"] == 5 and summary["bytes"] == page.stat().st_size and summary["output"] == str(page)
    assert summary["samples"] > 5


def test_html_counts_the_ranked_samples_as_its_page_does(report_path, tmp_path):
    """With a skipped image, --json said 111 samples (and a gallery of 111) where the page showed 110, and the page
    said nothing of the skipped one."""
    import json

    from noiseaudit import read_report, write_report

    frame, meta = read_report(report_path)
    frame.loc[frame["rank"] == 1, "status"] = "corrupt"  # as a skipped image is: in the report, not ranked
    write_report(frame, meta, tmp_path / "skipped.parquet")
    page = tmp_path / "report.html"
    result = CliRunner().invoke(app, ["html", str(tmp_path / "skipped.parquet"), "-o", str(page), "--top",
                                      str(len(frame)), "--json"])
    summary = json.loads(result.stdout)
    assert summary["samples"] == summary["gallery"] == len(frame) - 1
    assert page.read_text().count('class="card') == len(frame) - 1  # flagged ones are "card flagged"
    assert "<td>not ranked (skipped, trusted)</td><td>1</td>" in page.read_text()


@pytest.mark.skipif(find_chromium() is None, reason="Debian chromium not installed (.ci/run installs it)")
def test_html_renders_with_thumbnails_in_headless_chromium(report_path, tmp_path):
    page = tmp_path / "report.html"
    CliRunner().invoke(app, ["html", str(report_path), "-o", str(page), "--top", "16"])
    probe = tmp_path / "probe.html"  # a copy with a script that reports how many images decoded
    probe.write_text(page.read_text().replace(
        "</body>", "<script>window.onload=()=>{const i=[...document.images];document.body.dataset.loaded="
                   "i.filter(x=>x.complete&&x.naturalWidth>0).length+'/'+i.length;};</script></body>"))
    dom = dump_dom(probe)
    assert 'data-loaded="19/19"' in dom, dom[-300:]
    png = screenshot(page, tmp_path / "shot.png", height=1400)
    pixels = np.asarray(Image.open(png).convert("L"), dtype=np.float64)
    assert pixels.shape == (1400, 1280)
    gallery = pixels[900:1400]  # thumbnails of dark digits on white cards
    assert pixels.std() > 20 and (gallery < 60).mean() > 0.02


def render_without_images(*args, **kwargs) -> str:
    """render_html of a synthetic report, whose gallery has no image files to read: the page says so in a warning."""
    from noiseaudit.errors import NoiseAuditWarning
    from noiseaudit.report.html import render_html

    with pytest.warns(NoiseAuditWarning, match="show as grey squares"):
        return render_html(*args, **kwargs)


def test_gallery_shows_whole_file_names_and_marks_flagged_cards(tmp_path):
    """Issue 18, item 11: names are not cut, flagged cards look flagged without truth; the card names the whole
    path (it named the file alone, so train/cat/0129.jpg and train/truck/0129.jpg were two cards '0129.jpg')."""
    from test_cli_output import synthetic_report

    from noiseaudit.report.io import read_report

    frame, meta = read_report(synthetic_report(tmp_path / "r.parquet", n_flagged=3))
    frame = frame.drop(columns="original_label")  # no known truth
    long_name = "fmnist_test_04982_a_rather_long_file_name.png"
    frame["path"] = [f"deep/folder/{i}_{long_name}" for i in range(len(frame))]
    page = render_without_images(frame, meta, tmp_path, top=8)
    cards = re.findall(r'<div class="(card[^"]*)" title="([^"]*)">(.*?)</div></div>', page)
    assert len(cards) == 8
    assert [kind for kind, _, _ in cards] == ["card flagged"] * 3 + ["card"] * 5
    for i, (_, title, body) in enumerate(cards):
        assert title == f"deep/folder/{i}_{long_name}"
        assert f'<div class="name">deep/folder/{i}_{long_name}' in body  # the path: two folders' 0129.jpg apart
    assert page.count('<span class="badge">flagged</span>') == 3
    assert "are among the 3 samples the scan flags as likely wrong labels" in page
    assert "overflow-wrap:anywhere" in page


def test_page_counts_the_flags_by_class_pair(tmp_path):
    from test_cli_output import synthetic_report

    from noiseaudit.report.io import read_report

    frame, meta = read_report(synthetic_report(tmp_path / "r.parquet", n_flagged=6))
    page = render_without_images(frame, meta, tmp_path, top=4)
    assert "<h2>Flags by class pair</h2>" in page
    assert "100.0% of the flags fall in each class's most common pair (about 50.0% if" in page
    pairs = re.findall(r"<tr><td class=l>([\w-]+)</td><td class=l>([\w-]+)</td><td>(\d+)</td>", page)
    assert sorted(pairs) == [("Bag", "Shirt", "2"), ("Shirt", "T-shirt", "2"), ("T-shirt", "Bag", "2")]
    frame["is_suspect"] = False
    assert "Flags by class pair" not in render_without_images(frame, meta, tmp_path, top=4)


def test_page_and_summary_score_only_rows_of_known_truth(tmp_path):
    from test_cli_output import synthetic_report

    from noiseaudit.errors import NoiseAuditWarning
    from noiseaudit.report.io import read_report
    from noiseaudit.report.summary import summarize

    frame, meta = read_report(synthetic_report(tmp_path / "r.parquet", n_flagged=6))
    frame.loc[30:, "original_label"] = None  # truth checked for the first 30 rows only
    page = render_without_images(frame, meta, tmp_path, top=8)
    wrong = int((frame["original_label"][:30] != frame["given_label"][:30]).sum())
    assert f"<td>known wrong labels</td><td>{wrong} (truth unknown for 10)</td>" in page
    truth = summarize(frame, meta)["truth"]
    assert truth["n_known"] == 30 and truth["n_noisy"] == wrong
    words = frame.drop(columns="original_label").assign(is_noisy=["maybe"] + ["no"] * (len(frame) - 1))
    with pytest.warns(NoiseAuditWarning, match="cannot read 'maybe'"):
        assert "truth" not in summarize(words, meta)
    with pytest.warns(NoiseAuditWarning, match="cannot read 'maybe'"):
        assert "known wrong labels" not in render_without_images(words, meta, tmp_path, top=4)


@pytest.mark.parametrize("command", [["show"], ["show", "--by", "pair"], ["html", "-o", "page.html"],
                                     ["export", "-o", "sheet.csv"]])
def test_top_below_one_is_refused_by_every_command(tmp_path, command):
    from test_cli_output import synthetic_report

    report = synthetic_report(tmp_path / "r.parquet")
    args = [command[0], str(report), *[str(tmp_path / a) if a.endswith((".html", ".csv")) else a for a in command[1:]]]
    for top in ("-5", "0"):
        result = CliRunner().invoke(app, [*args, "--top", top])
        assert result.exit_code == 2 and result.stderr.strip() == f"error: --top must be at least 1, got {top}"
    assert not (tmp_path / "page.html").exists() and not (tmp_path / "sheet.csv").exists()


def test_html_refuses_an_images_dir_that_is_not_a_folder(tmp_path):
    from test_cli_output import synthetic_report

    report, page = synthetic_report(tmp_path / "r.parquet"), tmp_path / "page.html"
    for wrong, said in ((tmp_path / "nonexistent", "image folder not found"), (report, "a file, not an image folder")):
        result = CliRunner().invoke(app, ["html", str(report), "-o", str(page), "--images-dir", str(wrong)])
        assert result.exit_code == 2 and result.stderr.strip() == f"error: {wrong}: {said}"
        assert not page.exists()
    assert CliRunner().invoke(app, ["html", str(report), "-o", str(page), "--images-dir", str(tmp_path)]).exit_code == 0


def test_the_pair_table_says_how_many_pairs_it_leaves_out():
    """The page listed 10 pairs where `show --by pair` listed 12, with no word of the other 2."""
    from noiseaudit.report.html import _pairs_section

    given = ["a", "b", "c", "d", "e"] * 40
    rows = pd.DataFrame({"given_label": given, "suggested_label": [given[(i * 7 + 1) % 5] for i in range(200)],
                         "is_suspect": [True] * 200})
    assert _pairs_section(rows, top=3).endswith("<p>and 2 more pairs (80 flags): <code>noiseaudit show REPORT --by "
                                                "pair</code> lists every one</p>")
    assert "more pair" not in _pairs_section(rows, top=5)
