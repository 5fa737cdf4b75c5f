"""tmemref.sim.context (chapter 12): the history and feature tables, the real-page sample, the
footprints of tmem (measured by the engine) and of the zswap-like model, and the chapter's
build-exercise solution (zswap-like with dedup).

Expected values come from the definitions the chapter cites — zsmalloc's size classes (32
bytes, then steps of 16), zswap's same-filled test, struct zswap_entry's 80 bytes — computed
here by hand or with the codec libraries directly, never from the module's own output.
"""
from __future__ import annotations

import dataclasses
import math
import re
from pathlib import Path

import lz4.block
import numpy as np
import pytest

from tmemref.errors import InvariantError
from tmemref.host.alloc import SIZEOF
from tmemref.sim import context as C
from tmemref.sim.filepages import file_page_handles, file_pages
from tmemref.sim.solutions import zswap_dedup_footprint

PAGE = 4096
BIB = Path(__file__).resolve().parent.parent / "book" / "references.bib"


def text_page(word: str) -> bytes:
    """A compressible page of numbered lines (never one repeated 8-byte word)."""
    return "".join(f"{word.strip()} {i}\n" for i in range(PAGE)).encode()[:PAGE]


def random_page(seed: int) -> bytes:
    return np.random.default_rng(seed).integers(0, 256, PAGE, dtype=np.uint8).tobytes()


ZERO = bytes(PAGE)


# --- the tables ----------------------------------------------------------------------------------

def test_the_tables_are_sound_and_every_source_is_in_the_bibliography():
    C.check_tables()
    keys = set(re.findall(r"^@\w+\{([^,]+),", BIB.read_text(), re.M))
    cited = {e.source for e in C.HISTORY} | {k for f in C.FEATURES for k in f.sources}
    assert cited <= keys, sorted(cited - keys)
    assert {f.system for f in C.FEATURES} >= {"Xen tmem", "zswap", "zram", "KSM"}
    assert len(C.FEATURE_COLUMNS) == 7


@pytest.mark.parametrize("history, features, why", [
    (C.HISTORY[::-1], C.FEATURES, "date order"),
    (C.HISTORY + (C.Event("2024-13", "Linux", "x", "k"),), C.FEATURES, "bad date"),
    ((C.Event("2024-02-30", "Xen", "x", "k"),), C.FEATURES, "bad date"),
    ((C.Event("24-01", "Xen", "x", "k"),), C.FEATURES, "bad date"),
    ((C.Event("2024-1", "Xen", "x", "k"),), C.FEATURES, "bad date"),
    ((C.Event("2024-01", "KVM", "x", "k"),), C.FEATURES, "incomplete event"),
    ((C.Event("2024-01", "Xen", "x", ""),), C.FEATURES, "incomplete event"),
    (C.HISTORY, (dataclasses.replace(C.FEATURES[0], dedup=""),), "incomplete row"),
    (C.HISTORY, (dataclasses.replace(C.FEATURES[0], sources=()),), "incomplete row"),
    (C.HISTORY, (C.FEATURES[0], C.FEATURES[0]), "appears twice"),
])
def test_a_broken_table_is_caught(history, features, why):
    with pytest.raises(InvariantError, match=why):
        C.check_tables(history, features)


# --- real pages ----------------------------------------------------------------------------------

def test_file_page_handles_number_files_and_pages(tmp_path):
    (tmp_path / "a").write_bytes(b"a" * 5000)       # two pages, the second padded
    (tmp_path / "b").write_bytes(b"")               # no page at all: no number
    (tmp_path / "c").write_bytes(b"c" * PAGE)
    (tmp_path / "d").symlink_to(tmp_path / "c")     # links are skipped
    got = list(file_page_handles([str(tmp_path)], limit=10))
    assert [(f, i) for f, i, _ in got] == [(0, 0), (0, 1), (1, 0)]
    assert got[1][2] == b"a" * (5000 - PAGE) + bytes(2 * PAGE - 5000)
    assert [p for _, _, p in got] == list(file_pages([str(tmp_path)], limit=10))
    assert [(f, i) for f, i, _ in file_page_handles([str(tmp_path)], limit=10, per_file=1)] \
        == [(0, 0), (1, 0)]
    assert list(file_page_handles([str(tmp_path)], limit=0)) == []


