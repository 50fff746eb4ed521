"""Model versions on disk: loading a Hugging Face directory, bfloat16 support, registration in MLflow.

The demo's and the tests' tiny random-weight models are built by `lockgate.devtools.tiny_model`.
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path
from typing import Any

from lockgate.errors import InvalidModelError

log = logging.getLogger(__name__)


def native_bfloat16(device: str) -> bool:
    """Whether bfloat16 runs natively here: a CUDA device that supports it, or a CPU with AVX512-BF16/AMX.

    Elsewhere bfloat16 is emulated and slower than float32.
    """
    import torch

    if device.startswith("cuda"):
        return bool(torch.cuda.is_bf16_supported())
    try:
        return bool(torch.cpu._is_avx512_bf16_supported() or torch.cpu._is_amx_tile_supported())
    except AttributeError:  # a torch without these probes: assume not
        return False


def load_hf_directory(path: str | Path, device: str = "cpu", dtype: Any = None) -> tuple[Any, Any]:
    """Model and tokenizer from a Hugging Face directory; a clear error when it is not a causal LM."""
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

    p = Path(path)
    if not (p / "config.json").exists():
        raise InvalidModelError(f"{p} has no config.json: not a Hugging Face model directory")
    try:
        config = AutoConfig.from_pretrained(p)
    except Exception as exc:  # noqa: BLE001 - transformers raises many types for a bad config
        raise InvalidModelError(f"cannot read the model config in {p}: {exc}") from None
    from transformers import MODEL_FOR_CAUSAL_LM_MAPPING

    if type(config) not in MODEL_FOR_CAUSAL_LM_MAPPING:
        raise InvalidModelError(f"{p} holds a {config.model_type!r} model, which is not a causal LM")
    from safetensors import SafetensorError

    try:
        tokenizer = AutoTokenizer.from_pretrained(p)
        kwargs = {"dtype": dtype} if dtype is not None else {}
        model: Any
        model, loading = AutoModelForCausalLM.from_pretrained(p, output_loading_info=True, **kwargs)
    except (OSError, ValueError, SafetensorError) as exc:  # transformers 5: ValueError for a missing tokenizer
        raise InvalidModelError(f"missing or unreadable model artifacts in {p}: {exc}") from None
    missing = sorted(loading.get("missing_keys") or ())
    if missing:
        # An encoder (BERT, RoBERTa...) whose config type also has a causal-LM head class loads
        # "successfully" with that head randomly initialised: it would be benchmarked as if it were
        # a language model. A checkpoint must hold every weight of the causal LM it is loaded as.
        architectures = ", ".join(getattr(config, "architectures", None) or [config.model_type])
        shown = ", ".join(missing[:3]) + (f" and {len(missing) - 3} more" if len(missing) > 3 else "")
        raise InvalidModelError(
            f"{p} holds a {architectures} checkpoint, which is not a causal LM: loading it as "
            f"{type(model).__name__} leaves {len(missing)} weights randomly initialised ({shown})"
        )
    model.to(device)
    model.eval()
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token
    tokenizer.padding_side = "left"
    return model, tokenizer


def register_model(name: str, path: str | Path, alias: str | None = None, tracking_uri: str | None = None) -> str:
    """Log a HF directory as an MLflow transformers model, register it, optionally alias it.

    Returns the new version as a string. The model and tokenizer objects are passed
    (the directory form fails with transformers 5) with explicit pip requirements
    (else MLflow infers torchvision, which is not installed).
    """
    import mlflow
    import torch
    import transformers

    from lockgate.registry.client import ensure_experiment
    from lockgate.settings import resolve_mlflow_uri

    uri = tracking_uri or resolve_mlflow_uri()
    model, tokenizer = load_hf_directory(path)
    ensure_experiment(f"lockgate/{name}", uri)
    with mlflow.start_run(run_name=f"register-{name}") as run:
        info = mlflow.transformers.log_model(
            transformers_model={"model": model, "tokenizer": tokenizer},
            name="model",
            task="text-generation",
            pip_requirements=[f"torch=={torch.__version__.split('+')[0]}", f"transformers=={transformers.__version__}"],
            registered_model_name=name,
        )
        mlflow.set_tag("lockgate.source_path", str(Path(path).resolve()))
    version = str(info.registered_model_version)
    client = mlflow.MlflowClient(tracking_uri=uri, registry_uri=uri)
    client.set_model_version_tag(name, version, "lockgate.status", "evaluating")
    client.set_model_version_tag(name, version, "lockgate.source_path", str(Path(path).resolve()))
    if alias:
        client.set_registered_model_alias(name, alias, version)
    log.info("registered %s version %s (run %s)%s", name, version, run.info.run_id, f" as {alias}" if alias else "")
    return version


def cmd_register(args: argparse.Namespace) -> int:
    version = register_model(args.name, args.path, alias=args.alias)
    print(f"registered {args.name} version {version}" + (f" with alias {args.alias}" if args.alias else ""))
    return 0
