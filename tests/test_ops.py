"""Contract tests: the behaviour of every tmem operation, as Xen's code and doc define it.

Organised by the "Fifteen behavioural rules" of the facts digest (§14; xen-tmem-facts.md),
plus the details of §3.2-3.9 (pool creation, shared pools, destroy, put/dup put, get, flush,
freeze, domain death) and §4 (eviction, quota, the 1 MB guard), §6 (billing); each block is
headed by the rule and section it checks. Expected values are derived from those rules by hand,
never copied from the implementation's output. ``host.check()`` runs after every hypercall
(helpers.call), which also asserts that no lock is left held.

Where the model deliberately follows the doc's intent rather than Xen's code, the test says so
(shared-pool ``last_client`` is the caller; reassigning a shared pool moves only that pool's
pages to the new owner's list).
"""
from __future__ import annotations

import array
import errno
import threading

import numpy as np
import pytest

from tmemref import Host, TmemOp, abi
from tmemref.core import evict as ev
from tmemref.core.evict import client_over_quota, tmem_evict
from tmemref.ds.dlist import list_owners

from helpers import (ALL, U64, auth, call, closed_mmap, control, cpage, destroy_pool, released_view,
                     flush_object, flush_page, get, lru, new_pool, page, pool_of, put,
                     snapshot, diff, stored)

ENODEV, EPERM, ENOSPC, ENOMEM, EFAULT = (-errno.ENODEV, -errno.EPERM, -errno.ENOSPC,
                                         -errno.ENOMEM, -errno.EFAULT)
EFROZEN, EEMPTY = -abi.EFROZEN, -abi.EEMPTY
A, B, C = (1, 0, 0), (2, 0, 0), (3, 0, 0)
UUID = (0x1234, 0xABCD)



def shared_pair(h, uuid=UUID):
    """dom1 (owner) and dom2 join shared pool ``uuid`` after TMEM_AUTH from dom0.
    dom1 first makes a private pool so the two local slots differ. Returns (p1, p2)."""
    assert new_pool(h, 1) == 0
    assert auth(h, 1, uuid) == 1
    assert auth(h, 2, uuid) == 1
    p1 = new_pool(h, 1, shared=True, uuid=uuid)
    p2 = new_pool(h, 2, shared=True, uuid=uuid)
    assert (p1, p2) == (1, 0)
    return p1, p2


def parse_list(text):
    """LIST text -> [(kind, {key: value-string})]; each line 'K=xx:v,yy:v'."""
    out = []
    for line in text.splitlines():
        kind, _, rest = line.partition("=")
        fields = {}
        for item in rest.split(","):
            if item:
                k, _, v = item.partition(":")
                fields.setdefault(k, v)
        out.append((kind, fields))
    return out


# ================================================================================================
# Rule 1 — pool creation (§3.2)
# ================================================================================================
def test_new_pool_takes_lowest_free_slot_and_17th_is_eperm(host):
    assert [new_pool(host, 1) for _ in range(3)] == [0, 1, 2]
    assert destroy_pool(host, 1, 1) == 1
    assert new_pool(host, 1, persist=True) == 1          # the hole is reused first
    assert destroy_pool(host, 1, 0) == 1
    assert new_pool(host, 1) == 0
    assert [new_pool(host, 1) for _ in range(13)] == list(range(3, 16))
    before = snapshot(host)
    assert new_pool(host, 1) == EPERM                     # 17th
    assert new_pool(host, 1, persist=True) == EPERM
    assert snapshot(host) == before
    # slots are per client: dom2 starts at 0
    assert new_pool(host, 2) == 0


@pytest.mark.parametrize("flags", [
    abi.pool_flags(version=0), abi.pool_flags(version=2), abi.pool_flags(version=0xFF),
    abi.pool_flags(pagesize_field=1), abi.pool_flags(pagesize_field=0xF),
    abi.pool_flags() | abi.TMEM_POOL_PRECOMPRESSED,
    abi.pool_flags() | (1 << 8), abi.pool_flags() | (1 << 23),
    abi.pool_flags(persist=True, shared=True),
], ids=["v0", "v2", "v255", "pagesize1", "pagesize15", "precompressed", "bit8", "bit23",
        "shared+persist"])
def test_new_pool_rejections_are_eperm(host, flags):
    assert new_pool(host, 1, flags=flags, uuid=UUID) == EPERM
    assert all(p is None for p in host.clients[1].pools)
    # a rejected request does not use up a slot
    assert new_pool(host, 1) == 0


def test_new_pool_bit3_is_neither_used_nor_checked(host):
    # facts §1.3: "Bit 3 is neither used nor checked"
    pid = new_pool(host, 1, flags=abi.pool_flags() | 8)
    assert pid == 0
    pool = pool_of(host, 1, pid)
    assert not pool.persistent and not pool.shared


def test_new_pool_types(host):
    e = new_pool(host, 1)
    p = new_pool(host, 1, persist=True)
    assert (pool_of(host, 1, e).persistent, pool_of(host, 1, p).persistent) == (False, True)
    kinds = {(f["PI"], f["PT"]) for k, f in parse_list(host.list_stats(1)) if k == "P"}
    assert kinds == {(str(e), "EP"), (str(p), "PP")}


def test_private_pools_ignore_uuid(host):
    # facts §3.2: a private pool's uuid is stored but ignored — same uuid, distinct pools
    a = new_pool(host, 1, uuid=UUID)
    b = new_pool(host, 1, uuid=UUID)
    assert a != b
    assert put(host, 1, a, A, 0, page(1)) == 1
    assert get(host, 1, b, A, 0)[0] == EEMPTY


def test_new_pool_allowed_while_frozen(host):
    # facts §3.8: "new pools not blocked"
    new_pool(host, 1)
    assert control(host, abi.TMEMC_FREEZE, cli_id=1) == 0
    assert new_pool(host, 1) == 1


# ================================================================================================
# Rule 2 — bad pool ids; DESTROY_POOL returns 1 / 0 (§3.3)
# ================================================================================================
@pytest.mark.parametrize("pool_id", [16, -1, 2**31 - 1, -2**31, 5])
def test_page_ops_on_bad_pool_id_are_enodev(host, pool_id):
    new_pool(host, 1)
    put(host, 1, 0, A, 0, page(0))
    for op in (TmemOp(cmd=abi.TMEM_PUT_PAGE, pool_id=pool_id, oid=A, page=page(1)),
               TmemOp(cmd=abi.TMEM_GET_PAGE, pool_id=pool_id, oid=A, page=bytearray(4096)),
               TmemOp(cmd=abi.TMEM_FLUSH_PAGE, pool_id=pool_id, oid=A),
               TmemOp(cmd=abi.TMEM_FLUSH_OBJECT, pool_id=pool_id, oid=A)):
        assert call(host, 1, op) == ENODEV
    assert destroy_pool(host, 1, pool_id) == 0
    assert stored(host, pool_of(host, 1, 0)) == {(A, 0): page(0)}


