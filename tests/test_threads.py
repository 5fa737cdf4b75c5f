"""Real threads on one Host: the lock protocol holds, nothing hangs, no lock leaks.

* a stress run (:func:`tmemref.sim.locking.stress`): 8 guest threads over 4 domains
  (ephemeral, persistent and shared pools) while domain 0 freezes, lists, flushes, destroys and
  re-creates pools and whole domains; a faulthandler deadline turns a hang into a failure that
  prints every thread's stack;
* the races of the protocol, each forced deterministically with two threads: a put racing the
  destruction of its pool, a call racing the destruction of its domain, a guest changing the op
  while it is being served;
* every way out of a hypercall releases every lock: exceptions are injected at each place a
  lock is held, and afterwards no lock is held and the next call on the same object completes.
"""
from __future__ import annotations

import faulthandler
import sys
import threading

import pytest

from tmemref import Host, TmemOp, abi
from tmemref.core import evict
from tmemref.core import host as host_mod
from tmemref.ds.radix import RadixTree
from tmemref.host import frames, locks
from tmemref.sim.locking import stress

from helpers import assert_no_locks_held, page

PUT, GET, FLUSH, FLOBJ = (abi.TMEM_PUT_PAGE, abi.TMEM_GET_PAGE, abi.TMEM_FLUSH_PAGE,
                          abi.TMEM_FLUSH_OBJECT)
UUID = (0x51, 0x52)
DEADLINE = 120          # seconds: a hang dumps every thread's stack and fails the run


@pytest.fixture
def deadline():
    faulthandler.dump_traceback_later(DEADLINE, exit=True, file=sys.stderr)
    yield
    faulthandler.cancel_dump_traceback_later()


# ================================================================================================
# stress
# ================================================================================================
@pytest.mark.parametrize("scheme", ["doc", "xen-4.5"])
def test_stress_eight_threads_with_domain_0_destroying(scheme):
    """8 guest vCPUs over 4 domains while domain 0 destroys and re-creates two of them
    (tmemref.sim.locking.stress; its faulthandler deadline turns a hang into a failure)."""
    host = Host(pages=700, lock_scheme=scheme)
    stats = stress(host, 3.0, guests=(1, 2, 3, 4), victims=(3, 4), vcpus=2, seed=0,
                   deadline=DEADLINE)
    assert stats["errors"] == [], f"exceptions in threads: {stats['errors'][:3]}"
    assert stats["calls"] > 1000 and stats["recreated"] > 0, stats
    host.check()
    assert_no_locks_held(host)


# ================================================================================================
# the races, forced
# ================================================================================================
class Gate:
    """Park a thread at a chosen point until the test lets it go."""

    def __init__(self):
        self.reached = threading.Event()
        self.go = threading.Event()

    def park(self):
        self.reached.set()
        assert self.go.wait(10), "gate never opened"


def _put_parked_while(host, pid, meanwhile):
    """A put from domain 1 into pool ``pid``, parked right after its op was copied in while
    ``meanwhile()`` runs on this thread; returns the put's return value."""
    gate = Gate()
    real = host_mod.copy_page_in

    def slow_copy(p):                          # the put parks after copying the op in
        data = real(p)
        if threading.current_thread().name == "putter":
            gate.park()
        return data

    rcs = {}
    host_mod.copy_page_in = slow_copy
    try:
        t = threading.Thread(name="putter", target=lambda: rcs.setdefault("put", host.do_tmem_op(
            1, TmemOp(cmd=PUT, pool_id=pid, oid=(1, 0, 0), index=0, page=page(1)))))
        t.start()
        assert gate.reached.wait(10)
        meanwhile()
        gate.go.set()
        t.join(10)
    finally:
        host_mod.copy_page_in = real
    return rcs["put"]


