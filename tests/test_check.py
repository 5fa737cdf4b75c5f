"""Every numbered invariant of the ``check()`` methods fails when that invariant is broken.

For each invariant of ``Host.check`` (host 1-6), ``Pool.check`` (1-5), ``Obj.check`` (1-4),
``HostMemory.check`` (frames 1-4) and the allocators' (host invariant 7), a small valid host is built, exactly
that invariant is corrupted on purpose, and the check must raise :class:`InvariantError` naming
it. The documented invariants of ``Client`` and ``Pgp`` (whose docstrings say ``Host.check``
verifies them) get the same treatment.
"""
from __future__ import annotations

import signal
from contextlib import contextmanager

import pytest

from tmemref import Host, InvariantError, abi
from tmemref.ds.dlist import (ListHead, ListHead2, list_add_tail, list_del, list2_add_tail,
                              list2_del)
from tmemref.host.frames import PAGE_LIST, PAGE_SIZE

from helpers import auth, cpage, flush_page, new_pool, page, put

A, B, C = (1, 0, 0), (2, 0, 0), (3, 0, 0)
UUID = (0x1234, 0xABCD)
E, P, S = 0, 1, 2


def build(compress=False):
    """dom1: E ephemeral (A[0,1,70], B[0]), P persistent (A[0,1]), S shared with dom2
    (C[5] by dom1, C[6] by dom2); dom2 also has a private ephemeral pool (A[0]); dom1 weight 2."""
    h = Host(pages=600, compress=compress)
    h.create_domain(1, pages=16, max_pages=256)
    h.create_domain(2, pages=16, max_pages=256)
    auth(h, 1, UUID)
    auth(h, 2, UUID)
    assert [new_pool(h, 1), new_pool(h, 1, persist=True),
            new_pool(h, 1, shared=True, uuid=UUID)] == [E, P, S]
    assert new_pool(h, 2, shared=True, uuid=UUID) == 0
    assert new_pool(h, 2) == 1
    mk = cpage if compress else page
    for oid, i in ((A, 0), (A, 1), (A, 70), (B, 0)):
        assert put(h, 1, E, oid, i, mk(i)) == 1
    for i in range(2):
        assert put(h, 1, P, A, i, mk(100 + i)) == 1
    assert put(h, 1, S, C, 5, mk(5)) == 1
    assert put(h, 2, 0, C, 6, mk(6)) == 1
    assert put(h, 2, 1, A, 0, mk(7)) == 1
    h.do_tmem_op(0, abi.TmemOp(cmd=abi.TMEM_CONTROL, subop=abi.TMEMC_SET_WEIGHT, cli_id=1,
                               arg1=2))
    h.check()
    return h


@pytest.fixture
def h():
    return build()


def pool(h, dom, pid):
    return h.clients[dom].pools[pid]


def pgp_at(h, dom, pid, oid, index):
    return pool(h, dom, pid).find(oid).tree.lookup(index)


def test_valid_host_passes_every_check(h):
    h.check()
    h.mem.check()
    h.eph_mempool.check()
    for c in h.clients.values():
        c.persistent_pool.check()
        for _, p in c.pool_slots():
            p.check()
            for o in p.objects():
                o.check()


# ================================================================================================
# Host.check — host invariants 1-6
# ================================================================================================
def test_host_1_memory_is_checked(h):
    h.mem.data[h.mem.heap[0], 123] = 7                     # a heap frame not scrubbed
    with pytest.raises(InvariantError, match="frames invariant 2"):
        h.check()


def test_host_2_pools_are_checked(h):
    pool(h, 1, E).pgp_count += 1
    with pytest.raises(InvariantError, match="pool invariant 2"):
        h.check()


def test_host_2_objects_are_checked(h):
    pool(h, 1, P).find(A).objnode_count += 1
    with pytest.raises(InvariantError, match="obj invariant 2"):
        h.check()