def test_destroy_pool_returns_1_then_0_and_frees_everything(host):
    e = new_pool(host, 1)
    p = new_pool(host, 1, persist=True)
    for i in range(5):
        assert put(host, 1, e, A, i, page(i)) == 1
        assert put(host, 1, p, B, i, page(10 + i)) == 1
    assert host.mem.domains[1].tot_pages > 32
    assert destroy_pool(host, 1, p) == 1
    assert host.mem.domains[1].tot_pages == 32            # persistent billing returned
    assert destroy_pool(host, 1, p) == 0                  # now an empty slot
    assert destroy_pool(host, 1, e) == 1
    assert host.global_pgp_count == host.global_obj_count == host.global_page_count == 0
    assert host.eph_count == 0 and host.mem.freeable_page_count == 0
    assert get(host, 1, e, A, 0)[0] == ENODEV
    assert put(host, 1, e, A, 0, page(0)) == ENODEV


# ================================================================================================
# Rules 3 and 5 — private ephemeral get is exclusive; -EEMPTY vs 0 (§3.6)
# ================================================================================================
def test_private_ephemeral_get_is_exclusive(host):
    e = new_pool(host, 1)
    assert put(host, 1, e, A, 3, page(3)) == 1
    frames = host.global_page_count
    assert get(host, 1, e, A, 3) == (1, page(3))
    assert host.global_page_count == frames - 1           # the frame left tmem
    assert host.eph_count == 0
    assert pool_of(host, 1, e).obj_count == 0             # the object went with its page
    assert get(host, 1, e, A, 3) == (EEMPTY, b"\xee" * 4096)   # pool now empty


def test_private_ephemeral_second_get_is_0_when_pool_not_empty(host):
    e = new_pool(host, 1)
    put(host, 1, e, A, 0, page(0))
    put(host, 1, e, A, 1, page(1))
    assert get(host, 1, e, A, 0) == (1, page(0))
    assert get(host, 1, e, A, 0) == (0, b"\xee" * 4096)   # buffer untouched
    assert get(host, 1, e, A, 1) == (1, page(1))


def test_eempty_vs_0_and_gets_counter(host):
    e = new_pool(host, 1)
    pool = pool_of(host, 1, e)
    assert get(host, 1, e, A, 0)[0] == EEMPTY              # never had a page
    assert pool.gets == 0                                  # -EEMPTY is checked before gets++
    put(host, 1, e, A, 0, page(0))
    assert get(host, 1, e, B, 0)[0] == 0                   # object missing
    assert get(host, 1, e, A, 1)[0] == 0                   # index missing
    assert (pool.gets, pool.found_gets) == (2, 0)
    assert flush_page(host, 1, e, A, 0) == 1
    assert get(host, 1, e, A, 0)[0] == EEMPTY              # emptied again
    assert pool.gets == 2


BUFFERS = {
    "numpy": lambda b: np.frombuffer(b, np.uint8).copy(),
    "numpy-u32": lambda b: np.frombuffer(b, np.uint32).copy(),
    "numpy-2d": lambda b: np.frombuffer(b, np.uint8).reshape(64, 64).copy(),
    "memoryview": lambda b: memoryview(bytearray(b)),
    "array": lambda b: array.array("I", b),
}


@pytest.mark.parametrize("kind", sorted(BUFFERS))
def test_any_contiguous_4096_byte_buffer_is_a_guest_frame(host, kind):
    p = new_pool(host, 1, persist=True)
    assert put(host, 1, p, A, 0, BUFFERS[kind](page(7))) == 1
    buf = BUFFERS[kind](bytes(4096))
    assert call(host, 1, TmemOp(cmd=abi.TMEM_GET_PAGE, pool_id=p, oid=A, page=buf)) == 1
    assert memoryview(buf).cast("B").tobytes() == page(7)


# ================================================================================================
# Rule 4 — shared ephemeral and persistent gets are non-destructive; shared get → MRU
# ================================================================================================
def test_persistent_get_is_non_destructive_and_does_not_reorder(host):
    p = new_pool(host, 1, persist=True)
    for i in range(3):
        put(host, 1, p, A, i, page(i))
    pool = pool_of(host, 1, p)
    order = lru(pool.pers_list)
    assert order == [(A, 0), (A, 1), (A, 2)]
    for _ in range(3):
        assert get(host, 1, p, A, 0) == (1, page(0))
    assert lru(pool.pers_list) == order
    assert pool.pgp_count == 3 and host.eph_count == 0
    assert host.clients[1].succ_pers_gets == 3


def test_shared_get_is_non_destructive_and_moves_page_to_young_end(host):
    p1, p2 = shared_pair(host)
    for i, oid in enumerate((A, B, C)):
        assert put(host, 1, p1, oid, 0, page(i)) == 1
    owner = host.clients[1]
    assert lru(host.eph_list) == lru(owner.eph_list) == [(A, 0), (B, 0), (C, 0)]
    assert get(host, 1, p1, A, 0) == (1, page(0))
    assert lru(host.eph_list) == lru(owner.eph_list) == [(B, 0), (C, 0), (A, 0)]
    # a get by the other sharer refreshes too, on the global and on the *owner's* list
    assert get(host, 2, p2, B, 0) == (1, page(1))
    assert lru(host.eph_list) == lru(owner.eph_list) == [(C, 0), (A, 0), (B, 0)]
    assert lru(host.clients[2].eph_list) == []
    for _ in range(3):
        assert get(host, 2, p2, C, 0) == (1, page(2))
    assert pool_of(host, 1, p1).pgp_count == 3


def test_private_get_and_dup_put_do_not_reorder_the_others(host):
    e = new_pool(host, 1)
    for i in range(4):
        put(host, 1, e, A, i, page(i))
    assert get(host, 1, e, A, 1)[0] == 1
    assert lru(host.eph_list) == [(A, 0), (A, 2), (A, 3)]
    # facts §3.5 [CODE-READING]: a dup put leaves the LRU position unchanged
    assert put(host, 1, e, A, 0, page(100)) == 1
    assert lru(host.eph_list) == [(A, 0), (A, 2), (A, 3)]


# ================================================================================================
# Rule 6 — duplicate puts (§3.5)
# ================================================================================================
@pytest.mark.parametrize("persist", [False, True], ids=["ephemeral", "persistent"])
def test_dup_put_replaces(host, persist):
    p = new_pool(host, 1, persist=persist)
    assert put(host, 1, p, A, 0, page(1)) == 1
    frames, tot = host.global_page_count, host.mem.domains[1].tot_pages
    assert put(host, 1, p, A, 0, page(2)) == 1
    pool = pool_of(host, 1, p)
    assert (pool.dup_puts_replaced, pool.dup_puts_flushed, pool.good_puts, pool.puts) == (1, 0, 2, 2)
    assert host.global_page_count == frames and host.mem.domains[1].tot_pages == tot
    assert pool.pgp_count == 1
    assert get(host, 1, p, A, 0) == (1, page(2))
    line = [f for k, f in parse_list(host.list_stats(1)) if k == "P"][0]
    assert (line["pr"], line["pd"], line["ps"], line["pt"]) == ("1", "0", "2", "2")


