"""The embedded backend: two real predictor processes behind the local router.

It mirrors the cluster: the champion and the challenger are each a ``python -m predictor``
process, and ``python -m rollout.router`` in front of them plays the gateway. The "patch" is a
POST to the router's ``/router/state``. Processes are started detached and recorded in
``HOUSING_HOME/rollouts/local-<name>.json`` so separate CLI invocations (start, status,
promote, …) act on the same deployment; a Prometheus file-SD target list is kept next to it.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx

from common.net import free_port, wait_http
from common.procs import pid_alive, stop_pid
from common.series import MODEL_INFO
from rollout.backends.base import Prepared, RolloutStatus, check_percent
from rollout.errors import RolloutError

PACKAGE_ROOT = Path(__file__).resolve().parents[2]
_INFO = re.compile(rf"^{MODEL_INFO}\{{([^}}]*)\}}\s", re.MULTILINE)


def model_version_from_metrics(text: str) -> str | None:
    """The ``model_version`` label of ``housing_model_info`` in a predictor's /metrics."""
    m = _INFO.search(text)
    if not m:
        return None
    labels = dict(re.findall(r'(\w+)="((?:[^"\\]|\\.)*)"', m.group(1)))
    return labels.get("model_version")


class LocalBackend:
    """Champion + challenger predictor processes behind ``rollout.router``."""

    name = "local"
    runs_champion = True

    def __init__(
        self,
        home: Path,
        model_name: str,
        deployment: str = "housing",
        *,
        predictor_args: list[str] | None = None,
        env: dict[str, str] | None = None,
        ready_timeout: float = 90.0,
    ) -> None:
        self.home = Path(home)
        self.model_name = model_name
        self.deployment = deployment
        self.predictor_args = predictor_args or []
        self.env = env or {}
        self.ready_timeout = ready_timeout
        self.dir = self.home / "rollouts"
        self.state_path = self.dir / f"local-{deployment}.json"
        self.targets_path = self.dir / f"local-{deployment}-targets.json"
        self.http = httpx.Client(timeout=10.0)

    # -- persisted state ---------------------------------------------------------------------
    def load(self) -> dict[str, Any]:
        if not self.state_path.exists():
            return {}
        return json.loads(self.state_path.read_text())

    def save(self, state: dict[str, Any]) -> None:
        self.dir.mkdir(parents=True, exist_ok=True)
        self.state_path.write_text(json.dumps(state, indent=2))
        targets = [state["router"]["address"]] if state.get("router") else []
        targets += [state[r]["address"] for r in ("champion", "challenger") if state.get(r)]
        self.targets_path.write_text(json.dumps([{"targets": targets, "labels": {"deployment": self.deployment}}]))

    def _require(self) -> dict[str, Any]:
        state = self.load()
        if not state.get("router") or not pid_alive(state["router"].get("pid")):
            raise RolloutError(
                f"no local deployment {self.deployment!r} is running; start one with `housing rollout start`"
            )
        return state

    # -- processes ---------------------------------------------------------------------------
    def _env(self) -> dict[str, str]:
        env = {**os.environ, "PYTHONUNBUFFERED": "1", **self.env}
        env["PYTHONPATH"] = os.pathsep.join(p for p in (str(PACKAGE_ROOT), env.get("PYTHONPATH", "")) if p)
        return env

    def _spawn(self, args: list[str], log_name: str) -> subprocess.Popen:
        log_dir = self.dir / "logs"
        log_dir.mkdir(parents=True, exist_ok=True)
        with open(log_dir / log_name, "ab") as out:
            return subprocess.Popen(
                args,
                stdout=out,
                stderr=subprocess.STDOUT,
                env=self._env(),
                cwd=str(PACKAGE_ROOT),
                start_new_session=True,
            )

    def _wait(self, proc: subprocess.Popen, url: str, what: str, log_name: str) -> None:
        try:
            wait_http(url, self.ready_timeout, proc, what)
        except RuntimeError as exc:
            tail = (self.dir / "logs" / log_name).read_text(errors="replace")[-2000:]
            raise RolloutError(f"{exc}:\n{tail}") from None
        except TimeoutError:
            stop_pid(proc.pid)
            raise RolloutError(f"{what} not ready after {self.ready_timeout:.0f}s ({url})") from None

    def spawn_predictor(self, uri: str, role: str, digest: str | None = None) -> dict[str, Any]:
        """Start ``python -m predictor`` for ``uri`` (pinned to ``digest``) and wait until the model is ready."""
        port, grpc = free_port(), free_port()
        where = ["--storage_uri", uri] if ("://" in uri or uri.startswith("models:/")) else ["--model_dir", uri]
        if digest:
            where += ["--bundle_digest", digest]
        args = [
            sys.executable,
            "-m",
            "predictor",
            "--model_name",
            self.model_name,
            *where,
            "--http_port",
            str(port),
            "--grpc_port",
            str(grpc),
            *self.predictor_args,
        ]
        log_name = f"{self.deployment}-{role}-{port}.log"
        proc = self._spawn(args, log_name)
        url = f"http://127.0.0.1:{port}"
        self._wait(proc, f"{url}/v2/models/{self.model_name}/ready", f"{role} predictor", log_name)
        version = model_version_from_metrics(self.http.get(f"{url}/metrics").text) or uri
        return {
            "uri": uri,
            "url": url,
            "address": f"127.0.0.1:{port}",
            "pid": proc.pid,
            "version": version,
            "log": log_name,
        }

    def _router(self, data: dict[str, Any]) -> dict[str, Any]:
        state = self._require()
        response = self.http.post(f"{state['router']['url']}/router/state", json=data)
        if response.status_code != 200:
            raise RolloutError(f"router refused {data}: {response.text}")
        return response.json()

    @staticmethod
    def _upstream(entry: dict[str, Any] | None) -> dict[str, str] | None:
        return {"url": entry["url"], "version": entry["version"]} if entry else None

    # -- lifecycle ---------------------------------------------------------------------------
    def up(self, champion_uri: str, port: int | None = None, sticky: bool = False) -> RolloutStatus:
        """Start the champion predictor and the router (no-op when already running)."""
        state = self.load()
        if state.get("router") and pid_alive(state["router"].get("pid")):
            return self.status()
        champion = self.spawn_predictor(champion_uri, "champion")
        port = port or free_port()
        args = [
            sys.executable,
            "-m",
            "rollout.router",
            "--port",
            str(port),
            "--champion",
            champion["url"],
            "--champion-version",
            champion["version"],
        ]
        if sticky:
            args.append("--sticky")
        log_name = f"{self.deployment}-router-{port}.log"
        try:
            proc = self._spawn(args, log_name)
            url = f"http://127.0.0.1:{port}"
            self._wait(proc, f"{url}/router/healthz", "router", log_name)
        except RolloutError:
            stop_pid(champion["pid"])
            raise
        self.save(
            {
                "router": {"url": url, "address": f"127.0.0.1:{port}", "pid": proc.pid},
                "champion": champion,
                "challenger": None,
            }
        )
        return self.status()

    def prepare(
        self, champion_uri: str | None, challenger_uri: str, *, port: int | None = None, sticky: bool = False
    ) -> Prepared:
        """Start the champion behind the router and the challenger at 0 % (its version is read from it)."""
        if champion_uri is None:
            raise RolloutError("the local backend needs the champion's bundle URI")
        self.up(champion_uri, port=port, sticky=sticky)
        status = self.start(challenger_uri, 0)
        return Prepared(
            status.champion_version,
            status.challenger_version,
            None,
            router_url=self.url,
            targets_file=self.targets_path,
        )

    def close(self) -> None:
        """Stop the router and both predictors (see :meth:`down`)."""
        self.down()

    def detach_challenger(self) -> RolloutStatus:
        """Take the challenger out of the router (weight and shadow) and stop its process."""
        self._router({"challenger": None, "weight": 0, "shadow": 0})
        state = self.load()
        if state.get("challenger"):
            stop_pid(state["challenger"].get("pid"))
            state["challenger"] = None
            self.save(state)
        return self.status()

    def down(self) -> None:
        """Stop every process of this deployment and forget it."""
        state = self.load()
        for key in ("router", "challenger", "champion"):
            if state.get(key):
                stop_pid(state[key].get("pid"))
        self.state_path.unlink(missing_ok=True)
        self.targets_path.unlink(missing_ok=True)

    @property
    def url(self) -> str:
        return self._require()["router"]["url"]

    def start(
        self, challenger_uri: str, percent: int, *, shadow: float = 0.0, digest: str | None = None
    ) -> RolloutStatus:
        check_percent(percent)
        state = self._require()
        if state.get("challenger"):
            if state["challenger"]["uri"] != challenger_uri:
                raise RolloutError(
                    f"a challenger is already running ({state['challenger']['uri']}); promote or roll back first"
                )
        else:
            state["challenger"] = self.spawn_predictor(challenger_uri, "challenger", digest)
            self.save(state)
        self._router({"challenger": self._upstream(state["challenger"]), "weight": percent, "shadow": shadow})
        return self.status()

    def set_weight(self, percent: int) -> RolloutStatus:
        check_percent(percent)
        self._router({"weight": percent})
        return self.status()

    def set_shadow(self, fraction: float) -> RolloutStatus:
        self._router({"shadow": fraction})
        return self.status()

    def promote(self) -> RolloutStatus:
        state = self._require()
        if not state.get("challenger"):
            raise RolloutError("no challenger to promote")
        old = state["champion"]
        self._router({"champion": self._upstream(state["challenger"]), "challenger": None, "weight": 0, "shadow": 0})
        state["champion"], state["challenger"] = state["challenger"], None
        state["previous"] = {k: old[k] for k in ("uri", "version")}
        self.save(state)
        time.sleep(0.2)  # let in-flight requests to the old champion finish
        stop_pid(old.get("pid"))
        return self.status()

    def rollback(self, reason: str) -> RolloutStatus:
        state = self._require()
        self._router({"challenger": None, "weight": 0, "shadow": 0})
        old = state.get("challenger")
        state["challenger"] = None
        state["last_rollback"] = {"reason": reason, "uri": old["uri"] if old else None, "at": time.time()}
        self.save(state)
        if old:
            time.sleep(0.2)
            stop_pid(old.get("pid"))
        return self.status()

    def status(self) -> RolloutStatus:
        state = self.load()
        router = state.get("router")
        if not router or not pid_alive(router.get("pid")):
            return RolloutStatus(backend="local", ready=False, detail={"running": False})
        try:
            live = self.http.get(f"{router['url']}/router/state").json()
        except httpx.HTTPError as exc:
            return RolloutStatus(backend="local", ready=False, detail={"error": str(exc)})
        champion, challenger = state.get("champion") or {}, state.get("challenger") or {}
        weight = int(live.get("weight") or 0) if live.get("challenger") else 0
        ready = all(pid_alive(e.get("pid")) for e in (champion, challenger) if e)
        return RolloutStatus(
            backend="local",
            champion=champion.get("uri"),
            challenger=challenger.get("uri"),
            champion_version=champion.get("version"),
            challenger_version=challenger.get("version"),
            champion_percent=100 - weight,
            challenger_percent=weight,
            ready=ready,
            detail={"router": router["url"], "router_state": live, "targets_file": str(self.targets_path)},
        )
