"""Tests for tmemref.host.compress: every codec round-trips real file pages, zero and random
pages byte for byte; decompression gives exactly the asked size or raises; names; and the
fallback when python-lzo cannot be imported."""
from __future__ import annotations

import random
import subprocess
import sys
import threading
import warnings

import pytest

from tmemref.host import compress
from tmemref.host.compress import (CODEC_NAMES, CodecFallbackWarning, DecompressError,
                                   available, default_codec, get_codec)
from tmemref.sim.filepages import file_pages

PAGE = 4096


@pytest.fixture(scope="module")
def real_pages():
    """300 pages: 3 from each of the first files of the Python library and of /usr/share."""
    pages = list(file_pages(["/usr/lib/python3*"], limit=150, per_file=3))
    pages += list(file_pages(["/usr/share"], limit=150, per_file=3))
    assert len(pages) == 300
    return pages


def test_all_four_codecs_are_here():
    assert CODEC_NAMES == ("lzo1x-1", "lz4", "zstd", "zlib")
    assert available() == list(CODEC_NAMES)           # python-lzo, lz4, zstandard installed
    assert compress.DEFAULT_CODEC_NAME == "lzo1x-1" and default_codec().name == "lzo1x-1"


@pytest.mark.parametrize("name", CODEC_NAMES)
def test_round_trip_real_zero_random(name, real_pages):
    c = get_codec(name)
    assert c.name == name and name.split("-")[0] in repr(c)
    rng = random.Random(7)
    pages = real_pages + [bytes(PAGE), bytes([0xff]) * PAGE] + [rng.randbytes(PAGE)
                                                                  for _ in range(5)]
    small = 0
    for p in pages:
        data = c.compress(p)
        assert isinstance(data, bytes) and data != p
        assert c.decompress(data) == p
        assert c.decompress(data, PAGE) == p
        small += len(data) < PAGE - 32
    assert len(c.compress(bytes(PAGE))) < 64          # a zero page shrinks to almost nothing
    assert all(len(c.compress(rng.randbytes(PAGE))) > PAGE - 32 for _ in range(3))
    assert small > len(real_pages) // 2               # most real pages do compress
    assert c.decompress(c.compress(bytearray(pages[0]))) == pages[0]   # any bytes-like


@pytest.mark.parametrize("name", CODEC_NAMES)
def test_decompress_is_exact_or_raises(name, real_pages):
    c = get_codec(name)
    page = real_pages[10]
    data = c.compress(page)
    for size in (PAGE - 1, 100, 1):
        with pytest.raises(DecompressError, match=name):
            c.decompress(data, size)                  # more data than room
    with pytest.raises(DecompressError, match=f"{name}: data decompresses to 4096 bytes, not"):
        c.decompress(data, PAGE + 100)                # less data than asked
    with pytest.raises(DecompressError):
        c.decompress(data[:len(data) // 2])           # truncated
    with pytest.raises(DecompressError):
        c.decompress(b"")
    rng = random.Random(3)
    for _ in range(50):                               # garbage: exact size or a clean error
        junk = rng.randbytes(rng.randrange(1, 200))
        try:
            out = c.decompress(junk)
        except DecompressError:
            continue
        assert len(out) == PAGE


def test_lzo_is_raw_lzo1x_1_without_the_python_lzo_header(real_pages):
    import lzo
    page = real_pages[0]
    raw = get_codec("lzo1x-1").compress(page)
    assert lzo.compress(page, 1, True) == b"\xf0" + PAGE.to_bytes(4, "big") + raw
    assert lzo.decompress(raw, False, PAGE) == page


def test_codecs_are_usable_from_several_threads(real_pages):
    errors = []
    for name in CODEC_NAMES:
        c = get_codec(name)

        def work(chunk):
            try:
                for p in chunk:
                    assert c.decompress(c.compress(p)) == p
            except Exception as e:              # pragma: no cover - reported below
                errors.append((name, e))

        ts = [threading.Thread(target=work, args=(real_pages[i::4],)) for i in range(4)]
        for t in ts:
            t.start()
        for t in ts:
            t.join()
    assert errors == []


@pytest.mark.parametrize("bad", ["lzo", "LZ4", "", None, 1])
def test_unknown_name_lists_the_known_ones(bad):
    with pytest.raises(ValueError, match="known: lzo1x-1, lz4, zstd, zlib"):
        get_codec(bad)


# --- without python-lzo -----------------------------------------------------------------------

@pytest.fixture
def no_lzo(monkeypatch):
    monkeypatch.setitem(sys.modules, "lzo", None)     # import lzo now raises ImportError
    monkeypatch.setattr(compress, "_warned", False)
    return monkeypatch


def test_fallback_is_said_plainly_and_once(no_lzo):
    assert available() == ["lz4", "zstd", "zlib"]
    assert compress.DEFAULT_CODEC_NAME == "lz4"
    with pytest.warns(CodecFallbackWarning, match="uses lz4 instead of Xen's LZO1X-1"):
        c = default_codec()
    assert c.name == "lz4"
    with warnings.catch_warnings():
        warnings.simplefilter("error")                # a second request does not warn again
        assert default_codec().name == "lz4"
    with pytest.raises(ImportError, match="codec 'lzo1x-1' needs .* available: lz4, zstd, zlib"):
        get_codec("lzo1x-1")


def test_fallback_chain_ends_at_zlib(no_lzo):
    no_lzo.setitem(sys.modules, "lz4", None)
    no_lzo.setitem(sys.modules, "lz4.block", None)
    assert compress.DEFAULT_CODEC_NAME == "zstd"
    no_lzo.setitem(sys.modules, "zstandard", None)
    assert available() == ["zlib"]
    with pytest.warns(CodecFallbackWarning, match="uses zlib"):
        assert default_codec().name == "zlib"


def test_no_warning_when_lzo_is_there():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert default_codec().name == "lzo1x-1"


def test_import_tmemref_without_lzo_works_and_warns_only_on_use():
    code = ("import sys, warnings; sys.modules['lzo'] = None; warnings.simplefilter('error');"
            "import tmemref, tmemref.host.compress as c, tmemref.host.tlsf;"
            "print(c.DEFAULT_CODEC_NAME);"
            "warnings.simplefilter('default');"
            "print(c.default_codec().name)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True)
    assert out.stdout.split() == ["lz4", "lz4"]
    assert "CodecFallbackWarning" in out.stderr and "instead of Xen's LZO1X-1" in out.stderr
