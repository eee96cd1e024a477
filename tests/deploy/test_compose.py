"""The docker-compose stack, validated without a Docker engine: Debian's ``docker-compose config``
resolves the file with .env.example (and fails on any schema or interpolation error), then the
resolved services are checked for what a cluster run depends on."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from claude_batch.dag_factory import SUBMIT_POOL
from tests.conftest import REPO_ROOT

AIRFLOW_SERVICES = {
    "airflow-init",
    "airflow-apiserver",
    "airflow-scheduler",
    "airflow-dag-processor",
    "airflow-triggerer",
    "airflow-worker",
}


@pytest.fixture(scope="module")
def compose() -> dict:
    """The resolved compose file, all profiles included."""
    binary = shutil.which("docker-compose")
    if binary is None:
        pytest.fail("docker-compose is missing: `apt-get install docker-compose` (.ci/run does)")
    result = subprocess.run(
        [binary, "--env-file", ".env.example", "--profile", "emulator", "config"],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    return yaml.safe_load(result.stdout)


def test_the_celery_stack_and_the_emulator_profile_are_there(compose: dict) -> None:
    services = compose["services"]
    assert {"postgres", "redis", "claude-emulator"} | AIRFLOW_SERVICES <= set(services)
    assert services["claude-emulator"]["profiles"] == ["emulator"]
    for name in AIRFLOW_SERVICES:
        environment = services[name]["environment"]
        assert environment["AIRFLOW__CORE__EXECUTOR"] == "CeleryExecutor", name
        assert environment["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"].startswith("postgresql+psycopg2://"), name
        assert '"url": "postgresql+psycopg2://' in environment["AIRFLOW_CONN_CLAUDE_BATCH_STORE"], name
        assert '"conn_type": "anthropic"' in environment["AIRFLOW_CONN_ANTHROPIC_DEFAULT"], name


def test_every_mounted_host_path_exists(compose: dict) -> None:
    # docker-compose 1.x prints the short syntax, host paths made absolute; named volumes are bare names.
    sources = [
        volume["source"] if isinstance(volume, dict) else volume.split(":", 1)[0]
        for service in compose["services"].values()
        for volume in service.get("volumes", [])
    ]
    binds = [source for source in sources if source.startswith("/")]
    assert binds, "the project folders are mounted"
    assert {str(REPO_ROOT / name) for name in ("dags", "plugins", "include")} <= set(binds)
    assert [path for path in binds if not Path(path).exists()] == []


def test_init_creates_the_submit_pool_and_the_image_is_airflow_3_3_2(compose: dict) -> None:
    init = " ".join(compose["services"]["airflow-init"]["command"])
    assert f"airflow pools set {SUBMIT_POOL} 1" in init
    dockerfile = (REPO_ROOT / "Dockerfile").read_text()
    assert "FROM apache/airflow:3.3.2-python3.11" in dockerfile
    assert "-r requirements.txt -c constraints.txt" in dockerfile


def test_no_api_key_is_committed() -> None:
    example = dict(
        line.split("=", 1)
        for line in (REPO_ROOT / ".env.example").read_text().splitlines()
        if line and not line.startswith("#")
    )
    assert example["ANTHROPIC_API_KEY"] == ""


def test_components_share_no_disk_and_the_run_data_is_on_the_object_store(compose: dict) -> None:
    services = compose["services"]
    assert "object-store" in services
    for name in AIRFLOW_SERVICES:
        named = {
            (volume["source"] if isinstance(volume, dict) else volume.split(":", 1)[0])
            for volume in services[name].get("volumes", [])
        }
        # Only the login file airflow-init writes for the api-server; no data or log volume.
        assert {source for source in named if not source.startswith("/")} == {"airflow-auth"}, name
        environment = services[name]["environment"]
        assert environment["CLAUDE_BATCH_DATA_URI"].startswith("s3://aws_default@"), name
        aws = json.loads(environment["AIRFLOW_CONN_AWS_DEFAULT"])
        assert aws["conn_type"] == "aws" and aws["extra"]["endpoint_url"] == "http://object-store:5000", name
    assert "create_bucket" in " ".join(services["airflow-init"]["command"])
