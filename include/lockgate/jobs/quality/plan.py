"""The quality job's first step: the trigger form, and the plan the DAG's tasks hand each other."""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from lockgate.errors import ConfigError, UnknownModelVersionError
from lockgate.jobs.context import RunContext
from lockgate.jobs.publish import run_files
from lockgate.policy.schema import FixedWindow, Policy, QualityConfig, RubricName, load_policy, rubric_files

log = logging.getLogger(__name__)

REPLAY_FILE = "replay.jsonl"
PLAN_FILE = "plan.json"

Mode = Literal["traffic", "replay", "champion_only", "no_versions"]


class QualityParams(BaseModel):
    """The DAG's trigger form, validated (a bad value fails the task without retry)."""

    model_config = ConfigDict(extra="forbid")

    model: str = Field(min_length=1)
    challenger_version: str | None = Field(None, description="Default: the `challenger` alias.")
    champion_version: str | None = Field(None, description="Default: the `champion` alias.")
    sample_size: int | None = Field(None, gt=0, description="Default: the policy's quality.sample_size.")
    rubrics: list[RubricName] | None = Field(None, description="Default: the policy's quality.rubrics.")

    @classmethod
    def from_params(cls, params: Mapping[str, Any]) -> QualityParams:
        from pydantic import ValidationError

        from lockgate.settings import format_validation_error

        cleaned = {k: (None if v in ("", []) else v) for k, v in params.items() if k in cls.model_fields}
        try:
            validated = cls.model_validate(cleaned)
        except ValidationError as exc:
            key, msg = format_validation_error(exc)
            raise ConfigError(f"invalid DAG params ({msg})", key=key, source="params") from None
        if validated.rubrics:
            # Rubrics are files (packaged, or the policy's rubrics_dir): a name is valid when its file is there.
            present = rubric_files(load_policy().quality.rubrics_dir)
            unknown = [r for r in validated.rubrics if r not in present]
            if unknown:
                raise ConfigError(
                    f"invalid DAG params (no rubric file for {unknown}; present: {sorted(present)})",
                    key="rubrics",
                    source="params",
                )
        return validated

    @property
    def versions(self) -> dict[str, str]:
        out: dict[str, str] = {}
        if self.challenger_version:
            out["challenger"] = self.challenger_version
        if self.champion_version:
            out["champion"] = self.champion_version
        return out


class QualityPlan(BaseModel):
    """What one run evaluates; JSON between the DAG's tasks (small, no texts)."""

    model_config = ConfigDict(extra="forbid")

    model_name: str
    run_key: str
    challenger_version: str | None
    champion_version: str | None
    window_start: datetime
    window_end: datetime
    sample_size: int
    rubrics: list[RubricName]
    seed: int
    mode: Mode
    traffic: dict[str, int] = Field(default_factory=dict, description="Rows per version in the window.")
    run_dir: str
    dag_id: str | None = None
    run_id: str | None = None
    notes: list[str] = Field(default_factory=list)

    @property
    def window(self) -> Any:
        from lockgate.logs.sampling import Window

        return Window(self.window_start, self.window_end)


def current_window(
    policy: Policy,
    model_name: str,
    data_interval: tuple[datetime, datetime] | None,
    now: datetime | None = None,
) -> tuple[datetime, datetime]:
    """The window to judge: the model's current window (a DAG run's data interval, widened to min_hours)."""
    spec = policy.model(model_name).windows.current
    if isinstance(spec, FixedWindow):
        return spec.start, spec.end
    if data_interval is not None:
        start, end = data_interval
    else:
        end = now or datetime.now(UTC)  # a CLI run without a data interval: the hours up to now
        start = end
    start = min(start, end - timedelta(hours=spec.min_hours))
    return start.astimezone(UTC), end.astimezone(UTC)


