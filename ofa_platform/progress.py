"""One progress display for every long command (train, search, population evaluation, the
quick start, data conversion), instead of Ray's and Tune's logs.

On a terminal it is a live ``rich`` display: one bar per task with its status (epoch, loss,
img/s, ETA...), and event lines (run ids, costs) printed above it. When the stream is not a
terminal (CI logs, ``| tee``, a Ray Job's log) every update is one plain line, so a log reads
as a history. Commands with ``--json`` pass ``sys.stderr`` so that stdout carries the JSON
document alone.

Library code takes a :class:`Reporter` (or, as before, any ``Callable[[str], None]``, which
:func:`as_reporter` adapts), so it never decides where progress goes::

    from ofa_platform.progress import console

    with console() as progress:                      # stdout; console(sys.stderr) for --json
        progress.task("convert", "converting train.parquet", total=n, unit="images")
        for i, batch in enumerate(batches, 1):
            ...
            progress.update("convert", i * batch_size, f"{rate:.0f} images/s")
        progress.done("convert")
        progress.line("wrote data/cifar10/train.parquet")
"""

from __future__ import annotations

import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Protocol, TextIO, runtime_checkable

__all__ = ["Reporter", "ConsoleReporter", "LineReporter", "as_reporter", "console", "eta",
           "hms"]


@runtime_checkable
class Reporter(Protocol):
    """Where a long command reports: event lines and tasks with a total and a status."""

    def line(self, text: str) -> None:
        """An event worth a line of its own (a run id, a cost, a warning)."""

    def task(self, key: str, description: str, total: float | None = None,
             unit: str = "") -> None:
        """Start (or restart) the task ``key``; ``total`` None when unknown."""

    def update(self, key: str, completed: float, status: str = "") -> None:
        """``completed`` units of task ``key`` done; ``status`` says the rest (loss, ETA...)."""

    def done(self, key: str) -> None:
        """Task ``key`` is finished (its bar stays on screen, complete)."""

    def __call__(self, text: str) -> None:
        """Same as :meth:`line`: a reporter is also the ``progress(str)`` callable of old."""


def hms(seconds: float) -> str:
    """``H:MM:SS`` for an ETA or an elapsed time (negative and NaN read as 0)."""
    s = int(max(0.0, seconds)) if seconds == seconds else 0
    return f"{s // 3600:d}:{s % 3600 // 60:02d}:{s % 60:02d}"


def eta(started: float, done: float, total: float, now: float | None = None) -> float:
    """Seconds left at the rate so far (NaN before the first unit is done)."""
    if done <= 0:
        return float("nan")
    elapsed = (time.monotonic() if now is None else now) - started
    return elapsed / done * max(0.0, total - done)


@dataclass
class _Task:
    description: str
    total: float | None
    unit: str
    handle: Any = None


class LineReporter:
    """Every update as one plain line through ``emit`` (a non-terminal stream, a Ray Job's
    log, or a plain ``progress(str)`` callable given by older callers)."""

    def __init__(self, emit: Callable[[str], None], min_interval_s: float = 1.0) -> None:
        self._emit = emit
        self._tasks: dict[str, _Task] = {}
        self._last: dict[str, float] = {}
        self.min_interval_s = min_interval_s  # a search's 500 generations are not 500 lines
        self._lock = threading.Lock()

    def line(self, text: str) -> None:
        with self._lock:
            self._emit(text)

    __call__ = line

    def task(self, key: str, description: str, total: float | None = None,
             unit: str = "") -> None:
        with self._lock:
            self._tasks[key] = _Task(description, total, unit)

    def update(self, key: str, completed: float, status: str = "") -> None:
        with self._lock:
            t = self._tasks.get(key) or _Task(key, None, "")
            now = time.monotonic()
            last_of_task = t.total is not None and completed >= t.total
            if now - self._last.get(key, -1e9) < self.min_interval_s and not last_of_task:
                return
            self._last[key] = now
            count = f"{completed:g}" + (f"/{t.total:g}" if t.total is not None else "")
            text = f"[{t.description}] {count}{' ' + t.unit if t.unit else ''}"
            self._emit(text + (f" {status}" if status else ""))

    def done(self, key: str) -> None:
        with self._lock:
            self._tasks.pop(key, None)
            self._last.pop(key, None)


class ConsoleReporter:
    """A live ``rich`` display on a terminal, plain lines elsewhere (see the module doc)."""

    def __init__(self, stream: TextIO | None = None, live: bool | None = None) -> None:
        self.stream = stream or sys.stdout
        isatty = getattr(self.stream, "isatty", None)
        self.live = bool(isatty and isatty()) if live is None else live
        self._lines = LineReporter(self._write)
        self._tasks: dict[str, _Task] = {}
        self._progress: Any = None
        self._lock = threading.Lock()

    def _write(self, text: str) -> None:
        self.stream.write(text + "\n")
        self.stream.flush()

    def __enter__(self) -> ConsoleReporter:
        if self.live:
            from rich.console import Console
            from rich.progress import (
                BarColumn,
                MofNCompleteColumn,
                Progress,
                TextColumn,
                TimeElapsedColumn,
            )

            self._progress = Progress(
                TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
                TextColumn("{task.fields[unit]}"), TimeElapsedColumn(),
                TextColumn("{task.fields[status]}"),
                console=Console(file=self.stream), transient=False)
            self._progress.start()
        return self

    def __exit__(self, *exc: object) -> None:
        if self._progress is not None:
            self._progress.stop()
            self._progress = None

    def line(self, text: str) -> None:
        if self._progress is None:
            self._lines.line(text)
        else:
            with self._lock:
                self._progress.console.print(text, markup=False, highlight=False)

    __call__ = line

    def task(self, key: str, description: str, total: float | None = None,
             unit: str = "") -> None:
        if self._progress is None:
            self._lines.task(key, description, total, unit)
            return
        with self._lock:
            old = self._tasks.get(key)
            if old is not None:
                self._progress.remove_task(old.handle)
            handle = self._progress.add_task(description, total=total, unit=unit, status="")
            self._tasks[key] = _Task(description, total, unit, handle)

    def update(self, key: str, completed: float, status: str = "") -> None:
        if self._progress is None:
            self._lines.update(key, completed, status)
            return
        with self._lock:
            t = self._tasks.get(key)
            if t is not None:
                self._progress.update(t.handle, completed=completed, status=status)

    def done(self, key: str) -> None:
        if self._progress is None:
            self._lines.done(key)
            return
        with self._lock:
            t = self._tasks.pop(key, None)
            if t is not None and t.total is not None:
                self._progress.update(t.handle, completed=t.total)


def as_reporter(progress: Reporter | Callable[[str], None] | None) -> Reporter:
    """A :class:`Reporter` for ``progress``: itself when it is one, plain lines through a
    ``Callable[[str], None]``, plain lines on stdout for None."""
    if progress is None:
        return LineReporter(lambda text: print(text, flush=True))
    if isinstance(progress, Reporter):
        return progress
    return LineReporter(progress)


@contextmanager
def console(stream: TextIO | None = None, live: bool | None = None) -> Iterator[ConsoleReporter]:
    """A :class:`ConsoleReporter` on ``stream`` (stdout by default), live on a terminal,
    stopped cleanly however the block ends."""
    reporter = ConsoleReporter(stream, live)
    with reporter:
        yield reporter