@pytest.mark.parametrize("first,second", [(cpage, page), (page, cpage), (cpage, cpage)],
                         ids=["compressed->raw", "raw->compressed", "compressed->compressed"])
def test_dup_put_replaces_with_compression(first, second):
    h = Host(pages=1024, compress=True)
    h.create_domain(1, pages=8, max_pages=64)
    for persist in (False, True):
        p = new_pool(h, 1, persist=persist)
        assert put(h, 1, p, A, 0, first(1)) == 1
        assert put(h, 1, p, A, 0, second(2)) == 1
        assert get(h, 1, p, A, 0) == (1, second(2))


def _failed_dup_put_host(extra_page: bool):
    """A persistent pool whose domain is at max_pages with compression on: the first page is
    stored compressed (in the billed metadata frame), so re-storing an incompressible page needs
    a new billed frame, which max_pages forbids."""
    h = Host(pages=1024, compress=True)
    d = h.create_domain(1, pages=10, max_pages=11)
    p = new_pool(h, 1, persist=True)
    assert put(h, 1, p, A, 0, cpage(1)) == 1
    if extra_page:
        assert put(h, 1, p, A, 1, cpage(2)) == 1
    assert d.tot_pages == d.max_pages == 11               # one billed metadata frame
    assert pool_of(h, 1, p).pgp_count == (2 if extra_page else 1)
    return h, d, p


def test_failed_dup_put_is_enospc_and_old_data_is_gone():
    h, d, p = _failed_dup_put_host(extra_page=False)
    pool = pool_of(h, 1, p)
    assert put(h, 1, p, A, 0, page(2)) == ENOSPC
    assert (pool.dup_puts_flushed, pool.dup_puts_replaced) == (1, 0)
    assert pool.pgp_count == 0 and pool.obj_count == 0    # the object went with its only page
    assert get(h, 1, p, A, 0)[0] == EEMPTY                 # never the old data
    assert d.tot_pages == 10                               # metadata frame given back
    line = [f for k, f in parse_list(h.list_stats(1)) if k == "P"][0]
    assert line["pd"] == "1"


def test_failed_dup_put_keeps_the_objects_other_pages():
    h, d, p = _failed_dup_put_host(extra_page=True)
    assert put(h, 1, p, A, 0, page(2)) == ENOSPC
    assert get(h, 1, p, A, 0) == (0, b"\xee" * 4096)
    assert get(h, 1, p, A, 1) == (1, cpage(2))


@pytest.mark.parametrize("bad", [lambda: b"x" * 4095, lambda: None, released_view, closed_mmap,
                                 lambda: np.zeros(512, dtype="datetime64[s]")],
                         ids=["short", "none", "released-view", "closed-mmap", "datetime64"])
def test_dup_put_with_bad_frame_leaves_no_old_data(host, bad):
    """facts §3.5: a failed dup put removes the old page and returns the copy error
    (put-put-get coherency: a dup put may never fail leaving the old data readable)."""
    e = new_pool(host, 1)
    put(host, 1, e, A, 0, page(1))
    put(host, 1, e, A, 1, page(2))
    rc = put(host, 1, e, A, 0, bad())              # helpers.put also checks no lock is held
    assert rc == EFAULT
    assert get(host, 1, e, A, 0)[0] == 0                   # old data must not be readable


# ================================================================================================
# Rule 7 — flush (§3.7)
# ================================================================================================
def test_flush_page_returns_1_found_or_not(host):
    e = new_pool(host, 1)
    pool = pool_of(host, 1, e)
    assert flush_page(host, 1, e, A, 0) == 1               # empty pool
    put(host, 1, e, A, 0, page(0))
    put(host, 1, e, A, 1, page(1))
    assert flush_page(host, 1, e, A, 5) == 1               # missing index
    assert flush_page(host, 1, e, B, 0) == 1               # missing object
    assert flush_page(host, 1, e, A, 0) == 1               # found
    assert (pool.flushs, pool.flushs_found) == (4, 1)
    assert get(host, 1, e, A, 0)[0] == 0
    assert pool.obj_count == 1                             # A still holds index 1
    assert flush_page(host, 1, e, A, 1) == 1
    assert pool.obj_count == 0 and pool.find(A) is None    # object went with its last page
    assert get(host, 1, e, A, 1)[0] == EEMPTY


def test_flush_object_returns_1_found_or_not(host):
    p = new_pool(host, 1, persist=True)
    pool = pool_of(host, 1, p)
    for i in range(0, 300, 7):                             # a few radix-tree nodes
        put(host, 1, p, A, i, page(i))
    put(host, 1, p, B, 0, page(1000))
    tot = host.mem.domains[1].tot_pages
    assert flush_object(host, 1, p, A) == 1
    assert flush_object(host, 1, p, A) == 1
    assert flush_object(host, 1, p, C) == 1
    assert (pool.flush_objs, pool.flush_objs_found) == (3, 1)
    assert pool.obj_count == 1 and pool.find(A) is None and pool.objnode_count == 0
    assert get(host, 1, p, A, 7)[0] == 0
    assert get(host, 1, p, B, 0) == (1, page(1000))
    assert host.global_page_count == 1                     # only B's data frame is left
    assert tot - host.mem.domains[1].tot_pages >= 43       # 43 data frames un-billed
    assert put(host, 1, p, A, 7, page(5)) == 1             # the handle is reusable


def test_object_vanishes_when_exclusive_get_takes_last_page(host):
    e = new_pool(host, 1)
    put(host, 1, e, A, 0, page(0))
    put(host, 1, e, B, 0, page(1))
    assert get(host, 1, e, A, 0)[0] == 1
    pool = pool_of(host, 1, e)
    assert pool.find(A) is None and pool.obj_count == 1 and host.global_obj_count == 1


# ================================================================================================
# Rule 8 — freeze (§3.8, §8.1)
# ================================================================================================
@pytest.mark.parametrize("persist", [False, True], ids=["ephemeral", "persistent"])
def test_freeze_semantics(host, persist):
    p = new_pool(host, 1, persist=persist)
    put(host, 1, p, A, 0, page(0))
    put(host, 1, p, A, 1, page(1))
    put(host, 1, p, B, 0, page(2))
    put(host, 1, p, C, 0, page(3))
    assert control(host, abi.TMEMC_FREEZE, cli_id=1) == 0
    assert host.clients[1].frozen
    pool = pool_of(host, 1, p)
    before = snapshot(host)
    puts, nomem = pool.puts, pool.no_mem_puts
    assert put(host, 1, p, A, 2, page(9)) == EFROZEN       # new page, object exists
    assert pool.no_mem_puts == nomem + 1                   # §3.4: counted as px
    assert put(host, 1, p, (9, 9, 9), 0, page(9)) == EFROZEN   # new object
    assert pool.no_mem_puts == nomem + 1                   # §3.4: returns before counting
    assert pool.puts == puts + 2                           # §3.4: puts++ always
    assert snapshot(host) == before
    assert put(host, 1, p, A, 0, page(50)) == 1            # dup put works
    assert get(host, 1, p, A, 0) == (1, page(50))          # get works
    assert flush_page(host, 1, p, A, 1) == EFROZEN         # performed, but -EFROZEN
    assert get(host, 1, p, A, 1)[0] == 0
    assert flush_page(host, 1, p, A, 7) == EFROZEN         # not found: still -EFROZEN
    assert flush_object(host, 1, p, B) == EFROZEN
    assert pool.find(B) is None
    assert flush_object(host, 1, p, B) == EFROZEN
    assert [f["fr"] for k, f in parse_list(host.list_stats(1)) if k == "C"] == ["1"]
    assert control(host, abi.TMEMC_THAW, cli_id=1) == 0
    assert put(host, 1, p, A, 2, page(9)) == 1
    assert flush_page(host, 1, p, A, 2) == 1
    assert get(host, 1, p, C, 0) == (1, page(3))


