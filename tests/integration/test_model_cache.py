"""The local cache of registered versions' files (`lockgate.models.materialise`), against a real MLflow store."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

import lockgate.registry.artifacts as artifacts
from lockgate.devtools.tiny_model import build_tiny_model
from lockgate.errors import InvalidModelError
from lockgate.models import materialise
from lockgate.registry.adapter import ModelRegistry
from lockgate.registry.artifacts import register_directory

MODEL = "cache-m"


def _hidden(path: Path) -> int:
    return int(json.loads((path / "config.json").read_text())["hidden_size"])


def test_a_version_number_used_again_never_serves_the_earlier_versions_files(
    lockgate_env: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    downloads: list[str] = []
    download = artifacts.download_version

    def counted(model_name: str, version: str, dst: Path) -> None:
        downloads.append(version)
        download(model_name, version, dst)

    monkeypatch.setattr(artifacts, "download_version", counted)
    cache = lockgate_env / "model_cache"
    # what an earlier lockgate left: the layout without the version's identity
    (cache / MODEL / "1" / "artifacts").mkdir(parents=True)
    (cache / MODEL / "1" / ".complete").touch()

    first = register_directory(MODEL, build_tiny_model(lockgate_env / "small", seed=0, hidden=32, heads=2))
    assert first == "1"
    assert _hidden(materialise(MODEL, first, cache)) == 32
    assert _hidden(materialise(MODEL, first, cache)) == 32  # from the cache
    assert downloads == ["1"]
    assert len(list((cache / MODEL / "1").iterdir())) == 1  # the old layout is gone

    # The model deleted and registered again (the demo's clean slate): version 1 is another model now.
    assert ModelRegistry().delete_model(MODEL)
    again = register_directory(MODEL, build_tiny_model(lockgate_env / "large", seed=1, hidden=128, heads=4))
    assert again == "1"
    assert _hidden(materialise(MODEL, again, cache)) == 128
    assert downloads == ["1", "1"]
    assert len(list((cache / MODEL / "1").iterdir())) == 1  # the earlier version's files are removed


def test_a_version_not_in_the_registry_is_a_clear_error(lockgate_env: Path) -> None:
    register_directory(MODEL, build_tiny_model(lockgate_env / "m", seed=0))
    with pytest.raises(InvalidModelError, match=r"cache-m v7 is not in the registry"):
        materialise(MODEL, "7", lockgate_env / "model_cache")
