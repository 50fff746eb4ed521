"""Rubrics: files `<name>.jinja`, YAML front matter and a Jinja2 template, in a folder.

The packaged rubrics live in `judge/rubrics/`; a policy's `quality.rubrics_dir` adds
a folder of its own, so a team writes a rubric (tone, policy compliance, a domain
check) without changing code. A rubric file looks like::

    ---
    name: tone                 # must match the file name (tone.jinja)
    version: v1                # a new wording is a new version
    description: Whether the answer is polite and calm (yes/no).
    scale: {"yes": 1, "no": 0} # label the judge answers with: its value
    ---
    ... {{ prompt }} ... {{ response }} ... {% if context %}{{ context }}{% endif %}

`scale` may also be a list of numeric labels (`[1, 2, 3, 4, 5]`, each worth itself).
Optional keys: `kind` (`scale`, `binary`, or `pairwise` for the packaged pairwise
rubric; default: `binary` for two labels, else `scale`) and `optional` (fields the
template uses that a sample may lack, e.g. `[context]`). The template may use
`prompt`, `response`, `context` and `response_b`; the fields it uses are what a
sample must have (a rubric that needs `context` skips samples without one). Logged
text is inserted as data by Jinja2 (never evaluated as template), in a sandbox.

Every rubric yields the metric `quality.judge_<name>` (its expected score).
Summaries record rubric ids (`relevance.v1`), so scores from different wordings are
never compared silently.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any, Literal, cast

import yaml

from lockgate.errors import ConfigError
from lockgate.policy.schema import PACKAGED_RUBRICS_DIR, RUBRIC_SUFFIX, rubric_files

RUBRIC_DIR = PACKAGED_RUBRICS_DIR

RubricKind = Literal["scale", "binary", "pairwise"]
FIELDS = ("prompt", "response", "context", "response_b")

_NAME_RE = re.compile(r"^[a-z][a-z0-9_]{0,39}$")
_FRONT_RE = re.compile(r"\A---[ \t]*\n(.*?)\n---[ \t]*\n", re.DOTALL)
# Markers the templates use to fence data; the same markers inside logged text are
# defused so a hostile response cannot close its own fence and speak as the rubric.
_MARKER_RE = re.compile(r"\[(\s*(?:END\b[^\]\n]{0,40}|USER REQUEST|RESPONSE|CONTEXT|ANSWER [AB])\s*)\]", re.IGNORECASE)


@dataclass(frozen=True)
class Rubric:
    """One rubric: its labels and their values, and the prompt template."""

    name: str
    version: str
    kind: RubricKind
    labels: tuple[str, ...]
    values: tuple[float, ...]
    fields: tuple[str, ...]
    template: str
    description: str = ""
    optional: tuple[str, ...] = ()
    source: str = ""

    @property
    def id(self) -> str:
        return f"{self.name}.{self.version}"

    @property
    def metric(self) -> str:
        """The metric this rubric's scores are gated as (`quality.<metric>`)."""
        return f"judge_{self.name}"

    @property
    def needs_context(self) -> bool:
        return "context" in self.fields and "context" not in self.optional

    @property
    def min_value(self) -> float:
        return min(self.values)

    @property
    def max_value(self) -> float:
        return max(self.values)

    @property
    def unit(self) -> str:
        if self.kind == "binary":
            return (
                "share"
                if (self.min_value, self.max_value) == (0, 1)
                else f"score {self.min_value:g}-{self.max_value:g}"
            )
        return f"score {self.min_value:g}-{self.max_value:g}"

    def value_of(self, label: str) -> float:
        return self.values[self.labels.index(label)]

    def normalise(self, score: float) -> float:
        """Map a score onto [0, 1] (1 = the best label's value)."""
        span = self.max_value - self.min_value
        return (score - self.min_value) / span if span else 0.0

    def render(
        self,
        *,
        prompt: str,
        response: str,
        context: str | None = None,
        response_b: str | None = None,
        max_chars: int = 2000,
    ) -> str:
        """The judge prompt for one sample; every inserted text is defused and cut."""
        if "response_b" in self.fields and not (response_b or "").strip():
            raise ValueError(f"rubric {self.id} needs ['response_b']")
        if context is None or not context.strip():
            # A rubric that needs a context is never asked without one (samples are skipped);
            # the placeholder keeps a direct call readable. Optional context renders as empty.
            context = "" if "context" in self.optional else "(no context)"
        values = {"prompt": prompt, "response": response, "context": context, "response_b": response_b or ""}
        cleaned = {k: _clean(v, max_chars) for k, v in values.items()}
        return str(_compiled(self.template).render(**cleaned))


