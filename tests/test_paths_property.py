"""Property tests of ``resolve_inside``: whatever path string a labels CSV holds, the result never leaves the root.

The root holds real files and folders, symlinks that stay inside it, symlinks that point outside it and a
symlink loop; generated paths are built from those names as well as arbitrary segments, so they really walk
through the links.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from noiseaudit.data.source import resolve_inside, root_relative
from noiseaudit.errors import InputError

ORIGIN = "labels.csv"
OUT_LINKS = ("out_dir", "inner/deep_out", "secret.png")  # symlinks inside the root pointing outside it
IN_LINKS = ("alias_dir", "alias.png")  # symlinks that stay inside
EXISTING = ("inner", "inner/a.png", "b.png", "loop") + OUT_LINKS + IN_LINKS


@pytest.fixture(scope="module")
def tree(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """(real root, outside folder); the root is given to resolve_inside as its real path, as the loader does."""
    base = Path(os.path.realpath(tmp_path_factory.mktemp("paths")))
    root, outside = base / "root", base / "outside"
    (root / "inner").mkdir(parents=True)
    outside.mkdir()
    for f in (root / "inner" / "a.png", root / "b.png", outside / "secret.png"):
        f.write_bytes(b"")
    (outside / "sub").mkdir()
    (root / "out_dir").symlink_to(outside, target_is_directory=True)
    (root / "inner" / "deep_out").symlink_to("../../outside", target_is_directory=True)  # relative link
    (root / "secret.png").symlink_to(outside / "secret.png")
    (root / "alias_dir").symlink_to("inner", target_is_directory=True)
    (root / "alias.png").symlink_to(root / "inner" / "a.png")
    (root / "loop").symlink_to("loop")
    return root, outside


def inside(root: Path, path: Path) -> bool:
    real = os.path.realpath(path)
    return os.path.commonpath([str(root), real]) == str(root)


safe_char = st.characters(categories=("L", "N"), exclude_characters="\x00") | st.sampled_from(list(" -_"))
safe_segment = st.text(safe_char, min_size=1, max_size=8)
any_segment = (safe_segment
               | st.sampled_from(["..", ".", "", "...", " ..", ".. ", "..\u2024", "~", "C:", "x:y", "nul\x00.png"])
               | st.sampled_from([name.split("/")[-1] for name in EXISTING])
               | st.text(st.characters(exclude_categories=("Cs",)), max_size=6))
separator = st.sampled_from(["/", "\\", "//", "/./"])
prefix = st.sampled_from(["", "", "", "/", "\\", "//", "\\\\server\\share\\", "C:", "C:\\", "c:/", "Z:", "./",
                          "inner/", "alias_dir/", "out_dir/", "inner/deep_out/"])


@st.composite
def relative_paths(draw, segments=any_segment) -> str:
    parts = draw(st.lists(segments, min_size=1, max_size=6))
    text = parts[0]
    for part in parts[1:]:
        text += draw(separator) + part
    return draw(prefix) + text


def components(path: str) -> list[str]:
    return re.split(r"[/\\]", path)


def is_absolute(path: str) -> bool:
    return path.startswith(("/", "\\")) or re.match(r"^[A-Za-z]:", path) is not None


@settings(max_examples=200, deadline=None)
@given(path=relative_paths())
def test_result_is_always_inside_the_real_root(tree, path):
    root, outside = tree
    try:
        resolved = resolve_inside(root, path, origin=ORIGIN, line=7)
    except InputError as exc:
        assert exc.path == ORIGIN and exc.line == 7
        assert str(exc).startswith(f"{ORIGIN}:7: ")
        return
    assert resolved.is_absolute()
    assert inside(root, resolved), (path, resolved)
    assert not inside(outside, resolved)
    assert str(resolved) == os.path.realpath(resolved)  # symlinks already followed


@settings(max_examples=200, deadline=None)
@given(path=relative_paths())
def test_dotdot_components_and_absolute_paths_are_always_refused(tree, path):
    root, _ = tree
    if ".." in components(path) or is_absolute(path) or "\x00" in path:
        with pytest.raises(InputError) as info:
            resolve_inside(root, path, origin=ORIGIN, line=3)
        assert info.value.line == 3


@settings(max_examples=200, deadline=None)
@given(parts=st.lists(safe_segment, min_size=1, max_size=5), backslashes=st.booleans(),
       dot_prefix=st.booleans())
def test_plain_relative_path_resolves_to_root_joined_with_it(tree, parts, backslashes, dot_prefix):
    root, _ = tree
    if parts[0] in {"out_dir", "secret.png", "alias_dir", "alias.png", "loop"}:
        parts = ["x" + parts[0], *parts[1:]]  # no symlinks here; those have their own test
    if parts[0] == "inner" and len(parts) > 1 and parts[1] == "deep_out":
        parts[1] = "deep"
    posix = "/".join(parts)
    text = (posix.replace("/", "\\") if backslashes else posix)
    text = ("./" if dot_prefix else "") + text
    assert resolve_inside(root, text, origin=ORIGIN, line=2) == root.joinpath(*parts)


@settings(max_examples=200, deadline=None)
@given(link=st.sampled_from(OUT_LINKS), tail=st.lists(safe_segment | st.just("."), max_size=4),
       backslashes=st.booleans(), through_alias=st.booleans(), dot_prefix=st.booleans())
def test_any_path_through_a_symlink_pointing_outside_is_refused(tree, link, tail, backslashes, through_alias,
                                                                 dot_prefix):
    root, _ = tree
    if link.endswith(".png"):
        tail = []  # a file link: nothing below it
    if through_alias and link.startswith("inner/"):
        link = "alias_dir/" + link.removeprefix("inner/")  # an inside link, then the outside one
    text = "/".join([link, *tail])
    text = ("./" if dot_prefix else "") + (text.replace("/", "\\") if backslashes else text)
    with pytest.raises(InputError, match="resolves outside the image folder") as info:
        resolve_inside(root, text, origin=ORIGIN, line=9)
    assert info.value.line == 9


@pytest.mark.parametrize(("path", "target"), [
    ("alias.png", "inner/a.png"),
    ("alias_dir/a.png", "inner/a.png"),
    ("alias_dir\\a.png", "inner/a.png"),
    ("./inner/./a.png", "inner/a.png"),
    ("inner//a.png", "inner/a.png"),
])
def test_symlinks_that_stay_inside_resolve_to_their_target(tree, path, target):
    root, _ = tree
    assert resolve_inside(root, path, origin=ORIGIN, line=2) == root / target


# Absolute paths in a labels CSV (issue 18, item 5): accepted when they lie inside the image folder and stored
# relative to it; the loader runs root_relative, then resolve_inside, on every path.


def load_path(root: Path, path: str, given_root: str | None = None) -> tuple[str, Path]:
    stored = root_relative(root, path, given_root=given_root, origin=ORIGIN, line=5)
    return stored, resolve_inside(root, stored, origin=ORIGIN, line=5)


@settings(max_examples=300, deadline=None)
@given(path=relative_paths(), absolute=st.booleans(), via_link=st.booleans())
def test_an_accepted_path_is_stored_relative_and_resolves_inside(tree, path, absolute, via_link):
    root, outside = tree
    link = root.parent / "root_link"
    if via_link and not link.exists():
        link.symlink_to(root, target_is_directory=True)
    top = str(link if via_link else root)
    text = f"{top}/{path}" if absolute else path
    try:
        stored, resolved = load_path(root, text, given_root=top)
    except InputError as exc:
        assert exc.line == 5 and str(exc).startswith(f"{ORIGIN}:5: ")
        return
    assert not is_absolute(stored)
    assert inside(root, resolved) and not inside(outside, resolved)


@settings(max_examples=200, deadline=None)
@given(tail=st.lists(safe_segment, min_size=1, max_size=4), backslashes=st.booleans())
def test_absolute_paths_outside_the_root_are_always_refused(tree, tail, backslashes):
    root, outside = tree
    for base in (outside, root.parent, Path("/etc")):
        if base == root.parent and tail[0] in (root.name, "root_link"):
            continue  # that is the root itself
        text = "/".join([str(base), *tail])
        text = text.replace("/", "\\") if backslashes else text
        with pytest.raises(InputError, match="outside the image folder|escapes") as info:
            load_path(root, text)
        assert info.value.line == 5


@settings(max_examples=200, deadline=None)
@given(parts=st.lists(safe_segment, min_size=1, max_size=5), via_link=st.booleans())
def test_absolute_path_inside_is_stored_as_the_relative_path(tree, parts, via_link):
    root, _ = tree
    if parts[0] in {"out_dir", "secret.png", "alias_dir", "alias.png", "loop", "inner"}:
        parts = ["x" + parts[0], *parts[1:]]  # plain names: links have their own tests
    link = root.parent / "root_link"
    if via_link and not link.exists():
        link.symlink_to(root, target_is_directory=True)
    top = link if via_link else root
    stored, resolved = load_path(root, "/".join([str(top), *parts]), given_root=str(top))
    assert stored == "/".join(parts) and resolved == root.joinpath(*parts)


def test_absolute_path_through_an_outside_link_below_the_root_is_refused(tree):
    root, _ = tree
    with pytest.raises(InputError, match="resolves outside the image folder"):
        load_path(root, f"{root}/out_dir/sub")
