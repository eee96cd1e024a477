"""Whether the batch route is open to a workload on its connection: asked by the route stage and
by every recovery round."""

from __future__ import annotations

from airflow.providers.anthropic.hooks.anthropic import FIRST_PARTY_PLATFORMS

from claude_batch.hooks.claude import ClaudeBatchHook
from claude_batch.strategy.spec import WorkloadSpec


def batch_unavailable(conn_id: str, spec: WorkloadSpec) -> str | None:
    """Why this connection and model cannot use Message Batches, or None when they can.

    Message Batches are a first-party API: the provider's Bedrock, Vertex AI and Foundry platforms
    do not serve them, so such a connection goes synchronous instead of failing at batch create.
    """
    platform = ClaudeBatchHook(conn_id=conn_id).platform
    if platform not in FIRST_PARTY_PLATFORMS:
        return (
            f"connection {conn_id} is a {platform} connection and Message Batches are served only by "
            "the first-party API (Bedrock, Vertex AI and Foundry do not serve them)"
        )
    if not spec.capabilities().batch:
        return f"{spec.model} is not served by Message Batches"
    return None
