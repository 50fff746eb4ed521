"""Evidently's reports over the columns lockgate compared, in one page (an adapter; no decision is taken here).

Only Evidently's public API is used: `Report`, `Dataset` and `DataDefinition` from `evidently`,
`ValueDrift` and `EmbeddingsDrift` from `evidently.metrics`, `ModelDriftMethod` from
`evidently.metrics.embeddings`, and a snapshot's `dict()` and `get_html_str()`. Nothing reads
Evidently's internals (`tests/test_evidently_api.py` fails on an import of
`evidently.legacy`, `evidently.core`, ... or a private attribute), so an Evidently upgrade within
the range of pyproject.toml needs no port.

What Evidently gets, and why:

* the feature table (operational metrics, text descriptors) with one explicit method
  per column (`wasserstein` for numeric, `jensenshannon` for categorical) and the
  column's minimum effect as threshold: the same effect sizes lockgate decides on, so
  the two reports agree; never Evidently's default, which switches method above
  1,000 rows without saying so;
* the prompt and response embeddings through `EmbeddingsDrift` (its `model` method,
  threshold AUC = 0.5 + min_effect / 2), each in its own report (they have their own rows),
  unless the policy's `drift.evidently_embeddings` is false: their t-SNE pictures are most of a
  drift job's time on a CPU, and lockgate's own page has the embedding drift either way;
* never raw prompts or responses, and no `<`, `>` or `&` in a categorical value (each becomes its
  full-width form, one to one, so the distances do not change): Evidently writes its data as JSON
  inside a `<script>` element with `json.dumps`, which leaves `</script>` as is, so a logged status
  such as `</script><script>...` could otherwise end the script and inject markup.

The page is lockgate's own (`evidently_drift.html`, autoescaped): a first section that puts
Evidently's verdict beside lockgate's for every column (Evidently flags a column on its effect size
alone, lockgate also needs significance after Benjamini-Hochberg, so an on-call reader must not
mistake Evidently's flag for the gate's), then each Evidently report, as Evidently renders it, in
an `<iframe sandbox="allow-scripts" srcdoc=...>`: Evidently's scripts run there in an opaque origin,
away from the Airflow UI's cookies and API, whatever its data holds. Evidently puts its whole
script (~3.5 MB) in every report it renders; lockgate's page keeps one copy of a script that two
or more frames share, inert (`type="text/x-lockgate-shared"`), and each frame asks its parent for it
by `postMessage` and runs it, then the scripts that followed it, in their order (`share_scripts`):
the default page of three reports is ~4.6 MB instead of ~13 MB, still self-contained. It reads
only the `<script>` elements of the HTML Evidently returns; a report of another shape keeps its own
copy (tests/unit/test_evidently_shared_scripts.py; tests/e2e/test_browser.py draws every frame).

Evidently's embeddings widget projects each side's points (at most 2,500) with scikit-learn's t-SNE
while the report runs, whatever the drift method. Its OpenMP threads collapse when other processes
hold the cores (43 s for 300 + 300 rows on a loaded 2-core machine, 2.3 s on one thread), so the
embedding reports run with OpenMP held to one thread (docs/benchmarks.md).
"""

from __future__ import annotations

import logging
import re
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple

import numpy as np
import numpy.typing as npt

from lockgate.drift.columns import CATALOG

if TYPE_CHECKING:
    import pandas as pd

log = logging.getLogger(__name__)

# One to one onto characters that cannot open or close an HTML tag or entity.
_INERT = str.maketrans({"<": "\uff1c", ">": "\uff1e", "&": "\uff06"})


@dataclass
class EvidentlyResult:
    """Evidently's value per column (same measure as lockgate's effect size; AUC for embeddings)."""

    path: Path
    values: dict[str, float] = field(default_factory=dict)
    methods: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class EvidentlySection:
    """One Evidently report: its title on lockgate's page and Evidently's standalone HTML of it."""

    title: str
    html: str
    height: str = "85vh"  # of its frame: Evidently's page scrolls inside it


