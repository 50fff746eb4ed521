"""The `lockgate` command.

Each subcommand names its handler as "module:function"; the module is imported
only when that subcommand runs, so `lockgate --help` stays fast and a broken
optional part cannot break the others.

Whatever ends a command early ends it with one line on stderr, `lockgate: error
[code]: message`, and a non-zero exit: a `LockgateError` (exit 2), a database or
MLflow server that does not answer (`service_unavailable`, exit 2), anything else
(`unexpected`, exit 1). `-v` adds the traceback above that line.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import os
import re
import sys
import traceback
from collections.abc import Callable, Sequence
from typing import Any

from lockgate.errors import LockgateError

Handler = Callable[[argparse.Namespace], int | None]

# The demo's scenarios, looked up when `lockgate demo --scenario` is parsed (dev tooling, never
# imported for the other commands).
_SCENARIOS = "lockgate.devtools.scenarios:SCENARIOS"

_MODEL_HELP = "{what} (default: the policy's watched model, when it watches only one)"


def _add(sub: Any, name: str, handler: str, help_text: str) -> argparse.ArgumentParser:
    parser: argparse.ArgumentParser = sub.add_parser(name, help=help_text, description=help_text)
    parser.set_defaults(handler=handler)
    # Also accepted after the command (`lockgate run drift -v`); SUPPRESS keeps an earlier -v.
    parser.add_argument(
        "-v", "--verbose", action="store_true", default=argparse.SUPPRESS, help="debug logging and tracebacks"
    )
    return parser


def _group(sub: Any, name: str, help_text: str) -> Any:
    """A command with actions of its own (`lockgate NAME ACTION`); the chosen one in `<name>_command`."""
    group: argparse.ArgumentParser = sub.add_parser(name, help=help_text)
    return group.add_subparsers(dest=f"{name}_command", required=True, metavar="ACTION")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="lockgate",
        description="Evidence-gated promotion of LLM model versions, orchestrated by Airflow.",
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging and tracebacks")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    # the local stack (dev tooling; `status MODEL` is the registry's)
    up = _add(
        sub,
        "up",
        "lockgate.devtools.stack.commands:cmd_up",
        "Start Airflow 3 and MLflow locally and wait until healthy.",
    )
    up.add_argument("--timeout", type=float, default=300, help="seconds to wait for health checks")
    _add(sub, "down", "lockgate.devtools.stack.commands:cmd_down", "Stop exactly the processes `lockgate up` started.")
    status = _add(
        sub,
        "status",
        "lockgate.devtools.stack.commands:cmd_status",
        "Without MODEL: the local stack. With MODEL: aliases, pending approvals and recent decisions.",
    )
    status.set_defaults(model_handler="lockgate.registry.commands:cmd_model_status")
    status.add_argument("model", nargs="?", help="registered model name")
    status.add_argument("--limit", type=int, default=10, help="recent decisions to show")

    settings_sub = _group(sub, "settings", "Airflow settings (connections, variables, pools).")
    apply = _add(
        settings_sub,
        "apply",
        "lockgate.devtools.stack.settings_apply:cmd_settings_apply",
        "Load airflow_settings.yaml (Astro CLI format) into Airflow; idempotent.",
    )
    apply.add_argument("--file", default=None, help="path to airflow_settings.yaml (default: the project's)")

    # logs
    logs_sub = _group(sub, "logs", "The inference-log store.")
    seed = _add(logs_sub, "seed", "lockgate.devtools.seed:cmd_seed", "Write synthetic traffic into the log store.")
    seed.add_argument("--model", default=None, help=_MODEL_HELP.format(what="model_name of the rows"))
    seed.set_defaults(model_from_policy=True)
    seed.add_argument("--scenario", default=None, help="a demo scenario's traffic (healthy, input-drift, ...)")
    seed.add_argument("--reference-rows", type=int, default=2000)
    seed.add_argument("--current-rows", type=int, default=1000)
    seed.add_argument("--current-end", default=None, help="ISO time the current period ends (default: now)")
    seed.add_argument("--reference-days", type=float, default=7)
    seed.add_argument("--current-days", type=float, default=1)
    seed.add_argument("--champion-version", default="1")
    seed.add_argument("--challenger-version", default=None, help="adds canary traffic for this version")
    seed.add_argument(
        "--previous-champion-version",
        default=None,
        help="the reference period is this version's traffic beside the champion's canary",
    )
    seed.add_argument("--canary-share", type=float, default=0.3)
    seed.add_argument("--topic-drift", type=float, default=0.0)
    seed.add_argument("--prompt-length-factor", type=float, default=1.0)
    seed.add_argument("--latency-factor", type=float, default=1.0, help="challenger latency multiplier")
    seed.add_argument("--quality-degradation", type=float, default=0.0, help="challenger bad-answer share")
    seed.add_argument("--malformed-rate", type=float, default=0.01)
    seed.add_argument("--pii-rate", type=float, default=0.05)
    seed.add_argument("--hostile-rate", type=float, default=0.02)
    seed.add_argument("--rag-share", type=float, default=0.4)
    seed.add_argument("--seed", type=int, default=0)
    seed.add_argument("--db-url", default=None, help="override the log database URL")
    migrate = _add(
        logs_sub,
        "migrate-sample-index",
        "lockgate.logs.commands:cmd_migrate_sample_index",
        "Optional, PostgreSQL: store the sample hash in a column with an index, so that sampling reads "
        "about n rows instead of ranking the whole window. Rewrites the table under an exclusive lock.",
    )
    migrate.add_argument(
        "--seed", type=int, default=None, help="hash seed (default: the policy's statistics.seed, which samples use)"
    )
    migrate.add_argument("--print-sql", action="store_true", help="print the statements instead of running them")
    migrate.add_argument("--db-url", default=None, help="override the log database URL")
    forget = _add(
        logs_sub,
        "forget-rollups",
        "lockgate.logs.commands:cmd_forget_rollups",
        "Drop the live job's stored per-hour aggregates of a model (after rewriting logs in place: a re-import "
        "with the same row counts, late feedback), so the next run aggregates those hours again.",
    )
    forget.add_argument("--model", required=True, help="the registered model")
    forget.add_argument("--since", default=None, help="only hours from this ISO date or time on (default: all)")

    # evidence
    evidence_sub = _group(sub, "evidence", "Evidence summaries in lockgate's state database.")
    import_latest = _add(
        evidence_sub,
        "import-latest",
        "lockgate.reports.commands:cmd_import_latest",
        "Once, after upgrading from a lockgate that kept the latest evidence only in latest.json files: record "
        "every <kind>/<model>/latest.json of the reports store in the state database, which the promotion reads. "
        "Idempotent; never replaces evidence of a later window.",
    )
    import_latest.add_argument("--dry-run", action="store_true", help="say what would be recorded, record nothing")

    # models
    models_sub = _group(sub, "models", "Build and register model versions.")
    tiny = _add(
        models_sub,
        "build-tiny",
        "lockgate.devtools.tiny_model:cmd_build_tiny",
        "Build a small Llama-architecture causal LM (random weights) with a locally trained tokenizer.",
    )
    tiny.add_argument("dir", help="output directory (Hugging Face layout)")
    tiny.add_argument("--seed", type=int, default=0)
    tiny.add_argument("--hidden", type=int, default=64)
    tiny.add_argument("--layers", type=int, default=2)
    tiny.add_argument("--heads", type=int, default=4)
    register = _add(
        models_sub,
        "register",
        "lockgate.models:cmd_register",
        "Log a Hugging Face directory as an MLflow transformers model and register it.",
    )
    register.add_argument("--name", required=True)
    register.add_argument("--path", required=True, help="Hugging Face model directory")
    register.add_argument("--alias", default=None, help="alias to set on the new version (e.g. challenger)")

    # judge
    judge_sub = _group(sub, "judge", "The LLM judge: calibration sets and labels.")
    calibrate = _add(
        judge_sub,
        "calibrate",
        "lockgate.judge.commands:cmd_calibrate",
        "Run the policy's judge on a calibration set; print who labelled it and the agreement (exit 1: failed).",
    )
    calibrate.add_argument(
        "--set",
        default=None,
        help="a JSONL set, or mlflow:NAME for an MLflow evaluation dataset (default: the policy's "
        "quality.calibration_set)",
    )
    calibrate.add_argument("--rubrics", nargs="+", default=None, help="default: the policy's quality.rubrics")
    calibrate.add_argument("--json", action="store_true", help="print the result as JSON")
    export = _add(
        judge_sub,
        "export-feedback",
        "lockgate.judge.commands:cmd_export_feedback",
        "Sample rated production answers (redacted) into a calibration set for people to label.",
    )
    export.add_argument("--model", required=True, help="a model the policy watches")
    export.add_argument("--out", required=True, help="the set to write (NAME.jsonl, with NAME.meta.yaml beside)")
    export.add_argument("--rubric", default="relevance", help="the rubric the labellers score under")
    export.add_argument("--size", type=int, default=200, help="items to export at most")
    export.add_argument("--version", default=None, help="only this model version")
    export.add_argument("--start", default=None, help="ISO time (default: --days before --end)")
    export.add_argument("--end", default=None, help="ISO time (default: now)")
    export.add_argument("--days", type=float, default=7)
    export.add_argument("--force", action="store_true", help="replace an existing set")

    push = _add(
        judge_sub,
        "push-set",
        "lockgate.judge.commands:cmd_push_set",
        "Copy a labelled JSONL set and its manifest to an MLflow evaluation dataset (then: mlflow:NAME).",
    )
    push.add_argument("--set", required=True, help="the JSONL set (its NAME.meta.yaml beside it)")
    push.add_argument("--name", required=True, help="the MLflow dataset's name (must be new)")

    # registry
    approve = _add(sub, "approve", "lockgate.registry.commands:cmd_approve", "Approve (or reject) a model version.")
    approve.add_argument("model")
    approve.add_argument("version")
    approve.add_argument(
        "--by",
        default=None,
        help="your name (must be in the policy's approvers); with MLflow credentials "
        "(MLFLOW_TRACKING_USERNAME) it defaults to, and must equal, that user",
    )
    approve.add_argument("--reject", action="store_true", help="reject instead of approve")

    # jobs, runnable without Airflow
    run = sub.add_parser("run", help="Run one job once, without Airflow (for debugging).")
    run_sub = run.add_subparsers(dest="job", required=True, metavar="JOB")
    for job in ("benchmark", "drift", "quality", "live", "promotion"):
        p = _add(run_sub, job, f"lockgate.jobs.{job}:cmd_run", f"Run the {job} job once.")
        p.add_argument("--model", default=None, help=_MODEL_HELP.format(what="a model the policy watches"))
        p.set_defaults(model_from_policy=True)
        p.add_argument("--dry-run", action="store_true", help="promotion: decide but move nothing")
        if job == "quality":
            p.add_argument("--challenger-version", default=None, help="default: the challenger alias")
            p.add_argument("--champion-version", default=None, help="default: the champion alias")
            p.add_argument("--sample-size", type=int, default=None, help="default: the policy's")
            p.add_argument("--rubrics", nargs="+", default=None, help="default: the policy's")

    # demo (imported only when it runs)
    demo = _add(sub, "demo", "lockgate.devtools.demo:cmd_demo", "Run the whole story on embedded defaults.")
    demo.add_argument(
        "--scenario",
        default="healthy",
        type=_scenario_name,
        help="the story to tell (default: healthy; an unknown name lists the others)",
    )
    demo.add_argument("--approve", action=argparse.BooleanOptionalAction, default=True)
    demo.add_argument("--keep-running", action="store_true", help="leave the stack up afterwards")
    return parser


def _lookup(path: str) -> Any:
    module_name, attr = path.split(":")
    return getattr(importlib.import_module(module_name), attr)


def _resolve(handler: str) -> Handler:
    handler_function: Handler = _lookup(handler)
    return handler_function


def _scenario_name(name: str) -> str:
    """A demo scenario's name; argparse turns the error into a usage message."""
    known = sorted(_lookup(_SCENARIOS))
    if name not in known:
        raise argparse.ArgumentTypeError(f"invalid choice: {name!r} (choose from {', '.join(known)})")
    return name


