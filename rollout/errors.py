"""Every error a rollout raises on purpose, in one module below the rest of ``rollout`` (it imports
nothing of ours), so that backends, the Lease, the analysis and the CLIs share them without a loop.

How the CLIs show them: ``UsageError`` exits 2, ``GateRefused`` exits 4, the others are one line
naming what failed.
"""

from __future__ import annotations


class RolloutError(RuntimeError):
    """A rollout operation could not be carried out (clear, one-line message)."""


class ConflictError(RolloutError):
    """Another writer changed the object between our read and our write (HTTP 409/test failure)."""


class UsageError(Exception):
    """Bad input: printed as one line, exit code 2."""


class GateRefused(Exception):
    """The offline quality gate or the schema check refused the challenger: one line, exit code 4."""


class SchemaMismatch(ValueError):
    """Champion and challenger do not take the same features or predict the same target."""


class PrometheusError(RuntimeError):
    """Prometheus could not be reached or refused a query."""


class ValidationError(ValueError):
    """The object does not match the kserve SDK models.

    ``errors`` lists every problem as ``"path: reason"``; ``path`` and ``reason`` are the first.
    """

    def __init__(self, problems: list[tuple[str, str]]) -> None:
        self.errors = [f"{path or '<root>'}: {reason}" for path, reason in problems]
        super().__init__("; ".join(self.errors))
        self.path, self.reason = problems[0]
