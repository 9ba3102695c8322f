"""The command line's progress bars (pure: a fake terminal, a fake clock)."""

from __future__ import annotations

import io

import pytest

from hubbub.cli.progress import JobBar, UploadBar, bar, duration

MIB = 1 << 20


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_upload_bar_shows_an_eta() -> None:
    """The rate is this run's bytes over its time; the ETA is what is left at that rate."""
    out, clock = Terminal(), Clock()
    up = UploadBar("video.mp4", out, clock)
    up.update(10 * MIB, 40 * MIB)  # resumed: 10 MiB were stored before this run
    clock.now += 2
    up.update(20 * MIB, 40 * MIB)  # 10 MiB in 2 s: 5 MiB/s, 20 MiB left: 4 s
    assert out.getvalue().split("\r")[-1] == (
        f"video.mp4 {bar(0.5)}  50% 20.0/40.0 MiB 5.0 MiB/s ETA 4s\x1b[K")
    clock.now += 4
    up.update(40 * MIB, 40 * MIB)
    up.close()
    assert out.getvalue().split("\r")[-1].endswith("100% 40.0/40.0 MiB 5.0 MiB/s in 6s\x1b[K\n")


def test_job_bar_shows_an_eta() -> None:
    out, clock = Terminal(), Clock()
    job = JobBar(out, clock)
    base = {"id": "3ad82533ffff", "attempts": 1, "max_attempts": 3}
    job.update({**base, "state": "queued", "progress": 0})
    job.update({**base, "state": "running", "progress": 10})
    clock.now += 30
    job.update({**base, "state": "running", "progress": 40, "message": "frame 40"})
    assert out.getvalue().split("\r")[-1] == (
        f"job 3ad82533 running   {bar(0.4)}  40% attempt 1/3 ETA 1:00 frame 40\x1b[K")
    job.update({**base, "state": "succeeded", "progress": 100})
    job.close()
    assert out.getvalue().endswith("attempt 1/3\x1b[K\n")


def test_bars_are_quiet_off_a_terminal() -> None:
    """Piped or logged, a bar writes nothing: the result is on stdout."""
    out = io.StringIO()
    up, job = UploadBar("a", out), JobBar(out)
    up.update(1, 2)
    up.update(2, 2)
    job.update({"id": "x", "state": "running", "progress": 50})
    up.close()
    job.close()
    assert out.getvalue() == ""


@pytest.mark.parametrize(("seconds", "text"), [
    (0, "0s"), (42.4, "42s"), (185, "3:05"), (3729, "1:02:09"), (-3, "0s")])
def test_duration(seconds: float, text: str) -> None:
    assert duration(seconds) == text