_CONNECTION_TROUBLE = re.compile(
    r"connection refused|could not connect|failed to establish a new connection|max retries exceeded"
    r"|timeout expired|timed out|could not translate host name|name or service not known|"
    r"server closed the connection|no route to host|connection reset|temporary failure in name resolution",
    re.IGNORECASE,
)
_DB_HINT = "check LOCKGATE_LOGS_DB_URL / LOCKGATE_STATE_DB_URL or the Airflow connection lockgate_logs"


def _one_line(text: str, limit: int = 500) -> str:
    line = " ".join(text.split())
    return line if len(line) <= limit else line[: limit - 3] + "..."


def _reason(text: str) -> str:
    """The useful tail of a connection error ('[Errno 111] Connection refused'), else its first line."""
    errno = re.search(r"\[Errno -?\d+\] ([^'\")\]]+)", text)
    if errno:
        return errno.group(1).strip()
    return next((line.strip() for line in text.splitlines() if line.strip()), text)


def _mlflow_uri() -> str:
    try:
        from lockgate.settings import resolve_mlflow_uri

        return resolve_mlflow_uri()
    except Exception:  # noqa: BLE001 - only for a message; the error being reported matters more
        return os.environ.get("MLFLOW_TRACKING_URI", "the MLflow tracking URI")