def test_host_3_pgp_unlinked_from_global_list(h):
    # the page's own links are checked first (pgp invariant 3, part of host invariant 3)
    pgp = pgp_at(h, 1, E, A, 1)
    list_del(pgp)
    with pytest.raises(InvariantError, match="(host|pgp) invariant 3"):
        h.check()


def test_host_3_pgp_unlinked_from_global_list_count_adjusted(h):
    pgp = pgp_at(h, 1, E, A, 1)
    list_del(pgp)
    h.eph_count -= 1                                       # the count agrees, the trees do not
    with pytest.raises(InvariantError, match="(host|pgp) invariant 3"):
        h.check()


def test_host_3_pgp_unlinked_from_client_list(h):
    pgp = pgp_at(h, 1, E, B, 0)
    list2_del(pgp)
    with pytest.raises(InvariantError, match="(host|pgp) invariant 3"):
        h.check()


def test_host_3_pgp_on_the_wrong_clients_list(h):
    pgp = pgp_at(h, 1, E, B, 0)
    list2_del(pgp)
    list2_add_tail(pgp, h.clients[2].eph_list)
    h.clients[1].eph_count -= 1
    h.clients[2].eph_count += 1
    h.clients[2].eph_count_max = max(h.clients[2].eph_count_max, h.clients[2].eph_count)
    with pytest.raises(InvariantError, match="(host|pgp) invariant 3"):
        h.check()


def test_host_3_global_eph_count(h):
    h.eph_count += 1
    with pytest.raises(InvariantError, match="(host|pgp) invariant 3"):
        h.check()


def test_host_3_client_eph_count_above_max(h):
    h.clients[1].eph_count_max = h.clients[1].eph_count - 1
    with pytest.raises(InvariantError, match="(host|pgp) invariant 3"):
        h.check()


def test_host_3_persistent_pgp_on_the_global_list(h):
    pgp = pgp_at(h, 1, P, A, 0)
    list_add_tail(pgp, h.eph_list)
    h.eph_count += 1
    with pytest.raises(InvariantError, match="(host|pgp) invariant 3"):
        h.check()


def test_host_3_pgp_on_global_list_twice(h):
    # the same pgp twice: a second node owned by it replaces another pgp's node
    victim = pgp_at(h, 1, E, A, 0)
    twin = pgp_at(h, 1, E, A, 1)
    victim.owner = twin
    with pytest.raises(InvariantError, match="(host|pgp) invariant 3"):
        h.check()


@contextmanager
def deadline(seconds):
    """Turn a check() that never returns into a TimeoutError (SIGALRM; main thread, Linux)."""
    def on_alarm(signum, frame):
        raise TimeoutError(f"check() still running after {seconds} s")
    old = signal.signal(signal.SIGALRM, on_alarm)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)


def test_host_3_lru_ring_that_never_returns_to_the_head(h):
    # a broken ring must be reported, not walked forever (dlist.list_check guards this)
    pgp = pgp_at(h, 1, E, A, 1)
    pgp.next = pgp
    with deadline(2), pytest.raises(InvariantError, match="invariant"):
        h.check()


def test_pool_3_persistent_ring_that_never_returns_to_the_head(h):
    pgp = pgp_at(h, 1, P, A, 0)
    pgp.next2 = pgp
    with deadline(2), pytest.raises(InvariantError, match="invariant"):
        pool(h, 1, P).check()


def test_host_4_frame_backs_two_pgps(h):
    a, b = pgp_at(h, 1, E, A, 0), pgp_at(h, 1, E, A, 1)
    b.data = a.data                                        # b's frame is orphaned, still tmem's
    with pytest.raises(InvariantError, match="host invariant 4"):
        h.check()


def test_host_4_ephemeral_pgp_on_a_billed_frame(h):
    eph, pers = pgp_at(h, 1, E, A, 0), pgp_at(h, 1, P, A, 0)
    eph.data, pers.data = pers.data, eph.data              # memory itself stays consistent
    with pytest.raises(InvariantError, match="host invariant 4"):
        h.check()


@pytest.mark.parametrize("counter", ["global_pgp_count", "global_obj_count",
                                     "global_page_count", "global_rtree_node_count"])
