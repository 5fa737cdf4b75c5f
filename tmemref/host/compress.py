"""Xen: tmem's page compression (``tmem_compress_from_client`` and
``tmem_decompress_to_client``, xen/common/tmem_xen.c) — codecs by name, each a thin adapter
around a maintained binding of a C library (no compressor is written here).

=============  ===================  ==================================================
name           library              what it is
=============  ===================  ==================================================
``lzo1x-1``    python-lzo           LZO1X-1, what Xen used (raw, no python-lzo header)
``lz4``        lz4 (``lz4.block``)  LZ4, a common choice for zswap in Linux (whose default was LZO)
``zstd``       zstandard            Zstandard level 1
``zlib``       zlib (stdlib)        deflate level 1, always there
=============  ===================  ==================================================

Every codec has ``name``, ``library`` (binding and C library versions), ``compress(page) ->
bytes`` and ``decompress(data, size=4096) -> bytes``, which gives back exactly ``size`` bytes or
raises :class:`DecompressError`: like Xen's use of ``lzo1x_decompress_safe``, a stored page that
does not decompress to a whole page is an error, never a short page.

:func:`default_codec` is LZO1X-1. Without python-lzo (it builds from source against
liblzo2-dev), ``import tmemref`` still works and the default falls back to the first of lz4,
zstd, zlib that imports; :data:`DEFAULT_CODEC_NAME` names it, and the first
:func:`default_codec` call warns (:class:`CodecFallbackWarning`) naming the codec used instead.
Libraries are imported only when a codec is made.

>>> c = get_codec("zlib"); page = b"tmem " * 819 + b"x"
>>> data = c.compress(page); len(data) < 100, c.decompress(data) == page
(True, True)
>>> c.decompress(data, 100)
Traceback (most recent call last):
...
tmemref.host.compress.DecompressError: zlib: data decompresses to more than 100 bytes
"""
from __future__ import annotations

import threading
import warnings
import zlib

from .frames import PAGE_SIZE

__all__ = ["Codec", "get_codec", "available", "default_codec", "default_codec_name",
           "DecompressError", "CodecFallbackWarning", "CODEC_NAMES", "XEN_CODEC"]

#: The codec Xen used, and the default when its binding is installed.
XEN_CODEC = "lzo1x-1"


class DecompressError(ValueError):
    """Stored data did not decompress to exactly the expected number of bytes."""


class CodecFallbackWarning(UserWarning):
    """The default codec is not LZO1X-1 because python-lzo is not installed."""


class Codec:
    """Xen: the compressor tmem calls on each put of a compressing client (LZO1X-1 in Xen).

    The base of this module's codecs. Each subclass has ``compress(page) -> bytes`` and
    ``decompress(data, size=4096) -> bytes`` (exactly ``size`` bytes, else
    :class:`DecompressError`), both O(len(data)) in the C library; no state is shared between
    calls of different threads.
    """
    __slots__ = ("library",)
    name = ""            # registry name (subclasses)

    def _exact(self, out: bytes, size: int) -> bytes:
        if len(out) != size:
            raise DecompressError(f"{self.name}: data decompresses to {len(out)} bytes, "
                                  f"not {size}")
        return out

    def _bad(self, size: int, err: Exception):
        return DecompressError(f"{self.name}: data does not decompress to {size} bytes ({err})")

    def __repr__(self):
        return f"<Codec {self.name}: {self.library}>"


class Lzo1x1(Codec):
    """LZO1X-1 through python-lzo (liblzo2), level 1, raw: no python-lzo header, the output
    Xen's ``lzo1x_1_compress`` would give."""
    __slots__ = ("_lzo",)
    name = "lzo1x-1"

    def __init__(self):
        import lzo
        self._lzo = lzo
        self.library = (f"python-lzo {lzo.__version__.decode()} "
                        f"(liblzo2 {lzo.LZO_VERSION_STRING.decode()})")

    def compress(self, page) -> bytes:
        return self._lzo.compress(page if page.__class__ is bytes else bytes(page), 1, False)

    def decompress(self, data, size: int = PAGE_SIZE) -> bytes:
        try:
            out = self._lzo.decompress(data if data.__class__ is bytes else bytes(data),
                                       False, size)
        except self._lzo.error as e:
            raise self._bad(size, e) from None
        return self._exact(out, size)


