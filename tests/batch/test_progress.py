"""Progress: a redrawn bar with rows/s and ETA on a terminal, periodic lines elsewhere."""

from __future__ import annotations

import io

from modelport.batch.progress import Progress


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_log_lines_every_interval_when_not_a_terminal() -> None:
    out, clock = io.StringIO(), Clock()
    progress = Progress(total=1000, stream=out, tty=False, interval=10.0, clock=clock)
    progress.skip(200)  # a resumed run's earlier chunks count towards done, not the rate
    clock.now = 5.0
    progress.advance(100)
    assert out.getvalue() == ""  # not yet an interval
    clock.now = 10.0
    progress.advance(300, rejected=3)
    clock.now = 12.0
    progress.advance(100)
    progress.finish()
    assert out.getvalue().splitlines() == [
        "batch: 600/1,000 rows (60%), 40 rows/s, ETA 0:00:10, 3 rejected"]


def test_a_bar_redrawn_in_place_on_a_terminal() -> None:
    out, clock = io.StringIO(), Clock()
    progress = Progress(total=400, stream=out, tty=True, clock=clock)
    clock.now = 1.0
    progress.advance(100)
    clock.now = 2.0
    progress.advance(100)
    progress.finish()
    frames = out.getvalue().split("\r")[1:]
    assert frames[0].startswith("[#######-----------------------] 100/400 rows (25%)")
    assert "100 rows/s, ETA 0:00:03" in frames[0]
    assert frames[-1].startswith("[###############---------------] 200/400")
    assert out.getvalue().endswith("\n")


def test_silent_when_disabled_and_no_eta_without_a_total() -> None:
    out, clock = io.StringIO(), Clock()
    quiet = Progress(total=10, stream=out, tty=True, clock=clock, enabled=False)
    clock.now = 100.0
    quiet.advance(10)
    quiet.finish()
    assert out.getvalue() == ""
    loose = Progress(stream=out, tty=False, interval=1.0, clock=clock)
    clock.now = 102.0
    loose.advance(50)
    assert out.getvalue() == "batch: 50 rows, 25 rows/s\n"
