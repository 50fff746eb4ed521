"""Rubrics: versioned prompt files under `judge/rubrics/<name>.<version>.txt`.

A rubric file has a small header (`key: value` lines), a `---` line, then the
prompt template. The header names the score labels the judge must answer with and
what each is worth, e.g. `labels: 1=1, 2=2, ...` or `labels: yes=1, no=0`. Templates
use `{{prompt}}`, `{{response}}`, `{{context}}` and `{{response_b}}` placeholders,
filled in one pass so that text from the logs can never inject a placeholder.

Changing a rubric's wording means a new version file: summaries record the
rubric ids (`relevance.v1`) they were scored with, so scores from different
wordings are never compared silently.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Literal, cast

from lockgate.errors import ConfigError
from lockgate.settings import RUBRIC_NAMES, RubricName

RUBRIC_DIR = Path(__file__).resolve().parent / "rubrics"
DEFAULT_VERSIONS: dict[RubricName, str] = dict.fromkeys(RUBRIC_NAMES, "v1")

RubricKind = Literal["scale", "binary", "pairwise"]
FIELDS = ("prompt", "response", "context", "response_b")

_PLACEHOLDER_RE = re.compile(r"\{\{(\w+)\}\}")
# Markers the templates use to fence data; the same markers inside logged text are
# defused so a hostile response cannot close its own fence and speak as the rubric.
_MARKER_RE = re.compile(r"\[(\s*(?:END\b[^\]\n]{0,40}|USER REQUEST|RESPONSE|CONTEXT|ANSWER [AB])\s*)\]", re.IGNORECASE)


@dataclass(frozen=True)
class Rubric:
    """One rubric: its labels and their values, and the prompt template."""

    name: RubricName
    version: str
    kind: RubricKind
    labels: tuple[str, ...]
    values: tuple[float, ...]
    fields: tuple[str, ...]
    template: str

    @property
    def id(self) -> str:
        return f"{self.name}.{self.version}"

    @property
    def needs_context(self) -> bool:
        return "context" in self.fields

    @property
    def min_value(self) -> float:
        return min(self.values)

    @property
    def max_value(self) -> float:
        return max(self.values)

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
        """The judge prompt for one sample; every inserted text is fenced, defused and cut."""
        values = {
            "prompt": prompt,
            "response": response,
            "context": context if context is not None else "(no context)",
            "response_b": response_b if response_b is not None else "",
        }
        missing = [f for f in self.fields if f in ("context", "response_b") and not values[f].strip()]
        if missing and self.kind == "pairwise":
            raise ValueError(f"rubric {self.id} needs {missing}")
        cleaned = {k: _clean(v, max_chars) for k, v in values.items()}
        return _PLACEHOLDER_RE.sub(lambda m: cleaned.get(m.group(1), m.group(0)), self.template)


def _clean(text: str, max_chars: int) -> str:
    text = _MARKER_RE.sub(lambda m: f"({m.group(1)})", text)
    if len(text) > max_chars:
        text = text[:max_chars] + " [...]"
    return text


def _parse_labels(raw: str, path: Path) -> tuple[tuple[str, ...], tuple[float, ...]]:
    labels: list[str] = []
    values: list[float] = []
    for part in raw.split(","):
        if "=" not in part:
            raise ConfigError(f"label {part.strip()!r} must look like LABEL=VALUE", key="labels", source=str(path))
        label, value = (s.strip() for s in part.split("=", 1))
        labels.append(label)
        values.append(float(value))
    if len(labels) < 2 or len(set(labels)) != len(labels):
        raise ConfigError("a rubric needs at least two distinct labels", key="labels", source=str(path))
    return tuple(labels), tuple(values)


def parse_rubric(text: str, path: Path) -> Rubric:
    """Parse one rubric file; a bad header raises `ConfigError` naming the key."""
    if "\n---\n" not in text:
        raise ConfigError("missing the '---' line between header and template", source=str(path))
    head, template = text.split("\n---\n", 1)
    meta: dict[str, str] = {}
    for line in head.splitlines():
        if line.strip():
            key, _, value = line.partition(":")
            meta[key.strip()] = value.strip()
    for key in ("name", "version", "kind", "labels", "fields"):
        if key not in meta:
            raise ConfigError("missing header key", key=key, source=str(path))
    if meta["name"] not in RUBRIC_NAMES:
        raise ConfigError(f"unknown rubric {meta['name']!r}", key="name", source=str(path))
    if meta["kind"] not in ("scale", "binary", "pairwise"):
        raise ConfigError(f"unknown kind {meta['kind']!r}", key="kind", source=str(path))
    fields = tuple(f.strip() for f in meta["fields"].split(","))
    unknown = [f for f in fields if f not in FIELDS]
    if unknown:
        raise ConfigError(f"unknown fields {unknown}", key="fields", source=str(path))
    used = set(_PLACEHOLDER_RE.findall(template))
    if used != set(fields):
        raise ConfigError(f"template uses {sorted(used)} but the header declares {sorted(fields)}", source=str(path))
    labels, values = _parse_labels(meta["labels"], path)
    return Rubric(
        name=meta["name"],
        version=meta["version"],
        kind=cast(RubricKind, meta["kind"]),
        labels=labels,
        values=values,
        fields=fields,
        template=template.strip() + "\n",
    )


@cache
def load_rubric(name: str, version: str | None = None) -> Rubric:
    """The rubric `name` at `version` (default: the version this lockgate release uses)."""
    if name not in RUBRIC_NAMES:
        raise ConfigError(f"unknown rubric {name!r}; choose from {list(RUBRIC_NAMES)}", key="rubrics")
    ver = version or DEFAULT_VERSIONS[name]
    if not re.fullmatch(r"v\d+", ver):
        raise ConfigError(f"rubric version must look like v1, got {ver!r}", key="rubrics")
    path = RUBRIC_DIR / f"{name}.{ver}.txt"
    try:
        text = path.read_text()
    except OSError as exc:
        raise ConfigError(f"cannot read rubric file: {exc.strerror}", source=str(path)) from None
    rubric = parse_rubric(text, path)
    if rubric.name != name or rubric.version != ver:
        raise ConfigError(f"file declares {rubric.id}, expected {name}.{ver}", source=str(path))
    return rubric
