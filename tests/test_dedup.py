"""Deduplication, trailing-zero elimination and the second chance (tmemref.core.pcd).

Sources: tmem-internals.html ("Page deduplication and trailing-zero elimination", "Memory
accounting", "LRU page reclamation"); Xen 4.3 xen/common/tmem.c (pcd_associate,
pcd_disassociate, pcd_copy_to_client, tmem_try_to_evict_pgp) and xen/include/xen/tmem_xen.h
(tmh_page_cmp, tmh_pcd_cmp, tmh_tze_pfp_scan, tmh_tze_pfp_cmp).
"""
from __future__ import annotations

import random
import struct

import pytest
from hypothesis import given, settings, strategies as st

from tmemref import Host, InvariantError, TmemOp, abi
from tmemref.core import evict
from tmemref.core.listparse import format_list_parse, parse_list
from tmemref.core.pcd import content_key, tze_size

from helpers import ALL, control, flush_object, flush_page, get, new_pool, page, put

PAGE = 4096


def tail(n: int, fill: int = 0x61) -> bytes:
    """A page holding ``n`` non-zero bytes, then zeros (the last page of a small file)."""
    return bytes([fill]) * n + bytes(PAGE - n)


def dhost(**kw):
    h = Host(pages=kw.pop("pages", 1024), dedup=True, **kw)
    for d in (1, 2, 3):
        h.create_domain(d, pages=16, max_pages=400)
    h.check()
    return h


def stats(h):
    return parse_list(h.list_stats())


# --- keys compare as Xen compares --------------------------------------------------------------
def xen_page_cmp(a: bytes, b: bytes) -> int:
    """tmh_page_cmp / tmh_tze_pfp_cmp written out: length first, then 64-bit little-endian
    words as unsigned integers, in order."""
    if len(a) != len(b):
        return -1 if len(a) < len(b) else 1
    for x, y in zip(struct.iter_unpack("<Q", a), struct.iter_unpack("<Q", b)):
        if x != y:
            return -1 if x < y else 1
    return 0


def xen_pcd_cmp(a: bytes, b: bytes) -> int:
    """tmh_pcd_cmp written out: length first, then bytes as signed chars."""
    if len(a) != len(b):
        return -1 if len(a) < len(b) else 1
    for x, y in zip(a, b):
        if x != y:
            sx, sy = x - 256 * (x > 127), y - 256 * (y > 127)
            return -1 if sx < sy else 1
    return 0


def _cmp(k1, k2):
    return (k1 > k2) - (k1 < k2)


words = st.lists(st.sampled_from([0, 1, 0x80, 0xFF, 2**63, 2**64 - 1, 0x0100]), min_size=1,
                 max_size=6).map(lambda ws: b"".join(struct.pack("<Q", w) for w in ws))


@settings(max_examples=300, deadline=None)
@given(words, words)
def test_raw_key_order_is_xens_word_order(a, b):
    assert _cmp(content_key(a, False), content_key(b, False)) == xen_page_cmp(a, b)


@settings(max_examples=300, deadline=None)
@given(st.binary(min_size=1, max_size=12), st.binary(min_size=1, max_size=12))
def test_compressed_key_order_is_xens_signed_byte_order(a, b):
    assert _cmp(content_key(a, True), content_key(b, True)) == xen_pcd_cmp(a, b)


def test_compressed_contents_sort_before_raw_ones():
    """pcd_associate: a compressed new entry is less than an uncompressed tree entry."""
    assert content_key(b"\xff" * 4095, True) < content_key(bytes(8), False)


def test_tze_size_scans_back_in_words():
    assert [tze_size(tail(n)) for n in (0, 1, 8, 9, 4031, 4032, 4033, 4096)] == \
        [0, 8, 8, 16, 4032, 4032, 4040, 4096]
    assert tze_size(bytes(4095) + b"\x01") == 4096


