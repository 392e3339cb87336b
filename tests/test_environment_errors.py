"""Environment errors are not bugs: one line naming the URL, address or path
and what to check, exit 4, no traceback, data already there untouched.

Against real services on 127.0.0.1: the session's moto S3 server (a missing
bucket), a second moto server that checks credentials (every key is wrong
there), a closed port (an endpoint, a scheduler). A full disk and a
read-only one are real mounts (a small tmpfs, a read-only bind mount) in a
private mount namespace (``unshare``); where the machine allows none, those
two tests are skipped and the mapping is tested on a real ENOSPC from
``/dev/full``.
"""

from __future__ import annotations

import errno
import json
import shlex
import shutil
import subprocess
import sys

import _procs
import numpy as np
import pytest

import dmf
from dmf.cli import main
from dmf.store.failures import environment_failure


def _one_line_error(capsys) -> str:
    err = capsys.readouterr().err
    assert "Traceback" not in err and "unexpected error" not in err, err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("dmf: error: "), err
    return lines[0]


@pytest.fixture
def small_matrix(tmp_path):
    x = tmp_path / "X.zarr"
    dmf.save_matrix(np.arange(200.0).reshape(40, 5), x)
    return x


def _options(endpoint_url: str, **extra) -> str:
    return json.dumps({"client_kwargs": {"endpoint_url": endpoint_url}, **extra})


@pytest.fixture(autouse=True)
def _fresh_s3fs():
    """s3fs caches filesystems (and their credentials) per process."""
    s3fs = pytest.importorskip("s3fs")
    s3fs.S3FileSystem.clear_instance_cache()
    yield
    s3fs.S3FileSystem.clear_instance_cache()


def test_missing_bucket_for_the_input_and_for_the_output(s3, small_matrix, tmp_path, capsys):
    options = _options(s3.endpoint_url)
    missing = "s3://dmf-no-such-bucket/X.zarr"
    assert main(["--storage-options", options, "svd", missing, str(tmp_path / "o.zarr"),
                 "-k", "2"]) == 4
    line = _one_line_error(capsys)
    assert missing in line and "no bucket 'dmf-no-such-bucket'" in line, line
    assert s3.endpoint_url in line

    out = "s3://dmf-no-such-bucket/out.zarr"
    assert main(["--storage-options", options, "svd", str(small_matrix), out, "-k", "2"]) == 4
    line = _one_line_error(capsys)
    assert out in line and "check the bucket name" in line, line

    # a missing key in a bucket that exists stays bad input (exit 2)
    assert main(["--storage-options", options, "svd", f"{s3.url}/nothing.zarr",
                 str(tmp_path / "o2.zarr"), "-k", "2"]) == 2
    assert "no such file or directory" in capsys.readouterr().err


def test_wrong_keys_are_access_denied(tmp_path, small_matrix, capsys):
    server = _procs.MotoServer(tmp_path, authenticate=True)
    try:
        options = _options(server.endpoint_url)
        url = "s3://dmf-test/X.zarr"
        assert main(["--storage-options", options, "svd", url, str(tmp_path / "o.zarr"),
                     "-k", "2"]) == 4
        line = _one_line_error(capsys)
        assert url in line and "access denied" in line and server.endpoint_url in line, line
        assert "check the credentials" in line

        out = "s3://dmf-test/out.zarr"
        assert main(["--storage-options", options, "svd", str(small_matrix), out,
                     "-k", "2"]) == 4
        assert out in _one_line_error(capsys)
    finally:
        server.close()


def test_no_credentials(s3, tmp_path, monkeypatch, capsys):
    for var in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
        monkeypatch.delenv(var)
    monkeypatch.setenv("HOME", str(tmp_path))  # no ~/.aws either
    url = f"{s3.url}/X.zarr"
    assert main(["--storage-options", _options(s3.endpoint_url), "svd", url,
                 str(tmp_path / "o.zarr"), "-k", "2"]) == 4
    line = _one_line_error(capsys)
    assert url in line and "no credentials" in line and "AWS_ACCESS_KEY_ID" in line, line


def test_an_endpoint_that_does_not_answer(tmp_path, capsys):
    endpoint = f"http://127.0.0.1:{_procs.free_port()}"  # nothing listens there
    url = "s3://bucket/X.zarr"
    options = _options(endpoint, config_kwargs={"retries": {"max_attempts": 1},
                                                "connect_timeout": 2})
    assert main(["--storage-options", options, "svd", url, str(tmp_path / "o.zarr"),
                 "-k", "2"]) == 4
    line = _one_line_error(capsys)
    assert url in line and f"could not reach the object store at {endpoint}" in line, line


