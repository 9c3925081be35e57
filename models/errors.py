"""The one error type the project raises for problems a user can fix."""
from __future__ import annotations

from pathlib import Path


class AnalysisError(Exception):
    """A problem with the user's input or setup, with what is wrong and what to do.

    The UI shows `str(error)` as is, the CLI prints it and exits non-zero: it must
    read well without a traceback.
    """

    def __init__(self, problem: str, *, path: str | Path | None = None, hint: str | None = None):
        self.path = str(path) if path is not None else None
        self.problem = problem
        self.hint = hint
        where = f"{Path(self.path).name}: " if self.path else ""
        message = f"{where}{problem}"
        if hint:
            message += f" {hint}"
        super().__init__(message)
