"""A corpus of malformed (and awkward but valid) inputs, each run through ``noiseaudit scan`` on the CLI.

Every case writes a small dataset into ``tmp_path``: 12 tiny grey PNGs in three classes (CSV lines 2-13)
plus whatever the case adds, usually on CSV line 14. A failing case must exit 2 with one ``error:`` line on
stderr that starts with the CSV path and, where a row is at fault, its line number; no report and no temp
file may be left behind. A bad-image case is also run with ``--on-bad-image skip``: it must succeed and list
that row with its status. A succeeding case must write a report with the expected number of rows.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import PIL.Image
import pytest
from PIL import Image
from test_errors import assert_user_error, invoke, stderr_of, write_images

from noiseaudit import read_report

N_BASE = 12
BASE = [(f"img{i}.png", "abc"[i % 3]) for i in range(N_BASE)]  # CSV lines 2..13
EXTRA_LINE = N_BASE + 2  # the first row after the base rows


@dataclass
class Ctx:
    """One case's working area: the image root, the CSV path, a folder outside the root, and monkeypatch."""

    images: Path
    csv: Path
    outside: Path
    monkeypatch: pytest.MonkeyPatch


@dataclass(frozen=True)
class Case:
    """``build`` writes the case's files and returns the CSV contents.

    ``error`` (fragments of the error line) makes it a failing case, ``line`` the CSV line it must name
    (None: the file as a whole); ``warning`` likewise for the one warning line of a succeeding case.
    ``status`` makes it a bad-image case, also run with ``--on-bad-image skip`` where the row of
    ``bad_path`` gets that status. Otherwise it succeeds with ``rows`` report rows.
    """

    build: Callable[[Ctx], str | bytes]
    error: tuple[str, ...] = ()
    line: int | None = None
    status: str | None = None
    bad_path: str | None = None
    rows: int | None = None
    warning: tuple[str, ...] = ()  # a succeeding case that must print one ``warning: <csv>:<line>: ...``
    check: Callable[[object, dict], None] | None = None  # extra assertions on (report, metadata)


# -------------------------------------------------------------------------------------------- builders


def table(rows: list[tuple[str, str]], delimiter: str = ",", header: tuple[str, str] = ("path", "label")) -> str:
    buf = io.StringIO()
    writer = csv.writer(buf, delimiter=delimiter, lineterminator="\n")
    writer.writerow(header)
    writer.writerows(rows)
    return buf.getvalue()


def with_rows(*extra: tuple[str, str]) -> str:
    return table(BASE + list(extra))


def replacing(index: int, row: tuple[str, str]) -> Callable[[Ctx], str]:
    """The base table with row ``index`` (CSV line index + 2) replaced."""
    return lambda ctx: table(BASE[:index] + [row] + BASE[index + 1:])


def noise(size: int, channels: int = 3) -> np.ndarray:
    shape = (size, size, channels) if channels > 1 else (size, size)
    return np.random.default_rng(size).integers(0, 256, shape, dtype=np.uint8)


def extra_image(name: str, make: Callable[[Path], None], label: str = "a") -> Callable[[Ctx], str]:
    """Write one more file (``make(path)``) and list it on line 14."""
    def build(ctx: Ctx) -> str:
        path = ctx.images / name
        path.parent.mkdir(parents=True, exist_ok=True)
        make(path)
        return with_rows((name, label))
    return build


def saved(image: Callable[[], Image.Image], mode: str | None = None, **options) -> Callable[[Path], None]:
    """Save ``image()``; with ``mode``, check the file really reopens in that mode (16-bit, CMYK, ...)."""
    def make(path: Path) -> None:
        image().save(path, **options)
        if mode is not None:
            with Image.open(path) as reopened:
                assert reopened.mode == mode, (path.name, reopened.mode)
    return make