@lru_cache(maxsize=64)
def _compiled(template: str) -> Any:
    from jinja2 import StrictUndefined
    from jinja2.sandbox import SandboxedEnvironment

    env = SandboxedEnvironment(undefined=StrictUndefined, keep_trailing_newline=True, autoescape=False)
    return env.from_string(template)


def _clean(text: str, max_chars: int) -> str:
    text = _MARKER_RE.sub(lambda m: f"({m.group(1)})", text)
    if len(text) > max_chars:
        text = text[:max_chars] + " [...]"
    return text


def _parse_scale(raw: Any, path: Path) -> tuple[tuple[str, ...], tuple[float, ...]]:
    pairs: list[tuple[str, Any]]
    if isinstance(raw, dict):
        pairs = [(str(k), v) for k, v in raw.items()]
    elif isinstance(raw, list):
        pairs = [(str(v), v) for v in raw]
    else:
        raise ConfigError("scale must map labels to values, or list numeric labels", key="scale", source=str(path))
    labels: list[str] = []
    values: list[float] = []
    for label, value in pairs:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ConfigError(f"label {label!r} needs a numeric value", key="scale", source=str(path))
        if not label.strip() or label != label.strip():
            raise ConfigError(
                f"label {label!r} must be a word without surrounding spaces", key="scale", source=str(path)
            )
        labels.append(label)
        values.append(float(value))
    if len(labels) < 2 or len(set(labels)) != len(labels) or len(set(values)) < 2:
        raise ConfigError("a rubric needs at least two distinct labels and values", key="scale", source=str(path))
    return tuple(labels), tuple(values)


def template_fields(template: str, path: Path) -> tuple[str, ...]:
    """The fields a template uses; an unknown variable or a syntax error is a `ConfigError`."""
    from jinja2 import TemplateSyntaxError, meta
    from jinja2.sandbox import SandboxedEnvironment

    env = SandboxedEnvironment()
    try:
        used = meta.find_undeclared_variables(env.parse(template))
    except TemplateSyntaxError as exc:
        raise ConfigError(f"template line {exc.lineno}: {exc.message}", key="template", source=str(path)) from None
    unknown = sorted(used - set(FIELDS))
    if unknown:
        raise ConfigError(f"template uses {unknown}; it may use {list(FIELDS)}", key="template", source=str(path))
    if "response" not in used:
        raise ConfigError("template must show the {{ response }} it judges", key="template", source=str(path))
    return tuple(f for f in FIELDS if f in used)