def test_freeze_all_and_unknown_client(host):
    new_pool(host, 1)
    new_pool(host, 2)
    assert control(host, abi.TMEMC_FREEZE, cli_id=ALL) == 0
    assert put(host, 1, 0, A, 0, page(0)) == EFROZEN
    assert put(host, 2, 0, A, 0, page(0)) == EFROZEN
    assert control(host, abi.TMEMC_THAW, cli_id=ALL) == 0
    assert put(host, 1, 0, A, 0, page(0)) == 1
    assert put(host, 2, 0, A, 0, page(0)) == 1
    host.create_domain(3)                                  # a domain without a client
    assert control(host, abi.TMEMC_FREEZE, cli_id=3) == -1
    assert control(host, abi.TMEMC_THAW, cli_id=77) == -1


def test_tmemc_destroy_only_thaws(host):
    # facts §8.1 [CODE-READING]: DESTROY prints "destroyed" and sets frozen = 0
    p = new_pool(host, 1, persist=True)
    e = new_pool(host, 1)
    put(host, 1, p, A, 0, page(0))
    put(host, 1, e, A, 0, page(1))
    control(host, abi.TMEMC_FREEZE, cli_id=1)
    before = snapshot(host)
    assert control(host, abi.TMEMC_DESTROY, cli_id=1) == 0
    after = snapshot(host)
    assert diff(before, after) == ["clients[1]"]
    assert after["clients"][1] == dict(before["clients"][1], frozen=False)
    assert put(host, 1, p, A, 1, page(2)) == 1
    assert get(host, 1, p, A, 0) == (1, page(0))
    assert get(host, 1, e, A, 0) == (1, page(1))


def test_frozen_is_the_pool_owners_state(host):
    # facts §3.4: "frozen" is the pool owner's client, whoever calls
    p1, p2 = shared_pair(host)
    control(host, abi.TMEMC_FREEZE, cli_id=1)
    assert put(host, 2, p2, A, 0, page(0)) == EFROZEN
    control(host, abi.TMEMC_THAW, cli_id=1)
    control(host, abi.TMEMC_FREEZE, cli_id=2)
    assert put(host, 2, p2, A, 0, page(0)) == 1


# ================================================================================================
# Rule 9 — eviction order (§4.1, §4.2)
# ================================================================================================
def small_host(**kw):
    """A host barely above the 1 MB guard (256 free frames), so pressure comes quickly."""
    h = Host(pages=300, **kw)
    h.create_domain(1, pages=0, max_pages=1000)
    h.create_domain(2, pages=0, max_pages=1000)
    return h


def test_eviction_takes_oldest_first_across_clients():
    h = small_host()
    e1, e2 = new_pool(h, 1), new_pool(h, 2)
    order = []                                             # global put order
    n = 0
    while h.evicted_pgs < 6:
        dom, pid = (1, e1) if n % 2 == 0 else (2, e2)
        assert put(h, dom, pid, (n % 5, 0, 0), n, page(n)) == 1
        order.append((dom, (n % 5, 0, 0), n))
        n += 1
        assert n < 400, "no eviction happened"
    k = h.evicted_pgs
    survivors = {(1, key) for key in stored(h, pool_of(h, 1, e1))} | \
                {(2, key) for key in stored(h, pool_of(h, 2, e2))}
    assert survivors == {(d, (o, i)) for d, o, i in order[k:]}
    assert lru(h.eph_list) == [(o, i) for _, o, i in order[k:]]


def test_shared_get_refreshes_against_eviction():
    h = small_host()
    assert auth(h, 1, UUID) == 1
    s = new_pool(h, 1, shared=True, uuid=UUID)
    for i in range(10):
        put(h, 1, s, A, i, page(i))
    assert get(h, 1, s, A, 0)[0] == 1                      # page 0 becomes the youngest
    n = 10
    while h.evicted_pgs < 3:
        put(h, 1, s, A, n, page(n))
        n += 1
    k = h.evicted_pgs
    assert set(stored(h, pool_of(h, 1, s))) == {(A, 0)} | {(A, i) for i in range(k + 1, n)}


def test_persistent_pages_are_never_evicted():
    h = small_host()
    p, e = new_pool(h, 1, persist=True), new_pool(h, 1)
    for i in range(10):
        assert put(h, 1, p, A, i, page(i)) == 1
    for i in range(60):
        assert put(h, 1, e, B, i, page(100 + i)) == 1
    assert h.evicted_pgs > 0
    i = 10
    while True:                                            # persistent pressure: eph pages go
        rc = put(h, 1, p, A, i, page(i))
        if rc != 1:
            break
        i += 1
    assert rc == ENOMEM
    assert h.eph_count == 0                                # every ephemeral page was evicted
    assert stored(h, pool_of(h, 1, p)) == {(A, j): page(j) for j in range(i)}


def test_tmem_evict_on_empty_list_returns_0(host):
    p = new_pool(host, 1, persist=True)
    put(host, 1, p, A, 0, page(0))
    attempts = host.evict_attempts
    assert tmem_evict(host, None) == 0
    assert host.evict_attempts == attempts + 1
    host.check()


# ================================================================================================
# Rule 10 — eviction skips (§4.2, tmem_try_to_evict_pgp)
# ================================================================================================
def _two_objects(host, pools=1):
    """A (oldest) and B, one page each (so each is its object's last page)."""
    e1 = new_pool(host, 1)
    e2 = new_pool(host, 1) if pools == 2 else e1
    put(host, 1, e1, A, 0, page(0))
    put(host, 1, e2, B, 0, page(1))
    return pool_of(host, 1, e1), pool_of(host, 1, e2)


def _evict(host, client=None):
    skips = []
    rc = tmem_evict(host, client, trace=lambda pgp, why: skips.append(
        ((tuple(pgp.obj.oid), pgp.index), why)))
    return rc, skips


