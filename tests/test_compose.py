"""docker-compose.yaml is validated, not started (no Docker engine runs on these machines)."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
PLACEHOLDER = re.compile(r"\$\{(\w+)(?::?[-?][^}]*)?\}")


@pytest.fixture(scope="module")
def compose() -> dict:
    return yaml.safe_load((ROOT / "docker-compose.yaml").read_text())


def env_example() -> dict[str, str]:
    lines = (ROOT / ".env.example").read_text().splitlines()
    return dict(line.split("=", 1) for line in lines if line and not line.startswith("#"))


def test_the_official_shape_with_the_target_database_pooler_and_spaces(compose):
    services = compose["services"]
    assert {"postgres", "redis", "airflow-init", "airflow-apiserver", "airflow-scheduler", "airflow-dag-processor",
            "airflow-triggerer", "airflow-worker", "coldcopy-db", "pgbouncer", "minio"} <= set(services)
    assert compose["x-airflow-common"]["environment"]["AIRFLOW__CORE__EXECUTOR"] == "CeleryExecutor"
    for name, service in services.items():
        if name != "minio-init" and name != "airflow-init":
            assert "healthcheck" in service, f"{name} has no health check"
        for dependency in (service.get("depends_on") or {}).values():
            assert dependency["condition"] in ("service_healthy", "service_completed_successfully"), name
    assert "pools set coldcopy_db_heavy 2" in "\n".join(services["airflow-init"]["command"])


def test_images_are_pinned_and_airflow_matches_requirements(compose):
    for name, service in compose["services"].items():
        image = service.get("image")
        assert image and ":" in image and not image.endswith(":latest"), f"{name}: image {image!r} not pinned"
    pinned = re.search(r"^apache-airflow==(\S+)$", (ROOT / "requirements.txt").read_text(), re.M).group(1)
    base = re.search(r"^FROM apache/airflow:(\S+)$", (ROOT / "Dockerfile").read_text(), re.M).group(1)
    assert base.split("-")[0] == pinned
    assert compose["services"]["coldcopy-db"]["image"].startswith("postgres:15.")


def test_every_mounted_and_built_path_exists(compose):
    assert (ROOT / compose["x-airflow-common"]["build"] / "Dockerfile").exists()
    for line in (ROOT / "Dockerfile").read_text().splitlines():
        if line.startswith("COPY "):
            assert (ROOT / line.split()[1]).exists(), line
    for name, service in {"x-airflow-common": compose["x-airflow-common"], **compose["services"]}.items():
        for volume in service.get("volumes", []):
            source = volume.split(":")[0]
            if source.startswith("."):
                assert (ROOT / source).exists(), f"{name}: {source} does not exist"
            else:
                assert source in compose["volumes"], f"{name}: named volume {source} not declared"


def test_every_connection_the_dags_use_is_set_and_parses(compose):
    from coldcopy.alerts import WEBHOOK_CONN_ID
    from coldcopy.connections import DB_CONN_ID, KEY_CONN_ID
    from coldcopy.object_store import SPACES_CONN_ID

    used = {DB_CONN_ID, SPACES_CONN_ID, KEY_CONN_ID, WEBHOOK_CONN_ID}
    env = compose["x-airflow-common"]["environment"]
    for conn_id in used:
        value = env[f"AIRFLOW_CONN_{conn_id.upper()}"]
        parsed = json.loads(PLACEHOLDER.sub("x", value))
        assert parsed["conn_type"], conn_id
    assert json.loads(PLACEHOLDER.sub("x", env["AIRFLOW_CONN_COLDCOPY_DB"]))["host"] == "coldcopy-db"


def test_host_ports_do_not_collide(compose):
    ports = [str(p).split(":")[-2] for s in compose["services"].values() for p in s.get("ports", [])]
    assert len(ports) == len(set(ports)), ports


def test_secrets_come_from_env_and_none_is_committed():
    text = (ROOT / "docker-compose.yaml").read_text()
    named = set(env_example())
    assert {m.group(1) for m in PLACEHOLDER.finditer(text)} - {"HOSTNAME"} <= named
    for key, value in env_example().items():
        if any(word in key for word in ("PASSWORD", "SECRET", "KEY", "PASSPHRASE")):
            assert value == "", f".env.example gives {key} a value"
    assert ".env" in (ROOT / ".gitignore").read_text().splitlines()


def test_docker_compose_validates_it(tmp_path):
    validator = shutil.which("docker-compose")
    assert validator, "Debian's docker-compose is not installed (make test installs it)"
    env_file = tmp_path / ".env"
    env_file.write_text("".join(f"{k}={v or 'placeholder'}\n" for k, v in env_example().items()))
    result = subprocess.run([validator, "--env-file", str(env_file), "-f", str(ROOT / "docker-compose.yaml"),
                             "config", "-q"], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    (tmp_path / "empty.env").write_text("")
    missing = subprocess.run([validator, "--env-file", str(tmp_path / "empty.env"), "-f",
                              str(ROOT / "docker-compose.yaml"), "config", "-q"], capture_output=True, text=True,
                             env={"PATH": "/usr/bin:/bin"})
    assert missing.returncode != 0 and "set in .env" in missing.stderr  # an unset secret is refused


@pytest.fixture(scope="module")
def resolved(tmp_path_factory) -> dict:
    """``docker-compose config`` of the file with every .env value set: what the engine would be given."""
    env_file = tmp_path_factory.mktemp("compose") / ".env"
    env_file.write_text("".join(f"{k}={v or 'placeholder-' + k.lower()}\n" for k, v in env_example().items()))
    result = subprocess.run([shutil.which("docker-compose") or "docker-compose", "--env-file", str(env_file), "-f",
                             str(ROOT / "docker-compose.yaml"), "config"], capture_output=True, text=True, check=True)
    return yaml.safe_load(result.stdout)


def test_the_broker_takes_a_password_and_only_airflow_reaches_it(resolved):
    """Issue 31, 6: every queued Celery message carries a task's workload token, exchangeable for one that reads
    every connection; before, redis had no password and every container of the compose network reached it."""
    services = resolved["services"]
    redis = services["redis"]
    assert "requirepass" in " ".join(redis["command"]) and "placeholder-redis_password" not in " ".join(
        redis["command"])  # the password comes from the environment, not argv
    assert redis["environment"]["REDIS_PASSWORD"] == "placeholder-redis_password"
    assert not redis.get("ports") and set(redis["networks"]) == {"broker"}
    assert resolved["networks"]["broker"].get("internal") is True
    on_broker = {name for name, s in services.items() if "broker" in (s.get("networks") or {})}
    assert on_broker == {"redis"} | {name for name in services if name.startswith("airflow-")}, on_broker
    for name in on_broker - {"redis"}:
        assert services[name]["environment"]["AIRFLOW__CELERY__BROKER_URL"] == \
            "redis://:placeholder-redis_password@redis:6379/0", name


def test_nothing_but_the_ui_is_published_beyond_loopback(resolved):
    """Issue 31, 10: Prometheus on 9090 of every interface served every figure the metrics token protects."""
    for name, service in resolved["services"].items():
        for port in service.get("ports") or []:
            if isinstance(port, dict):  # the long form: only the authenticated Airflow UI
                assert name == "airflow-apiserver" and port["target"] == 8080, (name, port)
            else:
                assert str(port).startswith("127.0.0.1:"), (name, port)
    assert {"prometheus", "grafana"} <= {n for n, s in resolved["services"].items() if s.get("ports")}
    assert resolved["services"]["grafana"]["environment"]["GF_SECURITY_ADMIN_PASSWORD"].startswith("placeholder")


def test_the_broker_as_configured_refuses_a_client_without_the_password(resolved, tmp_path):
    """The compose redis command, run with Debian's redis-server (the same program): no password, no PING."""
    import os
    import time

    from coldcopy.testing.local_env import free_port, port_in_use

    command = resolved["services"]["redis"]["command"][0].replace("$$", "$").replace(
        "/tmp/redis.conf", str(tmp_path / "redis.conf"))
    port = free_port()
    server = subprocess.Popen(["sh", "-c", f"{command} --port {port} --bind 127.0.0.1 --dir {tmp_path}"],
                              env={"PATH": os.environ["PATH"], "REDIS_PASSWORD": "s3cret-broker"},
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 10
        while not port_in_use(port):
            assert time.monotonic() < deadline and server.poll() is None, "redis-server did not start"
            time.sleep(0.05)
        cli = ["redis-cli", "-p", str(port), "ping"]
        anonymous = subprocess.run(cli, capture_output=True, text=True).stdout
        assert "NOAUTH" in anonymous, anonymous
        authed = subprocess.run(cli, capture_output=True, text=True, env={
            "PATH": os.environ["PATH"], "REDISCLI_AUTH": "s3cret-broker"}).stdout
        assert authed.strip() == "PONG"
    finally:
        server.terminate()
        server.wait(10)


def test_the_image_has_a_client_for_every_postgresql_supabase_builds():
    """Issue 32: the image installed only postgresql-client-15, and pg_program rightly refuses a client older
    than the server: every backup of a PostgreSQL 17 project would fail."""
    dockerfile = (ROOT / "Dockerfile").read_text()
    clients = [int(v) for v in re.findall(r"postgresql-client-(\d+)", dockerfile)]
    assert clients and max(clients) >= 17, clients
    assert "apt.postgresql.org" in dockerfile  # Debian bookworm's own archive stops at 15
