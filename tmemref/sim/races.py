"""Xen: tmem's races — the scenarios the explorer (:mod:`.explore`) runs, by name.

Each scenario builds a small host, then gives two simulated CPUs a few hypercalls each
(:mod:`.sched` interleaves them). Real-code scenarios must come out clean; each *buggy variant*
keeps one bug on purpose — the smallest piece of the engine done wrong — so the explorer has
something to find:

================== ====================================================== ==================
name               what runs                                              verdict
================== ====================================================== ==================
naive-evict        eviction locking top-down and waiting (pool, then      deadlock
                   object) against a flush that frees an object
evict              the real trylock walk (:func:`~tmemref.core.evict.     none
                   tmem_evict`) against the same flush and puts
no-guard           Xen <= 4.3's page allocation under the object lock,    livelock
                   which could evict, without the 1 MB guard: two
                   clients put into one object each
guard              the real code, 1 MB guard included, same puts          none
counters           two puts into one pool: ``pool.puts``,                 drift
                   ``good_puts``, ``total_tmem_ops`` are not atomic;
                   pgp counts stay exact
pool-lookup-race   a put that finds its pool before taking tmem_rwlock,   invariant
                   against TMEM_DESTROY_POOL from another vCPU
lock-leak          a put reading an unreadable guest frame under the      exception (lock
                   object lock, against gets on that object               still held)
================== ====================================================== ==================

Engine internals used (besides ``Host(pages, min_free_pages=)``, ``TmemOp``, ``do_tmem_op``
and ``check``): ``Host.tmem_rwlock``, ``eph_lists_lock``, ``eph_list``, ``clients``, ``mem``,
``evicted_pgs``, ``total_tmem_ops``, ``global_pgp_count``, ``_put``, ``_obj_find_lock``,
``_pgp_remove``; ``Client.pools``, ``pool_slots()``; ``Pool.lock``, ``objects()``, ``puts``,
``good_puts``, ``pgp_count``; ``Obj.lock``, ``pool``, ``oid``, ``tree.lookup``; ``Pgp.obj``,
``index``; list nodes' ``owner``; ``HostMemory._heap_alloc``;
:func:`tmemref.core.evict.tmem_evict`.
"""
from __future__ import annotations

import errno
from functools import partial

from .. import abi
from ..abi import TmemOp
from ..core import evict
from ..core.host import Host
from ..ds.dlist import list_iter
from ..host.frames import HostMemory, MEMF_tmem
from .sched import Finding, Scenario, World

__all__ = ["SCENARIOS", "naive_evict", "put_pool_first", "put_reading_late", "RecursingMemory",
           "guard_world", "pool_lookup_world", "lock_leak_world"]


def _page(tag: int) -> bytes:
    return tag.to_bytes(8, "little") + bytes(4088)


def _host(pages: int, domains=(1,), **kw):
    """A host with one private ephemeral pool per domain: ``(host, {domid: pool_id})``."""
    host = Host(pages, **kw)
    pools = {}
    for d in domains:
        host.create_domain(d)
        pools[d] = host.do_tmem_op(d, TmemOp(cmd=abi.TMEM_NEW_POOL, flags=abi.pool_flags()))
    return host, pools


def _op(host, domid: int, cmd: int, pool_id: int, oid: int = 0, index: int = 0, page=None,
        call=None):
    """``(label, fn)``: one hypercall of ``domid`` (through ``call``, default ``do_tmem_op``)."""
    name = {abi.TMEM_PUT_PAGE: "put", abi.TMEM_GET_PAGE: "get", abi.TMEM_FLUSH_PAGE: "flush",
            abi.TMEM_DESTROY_POOL: "destroy-pool"}[cmd]
    if cmd == abi.TMEM_GET_PAGE and page is None:
        page = bytearray(4096)
    op = TmemOp(cmd=cmd, pool_id=pool_id, oid=(oid, 0, 0), index=index, page=page)
    label = f"dom{domid} {name}" + ("" if cmd == abi.TMEM_DESTROY_POOL else f" {oid}/{index}")
    return label, partial(call or host.do_tmem_op, domid, op)


def _labeler(host):
    """Lock display names: per-pool and per-object locks by their owner."""
    def label(lock):
        if lock.name not in ("pool_rwlock", "obj_spinlock"):
            return lock.name
        for cid, client in host.clients.items():
            for slot, pool in client.pool_slots():
                if pool.lock is lock:
                    return f"pool_rwlock[dom{cid} pool {slot}]"
                for obj in pool.objects():
                    if obj.lock is lock:
                        return f"obj_spinlock[dom{cid} oid {obj.oid[0]}]"
        return None
    return label


