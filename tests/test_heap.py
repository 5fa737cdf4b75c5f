"""Xen's heap side (facts §4.5): the reserve for mid-size allocations, relinquish, MEMF_tmem,
ballooning and claims, and the manageability sequence against them.

Sources: Xen 4.12 xen/common/page_alloc.c (alloc_heap_pages, total_free_pages,
domain_set_outstanding_pages, domain_adjust_tot_pages), xen/common/tmem.c
(tmem_relinquish_pages, tmem_ensure_avail_pages); tmem-internals.html "Memory allocation
interdependency".
"""
from __future__ import annotations

import errno

import pytest

from tmemref.viz import admin

from tmemref import Host, InvariantError, TmemOp, abi, xl
from tmemref.host.frames import MEMF_tmem

from helpers import control, new_pool, page, put

EINVAL, ENOMEM = -errno.EINVAL, -errno.ENOMEM


def absorbed(pages=1024, guest=128, **kw):
    """dom1 filled an ephemeral pool until the 1 MB guard first had to evict."""
    h = Host(pages=pages, **kw)
    h.create_domain(1, pages=guest, max_pages=4 * guest)
    e = new_pool(h, 1)
    i = 0
    while h.evicted_pgs == 0:
        assert put(h, 1, e, (i // 64, 0, 0), i % 64, page(i)) == 1
        i += 1
    return h


def drain_heap_to_reserve(h, domid=9):
    """A domain takes every heap frame above the reserve (nothing is relinquished yet)."""
    mem = h.mem
    h.create_domain(domid, pages=len(mem.heap) - mem.midsize_alloc_zone_pages)
    assert len(mem.heap) == mem.midsize_alloc_zone_pages
    h.check()


# --- the reserve ---------------------------------------------------------------------------------

def test_reserve_is_one_128th_and_the_guard_counts_it_out():
    h = Host(pages=1024)
    assert h.mem.midsize_alloc_zone_pages == 8
    assert h.mem.total_free_pages() == len(h.mem.heap) - 8
    h.create_domain(1, pages=256, max_pages=512)
    e = new_pool(h, 1)
    for i in range(1000):                          # the README session
        put(h, 1, e, (i // 64, 0, 0), i % 64, bytes(range(256)) * 16)
    # the guard keeps 1 MB beyond the reserve before each put; the last put took one frame
    assert h.mem.guard_pages() == 255 and h.mem.free_pages == 255 + 8
    assert h.evicted_pgs == 509


def test_small_host_refuses_a_guard_it_cannot_keep():
    with pytest.raises(ValueError, match="reserve"):
        Host(pages=258)                            # 256 + 2 frames of reserve
    Host(pages=259)


def test_order_0_at_the_reserve_comes_from_tmem_only():
    h = absorbed()
    drain_heap_to_reserve(h)
    ra, rt, heap = h.relinq_attempts, h.relinq_pgs, len(h.mem.heap)
    d = h.mem.domains[9]
    d.max_pages += 1
    got = h.mem.alloc_domheap_pages(d, 0)
    h.check()
    assert got is not None and len(h.mem.heap) == heap           # the reserve is untouched
    assert (h.relinq_attempts - ra, h.relinq_pgs - rt) == (1, 1)
    assert not h.mem.data[got[0]].any()                           # scrubbed for the guest


def test_large_orders_at_the_reserve_fail_and_mid_sizes_use_it():
    h = absorbed()
    drain_heap_to_reserve(h)
    d = h.mem.domains[9]
    d.max_pages = 10_000
    ra = h.relinq_attempts
    assert h.mem.alloc_domheap_pages(d, 9) is None                # relinquish refuses order 9
    assert h.relinq_attempts == ra + 1 and h.relinq_pgs == 0
    heap = len(h.mem.heap)
    assert len(h.mem.alloc_domheap_pages(d, 2)) == 4              # orders 1-8: the reserve
    assert len(h.mem.heap) == heap - 4 and h.relinq_attempts == ra + 1
    h.check()


def test_without_freeable_memory_the_reserve_serves_everyone():
    h = Host(pages=1024)
    drain_heap_to_reserve(h)
    d = h.mem.domains[9]
    d.max_pages = 10_000
    assert len(h.mem.alloc_domheap_pages(d, 0)) == 1 and h.relinq_attempts == 0
    assert len(h.mem.heap) == 7
    h.check()


def test_tmem_own_allocations_at_the_reserve_relinquish_unscrubbed_without_recursion(
        monkeypatch):
    h = absorbed(min_free_pages=0)                 # no guard: puts run the heap down
    mem = h.mem
    depth, worst = [0], [0]
    real_alloc, real_relinquish = type(mem)._alloc_order_locked, mem.relinquish

    def alloc(self, d, order, memflags):
        assert depth[0] == 0, "the heap was called from inside relinquish"
        return real_alloc(self, d, order, memflags)

    def relinquish(order, memflags):
        depth[0] += 1
        worst[0] = max(worst[0], depth[0])
        try:
            assert memflags & MEMF_tmem               # only tmem's own requests here
            return real_relinquish(order, memflags)
        finally:
            depth[0] -= 1

    monkeypatch.setattr(type(mem), "_alloc_order_locked", alloc)
    mem.relinquish = relinquish
    e = 0
    i = 10_000
    while len(mem.heap) > mem.midsize_alloc_zone_pages:
        assert put(h, 1, e, (i, 0, 0), 0, page(i)) == 1
        i += 1
    rt = h.relinq_pgs
    for j in range(20):                            # at the reserve: tmem feeds itself
        assert put(h, 1, e, (i + j, 0, 0), 0, page(j)) == 1
    h.check()
    assert len(mem.heap) == mem.midsize_alloc_zone_pages and h.relinq_pgs > rt
    assert worst[0] == 1


def test_relinquish_scrubs_unless_memf_tmem():
    for flags, zero in ((0, True), (MEMF_tmem, False)):
        h = absorbed()
        buf = bytearray(4096)
        assert h.do_tmem_op(1, TmemOp(cmd=abi.TMEM_GET_PAGE, pool_id=0, oid=(1, 0, 0),
                                      index=0, page=buf)) == 1   # frees a frame, unscrubbed
        f = h._relinquish_page(0, flags)
        assert f is not None and (not h.mem.data[f].any()) == zero
        h.mem._heap_free_locked(f)
        h.check()


def test_relinquish_evicts_for_the_current_domain():
    """A guest ballooning up at the reserve makes tmem evict for its own client: once it is
    over quota (documented rule), from its own list; dom0 creating a domain evicts from the
    global list (the oldest page, guest 1's)."""
    for who, expect in (("balloon", 2), ("create", 1)):
        h = Host(pages=1024)
        for d in (1, 2):
            h.create_domain(d, pages=64, max_pages=600)
        assert new_pool(h, 1) == 0 and new_pool(h, 2) == 0
        for d, w in ((1, 3), (2, 1)):
            assert control(h, abi.TMEMC_SET_WEIGHT, cli_id=d, arg1=w) == 0
        for i in range(100):
            assert put(h, 1, 0, (i, 1, 0), 0, page(i)) == 1
        for i in range(100):
            assert put(h, 2, 0, (i, 2, 0), 0, page(i)) == 1      # 50%: over its 25% share
        h.create_domain(9, pages=len(h.mem.heap) - 8)
        before = {d: h.clients[d].eph_count for d in (1, 2)}
        if who == "balloon":
            assert h.balloon(2, 65) == 65
        else:
            h.create_domain(10, pages=1)
        h.check()
        lost = [d for d in (1, 2) if h.clients[d].eph_count < before[d]]
        assert lost == [expect], who


def test_tmemc_flush_evicts_for_domain_0s_client():
    h = Host(pages=1024, dom0_pages=64)
    h.create_domain(1, pages=64, max_pages=600)
    for d in (0, 1):
        assert new_pool(h, d) == 0
    for i in range(50):
        assert put(h, 1, 0, (i, 1, 0), 0, page(i)) == 1          # the oldest pages
    for i in range(50):
        assert put(h, 0, 0, (i, 0, 0), 0, page(i)) == 1
    for d, w in ((0, 1), (1, 3)):
        assert control(h, abi.TMEMC_SET_WEIGHT, cli_id=d, arg1=w) == 0
    assert control(h, abi.TMEMC_FLUSH, arg1=40) == 40            # 10 frames
    # dom0 (25% of the weight, 50% of the pages) is over quota: its own pages go, although
    # guest 1's are older
    assert h.clients[0].eph_count < 50 and h.clients[1].eph_count == 50


# --- ballooning ----------------------------------------------------------------------------------

def test_balloon_down_and_up_again():
    h = Host(pages=1024)
    h.create_domain(1, pages=200, max_pages=300)
    d = h.mem.domains[1]
    h.mem.data[d.own_frames] = 0xAB
    heap = len(h.mem.heap)
    assert h.balloon(1, 120) == 120
    h.check()                                       # the frames given back were scrubbed
    assert d.tot_pages == 120 and len(h.mem.heap) == heap + 80
    assert h.balloon(1, 250) == 250 and d.tot_pages == 250
    assert h.balloon(1, 400) == 300                 # stops at max_pages
    h.check()


def test_balloon_counts_persistent_tmem_against_max_pages():
    h = Host(pages=1024)
    h.create_domain(1, pages=100, max_pages=120)
    assert new_pool(h, 1, persist=True) == 0
    for i in range(10):
        assert put(h, 1, 0, (1, 0, 0), i, page(i)) == 1
    held = h.mem.domains[1].tot_pages
    assert h.balloon(1, 200) == 100 + (120 - held)
    h.check()


@pytest.mark.parametrize("domid,pages,exc", [(7, 10, ValueError), (1, -1, ValueError),
                                              (1, 1.5, TypeError), ("1", 10, ValueError)])
def test_balloon_and_claim_bad_arguments(domid, pages, exc):
    h = Host(pages=1024)
    h.create_domain(1, pages=10, max_pages=100)
    for fn in (h.balloon, h.claim):
        with pytest.raises(exc):
            fn(domid, pages)
    h.check()


# --- claims --------------------------------------------------------------------------------------

def test_claim_rules():
    h = Host(pages=1024)
    h.create_domain(1, pages=10, max_pages=500)
    assert h.claim(1, 10) == EINVAL                 # not above what it holds
    assert h.claim(1, 501) == EINVAL                # above max_pages
    assert h.claim(1, 400) == 0
    assert h.mem.outstanding_claims == 390
    assert h.claim(1, 450) == EINVAL                # one claim at a time
    assert h.claim(1, 0) == 0 and h.mem.outstanding_claims == 0
    h.create_domain(2, pages=10, max_pages=2000)
    assert h.claim(2, 1024) == ENOMEM               # more than is free
    h.check()


def test_claim_counts_freeable_tmem_and_shrinks_as_the_domain_is_populated():
    h = absorbed(pages=1024, guest=128)
    free, freeable = len(h.mem.heap), h.freeable_pages()
    h.create_domain(2, pages=0, max_pages=2000)
    want = free + freeable // 2                     # more than the heap holds
    assert want > free and h.claim(2, want) == 0
    d = h.mem.domains[2]
    assert d.outstanding_pages == want
    assert h.balloon(2, 100) == 100
    assert d.outstanding_pages == want - 100 == h.mem.outstanding_claims
    assert h.balloon(2, want) == want               # the rest relinquished by tmem
    assert d.outstanding_pages == 0 and h.mem.outstanding_claims == 0
    assert h.relinq_pgs > 0
    h.check()


def test_claimed_memory_is_kept_from_persistent_puts_not_from_ephemeral_ones():
    """Xen's alloc_heap_pages refuses a request that would eat into claimed memory, counting
    tmem's freeable frames as available: an ephemeral put moves a frame from the heap to
    freeable (the sum stays), so it goes on as long as one frame is unclaimed; a persistent
    put takes that frame for good."""
    h = Host(pages=1024)
    h.create_domain(1, pages=64, max_pages=900)
    p, e = new_pool(h, 1, persist=True), new_pool(h, 1)
    assert put(h, 1, p, (1, 0, 0), 0, page(1)) == 1 and put(h, 1, e, (2, 0, 0), 0, page(2)) == 1
    h.create_domain(2, pages=0, max_pages=1000)
    assert h.claim(2, len(h.mem.heap) + h.freeable_pages() - 1) == 0   # one frame unclaimed
    for i in range(1, 21):
        assert put(h, 1, e, (2, 0, 0), i, page(100 + i)) == 1          # ephemeral: go on
    assert put(h, 1, p, (1, 0, 0), 1, page(3)) == 1                     # takes the last frame
    assert put(h, 1, p, (1, 0, 0), 2, page(4)) == ENOMEM                # claimed
    assert put(h, 1, e, (2, 0, 0), 99, page(5)) == ENOMEM               # nothing unclaimed
    h.check()


def test_destroying_a_domain_drops_its_claim():
    h = Host(pages=1024)
    h.create_domain(1, pages=0, max_pages=500)
    assert h.claim(1, 300) == 0
    h.destroy_domain(1)
    assert h.mem.outstanding_claims == 0
    h.check()


def test_frames_invariant_5_claims_add_up():
    h = Host(pages=1024)
    h.create_domain(1, pages=0, max_pages=500)
    assert h.claim(1, 300) == 0
    h.mem.outstanding_claims += 1
    with pytest.raises(InvariantError, match="invariant 5"):
        h.check()
    h.mem.outstanding_claims -= 1
    h.mem.domains[1].outstanding_pages = -1
    h.mem.outstanding_claims = -1
    with pytest.raises(InvariantError, match="invariant 5"):
        h.check()


# --- the manageability sequence with claims ------------------------------------------------------

def test_make_room_with_a_claim():
    host, guest = admin.absorbed_host(pages=2048, guest_pages=256, extra=64)
    t = admin.Transcript(host)
    steps = admin.make_room_steps(t, 2, 768, claim=True,
                               meanwhile=("guest 1 puts 100 pages", lambda h: guest.put(100)))
    out = [fn(host) for _, fn in steps]
    host.check()
    created = out[-2]
    assert created.ok and "claim 0" in created.text
    assert len(host.mem.domains[2].own_frames) == 768 and host.mem.outstanding_claims == 0
    assert not host.clients[1].frozen


def test_a_claim_without_the_flush_is_granted_from_freeable_memory():
    """claim_mode counts freeable tmem as available (xl.conf): no flush is needed; tmem
    relinquishes frame by frame while the domain is populated."""
    host, guest = admin.absorbed_host(pages=2048, guest_pages=256, extra=64)
    assert admin.tool_free_pages(host) < 768
    host.create_domain(2, pages=0, max_pages=768)
    assert host.claim(2, 768) == 0
    assert host.balloon(2, 768) == 768
    host.check()
    assert host.relinq_pgs > 0
