"""`DriftSummary`: everything a person needs to trust a drift verdict, and its evidence for the gates.

The summary is written as `drift_summary.json` beside the run's `summary.json`
(the `EvidenceSummary` the promotion gates read) and carried whole in that
summary's `details["drift"]`. Metric names of the evidence contract:

* `drift_share` (model): share of tested columns that drift, n = tested columns;
* `drifted_columns` (model): their count;
* `error_rate`, `timeout_rate` (model, and challenger/champion when their traffic is in
  the current window): rates of the current window with Wilson intervals;
* `column.<name>` (model): the column's effect size (method in its description).

A window with too few usable rows gives status `insufficient_data`, `valid=false`
and no metrics at all: missing evidence, never "no drift".
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from lockgate.evidence import Estimate, EvidenceSummary, MetricEvidence

DriftStatus = Literal["ok", "insufficient_data"]


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ColumnDrift(_Model):
    """One compared column: how it was tested and what came out."""

    column: str
    kind: Literal["numeric", "categorical", "embedding"]
    group: str
    description: str
    tested: bool
    reason: str | None = Field(None, description="Why the column was not tested.")
    method: str | None = Field(None, description="Significance test: ks, chi2, fisher_exact, classifier_auc.")
    statistic: float | None = None
    p_value: float | None = None
    p_adjusted: float | None = Field(None, description="Benjamini-Hochberg adjusted p-value.")
    effect_measure: str | None = Field(None, description="wasserstein_norm, jensenshannon, auc_gini.")
    effect_size: float | None = None
    min_effect: float
    significant: bool | None = None
    drifted: bool = False
    n_reference: int = 0
    n_current: int = 0
    reference_summary: dict[str, float] = Field(default_factory=dict)
    current_summary: dict[str, float] = Field(default_factory=dict)
    power: float | None = Field(
        None,
        description="Embedding columns: the chance that their test flags a shift of exactly the minimum effect "
        "with these sample sizes, at the false discovery rate before Benjamini-Hochberg (an upper bound).",
    )
    evidently_method: str | None = Field(None, description="The method Evidently's report used for this column.")
    evidently_value: float | None = Field(None, description="Evidently's value (same measure as effect_size).")


class ColumnDistribution(_Model):
    """One drifted column's values in both windows, binned for the page: counts, never rows.

    Numeric columns (text columns through their descriptors: lengths, word counts, shares) have
    shared bin `edges`; categorical ones `categories` (the rarest pooled as "other"); embedding
    columns the held-out classifier scores their drift test computed, binned like a numeric column.
    """

    column: str
    kind: Literal["numeric", "categorical", "embedding"]
    label: str = Field(description="What the values are (the column's description, or the score's).")
    edges: list[float] = Field(default_factory=list, description="Bin edges (numeric, embedding).")
    categories: list[str] = Field(default_factory=list, description="Categories (categorical).")
    reference: list[int] = Field(description="Counts per bin or category, reference window.")
    current: list[int] = Field(description="Counts per bin or category, current window.")
    reference_mean: float | None = None
    current_mean: float | None = None
    note: str | None = Field(None, description="How the bins were cut (values beyond them are in the end bins).")


class WindowSample(_Model):
    """One window and how its rows were drawn."""

    role: Literal["reference", "current"]
    mode: str = Field(description="How the window was chosen: fixed, trailing, after_promotion, data_interval.")
    start: datetime | None = Field(None, description="None when the window could not be resolved.")
    end: datetime | None = None
    window_rows: int = 0
    sampled: int = 0
    usable: int = 0
    quarantined: dict[str, int] = Field(default_factory=dict)
    redactions: dict[str, int] = Field(default_factory=dict)
    versions: dict[str, int] = Field(default_factory=dict, description="Usable sampled rows per model version.")
    embedded: int = Field(0, description="Rows whose texts were embedded.")


class Rate(_Model):
    count: int
    n: int
    value: float
    ci_low: float
    ci_high: float
    confidence: float

    def estimate(self) -> Estimate:
        return Estimate(
            value=self.value, ci_low=self.ci_low, ci_high=self.ci_high, confidence=self.confidence, n=self.n
        )


class DriftSummary(_Model):
    model_name: str
    status: DriftStatus
    message: str | None = None
    drift_detected: bool | None = Field(None, description="At least one column drifted; None without evidence.")
    drift_share: float | None = None
    n_tested: int = 0
    drifted_columns: list[str] = Field(default_factory=list)
    fdr_alpha: float
    columns: list[ColumnDrift] = Field(default_factory=list)
    reference: WindowSample
    current: WindowSample
    error_rate: Rate | None = None
    timeout_rate: Rate | None = None
    version_rates: dict[str, dict[str, Rate]] = Field(
        default_factory=dict, description="Per model version of the current window: error_rate, timeout_rate."
    )
    embedding_model: str | None = None
    timings_s: dict[str, float] = Field(default_factory=dict)
    config: dict[str, Any] = Field(default_factory=dict)
    evidently_report: str | None = Field(None, description="File name of Evidently's HTML report, if written.")
    distributions: list[ColumnDistribution] = Field(
        default_factory=list, description="Binned reference and current values of each drifted column."
    )

    @property
    def sample_sizes(self) -> dict[str, int]:
        sizes = {
            "reference": self.reference.usable,
            "current": self.current.usable,
            "reference_window_rows": self.reference.window_rows,
            "current_window_rows": self.current.window_rows,
            "tested_columns": self.n_tested,
        }
        if self.reference.embedded or self.current.embedded:
            sizes["reference_embedded"] = self.reference.embedded
            sizes["current_embedded"] = self.current.embedded
        return sizes

    @property
    def quarantined_total(self) -> dict[str, int]:
        """Quarantined rows of both windows, by reason."""
        total: dict[str, int] = {}
        for w in (self.reference, self.current):
            for reason, count in w.quarantined.items():
                total[reason] = total.get(reason, 0) + count
        return total


def to_evidence(
    drift: DriftSummary,
    *,
    created_at: datetime,
    challenger_version: str | None,
    champion_version: str | None,
    report_path: str | None = None,
    dag_id: str | None = None,
    run_id: str | None = None,
    mlflow_run_ids: dict[str, str] | None = None,
) -> EvidenceSummary:
    """The gates' view of a drift summary (metrics empty unless the evidence is usable)."""
    metrics: dict[str, MetricEvidence] = {}
    ok = drift.status == "ok" and drift.drift_share is not None
    if ok:
        metrics["drift_share"] = MetricEvidence(
            model=Estimate(value=float(drift.drift_share or 0.0), n=drift.n_tested),
            unit="share",
            description=(
                f"share of the {drift.n_tested} tested columns that drift (BH-significant at FDR "
                f"{drift.fdr_alpha:g} and effect >= the column's minimum)"
            ),
        )
        metrics["drifted_columns"] = MetricEvidence(
            model=Estimate(value=float(len(drift.drifted_columns)), n=drift.n_tested),
            unit="columns",
            description=", ".join(drift.drifted_columns) or "none",
        )
        for name, rate in (("error_rate", drift.error_rate), ("timeout_rate", drift.timeout_rate)):
            if rate is None:
                continue
            evidence = MetricEvidence(
                model=rate.estimate(), unit="share", description=f"{name} of the current window (Wilson interval)"
            )
            for role, version in (("challenger", challenger_version), ("champion", champion_version)):
                per_version = drift.version_rates.get(version or "", {}).get(name)
                if version is not None and per_version is not None:
                    setattr(evidence, role, per_version.estimate())
            metrics[name] = evidence
        for col in drift.columns:
            if col.tested and col.effect_size is not None:
                metrics[f"column.{col.column}"] = MetricEvidence(
                    model=Estimate(value=col.effect_size, n=min(col.n_reference, col.n_current)),
                    unit=col.effect_measure,
                    description=(
                        f"{col.method} p={col.p_value:.3g} (BH {col.p_adjusted:.3g}), "
                        f"{col.effect_measure} {col.effect_size:.3g} (min {col.min_effect:g}): "
                        f"{'drift' if col.drifted else 'no drift'}"
                    ),
                )
    return EvidenceSummary(
        kind="drift",
        model_name=drift.model_name,
        challenger_version=challenger_version,
        champion_version=champion_version,
        created_at=created_at,
        window_start=drift.current.start,
        window_end=drift.current.end,
        status=drift.status,
        valid=ok,
        message=drift.message,
        metrics=metrics,
        sample_sizes=drift.sample_sizes,
        quarantined=drift.quarantined_total,
        report_path=report_path,
        mlflow_run_ids=mlflow_run_ids or {},
        dag_id=dag_id,
        run_id=run_id,
        details={"drift": drift.model_dump(mode="json")},
    )
