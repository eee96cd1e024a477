"""The work of each pipeline stage as plain functions (and the approval mixin), over the run context.

An operator module is the Airflow face of one stage: it imports from here, ``strategy``, ``hooks``,
``store`` and the trigger it defers to, never another operator. Recovery re-runs parts of earlier
stages (submit, partition, the shard's manifest) through these same functions.
"""
