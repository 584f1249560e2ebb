"""deploy/: the systemd unit verifies, the example configs load, the container and Kubernetes files hold what
they promise, and the health probe tells a serving resolver from a dead one."""

from __future__ import annotations

import os
import re
import shutil
import socket
import subprocess
import sys
import textwrap
import tomllib
from pathlib import Path

import pytest

from blockdns import config
from blockdns.ops import probe
from blockdns.ops.httpaccess import reads_need_token

from conftest import base_config
from fakedns import FakeDNS
from opshelpers import NO_FEEDS

ROOT = Path(__file__).resolve().parent.parent
DEPLOY = ROOT / "deploy"
UNIT = DEPLOY / "blockdns.service"


def unit_settings(text: str) -> dict[str, list[str]]:
    values: dict[str, list[str]] = {}
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith(("#", ";", "[")) and "=" in line:
            key, _, value = line.partition("=")
            values.setdefault(key.strip(), []).append(value.strip())
    return values


# ------------------------------------------------------------------------------------------------ systemd


def run_verify(unit: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "SYSTEMD_LOG_LEVEL": "notice", "SYSTEMD_PAGER": "", "SYSTEMD_COLORS": "0"}
    return subprocess.run(
        ["systemd-analyze", "verify", str(unit)], capture_output=True, text=True, timeout=60, env=env
    )


def test_systemd_unit_verifies(tmp_path: Path) -> None:
    if shutil.which("systemd-analyze") is None:
        pytest.skip("systemd-analyze is not installed (Debian package systemd; tests/system-deps.sh)")
    # First make sure the analyzer itself works in this container, with a unit that is surely fine.
    control = tmp_path / "control-check.service"
    control.write_text("[Service]\nType=oneshot\nExecStart=/bin/true\n")
    baseline = run_verify(control)
    if baseline.returncode != 0:
        pytest.skip(f"systemd-analyze verify cannot run here: {baseline.stderr.strip()[:300]}")
    # The unit as shipped, with ExecStart pointing at a blockdns that exists on this machine.
    blockdns = shutil.which("blockdns") or str(Path(sys.executable).parent / "blockdns")
    assert Path(blockdns).exists(), "the blockdns console script is not installed"
    copy = tmp_path / "blockdns.service"
    copy.write_text(UNIT.read_text().replace("/usr/local/bin/blockdns", blockdns))
    result = run_verify(copy)
    problems = [line for line in result.stderr.splitlines() if "blockdns.service" in line]
    assert result.returncode == 0 and problems == [], result.stderr


def test_systemd_unit_is_locked_down() -> None:
    values = unit_settings(UNIT.read_text())
    one = {key: items[-1] for key, items in values.items()}
    assert one["ExecStart"] == "/usr/local/bin/blockdns serve --config /etc/blockdns/blockdns.toml"
    assert one["ExecReload"] == "/bin/kill -HUP $MAINPID"
    assert one["Restart"] == "on-failure"
    assert one["DynamicUser"] == "yes" and one["User"] == "blockdns"
    assert one["AmbientCapabilities"] == one["CapabilityBoundingSet"] == "CAP_NET_BIND_SERVICE"
    assert one["RestrictAddressFamilies"] == "AF_INET AF_INET6 AF_UNIX"
    assert one["SystemCallFilter"] == "@system-service"
    assert one["StateDirectory"] == "blockdns" and one["ReadWritePaths"] == "/var/lib/blockdns"
    for key in ("NoNewPrivileges", "ProtectHome", "PrivateTmp", "PrivateDevices", "MemoryDenyWriteExecute",
                "LockPersonality", "RestrictRealtime"):  # fmt: skip
        assert one[key] == "yes", key
    assert one["ProtectSystem"] == "strict"


# ---------------------------------------------------------------------------------------------- configs


