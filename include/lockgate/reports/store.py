"""The reports store: where report files are kept for readers, a local folder or an object store, through fsspec.

Every job writes a run's files into its run folder under `LOCKGATE_REPORTS_DIR` (`jobs.publish.run_files`),
a folder on the worker's own disk; the one publish step then copies them into the store
(`ReportStore.put_run`). Without `LOCKGATE_REPORTS_URL` the store *is* that folder, and copying does
nothing: one host works as it always did. With `LOCKGATE_REPORTS_URL=s3://bucket/prefix` (the
`lockgate[s3]` extra installs s3fs), every worker uploads its runs and the plugin reads the objects,
so the hosts need no shared POSIX volume. Credentials and the endpoint come from the usual AWS
variables (`AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`, `AWS_ENDPOINT_URL` for an S3-compatible
server such as MinIO), or from fsspec's own configuration (`FSSPEC_S3_*`). Any other fsspec protocol
(`gs://`, `abfs://`) works the same once its package is installed.

A key is a path relative to the reports root, `<kind>/<model>/<run>/<file>`, the same in the folder
and in the store. Each object PUT is atomic (a reader gets the old object or the new one, never half),
and a run's `summary.json` is uploaded after its other files, so a summary never names a page that
is not there yet. The summaries themselves are authoritative in lockgate's state database
(`reports.summaries`); the files are for people and scripts.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING

from lockgate.evidence import SUMMARY_FILE
from lockgate.settings import get_settings

if TYPE_CHECKING:
    from fsspec import AbstractFileSystem

log = logging.getLogger(__name__)

_PARTIAL_SUFFIX = ".tmp"  # an atomic write's temporary file (evidence.write_text_atomic)


def clean_key(path: str) -> str | None:
    """`path` as a store key when it is a plain relative path (no `..`, `.`, empty or absolute part), else None.

    What the plugin checks a requested path with before it reads an object: an object store has no
    symlinks to resolve, so refusing every unusual segment is the whole guard.
    """
    if not path or "\\" in path or "\x00" in path:
        return None
    parts = path.split("/")
    if any(part in {"", ".", ".."} for part in parts):
        return None
    return "/".join(parts)


class ReportStore:
    """Report files under one root: `reports_dir` itself (`url` None), or the fsspec location `url`."""

    def __init__(self, reports_dir: Path, url: str | None = None) -> None:
        self.reports_dir = reports_dir
        self.url = url.rstrip("/") if url else None

    @cached_property
    def _fs_root(self) -> tuple[AbstractFileSystem, str]:
        import fsspec

        if self.url is None:
            return fsspec.filesystem("file"), self.reports_dir.resolve().as_posix()
        # A fresh instance: fsspec's instance cache would keep credentials and endpoints of an earlier one.
        fs, root = fsspec.core.url_to_fs(self.url, skip_instance_cache=True)
        return fs, root.rstrip("/")

    @cached_property
    def is_local(self) -> bool:
        """Whether the store is the reports folder itself (nothing to upload)."""
        if self.url is None:
            return True
        fs, root = self._fs_root
        return "file" in _protocols(fs) and Path(root).resolve() == self.reports_dir.resolve()

    def key(self, rel: str) -> str:
        """The store's path of the report file `rel` (relative to the reports root)."""
        return f"{self._fs_root[1]}/{rel}"

    def location(self, rel: str) -> str:
        """Where `rel` lies, for people: a local path, or the URL of the object."""
        return str(self.reports_dir / rel) if self.url is None else f"{self.url}/{rel}"

    def relative(self, path: Path) -> str:
        """The key of a file in the reports folder. Raises ValueError for a file outside it."""
        return path.resolve().relative_to(self.reports_dir.resolve()).as_posix()

    def put_files(self, paths: Iterable[Path]) -> list[str]:
        """Upload files of the reports folder under their keys, in the order given; the keys put."""
        if self.is_local:
            return []
        fs = self._fs_root[0]
        done = []
        for path in paths:
            rel = self.relative(path)
            self._parent(rel)
            fs.put_file(str(path), self.key(rel))
            done.append(rel)
        log.info("reports store: %d files put in %s", len(done), self.url)
        return done

    def put_run(self, run_dir: Path) -> list[str]:
        """Upload a run folder's files, its `summary.json` last; the keys put."""
        files = sorted(p for p in run_dir.rglob("*") if p.is_file() and not p.name.endswith(_PARTIAL_SUFFIX))
        files.sort(key=lambda p: p.parent == run_dir and p.name == SUMMARY_FILE)  # stable: summary last
        return self.put_files(files)

    def write_text(self, rel: str, text: str) -> str:
        """Write one file of the store (one atomic PUT, or an atomic local write)."""
        if self.url is None:
            from lockgate.evidence import write_text_atomic

            write_text_atomic(self.reports_dir / rel, text)
        else:
            self._parent(rel)
            self._fs_root[0].pipe_file(self.key(rel), text.encode())
        return self.location(rel)

    def _parent(self, rel: str) -> None:
        """A folder on a local filesystem must exist before a file is put in it; object stores have none."""
        fs = self._fs_root[0]
        if "file" in _protocols(fs):
            fs.makedirs(fs._parent(self.key(rel)), exist_ok=True)

    def is_file(self, rel: str) -> bool:
        return bool(self._fs_root[0].isfile(self.key(rel)))

    def read_bytes(self, rel: str) -> bytes:
        """One file's content. Raises FileNotFoundError when there is none."""
        data: bytes = self._fs_root[0].cat_file(self.key(rel))
        return data

    def list(self, prefix: str = "") -> list[str]:
        """The keys of every file under `prefix` (a folder key), sorted."""
        fs, root = self._fs_root
        base = f"{root}/{prefix}".rstrip("/")
        if not fs.exists(base):
            return []
        return sorted(str(p)[len(root) + 1 :] for p in fs.find(base))


def _protocols(fs: AbstractFileSystem) -> tuple[str, ...]:
    proto = fs.protocol
    return (proto,) if isinstance(proto, str) else tuple(proto)


def reports_store(reports_dir: Path | None = None) -> ReportStore:
    """The store of the settings (`LOCKGATE_REPORTS_URL`, else the reports folder)."""
    settings = get_settings()
    return ReportStore(reports_dir or settings.reports_dir, settings.reports_url)
