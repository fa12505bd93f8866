"""A real single-node Kubernetes with the KServe controller, for the node tier.

``scripts/node/up.sh`` starts it (etcd, kube-apiserver, controller-manager, scheduler, containerd,
kubelet, kube-proxy, CoreDNS, the KServe v0.20.0 manager and its webhooks) with its state in a
directory of ours; ``scripts/node/down.sh`` stops every process by its pid file and removes the
state, the bridge and the iptables rules. This module drives it the way a user does: kubectl,
helm and ``kubectl port-forward``. Requests go only to 127.0.0.1 (port-forwards) or to this
cluster's own Service and pod addresses.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Self, TypeVar

from testkit.procs import stop_process

REPO = Path(__file__).resolve().parents[2]
NODE_SCRIPTS = REPO / "scripts" / "node"

T = TypeVar("T")


class NodeError(RuntimeError):
    pass


def poll(
    what: str,
    fn: Callable[[], T | None],
    timeout: float,
    interval: float = 1.0,
    explain: Callable[[], str] | None = None,
) -> T:
    """Call ``fn`` until it returns something truthy; raise with ``explain()`` after ``timeout``."""
    deadline = time.monotonic() + timeout
    last_exc: Exception | None = None
    while True:
        try:
            value = fn()
            if value:
                return value
        except Exception as exc:  # noqa: BLE001 - keep polling, report the last failure
            last_exc = exc
        if time.monotonic() > deadline:
            detail = explain() if explain else ""
            raise TimeoutError(f"timed out after {timeout:.0f}s waiting for {what} (last error: {last_exc})\n{detail}")
        time.sleep(interval)


class InThread:
    """``_run`` in a daemon thread while the ``with`` block runs: started on entry; on exit ``_stop`` is set
    and the thread given 30 s to end."""

    def __init__(self) -> None:
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        raise NotImplementedError

    def __enter__(self) -> Self:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(30)


@dataclass
class Node:
    """Handles to a running node: its state dir, kubeconfig and the CLI tools."""

    state: Path
    tools: Path
    images: dict[str, str] = field(default_factory=dict)  # "minio" | "serving" | "training" | … -> reference

    @property
    def kubeconfig(self) -> Path:
        return self.state / "admin.kubeconfig"

    @property
    def registry(self) -> str | None:
        """host:port of the node's loopback registry (plain HTTP), None when up.sh started none."""
        addr = self.state / "registry.addr"
        return addr.read_text().strip() if addr.is_file() else None

    @property
    def gateway(self) -> str:
        """host:port where traefik serves the cluster's Gateways (scripts/node/gateway-up.sh)."""
        return (self.state / "gateway.addr").read_text().strip()

    @property
    def gateway_grpc(self) -> str:
        """host:port of the Gateways' gRPC listener (traefik's entry point `grpc`)."""
        return (self.state / "gateway-grpc.addr").read_text().strip()

    @property
    def gateway_metrics(self) -> str:
        """host:port of traefik's /metrics and /ping (loopback)."""
        return (self.state / "gateway-metrics.addr").read_text().strip()

    def env(self) -> dict[str, str]:
        return {**os.environ, "KUBECONFIG": str(self.kubeconfig)}

    def run(
        self, tool: str, *args: str, input: str | None = None, check: bool = True, timeout: float = 180
    ) -> subprocess.CompletedProcess[str]:
        result = subprocess.run(
            [str(self.tools / tool), *args],
            input=input,
            capture_output=True,
            text=True,
            env=self.env(),
            cwd=REPO,
            timeout=timeout,
        )
        if check and result.returncode != 0:
            output = f"{result.stdout[-2000:]}\n{result.stderr[-4000:]}"
            raise NodeError(f"{tool} {' '.join(args)} failed ({result.returncode}):\n{output}")
        return result

    def kubectl(self, *args: str, **kw: Any) -> subprocess.CompletedProcess[str]:
        return self.run("kubectl", *args, **kw)

    def helm(self, *args: str, **kw: Any) -> subprocess.CompletedProcess[str]:
        return self.run("helm", *args, **kw)

    def upgrade(self, chart: Path, release: str, namespace: str, *sets: str) -> subprocess.CompletedProcess[str]:
        """``helm upgrade --reuse-values`` of ``release`` with ``--set`` for each of ``sets`` (5 min at most)."""
        args = [a for item in sets for a in ("--set", item)]
        return self.helm("upgrade", release, str(chart), "-n", namespace, "--reuse-values", *args, "--timeout", "5m")

    def get(self, kind: str, name: str = "", namespace: str = "", selector: str = "") -> dict[str, Any]:
        args = ["get", kind] + ([name] if name else []) + (["-n", namespace] if namespace else [])
        args += (["-l", selector] if selector else []) + ["-o", "json"]
        return json.loads(self.kubectl(*args).stdout)

    def condition(self, obj: dict[str, Any], kind: str) -> str | None:
        for cond in obj.get("status", {}).get("conditions", []) or []:
            if cond.get("type") == kind:
                return cond.get("status")
        return None

    def restricted_namespace(self, namespace: str) -> None:
        """Create ``namespace`` enforcing the ``restricted`` Pod Security level."""
        self.kubectl("create", "namespace", namespace)
        self.kubectl(
            "label",
            "namespace",
            namespace,
            "pod-security.kubernetes.io/enforce=restricted",
            "pod-security.kubernetes.io/enforce-version=latest",
        )

    def secret(self, namespace: str, name: str) -> dict[str, str]:
        """A Secret's data, decoded."""
        import base64

        return {k: base64.b64decode(v).decode() for k, v in self.get("secret", name, namespace)["data"].items()}

    def s3_client(self, namespace: str, secret: str, port: int) -> Any:
        """boto3 S3 client for a port-forward to an in-cluster MinIO, with the credentials of ``secret``."""
        import boto3

        creds = self.secret(namespace, secret)
        return boto3.client(
            "s3",
            endpoint_url=f"http://127.0.0.1:{port}",
            aws_access_key_id=creds["AWS_ACCESS_KEY_ID"],
            aws_secret_access_key=creds["AWS_SECRET_ACCESS_KEY"],
            region_name="us-east-1",
        )

    def ready_pods(self, namespace: str, selector: str) -> list[dict[str, Any]]:
        pods = self.get("pods", namespace=namespace, selector=selector)["items"]
        return [
            p for p in pods if p["metadata"].get("deletionTimestamp") is None and self.condition(p, "Ready") == "True"
        ]

    def service_endpoints(self, namespace: str, service: str) -> set[str]:
        """The addresses a Service's EndpointSlices list as ready: what kube-proxy routes to."""
        slices = self.get("endpointslices", namespace=namespace, selector=f"kubernetes.io/service-name={service}")
        return {
            address
            for item in slices["items"]
            for endpoint in item.get("endpoints") or []
            if (endpoint.get("conditions") or {}).get("ready")
            for address in endpoint.get("addresses", [])
        }

    def diagnose(self, namespace: str) -> str:
        """What a person would look at when something in ``namespace`` is stuck."""
        parts = []
        for args in (
            ["get", "all,inferenceservices,jobs", "-n", namespace, "-o", "wide"],
            ["get", "events", "-n", namespace, "--sort-by=.lastTimestamp"],
            ["describe", "pods", "-n", namespace],
        ):
            parts.append(self.kubectl(*args, check=False).stdout[-6000:])
        for name in ("kserve-manager", "kubelet"):
            log = self.state / "logs" / f"{name}.log"
            if log.exists():
                parts.append(f"--- {name}.log (tail)\n" + "\n".join(log.read_text(errors="replace").splitlines()[-25:]))
        return "\n".join(parts)

    @contextmanager
    def port_forward(self, namespace: str, target: str, remote_port: int, timeout: float = 60) -> Iterator[int]:
        """``kubectl port-forward`` to 127.0.0.1:<local port>; yields the local port."""
        proc = subprocess.Popen(
            [
                str(self.tools / "kubectl"),
                "port-forward",
                "-n",
                namespace,
                "--address",
                "127.0.0.1",
                target,
                f":{remote_port}",
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            env=self.env(),
        )
        try:
            assert proc.stdout is not None
            deadline = time.monotonic() + timeout
            port = None
            seen = []
            while port is None:
                line = proc.stdout.readline()
                if not line:
                    if proc.poll() is not None or time.monotonic() > deadline:
                        raise NodeError(f"port-forward {target}:{remote_port} failed: {''.join(seen)}")
                    continue
                seen.append(line)
                match = re.search(r"Forwarding from 127\.0\.0\.1:(\d+)", line)
                if match:
                    port = int(match.group(1))
            yield port
        finally:
            stop_process(proc, 10)


def up(state: Path, tools: Path, timeout: float = 900) -> Node:
    """Run scripts/node/up.sh into ``state``; on failure stop what started and raise with the logs."""
    env = {**os.environ, "HOUSING_NODE_STATE": str(state), "HOUSING_TOOLS_DIR": str(tools)}
    try:
        result = subprocess.run(
            ["bash", str(NODE_SCRIPTS / "up.sh")], capture_output=True, text=True, env=env, timeout=timeout
        )
    except BaseException:  # timeout, Ctrl-C: the fixture has not yielded, so no teardown would stop it
        down(state, tools)
        raise
    if result.returncode != 0:
        logs = []
        for log in sorted((state / "logs").glob("*.log")):
            logs.append(f"--- {log.name}\n" + "\n".join(log.read_text(errors="replace").splitlines()[-15:]))
        down(state, tools)
        raise NodeError(
            f"scripts/node/up.sh failed ({result.returncode}):\n{result.stderr[-4000:]}\n" + "\n".join(logs)
        )
    return Node(state, tools)


def down(state: Path, tools: Path) -> None:
    """Run scripts/node/down.sh for ``state`` (idempotent)."""
    env = {**os.environ, "HOUSING_NODE_STATE": str(state), "HOUSING_TOOLS_DIR": str(tools)}
    subprocess.run(["bash", str(NODE_SCRIPTS / "down.sh")], capture_output=True, text=True, env=env, timeout=300)
