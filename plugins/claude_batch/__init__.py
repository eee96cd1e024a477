"""Bulk Claude workloads on Airflow 3: strategy (pure), store (SQLAlchemy) and the Airflow face.

This folder is Airflow's plugins folder and is also installed editable as ``claude_batch``, so the
scheduler, workers, triggerer and tests import the same modules by the same name.
"""
