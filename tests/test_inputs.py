"""Loading inputs through the Python API: labels CSVs, ImageFolder trees, every image mode, path safety.

All fixtures are tiny images generated into ``tmp_path``; nothing here trains a model.
"""

from __future__ import annotations

import builtins
import os
from pathlib import Path

import numpy as np
import pandas as pd
import PIL.Image
import pytest
import torch
from PIL import Image

from noiseaudit.data.dataset import as_gray, choose_image_size, load_dataset
from noiseaudit.data.images import GRAY_TOLERANCE, LUMA
from noiseaudit.data.source import LabeledSource, load_source
from noiseaudit.errors import InputError, NoiseAuditWarning

# ---------------------------------------------------------------------------------------------- helpers


def gray(path: Path, value: int = 100, size: tuple[int, int] = (8, 8)) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("L", size, value).save(path)
    return path


def write_csv(path: Path, text: str, *, bom: bool = False) -> Path:
    path.write_bytes((b"\xef\xbb\xbf" if bom else b"") + text.encode("utf-8"))
    return path


def csv_for(root: Path, names: list[str], labels: list | None = None) -> Path:
    """A labels.csv beside ``root`` listing ``names`` with alternating labels a/b (or the given ones)."""
    labels = labels if labels is not None else ["ab"[i % 2] for i in range(len(names))]
    rows = "".join(f"{n},{lab}\n" for n, lab in zip(names, labels))
    return write_csv(root.parent / "labels.csv", "path,label\n" + rows)


def load(root: Path, names: list[str], *, image_size: int | None = 8, labels: list | None = None):
    return load_dataset(load_source(root, csv_for(root, names, labels)), image_size=image_size, workers=1)


@pytest.fixture()
def four_images(tmp_path: Path) -> Path:
    root = tmp_path / "images"
    for i, name in enumerate(("a.png", "b.png", "c.png", "d.png")):
        gray(root / name, 40 * i)
    return root


# ------------------------------------------------------------------------------------------ labels CSV


@pytest.mark.parametrize(
    ("path_name", "label_name"),
    [
        ("path", "label"),
        ("file", "class"),
        ("filename", "target"),
        ("image", "category"),
        ("image_path", "y"),
        ("filepath", "label"),
        ("Path", "Label"),  # matching ignores case
        ("FILENAME", "Y"),
    ],
)
def test_csv_columns_are_auto_detected(four_images: Path, path_name: str, label_name: str):
    csv = write_csv(four_images.parent / "labels.csv",
                    f"{path_name},{label_name}\na.png,cat\nb.png,dog\nc.png,cat\nd.png,dog\n")
    src = load_source(four_images, csv)
    assert src.paths == ["a.png", "b.png", "c.png", "d.png"]
    assert src.labels == ["cat", "dog", "cat", "dog"]
    assert src.lines == [2, 3, 4, 5]
    assert list(src.extra.columns) == []
    assert len(src) == 4
    assert src.where(2) == (str(csv), 4)


def test_label_column_is_found_when_it_comes_first(four_images: Path):
    csv = write_csv(four_images.parent / "labels.csv", "target,notes,file\n1,x,a.png\n2,y,b.png\n")
    src = load_source(four_images, csv)
    assert src.paths == ["a.png", "b.png"]
    assert src.labels == [1, 2]
    assert list(src.extra.columns) == ["notes"]


def test_explicit_columns_override_auto_detection(four_images: Path):
    # "path"/"label" would be auto-detected, but point at the wrong things; the explicit names win.
    csv = write_csv(four_images.parent / "labels.csv",
                    "path,label,img,annot\nzzz.png,wrong,a.png,cat\nyyy.png,wrong,b.png,dog\n")
    src = load_source(four_images, csv, path_col="img", label_col="annot")
    assert src.paths == ["a.png", "b.png"]
    assert src.labels == ["cat", "dog"]
    # The unused auto-detectable columns are carried as extras.
    assert list(src.extra.columns) == ["path", "label"]
    assert list(src.extra["path"]) == ["zzz.png", "yyy.png"]


def test_explicit_column_that_does_not_exist_is_an_input_error(four_images: Path):
    csv = write_csv(four_images.parent / "labels.csv", "path,label\na.png,cat\nb.png,dog\n")
    with pytest.raises(InputError) as info:
        load_source(four_images, csv, label_col="species")
    assert info.value.line == 1 and info.value.path == str(csv)
    assert "'species'" in str(info.value) and f"{csv}:1" in str(info.value)
    with pytest.raises(InputError, match="no path column 'img'"):
        load_source(four_images, csv, path_col="img")


def test_a_named_column_is_found_whatever_its_letter_case(four_images: Path):
    """--label-col label on a 'Label' column was 'no label column', where the automatic detection ignores case."""
    csv = write_csv(four_images.parent / "labels.csv", "File Name,Label\na.png,cat\nb.png,dog\n")
    source = load_source(four_images, csv, path_col="file name", label_col="label")
    assert source.labels == ["cat", "dog"] and source.label_col == "Label"


