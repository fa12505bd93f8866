"""A throwaway Prometheus for the embedded mode: scrapes the local deployment via file SD.

``housing rollout run --backend local`` without ``--prometheus-url`` starts one (Debian's
``/usr/bin/prometheus`` or ``prometheus`` on PATH) with a 1 s scrape interval over the target
list the local backend keeps up to date, and stops it at the end.

It is ready once it has scraped every listed target: a counter's first sample is where
``increase()`` starts counting, so requests served before it would be lost to the gates.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import time
from pathlib import Path

import httpx

from common.net import free_port
from common.procs import stop_process
from rollout.errors import RolloutError


class LocalPrometheus:
    def __init__(self, workdir: Path, targets_file: Path, scrape_interval: str = "1s") -> None:
        self.workdir = workdir
        self.targets_file = targets_file
        self.scrape_interval = scrape_interval
        self.port = free_port()
        self.proc: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout: float = 30.0) -> LocalPrometheus:
        binary = shutil.which("prometheus") or ("/usr/bin/prometheus" if Path("/usr/bin/prometheus").exists() else None)
        if binary is None:
            raise RolloutError(
                "no prometheus binary found; install it (apt-get install prometheus) or pass --prometheus-url"
            )
        self.workdir.mkdir(parents=True, exist_ok=True)
        config = self.workdir / "prometheus.yml"
        config.write_text(
            "global:\n"
            f"  scrape_interval: {self.scrape_interval}\n"
            "scrape_configs:\n"
            "  - job_name: housing\n"
            "    file_sd_configs:\n"
            f"      - files: ['{self.targets_file}']\n"
            "        refresh_interval: 1s\n"
        )
        with open(self.workdir / "prometheus.log", "ab") as log:
            self.proc = subprocess.Popen(
                [
                    binary,
                    f"--config.file={config}",
                    f"--storage.tsdb.path={self.workdir / 'tsdb'}",
                    f"--web.listen-address=127.0.0.1:{self.port}",
                ],
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RolloutError(
                    f"prometheus exited with {self.proc.returncode}; see {self.workdir / 'prometheus.log'}"
                )
            try:
                if httpx.get(f"{self.url}/-/ready", timeout=1.0).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            time.sleep(0.2)
        else:
            self.stop()
            raise RolloutError(f"prometheus not ready after {timeout:.0f}s")
        try:
            self.wait_scraped(max(deadline - time.monotonic(), 1.0))
        except RolloutError:
            self.stop()
            raise
        return self

    def listed(self) -> set[str]:
        """The ``host:port`` of every target in the file-SD list (empty while there is none)."""
        try:
            groups = json.loads(self.targets_file.read_text())
        except (OSError, ValueError):
            return set()
        return {t for group in groups for t in group.get("targets", [])}

    def wait_scraped(self, timeout: float) -> None:
        """Return once every listed target has been scraped successfully at least once."""
        deadline = time.monotonic() + timeout
        pending: dict[str, str] = {}
        while time.monotonic() < deadline:
            wanted = self.listed()
            try:
                active = httpx.get(f"{self.url}/api/v1/targets", params={"state": "active"}, timeout=2.0)
                targets = active.json()["data"]["activeTargets"]
            except (httpx.HTTPError, ValueError, KeyError):
                targets = []
            up = {t["labels"].get("instance") for t in targets if t.get("health") == "up"}
            pending = {
                t["labels"].get("instance", "?"): t.get("lastError") or t.get("health", "?")
                for t in targets
                if t["labels"].get("instance") in wanted - up
            }
            pending.update({t: "not discovered yet" for t in wanted - up if t not in pending})
            if not pending:
                return
            time.sleep(0.2)
        detail = "; ".join(f"{t}: {why}" for t, why in sorted(pending.items()))
        raise RolloutError(f"prometheus did not scrape every target within {timeout:.0f}s ({detail})")

    def __enter__(self) -> LocalPrometheus:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def stop(self) -> None:
        if self.proc is not None:
            stop_process(self.proc)
