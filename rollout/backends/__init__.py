"""Rollout backends: one interface (:class:`~rollout.backends.base.Backend`), three implementations."""

from __future__ import annotations

BACKENDS = ("local", "standard", "serverless")