def test_same_column_for_path_and_label_is_refused(four_images: Path):
    csv = write_csv(four_images.parent / "labels.csv", "path,label\na.png,cat\nb.png,dog\n")
    with pytest.raises(InputError, match="same column"):
        load_source(four_images, csv, path_col="path", label_col="path")


def test_extra_columns_are_carried_with_natural_types(four_images: Path):
    csv = write_csv(
        four_images.parent / "labels.csv",
        "path,label,verified,mixed_bool,count,zero_one,score,note\n"
        "a.png,cat,true,True,3,1,0.5,hello\n"
        "b.png,dog,false,0,-7,0,1.25,world\n"
        "c.png,cat,TRUE,1,12,1,2,\n"
        "d.png,dog,False,false,0,0,-3.5,x y\n",
    )
    src = load_source(four_images, csv)
    extra = src.extra
    assert list(extra.columns) == ["verified", "mixed_bool", "count", "zero_one", "score", "note"]
    assert len(extra) == 4
    assert extra["verified"].dtype == bool
    assert list(extra["verified"]) == [True, False, True, False]
    assert extra["mixed_bool"].dtype == bool
    assert list(extra["mixed_bool"]) == [True, False, True, False]
    assert extra["count"].dtype == np.int64
    assert list(extra["count"]) == [3, -7, 12, 0]
    # Only 0/1 and no true/false word: an integer column, not a bool one.
    assert extra["zero_one"].dtype == np.int64
    assert list(extra["zero_one"]) == [1, 0, 1, 0]
    assert extra["score"].dtype == np.float64
    assert list(extra["score"]) == [0.5, 1.25, 2.0, -3.5]
    assert not pd.api.types.is_numeric_dtype(extra["note"]) and not pd.api.types.is_bool_dtype(extra["note"])
    assert list(extra["note"]) == ["hello", "world", "", "x y"]


def test_string_labels_keep_text_and_sort_lexicographically(four_images: Path):
    src = load_source(four_images, csv_for(four_images, ["a.png", "b.png", "c.png", "d.png"],
                                            ["zebra", " apple ", "mango", "apple"]))
    assert src.labels == ["zebra", "apple", "mango", "apple"]  # stripped
    data = load_dataset(src, image_size=8, workers=1)
    assert data.classes == ["apple", "mango", "zebra"]
    assert data.targets.tolist() == [2, 0, 1, 0]
    assert data.targets.dtype == torch.int64


def test_int_labels_are_ints_and_sort_numerically(four_images: Path):
    src = load_source(four_images, csv_for(four_images, ["a.png", "b.png", "c.png", "d.png"], [10, 9, 2, 10]))
    assert src.labels == [10, 9, 2, 10]
    assert all(type(v) is int for v in src.labels)
    data = load_dataset(src, image_size=8, workers=1)
    assert data.classes == [2, 9, 10]  # not ["10", "2", "9"]
    assert data.targets.tolist() == [2, 1, 0, 2]


def test_mixed_text_and_numbers_are_string_labels(four_images: Path):
    src = load_source(four_images, csv_for(four_images, ["a.png", "b.png", "c.png"], ["10", "cat", "9"]))
    assert src.labels == ["10", "cat", "9"]
    data = load_dataset(src, image_size=8, workers=1)
    assert data.classes == ["10", "9", "cat"]


@pytest.mark.parametrize("explicit", [False, True])
def test_bom_prefixed_csv(four_images: Path, explicit: bool):
    csv = write_csv(four_images.parent / "labels.csv", "path,label\na.png,cat\nb.png,dog\n", bom=True)
    assert csv.read_bytes().startswith(b"\xef\xbb\xbfpath")
    kwargs = {"path_col": "path", "label_col": "label"} if explicit else {}
    src = load_source(four_images, csv, **kwargs)
    assert src.paths == ["a.png", "b.png"]
    assert src.labels == ["cat", "dog"]
    assert src.lines == [2, 3]


def test_csv_paths_in_subfolders_and_backslashes(tmp_path: Path):
    root = tmp_path / "images"
    gray(root / "sub" / "a.png", 10)
    gray(root / "sub" / "deeper" / "b.png", 200)
    csv = write_csv(tmp_path / "labels.csv", "path,label\nsub/a.png,x\nsub\\deeper\\b.png,y\n")
    data = load_dataset(load_source(root, csv), image_size=8, workers=1)
    assert data.inputs[:, 0, 0, 0].tolist() == [10, 200]


# ------------------------------------------------------------------------------------------ ImageFolder