def test_evict_skips_page_whose_object_lock_another_thread_holds(host):
    pa, _ = _two_objects(host)
    obj = pa.find(A)
    held, done = threading.Event(), threading.Event()

    def holder():
        obj.lock.acquire()
        held.set()
        done.wait(10)
        obj.lock.release()

    t = threading.Thread(target=holder)
    t.start()
    try:
        assert held.wait(10)
        rc, skips = _evict(host)
    finally:
        done.set()
        t.join(10)
    assert rc == 1
    assert skips == [((A, 0), ev.SKIP_OBJ_BUSY)]
    host.check()
    assert lru(host.eph_list) == [(A, 0)]                  # B went, A stayed
    assert _evict(host) == (1, [])                         # lock free now: A goes
    host.check()


def test_evict_skips_dying_pool(host):
    pa, pb = _two_objects(host, pools=2)
    pa.is_dying = True
    try:
        rc, skips = _evict(host)
    finally:
        pa.is_dying = False
    assert rc == 1 and skips == [((A, 0), ev.SKIP_DYING)]
    host.check()
    assert set(stored(host, pa)) == {(A, 0)} and stored(host, pb) == {}


def test_evict_skips_last_page_when_pool_lock_busy(host):
    pa, pb = _two_objects(host, pools=2)
    pa.lock.read_lock()                                    # someone is looking up in pool A
    try:
        rc, skips = _evict(host)
    finally:
        pa.lock.read_unlock()
    assert rc == 1 and skips == [((A, 0), ev.SKIP_POOL_BUSY)]
    host.check()
    assert set(stored(host, pa)) == {(A, 0)} and stored(host, pb) == {}


def test_evict_takes_non_last_page_even_when_pool_lock_busy(host):
    e = new_pool(host, 1)
    put(host, 1, e, A, 0, page(0))
    put(host, 1, e, A, 1, page(1))
    pool = pool_of(host, 1, e)
    pool.lock.read_lock()
    try:
        rc, skips = _evict(host)
    finally:
        pool.lock.read_unlock()
    assert (rc, skips) == (1, [])
    host.check()
    assert set(stored(host, pool)) == {(A, 1)}


def test_evict_when_everything_is_skipped_changes_nothing(host):
    pa, pb = _two_objects(host, pools=2)
    objs = [pa.find(A), pb.find(B)]
    before = snapshot(host)
    for o in objs:
        o.lock.acquire()
    try:
        rc, skips = _evict(host)
    finally:
        for o in objs:
            o.lock.release()
    assert rc == 0
    assert skips == [((A, 0), ev.SKIP_OBJ_BUSY), ((B, 0), ev.SKIP_OBJ_BUSY)]
    assert snapshot(host) == before
    host.check()


# ================================================================================================
# Rule 11 — quota (§4.3)
# ================================================================================================
class _H:
    def __init__(self, g, total, rule):
        self.eph_count, self.client_weight_total, self.quota_rule = g, total, rule


class _C:
    def __init__(self, c, w):
        self.eph_count, self.weight = c, w


# (g global eph pages, c client's, T total weight, w client weight, doc rule, Xen's code)
# doc: c/g > w/T  <=>  c*T > g*w        Xen: g*100//c > T*100//w
QUOTA_CASES = [
    (8, 6, 4, 1, True, False),      # doc 24 > 8;   xen 133 > 400 no
    (8, 2, 4, 3, False, True),      # doc 8 > 24 no; xen 400 > 133
    (10, 3, 10, 3, False, False),   # equal shares: 30 > 30 no; 333 > 333 no
    (10, 5, 2, 1, False, False),    # equal shares: 10 > 10 no; 200 > 200 no
    (25001, 250, 100, 1, False, False),  # exact g/c 100.004 > T/w 100, but 10000 > 10000 no
    (100, 1, 100, 2, False, True),  # doc 100 > 200 no; xen 10000 > 5000
    (100, 90, 10, 5, True, False),  # doc 900 > 500; xen 111 > 200 no
    (8, 6, 0, 0, False, False),     # no weights anywhere
    (8, 6, 4, 0, False, False),     # this client has weight 0
    (8, 0, 4, 1, False, False),     # this client holds no ephemeral page
]


@pytest.mark.parametrize("g,c,T,w,doc,xen", QUOTA_CASES)
def test_client_over_quota_formula(g, c, T, w, doc, xen):
    assert client_over_quota(_H(g, T, "doc"), _C(c, w)) is doc
    assert client_over_quota(_H(g, T, "xen"), _C(c, w)) is xen


def _quota_host(rule):
    """dom2's q0 (global oldest), dom1's p0..p5, dom2's q1; weights dom1=1, dom2=3.
    g=8, c1=6, c2=2, T=4: doc rule says dom1 over quota (6*4 > 8*1), dom2 not (2*4 > 8*3 no);
    Xen's code says dom1 not (800//6=133 > 400 no), dom2 over (800//2=400 > 400//3=133)."""
    h = Host(pages=1024, quota_rule=rule)
    h.create_domain(1)
    h.create_domain(2)
    e1, e2 = new_pool(h, 1), new_pool(h, 2)
    put(h, 2, e2, (20, 0, 0), 0, page(20))
    for i in range(6):
        put(h, 1, e1, (10 + i, 0, 0), 0, page(i))
    put(h, 2, e2, (21, 0, 0), 0, page(21))
    assert control(h, abi.TMEMC_SET_WEIGHT, cli_id=1, arg1=1) == 0
    assert control(h, abi.TMEMC_SET_WEIGHT, cli_id=2, arg1=3) == 0
    assert h.client_weight_total == 4
    return h


@pytest.mark.parametrize("rule,over1,over2,victim", [
    ("doc", True, False, ((10, 0, 0), 0)),     # dom1 evicts from its own list
    ("xen", False, True, ((20, 0, 0), 0)),     # dom1 evicts from the global list
])
def test_quota_chooses_the_list(rule, over1, over2, victim):
    h = _quota_host(rule)
    c1, c2 = h.clients[1], h.clients[2]
    assert client_over_quota(h, c1) is over1
    assert client_over_quota(h, c2) is over2
    before = set(lru(h.eph_list))
    assert tmem_evict(h, c1) == 1
    h.check()
    assert before - set(lru(h.eph_list)) == {victim}


def test_weight_zero_means_global_lru():
    h = _quota_host("doc")
    control(h, abi.TMEMC_SET_WEIGHT, cli_id=1, arg1=0)
    assert h.client_weight_total == 3
    assert not client_over_quota(h, h.clients[1])
    assert tmem_evict(h, h.clients[1]) == 1
    h.check()
    assert ((20, 0, 0), 0) not in lru(h.eph_list)          # the global oldest went


def test_over_quota_client_list_has_no_fallback_to_global():
    # facts §4.2: "If the client-list scan finds nothing, no fallback to the global list"
    h = _quota_host("doc")
    c1 = h.clients[1]
    assert client_over_quota(h, c1)
    objs = [p.obj for p in list_owners(c1.eph_list)]
    before = snapshot(h)
    for o in objs:
        o.lock.acquire()
    try:
        rc = tmem_evict(h, c1)
    finally:
        for o in objs:
            o.lock.release()
    assert rc == 0
    assert snapshot(h) == before


