"""Environment failures in one line: what went wrong reaching a store.

Missing or wrong object-store credentials, an endpoint that does not answer,
access denied, a missing bucket, a full or read-only disk: none is a bug in
dmf nor a problem of the input, and none deserves a traceback. This module
recognizes them in the exceptions that fsspec, s3fs, botocore and the OS
raise (by class name for the libraries, so that it imports none of them) and
words an :class:`~dmf.errors.EnvironmentFailure` that names the URL or path
and what to check. It imports nothing heavy: the CLI uses it for its last
resort too.
"""

from __future__ import annotations

import errno
import os
from collections.abc import Iterator, Mapping
from typing import Any

from dmf.errors import EnvironmentFailure

# Protocols whose first path component is a bucket (or a container).
BUCKET_PROTOCOLS = frozenset({"s3", "s3a", "gs", "gcs", "az", "abfs", "abfss"})

NO_CREDENTIALS = frozenset({"NoCredentialsError", "PartialCredentialsError",
                            "NoAuthTokenError", "DefaultCredentialsError"})
UNREACHABLE = frozenset({"EndpointConnectionError", "ConnectTimeoutError", "ConnectionClosedError",
                         "ClientConnectorError", "ServerDisconnectedError",
                         "ServerTimeoutError", "ProxyConnectionError"})
# Error codes of S3 (and compatible) services, as botocore's ClientError has them.
DENIED_CODES = frozenset({"AccessDenied", "InvalidAccessKeyId", "SignatureDoesNotMatch",
                          "ExpiredToken", "InvalidToken", "AllAccessDisabled",
                          "AccountProblem", "403", "Forbidden"})
NO_BUCKET_CODES = frozenset({"NoSuchBucket"})


def environment_failure(exc: BaseException, url: str | None = None,
                        storage_options: Mapping[str, Any] | None = None, *,
                        output: str | None = None) -> EnvironmentFailure | None:
    """The one-line error for ``exc`` (or an exception it was raised from)
    if it is an environment failure met while reaching ``url``; else None.
    A full or read-only disk that the OS does not name a file of is said of
    ``output``, the store being written.

    Examples
    --------
    >>> import errno
    >>> failure = environment_failure(OSError(errno.ENOSPC, "No space left", "/d/x.zarr/c/0"))
    >>> failure.exit_code, str(failure).split(";")[0]
    (4, '/d/x.zarr/c/0: no space left on the device')
    >>> environment_failure(ValueError("a bug")) is None
    True
    """
    for err in _chain(exc):
        message = _message(err, url, storage_options or {}, output)
        if message is not None:
            return EnvironmentFailure(message)
    return None


def missing_bucket(url: str, storage_options: Mapping[str, Any] | None = None
                   ) -> EnvironmentFailure:
    """The error of a URL whose bucket does not exist."""
    bucket = url.split("://", 1)[1].split("/", 1)[0]
    return EnvironmentFailure(
        f"{url}: no bucket {bucket!r} at {endpoint(storage_options or {})}; check the bucket "
        "name and the endpoint, or create the bucket")


def endpoint(storage_options: Mapping[str, Any], err: BaseException | None = None) -> str:
    """The object store's endpoint, as the user set it (or as an error names it)."""
    named = (getattr(err, "kwargs", None) or {}).get("endpoint_url") if err else None
    return ((storage_options.get("client_kwargs") or {}).get("endpoint_url")
            or storage_options.get("endpoint_url") or os.environ.get("AWS_ENDPOINT_URL")
            or named or "the default endpoint")


def _chain(exc: BaseException) -> Iterator[BaseException]:
    """``exc`` and the exceptions it was raised from (``raise ... from``, or
    s3fs's translation of a botocore error)."""
    seen = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        yield exc
        exc = exc.__cause__


def _code(err: BaseException) -> str | None:
    """The service's error code of a botocore ClientError."""
    response = getattr(err, "response", None)
    if isinstance(response, Mapping):
        return str((response.get("Error") or {}).get("Code") or "") or None
    return None


def _message(err: BaseException, url: str | None, options: Mapping[str, Any],
             output: str | None) -> str | None:
    names = {cls.__name__ for cls in type(err).__mro__}
    where = url or "the object store"
    if names & NO_CREDENTIALS:
        return (f"{where}: no credentials for the object store; set AWS_ACCESS_KEY_ID and "
                "AWS_SECRET_ACCESS_KEY (or key and secret in --storage-options), or "
                "{\"anon\": true} for a public bucket")
    if names & UNREACHABLE:
        return (f"{where}: could not reach the object store at {endpoint(options, err)} "
                f"({_first_line(err)}); check the endpoint URL (client_kwargs.endpoint_url in "
                "--storage-options) and that the service runs")
    code = _code(err)
    if code in NO_BUCKET_CODES or (isinstance(err, FileNotFoundError) and not err.filename
                                   and "bucket does not exist" in str(err).lower()):
        if url and url.split("://", 1)[0] in BUCKET_PROTOCOLS:
            return str(missing_bucket(url, options))
        return (f"{where}: no such bucket at {endpoint(options)}; check the bucket name "
                "and the endpoint, or create the bucket")
    if code in DENIED_CODES or (isinstance(err, PermissionError) and not err.filename):
        return (f"{where}: access denied by the object store at {endpoint(options)} "
                f"({_first_line(err)}); check the credentials (key and secret) and that they "
                "may read and write this bucket")
    written = (getattr(err, "filename", None) or url or output or "the output")
    if isinstance(err, OSError) and err.errno in (errno.ENOSPC, errno.EDQUOT):
        return (f"{written}: no space left on the device; free space or write elsewhere "
                "(data already there is untouched)")
    if isinstance(err, OSError) and err.errno == errno.EROFS:
        return (f"{written}: read-only file system; write the output elsewhere (data "
                "already there is untouched)")
    if isinstance(err, PermissionError):
        return f"{err.filename}: permission denied; check the permissions of the path"
    return None


def _first_line(err: BaseException) -> str:
    lines = str(err).strip().splitlines()
    return lines[0] if lines else type(err).__name__


__all__ = ["BUCKET_PROTOCOLS", "endpoint", "environment_failure", "missing_bucket"]
