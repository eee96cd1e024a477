"""The bundled workloads: YAML specs, Jinja prompt templates and pydantic output schemas.

Importable as ``claude_workloads`` (see pyproject.toml). A workload spec names its output schema by
import path, e.g. ``claude_workloads.loan_disclosure_review:LoanReview``.
"""