def configmap_toml(overlay: str = "base") -> str:
    text = (DEPLOY / "kubernetes" / overlay / "configmap.yaml").read_text()
    block = text.split("blockdns.toml: |\n", 1)[1]
    lines = []
    for line in block.splitlines():
        if line and not line.startswith("    "):
            break
        lines.append(line)
    return textwrap.dedent("\n".join(lines))


@pytest.mark.parametrize("name", ["blockdns.toml", "docker.toml", "configmap"])
def test_example_configs_load(name: str) -> None:
    if name == "configmap":
        settings = config.from_dict(
            tomllib.loads(configmap_toml()), source=DEPLOY / "kubernetes" / "base" / "x.toml"
        )
    else:
        settings = config.load(DEPLOY / name)
    assert "0.0.0.0:53" in settings.server.listen
    assert str(settings.querylog_path()).startswith("/var/lib/blockdns/")
    assert str(settings.resolve_path(settings.lists.data_dir)).startswith("/var/lib/blockdns/")
    assert settings.querylog.clients == "hash"
    assert settings.api.token == ""  # changes refused until the admin sets a token
    address = settings.api.address()
    assert address is not None
    # The query log and counters are never readable beyond this host without the token: a container binds
    # the pod's or container's address, so reads need the token there (and stay refused until one is set).
    assert reads_need_token(settings.api.read_token, address[0]) is (name != "blockdns.toml")
    if name == "blockdns.toml":
        assert settings.server.listen == ["0.0.0.0:53", "[::]:53"]
        assert settings.api.listen == "127.0.0.1:8053"


