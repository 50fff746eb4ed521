"""The webhook receiver against Airflow's metadata database: one alias move is one Asset event."""

from __future__ import annotations

import threading
from typing import Any

import pytest

MODEL = "webhook-race-model"


def _active_challenger_asset() -> int:
    """The `lockgate_challenger_alias` Asset, active, as a parsed DAG file would leave it; its id."""
    from airflow.models.asset import AssetActive, AssetModel
    from airflow.utils.session import create_session
    from sqlalchemy import select

    from lockgate.assets import CHALLENGER_ALIAS

    with create_session() as session:
        asset = session.scalar(select(AssetModel).where(AssetModel.name == CHALLENGER_ALIAS.name))
        if asset is None:
            asset = AssetModel(name=CHALLENGER_ALIAS.name, uri=CHALLENGER_ALIAS.uri, group=CHALLENGER_ALIAS.group)
            session.add(asset)
            session.flush()
        active = session.scalar(select(AssetActive).where(AssetActive.name == asset.name))
        if active is None:
            session.add(AssetActive.for_asset(asset))
        return int(asset.id)


def test_two_deliveries_of_one_alias_move_at_once_fire_one_event(
    airflow_db: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """MLflow retries a delivery it thinks was lost; the retry can arrive while the first is handled.

    Both read the watch's state before either writes it (a barrier holds the first reader until the
    second one reads, or for two seconds where the second cannot get that far): only one may fire.
    """
    import airflow.state.metastore as metastore
    from airflow.models.asset import AssetEvent
    from airflow.utils.session import create_session
    from sqlalchemy import func, select

    from lockgate.registry import webhook_receiver

    asset_id = _active_challenger_asset()
    real_backend = metastore._get_db_backend
    both_read = threading.Barrier(2)

    class ReadTogether:
        def __init__(self, backend: Any) -> None:
            self._backend = backend

        def get(self, *args: Any, **kwargs: Any) -> Any:
            value = self._backend.get(*args, **kwargs)
            try:
                both_read.wait(timeout=2)
            except threading.BrokenBarrierError:
                pass
            return value

        def __getattr__(self, name: str) -> Any:
            return getattr(self._backend, name)

    monkeypatch.setattr(metastore, "_get_db_backend", lambda: ReadTogether(real_backend()))
    payload = {"model": MODEL, "version": "7", "alias": "challenger", "seen_at": "2026-12-06T00:00:00+00:00"}

    def count_events() -> int:
        with create_session() as session:
            return int(
                session.scalar(
                    select(func.count())
                    .select_from(AssetEvent)
                    .where(AssetEvent.asset_id == asset_id, AssetEvent.extra["payload"]["model"].as_string() == MODEL)
                )
                or 0
            )

    before = count_events()
    outcomes: list[str] = []
    errors: list[BaseException] = []

    def deliver() -> None:
        try:
            outcomes.append(webhook_receiver.record_new_challenger(dict(payload))[0])
        except BaseException as exc:  # noqa: BLE001 - reported below with the outcomes
            errors.append(exc)

    threads = [threading.Thread(target=deliver) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert not errors, errors
    assert sorted(outcomes) == ["already_reported", "reported"]
    assert count_events() - before == 1
