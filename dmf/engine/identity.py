"""What a result store records about the job that made it, and how a rerun
compares.

A job's identity is a JSON mapping of what made a result: what ran (an
algorithm, a job step's kind and options), with which parameters, on which
inputs as they are now (the engine: shape, dtype, chunks and the store's
write token, :func:`dmf.engine.driver.input_fingerprint`; a job step: a hash
of each input's Zarr metadata, :func:`dmf.jobs.record.identity`; audio: the
recording's path, size and modification time). The store keeps it whole (a
result group's ``attrs["dmf"]["fingerprint"]``, a job root's
``steps[NAME].identity``) and, where only equality matters, its
:func:`digest` (a job step's ``fingerprint``, an audio separation's
``key``). A rerun builds its own and compares: the same job resumes, or is
skipped once complete; a different one is named by :func:`first_difference`.

Imports nothing heavy: a job whose steps are all complete compares
identities without loading Dask.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any


def digest(identity: dict[str, Any]) -> str:
    """The SHA-256 of ``identity`` as canonical JSON (keys sorted).

    Examples
    --------
    >>> digest({"b": 1, "a": [2]}) == digest({"a": [2], "b": 1})
    True
    >>> len(digest({}))
    64
    """
    return hashlib.sha256(json.dumps(identity, sort_keys=True).encode()).hexdigest()


def first_difference(old: Any, new: Any, path: str = "") -> str | None:
    """The first place two identities differ, as ``a.b: OLD != NEW``.

    Examples
    --------
    >>> first_difference({"p": {"k": 5}}, {"p": {"k": 6}})
    'p.k: 5 (stored) vs 6 (this job)'
    >>> first_difference({"a": 1}, {"a": 1}) is None
    True
    """
    if isinstance(old, dict) and isinstance(new, dict):
        for key in sorted(set(old) | set(new)):
            sub = f"{path}.{key}" if path else str(key)
            diff = first_difference(old.get(key), new.get(key), sub)
            if diff:
                return diff
        return None
    if old != new:
        return f"{path}: {old!r} (stored) vs {new!r} (this job)"
    return None
