"""tmemref.sim.packing (the compression chapter's runners) and tmemref.sim.filepages.spread_pages:
each runner on small inputs, the figures it reports checked against an independent count, and
bad input."""
from __future__ import annotations

import numpy as np
import pytest

from tmemref import Host, abi
from tmemref.guest import TmemOps
from tmemref.host.alloc import SIZEOF
from tmemref.host.compress import get_codec
from tmemref.host.tlsf import (COALESCE_NEXT, COALESCE_PREV, NO_SPLIT, REGION_NEW,
                               REGION_RETURN, SPLIT)
from tmemref.sim import packing
from tmemref.sim.filepages import spread_pages


@pytest.fixture(scope="module")
def pages():
    """About 500 real pages, spread over the four trees."""
    out = spread_pages(files_per_root=60, per_file=2)
    assert 300 < len(out) <= 480 and {len(p) for p in out} == {4096}
    return out


# --- filepages.spread_pages ------------------------------------------------------------------

def test_spread_pages_is_deterministic_and_bounded():
    a = spread_pages(["/usr/lib/python3*"], files_per_root=20, per_file=3)
    assert a == spread_pages(["/usr/lib/python3*"], files_per_root=20, per_file=3)
    assert 20 <= len(a) <= 60
    one = spread_pages(["/usr/lib/python3*"], files_per_root=20, per_file=1)
    assert len(one) <= 20 and set(one) <= set(a)        # each file's first page, a subset
    assert spread_pages(["/no/such/tree*"], files_per_root=5, per_file=1) == []
    for bad in ({"files_per_root": 0, "per_file": 1}, {"files_per_root": 1, "per_file": 0}):
        with pytest.raises(ValueError):
            spread_pages(**bad)


# --- codecs --------------------------------------------------------------------------------------

def test_size_summary_counts_what_tmem_would_do():
    s = packing.size_summary([100, 4032, 4033, 4063, 4064, 5000])
    assert s["poor"] == 2 / 6 and s["band"] == 2
    assert s["ratio"] == 4096 * 6 / (100 + 4032 + 4033 + 4063 + 4064 + 5000)
    assert s["stored_ratio"] == 4096 * 6 / (100 + 4032 + 4 * 4096)


def test_codec_us_sizes_are_the_codecs_and_a_broken_codec_is_caught(pages):
    sample = pages[:50]
    out = packing.codec_us(["lzo1x-1", get_codec("lz4")], sample, repeat=1)
    assert list(out) == ["lzo1x-1", "lz4"]
    for name, (c_us, d_us, sizes) in out.items():
        assert c_us > 0 and d_us > 0
        assert sizes.tolist() == [len(get_codec(name).compress(p)) for p in sample]

    class Lossy:
        name = "lossy"

        def compress(self, page):
            return bytes(page)

        def decompress(self, data, size=4096):
            return bytes(size)
    with pytest.raises(AssertionError, match="does not give the pages back"):
        packing.codec_us([Lossy()], sample[:3], repeat=1)


@pytest.mark.parametrize("codec", ["lzo1x-1", "lz4"])
@pytest.mark.parametrize("size", [300, 1910, 4040])
def test_sized_page_hits_the_size(codec, size):
    page = packing.sized_page(size, codec=codec, seed=3)
    assert len(page) == 4096 and len(get_codec(codec).compress(page)) == size
    assert page != packing.sized_page(size, codec=codec, seed=4)


def test_sized_page_gives_the_nearest_size_above_when_exact_is_out_of_reach():
    zstd = get_codec("zstd")
    sizes = {len(zstd.compress(packing.sized_page(n, codec=zstd))) for n in range(1900, 1960)}
    assert all(n >= 1900 for n in sizes) and len(sizes) > 1
    got = len(zstd.compress(packing.sized_page(4040, codec=zstd)))   # zstd jumps to raw blocks
    assert got > 4040 and len(zstd.compress(packing.sized_page(got, codec=zstd))) == got


