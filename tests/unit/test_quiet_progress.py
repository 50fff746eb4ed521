"""Third-party progress bars stay out of task logs, where Airflow shows stderr as ERROR lines."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

# MLflow's artifact download shows a tqdm bar on stderr; so would transformers' and the Hub's.
DOWNLOAD = """
import sys, tempfile
from pathlib import Path
{prelude}
import mlflow
root = Path(tempfile.mkdtemp())
(root / "src").mkdir()
for i in range(3):
    (root / "src" / f"{{i}}.txt").write_text("x")
mlflow.artifacts.download_artifacts(artifact_uri=(root / "src").as_uri(), dst_path=str(root / "out"))
from tqdm import tqdm
for _ in tqdm(range(3), desc="a bar"):
    pass
from transformers.utils import logging as hf_logging  # "Loading weights" of every from_pretrained
for _ in hf_logging.tqdm(range(3), desc="hf bar"):
    pass
"""


def _stderr(prelude: str) -> str:
    env = {k: v for k, v in os.environ.items() if k not in ("TQDM_DISABLE", "HF_HUB_DISABLE_PROGRESS_BARS")}
    env["HF_HUB_OFFLINE"] = "1"
    env["MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR"] = "true"  # as on a machine where nobody turned it off
    env["PYTHONPATH"] = str(Path(__file__).resolve().parents[2] / "include")
    done = subprocess.run(
        [sys.executable, "-c", DOWNLOAD.format(prelude=prelude)], env=env, capture_output=True, text=True, timeout=240
    )
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stderr


def test_a_job_process_shows_no_progress_bar_where_a_plain_one_does() -> None:
    # The same work with and without importing lockgate.jobs (as every task does first).
    plain = _stderr("")
    # the check sees the bars when they are there
    assert "a bar" in plain and "hf bar" in plain and "Downloading artifacts" in plain
    quiet = _stderr("import lockgate.jobs")
    assert "%|" not in quiet and "bar" not in quiet and "Downloading artifacts" not in quiet, quiet[-2000:]