def describe_error(exc: BaseException) -> tuple[str, str, int]:
    """(code, one-line message, exit status) for an exception that ended a command.

    Database and MLflow classes are looked up in `sys.modules` only: if their
    package was never imported, the error cannot be one of theirs, and the CLI
    stays free of heavy imports.
    """
    if isinstance(exc, LockgateError):
        return exc.code, _one_line(str(exc)), 2
    sa_exc = sys.modules.get("sqlalchemy.exc")
    pg = sys.modules.get("psycopg2")
    if (sa_exc is not None and isinstance(exc, sa_exc.OperationalError | sa_exc.InterfaceError)) or (
        pg is not None and isinstance(exc, pg.OperationalError | pg.InterfaceError)
    ):
        text = str(getattr(exc, "orig", None) or exc)
        if _CONNECTION_TROUBLE.search(text):
            return "service_unavailable", _one_line(f"the database is not reachable: {_reason(text)} ({_DB_HINT})"), 2
        return "database_error", _one_line(f"the database refused the query: {_reason(text)}"), 2
    from lockgate.registry.client import mlflow_error

    ml_error = mlflow_error(exc)
    if ml_error is not None:
        code, text = ml_error
        if _CONNECTION_TROUBLE.search(text):
            return "service_unavailable", _one_line(f"MLflow is not reachable at {_mlflow_uri()}: {_reason(text)}"), 2
        return f"mlflow_{code}", _one_line(f"MLflow: {_reason(text)}"), 2
    req_exc = sys.modules.get("requests.exceptions")
    if req_exc is not None and isinstance(exc, req_exc.ConnectionError | req_exc.Timeout):
        return "service_unavailable", _one_line(f"a server did not answer: {_reason(str(exc))}"), 2
    if isinstance(exc, ConnectionError | TimeoutError):
        return "service_unavailable", _one_line(f"a server did not answer: {exc}"), 2
    return "unexpected", _one_line(f"{type(exc).__name__}: {exc} (rerun with -v for the traceback)"), 1


