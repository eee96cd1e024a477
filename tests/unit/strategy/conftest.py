from __future__ import annotations

import pytest

from claude_batch.strategy.spec import WorkloadSpec, load_workload


@pytest.fixture
def loan_spec() -> WorkloadSpec:
    return load_workload("loan_disclosure_review")