def test_the_sample_is_fixed_and_names_each_page_by_file_and_index(tmp_path):
    for name, size in (("x", 3 * PAGE), ("y", PAGE)):
        (tmp_path / "one").mkdir(exist_ok=True)
        (tmp_path / "one" / name).write_bytes(bytes([len(name)]) * size)
    (tmp_path / "two").mkdir()
    (tmp_path / "two" / "z").write_bytes(b"z" * 10)
    roots = ((str(tmp_path / "one"), 3), (str(tmp_path / "missing"), 5),
             (str(tmp_path / "two"), 5))
    items = C.sample_pages(roots, per_file=2)
    assert [(f, i) for f, i, _ in items] == [(0, 0), (0, 1), (1, 0), (2, 0)]
    assert items == C.sample_pages(roots, per_file=2)
    real = C.sample_pages()
    assert len({(f, i) for f, i, _ in real}) == len(real) and all(len(p) == PAGE
                                                                  for *_, p in real)


# --- zsmalloc and zswap --------------------------------------------------------------------------

@pytest.mark.parametrize("size, cls", [(1, 32), (32, 32), (33, 48), (48, 48), (49, 64),
                                       (4080, 4080), (4081, 4096), (4096, 4096)])
def test_zsmalloc_size_classes(size, cls):
    assert C.zsmalloc_class(size) == cls


@pytest.mark.parametrize("size", [0, -1, 4097, 1.5, None])
def test_zsmalloc_refuses_what_it_cannot_serve(size):
    with pytest.raises((ValueError, TypeError)):
        C.zsmalloc_class(size)


def test_zsmalloc_cost_is_the_best_zspage_share():
    # 1360: three per page, 4080 bytes used, no chain does better. 1376: two per page, five
    # in two pages, eight in three, ..., twenty-three in eight.
    assert C.zsmalloc_cost(1360) == PAGE / 3
    assert C.zsmalloc_cost(1376, chain=1) == PAGE / 2
    assert C.zsmalloc_cost(1376, chain=3) == 3 * PAGE / 8
    assert C.zsmalloc_cost(1376) == 8 * PAGE / 23
    assert C.zsmalloc_cost(4096) == 4096.0
    costs = [C.zsmalloc_cost(s) for s in range(1, PAGE + 1, 7)]
    assert all(a <= b for a, b in zip(costs, costs[1:]))          # larger never cheaper
    assert all(C.zsmalloc_class(s) <= c <= PAGE for s, c in zip(range(1, PAGE + 1, 7), costs))


def test_same_filled_is_one_repeated_word():
    assert C.same_filled(ZERO) and C.same_filled(b"\xff" * PAGE)
    assert C.same_filled(b"abcd" * 1024) and C.same_filled(b"abcdefgh" * 512)
    assert not C.same_filled(b"abc" * 1365 + b"a")
    assert not C.same_filled(ZERO[:-1] + b"\x01")


def test_zswap_footprint_by_hand():
    text, noise = text_page("the quick brown fox "), random_page(1)
    stored = len(lz4.block.compress(text, store_size=False))
    assert len(lz4.block.compress(noise, store_size=False)) > PAGE     # will be refused
    fp = C.zswap_footprint([ZERO, text, noise, b"ab" * 2048])
    fp.check()
    assert (fp.offered, fp.kept, fp.whole) == (4, 3, 0)
    assert fp.meta_bytes == 3 * C.ZSWAP_ENTRY_BYTES + C.ZS_HANDLE_BYTES
    assert fp.data_bytes == round(C.zsmalloc_cost(stored + 8))
    assert fp.per_page == fp.total_bytes / 3
    off = C.zswap_footprint([ZERO], same_filled_pages=False)
    zero_stored = len(lz4.block.compress(ZERO, store_size=False)) + 8
    assert off.kept == 1 and off.data_bytes == C.zsmalloc_class(zero_stored) < 64
    assert "same-filled" not in off.name


def test_zswap_footprint_keeps_a_barely_compressible_page_whole():
    almost = random_page(2)[:4044] + bytes(52)
    n = len(lz4.block.compress(almost, store_size=False))
    assert PAGE - 8 < n + 8 and n <= PAGE          # fits a page only with its handle clamped
    fp = C.zswap_footprint([almost])
    assert (fp.kept, fp.whole, fp.data_bytes) == (1, 1, PAGE)
    lzo = C.zswap_footprint([text_page("lzo ")], codec="lzo1x-1")
    assert lzo.name == "zswap-like, same-filled + lzo1x-1" and lzo.kept == 1