@pytest.mark.parametrize("rule,q0_survives", [("doc", True), ("xen", False)])
def test_quota_applies_to_the_putting_client(rule, q0_survives):
    """End to end: under memory pressure the *putting* client's quota picks the list."""
    h = small_host(quota_rule=rule)
    e1, e2 = new_pool(h, 1), new_pool(h, 2)
    put(h, 2, e2, B, 0, page(0))
    put(h, 2, e2, B, 1, page(1))
    control(h, abi.TMEMC_SET_WEIGHT, cli_id=1, arg1=1)
    control(h, abi.TMEMC_SET_WEIGHT, cli_id=2, arg1=3)
    n = 0
    while h.evicted_pgs < 3:
        assert put(h, 1, e1, A, n, page(100 + n)) == 1
        n += 1
    assert ((B, 0) in stored(h, pool_of(h, 2, e2))) is q0_survives


# ================================================================================================
# Rule 12 — persistent pages are billed (§6)
# ================================================================================================
def test_persistent_puts_are_billed_and_fail_at_max_pages():
    h = Host(pages=1024)
    d = h.create_domain(1, pages=10, max_pages=20)
    p = new_pool(h, 1, persist=True)
    assert d.tot_pages == 10                               # the metadata pool is taken lazily
    assert put(h, 1, p, A, 0, page(0)) == 1
    assert d.tot_pages == 12                               # metadata frame + data frame
    i = 1
    while d.tot_pages < d.max_pages:
        assert put(h, 1, p, A, i, page(i)) == 1
        i += 1
    assert i == 9                                          # 10 billed frames: 1 metadata + 9 data
    before = snapshot(h)
    assert put(h, 1, p, A, i, page(i)) == ENOMEM
    assert put(h, 1, p, B, 0, page(i)) == ENOMEM           # new object: no room for it either
    assert snapshot(h) == before
    assert pool_of(h, 1, p).no_mem_puts == 2
    # ephemeral puts are not limited by the domain's allocation, and are not billed
    e = new_pool(h, 1)
    for j in range(20):
        assert put(h, 1, e, A, j, page(j)) == 1
    assert d.tot_pages == 20
    # flushing gives the billing back
    assert flush_object(h, 1, p, A) == 1
    assert d.tot_pages == 10
    assert put(h, 1, p, A, 0, page(0)) == 1


# ================================================================================================
# Rule 13 — the 1 MB guard (§4.4)
# ================================================================================================
def test_one_mb_guard_without_evictable_pages():
    h = Host(pages=300)
    h.create_domain(1, pages=40, max_pages=1000)
    p = new_pool(h, 1, persist=True)
    pool = pool_of(h, 1, p)
    i = 0
    while True:
        free = h.mem.guard_pages()        # tmem_page_list + heap beyond the reserve (§4.5)
        attempts, puts = h.evict_attempts, pool.puts
        before = snapshot(h)
        rc = put(h, 1, p, A, i, page(i))
        if free >= 256:
            assert rc == 1, f"put {i} refused with {free} frames free"
            i += 1
            continue
        assert rc == ENOMEM                                # < 1 MB free, nothing evictable
        assert h.evict_attempts == attempts + 10           # the budget of 10 failed evictions
        # §3.1 step 11: refused before do_tmem_put, so the pool counts no put at all
        assert (pool.puts, pool.no_mem_puts) == (puts, 0)
        assert snapshot(h) == before
        break
    assert i >= 1


def test_one_mb_guard_evicts_to_make_room():
    h = Host(pages=304)                                    # 2 frames of reserve (1/128)
    h.create_domain(1, pages=40, max_pages=1000)
    e, p = new_pool(h, 1), new_pool(h, 1, persist=True)
    for i in range(3):
        put(h, 1, e, B, i, page(50 + i))
    i = 0
    while h.mem.guard_pages() >= 256:   # the heap's reserve (§4.5) does not count
        assert put(h, 1, p, A, i, page(i)) == 1
        i += 1
    free = h.mem.guard_pages()
    assert h.evicted_pgs == 0 and 256 - free in (1, 2)
    assert put(h, 1, p, A, i, page(i)) == 1                # below 1 MB: the oldest eph pages go
    # each eviction frees one data frame (B keeps a page, so its metadata stays): the guard
    # evicts exactly the shortfall, oldest first
    k = 256 - free
    assert h.evicted_pgs == k
    assert set(stored(h, pool_of(h, 1, e))) == {(B, j) for j in range(k, 3)}


# ================================================================================================
# Rule 14 — shared pools (§3.2, §3.3)
# ================================================================================================
def test_shared_pool_needs_auth_else_silently_private(host):
    pid = new_pool(host, 1, shared=True, uuid=UUID)
    assert pid == 0
    pool = pool_of(host, 1, pid)
    assert not pool.shared and host.shared_pools == [None] * 16
    q = new_pool(host, 2, shared=True, uuid=UUID)
    assert pool_of(host, 2, q) is not pool                 # two private pools
    put(host, 1, pid, A, 0, page(0))
    assert get(host, 2, q, A, 0)[0] == EEMPTY
    kinds = {f["PT"] for k, f in parse_list(host.list_stats()) if k == "P"}
    assert kinds == {"EP"}


def test_unauthorised_client_cannot_join_an_existing_shared_pool(host):
    assert auth(host, 1, UUID) == 1
    s = new_pool(host, 1, shared=True, uuid=UUID)
    put(host, 1, s, A, 0, page(0))
    q = new_pool(host, 2, shared=True, uuid=UUID)          # dom2 not authorised
    pool = pool_of(host, 1, s)
    assert pool.shared and pool_of(host, 2, q) is not pool
    assert [c.cli_id for c in pool.share_list] == [1]
    assert get(host, 2, q, A, 0)[0] == EEMPTY              # cannot read dom1's shared data


def test_shared_pool_same_uuid_same_pool_own_slots(host):
    p1, p2 = shared_pair(host)
    pool = pool_of(host, 1, p1)
    assert pool is pool_of(host, 2, p2) and pool.shared
    assert host.shared_pools.count(pool) == 1
    assert [c.cli_id for c in pool.share_list] == [1, 2]
    assert put(host, 1, p1, A, 0, page(0)) == 1
    assert get(host, 2, p2, A, 0) == (1, page(0))
    assert put(host, 2, p2, A, 1, page(1)) == 1
    assert get(host, 1, p1, A, 1) == (1, page(1))
    s_lines = [f for k, f in parse_list(host.list_stats()) if k == "S"]
    assert len(s_lines) == 1 and s_lines[0]["PT"] == "ES"
    # a different uuid is a different pool
    assert auth(host, 2, (7, 7)) == 1
    q = new_pool(host, 2, shared=True, uuid=(7, 7))
    assert pool_of(host, 2, q) is not pool