class Lz4(Codec):
    """LZ4 block format through ``lz4.block`` (liblz4), default mode, size not stored."""
    __slots__ = ("_block",)
    name = "lz4"

    def __init__(self):
        import lz4
        import lz4.block
        self._block = lz4.block
        self.library = f"lz4 {lz4.__version__} (liblz4 {lz4.library_version_string()})"

    def compress(self, page) -> bytes:
        return self._block.compress(page, store_size=False)

    def decompress(self, data, size: int = PAGE_SIZE) -> bytes:
        try:
            out = self._block.decompress(data, uncompressed_size=size)
        except self._block.LZ4BlockError as e:
            raise self._bad(size, e) from None
        return self._exact(out, size)


class Zstd(Codec):
    """Zstandard level 1 through ``zstandard`` (libzstd), frames without a content size or
    checksum; one compressor and decompressor per thread (they are not thread-safe)."""
    __slots__ = ("_zstd", "_local")
    name = "zstd"

    def __init__(self):
        import zstandard
        self._zstd = zstandard
        self._local = threading.local()
        self.library = (f"zstandard {zstandard.__version__} "
                        f"(libzstd {'.'.join(map(str, zstandard.ZSTD_VERSION))})")

    def _ctx(self):
        loc = self._local
        c = getattr(loc, "c", None)
        if c is None:
            z = self._zstd
            c = loc.c = z.ZstdCompressor(level=1, write_content_size=False)
            loc.d = z.ZstdDecompressor()
        return loc

    def compress(self, page) -> bytes:
        return self._ctx().c.compress(page)

    def decompress(self, data, size: int = PAGE_SIZE) -> bytes:
        try:
            out = self._ctx().d.decompress(data, max_output_size=size)
        except self._zstd.ZstdError as e:
            raise self._bad(size, e) from None
        return self._exact(out, size)


class Zlib(Codec):
    """Deflate level 1 in a zlib stream, Python's standard library."""
    __slots__ = ()
    name = "zlib"

    def __init__(self):
        self.library = f"zlib {zlib.ZLIB_RUNTIME_VERSION}"

    def compress(self, page) -> bytes:
        return zlib.compress(page, 1)

    def decompress(self, data, size: int = PAGE_SIZE) -> bytes:
        d = zlib.decompressobj()
        try:
            out = d.decompress(data, size + 1)
        except zlib.error as e:
            raise self._bad(size, e) from None
        if len(out) > size:
            raise DecompressError(f"{self.name}: data decompresses to more than {size} bytes")
        if not d.eof or d.unused_data:
            raise self._bad(size, "truncated stream" if not d.eof else "data after the stream")
        return self._exact(out, size)


_CODECS = {c.name: c for c in (Lzo1x1, Lz4, Zstd, Zlib)}
#: Known codec names, in fallback order (Xen's first).
CODEC_NAMES = tuple(_CODECS)
_warned = False


def get_codec(name: str) -> Codec:
    """A new codec by name. ``ValueError`` listing the known names for an unknown one;
    ``ImportError`` saying what to install if its library is missing. O(1)."""
    cls = _CODECS.get(name) if isinstance(name, str) else None
    if cls is None:
        raise ValueError(f"unknown codec {name!r}; known: {', '.join(CODEC_NAMES)}")
    try:
        return cls()
    except ImportError as e:
        raise ImportError(f"codec {name!r} needs a library that is not installed ({e}); "
                          f"available: {', '.join(available())}") from e


def available() -> list:
    """Names of the codecs whose library imports here, in :data:`CODEC_NAMES` order. O(1)."""
    out = []
    for name, cls in _CODECS.items():
        try:
            cls()
        except ImportError:
            continue
        out.append(name)
    return out


def default_codec_name() -> str:
    """``"lzo1x-1"`` if python-lzo imports, else the first available fallback. O(1)."""
    return available()[0]


def default_codec() -> Codec:
    """The default codec: LZO1X-1, Xen's. Without python-lzo, the first available of lz4,
    zstd, zlib, and a :class:`CodecFallbackWarning` (once per process) naming it. O(1)."""
    global _warned
    name = default_codec_name()
    if name != XEN_CODEC and not _warned:
        _warned = True
        warnings.warn(f"python-lzo is not installed, so tmem compression uses {name} instead "
                      f"of Xen's LZO1X-1 (pip install python-lzo; it builds against "
                      f"liblzo2-dev)", CodecFallbackWarning, stacklevel=2)
    return get_codec(name)


def __getattr__(attr):
    # DEFAULT_CODEC_NAME is computed when read, so importing this module imports no codec.
    if attr == "DEFAULT_CODEC_NAME":
        return default_codec_name()
    raise AttributeError(f"module {__name__!r} has no attribute {attr!r}")