def truncated(fmt: str) -> Callable[[Path], None]:
    def make(path: Path) -> None:
        Image.fromarray(noise(32), "RGB").save(path, format=fmt)
        data = path.read_bytes()
        path.write_bytes(data[: len(data) // 2])
    return make


def corrupt_png(path: Path) -> None:
    """A PNG whose compressed pixel data (inside IDAT) is overwritten with garbage; the chunk layout is intact."""
    Image.fromarray(noise(32), "RGB").save(path)
    data = bytearray(path.read_bytes())
    start = data.index(b"IDAT") + 4
    data[start + 2: start + 200] = bytes(np.random.default_rng(7).integers(0, 256, 198, dtype=np.uint8))
    path.write_bytes(bytes(data))


def exif_rotated(path: Path) -> None:
    exif = Image.Exif()
    exif[0x0112] = 6  # Orientation: rotate 90 CW to display
    Image.fromarray(noise(16), "RGB").crop((0, 0, 16, 8)).save(path, exif=exif, quality=90)
    with Image.open(path) as reopened:
        assert reopened.getexif()[0x0112] == 6 and reopened.size == (16, 8)


def bomb(ctx: Ctx) -> str:
    ctx.monkeypatch.setattr(PIL.Image, "MAX_IMAGE_PIXELS", 1000)  # the 8x8 base images (64 px) stay fine
    Image.fromarray(noise(64, 1), "L").save(ctx.images / "bomb.png")
    return with_rows(("bomb.png", "a"))


def bomb_under_twice_the_limit(ctx: Ctx) -> str:
    """Between the limit and twice it, Pillow warns at open (its raw warning was a second stderr line)."""
    ctx.monkeypatch.setattr(PIL.Image, "MAX_IMAGE_PIXELS", 3000)
    Image.fromarray(noise(64, 1), "L").save(ctx.images / "bomb.png")  # 4,096 pixels
    return with_rows(("bomb.png", "a"))


def write(data: bytes | str) -> Callable[[Path], None]:
    return lambda path: path.write_bytes(data.encode() if isinstance(data, str) else data)


def raw(text: str) -> Callable[[Ctx], str]:
    """Base table plus literal CSV text on line 14."""
    return lambda ctx: with_rows() + text


def outside_image(ctx: Ctx) -> Path:
    path = ctx.outside / "secret.png"
    Image.new("L", (8, 8), 9).save(path)
    return path


def dotdot(ctx: Ctx) -> str:
    outside_image(ctx)  # the file exists: it is the path that is refused
    return with_rows(("../outside/secret.png", "a"))


def absolute(ctx: Ctx) -> str:
    return with_rows((str(outside_image(ctx)), "a"))


def symlinked_file(ctx: Ctx) -> str:
    (ctx.images / "link.png").symlink_to(outside_image(ctx))
    return with_rows(("link.png", "a"))


def symlinked_folder(ctx: Ctx) -> str:
    outside_image(ctx)
    (ctx.images / "shared").symlink_to(ctx.outside, target_is_directory=True)
    return with_rows(("shared/secret.png", "a"))


UNICODE_NAMES = ("café ñ.png", "日本 語/猫 1.png", "two  spaces  .png", "emoji 🐈.png")


def unicode_paths(ctx: Ctx) -> str:
    names = UNICODE_NAMES
    for name in names:
        (ctx.images / name).parent.mkdir(parents=True, exist_ok=True)
        Image.new("L", (8, 8), 60).save(ctx.images / name)
    return with_rows(*[(n, "b") for n in names])


def quoted_commas(ctx: Ctx) -> str:
    Image.new("L", (8, 8), 70).save(ctx.images / "cat, sitting.png")
    return with_rows() + '"cat, sitting.png",c\n'


def non_utf8(ctx: Ctx) -> bytes:
    Image.new("L", (8, 8), 70).save(ctx.images / "café.png")
    return with_rows().encode() + "café.png,a\n".encode("latin-1")


def unterminated_quote(ctx: Ctx) -> str:
    """Line 6 opens a quote that is never closed: every later row would vanish into one label."""
    lines = with_rows().splitlines(keepends=True)
    lines[5] = 'img4.png,"b\n'
    return "".join(lines)


LONG_NAME = "x" * 300 + ".png"  # longer than any file system allows for one name


def check_resized(report, meta) -> None:
    assert meta["image_size"] == 8


def check_paths(*names: str) -> Callable[[object, dict], None]:
    def check(report, meta) -> None:
        assert list(report["path"][N_BASE:]) == list(names)
    return check


# ------------------------------------------------------------------------------------------------ cases

CASES = [
    # Bad image files: fail by default, skipped with the given status under --on-bad-image skip.
    pytest.param(Case(lambda ctx: with_rows(("ghost.png", "a")), ("'ghost.png'", "not found"), EXTRA_LINE,
                      status="missing", bad_path="ghost.png"), id="missing-image"),
    pytest.param(Case(extra_image("empty.png", write(b"")), ("'empty.png'", "empty file (0 bytes)"),
                      EXTRA_LINE, status="empty", bad_path="empty.png"), id="zero-byte-image"),
    pytest.param(Case(extra_image("cut.png", truncated("PNG")), ("'cut.png'", "cannot decode image"), EXTRA_LINE,
                      status="corrupt", bad_path="cut.png"), id="truncated-png"),
    pytest.param(Case(extra_image("cut.jpg", truncated("JPEG")), ("'cut.jpg'", "cannot decode image"), EXTRA_LINE,
                      status="corrupt", bad_path="cut.jpg"), id="truncated-jpeg"),
    pytest.param(Case(extra_image("garbled.png", corrupt_png), ("'garbled.png'", "cannot decode image"),
                      EXTRA_LINE, status="corrupt", bad_path="garbled.png"), id="corrupt-png-bytes"),
    pytest.param(Case(extra_image("notes.png", write("just some notes\n")),
                      ("'notes.png'", "not a recognised image file"), EXTRA_LINE, status="not_image",
                      bad_path="notes.png"), id="text-named-png"),
    pytest.param(Case(extra_image("notes.jpg", write("<html>not a photo</html>\n")),
                      ("'notes.jpg'", "not a recognised image file"), EXTRA_LINE, status="not_image",
                      bad_path="notes.jpg"), id="text-named-jpg"),
    pytest.param(Case(bomb, ("'bomb.png'", "too large to decode safely", "over 1,000 pixels"), EXTRA_LINE,
                      status="too_large", bad_path="bomb.png"), id="decompression-bomb"),
    pytest.param(Case(bomb_under_twice_the_limit, ("'bomb.png'", "too large to decode safely", "over 3,000 pixels"),
                      EXTRA_LINE, status="too_large", bad_path="bomb.png"), id="decompression-bomb-warned"),
    pytest.param(Case(lambda ctx: with_rows((LONG_NAME, "a")), (f"'{LONG_NAME}'", "not found"), EXTRA_LINE,
                      status="missing", bad_path=LONG_NAME), id="image-name-too-long"),
    # Unusual but valid images: succeed.
    pytest.param(Case(extra_image("rotated.jpg", exif_rotated), rows=13), id="exif-rotated-jpeg"),
    pytest.param(Case(extra_image("cmyk.jpg", saved(lambda: Image.new("CMYK", (8, 8), (0, 255, 255, 0)),
                                                    "CMYK")), rows=13), id="cmyk-jpeg"),
    pytest.param(Case(extra_image("deep.png", saved(lambda: Image.fromarray(
        (np.arange(64, dtype=np.uint16) * 1000).reshape(8, 8)), "I;16")), rows=13), id="16-bit-png"),
    pytest.param(Case(extra_image("alpha.png", saved(lambda: Image.new("RGBA", (8, 8), (255, 0, 0, 128)),
                                                     "RGBA")), rows=13), id="rgba-png"),
    pytest.param(Case(extra_image("palette.png", saved(lambda: Image.fromarray(noise(8), "RGB").convert("P"),
                                                       "P")), rows=13), id="palette-png"),
    pytest.param(Case(extra_image("palette_t.png", saved(lambda: Image.new("P", (8, 8), 0), "P", transparency=0)),
                      rows=13), id="palette-png-transparent"),
    pytest.param(Case(extra_image("huge.png", saved(lambda: Image.fromarray(
        np.tile(np.arange(3000, dtype=np.uint8), (3000, 1)), "L"))), rows=13, check=check_resized),
        id="very-large-image"),
    pytest.param(Case(extra_image("dot.png", saved(lambda: Image.new("RGB", (1, 1), (5, 6, 7)))), rows=13),
                 id="one-pixel-image"),
    pytest.param(Case(extra_image("really_png.jpg", saved(lambda: Image.new("L", (8, 8), 3), format="PNG")),
                      rows=13), id="png-bytes-named-jpg"),
    # CSV structure.
    pytest.param(Case(lambda ctx: "", ("labels CSV is empty",)), id="csv-empty-file"),
    pytest.param(Case(lambda ctx: "\n  \n\n", ("labels CSV is empty",)), id="csv-blank-lines-only"),
    pytest.param(Case(lambda ctx: "path,label\n", ("header but no rows",), 1), id="csv-header-only"),
    pytest.param(Case(lambda ctx: table(BASE, header=("picture", "label")), ("no path column", "--path-col"), 1),
                 id="csv-missing-path-column"),
    pytest.param(Case(lambda ctx: table(BASE, header=("path", "tag")), ("no label column", "--label-col"), 1),
                 id="csv-missing-label-column"),
    pytest.param(Case(lambda ctx: "".join(f"{p},{lab}\n" for p, lab in BASE),
                      ("no header: the first line names an image (['img0.png', 'a'])", "path,label"), 1),
                 id="csv-without-header"),
    pytest.param(Case(lambda ctx: "path,label,path\n" + "".join(f"{p},{lab},x\n" for p, lab in BASE),
                      ("column 'path' appears twice",), 1), id="csv-duplicate-header"),
    pytest.param(Case(raw("img0.png,a,oops\n"), ("3 fields where the header has 2",), EXTRA_LINE),
                 id="csv-row-with-extra-field"),
    pytest.param(Case(raw("img0.png\n"), ("1 field where the header has 2",), EXTRA_LINE),
                 id="csv-row-with-missing-field"),
    pytest.param(Case(lambda ctx: b"\xef\xbb\xbf" + with_rows().encode(), rows=N_BASE), id="csv-bom"),
    pytest.param(Case(lambda ctx: table(BASE, delimiter=";"), rows=N_BASE), id="csv-semicolon"),
    pytest.param(Case(lambda ctx: table(BASE, delimiter="\t"), rows=N_BASE), id="csv-tab"),
    pytest.param(Case(lambda ctx: with_rows().replace("\n", "\r\n"), rows=N_BASE), id="csv-crlf"),
    pytest.param(Case(non_utf8, ("not UTF-8 text (byte 0xe9, probably Latin-1", 'save it as UTF-8 ("CSV UTF-8"'),
                      EXTRA_LINE), id="csv-not-utf8"),
    pytest.param(Case(lambda ctx: with_rows().encode("utf-16"), ('UTF-16 text (Excel\'s "Unicode Text"), not UTF-8',)),
                 id="csv-utf16"),
    pytest.param(Case(unterminated_quote, ("unterminated quoted field",), 6), id="csv-unterminated-quote"),
    # CSV cells.
    pytest.param(Case(replacing(3, ("img3.png", "")), ("empty label", "for image 'img3.png'", "(1 row)"), 5),
                 id="csv-empty-label"),
    pytest.param(Case(replacing(3, ("img3.png", "   ")), ("empty label",), 5), id="csv-blank-label"),
    pytest.param(Case(replacing(3, ("", "a")), ("empty path",), 5), id="csv-empty-path"),
    pytest.param(Case(lambda ctx: with_rows(("img0.png", "b")),
                      ("'img0.png' is listed twice with different labels", "'a' on line 2", "'b' here"),
                      EXTRA_LINE), id="csv-duplicate-conflicting-labels"),
    pytest.param(Case(lambda ctx: with_rows(("./img4.png", "a")), ("listed twice", "on line 6"), EXTRA_LINE),
                 id="csv-duplicate-alias-conflicting-labels"),
    pytest.param(Case(lambda ctx: with_rows(("img0.png", "a")), rows=N_BASE, line=EXTRA_LINE,
                      warning=("'img0.png' repeats line 2 with the same label", "1 repeated row(s) ignored")),
                 id="csv-duplicate-identical-rows"),
    pytest.param(Case(quoted_commas, rows=13, check=check_paths("cat, sitting.png")), id="csv-quoted-comma-path"),
    pytest.param(Case(unicode_paths, rows=N_BASE + 4, check=check_paths(*UNICODE_NAMES)),
                 id="csv-unicode-and-spaces"),
    pytest.param(Case(extra_image("solo.png", saved(lambda: Image.new("L", (8, 8), 128)), label="d"), rows=13),
                 id="class-with-single-sample"),
    pytest.param(Case(lambda ctx: table([(p, "a") for p, _ in BASE]), ("need at least two classes",)),
                 id="only-one-class"),
    # Paths that leave the image folder.
    pytest.param(Case(absolute, ("absolute path", "is outside the image folder"), EXTRA_LINE), id="path-absolute"),
    pytest.param(Case(lambda ctx: with_rows(("C:\\data\\img0.png", "a")), ("absolute path",), EXTRA_LINE),
                 id="path-drive-letter"),
    pytest.param(Case(dotdot, ("'../outside/secret.png' escapes the image folder",), EXTRA_LINE), id="path-dotdot"),
    pytest.param(Case(lambda ctx: with_rows(("img0.png/../../outside/secret.png", "a")), ("escapes",), EXTRA_LINE),
                 id="path-dotdot-after-segment"),
    pytest.param(Case(lambda ctx: with_rows(("..\\outside\\secret.png", "a")), ("escapes",), EXTRA_LINE),
                 id="path-backslash-dotdot"),
    pytest.param(Case(lambda ctx: with_rows(("sub/../img0.png", "a")),
                      ("'sub/../img0.png' has a '..' component, which paths may not have; write it as 'img0.png'",),
                      EXTRA_LINE), id="path-dotdot-that-stays-inside"),
    # written by hand: Python 3.10's csv writer refuses a NUL
    pytest.param(Case(lambda ctx: table(BASE) + "img\x00.png,a\n", ("contains a NUL character",), EXTRA_LINE),
                 id="path-nul-byte"),
    pytest.param(Case(symlinked_file, ("'link.png' resolves outside the image folder",), EXTRA_LINE),
                 id="path-symlink-file-outside"),
    pytest.param(Case(symlinked_folder, ("'shared/secret.png' resolves outside",), EXTRA_LINE),
                 id="path-symlink-folder-outside"),
]

SCAN_OPTIONS = ("--epochs", "1", "--device", "cpu", "--quiet", "--seed", "0", "--workers", "1")


@pytest.fixture()
def ctx(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Ctx:
    images = tmp_path / "data" / "images"
    names = write_images(images, n=N_BASE)
    assert names == [p for p, _ in BASE]
    outside = tmp_path / "data" / "outside"
    outside.mkdir()
    (tmp_path / "out").mkdir()
    return Ctx(images=images, csv=tmp_path / "data" / "labels.csv", outside=outside, monkeypatch=monkeypatch)


def run_scan(ctx: Ctx, out: Path, *extra: str):
    return invoke("scan", ctx.images, ctx.csv, "-o", out, *SCAN_OPTIONS, *extra)


@pytest.mark.parametrize("case", CASES)
def test_malformed_input(ctx: Ctx, case: Case):
    contents = case.build(ctx)
    ctx.csv.write_bytes(contents if isinstance(contents, bytes) else contents.encode("utf-8"))
    out = ctx.csv.parent.parent / "out" / "report.parquet"
    result = run_scan(ctx, out)

    if case.error:
        where = f"{ctx.csv}:{case.line}: " if case.line is not None else f"{ctx.csv}: "
        line = assert_user_error(result, out, *case.error)
        assert line.startswith(f"error: {where}"), line
        assert list(out.parent.iterdir()) == [], "output folder must stay empty (no temp files, no checkpoint)"
        if case.status is None:
            return
        # The same bad image under --on-bad-image skip: scanned anyway, listed with its status.
        result = run_scan(ctx, out, "--on-bad-image", "skip", "--json")
        assert result.exit_code == 0, (result.output, result.exception)
        assert stderr_of(result) == ""
        summary = json.loads(result.stdout)
        assert summary["n_skipped"] == 1 and summary["skipped_by_status"] == {case.status: 1}
        assert summary["skipped_examples"] == [{"path": case.bad_path, "status": case.status}]
        assert summary["n_samples"] == N_BASE
        report, meta = read_report(out)
        assert len(report) == N_BASE + 1
        assert report["path"].tolist() == [p for p, _ in BASE] + [case.bad_path]
        bad = report["path"] == case.bad_path
        assert report.loc[bad, "status"].tolist() == [case.status]
        assert (report.loc[~bad, "status"] == "ok").all()
        assert report.loc[bad, "is_suspect"].tolist() == [False]
        assert report.loc[bad, "rank"].isna().all() and report.loc[~bad, "rank"].notna().all()
        assert [s["path"] for s in meta["skipped"]] == [case.bad_path]
        assert [s["line"] for s in meta["skipped"]] == [case.line]
        assert sorted(p.name for p in out.parent.iterdir()) == ["report.parquet"]
        return

    assert result.exit_code == 0, (result.output, result.exception)
    err = stderr_of(result)
    if not case.warning:
        assert err == ""
    else:
        lines = err.strip().splitlines()
        assert len(lines) == 1, err
        assert lines[0].startswith(f"warning: {ctx.csv}:{case.line}: "), lines[0]
        for fragment in case.warning:
            assert fragment in lines[0], (fragment, lines[0])
    report, meta = read_report(out)
    assert len(report) == case.rows and meta["n_samples"] == case.rows
    assert (report["status"] == "ok").all()
    assert sorted(p.name for p in out.parent.iterdir()) == ["report.parquet"]
    if case.check is not None:
        case.check(report, meta)


def test_corpus_size():
    assert len(CASES) >= 35
    assert len({c.id for c in CASES}) == len(CASES)
