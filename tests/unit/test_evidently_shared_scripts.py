"""One copy of the script every Evidently report carries, held by lockgate's page for its frames."""

from __future__ import annotations

import re
from html.parser import HTMLParser

import pytest

from lockgate.drift.evidently_report import (
    DEFERRED_TYPE,
    SHARED_SCRIPT_MIN_CHARS,
    SHARED_TYPE,
    EvidentlyPart,
    EvidentlySection,
    render_evidently_page,
    share_scripts,
)

BUNDLE = "var lib=1;/*" + "x" * SHARED_SCRIPT_MIN_CHARS + "*/window.draw=function(d){};"


def evidently_like(data: str, bundle: str = BUNDLE, after: str = "<script>window.draw(metric);</script>") -> str:
    """The shape of Evidently's standalone page: data script, a small one, its library, the call."""
    return (
        "<html><head><style>body{}</style></head><body><div id='root'></div>"
        f"<script>var metric = {data};</script><script>var global = globalThis</script>"
        f"<script>{bundle}</script>{after}</body></html>"
    )


class _Frames(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.srcdocs: list[str] = []
        self.scripts: list[tuple[dict[str, str | None], str]] = []
        self._attrs: dict[str, str | None] | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "iframe":
            self.srcdocs.append(str(dict(attrs)["srcdoc"]))
        elif tag == "script":
            self._attrs = dict(attrs)

    def handle_data(self, data: str) -> None:
        if self._attrs is not None:
            self.scripts.append((self._attrs, data))
            self._attrs = None

    def handle_endtag(self, tag: str) -> None:
        if tag == "script" and self._attrs is not None:
            self.scripts.append((self._attrs, ""))
            self._attrs = None


def test_a_script_two_reports_carry_is_held_once_and_each_frame_loads_it_then_what_followed_it() -> None:
    sections = [EvidentlySection("columns", evidently_like("{1}")), EvidentlySection("emb", evidently_like("{2}"))]
    shared = share_scripts(sections)
    assert shared.scripts == [BUNDLE]
    for before, after in zip(sections, shared.sections, strict=True):
        assert BUNDLE not in after.html and after.title == before.title and after.height == before.height
        # what came before the library runs as Evidently wrote it; the library is a placeholder; the
        # call after it waits, inert, for the loader, which comes last
        head, rest = after.html.split(f'<script type="{SHARED_TYPE}" data-shared="0"></script>')
        assert head == before.html.split(f"<script>{BUNDLE}")[0]
        assert rest.startswith(f'<script type="{DEFERRED_TYPE}">window.draw(metric);</script><script>(function(){{')
        assert rest.endswith("</script></body></html>")
    page = render_evidently_page("t", [EvidentlyPart(sections=sections)])
    assert page.count(BUNDLE) == 1  # in the page, not in a frame
    frames = _Frames()
    frames.feed(page)
    held = [(a, text) for a, text in frames.scripts if a.get("type") == SHARED_TYPE]
    assert held == [({"type": SHARED_TYPE, "id": "lockgate-shared-0"}, BUNDLE)]
    assert [BUNDLE in doc for doc in frames.srcdocs] == [False, False]
    assert "{1}" in frames.srcdocs[0] and "{2}" in frames.srcdocs[1]
    # the same input numbers and writes it the same way (a rerun writes the same page)
    assert render_evidently_page("t", [EvidentlyPart(sections=sections)]) == page


def test_nothing_is_shared_by_a_lone_report_or_by_small_or_differing_scripts() -> None:
    lone = [EvidentlySection("columns", evidently_like("{1}"))]
    assert share_scripts(lone).sections == lone and share_scripts(lone).scripts == []
    small = [EvidentlySection(str(i), evidently_like("{}", bundle="var small=1;")) for i in range(2)]
    assert share_scripts(small).scripts == []
    differ = [EvidentlySection(str(i), evidently_like("{}", bundle=BUNDLE + str(i))) for i in range(2)]
    assert share_scripts(differ).scripts == []
    page = render_evidently_page("t", [EvidentlyPart(sections=differ)])
    assert SHARED_TYPE not in page and page.count(BUNDLE) == 2


def test_a_script_the_page_could_not_hold_inert_stays_in_each_frame() -> None:
    for breaking in ("</script", "</SCRIPT", "<!--"):
        bundle = BUNDLE + f"'{breaking}'"
        sections = [EvidentlySection(str(i), evidently_like("{}", bundle=bundle)) for i in range(2)]
        assert share_scripts(sections).scripts == [], breaking


@pytest.mark.parametrize(
    ("data", "after"),
    [("{3}", '<script src="x.js"></script>'), ("{3}", "<script>var s = '<!--';</script>"), ("'<!--'", "")],
)
def test_a_report_with_another_kind_of_script_is_left_as_evidently_wrote_it(data: str, after: str) -> None:
    odd = EvidentlySection("odd", evidently_like(data, after=after))
    sections = [EvidentlySection("a", evidently_like("{1}")), EvidentlySection("b", evidently_like("{2}")), odd]
    shared = share_scripts(sections)
    assert shared.scripts == [BUNDLE]
    assert shared.sections[2] == odd
    assert [BUNDLE in s.html for s in shared.sections] == [False, False, True]


def test_the_loader_asks_only_the_parent_and_the_page_answers_only_its_own_frames() -> None:
    sections = [EvidentlySection(str(i), evidently_like(f"{{{i}}}")) for i in range(2)]
    page = render_evidently_page("t", [EvidentlyPart(sections=sections)])
    loader = share_scripts(sections).sections[0].html
    assert "e.source!==window.parent" in loader and "window.parent.postMessage({lockgateNeed:k},'*')" in loader
    assert re.search(r"frames\[i\]\.contentWindow === e\.source", page)
    assert 'getElementById("lockgate-shared-" + k)' in page and "/^[0-9]+$/.test(k)" in page
