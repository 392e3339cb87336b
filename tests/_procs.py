"""Real helper processes for the tests: a Dask scheduler and workers started
from the CLI, a moto S3 server, and a way to kill them that leaves nothing
behind.

Every process is started in its own session (so in its own process group)
and is killed by group: ``dask worker`` runs a nanny that would restart a
lone killed child, and killing the group takes the child with it. Each one
also gets a parent-death signal, so that if pytest itself is killed the
helpers die with it instead of running on.

This module is also imported by Dask workers (for :func:`slow_copy`), so it
imports nothing heavy at the top.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path

TESTS_DIR = Path(__file__).resolve().parent

# Run as ``python -c _PDEATHSIG cmd...``: ask Linux to SIGKILL this process
# when the thread that started it (pytest's main thread) dies, then exec the
# real command, which keeps the setting.
_PDEATHSIG = """\
import ctypes, os, signal, sys
try:
    ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
except Exception:
    pass
if os.getppid() != int(os.environ["DMF_TEST_PARENT_PID"]):
    os._exit(1)  # the parent died before prctl: do not outlive it
os.execvp(sys.argv[1], sys.argv[1:])
"""


def free_port() -> int:
    """A TCP port nothing listens on right now (on 127.0.0.1)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def live_group_members(pgid: int) -> list[int]:
    """The live (not zombie) processes of process group ``pgid``."""
    import psutil  # not at the top: Dask workers import this module

    members = []
    for p in psutil.process_iter(["status"]):
        try:
            if os.getpgid(p.pid) == pgid and p.info["status"] != psutil.STATUS_ZOMBIE:
                members.append(p.pid)
        except (ProcessLookupError, psutil.NoSuchProcess):
            continue
    return members