def test_production_config_passes_config_check() -> None:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    result = subprocess.run(
        [sys.executable, "-m", "blockdns", "config", "check", "--config", str(DEPLOY / "blockdns.toml")],
        capture_output=True, text=True, timeout=120, env=env, cwd=ROOT,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert "valid" in result.stdout


# --------------------------------------------------------------------------------------------- containers


def test_dockerfile() -> None:
    text = (DEPLOY / "Dockerfile").read_text()
    assert re.search(r"^FROM python:3\.11-slim\b", text, re.M)
    assert re.search(r"^USER blockdns:blockdns$", text, re.M)
    assert re.search(r"^EXPOSE 53/udp 53/tcp 8053/tcp$", text, re.M)
    assert "HEALTHCHECK" in text and '"blockdns.ops.probe", "127.0.0.1:53"' in text
    assert re.search(r"^RUN pip install /tmp/blockdns-src", text, re.M)
    for source in re.findall(r"^COPY (.+) \S+$", text, re.M):
        for path in source.split():
            assert (ROOT / path).exists(), f"COPY {path}: not in the repository"


def test_compose_file() -> None:
    text = (DEPLOY / "docker-compose.yml").read_text()
    assert "dockerfile: deploy/Dockerfile" in text and "context: .." in text
    for needle in ('"53:53/udp"', '"53:53/tcp"', '"127.0.0.1:8053:8053/tcp"', "cap_drop: [ALL]",
                   "cap_add: [NET_BIND_SERVICE]", "no-new-privileges:true", "read_only: true",
                   "/var/lib/blockdns"):  # fmt: skip
        assert needle in text, needle
    assert "\t" not in text


def test_kubernetes_manifests() -> None:
    directory = DEPLOY / "kubernetes" / "base"
    text = "\n".join(path.read_text() for path in sorted(directory.glob("*.yaml")))
    assert "\t" not in text
    for needle in ("kind: Deployment", "replicas: 3", "runAsNonRoot: true", "allowPrivilegeEscalation: false",
                   'add: ["NET_BIND_SERVICE"]', 'drop: ["ALL"]', "readinessProbe:", "livenessProbe:",
                   "blockdns.ops.probe", "kind: Service", "protocol: UDP", "protocol: TCP", "port: 53",
                   "kind: ConfigMap", "readOnlyRootFilesystem: true"):  # fmt: skip
        assert needle in text, needle
    kubectl = shutil.which("kubectl")
    if kubectl is None:
        pytest.skip("kubectl is not installed: the manifests were checked as text only")
    rendered = subprocess.run(
        [kubectl, "kustomize", str(directory)], capture_output=True, text=True, timeout=60
    )
    assert rendered.returncode == 0, rendered.stderr
    kinds = re.findall(r"^kind: (\w+)$", rendered.stdout, re.M)
    assert sorted(kinds) == ["ConfigMap", "Deployment", "PodDisruptionBudget", "Service", "Service"]


# ------------------------------------------------------------------------------------------------- probe


def test_probe_against_the_real_server(start_server) -> None:
    upstream = FakeDNS("127.0.0.2").start()
    try:
        server = start_server(base_config(upstream, lists={"feeds": str(NO_FEEDS)}))
        address = f"127.0.0.1:{server.port}"
        assert probe.main([address]) == 0  # the canary is answered locally: no upstream call
        assert probe.main([address, "--tcp"]) == 0
        assert upstream.calls == []
    finally:
        upstream.stop()


def test_probe_failures(capsys: pytest.CaptureFixture[str]) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as silent:  # bound, never answers
        silent.bind(("127.0.0.1", 0))
        port = silent.getsockname()[1]
        assert probe.main([f"127.0.0.1:{port}", "--timeout", "0.3"]) == 1
    assert "no reply" in capsys.readouterr().err
    assert probe.main(["127.0.0.1:0"]) == 2
    assert probe.main(["[::1", "--timeout", "0.1"]) == 2
    assert probe.main(["127.0.0.1:53", "--name", "bad..name"]) == 2


def test_probe_rejects_a_reply_to_another_question() -> None:
    query = probe.build_query(0x1234, "use-application-dns.net", 1)
    reply = bytearray(query)
    reply[2] |= 0x80
    assert probe.is_reply_to(bytes(reply), query)
    other = probe.build_query(0x1234, "example.com", 1)
    other_reply = bytearray(other)
    other_reply[2] |= 0x80
    assert not probe.is_reply_to(bytes(other_reply), query)
    assert not probe.is_reply_to(query, query)  # not a response


def test_kubernetes_cluster_wires_the_replicas_to_redis_and_postgresql() -> None:
    settings = config.from_dict(
        tomllib.loads(configmap_toml("cluster")), source=DEPLOY / "kubernetes" / "cluster" / "x.toml"
    )
    assert settings.cluster.redis == "redis://redis:6379/0"
    assert settings.querylog.path == "postgresql://blockdns@postgres/blockdns"
    assert settings.api.token == "" and "0.0.0.0:53" in settings.server.listen
    kubectl = shutil.which("kubectl")
    if kubectl is None:
        pytest.skip("kubectl is not installed: the cluster overlay's config was checked, not its manifests")
    rendered = subprocess.run(
        [kubectl, "kustomize", str(DEPLOY / "kubernetes")], capture_output=True, text=True, timeout=60
    )
    assert rendered.returncode == 0, rendered.stderr
    text = rendered.stdout
    kinds = re.findall(r"^kind: (\w+)$", text, re.M)
    assert sorted(kinds) == ["ConfigMap", "Deployment", "Deployment", "PodDisruptionBudget", "Service",
                             "Service", "Service", "Service", "StatefulSet"]  # fmt: skip
    for needle in ("name: redis\n", "name: postgres\n", "name: PGPASSWORD", "name: blockdns-postgres",
                   'redis = "redis://redis:6379/0"', "port: 6379", "port: 5432"):  # fmt: skip
        assert needle in text, needle
    # Every container runs as non-root without privilege escalation, every capability dropped.
    documents = text.split("\n---\n")
    workloads = [d for d in documents if re.search(r"^kind: (Deployment|StatefulSet)$", d, re.M)]
    assert len(workloads) == 3
    for document in workloads:
        assert "runAsNonRoot: true" in document and "allowPrivilegeEscalation: false" in document
        assert "- ALL" in document or '["ALL"]' in document
