"""What the benchmarks' floors and cold reads rest on, checked small (the
measurements themselves are in benchmarks/, never in tests)."""

from __future__ import annotations

import os

import numpy as np
import pytest

from benchmarks import floor
from benchmarks.harness import Data


def test_the_floor_scales_one_block_to_the_store_and_the_workers():
    # 10 blocks of 100 rows on 2 workers: 5 block-times each
    assert floor.scaled(0.5, block_rows=100, m=1000, workers=2) == pytest.approx(2.5)
    # a last, shorter block counts by its rows
    assert floor.scaled(0.5, block_rows=100, m=1050, workers=2) == pytest.approx(2.625)
    assert floor.floor(read_seconds=0.3, product_seconds=0.26) == 0.3
    assert floor.floor(read_seconds=0.2, product_seconds=0.26) == 0.26
    with pytest.raises(ValueError):
        floor.scaled(0.5, block_rows=0, m=10, workers=2)
    with pytest.raises(ValueError):
        floor.scaled(0.5, block_rows=10, m=10, workers=0)


@pytest.mark.parametrize("kind", floor.KINDS)
def test_block_products_run_in_the_blocks_dtype(kind):
    block = np.random.default_rng(0).random((300, 40)).astype(np.float32)
    work = floor.block_products(kind, block, k=5)
    work()  # the small factors were made in the block's dtype: no cast, no error
    assert floor.block_seconds(kind, 300, 40, 5, repeat=2) > 0
    with pytest.raises(ValueError, match="kind must be one of"):
        floor.block_products("frobenius2", block, k=5)


def _read_bytes() -> int:
    with open(f"/proc/{os.getpid()}/io") as f:
        return int(next(line for line in f if line.startswith("read_bytes:")).split()[1])


@pytest.mark.skipif(not os.path.exists("/proc/self/io"), reason="Linux /proc/PID/io")
def test_eviction_makes_the_next_read_come_from_disk(tmp_path):
    path = tmp_path / "store" / "c" / "0"
    path.parent.mkdir(parents=True)
    size = 32 * 2**20
    path.write_bytes(os.urandom(size))
    data = Data("file", (tmp_path / "store",))
    data.prefetch()
    before = _read_bytes()
    data.prefetch()
    warm = _read_bytes() - before
    data.evict()
    before = _read_bytes()
    data.prefetch()
    cold = _read_bytes() - before
    assert warm < size / 4, "a warm read went to the disk"
    assert cold >= size * 0.9, f"after eviction only {cold} of {size} bytes came from disk"
