"""``python -m noiseaudit.cli`` (also how torchrun starts a distributed scan)."""

from noiseaudit.cli import main

main()
