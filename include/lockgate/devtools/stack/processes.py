"""Start, record and stop the stack's processes, each in its own session.

Each component is started with `start_new_session=True`, so its pid is also its process
group id and its session id. The state file records the pid together with the process
start time: a pid whose start time differs is a recycled pid and is never signalled.
Children (uvicorn/gunicorn workers, executor workers, task supervisors, log servers)
share the session, so stopping a component means stopping every process whose session id
is the recorded one, including children that moved to their own process group.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import os
import signal
import socket
import subprocess
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import psutil
from pydantic import BaseModel, ConfigDict, ValidationError

from lockgate.devtools.stack.env import StackPaths, StackPorts
from lockgate.errors import ConfigError, LockgateError

logger = logging.getLogger(__name__)

# psutil derives create_time from boot time + start ticks; the same process always gives
# the same value, a recycled pid a later one. The tolerance only absorbs float rounding.
_CREATE_TIME_TOLERANCE_S = 0.05


class StackError(LockgateError):
    """The local stack could not be started, stopped or inspected."""

    code = "stack_error"


class ProcessRecord(BaseModel):
    """One started component: enough to find it, and only it, again."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str
    pid: int
    create_time: float
    argv: list[str]
    log: str

    @property
    def sid(self) -> int:
        # start_new_session=True made the process a session (and group) leader.
        return self.pid


class StackState(BaseModel):
    """The state file `<home>/run/stack.json`."""

    model_config = ConfigDict(extra="forbid")

    version: int = 1
    started_at: float
    ports: dict[str, int]
    processes: list[ProcessRecord] = []

    def stack_ports(self) -> StackPorts:
        return StackPorts(
            airflow=self.ports["airflow"],
            mlflow=self.ports["mlflow"],
            worker_log=self.ports["worker_log"],
            trigger_log=self.ports["trigger_log"],
        )


def load_state(paths: StackPaths) -> StackState | None:
    if not paths.state_file.exists():
        return None
    try:
        return StackState.model_validate_json(paths.state_file.read_text())
    except (OSError, ValidationError) as exc:
        first = str(exc).splitlines()[0]
        raise ConfigError(
            f"unreadable stack state ({first}); stop leftover processes by hand and delete the file",
            source=str(paths.state_file),
        ) from None


def save_state(paths: StackPaths, state: StackState) -> None:
    """Atomic write: a crash in the middle never leaves a state file `down` cannot read."""
    paths.run_dir.mkdir(parents=True, exist_ok=True)
    tmp = paths.state_file.with_name(paths.state_file.name + ".tmp")
    tmp.write_text(json.dumps(state.model_dump(mode="json"), indent=2) + "\n")
    os.replace(tmp, paths.state_file)


def remove_state(paths: StackPaths) -> None:
    paths.state_file.unlink(missing_ok=True)


@contextlib.contextmanager
def stack_lock(paths: StackPaths) -> Iterator[None]:
    """One `up`/`down`/`settings apply` at a time per LOCKGATE_HOME."""
    paths.run_dir.mkdir(parents=True, exist_ok=True)
    with open(paths.lock_file, "a+") as fh:
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise StackError(
                f"another `lockgate up`, `down` or `settings apply` is running on {paths.home} (lock {paths.lock_file})"
            ) from None
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


# --------------------------------------------------------------------------- starting