# --- sharing -------------------------------------------------------------------------------------
def test_identical_pages_of_two_clients_share_one_pcd():
    h = dhost()
    p1, p2 = new_pool(h, 1), new_pool(h, 2)
    pg = page(5)
    assert put(h, 1, p1, (1, 0, 0), 0, pg) == 1
    assert put(h, 2, p2, (9, 9, 9), 7, pg) == 1
    assert put(h, 1, p1, (2, 0, 0), 3, pg) == 1
    assert (h.global_pcd_count, h.deduped_puts, h.global_page_count) == (1, 2, 1)
    (pcd,) = h.pcd.pcds()
    assert pcd.ref_count == 3 and pcd.firstbyte == pg[0]
    assert h.mem.freeable_page_count == 1 + h.eph_mempool.num_regions    # one data frame
    # each user reads it; the data goes only with the last one
    assert get(h, 2, p2, (9, 9, 9), 7) == (1, pg)
    assert get(h, 1, p1, (1, 0, 0), 0) == (1, pg)
    assert h.global_pcd_count == 1 and pcd.ref_count == 1
    assert flush_page(h, 1, p1, (2, 0, 0), 3) == 1
    assert (h.global_pcd_count, h.global_page_count) == (0, 0)


def test_different_pages_with_the_same_first_byte_share_a_tree_not_a_pcd():
    h = dhost()
    p = new_pool(h, 1)
    a, b = b"\x07" + bytes(PAGE - 1), b"\x07\x01" + bytes(PAGE - 2)
    put(h, 1, p, (1, 0, 0), 0, a)
    put(h, 1, p, (1, 0, 0), 1, b)
    assert h.global_pcd_count == 2 and h.deduped_puts == 0
    assert len(h.pcd.trees[7]) == 2 and sum(len(t) for t in h.pcd.trees) == 2


def test_persistent_pools_never_dedup():
    h = dhost()
    p = new_pool(h, 1, persist=True)
    pg = page(1)
    put(h, 1, p, (1, 0, 0), 0, pg)
    put(h, 1, p, (1, 0, 0), 1, pg)
    assert h.global_pcd_count == 0 and h.deduped_puts == 0 and h.global_page_count == 2


def test_shared_pool_and_private_pool_pages_dedup_together():
    h = dhost()
    for d in (1, 2):
        assert h.do_tmem_op(0, TmemOp(cmd=abi.TMEM_AUTH, arg1=d, flags=1, uuid=(4, 4))) == 1
    s1, s2 = new_pool(h, 1, shared=True, uuid=(4, 4)), new_pool(h, 2, shared=True, uuid=(4, 4))
    e = new_pool(h, 2)
    pg = tail(100)
    put(h, 1, s1, (1, 0, 0), 0, pg)
    put(h, 2, e, (1, 0, 0), 0, pg)
    assert h.global_pcd_count == 1
    assert get(h, 2, s2, (1, 0, 0), 0) == (1, pg) and get(h, 2, s2, (1, 0, 0), 0) == (1, pg)


def test_dup_put_moves_a_pgp_to_another_pcd():
    h = dhost()
    p = new_pool(h, 1)
    a, b = page(1), page(2)
    put(h, 1, p, (1, 0, 0), 0, a)
    put(h, 1, p, (1, 0, 0), 1, a)
    assert put(h, 1, p, (1, 0, 0), 0, b) == 1                # dup put: a -> b
    assert h.global_pcd_count == 2
    assert sorted(c.ref_count for c in h.pcd.pcds()) == [1, 1]
    assert get(h, 1, p, (1, 0, 0), 0) == (1, b) and get(h, 1, p, (1, 0, 0), 1) == (1, a)


def test_destroying_a_domain_keeps_the_content_other_domains_use():
    h = dhost()
    p1, p2 = new_pool(h, 1), new_pool(h, 2)
    pg = page(3)
    for i in range(5):
        put(h, 1, p1, (1, 0, 0), i, pg)
    put(h, 2, p2, (1, 0, 0), 0, pg)
    h.destroy_domain(1)
    h.check()
    assert h.global_pcd_count == 1 and next(h.pcd.pcds()).ref_count == 1
    assert get(h, 2, p2, (1, 0, 0), 0) == (1, pg)
    assert h.global_pcd_count == 0


def test_flush_object_and_destroy_pool_go_through_the_pcd_layer():
    h = dhost()
    p1, p2 = new_pool(h, 1), new_pool(h, 2)
    pg = page(4)
    for i in range(3):
        put(h, 1, p1, (1, 0, 0), i, pg)
        put(h, 2, p2, (1, 0, 0), i, pg)
    assert flush_object(h, 1, p1, (1, 0, 0)) == 1
    assert next(h.pcd.pcds()).ref_count == 3
    assert h.do_tmem_op(2, TmemOp(cmd=abi.TMEM_DESTROY_POOL, pool_id=p2)) == 1
    h.check()
    assert h.global_pcd_count == 0 and h.global_page_count == 0


