"""The ``harbourmaster`` console entry point run in this process, with what a terminal would show captured.

Much faster than a subprocess per command; the code path is the same ``run(argv)`` the console script calls.
"""

from __future__ import annotations

import io
import os
import traceback
from collections.abc import Iterator
from contextlib import contextmanager, redirect_stderr, redirect_stdout
from dataclasses import dataclass

from harbourmaster.cli import output
from harbourmaster.cli.main import run


@dataclass(frozen=True)
class Outcome:
    argv: tuple[str, ...]
    code: int | str | None
    out: str
    err: str
    crash: str | None = None


def invoke(argv: list[str]) -> Outcome:
    """Run the console entry point in this process and capture what a terminal would show."""
    out, err = io.StringIO(), io.StringIO()
    crash = None
    code: int | str | None = 0
    environment = dict(os.environ)  # the demo sets HARBOURMASTER_HOME for the process it runs in
    # The width piped output gets, whatever this process's stdout was when the CLI module was first imported
    # (another test of the same worker may have imported it under a pseudo-terminal).
    width, output.console.width = output.console.width, 200
    with redirect_stdout(out), redirect_stderr(err), _restored(environment):
        try:
            run(argv)
        except SystemExit as exit_:
            code = exit_.code
        except Exception:  # an escape is what the callers hunt: reported, with its traceback
            crash = traceback.format_exc()
            code = "crashed"
    output.console.width = width
    return Outcome(tuple(argv), code, out.getvalue(), err.getvalue(), crash)


@contextmanager
def _restored(environment: dict[str, str]) -> Iterator[None]:
    try:
        yield
    finally:
        os.environ.clear()
        os.environ.update(environment)