def _world(host, *threads, final=None) -> World:
    return World(tuple(threads), host.check, final, _labeler(host))


# --- eviction against a flush: naive-evict, evict ----------------------------------------------
def naive_evict(host, client=None) -> int:
    """**The bug, kept on purpose**: evict the oldest ephemeral page by locking *top-down* and
    waiting — its pool for writing, then its object — as a put or get would. A flush that holds
    the object and frees its last page wants the pool's write lock (``obj_free``): each waits
    for the other. Xen's eviction only *tries* those locks (:func:`~tmemref.core.evict.
    tmem_evict`). Called like it; ``client`` is unused (the global list). 1 if a page went."""
    with host.eph_lists_lock:
        node = next(iter(list_iter(host.eph_list)), None)
        if node is None:
            return 0
        pgp = node.owner
        obj = pgp.obj
        pool = obj.pool
    pool.lock.write_lock()
    obj.lock.acquire()
    pool.lock.write_unlock()
    if obj.pool is not pool or obj.tree.lookup(pgp.index) is not pgp:     # gone meanwhile
        obj.lock.release()
        return 0
    host._pgp_remove(obj, pgp)
    host.evicted_pgs += 1
    return 1


def _eviction_world(evictor) -> World:
    """dom1's pool holds object 1 (one page, the oldest) and object 2 (one page). CPU a
    evicts twice; CPU b flushes object 1's page (freeing the object), then puts 2/1."""
    host, pools = _host(300)
    p = pools[1]
    for oid in (1, 2):
        host.do_tmem_op(1, TmemOp(cmd=abi.TMEM_PUT_PAGE, pool_id=p, oid=(oid, 0, 0), index=0,
                                  page=_page(oid)))
    ev = ("evict", partial(evictor, host, None))
    return _world(host, ("evictor", (ev, ev)),
                  ("dom1", (_op(host, 1, abi.TMEM_FLUSH_PAGE, p, 1, 0),
                            _op(host, 1, abi.TMEM_PUT_PAGE, p, 2, 1, _page(21)))))


# --- the 1 MB guard: no-guard, guard ------------------------------------------------------------
class RecursingMemory(HostMemory):
    """**The bug, kept on purpose** (Xen <= 4.3): tmem's own page allocations may make the heap
    call back into tmem (``tmem_relinquish_pages``), which evicts — while the caller holds an
    object lock. Together with no 1 MB guard (``min_free_pages=0``) this is the livelock of
    Xen commit 51010e4de3: each eviction walks past every page of the objects being put to."""

    def _heap_alloc(self, d, memflags: int):
        return super()._heap_alloc(d, memflags & ~MEMF_tmem)


def guard_world(guard: bool = True, recursing: bool = False) -> World:
    """dom1 and dom2 have filled memory with pages of one object each (object 1 and object 2,
    oldest first, alternating); each now puts two more pages into its object. ``guard``: the
    1 MB guard (``min_free_pages`` 256) or none; ``recursing``: :class:`RecursingMemory`."""
    per_client = 24
    if guard:
        host, pools = _host(256 + 2 * per_client + 8, (1, 2))
    else:
        host, pools = _host(2 * per_client + 8, (1, 2), min_free_pages=0)
    if recursing:
        host.mem.__class__ = RecursingMemory
    for i in range(per_client + 8):
        for d in (1, 2):
            host.do_tmem_op(d, TmemOp(cmd=abi.TMEM_PUT_PAGE, pool_id=pools[d], oid=(d, 0, 0),
                                      index=i, page=_page(d << 16 | i)))
    return _world(host, *((f"dom{d}", tuple(_op(host, d, abi.TMEM_PUT_PAGE, pools[d], d,
                                                 100 + i, _page(i)) for i in range(2)))
                         for d in (1, 2)))


# --- counters ----------------------------------------------------------------------------------
def _counters_world() -> World:
    """Two vCPUs of dom1 put one page each (different objects) into one pool."""
    host, pools = _host(300)
    p = pools[1]
    pool = host.clients[1].pools[p]
    ops0 = host.total_tmem_ops

    def final(results):
        made = sum(rc == 1 for rcs in results.values() for rc in rcs)
        calls = host.total_tmem_ops - ops0
        if (pool.puts, pool.good_puts) != (made, made):
            raise Finding("drift", f"after {made} good puts in {len(results)} hypercalls, "
                          f"informational: pool.puts {pool.puts}, pool.good_puts "
                          f"{pool.good_puts}, total_tmem_ops +{calls}; atomic: "
                          f"pool.pgp_count {pool.pgp_count}, global_pgp_count "
                          f"{host.global_pgp_count}")
    return _world(host, *((f"vcpu{v}", (_op(host, 1, abi.TMEM_PUT_PAGE, p, 10 + v, 0,
                                            _page(v)),)) for v in (0, 1)), final=final)


