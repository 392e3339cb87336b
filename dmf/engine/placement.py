"""Where a command computes: in this process or on a Dask cluster.

A local cluster costs seconds before the first task (worker processes start
and import numpy, Dask and the kernels) and every pass then ships tasks and
results between processes. For an input that fits a few times in memory the
threaded scheduler in this process is as fast (the kernels release the GIL),
so the ``dmf`` command computes small work here and starts a local cluster
only for larger work. An address (``--scheduler``, ``$DASK_SCHEDULER_ADDRESS``)
or ``--workers`` always decides instead: the user asked for it.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterable
from dataclasses import dataclass

import psutil

from dmf.store.location import Location

log = logging.getLogger(__name__)

# As dmf.engine.cluster names it (not imported from there: that imports distributed).
SCHEDULER_ENV = "DASK_SCHEDULER_ADDRESS"

# Small work: inputs of at most SMALL_INPUT_BYTES in memory, and at most this
# share of the memory available now (so that X, its cached copy and the
# factors fit beside whatever else runs).
SMALL_INPUT_BYTES = 512 * 2**20
SMALL_MEMORY_FRACTION = 0.125


@dataclass(frozen=True)
class Placement:
    """The choice: ``in_process`` (threads here) or a cluster, and why."""

    in_process: bool
    reason: str

    def describe(self) -> str:
        where = "in this process (threads)" if self.in_process else "on a Dask cluster"
        return f"computing {where}: {self.reason}"


def asked(address: str | None, n_workers: int | None) -> Placement | None:
    """The user's own choice, if they made one: an address (given or in
    ``$DASK_SCHEDULER_ADDRESS``) or ``--workers``."""
    address = address or os.environ.get(SCHEDULER_ENV) or None
    if address:
        return Placement(False, f"the Dask scheduler at {address} was given")
    if n_workers == 0:
        return Placement(True, "--workers 0 asks for no cluster")
    if n_workers is not None:
        return Placement(False, f"--workers {n_workers} asks for a local cluster")
    return None


def by_size(input_bytes: int | None, available: int | None = None) -> Placement:
    """In this process when the input is small: at most ``SMALL_INPUT_BYTES``
    and ``SMALL_MEMORY_FRACTION`` of the memory ``available``.

    Examples
    --------
    >>> by_size(24_000_000, available=8 * 2**30).reason
    'the input is small (23 MiB; small is at most 512 MiB and 1/8 of the 8.0 GiB available)'
    >>> by_size(2**30, available=64 * 2**30).in_process
    False
    """
    if input_bytes is None:
        return Placement(True, "no input to size (the command reads none, or it is missing)")
    available = psutil.virtual_memory().available if available is None else available
    limit = min(SMALL_INPUT_BYTES, int(available * SMALL_MEMORY_FRACTION))
    rule = (f"small is at most {_mib(SMALL_INPUT_BYTES)} and "
            f"1/{round(1 / SMALL_MEMORY_FRACTION)} of the {_mib(available)} available")
    if input_bytes <= limit:
        return Placement(True, f"the input is small ({_mib(input_bytes)}; {rule})")
    return Placement(False, f"the input is large ({_mib(input_bytes)}; {rule}): "
                     "starting a local cluster")


def for_inputs(urls: Iterable[str | None], *, address: str | None, n_workers: int | None,
               storage_options: dict | None = None, nbytes: int | None = None) -> Placement:
    """Where a command reading ``urls`` (their sizes in memory summed;
    missing ones count as nothing) and making ``nbytes`` computes; logged
    at ``-v``. The inputs are sized only when the user left the choice to
    dmf."""
    placement = asked(address, n_workers)
    if placement is None:
        sizes = [Location.parse(u, storage_options).memory_bytes() for u in urls
                 if u is not None]
        known = [s for s in sizes if s is not None]
        total = sum(known) if known else None
        if nbytes is not None:
            total = (total or 0) + nbytes
        placement = by_size(total)
    log.info("%s", placement.describe())
    return placement


def _mib(n: float) -> str:
    """``n`` bytes for people: 23.4 KiB, 512 MiB."""
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:.{1 if n < 10 and unit != 'B' else 0}f} {unit}"
        n /= 1024
    raise AssertionError("unreachable")  # pragma: no cover


__all__ = ["SMALL_INPUT_BYTES", "SMALL_MEMORY_FRACTION", "Placement", "asked", "by_size",
           "for_inputs"]