def test_sized_page_refuses_what_no_page_reaches():
    with pytest.raises(ValueError, match="compresses to 5"):
        packing.sized_page(5)                   # less than an all-zero page
    with pytest.raises(ValueError):
        packing.sized_page(5000)                # more than random bytes give


# --- TLSF tour -----------------------------------------------------------------------------------

def test_tour_goes_through_every_named_case_and_each_step_is_checked():
    tour = packing.tlsf_tour()
    cases = [c for _, _, _, c in tour]
    assert cases == [[], [REGION_NEW, SPLIT], [SPLIT], [SPLIT], [SPLIT], [SPLIT],
                     [REGION_NEW, SPLIT], [packing.FREE_NO_MERGE], [COALESCE_PREV],
                     [COALESCE_NEXT], [NO_SPLIT], [COALESCE_NEXT, REGION_RETURN]]
    assert [snap["num_regions"] for _, snap, _, _ in tour] == [0, 1, 1, 1, 1, 1, 2, 2, 2, 2, 2, 1]
    allocs = [addr for _, _, addr, c in tour if addr is not None]
    assert len(allocs) == 7 and all(addr & 0xFFF == 16 or addr & 0xF == 0 for addr in allocs)


def test_tlsf_case_sees_both_coalesces_in_one_free():
    from tmemref.host.alloc import tmem_pool
    from tmemref.host.frames import HostMemory
    t = tmem_pool(HostMemory(4))
    a, b, c, d = t.alloc(100), t.alloc(100), t.alloc(100), t.alloc(100)
    t.free(a)
    t.free(c)
    before = t.describe()
    t.free(b)
    t.check()
    assert packing.tlsf_case(before, t.describe(), "free", b) == [COALESCE_NEXT, COALESCE_PREV]
    with pytest.raises(ValueError):
        packing.tlsf_case(before, before, "realloc", b)


# --- blocks and owners ---------------------------------------------------------------------------

@pytest.mark.parametrize("kw", [dict(compress=True), dict(compress=True, dedup=True),
                                dict(dedup=True, tze=True)])
