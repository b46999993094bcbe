"""Scan progress on stderr: a Rich bar with ETA on a terminal, plain timed lines when piped, nothing if quiet."""

from __future__ import annotations

import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, TextIO

from noiseaudit import formats
from noiseaudit.progress import STAGES, ProgressCallback

LINE_EVERY = 0.1  # piped: a line per tenth of a decoding or embedding stage (and at its end)
LINE_AT_LEAST = 30.0  # ... or after this many seconds without one
UNEVEN = ("choose",)  # stages whose steps differ in length (decode a sample, embed it, train on it): no ETA


class PipedProgress:
    """Progress as plain lines, for logs and pipes.

    Decoding and embedding print ``decoding images: 512/2000 (25.6%); elapsed 3.1 s, eta 9.0 s``
    every tenth of the stage, or every 30 s if a tenth takes longer, and when it ends. Training
    prints one line per epoch: ``epoch 3/10: mean loss 1.204; elapsed 12 s, eta 28 s``. The
    ETA is the remaining work at the pace this process has kept so far in that stage (none for the backbone
    choice, whose three steps take unlike times: its ETA said 2 s with 12 s to go). A stage
    starts at its first report of no work done, else at the previous stage's last report; its
    first report of work counts as one unit (a training step) done by this process, so that a
    resumed run's ETA is not flattered by the epochs it skipped.
    """

    def __init__(self, stream: TextIO, clock: Callable[[], float] = time.monotonic):
        self.stream: TextIO | None = stream  # None once its reader has gone
        self.clock = clock
        self.mark = clock()  # when anything last reported
        self.started: dict[str, tuple[float, int]] = {}  # stage -> (time, work done) at its start
        self.last: dict[str, tuple[float, int]] = {}  # stage -> (time, work done) at its last line

    def __call__(self, stage: str, done: int, total: int, info: dict[str, Any]) -> None:
        now = self.clock()
        if stage not in self.started:
            self.started[stage] = (now, 0) if done == 0 else (self.mark, done - 1 if stage == "train" else 0)
        self.mark = now
        t0, done0 = self.started[stage]
        elapsed = now - t0
        if done >= total:
            eta = formats.duration(0)
        else:
            eta = formats.duration(elapsed / (done - done0) * (total - done)) if done > done0 else formats.MISSING
        timing = f"elapsed {formats.duration(elapsed)}" + ("" if stage in UNEVEN else f", eta {eta}")
        if stage == "train":
            if info.get("loss") is not None:
                self._print(f"epoch {info['epoch']}/{info.get('epochs') or '?'}: mean loss "
                            f"{formats.loss(info['loss'])}; {timing}")
            return
        last_t, last_done = self.last.get(stage, (t0, done0))
        if stage in self.last and last_done >= total:
            return  # the end was already reported
        if done >= total or done - last_done >= LINE_EVERY * total or now - last_t >= LINE_AT_LEAST:
            self.last[stage] = (now, done)
            share = formats.percent(done / total) if total else formats.MISSING
            cached = ", read from the decode cache" if info.get("cached") else ""
            self._print(f"{STAGES.get(stage, stage)}: {done}/{total} ({share}){cached}; {timing}")

    def _print(self, line: str) -> None:
        if self.stream is None:
            return
        try:
            self.stream.write(line + "\n")
            self.stream.flush()
        except BrokenPipeError:  # the reader went away (`2>&1 | head`): the scan goes on without progress
            self.stream = None


@contextmanager
def progress_reporter(quiet: bool) -> Iterator[ProgressCallback | None]:
    """A scan progress callback: a Rich bar on a TTY, :class:`PipedProgress` lines otherwise, nothing if quiet."""
    if quiet:
        yield None
        return
    if not sys.stderr.isatty():
        yield PipedProgress(sys.stderr)
        return
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    from noiseaudit.cli.console import stderr

    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TextColumn("{task.fields[note]}"),
               TimeElapsedColumn(), TextColumn("eta"), TimeRemainingColumn())
    with Progress(*columns, console=stderr(), transient=False) as bar:
        tasks: dict[str, Any] = {}

        def update(stage: str, done: int, total: int, info: dict[str, Any]) -> None:
            if stage not in tasks:
                tasks[stage] = bar.add_task(STAGES.get(stage, stage), total=total, note="")
            note = f"epoch {info['epoch']}/{info.get('epochs') or '?'}" if "epoch" in info else ""
            note = "from the decode cache" if info.get("cached") else note
            if info.get("loss") is not None:
                note += f" loss {formats.loss(info['loss'])}"
            bar.update(tasks[stage], completed=done, total=total, **({"note": note} if note else {}))

        yield update
