"""testkit.servers: a server that never turns healthy is stopped, not left behind by its fixture."""

import sys
from pathlib import Path

import pytest

from testkit.servers import ServerProcess


class Silent(ServerProcess):
    """A process (with a child in its group) that never answers its health URL."""

    name = "silent"

    def command(self) -> list[str]:
        sleep = "import time; time.sleep(300)"
        parent = f"import subprocess, sys, time; subprocess.Popen([sys.executable, '-c', {sleep!r}]); time.sleep(300)"
        return [sys.executable, "-c", parent]

    def health_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/health"


def test_a_server_not_healthy_in_time_is_stopped_with_its_process_group(tmp_path: Path) -> None:
    server = Silent(tmp_path)
    with pytest.raises(TimeoutError):
        server.start(timeout=2)
    assert server.proc is not None and server.proc.poll() is not None  # the server itself is gone
    assert live_members(server.proc.pid) == []  # and nothing of its process group is left running


def live_members(pgid: int) -> list[int]:
    """Processes of group ``pgid`` that are not zombies (an orphan may wait to be reaped by init)."""
    members = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[2]) == pgid and fields[0] != "Z":
                members.append(int(entry.name))
    return members