# --- the two bugs of the lock protocol -----------------------------------------------------------
def put_pool_first(host, domid: int, op) -> int:
    """**The bug, kept on purpose**: a put that looks its pool up in ``client.pools`` *before*
    taking ``tmem_rwlock``. TMEM_DESTROY_POOL from another vCPU can run in between; the put
    then stores into a pool no one can reach (``check()``: the global counts exceed what the
    structures hold). Xen reads the pool under the lock (facts: 4.5+ takes it for writing on
    entry)."""
    pool = host.clients[domid].pools[op.pool_id]
    if pool is None:
        return -errno.ENODEV
    host.tmem_rwlock.read_lock()
    try:
        return host._put(pool, op.oid, op.index, op.page, domid)
    finally:
        host.tmem_rwlock.read_unlock()


def pool_lookup_world(buggy: bool = True) -> World:
    """vCPU 0 of dom1 puts into pool 0 (through :func:`put_pool_first` if ``buggy``, else
    ``do_tmem_op``); vCPU 1 destroys pool 0."""
    host, pools = _host(300)
    p = pools[1]
    return _world(host, ("vcpu0", (_op(host, 1, abi.TMEM_PUT_PAGE, p, 1, 0, _page(1),
                                       call=partial(put_pool_first, host) if buggy
                                       else None),)),
                  ("vcpu1", (_op(host, 1, abi.TMEM_DESTROY_POOL, p),)))


def put_reading_late(host, domid: int, op) -> int:
    """**The bug, kept on purpose**: a put that reads the guest's frame only after it has found
    and locked the object, with no unlock on the error path. A frame that cannot be read (a
    released ``memoryview``) raises ``ValueError`` out of the hypercall with the object lock
    still held; the next operation on that object then waits forever. Xen copies the frame in
    and returns -EFAULT on failure."""
    host.tmem_rwlock.read_lock()
    try:
        pool = host.clients[domid].pools[op.pool_id]
        obj = host._obj_find_lock(pool, op.oid)
        if obj is None:
            return host._put(pool, op.oid, op.index, op.page, domid)
        data = bytes(memoryview(op.page))             # raises for an unreadable frame
        obj.lock.release()
        return host._put(pool, op.oid, op.index, data, domid)
    finally:
        host.tmem_rwlock.read_unlock()


def lock_leak_world(buggy: bool = True) -> World:
    """Object 1 of dom1 holds pages 0 and 1. vCPU 0 puts page 2 from a released buffer
    (through :func:`put_reading_late` if ``buggy``, else ``do_tmem_op``); vCPU 1 gets pages 0
    and 1."""
    host, pools = _host(300)
    p = pools[1]
    for i in (0, 1):
        host.do_tmem_op(1, TmemOp(cmd=abi.TMEM_PUT_PAGE, pool_id=p, oid=(1, 0, 0), index=i,
                                  page=_page(i)))
    frame = memoryview(bytearray(4096))
    frame.release()
    return _world(host, ("vcpu0", (_op(host, 1, abi.TMEM_PUT_PAGE, p, 1, 2, frame,
                                       call=partial(put_reading_late, host) if buggy
                                       else None),)),
                  ("vcpu1", (_op(host, 1, abi.TMEM_GET_PAGE, p, 1, 0),
                             _op(host, 1, abi.TMEM_GET_PAGE, p, 1, 1))))


SCENARIOS = {s.name: s for s in (
    Scenario("naive-evict", partial(_eviction_world, naive_evict),
             "eviction locking top-down (pool, then object) and waiting, against a flush "
             "freeing an object: deadlock expected"),
    Scenario("evict", partial(_eviction_world, evict.tmem_evict),
             "the real trylock eviction against a flush freeing an object and a put: none "
             "expected"),
    Scenario("no-guard", partial(guard_world, False, True),
             "allocation under the object lock may evict (Xen <= 4.3), no 1 MB guard; two "
             "clients put into one object each: livelock expected", livelock_spins=16),
    Scenario("guard", guard_world,
             "the real code with its 1 MB guard, two clients putting into one object each: "
             "none expected", livelock_spins=16),
    Scenario("counters", _counters_world,
             "two puts into one pool: informational counters drift (not atomic), pgp counts "
             "stay exact"),
    Scenario("pool-lookup-race", pool_lookup_world,
             "a put that finds its pool before tmem_rwlock, against TMEM_DESTROY_POOL: "
             "invariant failure expected"),
    Scenario("lock-leak", lock_leak_world,
             "a put that reads an unreadable guest frame under the object lock, against gets "
             "on that object: exception with the lock held"),
)}
