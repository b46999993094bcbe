"""noiseaudit: find wrong labels by training with per-sample learnable learning rates.

>>> from noiseaudit import scan
>>> report = scan("images/", "labels.csv", epochs=10, seed=0)   # doctest: +SKIP
>>> report.sort_values("rank").head()                             # doctest: +SKIP
"""

from noiseaudit._version import __version__
from noiseaudit.errors import InputError, NoiseAuditError, UsageError
from noiseaudit.metrics import detection_metrics, ranking_metrics
from noiseaudit.report.io import read_report, write_report
from noiseaudit.scan import ScanConfig, scan

__all__ = ["__version__", "scan", "ScanConfig", "read_report", "write_report", "detection_metrics",
           "ranking_metrics", "InputError", "NoiseAuditError", "UsageError"]
