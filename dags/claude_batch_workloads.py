"""Airflow DAGs: one per bundled workload spec in include/workloads/ (loan_disclosure_review, document_tagging).

The specs are validated here, at parse time, so a broken spec shows as an import error in the UI
before it can cost anything. Nothing here touches the network or a database.
"""

import os

from claude_batch.dag_factory import build_workload_dag
from claude_batch.strategy.spec import bundled_workload_names, load_workload

# First pause between batch polls in the triggerer, in seconds. Real batches take minutes to hours,
# so 30 s; the system tests and `make airflow` set CLAUDE_BATCH_POLL_INTERVAL to see a run in seconds.
# Every component that parses this file (dag-processor, workers) must see the same value.
POLL_INTERVAL = float(os.environ.get("CLAUDE_BATCH_POLL_INTERVAL", "30"))

for _name in bundled_workload_names():
    globals()[_name] = build_workload_dag(load_workload(_name), poll_interval=POLL_INTERVAL)
