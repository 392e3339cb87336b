"""Fixtures shared by the whole test suite: real clusters and a real S3.

- ``local_cluster`` (session): a LocalCluster of 2 worker processes x 1
  thread and a Client that is *not* the default scheduler.
- ``local_client`` (function): that Client, made the default scheduler (and
  ``distributed.default_client()``) for one test.
- ``process_cluster`` (function, over one per session): a ``dask scheduler``
  and two ``dask worker`` processes started from the CLI; a worker a test
  killed is restarted after the test.
- ``s3`` (function, over one moto server per session): a fresh, empty bucket.
- ``memory_url`` (function): a unique ``memory://`` URL, removed after.

No mocks: the S3 server, the scheduler and the workers are real processes on
127.0.0.1. Fake AWS credentials are set for the whole session (and inherited
by every worker) so that nothing can reach a real AWS account.
"""

from __future__ import annotations

import logging
import os
import sys
import uuid
from pathlib import Path
from typing import Any, NamedTuple

import pytest

# Helpers live next to this file and are imported by Dask workers too
# (through PYTHONPATH, see _procs.child_env).
sys.path.insert(0, str(Path(__file__).resolve().parent))

import _procs

# Idle Dask processes cost CPU the tests share with each other on 2 cores:
# the worker's statistical profiler samples every thread every 10 ms and
# every process checks its event loop every 20 ms. Off (and 1 s) for every
# cluster the tests start, in this process and (inherited) in subprocesses:
# an idle 2-worker LocalCluster went from 4.5 to 1.4 s of CPU per 30 s
# (python -m benchmarks.micro idle, with and without these two).
os.environ.setdefault("DASK_DISTRIBUTED__WORKER__PROFILE__ENABLED", "False")
os.environ.setdefault("DASK_DISTRIBUTED__ADMIN__TICK__INTERVAL", "1s")
if "dask" in sys.modules:  # imported already (a plugin): read the variables again
    import dask.config

    dask.config.refresh()

# The suite starts a few hundred Python processes (xdist workers, CLI runs,
# cluster workers). With PYTHONDONTWRITEBYTECODE set (some shells and CI set
# it) each would compile dmf again and rewrite the test modules: 21 s of
# collection from a tree without bytecode against 4.7 s with it. Bytecode
# is written (into the git-ignored __pycache__ folders) by every process the
# suite starts, whichever command started the suite.
os.environ.pop("PYTHONDONTWRITEBYTECODE", None)
sys.dont_write_bytecode = False

# Set before any fixture starts a process, so workers inherit them. Real
# credentials, profiles or an instance metadata service must never be used.
for _var in ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_SECURITY_TOKEN",
             "AWS_CONFIG_FILE", "AWS_SHARED_CREDENTIALS_FILE", "AWS_ENDPOINT_URL"):
    os.environ.pop(_var, None)
os.environ.update(
    AWS_ACCESS_KEY_ID="dmf-test-key",
    AWS_SECRET_ACCESS_KEY="dmf-test-secret",
    AWS_DEFAULT_REGION="us-east-1",
    AWS_EC2_METADATA_DISABLED="true",
)


# --------------------------------------------------------------------------
# local cluster


@pytest.fixture(scope="session")
def local_cluster(tmp_path_factory):
    """A real LocalCluster (2 processes x 1 thread, 1 GiB each, no
    dashboard) and a Client on it that is not the default scheduler: tests
    opt in with ``local_client``."""
    from distributed import Client, LocalCluster

    cluster = LocalCluster(
        n_workers=2,
        threads_per_worker=1,
        processes=True,
        memory_limit="1GiB",
        dashboard_address=None,
        # Even without a dashboard the scheduler serves /health and /metrics,
        # by default on port 8787; take a free port so that other clusters on
        # this machine (and their users) keep theirs.
        scheduler_kwargs={"dashboard_address": "127.0.0.1:0"},
        local_directory=str(tmp_path_factory.mktemp("local-cluster")),
        silence_logs=logging.ERROR,
    )
    client = Client(cluster, set_as_default=False)
    try:
        yield client
    finally:
        client.close()
        cluster.close()


@pytest.fixture
def local_client(local_cluster):
    """The session's LocalCluster client, as the default scheduler for this
    test: plain ``dask.compute`` and ``distributed.default_client()`` use it.
    Explicit ``scheduler="threads"`` still wins, as it should."""
    import dask

    with local_cluster.as_current(), dask.config.set(scheduler=local_cluster):
        yield local_cluster


