"""The bytecode the install compiled, reused by processes that run under PYTHONPYCACHEPREFIX.

Under a prefix Python looks for `<prefix>/<source's absolute folder>/<name>.<tag>.pyc` only, never in
the `__pycache__` folders that `make install` compiled (uv's --compile-bytecode): without these links a
new home's stack (`lockgate up`, which keeps bytecode under the home), a test's stack or a fresh
environment recompiles Airflow, MLflow, Evidently and torch in every process (~12 s a process on a
2-core machine).
"""

from __future__ import annotations

import os
import shutil
import sys
import sysconfig
from pathlib import Path


def seed_bytecode(prefix: Path, site_packages: Path | None = None, copy: bool = True) -> int:
    """Link this interpreter's compiled site-packages bytecode into `prefix`; returns how many files.

    `copy`: where a hard link is impossible (another file system), copy the file; without it, stop
    there and leave the rest to be compiled on first use (hundreds of MB are not worth copying).

    `site_packages`: put the links where another environment's site-packages would find them (a fresh
    venv that uv linked from the same cache holds the very same source files). Python checks each .pyc
    against its source's mtime and size and recompiles what does not match, so a link never stands
    for other source. Hard links (a copy across file systems): Python replaces a stale .pyc by renaming
    a new file over it, never by writing into it, so the installed files are never changed.
    """
    tag = f".{sys.implementation.cache_tag}.pyc"
    count = 0
    for root in sorted({sysconfig.get_paths()["purelib"], sysconfig.get_paths()["platlib"]}):
        base = Path(root)
        dest_base = site_packages if site_packages is not None else base
        for dirpath, dirnames, filenames in os.walk(base):
            if os.path.basename(dirpath) != "__pycache__":
                continue
            dirnames.clear()
            source_dir = dest_base / Path(dirpath).parent.relative_to(base)
            target = prefix / source_dir.relative_to(source_dir.anchor)
            for name in filenames:
                if not name.endswith(tag):
                    continue
                count += 1
                if (target / name).exists():
                    continue
                target.mkdir(parents=True, exist_ok=True)
                try:
                    os.link(os.path.join(dirpath, name), target / name)
                except FileExistsError:
                    pass
                except OSError:
                    if not copy:
                        return count
                    shutil.copy2(os.path.join(dirpath, name), target / name)
    return count
