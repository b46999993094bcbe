"""Why an image a labels CSV names is not there: the likely slip, said in the error message.

Only the first missing file is examined, and only its own folder is listed, so the hint costs
one directory read however large the dataset is.
"""

from __future__ import annotations

import os
import re
import unicodedata
from pathlib import Path, PurePosixPath

from noiseaudit.data.source import IMAGE_EXTENSIONS

URL = re.compile(r"[A-Za-z][A-Za-z0-9+.-]+://")  # http://, https://, s3://, gs://... (not C:\ or C:/)


def missing_image_hint(root: Path, relative: str) -> str:
    """A short clause for a missing ``relative`` under ``root`` ("" when no likely slip is found).

    It recognises URLs, a folder named instead of an image, paths that repeat the image folder's own
    name, a different or missing file extension, and a difference in letter case or in Unicode form.
    """
    if URL.match(relative):
        return "; it is a URL: noiseaudit reads local files and downloads nothing (download the images, then list " \
               "their paths under the image folder)"
    rel = PurePosixPath(relative.replace("\\", "/"))
    parts = [p for p in rel.parts if p not in ("", ".")]
    if not parts:
        return ""
    if _is_folder(root.joinpath(*parts)):
        return "; that is a folder, not an image file"
    if len(parts) > 1 and parts[0] == root.name and root.joinpath(*parts[1:]).is_file():
        return (f"; the paths start with the folder's own name {root.name!r}: give its parent "
                f"({root.parent}) as the image folder")
    found = _walk_ignoring_case(root, parts[:-1])
    if found is None:
        return ""
    folder, name = found, parts[-1]
    entries = _names(folder)
    alike = [e for e in entries if _nfc(e).casefold() == _nfc(name).casefold() and (folder / e).is_file()]
    if alike:  # the same name but for letter case or Unicode form, in the file's name or its folders'
        there = _shown(root, folder / alike[0])
        if _nfc(there) == _nfc("/".join(parts)):
            return (f"; {there!r} exists, its accents written in another Unicode form (decomposed, as macOS "
                    "names files): the names print alike but differ; rename the files to the composed form "
                    "(convmv -r -f utf8 -t utf8 --nfc) or write the CSV in theirs")
        return f"; {there!r} exists: paths are case-sensitive here"
    stem = PurePosixPath(name).stem if PurePosixPath(name).suffix.lower() in IMAGE_EXTENSIONS else name
    other = sorted(e for e in entries if PurePosixPath(e).stem.casefold() == stem.casefold()
                   and PurePosixPath(e).suffix.lower() in IMAGE_EXTENSIONS and (folder / e).is_file())
    if other:
        lacks = "lack the file extension" if stem == name else "name another file extension"
        return f"; {_shown(root, folder / other[0])!r} exists: the CSV's paths {lacks}"
    if folder != root.joinpath(*parts[:-1]):
        form = _nfc(_shown(root, folder)) == _nfc("/".join(parts[:-1]))
        return (f"; the folder is {_shown(root, folder)!r}: "
                + ("written in another Unicode form" if form else "paths are case-sensitive here"))
    return ""


def _walk_ignoring_case(root: Path, folders: list[str]) -> Path | None:
    """``root/folders...`` as it exists, matching each folder's name exactly or else ignoring case."""
    here = root
    for part in folders:
        if (here / part).is_dir():
            here = here / part
            continue
        matches = [e for e in _names(here) if _nfc(e).casefold() == _nfc(part).casefold() and (here / e).is_dir()]
        if len(matches) != 1:
            return None
        here = here / matches[0]
    return here


def _is_folder(path: Path) -> bool:
    try:
        return path.is_dir()
    except OSError:  # a name too long for the file system, say
        return False


def _nfc(name: str) -> str:
    return unicodedata.normalize("NFC", name)


def _names(folder: Path) -> list[str]:
    try:
        with os.scandir(folder) as it:
            return [e.name for e in it]
    except OSError:
        return []


def _shown(root: Path, path: Path) -> str:
    return path.relative_to(root).as_posix()