# --------------------------------------------------------------------------
# process cluster


@pytest.fixture(scope="session")
def _process_cluster_session(tmp_path_factory):
    cluster = _procs.ProcessCluster(tmp_path_factory.mktemp("process-cluster"))
    try:
        yield cluster.start()
    finally:
        cluster.close()


@pytest.fixture
def process_cluster(_process_cluster_session) -> _procs.ProcessCluster:
    """A ``dask scheduler`` and two ``dask worker`` processes (1 thread, 1
    GiB each) on 127.0.0.1, each in its own process group.

    ``.address``: the scheduler address. ``.client(**kw)``: a new Client
    (use ``with``). ``.kill_worker(i)``: SIGKILL worker ``i``'s process group
    and return once the scheduler has dropped it. ``.worker_pids(i)``,
    ``.registered()``: for checks. Killed workers are restarted after the test.
    """
    cluster = _process_cluster_session
    cluster.heal()
    yield cluster
    cluster.heal()


# --------------------------------------------------------------------------
# S3


class S3Bucket(NamedTuple):
    """A bucket on the test S3 server: ``url`` is ``s3://<bucket>`` and
    ``storage_options`` what s3fs (and dmf) need to reach it."""

    url: str
    storage_options: dict[str, Any]
    endpoint_url: str


@pytest.fixture(scope="session")
def moto_server(tmp_path_factory):
    server = _procs.MotoServer(tmp_path_factory.mktemp("moto"))
    try:
        yield server
    finally:
        server.close()


@pytest.fixture
def s3(moto_server) -> S3Bucket:
    """A fresh, empty bucket on a real (moto) S3 server on 127.0.0.1."""
    import s3fs

    options = {
        "key": os.environ["AWS_ACCESS_KEY_ID"],
        "secret": os.environ["AWS_SECRET_ACCESS_KEY"],
        # no region_name here: s3fs would send it as a LocationConstraint,
        # which us-east-1 refuses; the region comes from AWS_DEFAULT_REGION
        "client_kwargs": {"endpoint_url": moto_server.endpoint_url},
    }
    bucket = f"dmf-test-{uuid.uuid4().hex[:12]}"
    # s3fs caches filesystem instances and directory listings across tests.
    s3fs.S3FileSystem.clear_instance_cache()
    fs = s3fs.S3FileSystem(**options)
    fs.mkdir(bucket)
    yield S3Bucket(f"s3://{bucket}", options, moto_server.endpoint_url)
    _close_s3_sessions()
    moto_server.reset()


def _close_s3_sessions():
    """Close the HTTP sessions of cached s3fs instances and forget them.

    s3fs closes a synchronous instance's session when it is collected, but
    not an asynchronous one's (zarr's stores use those), which would leave
    "Unclosed client session" errors at exit.
    """
    import s3fs
    import zarr.core.sync

    for fs in list(s3fs.S3FileSystem._cache.values()):
        creator = getattr(fs, "_s3creator", None)
        if creator is not None:
            # an asynchronous instance has no loop of its own: it ran on zarr's
            loop = fs._loop if not fs.asynchronous else zarr.core.sync._get_loop()
            s3fs.S3FileSystem.close_session(loop, creator)
    s3fs.S3FileSystem.clear_instance_cache()


# --------------------------------------------------------------------------
# memory://


@pytest.fixture
def memory_url():
    """A unique ``memory://`` URL prefix; everything under it is removed after."""
    import fsspec

    root = f"memory://dmf-test-{uuid.uuid4().hex[:12]}"
    yield root
    fs = fsspec.filesystem("memory")
    if fs.exists(root):
        fs.rm(root, recursive=True)


#: The dmf logger's level before any test ran (NOTSET: it follows the root).
DMF_LOG_LEVEL = logging.getLogger("dmf").level


@pytest.fixture(autouse=True)
def _dmf_log_level():
    """The CLI run in this process (``main([...])``) sets the dmf logger's
    level (-q, -v), also from a module's fixture before its tests; each test
    starts from the level before any test ran, and leaves it so, so that
    what a test logs reaches its caplog whatever ran before it on the same
    worker (test_engine's lock tests failed after test_cf_cli's)."""
    logger = logging.getLogger("dmf")
    logger.setLevel(DMF_LOG_LEVEL)
    yield
    logger.setLevel(DMF_LOG_LEVEL)
