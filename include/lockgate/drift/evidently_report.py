"""Evidently's HTML report over the columns lockgate compared (an adapter; no decision is taken here).

What Evidently gets, and why:

* the feature table (operational metrics, text descriptors) with one explicit method
  per column (`wasserstein` for numeric, `jensenshannon` for categorical) and the
  column's minimum effect as threshold: the same effect sizes lockgate decides on, so
  the two reports agree; never Evidently's default, which switches method above
  1,000 rows without saying so;
* the prompt and response embeddings through `EmbeddingsDrift` (its `model` method,
  threshold AUC = 0.5 + min_effect / 2), each in its own run (they have their own rows);
* a first section that puts Evidently's verdict beside lockgate's for every column: Evidently
  flags a column on its effect size alone, lockgate also needs significance after
  Benjamini-Hochberg, so an on-call reader must not mistake Evidently's flag for the gate's;
* never raw prompts or responses: Evidently writes its data as JSON inside a
  `<script>` element with `json.dumps`, which leaves `</script>` as is, so a logged
  prompt could end the script and inject markup. On top of that, the page is
  rendered here with every `<`, `>` and `&` inside the data escaped as `\\u003c`...
  (still the same JSON), so no value can leave the data block.

Evidently's embeddings widget projects the points with t-SNE (slow on a CPU, whatever
the drift method: see docs/benchmarks.md); for the picture only, lockgate swaps
it for a PCA projection while its report runs. The drift score is Evidently's own.
"""

from __future__ import annotations

import json
import logging
import uuid
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt

from lockgate.drift.columns import CATALOG

if TYPE_CHECKING:
    import pandas as pd

log = logging.getLogger(__name__)

_JSON_ESCAPES = {"<": "\\u003c", ">": "\\u003e", "&": "\\u0026", "\u2028": "\\u2028", "\u2029": "\\u2029"}
_DATA_MARKER = "<!-- no embedded data -->"


@dataclass
class EvidentlyResult:
    """Evidently's value per column (same measure as lockgate's effect size; AUC for embeddings)."""

    path: Path
    values: dict[str, float] = field(default_factory=dict)
    methods: dict[str, str] = field(default_factory=dict)


def safe_json(value: Any) -> str:
    """JSON that can sit inside a `<script>` element: no `</script>`, `<!--` or line separators survive."""
    from evidently.legacy.utils import NumpyEncoder

    text = json.dumps(value, cls=NumpyEncoder)
    for raw, escaped in _JSON_ESCAPES.items():
        text = text.replace(raw, escaped)
    return text


def render_widgets_safely(widgets: list[Any], title: str) -> str:
    """Evidently's standalone page for `widgets`, with the data block built from `safe_json`."""
    from evidently.core.metric_types import AdditionalGraphInfo, DetailsInfo
    from evidently.legacy.model.dashboard import DashboardInfo
    from evidently.legacy.model.widget import BaseWidgetInfo
    from evidently.legacy.utils.dashboard import TemplateParams, file_html_template

    items = []
    for info in widgets:
        for graph in info.get_additional_graphs():
            params = graph.params if isinstance(graph, AdditionalGraphInfo) else graph
            items.append(DetailsInfo(title="", info=params, id=graph.id))
    additional_graphs = {
        f"{item.id}": item.info.dict() if isinstance(item.info, BaseWidgetInfo) else item.info for item in items
    }
    dashboard_id = "metric_" + uuid.uuid4().hex
    dashboard = DashboardInfo(name=title, widgets=widgets)
    page = file_html_template(
        TemplateParams(
            dashboard_id=dashboard_id,
            dashboard_info=dashboard,
            additional_graphs=additional_graphs,
            embed_data=False,
        )
    )
    info = dashboard.dict()
    for widget in info["widgets"]:
        widget.pop("additionalGraphs", None)
    data_block = (
        "<script>\n"
        f"var {dashboard_id} = {safe_json(info)};\n"
        f"var additional_graphs_{dashboard_id} = {safe_json(additional_graphs)};\n"
        "</script>"
    )
    if page.count(_DATA_MARKER) != 1:  # pragma: no cover - guards an Evidently template change
        raise RuntimeError("Evidently's page template changed: cannot place the data block safely")
    return str(page).replace(_DATA_MARKER, data_block)


class _PcaProjection:
    """Stands in for sklearn's TSNE in Evidently's embeddings widget (2-D picture only)."""

    def __init__(self, n_components: int = 2, **_: Any) -> None:
        self.n_components = n_components

    def fit_transform(self, data: Any) -> npt.NDArray[np.float64]:
        from sklearn.decomposition import PCA

        x = np.asarray(data, dtype=np.float64)
        k = min(self.n_components, x.shape[0], x.shape[1])
        out = np.zeros((x.shape[0], self.n_components))
        out[:, :k] = PCA(n_components=k, random_state=0).fit_transform(x)
        return out


