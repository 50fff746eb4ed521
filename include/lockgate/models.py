"""Model versions on disk: loading a Hugging Face directory, bfloat16 support, a registered version
downloaded (once) as a Hugging Face directory, registration (through `lockgate.registry.artifacts`).

The demo's and the tests' tiny random-weight models are built by `lockgate.devtools.tiny_model`.
"""

from __future__ import annotations

import argparse
import logging
import shutil
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
    import torch
    import transformers

    from lockgate.registry.artifacts import register_transformers_model

    model, tokenizer = load_hf_directory(path)
    return register_transformers_model(
        name,
        model,
        tokenizer,
        pip_requirements=[f"torch=={torch.__version__.split('+')[0]}", f"transformers=={transformers.__version__}"],
        source_path=Path(path).resolve(),
        alias=alias,
        uri=tracking_uri,
    )


def hf_directory(root: Path) -> Path:
    """The Hugging Face directory inside a version's downloaded artifacts (see `materialise`)."""
    mlmodel = root / "MLmodel"
    if mlmodel.exists():
        import yaml

        try:
            meta = yaml.safe_load(mlmodel.read_text()) or {}
        except yaml.YAMLError as exc:
            raise InvalidModelError(f"unreadable MLmodel file in {root}: {exc}") from None
        flavors = meta.get("flavors") or {}
        tf = flavors.get("transformers")
        if tf is None:
            raise InvalidModelError(
                f"the version is an MLflow model of flavor(s) {sorted(flavors)}, not a transformers model"
            )
        model_dir = root / str(tf.get("model_binary") or "model")
        tokenizer_dir = root / "components" / "tokenizer"
        if not (model_dir / "config.json").exists():
            raise InvalidModelError(f"the transformers model has no {model_dir.name}/config.json: artifacts missing")
        # Model and tokenizer side by side, as `from_pretrained` expects: links, not copies.
        merged = root.parent / "hf"
        if merged.exists():
            shutil.rmtree(merged)
        merged.mkdir(parents=True)
        for src in [*model_dir.iterdir(), *(tokenizer_dir.iterdir() if tokenizer_dir.is_dir() else [])]:
            (merged / src.name).symlink_to(src.resolve())
        return merged
    if (root / "config.json").exists():
        return root
    candidates = [p.parent for p in root.glob("*/config.json")]
    if len(candidates) == 1:
        return candidates[0]
    if not any(root.iterdir()):
        raise InvalidModelError("the version has no artifacts (its source folder is empty): artifacts missing")
    raise InvalidModelError(
        f"no Hugging Face model files (config.json) among the artifacts: {sorted(p.name for p in root.iterdir())}"
    )


def materialise(model_name: str, version: str, cache_root: Path) -> Path:
    """Download a version's artifacts once and return its Hugging Face directory.

    The artifacts go into `<cache_root>/<model>/<version>/<identity>`: a registered version is
    immutable, but its number is not unique (a model deleted and registered again numbers its
    versions from 1 again), so the folder is named by `version_identity` too, and a folder of an
    earlier version with the same number is removed when the new one is downloaded.
    Two layouts are understood: the MLflow transformers flavor (`MLmodel` + `model/` +
    `components/tokenizer/`), which `lockgate models register` and `mlflow.transformers.log_model`
    write, and a plain Hugging Face directory (`config.json` at the root, or in one sub-folder).

    Raises:
        InvalidModelError: the artifacts are missing or hold no transformers model.
    """
    from lockgate.registry.artifacts import download_version, version_identity
    from lockgate.reports.html import safe_segment

    numbered = cache_root / safe_segment(model_name) / safe_segment(version)
    identity = version_identity(model_name, version)
    base = numbered / identity
    artifacts = base / "artifacts"
    done = base / ".complete"
    if not done.exists():
        if base.exists():
            shutil.rmtree(base)  # a partial download from an interrupted run
        artifacts.mkdir(parents=True)
        download_version(model_name, version, artifacts)
        done.touch()
        for other in numbered.iterdir():  # an earlier version with this number (or the layout before it)
            if other.name == identity:
                continue
            if other.is_dir():
                shutil.rmtree(other)
            else:
                other.unlink()
    try:
        return hf_directory(artifacts)
    except InvalidModelError as exc:
        raise InvalidModelError(f"{model_name} v{version}: {exc.message}") from None


def cmd_register(args: argparse.Namespace) -> int:
    version = register_model(args.name, args.path, alias=args.alias)
    print(f"registered {args.name} version {version}" + (f" with alias {args.alias}" if args.alias else ""))
    return 0
