"""An S3-compatible object store for the system tests: moto's server mode as a subprocess.

The pipeline reaches it the way it reaches S3 in production: ``CLAUDE_BATCH_DATA_URI=s3://<conn>@bucket/prefix``
read through Airflow's ``ObjectStoragePath`` and the Amazon provider, with an ``aws`` connection whose
``endpoint_url`` is this server. The test itself reads and writes it with boto3.
"""

from __future__ import annotations

import json
import socket
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import boto3
import httpx

from tests.system.deployment import wait_for

# moto accepts any key pair; these only have to be the same on both sides.
ACCESS_KEY = "claude-batch-test"
SECRET_KEY = "claude-batch-test-secret"
REGION = "us-east-1"


@dataclass
class S3Server:
    endpoint_url: str
    bucket: str

    def client(self):
        return boto3.client(
            "s3",
            endpoint_url=self.endpoint_url,
            aws_access_key_id=ACCESS_KEY,
            aws_secret_access_key=SECRET_KEY,
            region_name=REGION,
        )

    def connection(self) -> str:
        """The ``aws`` connection (as an ``AIRFLOW_CONN_*`` value) that points at this server."""
        return json.dumps(
            {
                "conn_type": "aws",
                "login": ACCESS_KEY,
                "password": SECRET_KEY,
                "extra": {"endpoint_url": self.endpoint_url, "region_name": REGION},
            }
        )

    def keys(self, prefix: str = "") -> list[str]:
        paginator = self.client().get_paginator("list_objects_v2")
        return [
            item["Key"]
            for page in paginator.paginate(Bucket=self.bucket, Prefix=prefix)
            for item in page.get("Contents", [])
        ]


def _free_port(host: str) -> int:
    with socket.socket() as sock:
        sock.bind((host, 0))
        return sock.getsockname()[1]


@contextmanager
def running_s3_server(host: str, bucket: str, log_path: Path) -> Iterator[S3Server]:
    """``moto_server`` on ``host`` (a free port) with ``bucket`` created; stopped when the block ends."""
    port = _free_port(host)
    command = [str(Path(sys.executable).with_name("moto_server")), "-H", host, "-p", str(port)]
    with log_path.open("ab") as log:
        process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT)
    server = S3Server(f"http://{host}:{port}", bucket)
    try:

        def serving() -> bool:
            if process.poll() is not None:
                raise RuntimeError(f"moto_server exited:\n{log_path.read_text(errors='replace')}")
            try:
                return httpx.get(f"{server.endpoint_url}/moto-api/", timeout=2).status_code < 500
            except httpx.HTTPError:
                return False

        wait_for("the S3 server", serving, timeout=60, interval=0.2)
        server.client().create_bucket(Bucket=bucket)
        yield server
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