def test_a_scheduler_that_does_not_answer(small_matrix, tmp_path, capsys):
    import dask

    address = f"tcp://127.0.0.1:{_procs.free_port()}"
    with dask.config.set({"distributed.comm.timeouts.connect": "1s"}):
        code = main(["--scheduler", address, "svd", str(small_matrix),
                     str(tmp_path / "o.zarr"), "-k", "2"])
    assert code == 4
    line = _one_line_error(capsys)
    assert f"could not reach the Dask scheduler at {address}" in line, line
    assert not (tmp_path / "o.zarr").exists()


# -- full and read-only disks ------------------------------------------------

def _in_mount_namespace(script: str, cwd) -> subprocess.CompletedProcess:
    """Run ``script`` (sh) as root of a private user and mount namespace, so
    that it may mount a tmpfs or a read-only bind mount that nothing else
    sees; skip when this machine allows none."""
    if shutil.which("unshare") is None:
        pytest.skip("no unshare(1) here to mount a full or read-only file system")
    probe = subprocess.run(["unshare", "-rm", "sh", "-c", "mount -t tmpfs tmpfs /mnt"],
                           capture_output=True, text=True)
    if probe.returncode != 0:
        pytest.skip(f"mounts in a private namespace refused here: {probe.stderr.strip()}")
    return subprocess.run(["unshare", "-rm", "sh", "-c", script], capture_output=True,
                          text=True, cwd=cwd, env=_procs.child_env(), timeout=300)


def _commands(*commands: list[str]) -> str:
    """A shell word: one Python process that runs each ``dmf`` command
    line (``main``) and prints its exit code (one start-up, not one each)."""
    code = ("import sys; from dmf.cli import main; "
            f"[print('exit', main(argv), flush=True) for argv in {list(commands)!r}]")
    return f"{sys.executable} -c {shlex.quote(code)}"


def test_disk_full_is_one_line_and_the_old_store_stays(tmp_path):
    (tmp_path / "small").mkdir()
    script = "; ".join([
        "mount -t tmpfs -o size=512k tmpfs small",
        _commands("generate lowrank small/X.zarr --shape 100x10 --rank 2 --no-factors".split(),
                  "generate lowrank small/X.zarr --shape 20000x100 --rank 2 --overwrite "
                  "--no-factors".split(),
                  ["info", "small/X.zarr"]),
        "ls -a small",
    ])
    done = _in_mount_namespace(script, tmp_path)
    assert "exit 0\nexit 4\n" in done.stdout, done.stdout + done.stderr
    errors = done.stderr.strip().splitlines()
    assert len(errors) == 1 and "no space left on the device" in errors[0], done.stderr
    assert "small/" in errors[0] and "Traceback" not in done.stderr
    assert "100 x 10" in done.stdout  # the old X is whole
    assert ".dmf-tmp" not in done.stdout  # and the new one's remains are gone


def test_read_only_output_is_one_line_and_data_untouched(tmp_path, small_matrix):
    ro = tmp_path / "ro"
    ro.mkdir()
    dmf.save_matrix(np.ones((4, 2)), ro / "Y.zarr")
    script = "; ".join([
        "mount --bind ro ro", "mount -o remount,bind,ro ro",
        _commands(["svd", str(small_matrix), "ro/s.zarr", "-k", "2"],
                  "generate lowrank ro/Y.zarr --shape 10x3 --rank 1 --overwrite".split()),
    ])
    done = _in_mount_namespace(script, tmp_path)
    assert done.stdout.count("exit 4") == 2, done.stdout + done.stderr
    errors = done.stderr.strip().splitlines()
    assert len(errors) == 2 and all("read-only file system" in e for e in errors), done.stderr
    assert str(ro / "s.zarr") in errors[0] and "ro/" in errors[1]
    np.testing.assert_array_equal(dmf.open_matrix(ro / "Y.zarr").compute(), 1.0)
    assert sorted(p.name for p in ro.iterdir()) == ["Y.zarr"]


def test_a_real_enospc_from_the_os_is_an_environment_failure():
    """The lowest layer, without privileges: the OS's own ENOSPC (/dev/full)."""
    with pytest.raises(OSError) as caught, open("/dev/full", "wb", buffering=0) as full:
        full.write(b"x")
    assert caught.value.errno == errno.ENOSPC
    failure = environment_failure(caught.value, output="/data/out.zarr")
    assert failure is not None and failure.exit_code == 4
    assert str(failure).startswith("/data/out.zarr: no space left on the device")
    assert environment_failure(ValueError("a bug")) is None
