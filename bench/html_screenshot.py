"""Scan sample_data/, render the HTML report and screenshot it in headless Chromium.

    python bench/html_screenshot.py     # writes bench/results/report_screenshot.png

Needs Debian's chromium (apt-get install -y chromium) and matplotlib (pip install -e '.[html]').
"""

from __future__ import annotations

import tempfile
from pathlib import Path

from noiseaudit import scan
from noiseaudit.report.browser import screenshot
from noiseaudit.report.html import render_html

ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    report = scan(ROOT / "sample_data/images", ROOT / "sample_data/labels.csv", seed=0)
    with tempfile.TemporaryDirectory() as tmp:
        page = Path(tmp) / "report.html"
        page.write_text(render_html(report, report.attrs["noiseaudit"], top=32), encoding="utf-8")
        dest = ROOT / "bench/results/report_screenshot.png"
        screenshot(page, dest, width=1280, height=1250)
    print(f"wrote {dest}")


if __name__ == "__main__":
    main()
