"""The differences a line-by-line reading of Xen 4.3/4.5/4.12 (tmem.c, tmem_control.c,
page_alloc.c) found: where tmemref now does what Xen does, and where it keeps the documented
intent with a fidelity note saying so (and an option where Xen's behaviour is observable).
"""
from __future__ import annotations

import errno

import pytest

from tmemref import Host, TmemOp, abi, fidelity
from tmemref.core import evict
from tmemref.ds.radix import RadixTree

from helpers import (ALL, auth, call, control, cpage, destroy_pool, get, new_pool, page, put,
                     pool_of)

EPERM, ENOMEM, ENODEV = -errno.EPERM, -errno.ENOMEM, -errno.ENODEV
UUID = (0x1234, 0xABCD)
NOTES = {n.topic: n for n in fidelity.NOTES}


def two_guests(**kw):
    h = Host(pages=1024, **kw)
    for d in (1, 2):
        h.create_domain(d, pages=32, max_pages=512)
    return h


# --- 1. a shared pool after one sharer quits ------------------------------------------------------

def test_1_a_shared_pool_stays_evictable_after_a_sharer_quits():
    h = two_guests()
    for d in (1, 2):
        assert auth(h, d, UUID) == 1
        assert new_pool(h, d, shared=True, uuid=UUID) == 0
    assert put(h, 1, 0, (1, 0, 0), 0, page(1)) == 1
    assert put(h, 2, 0, (2, 0, 0), 0, page(2)) == 1
    assert destroy_pool(h, 2, 0) == 1                 # dom2 quits; the pool lives on
    pool = pool_of(h, 1, 0)
    assert not pool.is_dying                          # Xen's pool_destroy_objs sets it
    assert evict.tmem_evict(h, None) == 1 and pool.pgp_count == 0
    h.check()
    assert "is_dying" in NOTES["A shared pool after one sharer quits"].xen


# --- 2. the weight of a dead client ----------------------------------------------------------------

def test_2_a_dead_clients_weight_leaves_the_total():
    h = two_guests()
    for d, w in ((1, 3), (2, 5)):
        assert new_pool(h, d) == 0
        assert control(h, abi.TMEMC_SET_WEIGHT, cli_id=d, arg1=w) == 0
    h.destroy_domain(2)
    assert h.client_weight_total == 3
    h.check()
    assert "client_weight_total" in NOTES["The weight of a destroyed client"].xen


# --- 3. counters of a failed put --------------------------------------------------------------------

def test_3_no_failed_put_counted_when_the_object_cannot_be_allocated():
    h = Host(pages=300, min_free_pages=0)
    h.create_domain(1, pages=300)                     # every frame: no memory for tmem at all
    assert new_pool(h, 1) == 0
    pool = pool_of(h, 1, 0)
    assert put(h, 1, 0, (1, 0, 0), 0, page(1)) == ENOMEM
    assert (pool.puts, pool.no_mem_puts, h.alloc_failed) == (1, 0, 1)


def test_3_page_maxima_rise_before_the_data_is_allocated():
    h = Host(pages=1024)
    h.create_domain(1, pages=16, max_pages=18)        # a metadata frame and one data frame
    assert new_pool(h, 1, persist=True) == 0
    assert put(h, 1, 0, (1, 0, 0), 0, page(0)) == 1
    pool = pool_of(h, 1, 0)
    assert put(h, 1, 0, (1, 0, 0), 1, page(1)) == ENOMEM   # the descriptor fits, the page not
    assert (pool.pgp_count, pool.pgp_count_max) == (1, 2)
    assert (h.global_pgp_count, h.global_pgp_count_max) == (1, 2)
    assert pool.no_mem_puts == 1
    h.check()


# --- 4. control operations to all clients when there is none ----------------------------------------

@pytest.mark.parametrize("sub", [abi.TMEMC_SET_WEIGHT, abi.TMEMC_SET_CAP,
                                 abi.TMEMC_SET_COMPRESS])
def test_4_set_to_all_clients_without_any_is_an_error(sub):
    h = Host(pages=1024)
    te = h.errored_tmem_ops
    assert control(h, sub, cli_id=ALL, arg1=1) == -1
    assert h.errored_tmem_ops == te + 1
    assert control(h, abi.TMEMC_FREEZE, cli_id=ALL) == 0     # freeze/thaw: 0 (Xen too)