def test_put_racing_destroy_pool_of_the_same_domain():
    """Another vCPU destroys the pool while a put is between its validation and the pool
    lookup: the put must not land in the dead pool (Xen: the pool is read under tmem_rwlock)."""
    host = Host(pages=600)
    host.create_domain(1, pages=8, max_pages=100)
    pid = host.do_tmem_op(1, TmemOp(cmd=abi.TMEM_NEW_POOL, flags=abi.pool_flags()))

    def destroy_pool():
        assert host.do_tmem_op(1, TmemOp(cmd=abi.TMEM_DESTROY_POOL, pool_id=pid)) == 1

    assert _put_parked_while(host, pid, destroy_pool) == -19     # -ENODEV: the pool is gone
    assert host.global_pgp_count == 0 and host.mem.freeable_page_count == 0
    host.check()


def test_call_racing_destroy_domain():
    """The domain dies while its hypercall waits: -ENODEV, nothing stored, nothing billed."""
    host = Host(pages=600)
    host.create_domain(1, pages=8, max_pages=100)
    pid = host.do_tmem_op(1, TmemOp(cmd=abi.TMEM_NEW_POOL, flags=abi.pool_flags(persist=True)))

    def reboot():
        host.destroy_domain(1)
        host.create_domain(1, pages=8, max_pages=100)      # a new domain with the same id

    assert _put_parked_while(host, pid, reboot) == -19
    assert host.clients.get(1) is None and host.global_pgp_count == 0
    assert host.mem.domains[1].tot_pages == 8
    host.check()


def test_op_changed_while_served_is_read_once():
    """A guest thread rewrites the op's index (to an invalid value) while the hypercall runs:
    the copy taken on entry is what is served."""
    host = Host(pages=600)
    host.create_domain(1, pages=8, max_pages=100)
    pid = host.do_tmem_op(1, TmemOp(cmd=abi.TMEM_NEW_POOL, flags=abi.pool_flags()))
    op = TmemOp(cmd=PUT, pool_id=pid, oid=(1, 0, 0), index=5, page=page(1))
    real = host_mod.copy_page_in

    def meddle(p):
        op.index = -1                          # no u32 index; read again, it would raise
        op.oid = "not an oid"
        return real(p)

    host_mod.copy_page_in = meddle
    try:
        assert host.do_tmem_op(1, op) == 1
    finally:
        host_mod.copy_page_in = real
    buf = bytearray(4096)
    assert host.do_tmem_op(1, TmemOp(cmd=GET, pool_id=pid, oid=(1, 0, 0), index=5,
                                     page=buf)) == 1 and bytes(buf) == page(1)
    host.check()
    assert_no_locks_held(host)


# ================================================================================================
# every way out releases every lock
# ================================================================================================
class Boom(Exception):
    pass


def _boom(*a, **k):
    raise Boom("injected")


def _std_host():
    host = Host(pages=600)
    host.create_domain(1, pages=8, max_pages=300)
    host.create_domain(2, pages=8, max_pages=300)
    assert host.do_tmem_op(0, TmemOp(cmd=abi.TMEM_AUTH, arg1=1, flags=1, uuid=UUID)) == 1
    assert host.do_tmem_op(0, TmemOp(cmd=abi.TMEM_AUTH, arg1=2, flags=1, uuid=UUID)) == 1
    pools = {}
    for kind, flags in (("eph", abi.pool_flags()), ("pers", abi.pool_flags(persist=True)),
                        ("shared", abi.pool_flags(shared=True))):
        pools[kind] = host.do_tmem_op(1, TmemOp(cmd=abi.TMEM_NEW_POOL, flags=flags, uuid=UUID))
        for i in range(3):
            assert host.do_tmem_op(1, TmemOp(cmd=PUT, pool_id=pools[kind], oid=(1, 0, 0),
                                             index=i, page=page(i))) == 1
    return host, pools


