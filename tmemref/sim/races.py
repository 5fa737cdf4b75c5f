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
put-evict          a put into an object against an eviction walking the   none
                   same pool's pages (the timeline of chapter 7)
relinquish         a domain created when tmem holds the memory: the heap  none
                   asks tmem to relinquish, evictions run under heap_lock;
                   against puts
xen-4.5            the real code with ``lock_scheme="xen-4.5"``: a put    none
                   against TMEM_DESTROY_POOL
xen-4.5-window     Xen 4.5+'s put: the pool found under the write lock    invariant
                   is used after the downgrade to the read lock
racy-pgp-count     ``pool.pgp_count`` made non-atomic (read, yield,       lost-page
                   write); two puts, then a flush and a get
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
from types import MemberDescriptorType

from .. import abi
from ..abi import TmemOp
from ..core import evict
from ..core.host import Host
from ..ds.dlist import list_iter
from ..host.frames import ANON, HostMemory, MEMF_tmem
from ..host.locks import SpinLock, yield_point
from .sched import Finding, Scenario, World

__all__ = ["SCENARIOS", "naive_evict", "put_pool_first", "put_reading_late", "put_across_downgrade",
           "RecursingMemory", "make_racy", "guard_world", "pool_lookup_world", "lock_leak_world",
           "put_evict_world", "counters_world", "big_locked", "eviction_world", "RACY"]


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
    try:
        host._pgp_remove(obj, pgp)
    finally:
        obj.lock.release()
    host.evicted_pgs += 1
    return 1


def eviction_world(evictor) -> World:
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


def put_evict_world() -> World:
    """dom1's pool holds object 1 (pages 0 and 1) and object 2 (page 0), put in the order
    1/0, 2/0, 1/1. CPU a puts page 5 of object 1; CPU b runs one eviction."""
    host, pools = _host(300)
    p = pools[1]
    for oid, index in ((1, 0), (2, 0), (1, 1)):
        host.do_tmem_op(1, TmemOp(cmd=abi.TMEM_PUT_PAGE, pool_id=p, oid=(oid, 0, 0),
                                  index=index, page=_page(oid << 8 | index)))
    return _world(host, ("dom1", (_op(host, 1, abi.TMEM_PUT_PAGE, p, 1, 5, _page(15)),)),
                  ("evictor", (("evict", partial(evict.tmem_evict, host, None)),)))


def _create(host, domid: int, pages: int) -> str:
    """Create a domain as a toolstack would: ``"created"``, or ``"ENOMEM"`` if memory is short
    (Xen fails the creation; nothing is wrong with tmem then)."""
    try:
        host.create_domain(domid, pages)
    except MemoryError:
        return "ENOMEM"
    return "created"


def relinquish_world(census: bool = False) -> World:
    """dom1 has filled tmem with ephemeral pages (object 1) as far as the 1 MB guard allows.
    CPU a (the toolstack) creates domain 2, which takes the heap down to its reserve, so the
    heap asks tmem to relinquish frames: evictions under ``heap_lock``. CPU b (dom1) puts
    two more pages into object 2 meanwhile; if its puts take the frames first, the creation
    fails for want of memory, a legitimate outcome. ``census``: every run ends with a finding
    whose kind says how the creation went (so ``kinds`` counts schedules per outcome)."""
    host, pools = _host(300)
    p = pools[1]
    i = 0
    while host.mem.guard_pages() > host.min_free_pages:
        host.do_tmem_op(1, TmemOp(cmd=abi.TMEM_PUT_PAGE, pool_id=p, oid=(1, 0, 0), index=i,
                                  page=_page(i)))
        i += 1
    grow = host.mem.total_free_pages() + 3              # three frames more than is free

    def final(results):
        if census:
            raise Finding(f"create dom2: {results[0][0]}", "census")
    return _world(host, ("dom0", (("create dom2", partial(_create, host, 2, grow)),)),
                  ("dom1", tuple(_op(host, 1, abi.TMEM_PUT_PAGE, p, 2, j, _page(50 + j))
                                 for j in range(2))), final=final)


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
def make_racy(obj, attr: str) -> None:
    """**A bug, made on purpose**: turn ``obj.attr`` into a counter updated without atomics.
    ``obj``'s class is swapped for a subclass in which every *read* of ``attr`` is a
    :func:`~tmemref.host.locks.yield_point` (after the value was read), so ``x.attr += 1`` is
    read, yield, write — as an ``int`` incremented by two CPUs without ``atomic_inc`` is. The
    engine is not changed. O(1)."""
    cls = type(obj)
    inner = next((k.__dict__[attr] for k in cls.__mro__ if attr in k.__dict__), None)
    if inner is not None and not isinstance(inner, MemberDescriptorType):
        raise TypeError(f"{cls.__name__}.{attr} is not a plain attribute (a slot or in "
                        "__dict__)")
    label = f"{cls.__name__.removeprefix('Racy').lower()}.{attr}"

    def get(self):
        value = inner.__get__(self, cls) if inner is not None else self.__dict__[attr]
        yield_point(label)
        return value

    def put(self, value):
        if inner is not None:
            inner.__set__(self, value)
        else:
            self.__dict__[attr] = value

    obj.__class__ = type(f"Racy{cls.__name__.removeprefix('Racy')}", (cls,),
                         {"__slots__": (), attr: property(get, put)})


