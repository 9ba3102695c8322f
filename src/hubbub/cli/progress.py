"""The progress bars of ``hubbub upload`` and ``upload --follow``, on stderr.

A bar is for a person watching a terminal: it redraws one line in place and
ends it when done. When stderr is not a terminal (a log, a pipe, a CI job) a
bar writes nothing at all, since the command's result is on stdout and a log
full of percentages helps no one. Time comes from ``clock`` so the bars can
be tested with no waiting.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any, TextIO

WIDTH = 30
MIB = 1 << 20


def is_terminal(out: TextIO) -> bool:
    isatty = getattr(out, "isatty", None)
    return bool(isatty()) if callable(isatty) else False


def bar(share: float) -> str:
    """``[#####.........]`` for a share from 0 to 1."""
    share = min(max(share, 0.0), 1.0)
    return f"[{'#' * int(share * WIDTH):.<{WIDTH}}]"


def duration(seconds: float) -> str:
    """``42s``, ``3:05``, ``1:02:09``: short, for an ETA."""
    seconds = max(0, round(seconds))
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    if hours:
        return f"{hours}:{minutes:02}:{secs:02}"
    return f"{minutes}:{secs:02}" if minutes else f"{secs}s"


class Line:
    """One line redrawn in place on a terminal; silent anywhere else."""

    def __init__(self, out: TextIO) -> None:
        self.out = out
        self.live = is_terminal(out)
        self.drawn = False

    def draw(self, text: str) -> None:
        if not self.live:
            return
        # \r back to the line's start, \x1b[K clears what a longer line left.
        self.out.write("\r" + text + "\x1b[K")
        self.out.flush()
        self.drawn = True

    def close(self) -> None:
        """End the line (once something was drawn)."""
        if self.drawn:
            self.out.write("\n")
            self.out.flush()
            self.drawn = False


class UploadBar:
    """``video.mp4 [#####.....] 42% 12.3/29.0 MiB 8.1 MiB/s ETA 0:02`` for ``upload``.

    The rate counts the bytes sent by this run only (a resumed upload starts
    with the part already stored), so the ETA is what is left at that rate.
    """

    def __init__(self, name: str, out: TextIO,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.name, self.line, self.clock = name, Line(out), clock
        self.started = clock()
        self.first: int | None = None

    def update(self, done: int, total: int) -> None:
        """Show that ``done`` of ``total`` bytes are stored."""
        if self.first is None:
            self.first = done
        share = done / total if total else 1.0
        elapsed = self.clock() - self.started
        rate = (done - self.first) / elapsed if elapsed > 0 else 0.0
        text = (f"{self.name} {bar(share)} {share:4.0%} {done / MIB:.1f}/{total / MIB:.1f} "
                f"MiB {rate / MIB:.1f} MiB/s")
        if done >= total:
            text += f" in {duration(elapsed)}"
        elif rate > 0:
            text += f" ETA {duration((total - done) / rate)}"
        self.line.draw(text)

    def close(self) -> None:
        self.line.close()


class JobBar:
    """``job 3ad82533 running [####......] 44% attempt 1/3 ETA 0:41 message`` for
    ``upload --follow``. The ETA assumes the job's progress keeps the pace it had
    since it was first seen running."""

    def __init__(self, out: TextIO, clock: Callable[[], float] = time.monotonic) -> None:
        self.line, self.clock = Line(out), clock
        self.seen: tuple[float, float] | None = None  # (time, progress) first seen running

    def update(self, job: dict[str, Any]) -> None:
        """Show the job as it is now."""
        progress = float(job.get("progress") or 0.0)
        now = self.clock()
        text = (f"job {str(job.get('id'))[:8]} {job.get('state'):<9} {bar(progress / 100)} "
                f"{progress / 100:4.0%} attempt {job.get('attempts')}/{job.get('max_attempts')}")
        if job.get("state") == "running":
            if self.seen is None or progress < self.seen[1]:  # a new attempt starts over
                self.seen = (now, progress)
            since, at = self.seen
            if progress > at and now > since:
                text += f" ETA {duration((100 - progress) * (now - since) / (progress - at))}"
        if job.get("message"):
            text += f" {job['message']}"
        self.line.draw(text)

    def close(self) -> None:
        self.line.close()


__all__ = ["JobBar", "Line", "UploadBar", "bar", "duration", "is_terminal"]