def wait_for(predicate: Callable[[], object], timeout: float, what: str,
             interval: float = 0.05) -> object:
    """Poll ``predicate`` until it returns something truthy; fail after ``timeout``."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(interval)


def child_env(**extra: str) -> dict[str, str]:
    """This process's environment, with the tests folder importable (so
    workers can unpickle helpers defined here) and ``extra`` added."""
    env = dict(os.environ)
    paths = [str(TESTS_DIR), env.get("PYTHONPATH", "")]
    env["PYTHONPATH"] = os.pathsep.join(p for p in paths if p)
    env["DMF_TEST_PARENT_PID"] = str(os.getpid())
    env.update(extra)
    return env


def start_until_failpoint(command: list[str], failpoint: str, marker: Path,
                          timeout: float = 120, **env: str) -> subprocess.Popen:
    """Start ``command`` with the engine's fail point ``failpoint``
    (``NAME:N``, see dmf.engine.faults) and return once the process stands
    there (it created ``marker``); ``env`` adds variables, such as
    ``DMF_FAILPOINT_SLEEP``. Text pipes for stdout and stderr."""
    proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "DMF_FAILPOINT": failpoint,
                                 "DMF_FAILPOINT_FILE": str(marker), **env})
    deadline = time.monotonic() + timeout
    while not marker.exists():
        if proc.poll() is not None:
            raise AssertionError(f"exited {proc.returncode} before {failpoint}: "
                                 f"{proc.stderr.read()}")
        if time.monotonic() > deadline:
            proc.kill()
            raise AssertionError(f"never reached {failpoint}")
        time.sleep(0.02)
    return proc


class Proc:
    """One helper process, leader of its own process group."""

    def __init__(self, args: list[str], log: Path, cwd: Path, env: dict[str, str] | None = None):
        self.args = args
        self.log = log
        self._log_file = open(log, "wb")
        self.popen = subprocess.Popen(
            [sys.executable, "-c", _PDEATHSIG, *args],
            stdin=subprocess.DEVNULL,
            stdout=self._log_file,
            stderr=subprocess.STDOUT,
            cwd=cwd,
            env=env or child_env(),
            start_new_session=True,
        )
        self.pid = self.popen.pid  # also the process group id

    def alive(self) -> bool:
        return self.popen.poll() is None

    def log_tail(self, n: int = 30) -> str:
        lines = self.log.read_text(errors="replace").splitlines()
        return "\n".join(lines[-n:])

    def group_members(self) -> list[int]:
        """Live (not zombie) processes in this process group."""
        return live_group_members(self.pid)

    def kill(self, timeout: float = 10.0) -> None:
        """SIGKILL the whole process group and wait until every member is gone."""
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.pid, signal.SIGKILL)
        self.popen.wait(timeout=timeout)
        # The leader is reaped; orphaned members (the nanny's worker) are
        # reparented and may take a moment to go.
        wait_for(lambda: not self.group_members(), timeout, f"process group {self.pid} to die")
        self._log_file.close()


class ProcessCluster:
    """A ``dask scheduler`` and ``dask worker`` processes on 127.0.0.1.

    ``address`` is the scheduler's address; ``client()`` returns a new
    :class:`distributed.Client` (use it in a ``with`` block);
    ``kill_worker(i)`` SIGKILLs worker ``i`` (nanny and worker together) and
    returns once the scheduler has removed it.
    """

    def __init__(self, workdir: Path, n_workers: int = 2, memory_limit: str = "1GiB"):
        self.workdir = workdir
        self.n_workers = n_workers
        self.memory_limit = memory_limit
        self.port = free_port()
        self.address = f"tcp://127.0.0.1:{self.port}"
        self.scheduler: Proc | None = None
        self.workers: dict[int, Proc] = {}

    # -- lifecycle ----------------------------------------------------------
    def start(self) -> ProcessCluster:
        scheduler_file = self.workdir / "scheduler.json"
        self.scheduler = Proc(
            [sys.executable, "-m", "distributed.cli.dask_scheduler", "--host", "127.0.0.1",
             "--port", str(self.port), "--no-dashboard", "--scheduler-file", str(scheduler_file),
             # /health and /metrics are served anyway: not on 8787, which
             # another cluster on this machine may hold
             "--dashboard-address", "127.0.0.1:0"],
            self.workdir / "scheduler.log", self.workdir,
        )
        # The scheduler writes its file once it listens.
        self._wait(lambda: scheduler_file.exists()
                   and json.loads(scheduler_file.read_text() or "{}").get("address"),
                   "the scheduler to listen", self.scheduler)
        for i in range(self.n_workers):
            self.start_worker(i, wait=False)
        self.wait_workers(set(range(self.n_workers)))
        return self

    def start_worker(self, i: int, *, wait: bool = True) -> None:
        local_dir = self.workdir / f"w{i}-space"
        local_dir.mkdir(exist_ok=True)
        self.workers[i] = Proc(
            [sys.executable, "-m", "distributed.cli.dask_worker", self.address,
             "--name", self.worker_name(i), "--nthreads", "1", "--no-dashboard",
             "--host", "127.0.0.1", "--memory-limit", self.memory_limit,
             "--local-directory", str(local_dir), "--death-timeout", "60"],
            self.workdir / f"w{i}.log", self.workdir,
        )
        if wait:
            self.wait_workers(set(self.workers))

    def close(self) -> None:
        procs = [*self.workers.values(), *([self.scheduler] if self.scheduler else [])]
        errors = []
        for proc in procs:
            try:
                proc.kill()
            except Exception as exc:  # noqa: BLE001 - kill the rest, then report
                errors.append(exc)
        self.workers.clear()
        self.scheduler = None
        if errors:
            raise errors[0]

    def heal(self) -> None:
        """Restart any worker killed by a test, so the next test sees a full cluster."""
        for i in range(self.n_workers):
            if i not in self.workers:
                self.start_worker(i, wait=False)
        self.wait_workers(set(range(self.n_workers)))

    # -- inspection ---------------------------------------------------------
    @staticmethod
    def worker_name(i: int) -> str:
        return f"w{i}"

    def client(self, **kwargs):
        from distributed import Client

        kwargs.setdefault("timeout", 20)
        return Client(self.address, **kwargs)

    def registered(self) -> dict[str, str]:
        """Worker name -> address, as the scheduler sees them now."""
        from distributed import Client

        with Client(self.address, timeout=20, set_as_default=False) as c:
            info = c.scheduler_info(n_workers=-1)["workers"]
        return {str(w["name"]): addr for addr, w in info.items()}

    def wait_workers(self, indices: set[int], timeout: float = 60) -> None:
        want = {self.worker_name(i) for i in indices}

        def ready():
            for i in indices:
                proc = self.workers[i]
                if not proc.alive():
                    raise RuntimeError(
                        f"worker {i} exited with {proc.popen.returncode}:\n{proc.log_tail()}"
                    )
            return set(self.registered()) == want

        wait_for(ready, timeout, f"workers {sorted(want)} to register", interval=0.2)

    def _wait(self, predicate, what: str, proc: Proc, timeout: float = 60) -> None:
        def check():
            if not proc.alive():
                raise RuntimeError(f"{what}: exited with {proc.popen.returncode}:\n"
                                   f"{proc.log_tail()}")
            return predicate()

        wait_for(check, timeout, what, interval=0.1)

    # -- faults -------------------------------------------------------------
    def worker_pids(self, i: int) -> list[int]:
        """The nanny's and the worker's pids of worker ``i``."""
        return self.workers[i].group_members()

    def kill_worker(self, i: int, timeout: float = 30) -> None:
        """SIGKILL worker ``i``'s process group (nanny and worker: the nanny
        would restart a lone worker) and wait until the scheduler drops it."""
        proc = self.workers.pop(i)
        proc.kill()
        name = self.worker_name(i)
        wait_for(lambda: name not in self.registered(), timeout,
                 f"the scheduler to notice that {name} died", interval=0.1)


class MotoServer:
    """A moto S3 server on 127.0.0.1. With ``authenticate``, it checks
    credentials as AWS does (moto's IAM holds no keys: every key is wrong)."""

    def __init__(self, workdir: Path, *, authenticate: bool = False):
        self.port = free_port()
        self.endpoint_url = f"http://127.0.0.1:{self.port}"
        env = child_env(INITIAL_NO_AUTH_ACTION_COUNT="0") if authenticate else None
        self.proc = Proc(
            [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(self.port)],
            workdir / "moto.log", workdir, env=env,
        )

        def up():
            if not self.proc.alive():
                raise RuntimeError(f"moto server exited:\n{self.proc.log_tail()}")
            try:
                with urllib.request.urlopen(f"{self.endpoint_url}/moto-api/", timeout=1):
                    return True
            except OSError:
                return False

        wait_for(up, 60, "the moto server", interval=0.1)

    def reset(self) -> None:
        """Drop every bucket (moto's own reset endpoint)."""
        req = urllib.request.Request(f"{self.endpoint_url}/moto-api/reset", method="POST")
        with urllib.request.urlopen(req, timeout=10):
            pass

    def close(self) -> None:
        self.proc.kill()


@contextlib.contextmanager
def started(thing) -> Iterator:
    try:
        yield thing
    finally:
        thing.close()


# -- run on workers ---------------------------------------------------------
def slow_copy(block, seconds: float = 0.1):
    """Return ``block`` after ``seconds``: a task long enough to kill a worker
    in the middle of a pass."""
    time.sleep(seconds)
    return block.copy()


def bytes_read(proc) -> int:
    """Bytes the psutil process ``proc`` (this one) read from files: its
    ``read_chars`` and the chunk files dmf mapped, which ``read()`` never saw
    (see dmf.store.dense_read)."""
    from dmf.store.dense_read import bytes_mapped

    return proc.io_counters().read_chars + bytes_mapped()
