"""A real `mlflow server` for the tests: started as its own process group, healthy or a clear failure, stopped."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextmanager
def running_server(
    args: Sequence[str], env: Mapping[str, str], log_path: Path, url: str, timeout_s: float = 180
) -> Iterator[str]:
    """Start `args`, wait until `url`/health answers 200, yield `url`; stop the process group at the end.

    Raises RuntimeError, with the end of the server's log, when it exits or is not healthy in time.
    """
    import httpx

    with log_path.open("w") as log:
        proc = subprocess.Popen(list(args), stdout=log, stderr=subprocess.STDOUT, env=dict(env), start_new_session=True)
    deadline = time.monotonic() + timeout_s
    try:
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"server exited {proc.returncode}:\n{log_path.read_text()[-3000:]}")
            try:
                if httpx.get(f"{url}/health", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"server not healthy in {timeout_s:.0f} s:\n{log_path.read_text()[-3000:]}")
            time.sleep(0.5)
        yield url
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=10)
