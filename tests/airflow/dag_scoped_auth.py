"""An auth manager for the tests: Airflow's simple auth manager, where a user named ``only-<dag_id>``
may see and trigger that one DAG and no other (the per-DAG permissions a FAB or Keycloak deployment
gives its users). Configured with ``[core] auth_manager``, the way a deployment plugs in its own."""

from __future__ import annotations

from typing import Any

from airflow.api_fastapi.auth.managers.simple.simple_auth_manager import SimpleAuthManager

SCOPE_PREFIX = "only-"


class DagScopedAuthManager(SimpleAuthManager):
    """Simple auth manager with per-DAG scope for ``only-<dag_id>`` users."""

    def is_authorized_dag(
        self, *, method: Any, user: Any, access_entity: Any = None, details: Any = None
    ) -> bool:
        name = user.get_name()
        if name.startswith(SCOPE_PREFIX) and (
            details is None or details.id != name.removeprefix(SCOPE_PREFIX)
        ):
            return False
        return super().is_authorized_dag(
            method=method, user=user, access_entity=access_entity, details=details
        )
