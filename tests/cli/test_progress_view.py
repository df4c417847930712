"""The run's progress display: a pipe (a log, CI) gets at most a line per interval and only when the search
moved; a terminal gets a bar with the counts, the best values, the elapsed time and the time left."""

from __future__ import annotations

import io

from rich.console import Console

from evonorm_search.cli.common import ProgressView
from evonorm_search.search.controller import SearchProgress


def progress(proposed: int, evaluated: int, *, state: str = "running", best: float = 0.5) -> SearchProgress:
    return SearchProgress(
        search_id=1, name="quick", state=state, budget=200, proposed=proposed, evaluated=evaluated,
        rejected={"static": proposed - evaluated}, failed=0, duplicate_hits=0, in_flight=1,
        best={"acc_resnet": best}, elapsed=float(proposed), last_event=f"candidate {proposed} (birth {proposed}): ok",
    )  # fmt: skip


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def printed_lines(capsys) -> list[str]:
    return [line for line in capsys.readouterr().out.splitlines() if line.strip()]


def test_a_pipe_gets_a_line_per_interval_not_one_per_event(capsys):
    clock = FakeClock()
    view = ProgressView(live=False, interval=15.0, clock=clock)
    with view:
        for second in range(60):  # an event a second, each one a new candidate
            clock.now = float(second)
            view(progress(proposed=second + 1, evaluated=second // 2))
    lines = printed_lines(capsys)
    assert len(lines) == 4, lines  # at 0, 15, 30 and 45 s
    assert lines[0].startswith("[") and "1/200 candidates" in lines[0]
    assert "46/200 candidates" in lines[-1]  # the line at 45 s says where the search was then


def test_a_pipe_prints_nothing_new_while_the_search_stands_still(capsys):
    clock = FakeClock()
    view = ProgressView(live=False, interval=15.0, clock=clock)
    with view:
        for second in range(0, 120, 5):  # a long evaluation: events with the same counts
            clock.now = float(second)
            view(progress(proposed=10, evaluated=4))
        clock.now = 125.0
        view(progress(proposed=11, evaluated=5))  # it moves again: the next line comes at once
        clock.now = 200.0
        view(progress(proposed=12, evaluated=6, state="completed"))  # the caller prints the final state
    lines = printed_lines(capsys)
    assert len(lines) == 2, lines
    assert "10/200 candidates, 4 evaluated" in lines[0] and "11/200 candidates, 5 evaluated" in lines[1]


def test_a_terminal_gets_a_bar_with_counts_and_the_time_left_over_the_best_values():
    view = ProgressView(live=True)
    with view:
        for n in range(1, 6):
            view(progress(proposed=n * 10, evaluated=n * 3, best=0.5 + n / 100))
    out = io.StringIO()
    assert view.display is not None
    Console(file=out, width=80, force_terminal=False).print(view.display.renderable)
    bar, *table = out.getvalue().splitlines()
    assert "50/200" in bar and "…" not in bar  # whole in 80 columns
    assert "left" in bar and "-:--:--" not in bar.split("left", 1)[1]  # an estimate, not the unknown mark
    assert any(row.split() == ["best", "acc_resnet", "0.5500"] for row in table), table