@contextmanager
def _fast_embedding_projection() -> Iterator[None]:
    try:
        from evidently.legacy.metrics.data_drift import embeddings_drift
    except ImportError:  # pragma: no cover - layout of another Evidently version: keep its t-SNE
        yield
        return
    original = getattr(embeddings_drift, "TSNE", None)
    if original is None:  # pragma: no cover
        yield
        return
    embeddings_drift.TSNE = _PcaProjection
    try:
        yield
    finally:
        embeddings_drift.TSNE = original


def _snapshot_values(snapshot: Any) -> list[tuple[dict[str, Any], Any]]:
    return [(m.get("config", {}), m.get("value")) for m in snapshot.dict().get("metrics", [])]


def _column_report(
    reference: pd.DataFrame, current: pd.DataFrame, columns: Sequence[str], min_effects: Mapping[str, float]
) -> tuple[list[Any], dict[str, float], dict[str, str]]:
    from evidently import DataDefinition, Dataset, Report
    from evidently.metrics import ValueDrift

    numeric = [c for c in columns if CATALOG[c].kind == "numeric"]
    categorical = [c for c in columns if CATALOG[c].kind == "categorical"]
    methods = {c: "wasserstein" for c in numeric} | {c: "jensenshannon" for c in categorical}
    definition = DataDefinition(numerical_columns=numeric, categorical_columns=categorical)
    ordered = [c for c in columns if c in methods]
    ref = Dataset.from_pandas(reference[ordered], data_definition=definition)
    cur = Dataset.from_pandas(current[ordered], data_definition=definition)
    metrics = [ValueDrift(column=c, method=methods[c], threshold=min_effects[c]) for c in ordered]
    snapshot = Report(metrics).run(cur, ref)
    values: dict[str, float] = {}
    for config, value in _snapshot_values(snapshot):
        column = config.get("column")
        if column in methods and isinstance(value, int | float):
            values[column] = float(value)
    return list(snapshot._widgets), values, methods


def _embedding_report(
    name: str, reference: npt.NDArray[np.float32], current: npt.NDArray[np.float32], min_effect: float
) -> tuple[list[Any], float | None]:
    import pandas as pd
    from evidently import DataDefinition, Dataset, Report
    from evidently.metrics import EmbeddingsDrift
    from evidently.metrics.embeddings import ModelDriftMethod

    cols = [f"{name}_{i}" for i in range(reference.shape[1])]
    # Only the embedding set is declared: declaring its 384 columns numerical makes Evidently compute
    # quantiles of each one (~9 s for 2 x 1,000 rows) for nothing.
    definition = DataDefinition(numerical_columns=[], categorical_columns=[], text_columns=[], embeddings={name: cols})
    ref = Dataset.from_pandas(pd.DataFrame(reference, columns=cols), data_definition=definition)
    cur = Dataset.from_pandas(pd.DataFrame(current, columns=cols), data_definition=definition)
    metric = EmbeddingsDrift(embeddings_name=name, drift_method=ModelDriftMethod(threshold=0.5 + min_effect / 2))
    with _fast_embedding_projection():
        snapshot = Report([metric]).run(cur, ref)
    value = next((v for _, v in _snapshot_values(snapshot) if isinstance(v, int | float)), None)
    return list(snapshot._widgets), None if value is None else float(value)


@dataclass
class EvidentlyPart:
    """Widgets of one part of the page, with Evidently's value and method per column."""

    groups: list[Any] = field(default_factory=list)
    values: dict[str, float] = field(default_factory=dict)
    methods: dict[str, str] = field(default_factory=dict)


def column_part(
    reference: pd.DataFrame, current: pd.DataFrame, columns: Sequence[str], min_effects: Mapping[str, float]
) -> EvidentlyPart:
    """Evidently's `ValueDrift` of the tabular columns (numeric and categorical ones of the catalog)."""
    from evidently.legacy.renderers.html_widgets import group_widget

    part = EvidentlyPart()
    tabular = [c for c in columns if CATALOG[c].kind in ("numeric", "categorical")]
    if tabular:
        widgets, values, methods = _column_report(reference, current, tabular, min_effects)
        part.values.update(values)
        part.methods.update(methods)
        part.groups.append(group_widget(title="Operational metrics and text descriptors", widgets=widgets))
    return part