def parse_rubric(text: str, path: Path) -> Rubric:
    """Parse one rubric file; a bad front matter raises `ConfigError` naming the key."""
    m = _FRONT_RE.match(text)
    if m is None:
        raise ConfigError("a rubric file starts with YAML front matter between two '---' lines", source=str(path))
    try:
        meta = yaml.safe_load(m.group(1))
    except yaml.YAMLError as exc:
        raise ConfigError(f"front matter is not YAML: {exc}", source=str(path)) from None
    if not isinstance(meta, dict):
        raise ConfigError("front matter must be a mapping", source=str(path))
    for key in ("name", "description", "scale"):
        if key not in meta:
            raise ConfigError("missing front matter key", key=key, source=str(path))
    unknown_keys = sorted(set(meta) - {"name", "version", "description", "scale", "kind", "optional"})
    if unknown_keys:
        raise ConfigError(f"unknown front matter keys {unknown_keys}", key=unknown_keys[0], source=str(path))
    name = str(meta["name"])
    if not _NAME_RE.fullmatch(name):
        raise ConfigError(
            f"rubric name {name!r} must be lower case letters, digits and _ (it becomes judge_{name})",
            key="name",
            source=str(path),
        )
    if name in ("spearman", "kappa"):
        raise ConfigError(
            f"judge_{name} is the judge's calibration metric: rename the rubric", key="name", source=str(path)
        )
    version = str(meta.get("version", "v1"))
    if not re.fullmatch(r"v\d+", version):
        raise ConfigError(f"version must look like v1, got {version!r}", key="version", source=str(path))
    labels, values = _parse_scale(meta["scale"], path)
    kind = meta.get("kind") or ("binary" if len(labels) == 2 else "scale")
    if kind not in ("scale", "binary", "pairwise"):
        raise ConfigError(f"unknown kind {kind!r}", key="kind", source=str(path))
    template = text[m.end() :].strip() + "\n"
    fields = template_fields(template, path)
    if kind == "pairwise" and "response_b" not in fields:
        raise ConfigError(
            "a pairwise rubric compares {{ response }} with {{ response_b }}", key="kind", source=str(path)
        )
    if kind != "pairwise" and "response_b" in fields:
        raise ConfigError("only a pairwise rubric may use response_b", key="kind", source=str(path))
    optional = tuple(str(f) for f in (meta.get("optional") or []))
    if set(optional) - {"context"}:
        raise ConfigError("only context can be optional", key="optional", source=str(path))
    return Rubric(
        name=name,
        version=version,
        kind=cast(RubricKind, kind),
        labels=labels,
        values=values,
        fields=fields,
        template=template,
        description=str(meta["description"]).strip(),
        optional=optional,
        source=str(path),
    )


@lru_cache(maxsize=256)
def _load_file(path: str, mtime_ns: int) -> Rubric:
    # Keyed by modification time: a long-lived worker sees an edited rubric file.
    p = Path(path)
    try:
        text = p.read_text()
    except OSError as exc:
        raise ConfigError(f"cannot read rubric file: {exc.strerror}", source=path) from None
    return parse_rubric(text, p)


def load_rubric(name: str, version: str | None = None, rubrics_dir: str | Path | None = None) -> Rubric:
    """The rubric `name` from the packaged files or `rubrics_dir`; `version`, when given, must match the file's."""
    files = rubric_files(rubrics_dir)
    path = files.get(name)
    if path is None:
        raise ConfigError(f"unknown rubric {name!r}; rubric files present: {sorted(files)}", key="quality.rubrics")
    try:
        mtime = os.stat(path).st_mtime_ns
    except OSError as exc:
        raise ConfigError(f"cannot read rubric file: {exc.strerror}", source=str(path)) from None
    rubric = _load_file(str(path), mtime)
    if rubric.name != name:
        raise ConfigError(f"file declares name {rubric.name!r}, expected {name!r}", key="name", source=str(path))
    if name == "pairwise" and rubric.kind != "pairwise":
        raise ConfigError("the pairwise rubric must be of kind pairwise", key="kind", source=str(path))
    if name != "pairwise" and rubric.kind == "pairwise":
        raise ConfigError("only the rubric named pairwise is asked about pairs", key="kind", source=str(path))
    if version is not None and version != rubric.version:
        raise ConfigError(f"{path} is {rubric.id}, not version {version}", key="quality.rubrics", source=str(path))
    return rubric


def available_rubrics(rubrics_dir: str | Path | None = None) -> list[str]:
    """Names of every rubric file present (packaged and in `rubrics_dir`)."""
    return sorted(rubric_files(rubrics_dir))


__all__ = ["FIELDS", "RUBRIC_DIR", "RUBRIC_SUFFIX", "Rubric", "available_rubrics", "load_rubric", "parse_rubric"]
