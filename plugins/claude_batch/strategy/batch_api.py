"""Facts about the Message Batches API that the hook, the trigger and the submit stage rely on."""

from __future__ import annotations

# A batch read back right after its create may answer 404 for a while: the API is eventually
# consistent (anthropic-sdk-python issue #1432). Within this many seconds of the create, a 404 is
# that delay, not a missing batch; past it, the batch is believed missing.
EARLY_404_GRACE_SECONDS = 60.0

# After a deadline the batch is canceled; the API then needs a little while to reach `ended`
# (the wait sensor and recovery's wait both allow this long).
CANCEL_GRACE_SECONDS = 15 * 60


def batch_request_total(request_counts: object) -> int:
    """All requests of a batch, whatever their state, from its ``request_counts``."""
    return sum(
        getattr(request_counts, state)
        for state in ("processing", "succeeded", "errored", "canceled", "expired")
    )
