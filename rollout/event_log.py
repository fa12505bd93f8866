"""The rollout event log: JSON lines, one object per event (start, step, promote, rollback)."""

from __future__ import annotations

import json
import time
import uuid
from pathlib import Path
from typing import Any


class EventLog:
    """Append-only JSON lines: one object per event (start, step, promote, rollback, error)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.path.parent.mkdir(parents=True, exist_ok=True)

    def write(self, event: str, **data: Any) -> dict[str, Any]:
        record = {"ts": time.time(), "event": event, **data}
        with open(self.path, "a") as out:
            out.write(json.dumps(record, default=str) + "\n")
        return record

    def read(self) -> list[dict[str, Any]]:
        if not self.path.exists():
            return []
        return [json.loads(line) for line in self.path.read_text().splitlines() if line.strip()]


def new_log(home: Path, name: str) -> EventLog:
    stamp = time.strftime("%Y%m%dT%H%M%S", time.gmtime())
    return EventLog(home / "rollouts" / f"{name}-{stamp}-{uuid.uuid4().hex[:6]}.jsonl")