def resolve_versions(model_name: str, versions: Mapping[str, str] | None) -> tuple[str | None, str | None, list[str]]:
    """(challenger, champion, notes): given versions win, else the registry's aliases."""
    given = dict(versions or {})
    unknown = set(given) - {"challenger", "champion"}
    if unknown:
        raise ConfigError(f"versions may name 'challenger' and 'champion', not {sorted(unknown)}", key="versions")
    notes: list[str] = []
    challenger, champion = given.get("challenger"), given.get("champion")
    if challenger is None or champion is None:
        from lockgate.registry.adapter import ModelRegistry

        try:
            state = ModelRegistry().state(model_name)
        except UnknownModelVersionError as exc:
            notes.append(f"{exc}: no aliases to read")
        else:
            challenger = challenger or state.challenger
            champion = champion or state.champion
    if challenger is not None and challenger == champion:
        notes.append(f"the challenger alias points at the champion (version {champion}): nothing to compare")
        challenger = None
    return challenger, champion, notes


def logs_engine() -> Any:
    from lockgate.logs.db import make_engine
    from lockgate.settings import resolve_logs_db_url

    return make_engine(resolve_logs_db_url())


def plan_quality(
    ctx: RunContext,
    versions: Mapping[str, str] | None = None,
    sample_size: int | None = None,
    rubrics: Sequence[RubricName] | None = None,
    policy: Policy | None = None,
) -> QualityPlan:
    """Step 1: versions, window (the run's data interval, else `ctx.now` or the clock), and whether the
    challenger is judged on its traffic or replayed."""
    from lockgate.logs.sampling import Window, model_versions_in_window

    model_name = ctx.model
    pol = policy or load_policy()
    pol.model(model_name)  # an unwatched model is a configuration error
    qc = pol.quality
    chosen_rubrics = list(rubrics) if rubrics else list(qc.rubrics)
    present = rubric_files(qc.rubrics_dir)
    bad = [r for r in chosen_rubrics if r not in present]
    if bad or not chosen_rubrics:
        raise ConfigError(f"unknown rubrics {bad}; rubric files present: {sorted(present)}", key="rubrics")
    start, end = current_window(pol, model_name, ctx.data_interval, ctx.now)
    key = ctx.key(f"manual__{end.strftime('%Y%m%dT%H%M%S')}")
    challenger, champion, notes = resolve_versions(model_name, versions)
    traffic = model_versions_in_window(logs_engine(), model_name, Window(start, end), pol.logs)
    mode = _mode(challenger, champion, traffic, qc, notes)
    plan = QualityPlan(
        model_name=model_name,
        run_key=key,
        challenger_version=challenger,
        champion_version=champion,
        window_start=start,
        window_end=end,
        sample_size=sample_size or qc.sample_size,
        rubrics=chosen_rubrics,
        seed=pol.statistics.seed,
        mode=mode,
        traffic=traffic,
        run_dir=str(run_files("quality", model_name, key).dir),
        dag_id=ctx.dag_id,
        run_id=ctx.run_id,
        notes=notes,
    )
    (Path(plan.run_dir) / PLAN_FILE).write_text(plan.model_dump_json(indent=2))
    log.info(
        "quality plan for %s: challenger %s, champion %s, mode %s, window %s, traffic %s",
        model_name,
        challenger,
        champion,
        mode,
        plan.window,
        traffic,
    )
    return plan


def _mode(
    challenger: str | None, champion: str | None, traffic: dict[str, int], qc: QualityConfig, notes: list[str]
) -> Mode:
    """Judge the challenger's own traffic, replay it on the champion's prompts, or judge the champion alone."""
    if challenger is None:
        return "champion_only" if champion else "no_versions"
    if traffic.get(challenger, 0) >= qc.min_samples:
        return "traffic"
    if qc.replay_when_no_traffic and champion is not None:
        notes.append(
            f"challenger {challenger} has {traffic.get(challenger, 0)} rows in the window "
            f"(< {qc.min_samples}): its answers are replayed on the champion's sampled prompts"
        )
        return "replay"
    notes.append(f"challenger {challenger} has {traffic.get(challenger, 0)} rows in the window and replay is off")
    return "traffic"
