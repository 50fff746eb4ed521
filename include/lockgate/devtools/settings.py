"""The environment variables only the dev tooling reads: declared once, typed, read through here.

The runtime's variables are `lockgate.settings.Settings`; these belong to the local stack
(`lockgate up`), which the runtime never imports, so they live apart from it. The README's
table of variables lists both (tests/unit/test_settings.py checks it).
"""

from __future__ import annotations

import os
from collections.abc import Mapping

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from lockgate.errors import ConfigError
from lockgate.settings import format_validation_error


class DevSettings(BaseModel):
    """The local stack's own variables. An empty variable counts as unset.

    A plain model read from a mapping (`get_dev_settings`), not pydantic-settings: the stack
    builds its components' environment from the caller's, and tests hand it one.
    """

    model_config = ConfigDict(extra="ignore", frozen=True)

    airflow_db_url: str | None = Field(
        None,
        validation_alias="LOCKGATE_AIRFLOW_DB_URL",
        description="The local stack's Airflow metadata database. None: the database `up` chose before, else "
        "one of its own on the logs' PostgreSQL server, else SQLite under LOCKGATE_HOME.",
    )
    admin_password: str | None = Field(
        None,
        validation_alias="LOCKGATE_ADMIN_PASSWORD",
        description="The local stack's `admin` password. None: the one generated into its secrets file.",
    )


# Field -> its environment variable (the one place each is named: the field's alias above).
DEV_ENV_VARS: dict[str, str] = {name: str(field.validation_alias) for name, field in DevSettings.model_fields.items()}


def get_dev_settings(environ: Mapping[str, str] | None = None) -> DevSettings:
    """Read `environ` (default: the process environment) now."""
    env = os.environ if environ is None else environ
    values = {var: env[var] for var in DEV_ENV_VARS.values() if env.get(var)}
    try:
        return DevSettings.model_validate(values)
    except ValidationError as exc:  # pragma: no cover - every field is an optional string today
        key, msg = format_validation_error(exc)
        raise ConfigError(msg, key=DEV_ENV_VARS.get(key, key), source="environment") from None