# --- trailing zeros ---------------------------------------------------------------------------
@pytest.mark.parametrize("n,kept", [(0, 0), (1, 8), (64, 64), (4032, 4032), (4033, 4096),
                                    (4096, 4096)])
def test_tze_keeps_at_most_4032_bytes(n, kept):
    h = dhost(tze=True)
    p = new_pool(h, 1)
    frames = h.global_page_count
    assert put(h, 1, p, (1, 0, 0), 0, tail(n)) == 1
    (pcd,) = h.pcd.pcds()
    assert pcd.size == kept
    assert h.global_page_count - frames == (1 if kept == PAGE else 0)
    assert h.pcd_tot_tze_size == kept
    assert get(h, 1, p, (1, 0, 0), 0) == (1, tail(n))
    assert h.pcd_tot_tze_size == 0 and h.global_pcd_count == 0


def test_an_all_zero_page_stores_nothing():
    h = dhost(tze=True)
    p = new_pool(h, 1)
    used = len(h.eph_mempool.used_blocks())
    for i in range(10):
        put(h, 1, p, (1, 0, 0), i, bytes(PAGE))
    (pcd,) = h.pcd.pcds()
    assert pcd.size == 0 and pcd.data is None and pcd.ref_count == 10
    assert h.global_page_count == 0
    # 10 pgps, an object, a radix node and one pcd descriptor: metadata only
    assert len(h.eph_mempool.used_blocks()) - used == 10 + 1 + 1 + 1


@pytest.mark.parametrize("rule,pcds,deduped", [("doc", 1, 2), ("xen", 3, 0)])
def test_a_shrunk_page_is_found_again_unless_xens_compare(rule, pcds, deduped):
    h = dhost(tze=True, tze_match=rule)
    p = new_pool(h, 1)
    for i in range(3):
        put(h, 1, p, (1, 0, 0), i, tail(128))
    assert (h.global_pcd_count, h.deduped_puts) == (pcds, deduped)
    # whole pages are matched either way
    for i in range(3, 5):
        put(h, 1, p, (1, 0, 0), i, page(9))
    assert h.deduped_puts == deduped + 1
    for i in range(5):
        assert get(h, 1, p, (1, 0, 0), i)[0] == 1


def test_tze_is_off_with_compression_and_dedup():
    assert not Host(pages=1024, tze=True, dedup=True, compress=True).tze
    assert Host(pages=1024, tze=True, dedup=True).tze
    h = Host(pages=1024, tze=True)                        # without dedup it has nothing to do
    h.create_domain(1, pages=16)
    p = new_pool(h, 1)
    put(h, 1, p, (1, 0, 0), 0, tail(8))
    assert h.pcd is None and h.global_page_count == 1 and h.pcd_tot_tze_size == 0


def test_from_cmdline_reads_dedup_and_tze():
    h = Host.from_cmdline("tmem tmem_dedup tmem_tze", pages=1024)
    assert h.dedup and h.tze and h.pcd is not None


# --- compression with dedup ----------------------------------------------------------------------
def test_compressed_pages_dedup_by_their_compressed_bytes():
    h = dhost(compress=True)
    p1, p2 = new_pool(h, 1), new_pool(h, 2)
    pg = tail(300, 0x33)
    put(h, 1, p1, (1, 0, 0), 0, pg)
    put(h, 2, p2, (1, 0, 0), 0, pg)
    (pcd,) = h.pcd.pcds()
    c = h.codec.compress(pg)
    assert pcd.compressed and pcd.size == len(c) and pcd.firstbyte == c[0]
    assert h.pcd_tot_csize == len(c) and h.deduped_puts == 1
    assert [h.clients[d].compressed_pages for d in (1, 2)] == [1, 1]
    assert get(h, 2, p2, (1, 0, 0), 0) == (1, pg)
    # an incompressible page is kept whole; Gz counts it as 4096
    put(h, 1, p1, (1, 0, 0), 1, page(7))
    assert h.pcd_tot_csize == len(c) + PAGE