def test_host_4_global_counts(h, counter):
    setattr(h, counter, getattr(h, counter) + 1)
    with pytest.raises(InvariantError, match="host invariant 4"):
        h.check()


def test_host_5_pool_in_two_slots(h):
    c = h.clients[1]
    c.pools[9] = c.pools[E]
    with pytest.raises(InvariantError, match="host invariant 5"):
        h.check()


def test_host_5_slot_holds_a_pool_neither_owned_nor_shared(h):
    h.clients[2].pools[5] = pool(h, 1, E)
    with pytest.raises(InvariantError, match="host invariant 5"):
        h.check()


def test_host_5_pool_id_disagrees_with_slot(h):
    pool(h, 1, P).pool_id = 7
    with pytest.raises(InvariantError, match="host invariant 5"):
        h.check()


def test_host_5_shared_pools_array_lost_a_pool(h):
    i = h.shared_pools.index(pool(h, 1, S))
    h.shared_pools[i] = None
    with pytest.raises(InvariantError, match="host invariant 5"):
        h.check()


def test_host_5_shared_pools_array_holds_a_stranger(h):
    h.shared_pools[15] = pool(h, 1, E)
    with pytest.raises(InvariantError, match="host invariant 5"):
        h.check()


def test_host_5_client_and_domain_disagree(h):
    h.mem.domains[2].client = h.clients[1]
    with pytest.raises(InvariantError, match="host invariant 5"):
        h.check()


def test_host_6_client_weight_total(h):
    h.client_weight_total += 1
    with pytest.raises(InvariantError, match="host invariant 6"):
        h.check()


def test_host_7_allocators_are_checked(h):
    h.clients[1].persistent_pool.used_size += 16           # its own counter disagrees
    with pytest.raises(InvariantError, match="tlsf client:1 invariant 6"):
        h.check()


# ================================================================================================
# Pool.check — pool invariants 1-5
# ================================================================================================
def test_pool_1_object_in_wrong_bucket(h):
    p = pool(h, 1, E)
    obj = p.find(B)
    b = (B[0] ^ B[1] ^ B[2]) & 0xFF
    p.buckets[b].erase(obj.rbnode)
    obj.rbnode = p.buckets[(b + 1) % 256].insert((B[2], B[1], B[0]), obj)
    obj.check()                                            # the object itself is consistent
    with pytest.raises(InvariantError, match="pool invariant 1"):
        p.check()
    with pytest.raises(InvariantError, match="pool invariant 1"):
        h.check()


def test_pool_1_object_points_at_another_pool(h):
    p = pool(h, 1, E)
    p.find(B).pool = pool(h, 2, 1)
    with pytest.raises(InvariantError, match="pool invariant 1"):
        p.check()


@pytest.mark.parametrize("counter", ["pgp_count", "obj_count", "objnode_count"])
def test_pool_2_counts(h, counter):
    p = pool(h, 1, E)
    setattr(p, counter, getattr(p, counter) + 1)
    setattr(p, counter + "_max", getattr(p, counter + "_max") + 1)   # keep invariant 4 true
    with pytest.raises(InvariantError, match="pool invariant 2"):
        p.check()


def test_pool_3_persistent_pgp_off_the_list(h):
    p = pool(h, 1, P)
    list2_del(pgp_at(h, 1, P, A, 1))
    with pytest.raises(InvariantError, match="pool invariant 3"):
        p.check()


def test_pool_3_persistent_list_holds_a_stranger(h):
    p = pool(h, 1, P)
    stray = pgp_at(h, 1, P, A, 1)
    node = ListHead2(pgp_at(h, 1, E, A, 0))                # an ephemeral pgp of another pool
    list2_del(stray)
    list2_add_tail(node, p.pers_list)
    with pytest.raises(InvariantError, match="pool invariant 3"):
        p.check()


def test_pool_3_ephemeral_pool_with_a_persistent_list(h):
    p = pool(h, 1, E)
    list2_add_tail(ListHead2(pgp_at(h, 1, E, A, 0)), p.pers_list)
    with pytest.raises(InvariantError, match="pool invariant 3"):
        p.check()