def test_image_folder_layout_ignores_hidden_and_non_image_files(tmp_path: Path):
    root = tmp_path / "tree"
    gray(root / "cat" / "c1.png", 10)
    gray(root / "cat" / "c2.jpg", 20)
    gray(root / "cat" / "nested" / "c3.png", 30)
    gray(root / "dog" / "d1.PNG", 40)
    gray(root / "dog" / "d2.jfif", 45)  # a JPEG as browsers save one
    gray(root / "cat" / ".hidden.png", 50)  # hidden file
    gray(root / "dog" / "._d1.png", 60)  # macOS resource fork
    gray(root / ".trash" / "t.png", 70)  # hidden class folder
    gray(root / "stray.png", 80)  # not inside a class folder
    (root / "dog" / "notes.txt").write_text("not an image")
    (root / "dog" / ".DS_Store").write_bytes(b"\0\0\0\1Bud1")
    (root / "empty_class").mkdir()
    with pytest.warns(NoiseAuditWarning) as said:
        src = load_source(root)
    assert [str(w.message).split(": ", 1)[1] for w in said] == [  # the hidden ones without a word
        "1 file(s) without an image extension (.bmp, .gif, .jfif, .jpe, .jpeg, .jpg, .png, .tif, .tiff, .webp) "
        "left out: 'dog/notes.txt'", "1 class folder(s) without an image, so not classes: 'empty_class'",
        "1 file(s) outside the class folders left out: 'stray.png'"]
    assert src.paths == ["cat/c1.png", "cat/c2.jpg", "cat/nested/c3.png", "dog/d1.PNG", "dog/d2.jfif"]
    assert src.labels == ["cat", "cat", "cat", "dog", "dog"]
    assert src.lines == [None] * 5
    assert src.origin == str(root.resolve())
    assert len(src.extra) == 5 and list(src.extra.columns) == []
    data = load_dataset(src, image_size=8, workers=1)
    assert data.classes == ["cat", "dog"]
    assert data.targets.tolist() == [0, 0, 0, 1, 1]
    assert data.inputs.shape == (5, 1, 8, 8)


def test_image_folder_ignores_hidden_folders_inside_classes(tmp_path: Path):
    root = tmp_path / "tree"
    for cls in ("cat", "dog"):
        gray(root / cls / "a.png")
        gray(root / cls / ".ipynb_checkpoints" / "a-checkpoint.png")
    assert load_source(root).paths == ["cat/a.png", "dog/a.png"]


def test_image_folder_passes_over_what_systems_and_tools_leave_in_folders(tmp_path: Path):
    """Thumbs.db and desktop.ini each drew a 'without an image extension' warning; a Synology NAS's @eaDir holds
    real JPEG thumbnails, which scanned as samples; a macOS zip's __MACOSX became a class."""
    root = tmp_path / "tree"
    for cls in ("cat", "dog"):
        gray(root / cls / "a.png")
        (root / cls / "Thumbs.db").write_bytes(b"\xd0\xcf\x11\xe0")
        (root / cls / "desktop.ini").write_text("[.ShellClassInfo]")
        gray(root / cls / "@eaDir" / "a.png" / "SYNOPHOTO_THUMB_S.jpg")
    gray(root / "__MACOSX" / "cat" / "a.png")
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error")  # without a word
        assert load_source(root).paths == ["cat/a.png", "dog/a.png"]


def test_image_folder_numeric_class_names_sort_numerically(tmp_path: Path):
    root = tmp_path / "tree"
    for cls in ("10", "9", "2"):
        gray(root / cls / "x.png")
    src = load_source(root)
    assert src.labels == [10, 2, 9]  # folders are walked in name order
    assert load_dataset(src, image_size=8, workers=1).classes == [2, 9, 10]


def test_image_folder_without_class_folders_is_an_input_error(tmp_path: Path):
    root = tmp_path / "flat"
    gray(root / "a.png")
    with pytest.raises(InputError, match="no images found") as info:
        load_source(root)
    assert str(root.resolve()) in str(info.value)


def test_missing_image_folder_and_csv(tmp_path: Path):
    with pytest.raises(InputError, match="image folder not found") as info:
        load_source(tmp_path / "nope")
    assert info.value.path == str(tmp_path / "nope")
    (tmp_path / "imgs").mkdir()
    with pytest.raises(InputError, match="labels CSV not found") as info:
        load_source(tmp_path / "imgs", tmp_path / "labels.csv")
    assert info.value.path == str(tmp_path / "labels.csv")


# ------------------------------------------------------------------------------------ image modes/formats


def _rgba(color):
    return Image.new("RGBA", (8, 8), color)


def _palette(index: int, transparent: int | None = None):
    img = Image.new("P", (8, 8), index)
    img.putpalette([255, 0, 0, 0, 0, 255] + [0] * (256 * 3 - 6))
    if transparent is not None:
        img.info["transparency"] = transparent
    return img


def _i16(value: int):
    img = Image.fromarray(np.full((8, 8), value, dtype=np.uint16))
    assert img.mode.startswith("I;16")
    return img