def test_set_compress_is_refused_under_dedup():
    h = dhost()
    new_pool(h, 1)
    assert control(h, abi.TMEMC_SET_COMPRESS, cli_id=1, arg1=1) == -1
    assert control(h, abi.TMEMC_SET_COMPRESS, cli_id=ALL, arg1=1) == -1
    assert not h.clients[1].compress


# --- statistics ----------------------------------------------------------------------------------
def test_list_and_parser_report_dedup_and_tze():
    h = dhost(tze=True)
    p1, p2 = new_pool(h, 1), new_pool(h, 2)
    put(h, 1, p1, (1, 0, 0), 0, tail(1000))
    put(h, 2, p2, (1, 0, 0), 0, tail(1000))
    put(h, 2, p2, (1, 0, 0), 1, page(1))
    g = stats(h)["global"]
    assert {k: int(g[k]) for k in ("Sc", "Sm", "Gd", "Ep", "Zt", "Gz")} == \
        {"Sc": 2, "Sm": 2, "Gd": 1, "Ep": 3, "Zt": 1000 + PAGE, "Gz": 0}
    text = format_list_parse(h.list_stats())
    assert "deduped: avg=33.33% (curr=33.33%)" in text
    assert "tze savings=37.79%" in text                   # 1 - (1000 + 4096) / (2 * 4096)


# --- the second chance -------------------------------------------------------------------------
def _fill_and_trace(h, p, pages):
    for i, pg in enumerate(pages):
        assert put(h, 1, p, (1, 0, 0), i, pg) == 1
    seen = []
    return seen, (lambda pgp, why: seen.append((pgp.index, why)))


def test_second_chance_sends_a_shared_page_back_once():
    h = dhost()
    p = new_pool(h, 1)
    shared, other = page(1), page(2)
    seen, trace = _fill_and_trace(h, p, [shared, shared, other])
    # index 0 shares its content: sent back; index 1 too; index 2 (alone) goes
    assert evict.tmem_evict(h, None, trace) == 1
    assert seen == [(0, evict.SECOND_CHANCE), (1, evict.SECOND_CHANCE)]
    h.check()
    assert get(h, 1, p, (1, 0, 0), 2)[0] == 0
    lru = [n.owner.index for n in _lru(h)]
    assert lru == [0, 1]                                  # both at the young end, in order
    assert all(n.owner.eviction_attempted for n in _lru(h))
    # next time round they go; the content stays while one pgp uses it
    seen.clear()
    assert evict.tmem_evict(h, None, trace) == 1 and seen == []
    assert h.global_pcd_count == 1 and next(h.pcd.pcds()).ref_count == 1
    assert get(h, 1, p, (1, 0, 0), 1) == (1, shared)


def test_the_walk_meets_a_sent_back_page_again_when_nothing_else_can_go():
    """4.3's walk goes on after a second chance, so with only shared pages it comes round to
    the first one again, now marked, and evicts it in the same attempt."""
    h = dhost()
    p = new_pool(h, 1)
    seen, trace = _fill_and_trace(h, p, [page(1), page(1)])
    assert evict.tmem_evict(h, None, trace) == 1
    assert seen == [(0, evict.SECOND_CHANCE), (1, evict.SECOND_CHANCE)]
    assert [n.owner.index for n in _lru(h)] == [1]
    h.check()


def test_a_repeat_put_clears_the_mark():
    h = dhost()
    p = new_pool(h, 1)
    _fill_and_trace(h, p, [page(1), page(1), page(2)])
    evict.tmem_evict(h, None)
    pgp0 = h.clients[1].pools[p].find((1, 0, 0)).tree.lookup(0)
    assert pgp0.eviction_attempted
    put(h, 1, p, (1, 0, 0), 0, page(1))                   # dup put re-associates
    assert not pgp0.eviction_attempted


def _lru(h):
    from tmemref.ds.dlist import list_iter
    return list(list_iter(h.eph_list))