def test_same_client_joins_a_shared_pool_twice(host):
    """facts §3.2 step 3: a matching uuid puts the existing pool in the caller's (next free)
    slot and the caller joins its sharelist — nothing stops a client doing so twice (two
    cleancache mounts of one filesystem uuid). Each slot is a reference: destroying one keeps
    the pool reachable through the other."""
    assert auth(host, 1, UUID) == 1
    assert new_pool(host, 1, shared=True, uuid=UUID) == 0
    assert new_pool(host, 1, shared=True, uuid=UUID) == 1
    pool = pool_of(host, 1, 0)
    assert pool_of(host, 1, 1) is pool
    assert put(host, 1, 0, A, 0, page(0)) == 1
    assert get(host, 1, 1, A, 0) == (1, page(0))
    assert destroy_pool(host, 1, 1) == 1
    assert host.shared_pools.count(pool) == 1
    assert put(host, 1, 0, B, 0, page(1)) == 1
    assert get(host, 1, 0, B, 0) == (1, page(1))
    assert destroy_pool(host, 1, 0) == 1
    assert host.shared_pools == [None] * 16 and host.global_pgp_count == 0


def test_shared_pool_uuid_all_ones_is_private(host):
    uuid = (U64, U64)
    assert auth(host, 1, uuid) == 1
    assert auth(host, 2, uuid) == 1
    a = new_pool(host, 1, shared=True, uuid=uuid)
    b = new_pool(host, 2, shared=True, uuid=uuid)
    assert not pool_of(host, 1, a).shared and not pool_of(host, 2, b).shared
    assert pool_of(host, 1, a) is not pool_of(host, 2, b)


def test_auth_revoke_and_global_auth(host):
    assert auth(host, 1, UUID, on=1) == 1
    assert auth(host, 1, UUID, on=1) == 1                  # already there: 1, no duplicate
    assert host.clients[1].shared_auth_uuid.count(UUID) == 1
    assert auth(host, 1, UUID, on=0) == 1                  # revoked
    assert auth(host, 1, UUID, on=0) == 0                  # nothing to revoke
    assert not pool_of(host, 1, new_pool(host, 1, shared=True, uuid=UUID)).shared
    assert auth(host, ALL, (0, 0), on=1) == 1              # everyone authorised
    assert pool_of(host, 2, new_pool(host, 2, shared=True, uuid=UUID)).shared


def test_auth_slots_are_limited_to_16(host):
    for i in range(16):
        assert auth(host, 1, (i, 1)) == 1
    assert auth(host, 1, (99, 1)) == ENOMEM


def test_shared_auth_off_lets_anyone_join():
    h = Host(pages=1024, shared_auth=False)
    h.create_domain(1)
    h.create_domain(2)
    a = new_pool(h, 1, shared=True, uuid=UUID)
    b = new_pool(h, 2, shared=True, uuid=UUID)
    assert pool_of(h, 1, a) is pool_of(h, 2, b)


def test_17th_global_shared_pool_is_eperm(host):
    assert auth(host, ALL, (0, 0)) == 1
    assert destroy_pool(host, 2, 0) == 0                  # dom2's client exists before the snapshot
    for i in range(16):
        assert new_pool(host, 1, shared=True, uuid=(i + 1, 0)) == i
    before = snapshot(host)
    assert new_pool(host, 2, shared=True, uuid=(100, 0)) == EPERM
    assert snapshot(host) == before
    assert new_pool(host, 2, shared=True, uuid=(5, 0)) == 0     # joining an existing one works


def test_last_sharer_destroy_frees_shared_pool(host):
    p1, p2 = shared_pair(host)
    pool = pool_of(host, 1, p1)
    for i in range(4):
        put(host, 2, p2, A, i, page(i))
    assert destroy_pool(host, 2, p2) == 1                  # dom2 quits; its objects go
    assert host.shared_pools.count(pool) == 1 and [c.cli_id for c in pool.share_list] == [1]
    put(host, 1, p1, B, 0, page(9))
    assert destroy_pool(host, 1, p1) == 1                  # last sharer
    assert host.shared_pools == [None] * 16
    assert host.global_pgp_count == host.global_page_count == host.eph_count == 0
    assert host.mem.freeable_page_count == 0
    assert destroy_pool(host, 1, p1) == 0


def test_sharer_destroy_removes_only_objects_it_touched_last(host):
    # "touched" = put or get by that sharer (the model records the caller on puts too; Xen's
    # code recorded the pool owner on puts, facts §3.4 [CODE-READING])
    p1, p2 = shared_pair(host)
    pool = pool_of(host, 1, p1)
    put(host, 1, p1, A, 0, page(0))          # last touched: 1
    put(host, 2, p2, B, 0, page(1))          # last touched: 2
    put(host, 2, p2, C, 0, page(2))
    assert get(host, 1, p1, C, 0)[0] == 1    # C last touched by 1 now
    put(host, 1, p1, (4, 0, 0), 0, page(3))
    assert get(host, 2, p2, (4, 0, 0), 0)[0] == 1    # last touched by 2
    assert destroy_pool(host, 2, p2) == 1
    assert set(stored(host, pool)) == {(A, 0), (C, 0)}
    assert pool.client is host.clients[1] and host.clients[2].pools[p2] is None


def test_owner_leaving_reassigns_ownership(host):
    p1, p2 = shared_pair(host)
    pool = pool_of(host, 1, p1)
    put(host, 1, 0, A, 0, page(100))                       # dom1's private page
    for i in range(3):
        put(host, 1, p1, (10 + i, 0, 0), 0, page(i))
        assert get(host, 2, p2, (10 + i, 0, 0), 0)[0] == 1  # dom2 touched them last
    put(host, 1, p1, B, 0, page(50))                       # dom1 touched last: goes with dom1
    assert destroy_pool(host, 1, p1) == 1
    assert pool.client is host.clients[2] and pool.pool_id == p2
    assert [c.cli_id for c in pool.share_list] == [2]
    assert set(stored(host, pool)) == {((10 + i, 0, 0), 0) for i in range(3)}
    # the pool's pages are now on the new owner's list; dom1 keeps its private page (Xen's code
    # moved the old owner's whole list, facts §3.3 [CODE-READING]; the model moves this pool's)
    assert sorted(lru(host.clients[2].eph_list)) == [((10 + i, 0, 0), 0) for i in range(3)]
    assert lru(host.clients[1].eph_list) == [(A, 0)]
    # and the new owner's frozen state now governs the pool
    control(host, abi.TMEMC_FREEZE, cli_id=2)
    assert put(host, 2, p2, C, 0, page(1)) == EFROZEN


def test_owner_domain_death_reassigns_shared_pool(host):
    p1, p2 = shared_pair(host)
    pool = pool_of(host, 1, p1)
    put(host, 2, p2, A, 0, page(0))
    put(host, 1, p1, B, 0, page(1))
    host.destroy_domain(1)
    host.check()
    assert pool.client is host.clients[2]
    assert get(host, 2, p2, A, 0) == (1, page(0))
    assert get(host, 2, p2, B, 0)[0] == 0