@pytest.mark.parametrize("counter", ["pgp_count", "obj_count", "objnode_count"])
def test_pool_4_maximum_below_count(h, counter):
    p = pool(h, 1, E)
    setattr(p, counter + "_max", getattr(p, counter) - 1)
    with pytest.raises(InvariantError, match="pool invariant 4"):
        p.check()


def test_pool_5_owner_not_on_sharelist(h):
    p = pool(h, 1, S)
    p.share_list.remove(h.clients[1])
    p.shared_count -= 1
    with pytest.raises(InvariantError, match="pool invariant 5"):
        p.check()


def test_pool_5_shared_count(h):
    p = pool(h, 1, S)
    p.shared_count += 1
    with pytest.raises(InvariantError, match="pool invariant 5"):
        p.check()


def test_pool_5_private_pool_with_sharers(h):
    p = pool(h, 1, E)
    p.share_list.append(h.clients[2])
    p.shared_count = 1
    with pytest.raises(InvariantError, match="pool invariant 5"):
        p.check()


def test_pool_5_private_pool_with_shared_count(h):
    p = pool(h, 1, E)
    p.shared_count = 1
    with pytest.raises(InvariantError, match="pool invariant 5"):
        p.check()


# ================================================================================================
# Obj.check — obj invariants 1-4
# ================================================================================================
def test_obj_1_pgp_count(h):
    o = pool(h, 1, E).find(A)
    o.pgp_count += 1
    with pytest.raises(InvariantError, match="obj invariant 1"):
        o.check()


def test_obj_1_empty_object(h):
    # an object may exist only while it holds a page
    o = pool(h, 1, E).find(B)
    o.tree.delete(0)
    o.pgp_count = 0
    with pytest.raises(InvariantError, match="obj invariant 1"):
        o.check()


def test_obj_2_objnode_count(h):
    o = pool(h, 1, E).find(A)
    o.objnode_count -= 1
    with pytest.raises(InvariantError, match="obj invariant 2"):
        o.check()


def test_obj_3_pgp_index(h):
    o = pool(h, 1, E).find(A)
    o.tree.lookup(70).index = 71
    with pytest.raises(InvariantError, match="obj invariant 3"):
        o.check()


def test_obj_3_pgp_back_pointer(h):
    o = pool(h, 1, E).find(A)
    o.tree.lookup(1).obj = pool(h, 1, E).find(B)
    with pytest.raises(InvariantError, match="obj invariant 3"):
        o.check()


def test_obj_4_no_rbnode(h):
    o = pool(h, 1, E).find(A)
    o.rbnode = None
    with pytest.raises(InvariantError, match="obj invariant 4"):
        o.check()


def test_obj_4_rbnode_of_another_object(h):
    p = pool(h, 1, E)
    o = p.find(A)
    o.rbnode = p.find(B).rbnode
    with pytest.raises(InvariantError, match="obj invariant 4"):
        o.check()


def test_obj_4_oid_disagrees_with_key(h):
    o = pool(h, 1, P).find(A)
    o.oid = (A[0] + 256, 0, 0)                             # same bucket, different key
    with pytest.raises(InvariantError, match="obj invariant 4"):
        o.check()


# ================================================================================================
# HostMemory.check — frames invariants 1-4
# ================================================================================================
def test_frames_1_heap_frame_twice(h):
    h.mem.heap.append(h.mem.heap[0])
    with pytest.raises(InvariantError, match="frames invariant 1"):
        h.mem.check()


def test_frames_1_page_list_frame_twice(h):
    # make one page-list frame, then list it twice
    flush_page(h, 1, E, B, 0)
    assert h.mem.page_list
    h.mem.page_list.append(h.mem.page_list[0])
    with pytest.raises(InvariantError, match="frames invariant 1"):
        h.mem.check()


