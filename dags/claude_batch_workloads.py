"""Airflow DAGs: one per bundled workload spec in include/workloads/ (loan_disclosure_review, document_tagging).

The specs are validated here, at parse time, so a broken spec shows as an import error in the UI
before it can cost anything. Nothing here touches the network or a database.
"""

from claude_batch.dag_factory import build_workload_dag
from claude_batch.strategy.spec import bundled_workload_names, load_workload

for _name in bundled_workload_names():
    globals()[_name] = build_workload_dag(load_workload(_name))