# ================================================================================================
# Rule 15 — LIST and QUERY_FREEABLE_MB (§8.2, §6)
# ================================================================================================
def test_list_counters_follow_operations(host):
    e = new_pool(host, 1)
    p = new_pool(host, 1, persist=True)
    put(host, 1, e, A, 0, page(0))
    put(host, 1, e, A, 1, page(1))
    put(host, 1, e, A, 1, page(2))           # dup put, replaced
    get(host, 1, e, A, 0)                    # found (and removed)
    get(host, 1, e, B, 0)                    # missing
    flush_page(host, 1, e, A, 1)             # found
    flush_page(host, 1, e, A, 9)             # missing
    flush_object(host, 1, e, C)              # missing
    put(host, 1, e, C, 0, page(3))
    put(host, 1, p, A, 0, page(4))
    get(host, 1, p, A, 0)
    lines = parse_list(host.list_stats())
    kinds = [k for k, _ in lines]
    assert kinds[0] == "G" and set(kinds) <= {"G", "S", "C", "P", "T"}
    assert kinds.count("C") == 1          # only dom1 has a client (dom0's control ops make none)
    pools = {f["PI"]: f for k, f in lines if k == "P" and f["CI"] == "1"}
    pe = pools[str(e)]
    assert (pe["pt"], pe["ps"], pe["pr"], pe["pd"], pe["px"]) == ("4", "4", "1", "0", "0")
    assert (pe["gt"], pe["gs"], pe["ft"], pe["fs"], pe["ot"], pe["os"]) == \
        ("2", "1", "2", "1", "1", "0")
    assert (pe["Pc"], pe["Oc"], pe["PT"]) == ("1", "1", "EP")
    pp = pools[str(p)]
    assert (pp["pt"], pp["ps"], pp["gt"], pp["gs"], pp["PT"]) == ("1", "1", "1", "1", "PP")
    for f in pools.values():
        for tot, ok in (("pt", "ps"), ("gt", "gs"), ("ft", "fs"), ("ot", "os")):
            assert int(f[tot]) >= int(f[ok])
    g = lines[0][1]
    assert g["Ec"] == "1"                                  # one ephemeral page (C, 0)
    c1 = [f for k, f in lines if k == "C" and f["CI"] == "1"][0]
    assert (c1["Ec"], c1["Pp"], c1["Gp"], c1["Ge"]) == ("1", "1", "1", "1")
    # the control op writes the same text into a guest buffer
    buf = bytearray(32768)
    assert control(host, abi.TMEMC_LIST, cli_id=ALL, arg1=len(buf), arg2=1, buf=buf) == 0
    assert bytes(buf).split(b"\0")[0].decode() == host.list_stats()
    assert control(host, abi.TMEMC_LIST, cli_id=9, arg1=len(buf), arg2=1, buf=buf) == -1


def test_list_one_client_has_only_its_lines(host):
    new_pool(host, 1)
    new_pool(host, 2)
    kinds = [(k, f.get("CI")) for k, f in parse_list(host.list_stats(2))]
    assert kinds == [("C", "2"), ("P", "2")]


def test_query_freeable_mb():
    h = Host(pages=700)
    h.create_domain(1)
    e = new_pool(h, 1)
    for i in range(280):
        put(h, 1, e, A, i, page(i))
    for i in range(0, 40, 2):
        flush_page(h, 1, e, A, i)                          # frames onto tmem_page_list
    # freeable = tmem_page_list + ephemeral (anonymous) frames, data and metadata alike
    freeable = len(h.mem.page_list) + h.mem.freeable_page_count
    assert len(h.mem.page_list) >= 20 and h.mem.freeable_page_count >= 260
    assert freeable >= 280
    assert control(h, abi.TMEMC_QUERY_FREEABLE_MB) == freeable >> 8 == 1
    assert h.freeable_pages() == freeable


# ================================================================================================
# Domain death and scrubbing (§3.9, §4.5)
# ================================================================================================
def test_destroy_domain_frees_everything_and_unbills(host):
    d1 = host.mem.domains[1]
    e, p = new_pool(host, 1), new_pool(host, 1, persist=True)
    for i in range(20):
        put(host, 1, e, A, i, page(i))
        put(host, 1, p, B, i, page(100 + i))
    e2 = new_pool(host, 2)
    put(host, 2, e2, C, 0, page(7))
    control(host, abi.TMEMC_SET_WEIGHT, cli_id=1, arg1=5)
    host.destroy_domain(1)
    host.check()
    assert 1 not in host.clients and 1 not in host.mem.domains
    assert d1.tot_pages == 0
    assert host.client_weight_total == 0
    assert host.global_pgp_count == host.eph_count == host.global_page_count == 1
    assert not np.any(host.mem.owner == 1)
    assert stored(host, pool_of(host, 2, e2)) == {(C, 0): page(7)}
    with pytest.raises(ValueError):
        host.do_tmem_op(1, TmemOp(cmd=abi.TMEM_NEW_POOL, flags=abi.pool_flags()))


def test_heap_frames_are_scrubbed_and_new_domains_never_see_old_bytes():
    h = Host(pages=1024)
    h.create_domain(1, pages=100, max_pages=600)
    h.create_domain(2)
    h.mem.data[h.mem.domains[1].own_frames] = 0xAB         # the guest's own memory
    p = new_pool(h, 1, persist=True)
    e1 = new_pool(h, 1)
    e2 = new_pool(h, 2)
    for i in range(60):
        put(h, 1, p, B, i, b"\xef" * 4096)
        put(h, 1, e1, B, i, b"\xcd" * 4096)
    for i in range(80):
        put(h, 2, e2, A, i, b"\xcd" * 4096)
    for i in range(30):
        flush_page(h, 1, p, B, i)                          # stale frames on tmem_page_list
    h.destroy_domain(1)
    h.check()
    assert not h.mem.data[h.mem.heap].any()                # every heap frame is zero
    # tmem's free list keeps stale bytes (only tmem reuses a frame, overwriting it whole),
    # so a domain asking for more than the heap holds gets frames tmem relinquishes, scrubbed,
    # evicting dom2's ephemeral pages to find them
    assert len(h.mem.page_list) > 0 and h.mem.data[h.mem.page_list].any()
    want = len(h.mem.heap) + len(h.mem.page_list) + 50
    d = h.create_domain(3, pages=want)
    h.check()
    assert h.relinq_pgs > 0 and h.evicted_pgs > 0
    assert len(d.own_frames) == want
    assert not h.mem.data[d.own_frames].any()
    # a TMEMC_FLUSH hands the page list to the heap, scrubbed
    h2 = Host(pages=1024)
    h2.create_domain(1)
    e = new_pool(h2, 1)
    for i in range(50):
        put(h2, 1, e, A, i, b"\x77" * 4096)
    assert control(h2, abi.TMEMC_FLUSH, cli_id=ALL, arg1=40 * 4) == 40 * 4
    assert len(h2.mem.page_list) == 0 and not h2.mem.data[h2.mem.heap].any()
    assert control(h2, abi.TMEMC_FLUSH, cli_id=1, arg1=4) == -1   # one client: not supported
