"""Whether this deployment runs on one machine: the defaults under ``AIRFLOW_HOME`` assume it does.

The store's SQLite default and the default data folder (``$AIRFLOW_HOME/claude_batch_store.db``,
``$AIRFLOW_HOME/claude_batch_data``) are files on the disk of the host a task happens to run on. With
one machine (LocalExecutor: ``make demo``, ``airflow standalone``) every task sees the same ones; with
workers on hosts of their own (Celery, Kubernetes) each would keep a ledger and a run folder of its
own, and a retry on another host would neither find the shard files nor know the batch it already
paid for. So there those defaults fail, naming what to set, instead of splitting the run.
"""

from __future__ import annotations

from airflow.configuration import conf

# Executors whose tasks all run on the machine of the scheduler.
ONE_MACHINE_EXECUTORS = frozenset({"LocalExecutor", "SequentialExecutor", "DebugExecutor"})


def configured_executors() -> list[str]:
    """The class names of ``[core] executor`` (a list, each ``Name``, ``module.Name`` or ``alias:module.Name``)."""
    entries = [entry.strip() for entry in conf.get("core", "executor", fallback="LocalExecutor").split(",")]
    return [entry.rsplit(":", 1)[-1].rsplit(".", 1)[-1] for entry in entries if entry]


class HostLocalDefaultError(RuntimeError):
    """A default that lives on one host's disk, in a deployment whose tasks run on several hosts."""


def require_one_machine(what: str, fix: str) -> None:
    """Fail with ``what`` and ``fix`` unless every configured executor runs tasks on this machine."""
    spread = [name for name in configured_executors() if name not in ONE_MACHINE_EXECUTORS]
    if spread:
        raise HostLocalDefaultError(
            f"{what} defaults to a file on this host's own disk, but the executor ({', '.join(spread)}) "
            f"runs tasks on other hosts, which cannot read it; {fix}"
        )
