"""Stage 6: bring a submission's results home and sort every line into its class."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from airflow.sdk import BaseOperator, Context

from claude_batch.hooks import claude_hook
from claude_batch.hooks.store import get_store
from claude_batch.stages.partition import partition_submission
from claude_batch.stages.run import RunContext


class PartitionOperator(BaseOperator):
    """Partition one shard's results: succeeded (valid against the output schema), invalid_output,
    errored (by error kind), canceled, expired, missing, unknown. Streams, so memory stays flat
    whatever the batch size; a cleared task re-reads the saved results and rewrites the same files.

    :param run: the route stage's run context.
    :param submission: what the wait stage returned for this shard.
    :param conn_id: Airflow connection of type ``anthropic``.
    """

    template_fields: Sequence[str] = ("run", "submission")

    def __init__(
        self, *, run: Any, submission: Any, conn_id: str = "anthropic_default", **kwargs: Any
    ) -> None:
        kwargs.setdefault("map_index_template", "shard {{ '%05d' % task.submission['shard_index'] }}")
        super().__init__(**kwargs)
        self.run = run
        self.submission = submission
        self.conn_id = conn_id

    def execute(self, context: Context) -> dict:
        run = RunContext.of(self.run)
        summary = partition_submission(get_store(), claude_hook(self.conn_id), run, self.submission, self.log)
        return {
            "shard_index": self.submission["shard_index"],
            "round": self.submission["round"],
            "kind": self.submission["kind"],
            "counts": {c.value: n for c, n in summary.counts.items()},
        }