# name, builder, save kwargs, expected top-left pixel (R, G, B), tolerance, mode Pillow reports on re-open
MODE_CASES = [
    ("l.png", lambda: Image.new("L", (8, 8), 77), {}, (77, 77, 77), 0, "L"),
    ("rgb.png", lambda: Image.new("RGB", (8, 8), (200, 30, 10)), {}, (200, 30, 10), 0, "RGB"),
    ("rgb.jpg", lambda: Image.new("RGB", (8, 8), (200, 30, 10)), {"quality": 95}, (200, 30, 10), 8, "RGB"),
    ("l.jpeg", lambda: Image.new("L", (8, 8), 77), {"quality": 95}, (77, 77, 77), 2, "L"),
    ("l.jfif", lambda: Image.new("L", (8, 8), 77), {"quality": 95}, (77, 77, 77), 2, "L"),  # left out of folders
    ("l.jpe", lambda: Image.new("L", (8, 8), 77), {"quality": 95}, (77, 77, 77), 2, "L"),
    ("rgb.bmp", lambda: Image.new("RGB", (8, 8), (200, 30, 10)), {}, (200, 30, 10), 0, "RGB"),
    ("l.bmp", lambda: Image.new("L", (8, 8), 77), {}, (77, 77, 77), 0, "L"),
    ("rgb.webp", lambda: Image.new("RGB", (8, 8), (200, 30, 10)), {"lossless": True}, (200, 30, 10), 0, "RGB"),
    ("lossy.webp", lambda: Image.new("RGB", (8, 8), (200, 30, 10)), {"quality": 90}, (200, 30, 10), 12, "RGB"),
    ("rgb.tif", lambda: Image.new("RGB", (8, 8), (200, 30, 10)), {}, (200, 30, 10), 0, "RGB"),
    ("l.tiff", lambda: Image.new("L", (8, 8), 77), {}, (77, 77, 77), 0, "L"),
    ("bilevel.png", lambda: Image.new("1", (8, 8), 1), {}, (255, 255, 255), 0, "1"),
    ("transparent.png", lambda: _rgba((255, 0, 0, 0)), {}, (255, 255, 255), 0, "RGBA"),
    ("half.png", lambda: _rgba((0, 0, 0, 128)), {}, (127, 127, 127), 1, "RGBA"),
    ("opaque.png", lambda: _rgba((0, 128, 0, 255)), {}, (0, 128, 0), 0, "RGBA"),
    ("transparent.webp", lambda: _rgba((255, 0, 0, 0)), {"lossless": True}, (255, 255, 255), 0, "RGBA"),
    ("transparent.tif", lambda: _rgba((255, 0, 0, 0)), {}, (255, 255, 255), 0, "RGBA"),
    ("palette.png", lambda: _palette(1), {}, (0, 0, 255), 0, "P"),
    ("palette_t.png", lambda: _palette(0, transparent=0), {"transparency": 0}, (255, 255, 255), 0, "P"),
    ("palette_opaque_entry.png", lambda: _palette(1, transparent=0), {"transparency": 0}, (0, 0, 255), 0, "P"),
    ("palette.bmp", lambda: _palette(0), {}, (255, 0, 0), 0, "P"),
    # an RGB or L PNG naming one transparent colour (tRNS) was not composited onto white as the rest are
    ("rgb_trns.png", lambda: Image.new("RGB", (8, 8), (200, 30, 10)), {"transparency": (200, 30, 10)},
     (255, 255, 255), 0, "RGB"),
    ("l_trns.png", lambda: Image.new("L", (8, 8), 77), {"transparency": 77}, (255, 255, 255), 0, "L"),
    ("i16_max.png", lambda: _i16(65535), {}, (255, 255, 255), 0, "I;16"),
    ("i16_mid.png", lambda: _i16(32896), {}, (128, 128, 128), 1, "I;16"),
    ("i16_zero.png", lambda: _i16(0), {}, (0, 0, 0), 0, "I;16"),
    ("i16_max.tif", lambda: _i16(65535), {}, (255, 255, 255), 0, "I;16"),
    # 12-bit sensor data in a 16-bit file was divided by 257 (4095 read as 15), and 8-bit data in one read as 0
    ("i16_12bit.png", lambda: _i16(2048), {}, (127, 127, 127), 1, "I;16"),
    ("i16_12bit.tif", lambda: _i16(4095), {}, (255, 255, 255), 0, "I;16"),
    ("i16_8bit.png", lambda: _i16(200), {}, (200, 200, 200), 0, "I;16"),
    ("f_nan.tif", lambda: Image.fromarray(np.full((8, 8), np.nan, dtype=np.float32), "F"), {}, (0, 0, 0), 0, "F"),
    ("la_clear.png", lambda: Image.new("LA", (8, 8), (0, 0)), {}, (255, 255, 255), 0, "LA"),
    ("la_opaque.png", lambda: Image.new("LA", (8, 8), (30, 255)), {}, (30, 30, 30), 0, "LA"),
    ("cmyk_white.jpg", lambda: Image.new("CMYK", (8, 8), (0, 0, 0, 0)), {"quality": 100}, (255, 255, 255), 3, "CMYK"),
    ("cmyk_red.jpg", lambda: Image.new("CMYK", (8, 8), (0, 255, 255, 0)), {"quality": 100}, (255, 0, 0), 10, "CMYK"),
    ("cmyk_black.jpg", lambda: Image.new("CMYK", (8, 8), (0, 0, 0, 255)), {"quality": 100}, (0, 0, 0), 10, "CMYK"),
]