#: (name, what to patch, the op that reaches it)
INJECTIONS = [
    ("store data", (host_mod.Host, "_pgp_store"), "put-new"),
    ("enlist", (host_mod.Host, "_pgp_enlist"), "put-new"),
    ("radix insert", (RadixTree, "insert"), "put-new"),
    ("object insert (pool write lock)", (host_mod.Obj, "__init__"), "put-new-object"),
    ("dup put overwrite", (host_mod.Host, "_dup_put"), "put-dup"),
    ("copy out", (host_mod.Host, "_pgp_remove"), "get-private"),
    ("lists move (shared get)", (host_mod, "list_move_tail"), "get-shared"),
    ("free data", (host_mod.Host, "_pgp_free_data"), "flush"),
    ("object destroy (pool write lock)", (host_mod.Host, "_obj_destroy"), "flush-object"),
    ("eviction under the guard", (host_mod.Host, "_pgp_free_data"), "evict"),
    ("page list", (frames.HostMemory, "_page_list_put"), "flush"),
    ("control (LIST)", (host_mod.stats, "tmemc_list"), "list"),
    ("pool destroy (pool write lock)", (host_mod.Host, "_obj_destroy"), "destroy-pool"),
]


def _op(kind, pools):
    e, p, s = pools["eph"], pools["pers"], pools["shared"]
    return {
        "put-new": (1, TmemOp(cmd=PUT, pool_id=p, oid=(1, 0, 0), index=7, page=page(7))),
        "put-new-object": (1, TmemOp(cmd=PUT, pool_id=e, oid=(9, 0, 0), index=0, page=page(7))),
        "put-dup": (1, TmemOp(cmd=PUT, pool_id=e, oid=(1, 0, 0), index=0, page=page(8))),
        "get-private": (1, TmemOp(cmd=GET, pool_id=e, oid=(1, 0, 0), index=1,
                                  page=bytearray(4096))),
        "get-shared": (1, TmemOp(cmd=GET, pool_id=s, oid=(1, 0, 0), index=1,
                                 page=bytearray(4096))),
        "flush": (1, TmemOp(cmd=FLUSH, pool_id=e, oid=(1, 0, 0), index=2)),
        "flush-object": (1, TmemOp(cmd=FLOBJ, pool_id=e, oid=(1, 0, 0))),
        "list": (0, TmemOp(cmd=abi.TMEM_CONTROL, subop=abi.TMEMC_LIST, arg1=4096,
                           buf=bytearray(4096))),
        "destroy-pool": (1, TmemOp(cmd=abi.TMEM_DESTROY_POOL, pool_id=e)),
    }[kind]


@pytest.mark.parametrize("name,target,kind", INJECTIONS, ids=[i[0] for i in INJECTIONS])
def test_an_escaping_exception_releases_every_lock(deadline, monkeypatch, name, target, kind):
    host, pools = _std_host()
    if kind == "evict":                         # fill memory so the guard has to evict
        free = host.mem.guard_pages()
        for i in range(free - host.min_free_pages + 5):
            host.do_tmem_op(1, TmemOp(cmd=PUT, pool_id=pools["eph"], oid=(5, 0, 0), index=i,
                                      page=page(i)))
        dom, op = 1, TmemOp(cmd=PUT, pool_id=pools["eph"], oid=(6, 0, 0), index=0,
                            page=page(1))
    else:
        dom, op = _op(kind, pools)
    monkeypatch.setattr(*target, _boom)
    with pytest.raises(Boom):
        host.do_tmem_op(dom, op)
    monkeypatch.undo()
    assert locks.held_locks() == [], f"still held by this thread: {locks.held_locks()}"
    assert_no_locks_held(host)
    # the next operation on the same object, from another thread, completes
    done = threading.Event()
    t = threading.Thread(target=lambda: (host.do_tmem_op(1, TmemOp(
        cmd=FLUSH, pool_id=pools["eph"], oid=(1, 0, 0), index=0)), done.set()))
    t.start()
    t.join(10)
    assert done.is_set(), "the next call on the object hung: a lock leaked"


def test_evict_releases_its_locks_when_freeing_raises(monkeypatch):
    host, pools = _std_host()
    monkeypatch.setattr(host_mod.Host, "_pgp_free_data", _boom)
    with pytest.raises(Boom):
        evict.tmem_evict(host, None)
    monkeypatch.undo()
    assert locks.held_locks() == []
    assert_no_locks_held(host)
