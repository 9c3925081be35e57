"""Run the command line in-process, as a user would type it, and capture what it prints.
(Tests of the process boundary itself start a real process instead.)"""
from __future__ import annotations

import contextlib
import io
from dataclasses import dataclass

import cli


@dataclass
class CliRun:
    returncode: int
    stdout: str
    stderr: str


def run_cli(*args) -> CliRun:
    """`avxplain ARGS...` called through `cli.main`, its exit code and output."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            code = cli.main([str(a) for a in args])
        except SystemExit as exit_:  # argparse's usage errors
            code = exit_.code if isinstance(exit_.code, int) else 2
    return CliRun(code, out.getvalue(), err.getvalue())