# A script that two or more of Evidently's pages carry whole (its ~3.5 MB of JavaScript): below
# this size a copy per frame costs less than the exchange.
SHARED_SCRIPT_MIN_CHARS = 100_000
SHARED_TYPE = "text/x-lockgate-shared"
DEFERRED_TYPE = "text/x-lockgate-deferred"
_SCRIPT_OPEN = re.compile(r"<script(?P<attrs>[^>]*)>", re.I)
_SCRIPT_CLOSE = re.compile(r"</script\s*>", re.I)
# Where the browser would end or re-enter a script element early: such a text cannot be held as one.
_NOT_HOLDABLE = re.compile(r"</script|<!--", re.I)
# In each frame, after its last script: ask the parent for the shared scripts (by number), then run
# the placeholders and the deferred scripts in document order. Only the parent's answer counts.
FRAME_LOADER = (
    "(function(){var w=Array.prototype.slice.call(document.querySelectorAll("
    f'\'script[type="{SHARED_TYPE}"],script[type="{DEFERRED_TYPE}"]\')),'
    "want={},got={},left=0,done=false;"
    "w.forEach(function(s){var k=s.getAttribute('data-shared');if(k!==null&&!(k in want)){want[k]=1;left++;}});"
    "function run(){done=true;w.forEach(function(s){var k=s.getAttribute('data-shared'),"
    "n=document.createElement('script');n.text=k===null?s.text:got[k];s.parentNode.replaceChild(n,s);});}"
    "window.addEventListener('message',function(e){var d=e.data;"
    "if(done||e.source!==window.parent||!d||typeof d.lockgateShared!=='string'||typeof d.text!=='string'"
    "||!(d.lockgateShared in want)||(d.lockgateShared in got))return;"
    "got[d.lockgateShared]=d.text;if(--left===0)run();});"
    "Object.keys(want).forEach(function(k){window.parent.postMessage({lockgateNeed:k},'*');});})();"
)


class _Script(NamedTuple):
    start: int
    end: int
    attrs: str
    body: str

    @property
    def plain(self) -> bool:
        return not self.attrs.strip()


def _scripts(page: str) -> list[_Script]:
    """The `<script>` elements of a page, in order (each tag found, then its end: ~6x faster than one
    non-greedy pattern over a 3.5 MB script)."""
    found, at = [], 0
    while (opening := _SCRIPT_OPEN.search(page, at)) and (closing := _SCRIPT_CLOSE.search(page, opening.end())):
        found.append(_Script(opening.start(), closing.end(), opening["attrs"], page[opening.end() : closing.start()]))
        at = closing.end()
    return found


@dataclass(frozen=True)
class SharedScripts:
    """Evidently's pages with each shared script replaced by a placeholder, and the shared scripts."""

    sections: list[EvidentlySection]
    scripts: list[str]


def share_scripts(sections: Sequence[EvidentlySection]) -> SharedScripts:
    """One copy of each large script that two or more sections carry whole, for the page to hold.

    In a section that carries one, that script becomes an empty placeholder naming it, every plain
    script after it is deferred (made inert, its text kept), and a loader after the last one asks
    the parent page for the shared texts and runs everything in the original order. A section with
    another kind of script after the first shared one (a `src`, a type) or a `<!--` in any script is
    left as it is, and so is every page when nothing is shared: the page is then as Evidently wrote it.
    """
    found = [_scripts(s.html) for s in sections]
    seen_in: dict[str, int] = {}
    for scripts in found:
        bodies = [s.body for s in scripts if s.plain and len(s.body) >= SHARED_SCRIPT_MIN_CHARS]
        for body in dict.fromkeys(bodies):  # in page order: the same page numbers them the same
            if bodies.count(body) == 1 and not _NOT_HOLDABLE.search(body):
                seen_in[body] = seen_in.get(body, 0) + 1
    shared = [body for body, n in seen_in.items() if n >= 2]
    if not shared:
        return SharedScripts(list(sections), [])
    number = {body: i for i, body in enumerate(shared)}
    out: list[EvidentlySection] = []
    used: set[int] = set()
    for section, scripts in zip(sections, found, strict=True):
        first = next((i for i, s in enumerate(scripts) if s.plain and s.body in number), None)
        later = scripts[first:] if first is not None else []
        # `<!--` in a script changes where the browser ends it: such a page is not taken apart here.
        if first is None or not all(s.plain for s in later) or any(_NOT_HOLDABLE.search(s.body) for s in scripts):
            out.append(section)
            continue
        at = later[0].start
        pieces = [section.html[:at]]
        for script in later:
            pieces.append(section.html[at : script.start])
            if script.body in number:
                used.add(number[script.body])
                pieces.append(f'<script type="{SHARED_TYPE}" data-shared="{number[script.body]}"></script>')
            else:
                pieces.append(f'<script type="{DEFERRED_TYPE}">{script.body}</script>')
            at = script.end
        pieces.append(f"<script>{FRAME_LOADER}</script>")
        pieces.append(section.html[at:])
        out.append(EvidentlySection(section.title, "".join(pieces), section.height))
    return SharedScripts(out, [body if i in used else "" for i, body in enumerate(shared)])


