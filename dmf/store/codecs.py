"""Compression presets for matrices dmf writes.

An iterative method reads X once per iteration, and on a few cores that read
is bound by decompression long before the disk. The default below was chosen
by ``python -m benchmarks codec`` (table in benchmarks/README.md).

Every preset ends with a CRC-32C checksum of the stored bytes: a damaged
chunk (truncated, overwritten, bit rot) is then an error naming the chunk,
never silently wrong numbers. It makes a raw read pass slower
(benchmarks/README.md), and raw bytes with it are still faster to read
than any compressed preset.
"""

from __future__ import annotations

from zarr.codecs import BloscCodec, Crc32cCodec, ZstdCodec

from dmf.errors import InputError

_CHECKSUM = Crc32cCodec()

#: name -> zarr v3 ``compressors`` (bytes-to-bytes codecs, applied in order).
PRESETS: dict[str, tuple] = {
    "none": (_CHECKSUM,),
    # zarr's own default, kept to compare with and for users who need it.
    "zstd": (ZstdCodec(level=0), _CHECKSUM),
    # Byte shuffle groups the exponent bytes of floats, which is what
    # compresses; LZ4 decodes several times faster than zstd.
    "lz4": (BloscCodec(cname="lz4", clevel=5, shuffle="shuffle"), _CHECKSUM),
    "blosc-zstd": (BloscCodec(cname="zstd", clevel=1, shuffle="shuffle"), _CHECKSUM),
}

#: Fastest to read in every mode measured (benchmarks/README.md): noisy
#: floats barely compress, and decoding costs more than the bytes it saves.
DEFAULT_CODEC = "none"


def compressors(codec: str | None) -> tuple:
    """The zarr ``compressors`` for a preset name (``None`` means the default)."""
    name = DEFAULT_CODEC if codec is None else codec
    try:
        return PRESETS[name]
    except KeyError:
        raise InputError(
            f"unknown codec {name!r}; choose one of {', '.join(sorted(PRESETS))}"
        ) from None


def describe(array_compressors) -> str:
    """A short human name for the compressors of an open zarr array."""
    if not array_compressors or all(isinstance(c, Crc32cCodec) for c in array_compressors):
        return "+".join(["none", *("crc32c" for _ in array_compressors)])
    parts = []
    for c in array_compressors:
        if isinstance(c, BloscCodec):
            cname = getattr(c.cname, "value", c.cname)
            shuffle = getattr(c.shuffle, "value", c.shuffle)
            parts.append(f"blosc-{cname}(clevel={c.clevel}, {shuffle})")
        elif isinstance(c, ZstdCodec):
            parts.append(f"zstd(level={c.level})")
        elif isinstance(c, Crc32cCodec):
            parts.append("crc32c")
        else:
            parts.append(repr(c))  # numcodecs objects of format-2 arrays
    return "+".join(parts)
