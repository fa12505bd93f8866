"""A real etcd + kube-apiserver for the cluster tier, with the KServe InferenceService CRD.

The binaries and the CRD come from scripts/tools/kube.sh (built from source with the
Go toolchain, the CRD taken from the kserve Go module) into ``$HOUSING_TOOLS_DIR``. This module
starts both servers on free ports in a temporary directory: a CA and a serving certificate for
127.0.0.1, a service-account signing key, a static token in ``system:masters``, RBAC
authorization (so a Role can be checked for real), then creates the CRD from the file and waits
until it is Established. No controllers run: nothing reconciles an InferenceService, so what we
read back is exactly what the API server stored (defaulting, pruning, validation included).
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import json
import os
import secrets
import socket
import ssl
import subprocess
import time
import urllib.request
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from testkit.procs import stop_process

TOOLS_DIR = Path(os.environ.get("HOUSING_TOOLS_DIR", Path.home() / ".cache" / "housing" / "bin"))
CRD_NAME = "inferenceservices.serving.kserve.io"
INSTALL_HINT = "bash scripts/tools/kube.sh"


class ApiServerError(RuntimeError):
    pass


@dataclass
class Tools:
    etcd: Path
    kube_apiserver: Path
    crd: Path

    @property
    def kserve_version(self) -> str:
        return self.crd.resolve().parent.name


def find_tools(tools_dir: Path = TOOLS_DIR) -> tuple[Tools | None, list[str]]:
    """The binaries and the CRD file, or None and what is missing."""
    etcd = tools_dir / "etcd"
    kas = tools_dir / "kube-apiserver"
    crd = tools_dir / "kserve-crds" / "current" / "serving.kserve.io_inferenceservices.yaml"
    missing = [str(p) for p in (etcd, kas) if not (p.is_file() and os.access(p, os.X_OK))]
    if not crd.is_file():
        missing.append(str(crd))
    return (None, missing) if missing else (Tools(etcd, kas, crd), [])


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _write_pki(root: Path) -> dict[str, Path]:
    """CA, a serving certificate for 127.0.0.1/localhost, and the service-account key pair."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    def pem_key(key: Any) -> bytes:
        return key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )

    now = dt.datetime.now(dt.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "housing-test-ca")])
    ca = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(True, False, False, False, False, True, True, False, False), critical=True
        )  # digital_signature, key_cert_sign, crl_sign
        .sign(ca_key, hashes.SHA256())
    )
    srv_key = ec.generate_private_key(ec.SECP256R1())
    srv = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "kube-apiserver")]))
        .issuer_name(ca_name)
        .public_key(srv_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName(
                [
                    x509.DNSName("localhost"),
                    x509.DNSName("kubernetes.default.svc"),
                    x509.IPAddress(ipaddress.ip_address("127.0.0.1")),
                    x509.IPAddress(ipaddress.ip_address("10.0.0.1")),
                ]
            ),
            critical=False,
        )
        .add_extension(x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    sa_key = ec.generate_private_key(ec.SECP256R1())
    files = {
        "ca": root / "ca.crt",
        "cert": root / "apiserver.crt",
        "key": root / "apiserver.key",
        "sa_key": root / "sa.key",
        "sa_pub": root / "sa.pub",
    }
    files["ca"].write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    files["cert"].write_bytes(srv.public_bytes(serialization.Encoding.PEM))
    files["key"].write_bytes(pem_key(srv_key))
    files["sa_key"].write_bytes(pem_key(sa_key))
    files["sa_pub"].write_bytes(
        sa_key.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    )
    for key in ("key", "sa_key"):
        files[key].chmod(0o600)
    return files


def _tail(path: Path, lines: int = 40) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


@dataclass
class ApiServer:
    """etcd + kube-apiserver in ``root``; ``start()`` then ``stop()`` (or use as a context manager)."""

    tools: Tools
    root: Path
    token: str = field(default_factory=lambda: secrets.token_hex(16))
    host: str = "127.0.0.1"
    port: int = 0
    procs: list[subprocess.Popen] = field(default_factory=list)
    versions: dict[str, str] = field(default_factory=dict)

    @property
    def url(self) -> str:
        return f"https://{self.host}:{self.port}"

    @property
    def ca_file(self) -> Path:
        return self.root / "pki" / "ca.crt"

    @property
    def kubeconfig(self) -> Path:
        return self.root / "kubeconfig"

    # -- lifecycle -------------------------------------------------------------------------
    def __enter__(self) -> ApiServer:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _spawn(self, name: str, args: list[str]) -> subprocess.Popen:
        log = open(self.root / f"{name}.log", "wb")  # noqa: SIM115 - kept open for the process' life
        proc = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        log.close()
        self.procs.append(proc)
        return proc

    def start(self, timeout: float = 120.0) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        pki_dir = self.root / "pki"
        pki_dir.mkdir(exist_ok=True)
        pki = _write_pki(pki_dir)
        self.versions = {
            "etcd": _version([str(self.tools.etcd), "--version"]),
            "kube-apiserver": _version([str(self.tools.kube_apiserver), "--version"]),
            "kserve-crd": self.tools.kserve_version,
        }
        try:
            self._start_etcd(timeout)
            self._start_apiserver(pki, timeout)
            self._write_kubeconfig()
            self.install_crd(timeout)
        except BaseException:
            self.stop()
            raise

    def _start_etcd(self, timeout: float) -> None:
        client, peer = free_port(), free_port()
        self.etcd_url = f"http://127.0.0.1:{client}"
        self.etcd = self._spawn(
            "etcd",
            [
                str(self.tools.etcd),
                "--name=housing-test",
                f"--data-dir={self.root / 'etcd'}",
                f"--listen-client-urls={self.etcd_url}",
                f"--advertise-client-urls={self.etcd_url}",
                f"--listen-peer-urls=http://127.0.0.1:{peer}",
                f"--initial-advertise-peer-urls=http://127.0.0.1:{peer}",
                f"--initial-cluster=housing-test=http://127.0.0.1:{peer}",
                "--unsafe-no-fsync",
                "--log-level=warn",
            ],
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.etcd.poll() is not None:
                raise ApiServerError(f"etcd exited with {self.etcd.returncode}:\n{_tail(self.root / 'etcd.log')}")
            try:
                with urllib.request.urlopen(f"{self.etcd_url}/health", timeout=2) as resp:
                    if json.load(resp).get("health") == "true":
                        return
            except OSError:
                pass
            time.sleep(0.2)
        raise ApiServerError(f"etcd not healthy after {timeout} s:\n{_tail(self.root / 'etcd.log')}")

    def _start_apiserver(self, pki: dict[str, Path], timeout: float) -> None:
        self.port = free_port()
        tokens = self.root / "tokens.csv"
        tokens.write_text(f'{self.token},housing-admin,housing-admin,"system:masters"\n')
        tokens.chmod(0o600)
        self.apiserver = self._spawn(
            "kube-apiserver",
            [
                str(self.tools.kube_apiserver),
                f"--etcd-servers={self.etcd_url}",
                f"--bind-address={self.host}",
                f"--advertise-address={self.host}",
                f"--secure-port={self.port}",
                f"--cert-dir={self.root / 'certs'}",
                f"--tls-cert-file={pki['cert']}",
                f"--tls-private-key-file={pki['key']}",
                f"--client-ca-file={pki['ca']}",
                f"--token-auth-file={tokens}",
                "--authorization-mode=RBAC",
                f"--service-account-key-file={pki['sa_pub']}",
                f"--service-account-signing-key-file={pki['sa_key']}",
                "--service-account-issuer=https://kubernetes.default.svc",
                "--service-cluster-ip-range=10.0.0.0/24",
                "--disable-admission-plugins=ServiceAccount",
                "--allow-privileged=true",
                "--v=1",
            ],
        )
        ctx = ssl.create_default_context(cafile=str(pki["ca"]))
        deadline = time.monotonic() + timeout
        last = ""
        while time.monotonic() < deadline:
            if self.apiserver.poll() is not None:
                code = self.apiserver.returncode
                raise ApiServerError(f"kube-apiserver exited with {code}:\n{_tail(self.root / 'kube-apiserver.log')}")
            req = urllib.request.Request(f"{self.url}/readyz", headers={"Authorization": f"Bearer {self.token}"})
            try:
                with urllib.request.urlopen(req, timeout=5, context=ctx) as resp:
                    if resp.status == 200:
                        return
            except OSError as exc:
                last = str(exc)
            time.sleep(0.5)
        raise ApiServerError(
            f"kube-apiserver not ready after {timeout} s ({last}):\n{_tail(self.root / 'kube-apiserver.log')}"
        )

    def _write_kubeconfig(self) -> None:
        config = {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [
                {"name": "housing-test", "cluster": {"server": self.url, "certificate-authority": str(self.ca_file)}}
            ],
            "users": [{"name": "housing-admin", "user": {"token": self.token}}],
            "contexts": [
                {
                    "name": "housing-test",
                    "context": {"cluster": "housing-test", "user": "housing-admin", "namespace": "default"},
                }
            ],
            "current-context": "housing-test",
        }
        self.kubeconfig.write_text(yaml.safe_dump(config))
        self.kubeconfig.chmod(0o600)

    def stop(self) -> None:
        for proc in reversed(self.procs):
            stop_process(proc, 15)
        self.procs.clear()

    # -- clients ---------------------------------------------------------------------------
    def api_client(self, token: str | None = None) -> Any:
        """A fresh kubernetes.client.ApiClient for this server (admin unless ``token`` is given)."""
        from kubernetes import client

        cfg = client.Configuration()
        cfg.host = self.url
        cfg.ssl_ca_cert = str(self.ca_file)
        cfg.verify_ssl = True
        cfg.api_key = {"authorization": token or self.token}
        cfg.api_key_prefix = {"authorization": "Bearer"}
        return client.ApiClient(cfg)

    def admin_objects(self, namespace: str) -> Any:
        """CustomObjectsApi as a system:masters user, with ``namespace`` created (if it was not)."""
        from kubernetes import client

        api_client = self.api_client()
        ensure_namespace(api_client, namespace)
        return client.CustomObjectsApi(api_client)

    def install_crd(self, timeout: float = 60.0) -> dict:
        """Create the KServe CRD from the cached file and wait until it is Established and served."""
        from kubernetes import client

        body = yaml.safe_load(self.tools.crd.read_text())
        ext = client.ApiextensionsV1Api(self.api_client())
        ext.create_custom_resource_definition(body)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            crd = ext.read_custom_resource_definition(CRD_NAME)
            conds = {c.type: c.status for c in (crd.status.conditions or [])}
            if conds.get("Established") == "True" and conds.get("NamesAccepted") == "True":
                break
            time.sleep(0.2)
        else:
            raise ApiServerError(f"CRD {CRD_NAME} not Established after {timeout} s")
        # Established can precede discovery/serving by a moment: wait until a list succeeds.
        custom = client.CustomObjectsApi(self.api_client())
        while time.monotonic() < deadline:
            try:
                custom.list_cluster_custom_object("serving.kserve.io", "v1beta1", "inferenceservices")
                return body
            except client.ApiException as exc:
                if exc.status != 404:
                    raise
            time.sleep(0.2)
        raise ApiServerError(f"CRD {CRD_NAME} Established but not served after {timeout} s")


def ensure_namespace(api_client: Any, namespace: str) -> None:
    """Create ``namespace`` unless it exists."""
    from kubernetes import client

    try:
        client.CoreV1Api(api_client).create_namespace({"metadata": {"name": namespace}})
    except client.ApiException as exc:
        if exc.status != 409:
            raise


def unique(prefix: str) -> str:
    """``prefix`` with a random suffix, so objects of different tests do not collide."""
    return f"{prefix}-{uuid.uuid4().hex[:6]}"


def _version(cmd: list[str]) -> str:
    try:
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=30).stdout
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"unknown ({exc})"
    return out.strip().splitlines()[0] if out.strip() else "unknown"