@dataclass
class EvidentlyPart:
    """Sections of the page, with Evidently's value and method per column."""

    sections: list[EvidentlySection] = field(default_factory=list)
    values: dict[str, float] = field(default_factory=dict)
    methods: dict[str, str] = field(default_factory=dict)
    verdicts: list[list[str]] | None = None


def inert_categories(frame: pd.DataFrame, columns: Sequence[str]) -> pd.DataFrame:
    """`frame` with `<`, `>` and `&` of the string values of `columns` in their full-width forms."""
    out = frame.copy()
    for column in columns:
        out[column] = out[column].map(lambda v: v.translate(_INERT) if isinstance(v, str) else v)
    return out


def _snapshot_values(snapshot: Any) -> list[tuple[dict[str, Any], Any]]:
    return [(m.get("config", {}), m.get("value")) for m in snapshot.dict().get("metrics", [])]


def _page(snapshot: Any) -> str:
    return str(snapshot.get_html_str(as_iframe=False))


def _column_report(
    reference: pd.DataFrame, current: pd.DataFrame, columns: Sequence[str], min_effects: Mapping[str, float]
) -> tuple[str, dict[str, float], dict[str, str]]:
    from evidently import DataDefinition, Dataset, Report
    from evidently.metrics import ValueDrift

    numeric = [c for c in columns if CATALOG[c].kind == "numeric"]
    categorical = [c for c in columns if CATALOG[c].kind == "categorical"]
    methods = {c: "wasserstein" for c in numeric} | {c: "jensenshannon" for c in categorical}
    definition = DataDefinition(numerical_columns=numeric, categorical_columns=categorical)
    ordered = [c for c in columns if c in methods]
    ref = Dataset.from_pandas(inert_categories(reference[ordered], categorical), data_definition=definition)
    cur = Dataset.from_pandas(inert_categories(current[ordered], categorical), data_definition=definition)
    metrics = [ValueDrift(column=c, method=methods[c], threshold=min_effects[c]) for c in ordered]
    snapshot = Report(metrics).run(cur, ref)
    values: dict[str, float] = {}
    for config, value in _snapshot_values(snapshot):
        column = config.get("column")
        if column in methods and isinstance(value, int | float):
            values[column] = float(value)
    return _page(snapshot), values, methods


def _embedding_report(
    name: str, reference: npt.NDArray[np.float32], current: npt.NDArray[np.float32], min_effect: float
) -> tuple[str, float | None]:
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
    from threadpoolctl import threadpool_limits

    metric = EmbeddingsDrift(embeddings_name=name, drift_method=ModelDriftMethod(threshold=0.5 + min_effect / 2))
    with threadpool_limits(1, user_api="openmp"):  # the t-SNE of its picture: see the module's docstring
        snapshot = Report([metric]).run(cur, ref)
    value = next((v for _, v in _snapshot_values(snapshot) if isinstance(v, int | float)), None)
    return _page(snapshot), None if value is None else float(value)


def column_part(
    reference: pd.DataFrame, current: pd.DataFrame, columns: Sequence[str], min_effects: Mapping[str, float]
) -> EvidentlyPart:
    """Evidently's `ValueDrift` of the tabular columns (numeric and categorical ones of the catalog)."""
    part = EvidentlyPart()
    tabular = [c for c in columns if CATALOG[c].kind in ("numeric", "categorical")]
    if tabular:
        page, values, methods = _column_report(reference, current, tabular, min_effects)
        part.values.update(values)
        part.methods.update(methods)
        part.sections.append(EvidentlySection("Operational metrics and text descriptors", page))
    return part


def embedding_part(
    embeddings: Mapping[str, tuple[npt.NDArray[np.float32], npt.NDArray[np.float32]]],
    min_effects: Mapping[str, float],
) -> EvidentlyPart:
    """Evidently's `EmbeddingsDrift` of each embedding set, the sets' reports side by side.

    Each report is mostly its t-SNE on one OpenMP thread, partly outside the GIL: two sets in two
    threads took 1.9 s where one after the other took 3.0 s (docs/benchmarks.md).
    """
    from concurrent.futures import ThreadPoolExecutor

    from threadpoolctl import threadpool_limits

    part = EvidentlyPart()
    sets = {name: pair for name, pair in embeddings.items() if len(pair[0]) >= 2 and len(pair[1]) >= 2}
    if not sets:
        return part
    # One limit around both threads: each report's own limit restores the count it found when it
    # ends, which must not lift the other's while it runs.
    with threadpool_limits(1, user_api="openmp"), ThreadPoolExecutor(len(sets)) as pool:
        futures = {
            name: pool.submit(_embedding_report, name, ref_emb, cur_emb, min_effects[name])
            for name, (ref_emb, cur_emb) in sets.items()
        }
        reports = {name: future.result() for name, future in futures.items()}
    for name, (page, value) in reports.items():
        if value is not None:
            part.values[name] = value
        part.methods[name] = "embeddings model (AUC)"
        part.sections.append(EvidentlySection(f"Embeddings: {name}", page, height="800px"))
    return part