@pytest.mark.parametrize(("name", "build", "save", "expected", "tol", "mode"), MODE_CASES,
                         ids=[c[0] for c in MODE_CASES])
def test_every_mode_and_format_decodes_to_expected_pixels(tmp_path: Path, name, build, save, expected, tol, mode):
    root = tmp_path / "images"
    root.mkdir()
    build().save(root / name, **save)
    with Image.open(root / name) as reopened:
        assert reopened.mode == mode or (mode == "I;16" and reopened.mode.startswith("I"))
    # A second, white image of another class: the dataset stays grey unless the image under test is colourful.
    gray(root / "other.png", 255)
    data = load(root, [name, "other.png"], image_size=8)
    assert data.inputs.dtype == torch.uint8
    colourful = len(set(expected)) > 1
    assert data.inputs.shape == (2, 3 if colourful else 1, 8, 8)
    assert data.channels == (3 if colourful else 1)
    pixels = data.inputs[0].to(torch.int16)
    want = torch.tensor(expected if colourful else expected[:1], dtype=torch.int16).view(-1, 1, 1)
    assert (pixels - want).abs().max().item() <= tol, pixels[:, 0, 0].tolist()
    assert data.inputs[1].eq(255).all()


def test_all_gray_dataset_has_one_channel_and_one_colour_image_makes_three(tmp_path: Path):
    root = tmp_path / "images"
    root.mkdir()
    Image.new("L", (8, 8), 10).save(root / "l.png")
    Image.new("L", (8, 8), 60).save(root / "l.jpg", quality=95)
    _i16(65535).save(root / "i16.png")
    Image.new("LA", (8, 8), (90, 255)).save(root / "la.png")
    Image.new("RGB", (8, 8), (120, 120, 120)).save(root / "gray_rgb.bmp")  # RGB file, grey pixels
    _palette(0, transparent=0).save(root / "p.png", transparency=0)  # transparent -> white
    names = ["l.png", "l.jpg", "i16.png", "la.png", "gray_rgb.bmp", "p.png"]

    data = load(root, names, image_size=8)
    assert data.inputs.shape == (6, 1, 8, 8)
    assert data.inputs.dtype == torch.uint8
    assert data.inputs[:, 0, 4, 4].tolist()[0] == 10
    assert data.inputs[2].eq(255).all() and data.inputs[5].eq(255).all()
    assert abs(int(data.inputs[1, 0, 4, 4]) - 60) <= 2

    Image.new("RGB", (8, 8), (250, 0, 0)).save(root / "red.png")
    data = load(root, [*names, "red.png"], image_size=8)
    assert data.inputs.shape == (7, 3, 8, 8)
    assert data.inputs[6, :, 0, 0].tolist() == [250, 0, 0]
    # Grey images are replicated across the three channels.
    assert data.inputs[0, :, 0, 0].tolist() == [10, 10, 10]
    assert data.inputs[2].eq(255).all()


def test_near_gray_pixels_from_lossy_codecs_read_as_one_channel(tmp_path: Path):
    # Lossy WebP leaves grey content 1 level apart between channels; that is still a grey dataset.
    root = tmp_path / "images"
    root.mkdir()
    ramp = np.tile(np.arange(0, 256, 4, dtype=np.uint8), (64, 1))
    Image.fromarray(ramp).convert("RGB").save(root / "ramp.webp", quality=50)
    Image.new("L", (64, 64), 200).save(root / "flat.png")
    with Image.open(root / "ramp.webp") as img:
        pixels = np.asarray(img.convert("RGB")).astype(int)
    assert 0 < (pixels.max(-1) - pixels.min(-1)).max() <= GRAY_TOLERANCE  # the case under test
    data = load(root, ["ramp.webp", "flat.png"], image_size=64)
    assert data.inputs.shape == (2, 1, 64, 64)
    luma = np.rint(pixels.astype(np.float32) @ np.asarray(LUMA, dtype=np.float32))
    assert np.array_equal(data.inputs[0, 0].numpy(), luma.astype(np.uint8))
    assert data.inputs[1].eq(200).all()


@pytest.mark.parametrize(("spread", "channels"), [(0, 1), (GRAY_TOLERANCE, 1), (GRAY_TOLERANCE + 1, 3)])
def test_as_gray_keeps_colour_beyond_the_tolerance(spread: int, channels: int):
    images = np.full((3, 4, 4, 3), 100, dtype=np.uint8)
    images[2, 1, 1] = (100, 100 + spread, 100)  # one pixel of one image decides
    out = as_gray(images, chunk=2)
    assert out.shape == (3, 4, 4, channels)
    if channels == 3:
        assert out is images
    elif spread == 0:
        assert np.array_equal(out[..., 0], images[..., 0])