def embedding_part(
    embeddings: Mapping[str, tuple[npt.NDArray[np.float32], npt.NDArray[np.float32]]],
    min_effects: Mapping[str, float],
) -> EvidentlyPart:
    """Evidently's `EmbeddingsDrift` of each embedding set."""
    from evidently.legacy.renderers.html_widgets import group_widget

    part = EvidentlyPart()
    for name, (ref_emb, cur_emb) in embeddings.items():
        if len(ref_emb) < 2 or len(cur_emb) < 2:
            continue
        widgets, value = _embedding_report(name, ref_emb, cur_emb, min_effects[name])
        if value is not None:
            part.values[name] = value
        part.methods[name] = "embeddings model (AUC)"
        part.groups.append(group_widget(title=f"Embeddings: {name}", widgets=widgets))
    return part


@dataclass(frozen=True)
class LockgateVerdict:
    """Lockgate's verdict on one column, shown beside Evidently's on Evidently's page."""

    column: str
    drifted: bool
    p_adjusted: float | None
    effect_size: float | None
    effect_measure: str | None
    min_effect: float


VERDICT_NOTE = (
    "**Lockgate's verdict decides the gates, not this page.** Evidently marks a column as drifted when its "
    "value passes the threshold (lockgate's minimum effect), whatever the sample size. Lockgate also "
    "requires the change to be significant after Benjamini-Hochberg correction across all tested "
    "columns, so where the two disagree the column's shift is within sampling noise. The table below "
    "puts both side by side; lockgate's drift page (report.html) has the details."
)


def verdict_part(verdicts: Sequence[LockgateVerdict], evidently: Sequence[EvidentlyPart]) -> EvidentlyPart:
    """A first section that says which verdict counts, and where Evidently and lockgate differ."""
    from evidently.legacy.renderers.html_widgets import group_widget, table_data, text_widget

    values: dict[str, float] = {}
    for part in evidently:
        values.update(part.values)

    def fmt(x: float | None) -> str:
        return "-" if x is None else f"{x:.4g}"

    rows = []
    for v in verdicts:
        ev = values.get(v.column)
        ev_drift = "-" if ev is None else ("drift" if _evidently_drift(v.column, ev, v.min_effect) else "no drift")
        lg = "drift" if v.drifted else "no drift"
        effect = f"{fmt(v.effect_size)} ({v.effect_measure})" if v.effect_measure else fmt(v.effect_size)
        rows.append([v.column, fmt(ev), ev_drift, effect, fmt(v.p_adjusted), lg,
                     "" if ev_drift in ("-", lg) else "differ"])  # fmt: skip
    table = table_data(
        column_names=["column", "Evidently value", "Evidently", "lockgate effect", "BH-adjusted p", "lockgate", ""],
        data=rows,
        title="Evidently and lockgate, column by column",
    )
    note = text_widget(text=VERDICT_NOTE)
    return EvidentlyPart(groups=[group_widget(title="Which verdict counts", widgets=[note, table])])


def _evidently_drift(column: str, value: float, min_effect: float) -> bool:
    # As Evidently decides: value >= threshold for Wasserstein and Jensen-Shannon; for the embeddings'
    # model method AUC > 0.5 + min_effect / 2 (the threshold `_embedding_report` passes).
    if CATALOG[column].kind == "embedding":
        return value > 0.5 + min_effect / 2
    return value >= min_effect


def write_parts(path: Path, parts: Sequence[EvidentlyPart], title: str = "Evidently drift report") -> EvidentlyResult:
    """Write the parts as one self-contained page (data block escaped, see `render_widgets_safely`)."""
    result = EvidentlyResult(path=path)
    groups: list[Any] = []
    for part in parts:
        groups += part.groups
        result.values.update(part.values)
        result.methods.update(part.methods)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(render_widgets_safely(groups, title), encoding="utf-8")
    tmp.replace(path)
    log.info("wrote Evidently report %s (%d columns and embedding sets)", path, len(result.values))
    return result


def write_evidently_report(
    path: Path,
    reference: pd.DataFrame,
    current: pd.DataFrame,
    columns: Sequence[str],
    min_effects: Mapping[str, float],
    embeddings: Mapping[str, tuple[npt.NDArray[np.float32], npt.NDArray[np.float32]]],
    title: str = "Evidently drift report",
) -> EvidentlyResult:
    """Run Evidently over the tested columns and embeddings and write one self-contained HTML page.

    Args:
        path: the HTML file to write.
        reference: lockgate's feature table of the reference window (no raw text).
        current: the same for the current window.
        columns: tabular columns to include (numeric and categorical ones of the catalog).
        min_effects: each column's minimum effect (Evidently's threshold).
        embeddings: name -> (reference, current) embedding arrays.
        title: the page's dashboard name.
    """
    parts = [column_part(reference, current, columns, min_effects), embedding_part(embeddings, min_effects)]
    return write_parts(path, parts, title)