def test_eviction_skips_a_page_whose_content_tree_is_locked():
    h = dhost()
    p = new_pool(h, 1)
    a, b = b"\x01" + bytes(PAGE - 1), b"\x02" + bytes(PAGE - 1)
    put(h, 1, p, (1, 0, 0), 0, a)
    put(h, 1, p, (1, 0, 0), 1, b)
    seen = []
    lock = h.pcd.locks[1]
    lock.read_lock()
    try:
        assert evict.tmem_evict(h, None, lambda pgp, why: seen.append((pgp.index, why))) == 1
    finally:
        lock.read_unlock()
    assert seen == [(0, evict.SKIP_PCD_BUSY)]
    assert get(h, 1, p, (1, 0, 0), 0) == (1, a)


# --- invariants broken on purpose -------------------------------------------------------------
def _broken(fn):
    h = dhost(tze=True)
    p = new_pool(h, 1)
    for i, pg in enumerate([page(1), page(1), tail(40)]):
        put(h, 1, p, (1, 0, 0), i, pg)
    fn(h)
    return h


@pytest.mark.parametrize("name,corrupt,match", [
    ("wrong tree", lambda h: setattr(next(h.pcd.pcds()), "firstbyte", 7), "pcd invariant 1"),
    ("key not of content", lambda h: h.mem.data.__setitem__(
        (next(p for p in h.pcd.pcds() if p.size == PAGE).data, 5), 0xAB), "pcd invariant 1"),
    ("refcount", lambda h: setattr(next(h.pcd.pcds()), "ref_count", 9), "pcd invariant 2"),
    ("user not pointing back", lambda h: setattr(
        next(iter(next(p for p in h.pcd.pcds() if p.ref_count == 2).pgps)), "data",
        next(p for p in h.pcd.pcds() if p.ref_count == 1)), "invariant"),
    ("tze size", lambda h: setattr(next(p for p in h.pcd.pcds() if p.size == 40), "size", 44),
     "invariant"),
    ("counter", lambda h: setattr(h, "global_pcd_count", 5), "pcd totals"),
    ("tze total", lambda h: setattr(h, "pcd_tot_tze_size", 1), "pcd totals"),
])
def test_pcd_invariants_break(name, corrupt, match):
    h = _broken(corrupt)
    with pytest.raises(InvariantError, match=match):
        h.check()


def test_an_ephemeral_pgp_without_a_pcd_breaks_the_host():
    h = _broken(lambda h: None)
    pgp = h.clients[1].pools[0].find((1, 0, 0)).tree.lookup(2)
    pgp.data = 12345
    with pytest.raises(InvariantError, match="pgp invariant 2"):
        h.check()


# --- random runs -------------------------------------------------------------------------------
@pytest.mark.parametrize("kw", [dict(), dict(tze=True), dict(compress=True),
                                dict(tze=True, tze_match="xen")], ids=str)
def test_random_mix_under_pressure_keeps_every_invariant(kw):
    h = Host(pages=420, dedup=True, **kw)
    for d in (1, 2):
        h.create_domain(d, pages=8, max_pages=200)
    pools = {d: [new_pool(h, d), new_pool(h, d, persist=True)] for d in (1, 2)}
    rng = random.Random(7)
    contents = [tail(n) for n in (0, 8, 100, 4000, 4096)] + [page(i) for i in range(60)]
    held = {}
    for step in range(1500):
        d = rng.choice((1, 2))
        pers = rng.random() < 0.2
        p = pools[d][pers]
        h_ = (d, p, (rng.randrange(4), 0, 0), rng.randrange(60))
        r = rng.random()
        if r < 0.6:
            c = rng.randrange(len(contents))
            rc = h.do_tmem_op(d, TmemOp(cmd=4, pool_id=p, oid=h_[2], index=h_[3],
                                        page=contents[c]))
            held[h_] = c if rc == 1 else None
        elif r < 0.9:
            buf = bytearray(PAGE)
            rc = h.do_tmem_op(d, TmemOp(cmd=5, pool_id=p, oid=h_[2], index=h_[3], page=buf))
            if rc == 1:
                assert held.get(h_) is not None and bytes(buf) == contents[held[h_]]
                if not pers:
                    held[h_] = None
            elif pers:
                assert held.get(h_) is None
        else:
            h.do_tmem_op(d, TmemOp(cmd=6, pool_id=p, oid=h_[2], index=h_[3]))
            held[h_] = None
        if step % 50 == 0:
            h.check()
    h.check()
    assert h.evicted_pgs > 0 and h.deduped_puts > 0