def spawn(
    name: str,
    argv: Sequence[str],
    env: Mapping[str, str],
    log_path: Path,
    cwd: Path,
) -> tuple[ProcessRecord, subprocess.Popen[bytes]]:
    """Start `argv` in a new session with stdout and stderr appended to `log_path`."""
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with open(log_path, "ab") as log:
        stamp = time.strftime("%Y-%m-%d %H:%M:%S")
        log.write(f"\n===== lockgate: starting {name} at {stamp}: {' '.join(argv)}\n".encode())
        log.flush()
        proc = subprocess.Popen(
            list(argv),
            env=dict(env),
            cwd=cwd,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        create_time = psutil.Process(proc.pid).create_time()
    except psutil.NoSuchProcess:
        # It died at once; record it anyway so the caller reports its log.
        create_time = time.time()
    record = ProcessRecord(name=name, pid=proc.pid, create_time=create_time, argv=list(argv), log=str(log_path))
    logger.debug("started %s pid=%d", name, proc.pid)
    return record, proc


# --------------------------------------------------------------------------- finding


def _is_live(proc: psutil.Process) -> bool:
    try:
        return bool(proc.is_running() and proc.status() != psutil.STATUS_ZOMBIE)
    except (psutil.NoSuchProcess, psutil.AccessDenied):
        return False


def leader(record: ProcessRecord) -> psutil.Process | None:
    """The recorded process itself, if it still runs (and is not a recycled pid)."""
    try:
        proc = psutil.Process(record.pid)
        if abs(proc.create_time() - record.create_time) > _CREATE_TIME_TOLERANCE_S:
            return None
    except (psutil.NoSuchProcess, psutil.AccessDenied):
        return None
    return proc if _is_live(proc) else None


def is_alive(record: ProcessRecord) -> bool:
    return leader(record) is not None


def session_members(record: ProcessRecord) -> list[psutil.Process]:
    """Every live process of the recorded session, the leader included.

    Linux does not hand out a pid while it is still a live session's id, so a process
    in this session started after the leader is ours even when the leader is gone; and
    when a different process now holds the leader's pid, the session is over.
    """
    try:
        holder = psutil.Process(record.sid)
        if abs(holder.create_time() - record.create_time) > _CREATE_TIME_TOLERANCE_S:
            # The id belongs to a newer process: our session ended before its pid was reused.
            return []
    except psutil.NoSuchProcess:
        pass
    except psutil.AccessDenied:
        return []
    me = os.getpid()
    members: list[psutil.Process] = []
    for proc in psutil.process_iter():
        if proc.pid == me:
            continue
        try:
            if os.getsid(proc.pid) != record.sid:
                continue
            if proc.create_time() + _CREATE_TIME_TOLERANCE_S < record.create_time:
                continue
        except (ProcessLookupError, PermissionError, psutil.NoSuchProcess, psutil.AccessDenied):
            continue
        if _is_live(proc):
            members.append(proc)
    return members


def _owned_processes(record: ProcessRecord) -> dict[int, psutil.Process]:
    """The session, plus any descendant of the leader that started a session of its own."""
    owned = {p.pid: p for p in session_members(record)}
    lead = leader(record)
    if lead is not None:
        with contextlib.suppress(psutil.NoSuchProcess, psutil.AccessDenied):
            for child in lead.children(recursive=True):
                if _is_live(child):
                    owned.setdefault(child.pid, child)
    return owned


def _pgid(proc: psutil.Process) -> int | None:
    try:
        return os.getpgid(proc.pid)
    except (ProcessLookupError, PermissionError):
        return None


def _signal(procs: Sequence[psutil.Process], sig: signal.Signals) -> None:
    for proc in procs:
        # psutil refuses to signal a pid whose start time changed (it was recycled).
        with contextlib.suppress(psutil.NoSuchProcess, psutil.AccessDenied):
            proc.send_signal(sig)


# --------------------------------------------------------------------------- stopping


@dataclass
class StopReport:
    """What `stop` did: how many processes got SIGTERM, which needed SIGKILL, what is left."""

    terminated: int = 0
    killed: list[str] = field(default_factory=list)
    left: list[str] = field(default_factory=list)
    seconds: float = 0.0


def _describe(proc: psutil.Process) -> str:
    try:
        return f"pid {proc.pid} ({' '.join(proc.cmdline())[:80] or proc.name()})"
    except (psutil.NoSuchProcess, psutil.AccessDenied):
        return f"pid {proc.pid}"


def stop(records: Sequence[ProcessRecord], timeout: float = 30.0, kill_timeout: float = 10.0) -> StopReport:
    """SIGTERM every recorded session, wait up to `timeout`, SIGKILL what remains, verify.

    Only processes found through a record (same session id and a start time after the
    leader's, or a descendant of a live leader) are signalled; nothing else is touched.
    """
    started = time.monotonic()
    report = StopReport()
    owned: dict[int, psutil.Process] = {}
    for record in records:
        owned.update(_owned_processes(record))
    report.terminated = len(owned)
    # Graceful first: SIGTERM to each live leader's process group (as a terminal's Ctrl-C
    # would), then to owned processes outside that group. One signal per process: a second
    # SIGTERM makes uvicorn and the scheduler skip their graceful shutdown.
    groups = {r.sid for r in records if leader(r) is not None}
    outside = [p for p in owned.values() if _pgid(p) not in groups]
    for pgid in groups:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(pgid, signal.SIGTERM)
    _signal(outside, signal.SIGTERM)
    deadline = started + timeout
    while time.monotonic() < deadline:
        # Children forked during shutdown join the session: look again each round. Those in
        # a signalled group are their parent's to stop; the others get their own SIGTERM.
        for record in records:
            for proc in session_members(record):
                if proc.pid not in owned:
                    owned[proc.pid] = proc
                    if _pgid(proc) not in groups:
                        _signal([proc], signal.SIGTERM)
        alive = [p for p in owned.values() if _is_live(p)]
        if not alive:
            break
        psutil.wait_procs(alive, timeout=0.5)
    remaining = _remaining(records, owned)
    if remaining:
        report.killed = [_describe(p) for p in remaining]
        logger.warning("SIGKILL to %d process(es) still running after %.0f s", len(remaining), timeout)
        _signal(remaining, signal.SIGKILL)
        psutil.wait_procs(remaining, timeout=kill_timeout)
        remaining = _remaining(records, owned)
    report.left = [_describe(p) for p in remaining]
    report.seconds = time.monotonic() - started
    return report


def _remaining(records: Sequence[ProcessRecord], owned: dict[int, psutil.Process]) -> list[psutil.Process]:
    found = {p.pid: p for p in owned.values() if _is_live(p)}
    for record in records:
        for proc in session_members(record):
            found.setdefault(proc.pid, proc)
    return list(found.values())


# --------------------------------------------------------------------------- ports


def port_in_use(port: int, host: str = "127.0.0.1") -> bool:
    """True when something listens on `port` (we could not bind it ourselves)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        # SO_REUSEADDR as the servers use it: a socket in TIME_WAIT does not count as taken.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return True
    return False


def port_owner(port: int) -> str | None:
    """Who listens on `port`, when the system lets us see it."""
    try:
        conns = psutil.net_connections(kind="inet")
    except (psutil.AccessDenied, OSError):
        return None
    for conn in conns:
        if conn.status == psutil.CONN_LISTEN and conn.laddr and conn.laddr.port == port and conn.pid:
            try:
                return _describe(psutil.Process(conn.pid))
            except psutil.NoSuchProcess:
                return f"pid {conn.pid}"
    return None


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def tail(path: str | Path, lines: int = 40) -> str:
    """The last lines of a log file (read from the end: logs can be large)."""
    try:
        with open(path, "rb") as fh:
            fh.seek(0, os.SEEK_END)
            size = fh.tell()
            fh.seek(max(0, size - 64 * 1024))
            data = fh.read().decode("utf-8", errors="replace")
    except OSError as exc:
        return f"(no log: {exc.strerror})"
    return "\n".join(data.splitlines()[-lines:])