@dataclass(frozen=True)
class LockgateVerdict:
    """Lockgate's verdict on one column, shown beside Evidently's on the Evidently page."""

    column: str
    drifted: bool
    p_adjusted: float | None
    effect_size: float | None
    effect_measure: str | None
    min_effect: float


VERDICT_LEAD = "Lockgate's verdict decides the gates, not this page."
VERDICT_NOTE = (
    "Evidently marks a column as drifted when its "
    "value passes the threshold (lockgate's minimum effect), whatever the sample size. Lockgate also "
    "requires the change to be significant after Benjamini-Hochberg correction across all tested "
    "columns, so where the two disagree the column's shift is within sampling noise. The table below "
    "puts both side by side; lockgate's drift page (report.html) has the details."
)
VERDICT_HEADERS = ("column", "Evidently value", "Evidently", "lockgate effect", "BH-adjusted p", "lockgate", "")


NOT_SENT = "not sent to Evidently (drift.evidently_embeddings: false)"


def verdict_part(
    verdicts: Sequence[LockgateVerdict], evidently: Sequence[EvidentlyPart], not_sent: Collection[str] = ()
) -> EvidentlyPart:
    """A first section that says which verdict counts, and where Evidently and lockgate differ.

    `not_sent`: tested columns the policy keeps from Evidently (their row says so, not just "-").
    """
    values: dict[str, float] = {}
    for part in evidently:
        values.update(part.values)

    def fmt(x: float | None) -> str:
        return "-" if x is None else f"{x:.4g}"

    rows = []
    for v in verdicts:
        ev = values.get(v.column)
        ev_drift = "-" if ev is None else ("drift" if _evidently_drift(v.column, ev, v.min_effect) else "no drift")
        if v.column in not_sent:
            ev_drift = NOT_SENT
        lg = "drift" if v.drifted else "no drift"
        effect = f"{fmt(v.effect_size)} ({v.effect_measure})" if v.effect_measure else fmt(v.effect_size)
        rows.append([v.column, fmt(ev), ev_drift, effect, fmt(v.p_adjusted), lg,
                     "" if ev_drift in ("-", NOT_SENT, lg) else "differ"])  # fmt: skip
    return EvidentlyPart(verdicts=rows)


def _evidently_drift(column: str, value: float, min_effect: float) -> bool:
    # As Evidently decides: value >= threshold for Wasserstein and Jensen-Shannon; for the embeddings'
    # model method AUC > 0.5 + min_effect / 2 (the threshold `_embedding_report` passes).
    if CATALOG[column].kind == "embedding":
        return value > 0.5 + min_effect / 2
    return value >= min_effect


def render_evidently_page(title: str, parts: Sequence[EvidentlyPart], subtitle: str = "Evidently") -> str:
    """Lockgate's page around Evidently's reports: the verdicts first, then each report in a sandboxed frame."""
    from markupsafe import Markup

    from lockgate.reports.html import Table
    from lockgate.reports.templating import render

    rows = [row for part in parts for row in (part.verdicts or [])]
    has_verdicts = any(part.verdicts is not None for part in parts)
    shared = share_scripts([s for part in parts for s in part.sections])
    return render(
        "evidently_drift.html",
        title=title,
        subtitle=subtitle,
        generated_at=None,
        lead=VERDICT_LEAD,
        note=VERDICT_NOTE,
        verdicts=Table(VERDICT_HEADERS, rows, numeric=(1, 4)) if has_verdicts else None,
        sections=shared.sections,
        # Evidently's own JavaScript, identical in every report and checked to hold no `</script` or
        # `<!--` (share_scripts): the page holds it inert for its frames, as Evidently's page holds it.
        shared_scripts=[Markup(s) for s in shared.scripts],  # noqa: S704
        shared_type=SHARED_TYPE,
    )


def write_parts(path: Path, parts: Sequence[EvidentlyPart], title: str = "Evidently drift report") -> EvidentlyResult:
    """Write the parts as one self-contained page (see `render_evidently_page`)."""
    result = EvidentlyResult(path=path)
    for part in parts:
        result.values.update(part.values)
        result.methods.update(part.methods)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(render_evidently_page(title, parts), encoding="utf-8")
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
        title: the page's title.
    """
    parts = [column_part(reference, current, columns, min_effects), embedding_part(embeddings, min_effects)]
    return write_parts(path, parts, title)