# --- tmem, measured by the engine ----------------------------------------------------------------

def test_tmem_footprint_plain_counts_frames_and_descriptors():
    items = [(0, 0, text_page("alpha ")), (0, 1, text_page("beta ")), (1, 0, ZERO)]
    fp = C.tmem_footprint(items)
    fp.check()
    assert fp.name == "tmem, plain" and (fp.offered, fp.kept, fp.whole) == (3, 3, 3)
    assert fp.total_bytes % PAGE == 0 and fp.data_bytes >= 3 * PAGE
    # 3 pgps and 2 objects; object 0's two pages need one radix-tree node, object 1's single
    # page at index 0 hangs from the root itself (a tree of height 0)
    assert fp.meta_bytes == 3 * SIZEOF["pgp"] + 2 * SIZEOF["obj"] + 1 * SIZEOF["objnode"]


def test_tmem_footprint_dedup_and_tze_share_and_shrink():
    a = text_page("same ")
    short = text_page("tail ")[:1000] + bytes(PAGE - 1000)
    items = [(0, 0, a), (0, 1, a), (1, 0, a), (2, 0, ZERO), (3, 0, short)]
    fp = C.tmem_footprint(items, dedup=True, tze=True)
    assert fp.name == "tmem, dedup + tze" and fp.kept == 5
    assert fp.whole == 1                       # one frame for the three copies of a
    plain = C.tmem_footprint(items)
    assert fp.data_bytes < plain.data_bytes - 2 * PAGE
    assert fp.meta_bytes == plain.meta_bytes + 3 * SIZEOF["pcd"]     # three distinct contents


def test_tmem_footprint_compression_and_xens_rule_on_tze():
    items = [(0, i, text_page(f"page {i} ")) for i in range(4)] + [(1, 0, random_page(3))]
    fp = C.tmem_footprint(items, compress=True)
    assert fp.name == "tmem, LZO1X-1" and fp.whole == 1      # the noise is stored whole
    assert fp.total_bytes < C.tmem_footprint(items).total_bytes
    all3 = C.tmem_footprint(items, compress=True, dedup=True, tze=True)
    assert all3.name == "tmem, dedup + LZO1X-1 (tze asked for, switched off)"


def test_tmem_footprint_refuses_a_bad_page():
    with pytest.raises(ValueError, match="failed"):
        C.tmem_footprint([(0, 0, b"short")])


@pytest.mark.parametrize("change, why", [
    (dict(kept=5), "invariant 1"), (dict(whole=4), "invariant 1"),
    (dict(data_bytes=-1), "invariant 2"), (dict(meta_bytes=-8), "invariant 2"),
    (dict(data_bytes=PAGE), "invariant 3"),
])
def test_a_broken_footprint_is_caught(change, why):
    good = C.Footprint("x", 4, 3, 2, 2 * PAGE + 10, 100)
    good.check()
    with pytest.raises(InvariantError, match=why):
        dataclasses.replace(good, **change).check()
    assert math.isnan(C.Footprint("none", 1, 0, 0, 0, 0).per_page)


# --- the build exercise --------------------------------------------------------------------------

def test_zswap_with_dedup_shares_identical_pages():
    text, other, noise = text_page("dup "), text_page("once "), random_page(4)
    pages = [text, other, text, noise, noise, text]
    base = C.zswap_footprint(pages)
    dd = zswap_dedup_footprint(pages)
    assert (dd.offered, dd.kept, dd.whole) == (6, base.kept, base.whole) == (6, 4, 0)
    single = C.zswap_footprint([text]).data_bytes
    assert abs(dd.data_bytes - (base.data_bytes - 2 * single)) <= 2      # rounding
    assert dd.meta_bytes == base.meta_bytes - 2 * C.ZS_HANDLE_BYTES
    distinct = [text, other]
    assert zswap_dedup_footprint(distinct) == dataclasses.replace(
        C.zswap_footprint(distinct), name="zswap-like, same-filled + lz4 + dedup")
