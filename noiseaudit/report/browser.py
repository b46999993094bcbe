"""Render an HTML file in headless Chromium (Debian's ``chromium`` package): screenshots and DOM checks."""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from pathlib import Path

FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--hide-scrollbars")


def find_chromium() -> str | None:
    for name in ("chromium", "chromium-browser", "google-chrome", "chrome"):
        found = shutil.which(name)
        if found:
            return found
    return None


def _run(args: list[str], timeout: float) -> subprocess.CompletedProcess:
    browser = find_chromium()
    if browser is None:
        raise FileNotFoundError("no chromium on PATH (apt-get install chromium)")
    with tempfile.TemporaryDirectory() as profile:
        return subprocess.run([browser, *FLAGS, f"--user-data-dir={profile}", *args], capture_output=True,
                              text=True, timeout=timeout, check=True)


def screenshot(page: Path, png: Path, width: int = 1280, height: int = 1600, timeout: float = 120) -> Path:
    _run([f"--screenshot={png}", f"--window-size={width},{height}", page.resolve().as_uri()], timeout)
    return png


def dump_dom(page: Path, timeout: float = 120) -> str:
    """The DOM after scripts ran (virtual time lets images decode first)."""
    return _run(["--virtual-time-budget=5000", "--dump-dom", page.resolve().as_uri()], timeout).stdout