def test_mixed_sizes_are_resized_to_image_size(tmp_path: Path):
    root = tmp_path / "images"
    sizes = [(8, 8), (20, 10), (5, 17), (30, 30), (1, 40)]
    names = []
    for i, size in enumerate(sizes):
        names.append(f"s{i}.png")
        gray(root / names[-1], 20 * (i + 1), size)
    data = load(root, names, image_size=12)
    assert data.image_size == 12
    assert data.inputs.shape == (5, 1, 12, 12)
    for i in range(len(sizes)):  # a uniform image stays uniform whatever the resize
        assert data.inputs[i].eq(20 * (i + 1)).all()


def test_image_size_below_four_is_refused(four_images: Path):
    with pytest.raises(InputError, match="at least 4"):
        load(four_images, ["a.png", "b.png"], image_size=3)


# ------------------------------------------------------------------------------------- default image size


@pytest.mark.parametrize(
    ("sides", "all_gray", "expected"),
    [
        ([8, 8, 8], True, 8),
        ([10, 20, 30], True, 20),
        ([16, 24], False, 20),  # median of an even count
        ([3, 3, 3], True, 8),  # clipped up
        ([100, 200], True, 64),  # grey clips at 64
        ([100, 200], False, 32),  # colour clips at 32
        ([28] * 5 + [500], True, 28),  # the median ignores an outlier
    ],
)
def test_choose_image_size(sides, all_gray, expected):
    size = choose_image_size(sides, all_gray)
    assert size == expected
    assert type(size) is int


@pytest.mark.parametrize(
    ("mode", "sizes", "expected", "channels"),
    [
        ("L", [(20, 20), (30, 40), (50, 12)], 20, 1),  # shorter sides 20, 30, 12 -> median 20
        ("L", [(100, 100), (90, 120)], 64, 1),
        ("L", [(4, 4), (5, 6)], 8, 1),
        ("RGB", [(100, 100), (90, 120)], 32, 3),
        ("RGB", [(12, 40), (16, 16), (40, 14)], 14, 3),
    ],
)
def test_default_image_size_comes_from_the_data(tmp_path: Path, mode, sizes, expected, channels):
    root = tmp_path / "images"
    root.mkdir()
    names = []
    for i, size in enumerate(sizes):
        names.append(f"x{i}.png")
        color = (10 * i, 200, 30) if mode == "RGB" else 10 * i
        Image.new(mode, size, color).save(root / names[-1])
    data = load(root, names, image_size=None)
    assert data.image_size == expected
    assert data.inputs.shape == (len(sizes), channels, expected, expected)


def test_rgb_files_with_gray_pixels_get_the_gray_size(tmp_path: Path):
    # RGB-mode files whose pixels are gray (scans, X-rays saved as RGB) are sized as the gray data
    # they are, by a sample of their pixels, and keep one channel.
    root = tmp_path / "images"
    root.mkdir()
    for i, name in enumerate(("a.png", "b.png", "c.png")):
        Image.new("RGB", (100, 100), (70 + i, 70, 70)).save(root / name)  # within GRAY_TOLERANCE
    data = load(root, ["a.png", "b.png", "c.png"], image_size=None)
    assert data.image_size == 64
    assert data.inputs.shape == (3, 1, 64, 64)


def test_gray_pixels_load_the_same_from_l_and_rgb_files(tmp_path: Path):
    # The same gray pixels give the same dataset whatever mode the files were saved in.
    rng = np.random.default_rng(0)
    loaded = []
    for mode in ("L", "RGB"):
        root = tmp_path / mode
        root.mkdir()
        for i in range(6):
            Image.fromarray(rng.integers(0, 256, (48, 40), dtype=np.uint8), "L").convert(mode).save(root / f"{i}.png")
        loaded.append(load(root, [f"{i}.png" for i in range(6)], image_size=None))
        rng = np.random.default_rng(0)
    assert loaded[0].image_size == loaded[1].image_size == 40
    assert torch.equal(loaded[0].inputs, loaded[1].inputs)


@pytest.mark.parametrize("sample", [256, 2])
def test_one_colour_image_keeps_the_colour_size(tmp_path: Path, monkeypatch, sample: int):
    # With 256 the sample draws all three images and sees the colour one. With 2 it draws the gray
    # two (rows 2 and 0), so they are decoded at the gray size, and then shrunk to the colour cap.
    monkeypatch.setattr("noiseaudit.data.dataset.GRAY_SAMPLE", sample)
    root = tmp_path / "images"
    root.mkdir()
    for i, name in enumerate(("a.png", "b.png", "c.png")):
        Image.new("RGB", (100, 100), (200, 40, 40) if i == 1 else (70, 70, 70)).save(root / name)
    data = load(root, ["a.png", "b.png", "c.png"], image_size=None)
    assert data.image_size == 32
    assert data.inputs.shape == (3, 3, 32, 32)
    assert data.inputs[1, :, 5, 5].tolist() == [200, 40, 40] and data.inputs[0, :, 5, 5].tolist() == [70, 70, 70]