def test_every_block_of_every_allocator_has_a_kind(pages, kw):
    h = Host(pages=2048, shared_auth=False, **kw)
    for d in (1, 2):
        h.create_domain(d, pages=16, max_pages=512)
    g1, g2 = TmemOps(h, 1), TmemOps(h, 2)
    eph, pers = g1.new_pool(), g1.new_pool(abi.TMEM_POOL_PERSIST)
    sh1 = g1.new_pool(abi.TMEM_POOL_SHARED, uuid=(5, 6))
    sh2 = g2.new_pool(abi.TMEM_POOL_SHARED, uuid=(5, 6))
    for i, p in enumerate(pages[:120]):
        pool, g = ((eph, g1), (pers, g1), (sh1, g1), (sh2, g2))[i % 4]
        assert g.put_page(pool, (i // 8, 0, 0), i, p) == 1
    assert g2.put_page(sh2, (99, 0, 0), 0, pages[0]) == 1   # a duplicate content (dedup)
    h.check()
    kinds = packing.block_kinds(h)
    for allocator in [h.eph_mempool, h.clients[1].persistent_pool]:
        rows = packing.pool_blocks(h, allocator)
        used = {(f << 12) + off + 16 for f, off, _, state, _, _ in rows if state == "used"}
        assert used == allocator.used_blocks() and used <= set(kinds)
        assert all(kind is not None for *_, state, kind, _ in rows if state == "used")
    found = {kind for kind, _ in kinds.values()}
    assert {"object", "pgp", "radix node", "sharelist"} <= found
    assert ("pcd" in found) == bool(kw.get("dedup"))
    sharers = sorted(owner for kind, owner in kinds.values() if kind == "sharelist")
    assert sharers == [1, 2]


def test_sharelist_entries_pin_frames_no_flush_frees(pages):
    r = packing.sharelist_pinning(pages, guests=2, mounts=3, puts_between=20)
    assert r["sharelists"] == 6
    assert r["left"] == r["sharelist_frames"] == r["freeable_left"] >= 2
    assert r["left_kinds"] == ["sharelist"] and "compressed page" in r["neighbours"]
    assert r["after"]["d1 persistent tmem metadata"] == r["before"]["d1 persistent tmem metadata"]
    assert r["host"].eph_count == 0


# --- fragmentation -------------------------------------------------------------------------------

def test_fill_is_deterministic_and_compression_holds_more(pages):
    plain = packing.fill(pages, host_pages=600, rereads=200)
    again = packing.fill(pages, host_pages=600, rereads=200)
    lzo = packing.fill(pages, host_pages=600, compress=True)
    n = len(pages)
    assert len(plain["evicted"]) == n + 200 and np.all(plain["rc"] == 1)
    assert np.array_equal(plain["evicted"], again["evicted"]) and plain["held"] == again["held"]
    assert np.array_equal(plain["evicted"], plain["attempts"])     # nothing locked: all succeed
    assert plain["held"] == plain["host"].eph_count < n
    assert lzo["held"] > 1.2 * plain["held"]
    assert plain["tmem_frames"] == plain["host"].mem.freeable_page_count


def test_evict_series_counts_frames_and_stops_when_empty(pages):
    plain = packing.fill(pages[:100], host_pages=2048)
    freed = packing.evict_series(plain["host"], 150)
    assert len(freed) == 100 and freed.min() >= 1
    assert plain["host"].eph_count == 0 and plain["host"].eph_mempool.num_regions == 0
    assert freed.sum() == plain["tmem_frames"]                     # every frame came back
    lzo = packing.fill(pages[:100], host_pages=2048, compress=True)
    freed = packing.evict_series(lzo["host"], 100)
    assert freed.sum() == lzo["tmem_frames"] and (freed == 0).sum() > 30


def test_worst_layout_costs_one_put_most_old_pages(pages):
    w = packing.interleaved_ages(80)
    assert w["mixed"] > 0.9 * w["frames"]
    cost = packing.put_cost(w["host"], w["pool"], *w["next"])
    assert cost["rc"] == 1 and cost["attempts"] == cost["evicted"] > 40
    assert cost["free_before"] == w["host"].min_free_pages - 1
    plain = packing.interleaved_ages(80, compress=False)
    assert plain["mixed"] == 0
    assert packing.put_cost(plain["host"], plain["pool"], *plain["next"])["evicted"] == 1


def test_refill_race_gains_no_frame():
    w = packing.interleaved_ages(300)
    assert packing.put_cost(w["host"], w["pool"], *w["next"])["evicted"] < 300  # old ones left
    race = packing.refill_race(w["host"], w["pool"],
                               [packing.sized_page(1910, seed=500 + k) for k in range(15)])
    assert race["rounds"] == 15 and race["frames_freed"] == 0 and race["refilled"] >= 13
    empty = packing.interleaved_ages(20, compress=False)
    race = packing.refill_race(empty["host"], empty["pool"], [bytes(4096)] * 3)
    assert race == {"rounds": 3, "frames_freed": 0, "refilled": 0}    # whole frames: no holes


def test_balloon_gets_short_only_when_evictions_free_fragments():
    worst = packing.interleaved_ages(80)
    b = packing.balloon_up(worst["host"], 9, 20)
    assert b["short"] == 20 and b["evict_attempts"] == worst["host"].evict_budget
    assert b["got"] == b["asked"] - 20 and len(worst["host"].mem.domains[9].own_frames) == b["got"]
    plain = packing.interleaved_ages(80, compress=False)
    b = packing.balloon_up(plain["host"], 9, 20)
    assert b["short"] == 0 and b["relinq_pgs"] >= 20


# --- CPU -----------------------------------------------------------------------------------------

def test_timers_return_positive_figures_and_check_the_pages(pages):
    us = packing.put_get_us(pages[:40], {"plain": {}, "lz4": dict(compress=True, codec="lz4")},
                            repeat=1)
    assert list(us) == ["plain", "lz4"] and all(t > 0 for pair in us.values() for t in pair)
    assert packing.copy_us(pages[:40], repeat=1) > 0
    assert "CPUs" in packing.machine()
