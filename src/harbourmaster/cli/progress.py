"""Progress of long commands (training, scoring, exports) as rich draws it, on a terminal only.

The line goes to stderr, like tqdm's and rich's, and is drawn only when stderr is a terminal: piped or
captured output gets no spinner frames or control codes, only the command's result. It is transient:
once the work ends the line is cleared and the command prints what happened.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from rich.progress import BarColumn, ProgressColumn, SpinnerColumn, Task, TaskID, TextColumn, TimeElapsedColumn
from rich.progress import Progress as RichProgress
from rich.text import Text

from harbourmaster.cli import output
from harbourmaster.core.progress import SILENT, Progress


class TerminalProgress:
    """A spinner, the current stage, a bar with row counts when they are known, and the time elapsed."""

    def __init__(self, bar: RichProgress, task: TaskID, title: str) -> None:
        self._bar = bar
        self._task = task
        self._title = title

    def stage(self, text: str) -> None:
        self._bar.update(self._task, description=f"{self._title}: {text}", total=None, completed=0, refresh=True)

    def advance(self, done: int, total: int | None = None) -> None:
        self._bar.update(self._task, completed=done, total=total, refresh=True)


class _Count(ProgressColumn):
    """``1200/5000 rows`` while counted work runs; nothing during a stage of unknown length."""

    def __init__(self, unit: str) -> None:
        super().__init__()
        self._unit = unit

    def render(self, task: Task) -> Text:
        if task.total is None:
            return Text("")
        return Text(f"{int(task.completed)}/{int(task.total)} {self._unit}", style="progress.download")


def shows_progress() -> bool:
    """Whether a progress line would be drawn: only when stderr is an interactive terminal."""
    return output.errors.is_terminal and not output.errors.is_dumb_terminal


@contextmanager
def progress(title: str, unit: str = "rows") -> Iterator[Progress]:
    """Report long work under ``title`` (counts in ``unit``): drawn on a terminal, silent when piped."""
    if not shows_progress():
        yield SILENT
        return
    bar = RichProgress(
        SpinnerColumn(),
        TextColumn("{task.description}"),
        BarColumn(),
        _Count(unit),
        TimeElapsedColumn(),
        console=output.errors,
        transient=True,
    )
    with bar:
        task = bar.add_task(title, total=None)
        yield TerminalProgress(bar, task, title)
