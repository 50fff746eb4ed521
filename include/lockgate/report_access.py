"""Who may read which lockgate report, as Airflow's auth manager decides (the plugin's authorization).

A report is evidence about a DAG run, so reading it needs what reading that run needs in
Airflow's own API: `is_authorized_dag(GET, access_entity=RUN)` on the DAG that produced it. A file
served by path (`<kind>/...`) goes with the lockgate DAG of its kind (`KIND_DAGS`); a row of the
index needs that DAG and, where another DAG wrote it, that one too (a CLI run has no DAG of its own);
a DAG run's report link, the DAG in its URL. Whatever the auth manager (Simple, FAB, Keycloak,
a custom one) says about that DAG holds for its reports; lockgate keeps no permissions of its own.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace
from datetime import UTC, datetime
from typing import Annotated, Any

from airflow.api_fastapi.app import get_auth_manager
from airflow.api_fastapi.auth.managers.base_auth_manager import BaseAuthManager
from airflow.api_fastapi.auth.managers.models.base_user import BaseUser
from airflow.api_fastapi.auth.managers.models.resource_details import DagAccessEntity, DagDetails
from airflow.api_fastapi.core_api.security import get_user
from fastapi import Depends, HTTPException, status

from lockgate.jobs import benchmark, drift, live, promotion, quality
from lockgate.logs.db import make_engine
from lockgate.reports.history import HistoryData
from lockgate.reports.index import ReportEntry, list_reports
from lockgate.settings import resolve_state_db_url

KIND_DAGS: Mapping[str, str] = {
    "benchmark": benchmark.DAG_ID,
    "drift": drift.DAG_ID,
    "quality": quality.DAG_ID,
    "live": live.DAG_ID,
    "decision": promotion.DAG_ID,
}
"""The lockgate DAG whose runs write each kind of report (`<reports>/<kind>/...`)."""

NO_ACCESS = (
    "You may not read the runs of any lockgate DAG ("
    + ", ".join(sorted(KIND_DAGS.values()))
    + "); ask an Airflow admin for a role that may."
)


def report_dag(kind: str, dag_id: str | None) -> str | None:
    """The DAG whose runs guard a report: the one that wrote it, else its kind's; None for an unknown kind."""
    return dag_id or KIND_DAGS.get(kind)


def _team_name(dag_id: str) -> str | None:
    from airflow.configuration import conf

    # Teams exist only in multi-team mode; looking one up needs Airflow's metadata database, which
    # is then the only source of which team owns a DAG (the auth manager checks the user's teams).
    if not conf.getboolean("core", "multi_team", fallback=False):
        return None
    from airflow.models.dag import DagModel

    return DagModel.get_team_name(dag_id)


class ReportAccess:
    """What one user may read, asking the auth manager at most once per DAG and request."""

    def __init__(self, user: BaseUser, auth_manager: BaseAuthManager[Any]) -> None:
        self.user = user
        self._auth_manager = auth_manager
        self._dags: dict[str, bool] = {}

    def may_read_dag(self, dag_id: str) -> bool:
        """Whether the user may read the runs of `dag_id` (Airflow's check for `GET .../dagRuns`)."""
        if dag_id not in self._dags:
            self._dags[dag_id] = bool(
                self._auth_manager.is_authorized_dag(
                    method="GET",
                    access_entity=DagAccessEntity.RUN,
                    details=DagDetails(id=dag_id, team_name=_team_name(dag_id)),
                    user=self.user,
                )
            )
        return self._dags[dag_id]

    def may_read_kind(self, kind: str) -> bool:
        dag_id = KIND_DAGS.get(kind)
        return dag_id is not None and self.may_read_dag(dag_id)

    def may_read_report(self, kind: str, dag_id: str | None) -> bool:
        dag = report_dag(kind, dag_id)
        return dag is not None and self.may_read_dag(dag)

    def readable_kinds(self) -> list[str]:
        return [kind for kind in KIND_DAGS if self.may_read_kind(kind)]

    def require_dag(self, dag_id: str) -> None:
        if not self.may_read_dag(dag_id):
            raise HTTPException(status.HTTP_403_FORBIDDEN, f"You may not read the runs of {dag_id}.")

    def require_kind(self, kind: str) -> None:
        self.require_dag(KIND_DAGS[kind])


def auth_manager() -> BaseAuthManager[Any]:
    """The API server's auth manager (a dependency, so that a test can put another in its place)."""
    return get_auth_manager()


def report_access(
    user: Annotated[BaseUser, Depends(get_user)],
    manager: Annotated[BaseAuthManager[Any], Depends(auth_manager)],
) -> ReportAccess:
    return ReportAccess(user, manager)


def some_report_access(access: Annotated[ReportAccess, Depends(report_access)]) -> ReportAccess:
    """For the pages that list reports: 403 when the user may read none of the lockgate DAGs.

    Such a user would otherwise get an empty index, which reads as "no reports yet" rather than
    "not allowed"; Airflow's own API answers them 403 too.
    """
    if not access.readable_kinds():
        raise HTTPException(status.HTTP_403_FORBIDDEN, NO_ACCESS)
    return access


def readable_reports(
    access: ReportAccess, *, kind: str | None = None, model_name: str | None = None, limit: int = 500
) -> list[ReportEntry]:
    """The newest `limit` reports the user may read, newest first.

    Queried per readable kind, so that a user allowed on a few DAGs still gets `limit` rows of
    theirs rather than what is left of the newest `limit` of all (hourly live reports would crowd
    out the daily ones). A report written by a DAG other than its kind's must also pass that DAG's
    check; one of a kind whose lockgate DAG the user may not read is not listed even if its own
    DAG is readable (fails closed).
    """
    kinds = [k for k in access.readable_kinds() if kind is None or k == kind]
    engine = make_engine(resolve_state_db_url())
    try:
        entries = [e for k in kinds for e in list_reports(engine, kind=k, model_name=model_name, limit=limit)]
    finally:
        engine.dispose()
    entries.sort(key=lambda e: e.created_at or datetime.min.replace(tzinfo=UTC), reverse=True)
    return [e for e in entries if access.may_read_report(e.kind, e.dag_id)][:limit]


def readable_history(access: ReportAccess, data: HistoryData) -> HistoryData:
    """A model's history without what the user may not read.

    The evidence of a kind goes with its DAG (as its reports do); decisions and alias moves are
    the promotion DAG's.
    """
    promotion = access.may_read_kind("decision")
    return replace(
        data,
        runs=tuple(r for r in data.runs if access.may_read_kind(r.kind)),
        points={key: points for key, points in data.points.items() if access.may_read_kind(key[0])},
        decisions=data.decisions if promotion else (),
        alias_moves=data.alias_moves if promotion else (),
    )
