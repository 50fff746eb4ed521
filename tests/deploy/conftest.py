"""Shared helpers for the deployment checks: Compose interpolation and Airflow 3's configuration keys.

These tests run without a Docker engine: they parse what `docker compose` would read and check it
against the Compose schema, the installed Airflow's config.yml and the project's lock.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from functools import cache
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
DOCKER = ROOT / "docker"
COMPOSE_FILES = ("compose.yaml", "compose.central.yaml", "compose.gpu-host.yaml")
SECRET_NAME = re.compile(r"PASSWORD|SECRET|FERNET|TOKEN|(^|_)KEY$")

# ${VAR}, ${VAR:-default}, ${VAR-default}, ${VAR:?error}, ${VAR?error}, ${VAR:+alt}, $VAR; $$ escapes.
_VAR = re.compile(
    r"\$(?:\$|\{(?P<braced>[A-Za-z_][A-Za-z0-9_]*)(?P<op>:?[-?+])?(?P<arg>[^}]*)\}|(?P<bare>[A-Za-z_][A-Za-z0-9_]*))"
)


class InterpolationError(ValueError):
    """A required variable (${VAR:?...}) is unset or empty, as `docker compose` would report it."""


def interpolate(text: str, env: Mapping[str, str]) -> str:
    """Compose-file variable interpolation (the subset of the spec these files use)."""

    def sub(m: re.Match[str]) -> str:
        if m.group(0) == "$$":
            return "$"
        name = m.group("braced") or m.group("bare")
        op, arg = m.group("op"), m.group("arg") or ""
        value = env.get(name)
        if op in (":-", "-"):
            return value if (value if op == ":-" else value is not None) else arg
        if op in (":?", "?"):
            if (not value) if op == ":?" else value is None:
                raise InterpolationError(f"{name}: {arg}")
            return value or ""
        if op == ":+":
            return arg if value else ""
        return value or ""

    return _VAR.sub(sub, text)


def interpolate_tree(node: Any, env: Mapping[str, str]) -> Any:
    if isinstance(node, str):
        return interpolate(node, env)
    if isinstance(node, list):
        return [interpolate_tree(v, env) for v in node]
    if isinstance(node, dict):
        return {k: interpolate_tree(v, env) for k, v in node.items()}
    return node


def variable_refs(text: str) -> list[tuple[str, str | None, str]]:
    """(name, operator, argument) of every ${...} reference in a file's text."""
    return [
        (m.group("braced") or m.group("bare"), m.group("op"), m.group("arg") or "")
        for m in _VAR.finditer(text)
        if m.group(0) != "$$"
    ]


def tree_refs(node: Any) -> list[tuple[str, str | None, str]]:
    """The references in a parsed compose file's values (compose ignores comments, so do we)."""
    if isinstance(node, str):
        return variable_refs(node)
    if isinstance(node, list):
        return [ref for v in node for ref in tree_refs(v)]
    if isinstance(node, dict):
        return [ref for v in node.values() for ref in tree_refs(v)]
    return []


def read_env_file(path: Path) -> dict[str, str]:
    """KEY=VALUE lines of a compose .env file (comments and blank lines ignored)."""
    env: dict[str, str] = {}
    for n, line in enumerate(path.read_text().splitlines(), 1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        key, sep, value = line.partition("=")
        assert sep and re.fullmatch(r"[A-Z_][A-Z0-9_]*", key), f"{path.name}:{n}: not KEY=VALUE: {line!r}"
        env[key] = value
    return env


@cache
def load_compose(name: str) -> dict[str, Any]:
    return yaml.safe_load((DOCKER / name).read_text())


def service_env(service: Mapping[str, Any]) -> dict[str, str]:
    env = service.get("environment") or {}
    if isinstance(env, list):  # the KEY=VALUE list form
        return dict(item.partition("=")[::2] for item in env)
    return {k: "" if v is None else str(v) for k, v in env.items()}


@pytest.fixture(scope="session")
def pycache_prefix(shared_pycache: Path) -> Path:
    """A bytecode cache for the Airflow subprocesses these tests start: this machine kind sets
    PYTHONDONTWRITEBYTECODE, so each would otherwise recompile Airflow (2-3x slower). The tests'
    shared one (tests/conftest.py), seeded with the installed bytecode."""
    return shared_pycache


def subprocess_env(pycache: Path, **overrides: str) -> dict[str, str]:
    """This environment without its Airflow settings (tests/conftest.py points them at a SQLite
    database), with a shared bytecode cache, plus `overrides`."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("AIRFLOW")}
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    env["PYTHONPYCACHEPREFIX"] = str(pycache)
    env.update(overrides)
    return env


@pytest.fixture(scope="session")
def env_example() -> dict[str, str]:
    return read_env_file(DOCKER / ".env.example")


@pytest.fixture(scope="session")
def sample_env(env_example: dict[str, str]) -> dict[str, str]:
    """The .env.example with its placeholders replaced, as an operator's docker/.env would be."""
    return {k: (f"test-{k.lower()}" if v == "CHANGE_ME" else v) for k, v in env_example.items()}


@pytest.fixture(scope="session")
def airflow_config_keys() -> set[tuple[str, str]]:
    """(section, key) of every option the installed Airflow defines: core's config.yml plus the
    providers installed here (the [celery] section belongs to the celery provider)."""
    import airflow
    from airflow.providers.celery.get_provider_info import get_provider_info

    core = yaml.safe_load((Path(airflow.__file__).parent / "config_templates" / "config.yml").read_text())
    sections: dict[str, Any] = {**core, **get_provider_info()["config"]}
    return {(section, key) for section, spec in sections.items() for key in (spec.get("options") or {})}


@pytest.fixture(scope="session")
def removed_airflow_keys() -> set[tuple[str, str]]:
    """Airflow 2 options removed or moved in Airflow 3, from the installed Airflow's own
    `airflow config lint` rules, plus the auth-related ones named in the deployment issue."""
    from airflow.cli.commands.config_command import CONFIGS_CHANGES

    removed = {
        (c.config.section, c.config.option)
        for c in CONFIGS_CHANGES
        if c.renamed_to is not None or (c.was_removed and not c.default_change and c.remove_if_equals is None)
    }
    return removed | {("webserver", "secret_key"), ("core", "sql_alchemy_conn"), ("webserver", "base_url")}


def airflow_env_keys(env: Mapping[str, str]) -> set[tuple[str, str]]:
    """(section, key) of every AIRFLOW__SECTION__KEY variable."""
    keys = set()
    for name in env:
        m = re.fullmatch(r"AIRFLOW__([A-Z0-9_]+?)__([A-Z0-9_]+)", name)
        if m:
            keys.add((m.group(1).lower(), m.group(2).lower()))
    return keys


def unknown_airflow_keys(keys: set[tuple[str, str]], known: set[tuple[str, str]]) -> set[tuple[str, str]]:
    """Keys Airflow does not define; KEY_CMD / KEY_SECRET are the command and secrets-backend forms."""
    unknown = set()
    for section, key in keys:
        base = re.sub(r"_(cmd|secret)$", "", key)
        if (section, key) not in known and (section, base) not in known:
            unknown.add((section, key))
    return unknown
