"""Whether the batch route is open to a workload on its connection: asked by the route stage and
by every recovery round."""

from __future__ import annotations

from claude_batch.hooks import claude_hook
from claude_batch.strategy.spec import WorkloadSpec


def batch_unavailable(conn_id: str, spec: WorkloadSpec) -> str | None:
    """Why this connection and model cannot use Message Batches, or None when they can.

    Message Batches are a first-party API: the provider's Bedrock, Vertex AI and Foundry platforms
    do not serve them, so such a connection goes synchronous instead of failing at batch create.
    """
    hook = claude_hook(conn_id)
    if not hook.first_party:
        return (
            f"connection {conn_id} is a {hook.platform} connection and Message Batches are served only by "
            "the first-party API (Bedrock, Vertex AI and Foundry do not serve them)"
        )
    if not spec.capabilities().batch:
        return f"{spec.model} is not served by Message Batches"
    return None