def _eph_frames(host, pool) -> int:
    return int((host.mem.owner == ANON).sum())


#: Counters :func:`counters_world` can make non-atomic: name -> ((host, pool) -> (object,
#: attribute), (host, pool) -> the value the structures say it should have).
RACY = {
    "pool.pgp_count": (lambda h, p: (p, "pgp_count"),
                       lambda h, p: sum(o.pgp_count for o in p.objects())),
    "host.global_pgp_count": (lambda h, p: (h, "global_pgp_count"),
                              lambda h, p: sum(o.pgp_count for o in p.objects())),
    "mem.freeable_page_count": (lambda h, p: (h.mem, "freeable_page_count"), _eph_frames),
    "client.eph_count": (lambda h, p: (p.client, "eph_count"),
                         lambda h, p: sum(1 for _ in list_iter(p.client.eph_list))),
}


def counters_world(racy=None, census: bool = False) -> World:
    """Two vCPUs of dom1 put one page each (objects 10 and 11) into one pool; ``final``
    reports a ``drift`` of the informational counters (``pool.puts``, ``pool.good_puts``,
    ``total_tmem_ops``) against the atomic ones (``pool.pgp_count``, ``global_pgp_count``).

    ``racy``: a name of :data:`RACY` to make non-atomic (:func:`make_racy`) instead. The run
    then goes without ``host.check()`` (the point is what the drift *does*), and ``final``
    flushes object 10's page and gets object 11's: a get that misses a stored page is a
    ``lost-page`` finding; otherwise a counter that differs from what the structures hold is a
    ``drift``. ``census``: every run ends with a finding whose kind is the final values of the
    informational counters (so an exploration's ``kinds`` counts the schedules per outcome)."""
    host, pools = _host(300)
    p = pools[1]
    pool = host.clients[1].pools[p]
    ops0 = host.total_tmem_ops
    if racy is not None:
        where, truth = RACY[racy]
        make_racy(*where(host, pool))

    def final(results):
        made = sum(rc == 1 for rcs in results.values() for rc in rcs)
        calls = host.total_tmem_ops - ops0
        if racy is not None:
            value, should = getattr(*where(host, pool)), truth(host, pool)
            host.do_tmem_op(1, TmemOp(cmd=abi.TMEM_FLUSH_PAGE, pool_id=p, oid=(10, 0, 0)))
            rc = host.do_tmem_op(1, TmemOp(cmd=abi.TMEM_GET_PAGE, pool_id=p, oid=(11, 0, 0),
                                           page=bytearray(4096)))
            if rc != 1:
                raise Finding("lost-page", f"a get of a stored page returned {abi.rc_name(rc)}"
                              f" ({racy} {value} after {made} puts, {value - 1} after the "
                              "flush)")
            if value != should:
                raise Finding("drift", f"{racy} is {value} after {made} good puts; the "
                              f"structures hold {should}")
            return
        if census:
            raise Finding(f"pool.puts {pool.puts}, pool.good_puts {pool.good_puts}, "
                          f"total_tmem_ops +{calls}", "census")
        if (pool.puts, pool.good_puts) != (made, made):
            raise Finding("drift", f"after {made} good puts in {len(results)} hypercalls, "
                          f"informational: pool.puts {pool.puts}, pool.good_puts "
                          f"{pool.good_puts}, total_tmem_ops +{calls}; atomic: "
                          f"pool.pgp_count {pool.pgp_count}, global_pgp_count "
                          f"{host.global_pgp_count}")
    return World(tuple((f"vcpu{v}", (_op(host, 1, abi.TMEM_PUT_PAGE, p, 10 + v, 0,
                                          _page(v)),)) for v in (0, 1)),
                 host.check if racy is None else None, final, _labeler(host))