def only_watched_model() -> str:
    """The model the policy watches, when it watches exactly one: the default of `--model`.

    Raises:
        ConfigError: the policy watches several models (it names them), so `--model` is needed.
    """
    from lockgate.errors import ConfigError
    from lockgate.policy.schema import load_policy

    names = [m.name for m in load_policy().models]
    if len(names) != 1:
        raise ConfigError(
            f"the policy watches {len(names)} models ({', '.join(names)}): name one with --model", key="--model"
        )
    return names[0]


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    os.environ.setdefault("DO_NOT_TRACK", "true")
    os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
    try:
        if getattr(args, "model_from_policy", False) and not args.model:
            args.model = only_watched_model()
        handler = args.handler
        if getattr(args, "model_handler", None) and getattr(args, "model", None):
            handler = args.model_handler  # `lockgate status MODEL`: the registry, not the local stack
        result = _resolve(handler)(args)
    except KeyboardInterrupt:
        print("lockgate: interrupted", file=sys.stderr)
        return 130
    except Exception as exc:  # noqa: BLE001 - every failure ends in one line; -v shows the traceback
        code, message, status = describe_error(exc)
        if args.verbose:
            traceback.print_exc(file=sys.stderr)
        print(f"lockgate: error [{code}]: {message}", file=sys.stderr)
        return status
    return int(result or 0)


if __name__ == "__main__":
    raise SystemExit(main())