def test_an_unreadable_image_has_its_own_status(four_images: Path, monkeypatch):
    # Root reads every file whatever its mode bits, so the refusal is simulated where Pillow opens it.
    real_open = PIL.Image.open

    def refuse(path, *args, **kwargs):
        if Path(path).name == "c.png":
            raise PermissionError(13, "Permission denied", str(path))
        return real_open(path, *args, **kwargs)

    monkeypatch.setattr(PIL.Image, "open", refuse)
    csv = csv_for(four_images, ["a.png", "b.png", "c.png", "d.png"])
    with pytest.raises(InputError) as info:
        load_dataset(load_source(four_images, csv), image_size=8, workers=1)
    assert str(info.value) == (f"{csv}:4: 'c.png': cannot read the file (permission denied); on_bad_image='skip' "
                               "leaves such images out and lists them in the report")
    data = load_dataset(load_source(four_images, csv), image_size=None, workers=1, on_bad_image="skip")
    assert [(b.row, b.status) for b in data.skipped] == [(2, "unreadable")]


# ------------------------------------------------------------------------------------------ path safety


@pytest.fixture()
def escape_setup(tmp_path: Path):
    """An image root with two good images, and a sentinel image outside it."""
    root = tmp_path / "root"
    gray(root / "a.png", 1)
    gray(root / "b.png", 2)
    sentinel = gray(tmp_path / "outside" / "secret.png", 3)
    return root, sentinel


