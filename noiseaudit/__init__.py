"""noiseaudit: find wrong labels by training with per-sample learnable learning rates.

>>> from noiseaudit import scan
>>> report = scan("images/", "labels.csv", epochs=10, seed=0)   # doctest: +SKIP
>>> report.sort_values("rank").head()                             # doctest: +SKIP

The public names are imported on first use, so that ``import noiseaudit`` (and the
command line's ``--help``, ``show``, ``export``...) does not pay for PyTorch.
"""

from __future__ import annotations

import importlib
import sys
import types
from typing import Any

from noiseaudit._version import __version__
from noiseaudit.errors import (HeavyFlagging, InputError, ModelAtChance, NoiseAuditError, NoiseAuditWarning,
                               SkippedImages, UsageError)

# public name -> the module that defines it, imported when the name is first used
_LAZY = {
    "scan": "noiseaudit.scan",
    "scan_features": "noiseaudit.scan",
    "ScanConfig": "noiseaudit.config",
    "read_report": "noiseaudit.report.io",
    "write_report": "noiseaudit.report.io",
    "detection_metrics": "noiseaudit.metrics",
    "ranking_metrics": "noiseaudit.metrics",
    "load_model": "noiseaudit.model_io",
    # the other commands, for notebooks: inject, evaluate, export, apply, html
    "inject_file": "noiseaudit.inject",
    "evaluate": "noiseaudit.evaluate",
    "select_suspects": "noiseaudit.report.export",
    "review_table": "noiseaudit.report.export",
    "write_review": "noiseaudit.report.export",
    "apply_review": "noiseaudit.apply",
    "render_html": "noiseaudit.report.html",
}
# public functions that share their name with the module defining them
_SAME_NAME = frozenset({"scan", "evaluate"})

__all__ = ["__version__", "scan", "scan_features", "ScanConfig", "load_model", "read_report", "write_report",
           "inject_file", "evaluate", "select_suspects", "review_table", "write_review", "apply_review",
           "render_html", "detection_metrics", "ranking_metrics", "InputError", "NoiseAuditError", "UsageError",
           "NoiseAuditWarning", "HeavyFlagging", "ModelAtChance", "SkippedImages"]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        value = getattr(importlib.import_module(_LAZY[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))


class _Package(types.ModuleType):
    """``noiseaudit.scan`` and ``noiseaudit.evaluate`` name the functions, even once the modules of the
    same names are imported (the import system then sets the package attribute to the module; this
    keeps the function)."""

    def __setattr__(self, name: str, value: Any) -> None:
        if name in _SAME_NAME and isinstance(value, types.ModuleType) and hasattr(value, name):
            value = getattr(value, name)
        super().__setattr__(name, value)


sys.modules[__name__].__class__ = _Package
