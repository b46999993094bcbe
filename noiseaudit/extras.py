"""How to install an optional extra, said the same way everywhere (the README, errors, hints).

The form is the one that works from a source checkout, which is how noiseaudit is installed.
"""

from __future__ import annotations


def install_hint(extra: str) -> str:
    """``pip install -e ".[html]"`` for ``extra="html"``."""
    return f'pip install -e ".[{extra}]"'
