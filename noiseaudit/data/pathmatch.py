"""Find a report's path among a labels CSV's rows, when the CSV names its images by absolute paths.

A scan stores an absolute CSV path that lies inside the image folder relative to that folder
(``/data/photos/cat/1.jpg`` scanned with ``IMAGES_DIR=/data/photos`` becomes ``cat/1.jpg``).
``apply`` and ``evaluate --truth`` read the CSV again without knowing the folder, so a path
from the report matches the row that names it exactly, or else the absolute path that ends
with it. Where several absolute paths end with it (``/data/photos/cat/1.jpg`` and
``/data/photos/old/cat/1.jpg``), the one under the folder that the unambiguous matches share
wins.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable


def _normal(path: str) -> str:
    path = path.replace("\\", "/")
    while path.startswith("./"):
        path = path[2:]
    return path


class PathIndex:
    """Row numbers of a table's paths, looked up by a report's (relative) paths."""

    def __init__(self, paths: Iterable[str]):
        self.paths = list(paths)
        self.exact: dict[str, int] = {}
        self.by_suffix: dict[str, list[int]] = {}
        for i, p in enumerate(self.paths):
            self.exact.setdefault(p, i)
            self.exact.setdefault(_normal(p), i)
            if p.startswith("/"):
                parts = _normal(p).split("/")
                for k in range(1, len(parts)):
                    self.by_suffix.setdefault("/".join(parts[k:]), []).append(i)
        self.root: str | None = None

    def learn_root(self, wanted: Iterable[str]) -> None:
        """Take the folder most unambiguous matches of ``wanted`` lie under as the tie-breaker."""
        roots: Counter = Counter()
        for w in wanted:
            rows = [] if w in self.exact else self.by_suffix.get(_normal(w), [])
            if len(rows) == 1:
                roots[_normal(self.paths[rows[0]])[:-len(_normal(w)) - 1]] += 1
        self.root = roots.most_common(1)[0][0] if roots else None

    def row(self, path: str) -> int | None:
        """The row naming ``path``, or None when no row (or more than one, with no tie-breaker) does."""
        if path in self.exact:
            return self.exact[path]
        key = _normal(path)
        if key in self.exact:
            return self.exact[key]
        rows = self.by_suffix.get(key, [])
        if len(rows) > 1 and self.root is not None:
            rows = [i for i in rows if _normal(self.paths[i]) == f"{self.root}/{key}"]
        return rows[0] if len(rows) == 1 else None