# --- 5. TMEM_AUTH twice ------------------------------------------------------------------------------

def test_5_authorising_twice_takes_one_slot_and_one_revocation_undoes_it():
    h = two_guests()
    assert auth(h, 1, UUID) == 1 and auth(h, 1, UUID) == 1
    assert h.clients[1].shared_auth_uuid == [UUID]
    assert auth(h, 1, UUID, on=0) == 1
    assert new_pool(h, 1, shared=True, uuid=UUID) == 0
    assert not pool_of(h, 1, 0).shared                       # no longer authorised
    assert "4.4-4.8" in NOTES["TMEM_AUTH twice with the same uuid"].xen


# --- 6. the smaller ones -------------------------------------------------------------------------------

def test_6a_restore_new_for_client_ffff_is_a_new_pool_of_the_caller():
    h = two_guests()
    rc = call(h, 0, TmemOp(cmd=abi.TMEM_RESTORE_NEW, pool_id=9, arg1=0xFFFF,
                           flags=abi.pool_flags(persist=True)))
    assert rc == 0                                           # lowest free slot, not 9
    assert h.clients[0].pools[0].persistent
    rc = call(h, 0, TmemOp(cmd=abi.TMEM_RESTORE_NEW, pool_id=0, arg1=0x1FFFF,
                           flags=abi.pool_flags()))
    assert rc == 1


def test_6b_joining_a_shared_pool_without_memory_for_the_sharelist():
    h = Host(pages=300)
    h.create_domain(1, pages=300)
    assert destroy_pool(h, 1, 0) == 0 and auth(h, 1, UUID) == 1
    af = h.alloc_failed
    assert new_pool(h, 1, shared=True, uuid=UUID) == EPERM
    assert h.alloc_failed == af + 1 and h.clients[1].pools == [None] * 16


def test_6c_client_ids_are_16_bits():
    h = two_guests()
    for d in (1, 2):
        assert new_pool(h, d) == 0
    assert control(h, abi.TMEMC_FREEZE, cli_id=0x10001) == 0
    assert h.clients[1].frozen and not h.clients[2].frozen
    assert control(h, abi.TMEMC_FREEZE, cli_id=0x1FFFF) == 0      # 0xFFFF: all
    assert h.clients[2].frozen
    assert auth(h, 0x20002, UUID) == 1 and h.clients[2].shared_auth_uuid == [UUID]
    buf = bytearray(4096)
    assert control(h, abi.TMEMC_LIST, cli_id=0x10002, arg1=4096, buf=buf) == 0
    assert buf.startswith(b"C=CI:2,")


def test_6d_tmemc_flush_kb_wraps_as_a_u32():
    h = Host(pages=1024)
    h.create_domain(1, pages=32, max_pages=512)
    assert new_pool(h, 1) == 0
    for i in range(100):
        assert put(h, 1, 0, (i, 0, 0), 0, page(i)) == 1
    for kb in (0xFFFFFFFD, 0xFFFFFFFF):                      # kb + 3 wraps: 0 pages asked
        assert control(h, abi.TMEMC_FLUSH, arg1=kb) == 0 and h.evicted_pgs == 0
    assert control(h, abi.TMEMC_FLUSH, arg1=0xFFFFFFFC) >= 400    # no wrap: everything
    assert h.eph_count == 0


def test_6e_evictions_are_made_for_the_calling_domain():
    """relinquish and TMEMC_FLUSH take the current domain's client (tests in test_heap.py);
    here: a put's guard evicts from the putting client's own list once it is over quota."""
    h = two_guests()
    for d in (1, 2):
        assert new_pool(h, d) == 0
    for i in range(50):
        assert put(h, 1, 0, (i, 0, 0), 0, page(i)) == 1
        assert put(h, 2, 0, (i, 0, 0), 0, page(i)) == 1
    assert control(h, abi.TMEMC_SET_WEIGHT, cli_id=1, arg1=1) == 0
    assert control(h, abi.TMEMC_SET_WEIGHT, cli_id=2, arg1=3) == 0
    assert h._current_client() is None                       # outside a hypercall: dom0
    assert control(h, abi.TMEMC_FLUSH, arg1=4) == 4
    assert h.clients[1].eph_count + h.clients[2].eph_count == 99
    assert h.clients[2].eph_count == 50                      # global LRU: dom1's oldest


