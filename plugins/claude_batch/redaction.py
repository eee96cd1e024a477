"""Secrets never reach a user: every error text that leaves the process goes through ``redact``.

Airflow's secrets masker hides the values registered with it (the task SDK registers a connection's
password when a task reads the connection; ``mask_connection`` does it in the api-server, which reads
connections without the task SDK's help). On top of it, anything shaped like an Anthropic key is
hidden, whoever's key it is: a gateway that echoes request headers may put one in an error body.

(Not named ``secrets.py``: Airflow's plugins manager imports every file of the plugins folder as a
top-level module, and one called ``secrets`` would shadow the standard library's.)
"""

from __future__ import annotations

import re
from typing import Any

from airflow.sdk import BaseHook
from airflow.sdk._shared.secrets_masker import redact as masker_redact
from airflow.sdk.exceptions import AirflowNotFoundException
from airflow.sdk.log import mask_secret

MASK = "***"
# sk-ant-api03-..., sk-ant-admin01-...: the prefix and then the key's URL-safe characters.
ANTHROPIC_KEY_SHAPE = re.compile(r"sk-ant-[A-Za-z0-9_\-]{4,}")
# An Authorization or x-api-key header echoed back, whatever its value looks like.
_ECHOED_CREDENTIAL = re.compile(
    r"(?i)\b(authorization|x-api-key)(['\"]?\s*[:=]\s*['\"]?)(bearer\s+)?[^\s'\",}]+"
)


def mask_connection(conn_id: str) -> None:
    """Register the connection's password (the API key) with Airflow's secrets masker."""
    try:
        connection = BaseHook.get_connection(conn_id)
    except AirflowNotFoundException:
        return
    if connection.password:
        mask_secret(connection.password)


def redact(text: Any) -> str:
    """``text`` as a string with registered secrets, key-shaped strings and echoed credentials masked."""
    masked = masker_redact(str(text))
    masked = ANTHROPIC_KEY_SHAPE.sub(MASK, str(masked))
    return _ECHOED_CREDENTIAL.sub(lambda m: f"{m.group(1)}{m.group(2)}{m.group(3) or ''}{MASK}", masked)
