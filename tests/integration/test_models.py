"""`lockgate models build-tiny` and `lockgate models register`: real tiny Llama versions in a temporary MLflow store,
and one promotion of real transformers versions from `challenger` to `champion` after an approval.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from pathlib import Path

import pytest
import yaml

from lockgate.cli import main
from lockgate.devtools.testing.registry import passing_evidence, policy_for, sqlite_mlflow_store, write_evidence
from lockgate.devtools.tiny_model import build_tiny_model
from lockgate.errors import InvalidModelError
from lockgate.models import load_hf_directory
from lockgate.registry import tags as T
from lockgate.registry.adapter import ModelRegistry, RegistryState

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> dict[str, Path]:
    """Three builds: seed 0 through the CLI, seed 0 again, seed 1."""
    root = tmp_path_factory.mktemp("tiny")
    assert main(["models", "build-tiny", str(root / "seed0"), "--seed", "0"]) == 0
    build_tiny_model(root / "seed0-again", seed=0)
    build_tiny_model(root / "seed1", seed=1)
    return {"seed0": root / "seed0", "seed0-again": root / "seed0-again", "seed1": root / "seed1"}


@pytest.fixture(scope="module")
def registered(tiny, tmp_path_factory):
    """seed0 registered as champion and seed1 as challenger, with the CLI, in a temporary SQLite store."""
    home = tmp_path_factory.mktemp("models_home")
    name = f"tiny-{uuid.uuid4().hex[:6]}"
    with pytest.MonkeyPatch.context() as mp:
        uri = sqlite_mlflow_store(home / "mlflow.db")
        mp.setenv("LOCKGATE_HOME", str(home))
        mp.setenv("MLFLOW_TRACKING_URI", uri)
        mp.chdir(home)  # anything MLflow wrongly put in the working directory would show up here
        assert main(["models", "register", "--name", name, "--path", str(tiny["seed0"]), "--alias", "champion"]) == 0
        assert main(["models", "register", "--name", name, "--path", str(tiny["seed1"]), "--alias", "challenger"]) == 0
        yield {"name": name, "uri": uri, "home": home}


def test_same_seed_same_weights(tiny):
    weights = {k: (p / "model.safetensors").read_bytes() for k, p in tiny.items()}
    assert weights["seed0"] == weights["seed0-again"]
    assert weights["seed0"] != weights["seed1"]
    config = yaml.safe_load((tiny["seed0"] / "config.json").read_text())
    assert config["model_type"] == "llama" and config["num_hidden_layers"] == 2


def test_tiny_model_generates(tiny):
    import torch

    model, tokenizer = load_hf_directory(tiny["seed0"])
    inputs = tokenizer(["Why was I charged twice?"], return_tensors="pt")
    with torch.no_grad():
        out = model.generate(**inputs, max_new_tokens=5, do_sample=False)
    assert out.shape[1] == inputs["input_ids"].shape[1] + 5
    assert tokenizer.padding_side == "left" and tokenizer.pad_token_id is not None


def test_invalid_model_directories(tmp_path):
    from transformers import ViTConfig

    with pytest.raises(InvalidModelError, match="no config.json") as info:
        load_hf_directory(tmp_path)
    assert info.value.code == "invalid_model"
    ViTConfig(hidden_size=32, num_hidden_layers=1, num_attention_heads=2).save_pretrained(tmp_path / "vit")
    with pytest.raises(InvalidModelError, match="'vit' model, which is not a causal LM"):
        load_hf_directory(tmp_path / "vit")
    with pytest.raises(InvalidModelError, match="not divisible"):
        build_tiny_model(tmp_path / "bad", hidden=30, heads=4)


def test_an_encoder_checkpoint_is_an_invalid_model_not_a_causal_lm(tiny, tmp_path):
    """BERT's config type has a causal-LM class (BertLMHeadModel): an encoder checkpoint would load with a
    randomly initialised head and be benchmarked as a language model. It is refused before any measurement."""
    import shutil

    from transformers import BertConfig, BertModel

    bert = tmp_path / "bert"
    shutil.copytree(tiny["seed0"], bert)  # its tokenizer files
    (bert / "model.safetensors").unlink()
    (bert / "config.json").unlink()
    config = BertConfig(
        vocab_size=512, hidden_size=32, num_hidden_layers=1, num_attention_heads=2, intermediate_size=64
    )
    BertModel(config).save_pretrained(bert)
    with pytest.raises(InvalidModelError, match="BertModel checkpoint, which is not a causal LM") as info:
        load_hf_directory(bert)
    assert info.value.code == "invalid_model" and "randomly initialised" in info.value.message


@pytest.mark.parametrize("weights", [b"", b"garbage" * 100, "half"])
def test_corrupt_weights_are_an_invalid_model(tiny, tmp_path, weights):
    import shutil

    broken = tmp_path / "broken"
    shutil.copytree(tiny["seed0"], broken)
    if weights == "half":
        whole = (broken / "model.safetensors").read_bytes()
        weights = whole[: len(whole) // 2]
    (broken / "model.safetensors").write_bytes(weights)
    with pytest.raises(InvalidModelError, match="missing or unreadable model artifacts") as info:
        load_hf_directory(broken)
    assert info.value.code == "invalid_model"


def test_config_without_weights_or_tokenizer_is_an_invalid_model(tmp_path):
    (tmp_path / "llama").mkdir()
    (tmp_path / "llama" / "config.json").write_text('{"model_type": "llama", "hidden_size": 64}')
    with pytest.raises(InvalidModelError, match="missing or unreadable model artifacts"):
        load_hf_directory(tmp_path / "llama")


def test_register_logs_transformers_versions_with_aliases(registered):
    from mlflow import MlflowClient
    from mlflow.artifacts import download_artifacts

    name, uri = registered["name"], registered["uri"]
    registry = ModelRegistry(uri)
    assert registry.state(name) == RegistryState(champion="1", challenger="2")
    tags = registry.version_tags(name, "2")
    assert tags[T.STATUS] == "evaluating" and tags["lockgate.source_path"].endswith("seed1")
    local = Path(download_artifacts(f"models:/{name}@challenger", tracking_uri=uri))
    mlmodel = yaml.safe_load((local / "MLmodel").read_text())
    assert "transformers" in mlmodel["flavors"]
    assert mlmodel["flavors"]["transformers"]["task"] == "text-generation"
    requirements = (local / "requirements.txt").read_text()
    assert "torch==" in requirements and "transformers==" in requirements
    assert (local / "model" / "model.safetensors").is_file()
    # artifacts of a local store stay under LOCKGATE_HOME, not in the working directory
    run = MlflowClient(uri, uri).get_run(MlflowClient(uri, uri).get_model_version(name, "2").run_id)
    assert run.info.artifact_uri.startswith((registered["home"] / "mlartifacts").as_uri())
    assert not (registered["home"] / "mlruns").exists()


def test_tiny_challenger_becomes_champion_only_after_a_listed_approval(registered, tmp_path):
    from lockgate.jobs.context import RunContext
    from lockgate.jobs.promotion import run_promotion
    from lockgate.registry.commands import ApprovalError, approve

    name, uri = registered["name"], registered["uri"]
    registry = ModelRegistry(uri)
    policy = policy_for(name)
    reports = tmp_path / "reports"
    state_url = f"sqlite:///{tmp_path / 'state.db'}"
    write_evidence(reports, passing_evidence(name, "2", "1", datetime.now(UTC)), state_url)
    kw = {"policy": policy, "registry": registry, "state_url": state_url, "reports_dir": reports}

    assert run_promotion(RunContext(name, run_key="first"), **kw).action == "await_approval"
    with pytest.raises(ApprovalError):
        approve(name, "2", "mallory", policy=policy, registry=registry, state_url=state_url)
    assert run_promotion(RunContext(name, run_key="second"), **kw).action == "await_approval"
    assert registry.state(name).champion == "1"
    approve(name, "2", "alice", policy=policy, registry=registry, state_url=state_url)
    assert run_promotion(RunContext(name, run_key="third"), **kw).action == "promote"
    assert registry.state(name) == RegistryState(champion="2", challenger=None, previous_champion="1")
