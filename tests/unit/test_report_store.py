"""The reports store on the local folder: keys, the run upload order, and the guard on requested paths."""

from __future__ import annotations

from pathlib import Path

import pytest

from lockgate.reports.store import ReportStore, clean_key


@pytest.mark.parametrize(
    ("path", "key"),
    [
        ("drift/m/run/report.html", "drift/m/run/report.html"),
        ("drift/m/../../etc/passwd", None),
        ("drift/./m/report.html", None),
        ("/drift/m/report.html", None),
        ("drift//m/report.html", None),
        ("drift\\m\\report.html", None),
        ("drift/m/report.html\x00.png", None),
        ("", None),
    ],
)
def test_clean_key(path: str, key: str | None) -> None:
    assert clean_key(path) == key


def test_the_local_folder_is_the_store(tmp_path: Path) -> None:
    reports = tmp_path / "reports"
    run = reports / "live" / "m" / "r1"
    run.mkdir(parents=True)
    (run / "report.html").write_text("<p>page</p>")
    (run / "summary.json").write_text("{}")
    for store in (ReportStore(reports), ReportStore(reports, reports.as_uri())):
        assert store.is_local
        assert store.put_run(run) == []  # already there
        assert store.read_bytes("live/m/r1/report.html") == b"<p>page</p>"
        assert store.is_file("live/m/r1/summary.json") and not store.is_file("live/m/r1/nothing.html")
        assert store.list("live/m") == ["live/m/r1/report.html", "live/m/r1/summary.json"]
        with pytest.raises(FileNotFoundError):
            store.read_bytes("live/m/r2/report.html")


def test_a_run_is_put_with_its_summary_last(tmp_path: Path) -> None:
    reports, remote = tmp_path / "reports", tmp_path / "remote"
    run = reports / "quality" / "m" / "r1"
    (run / "sub").mkdir(parents=True)
    for name in ("summary.json", "report.html", "evidently.html", "sub/summary.json", "half.html.tmp"):
        (run / name).write_text(name)
    store = ReportStore(reports, remote.as_uri())
    assert not store.is_local
    put = store.put_run(run)
    assert put[-1] == "quality/m/r1/summary.json" and "quality/m/r1/half.html.tmp" not in put
    names = ("summary.json", "report.html", "evidently.html", "sub/summary.json")
    assert sorted(put) == store.list() == sorted(f"quality/m/r1/{n}" for n in names)
    assert store.write_text("quality/m/latest.json", "{}") == f"{remote.as_uri()}/quality/m/latest.json"
    assert (remote / "quality" / "m" / "latest.json").read_text() == "{}"
    with pytest.raises(ValueError):
        store.put_files([tmp_path / "elsewhere.html"])