def test_frames_1_owner_says_page_list_but_frame_on_heap(h):
    h.mem.owner[h.mem.heap[-1]] = PAGE_LIST
    with pytest.raises(InvariantError, match="frames invariant 1"):
        h.mem.check()


def test_frames_1_frame_of_a_vanished_domain(h):
    del h.mem.domains[2]
    with pytest.raises(InvariantError, match="frames invariant 1"):
        h.mem.check()


def test_frames_2_heap_frame_not_scrubbed(h):
    h.mem.data[h.mem.heap[5], PAGE_SIZE - 1] = 1
    with pytest.raises(InvariantError, match="frames invariant 2"):
        h.mem.check()


def test_frames_3_freeable_page_count(h):
    h.mem.freeable_page_count += 1
    with pytest.raises(InvariantError, match="frames invariant 3"):
        h.mem.check()


def test_frames_4_misbilled_domain(h):
    h.mem.domains[1].tot_pages -= 1
    with pytest.raises(InvariantError, match="frames invariant 4"):
        h.mem.check()


def test_frames_4_above_max_pages(h):
    d = h.mem.domains[1]
    assert d.tot_pages > len(d.own_frames)                 # it holds persistent tmem frames
    d.max_pages = d.tot_pages - 1
    with pytest.raises(InvariantError, match="frames invariant 4"):
        h.mem.check()


def test_frames_4_own_memory_may_exceed_a_lowered_max(h):
    # the documented exception: max_pages lowered below the memory a domain already holds
    # (as `xl mem-max` may); creating it so is refused
    with pytest.raises(ValueError, match="max_pages"):
        h.create_domain(5, pages=10, max_pages=4)
    assert 5 not in h.mem.domains
    h.create_domain(5, pages=10, max_pages=10).max_pages = 4
    h.mem.check()
    h.check()


# ================================================================================================
# Host invariant 7 — the blocks allocators hand out are exactly those the structures use
# ================================================================================================
def test_host_7_a_leaked_block(h):
    h.eph_mempool.alloc(40)                                # allocated, used by nothing
    with pytest.raises(InvariantError, match="host invariant 7: allocator tmem .* leaked"):
        h.check()


def test_host_7_a_structure_on_a_freed_block(h):
    obj = next(p for p in h.clients[1].pools if p is not None and p.persistent).objects()
    obj = next(obj)
    h.clients[1].persistent_pool.free(obj.meta)            # freed under the object's feet
    with pytest.raises(InvariantError, match="host invariant 7: allocator client:1"):
        h.check()


def test_host_7_two_structures_on_one_block(h):
    pool = next(p for p in h.clients[1].pools if p is not None and not p.persistent)
    objs = list(pool.objects())
    pgps = [pgp for o in objs for _, pgp in o.tree.items()]
    pgps[0].meta = pgps[1].meta
    with pytest.raises(InvariantError, match="host invariant 7"):
        h.check()


# ================================================================================================
# Client and Pgp invariants (documented as checked by Host.check)
# ================================================================================================
def test_client_3_at_most_16_auth_uuids(h):
    c = h.clients[1]
    c.shared_auth_uuid[:] = [(i, 7) for i in range(17)]
    with pytest.raises(InvariantError):
        h.check()


def test_pgp_2_compressed_size_disagrees_with_data():
    h = build(compress=True)
    pgp = pgp_at(h, 1, P, A, 0)
    assert pgp.size > 0                                    # stored compressed
    pgp.size += 1
    with pytest.raises(InvariantError):
        h.check()


def test_pgp_2_raw_pgp_without_a_frame(h):
    pgp = pgp_at(h, 1, E, A, 0)
    h.mem.free_tmem_page(pgp.data)                         # memory stays consistent
    h.global_page_count -= 1
    pgp.data = None
    with pytest.raises(InvariantError):
        h.check()


def test_pgp_3_persistent_pgp_linked_through_link_a(h):
    # link a of a persistent pgp is unused unless it was freed while live-migrating
    pgp = pgp_at(h, 1, P, A, 0)
    list_add_tail(pgp, ListHead())
    with pytest.raises(InvariantError):
        h.check()