def big_locked(build) -> World:
    """The world ``build()`` returns with every operation of every thread inside one global
    spinlock, as Xen <= 4.3 ran each hypercall with the ``tmem_lock`` boot option (Xen's
    ``tmem_spinlock``; its inner locks then did nothing — here they are taken, uncontended).
    A debugging aid: a failure that goes away under it is a race. O(operations)."""
    world = build()
    big = SpinLock("tmem_spinlock", -1)          # outside every other lock

    def wrap(fn):
        def op():
            with big:
                return fn()
        return op
    threads = tuple((name, tuple((label, wrap(fn)) for label, fn in ops))
                    for name, ops in world.threads)
    return World(threads, world.check, world.final, world.label)


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


def put_across_downgrade(host, domid: int, op) -> int:
    """**Xen 4.5+'s code, kept on purpose**: ``do_tmem_op`` takes ``tmem_rwlock`` for writing,
    finds the pool, then drops the write lock and takes the read lock — and goes on with the
    pool it found before (Xen commit b214115f09). Between the two, TMEM_DESTROY_POOL from
    another vCPU can free it. ``Host(lock_scheme="xen-4.5")`` looks the pool up again under
    the read lock."""
    lock = host.tmem_rwlock
    lock.write_lock()
    try:
        pool = host.clients[domid].pools[op.pool_id]
    finally:
        lock.write_unlock()
    if pool is None:
        return -errno.ENODEV
    lock.read_lock()
    try:
        return host._put(pool, op.oid, op.index, op.page, domid)
    finally:
        lock.read_unlock()


def pool_lookup_world(buggy=True, lock_scheme: str = "doc") -> World:
    """vCPU 0 of dom1 puts into pool 0 (through :func:`put_pool_first` if ``buggy`` is True,
    through ``buggy`` itself if it is a function like it, else ``do_tmem_op``); vCPU 1
    destroys pool 0. ``lock_scheme``: the host's."""
    host, pools = _host(300, lock_scheme=lock_scheme)
    p = pools[1]
    call = put_pool_first if buggy is True else buggy or None
    return _world(host, ("vcpu0", (_op(host, 1, abi.TMEM_PUT_PAGE, p, 1, 0, _page(1),
                                       call=partial(call, host) if call else None),)),
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
    Scenario("naive-evict", partial(eviction_world, naive_evict),
             "eviction locking top-down (pool, then object) and waiting, against a flush "
             "freeing an object: deadlock expected"),
    Scenario("evict", partial(eviction_world, evict.tmem_evict),
             "the real trylock eviction against a flush freeing an object and a put: none "
             "expected"),
    Scenario("no-guard", partial(guard_world, False, True),
             "allocation under the object lock may evict (Xen <= 4.3), no 1 MB guard; two "
             "clients put into one object each: livelock expected", livelock_spins=16),
    Scenario("guard", guard_world,
             "the real code with its 1 MB guard, two clients putting into one object each: "
             "none expected", livelock_spins=16),
    Scenario("counters", counters_world,
             "two puts into one pool: informational counters drift (not atomic), pgp counts "
             "stay exact"),
    Scenario("pool-lookup-race", pool_lookup_world,
             "a put that finds its pool before tmem_rwlock, against TMEM_DESTROY_POOL: "
             "invariant failure expected"),
    Scenario("lock-leak", lock_leak_world,
             "a put that reads an unreadable guest frame under the object lock, against gets "
             "on that object: exception with the lock held"),
    Scenario("put-evict", put_evict_world,
             "a put into an object against an eviction walking the same pool: none expected"),
    Scenario("relinquish", relinquish_world,
             "a domain created while tmem holds the memory (relinquish evicts under the heap "
             "lock) against puts: none expected"),
    Scenario("xen-4.5", partial(pool_lookup_world, False, "xen-4.5"),
             "Host(lock_scheme=\"xen-4.5\"): a put against TMEM_DESTROY_POOL: none expected"),
    Scenario("xen-4.5-window", partial(pool_lookup_world, put_across_downgrade),
             "Xen 4.5+'s put, using the pool it found before the downgrade to the read lock, "
             "against TMEM_DESTROY_POOL: invariant failure expected"),
    Scenario("racy-pgp-count", partial(counters_world, "pool.pgp_count"),
             "pool.pgp_count without atomics; two puts, a flush and a get: lost page expected"),
)}
