"""The one exception training raises for problems a user can fix."""

from __future__ import annotations


class TrainingError(Exception):
    """A one-line, user-facing reason why training could not run or publish.

    The CLI prints the message (no traceback) and exits with status 2.
    """

    def __init__(self, message: str) -> None:
        super().__init__(" ".join(str(message).split()))