@pytest.fixture()
def opened(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Every path passed to PIL.Image.open, builtins.open or os.open while the test runs."""
    seen: list[str] = []
    real_pil, real_open, real_os_open = PIL.Image.open, builtins.open, os.open

    def record(fp):
        if isinstance(fp, (str, bytes, os.PathLike)):
            seen.append(os.path.realpath(os.fsdecode(fp)))

    def pil_open(fp, *a, **k):
        record(fp)
        return real_pil(fp, *a, **k)

    def builtin_open(file, *a, **k):
        record(file)
        return real_open(file, *a, **k)

    def os_open(path, *a, **k):
        record(path)
        return real_os_open(path, *a, **k)

    monkeypatch.setattr(PIL.Image, "open", pil_open)
    monkeypatch.setattr(builtins, "open", builtin_open)
    monkeypatch.setattr(os, "open", os_open)
    return seen


def _escapes(root: Path, sentinel: Path) -> dict[str, str]:
    (root / "link.png").symlink_to(sentinel)
    return {
        "absolute": str(sentinel),
        "dotdot": "../outside/secret.png",
        "dotdot_inside_first": "a/../../outside/secret.png",
        "backslash_dotdot": "..\\outside\\secret.png",
        "symlink": "link.png",
        "drive_letter": "C:\\outside\\secret.png",
    }


@pytest.mark.parametrize("kind", ["absolute", "dotdot", "dotdot_inside_first", "backslash_dotdot", "symlink",
                                  "drive_letter"])
def test_csv_paths_escaping_the_root_are_refused_before_opening(escape_setup, opened, kind):
    root, sentinel = escape_setup
    bad = _escapes(root, sentinel)[kind]
    csv = write_csv(root.parent / "labels.csv", f"path,label\na.png,x\nb.png,y\n{bad},x\n")
    with pytest.raises(InputError) as info:
        src = load_source(root, csv)
        load_dataset(src, image_size=8, workers=1)
    assert info.value.line == 4
    assert f"{csv}:4" in str(info.value)
    message = str(info.value)
    if kind in ("absolute", "drive_letter"):
        assert "absolute" in message
    else:
        assert "outside" in message or "escapes" in message
    if "\\" in bad:  # as the file has it: repr doubled each backslash ('C:\\\\outside')
        assert f"'{bad}'" in message
    assert str(sentinel.resolve()) not in opened
    assert str(csv.resolve()) in opened  # the recorder does see opens


@pytest.mark.parametrize("kind", ["absolute", "dotdot", "symlink"])
def test_load_dataset_rechecks_paths_of_a_hand_built_source(escape_setup, opened, kind):
    root, sentinel = escape_setup
    bad = _escapes(root, sentinel)[kind]
    src = LabeledSource(root=root.resolve(), paths=["a.png", bad], labels=["x", "y"], lines=[2, 3],
                        origin="mine.csv")
    for image_size in (8, None):
        with pytest.raises(InputError, match="mine.csv:3"):
            load_dataset(src, image_size=image_size, workers=1)
    assert str(sentinel.resolve()) not in opened


def test_image_folder_symlink_out_of_root_is_refused(escape_setup, opened):
    root, sentinel = escape_setup
    (root / "cat").mkdir()
    (root / "dog").mkdir()
    gray(root / "cat" / "c.png")
    (root / "dog" / "d.png").symlink_to(sentinel)
    with pytest.raises(InputError, match="outside the image folder"):
        load_source(root)
    (root / "dog" / "d.png").unlink()
    (root / "dog" / "linked_dir").symlink_to(sentinel.parent, target_is_directory=True)
    gray(root / "dog" / "e.png")
    # a linked folder below a class is refused as a linked file is (it was left out without a word)
    with pytest.raises(InputError, match="'dog/linked_dir/secret.png' resolves outside the image folder"):
        load_source(root)
    assert str(sentinel.resolve()) not in opened


def test_image_folder_follows_links_that_stay_inside_and_warns_of_links_to_nothing(tmp_path: Path):
    """A linked subfolder's images were left out without a word, as was a link to nothing (a tester's finding)."""
    root = tmp_path / "images"
    gray(root / "cat" / "c.png")
    gray(root / "store" / "batch" / "d1.png")
    (root / "dog").mkdir()
    (root / "dog" / "batch").symlink_to(root / "store" / "batch", target_is_directory=True)
    (root / "dog" / "batch" / "up").symlink_to(root / "dog", target_is_directory=True)  # a loop, walked once
    (root / "cat" / "gone.png").symlink_to(tmp_path / "nowhere.png")
    with pytest.warns(NoiseAuditWarning) as caught:
        src = load_source(root)
    assert src.paths == ["cat/c.png", "dog/batch/d1.png", "store/batch/d1.png"]
    assert src.labels == ["cat", "dog", "store"]
    assert any("1 link(s) to a file that is not there left out: 'cat/gone.png'" in str(w.message) for w in caught)
    with pytest.warns(NoiseAuditWarning, match="'cat/gone.png'"):
        assert load_source(root, for_prediction=True).paths == src.paths


def test_symlinks_that_stay_inside_the_root_are_allowed(tmp_path: Path):
    real = tmp_path / "real"
    gray(real / "a.png", 11)
    gray(real / "sub" / "b.png", 22)
    (real / "alias.png").symlink_to(real / "sub" / "b.png")
    link_root = tmp_path / "link_root"
    link_root.symlink_to(real, target_is_directory=True)  # the root itself may be a symlink
    csv = write_csv(tmp_path / "labels.csv", "path,label\na.png,x\nalias.png,y\n./sub/b.png,y\n")
    with pytest.warns(NoiseAuditWarning, match=r"'alias.png' \(line 3\) and './sub/b.png' \(line 4\) are one "
                                               "file, with the same label"):
        data = load_dataset(load_source(link_root, csv), image_size=8, workers=1)
    assert data.inputs[:, 0, 0, 0].tolist() == [11, 22, 22]


def test_missing_and_undecodable_images_name_path_and_line(four_images: Path):
    csv = csv_for(four_images, ["a.png", "b.png", "ghost.png", "ghost2.png"])
    with pytest.raises(InputError) as info:
        load_dataset(load_source(four_images, csv), image_size=8, workers=1)
    msg = str(info.value)
    assert msg.startswith(f"{csv}:4: ") and "'ghost.png'" in msg and "(and 1 more)" in msg
    (four_images / "text.png").write_text("this is not a png\n")
    csv = csv_for(four_images, ["a.png", "b.png", "text.png"])
    for image_size in (8, None):
        with pytest.raises(InputError) as info:
            load_dataset(load_source(four_images, csv), image_size=image_size, workers=1)
        assert str(info.value).startswith(f"{csv}:4: 'text.png': ")
        assert "not a recognised image file" in str(info.value)


def test_huge_integer_extra_column_is_not_corrupted(four_images: Path):
    csv = write_csv(four_images.parent / "labels.csv",
                    "path,label,big_id\na.png,x,12345678901234567890\nb.png,y,1\n")
    extra = load_source(four_images, csv).extra
    assert str(extra["big_id"][0]) == "12345678901234567890"


def test_one_file_under_two_names_is_said_once(tmp_path: Path):
    """A symlink listed beside its target with another label trained as two samples without a word."""
    root = tmp_path / "images"
    for i, name in enumerate(("a.png", "b.png", "c.png", "d.png")):
        gray(root / name, 40 * i)
    (root / "link.png").symlink_to("a.png")
    csv = write_csv(tmp_path / "labels.csv", "path,label\na.png,cat\nb.png,dog\nc.png,cat\nd.png,dog\nlink.png,dog\n")
    with pytest.warns(NoiseAuditWarning) as said:
        data = load_dataset(load_source(root, csv), image_size=8, workers=1)
    assert len(data.targets) == 5 and [str(w.message) for w in said] == [
        f"{csv}: 1 sample(s) are a file listed under another name too (a symlink), 1 of them with another label; "
        "the first: 'a.png' (line 2) and 'link.png' (line 6) are one file, labelled 'cat' and 'dog'. Each name "
        "trains as a sample"]