def test_6f_eviction_keeps_no_life_time_statistics():
    h = Host(pages=1024)
    h.create_domain(1, pages=32, max_pages=512)
    assert new_pool(h, 1) == 0
    for i in range(5):
        assert put(h, 1, 0, (i, 0, 0), 0, page(i)) == 1
    pool = pool_of(h, 1, 0)
    assert evict.tmem_evict(h, None) == 1
    assert (pool.sum_life_cycles, pool.sum_evicted_cycles) == (0, 0)
    assert get(h, 1, 0, (1, 0, 0), 0)[0] == 1                # an exclusive get: a flush
    assert pool.sum_life_cycles > 0 and pool.sum_evicted_cycles == 0


def test_6g_a_failed_radix_insert_leaves_no_stump():
    t = RadixTree(node_alloc=lambda: False)
    assert t.insert(0, "a") == 0 and t.insert(5000, "b") == -errno.ENOMEM
    assert t.node_count == 0 and len(t) == 1
    assert "stump" in NOTES["The radix-tree 'stump'"].topic


def test_6h_the_list_parse_quirk_is_recorded():
    note = NOTES["xen-tmem-list-parse: shared pool ids"]
    assert "quirks=True" in note.tmemref and "PI" in note.xen


# --- 7. pool ids are 32 bits ---------------------------------------------------------------------------

@pytest.mark.parametrize("pool_id", [2**31, 2**32 - 1, -2**31, 16])
def test_7_any_32_bit_pool_id_past_16_is_enodev(pool_id):
    h = two_guests()
    assert new_pool(h, 1) == 0
    assert call(h, 1, TmemOp(cmd=abi.TMEM_GET_PAGE, pool_id=pool_id,
                             page=bytearray(4096))) == ENODEV


# --- 8. notes that were wrong ----------------------------------------------------------------------------

def test_8_who_may_call_control_says_auth_and_restore_new_stayed_open():
    note = NOTES["Who may call control operations"]
    assert "no privilege check" in note.xen and "4.2.1-4.8" in note.xen
    h = two_guests()
    for cmd in (abi.TMEM_AUTH, abi.TMEM_RESTORE_NEW):
        assert call(h, 1, TmemOp(cmd=cmd, arg1=1, flags=1, uuid=UUID)) == EPERM


def test_8_duplicate_put_of_a_raw_page_stays_raw():
    """A page first stored raw (it did not compress) and then rewritten with data that does:
    as Xen's do_tmem_dup_put, it is stored raw again, and no compress_poor is counted."""
    h = Host(pages=1024, compress=True)
    h.create_domain(1, pages=32, max_pages=512)
    assert new_pool(h, 1) == 0
    assert put(h, 1, 0, (1, 0, 0), 0, page(1)) == 1          # random: stored raw (poor)
    c = h.clients[1]
    assert (c.compressed_pages, c.compress_poor) == (0, 1)
    assert put(h, 1, 0, (1, 0, 0), 0, cpage(1)) == 1
    assert (c.compressed_pages, c.compress_poor) == (0, 1)
    note = NOTES["Duplicate put of an uncompressed page"]
    assert "without trying to compress" in note.xen and "The code's rule" in note.tmemref


def test_8_one_mb_guard_note_names_the_reserve():
    assert "reserve" in NOTES["1 MB guard failure"].xen
    assert "reserve" in NOTES["1 MB guard failure"].tmemref


def test_8_save_restore_is_no_longer_listed_as_not_modelled():
    assert not [n for n in fidelity.NOTES if "Save" in n.topic and n.kind == "not modelled yet"]
    assert {"SAVE_GET_NEXT_PAGE skips the first page of each pool",
            "Uncompressed pages in save and restore",
            "SAVE_END leaves the invalidation log and cursors stale"} <= set(NOTES)
