"""Xen: tmem's locks (``tmem.c``, ``tmem_xen.c``) — real ``threading`` primitives, ranked.

Lock order (take a lower rank before a higher one; never block on a lower rank while holding a
higher one)::

    rank 0  tmem_rwlock          global rwlock: write for NEW/DESTROY_POOL, control, domain death;
                                 read for put/get/flush
    rank 1  pool_rwlock          per pool: read to find an object, write to insert/erase objects
    rank 2  obj_spinlock         per object: its radix tree and counts, held for the whole op
    rank 3  pcd_tree_rwlocks[i]  dedup trees (one per first byte)
    rank 4  heap_lock            the host heap; Xen's alloc_heap_pages calls tmem_relinquish_pages
                                 with it held, so relinquish (and the eviction it runs) nests
                                 inside it
    rank 5  eph_lists_spinlock   global and per-client ephemeral lists and their counts
    rank 5  pers_lists_spinlock  pools' persistent lists, clients' invalidated lists
    rank 6  xmem_pool lock       one per sub-page allocator (TLSF); released around get_mem,
                                 held around put_mem
    rank 7  tmem_page_list_lock  the free frame list ``tmem_page_list``

Two ways round the order, both from Xen:

* **trylock**: the bottom-up eviction walk holds ``eph_lists_spinlock`` (rank 5) and *tries* the
  object lock (rank 2) and the pool lock (rank 1); a trylock never waits, so it cannot deadlock,
  and a failure means "skip this page". The top-down path also *tries* the object lock under the
  pool read lock and, if it is busy, drops the pool lock and looks the object up again.
* **the named exception** ``obj_free``: freeing an object's last page takes ``pool_rwlock`` for
  writing while holding ``obj_spinlock``. It is safe because every top-down taker of an object
  lock uses trylock (above), so nobody waits for the object lock while holding the pool lock.

``set_order_checking(True)`` makes every *blocking* acquire verify the order per thread and raise
:class:`LockOrderError` on a violation (tests switch it on; it costs a little per acquire).

Not re-entrant: like Xen's spinlocks, taking a lock the thread already holds deadlocks (the
threading backend) — so the engine never does.

>>> a, b = SpinLock("obj_spinlock", 2), SpinLock("eph_lists_spinlock", 5)
>>> set_order_checking(True)
>>> with a, b: pass
>>> with b:
...     try:
...         a.acquire()
...     except LockOrderError as e:
...         print(e)
lock order: obj_spinlock (rank 2) taken while holding eph_lists_spinlock (rank 5)
>>> b.trylock() and (b.release() or True)   # trylock is exempt from the order
True
>>> set_order_checking(False)
"""
from __future__ import annotations

import threading
import time as _time
from collections import deque

__all__ = ["SpinLock", "RWLock", "LockOrderError", "set_order_checking", "held_locks",
           "RANK_TMEM", "RANK_POOL", "RANK_OBJ", "RANK_PCD", "RANK_HEAP", "RANK_LISTS",
           "RANK_XMEM", "RANK_PAGE_LIST", "OBJ_FREE_EXCEPTION", "yield_point",
           "install_scheduler"]

RANK_TMEM, RANK_POOL, RANK_OBJ, RANK_PCD, RANK_HEAP, RANK_LISTS, RANK_XMEM, RANK_PAGE_LIST = \
    range(8)
#: The one allowed inversion: pool_rwlock (write) under obj_spinlock, when freeing an object.
OBJ_FREE_EXCEPTION = ("pool_rwlock", "obj_spinlock")

_checking = False
_tls = threading.local()
#: The deterministic scheduler of :mod:`tmemref.sim` while one runs, else None (real threads).
_sched = None


def yield_point(label: str) -> None:
    """A place where a thread may lose the CPU though it takes no lock: the middle of the
    read-modify-write of a counter Xen keeps without atomics (an *informational* counter, e.g.
    ``pool->puts++``). Free with real threads; the scheduler of :mod:`tmemref.sim` may switch
    threads here, which is how it shows such counters drifting."""
    if _sched is not None:
        _sched.yield_point(label)


class LockOrderError(RuntimeError):
    """A blocking acquire broke the documented lock order."""


def set_order_checking(on: bool) -> None:
    """Switch the per-thread lock-order checker on or off (global)."""
    global _checking
    _checking = bool(on)


def held_locks() -> list:
    """The locks this thread holds, in acquisition order (only tracked while checking is on)."""
    return list(getattr(_tls, "held", ()))


def _push(lock, blocking: bool) -> None:
    held = getattr(_tls, "held", None)
    if held is None:
        held = _tls.held = []
    if blocking and held:
        top = max(held, key=lambda h: h.rank)
        if lock.rank < top.rank and not (lock.name == OBJ_FREE_EXCEPTION[0]
                                          and top.name == OBJ_FREE_EXCEPTION[1]):
            raise LockOrderError(f"lock order: {lock.name} (rank {lock.rank}) taken while "
                                 f"holding {top.name} (rank {top.rank})")
    held.append(lock)


def _pop(lock) -> None:
    held = getattr(_tls, "held", None)
    if held and lock in held:
        # remove the most recent entry for this lock
        for i in range(len(held) - 1, -1, -1):
            if held[i] is lock:
                del held[i]
                break


class SpinLock:
    """Xen: ``spinlock_t``. A non-reentrant mutex with ``trylock``; O(1).

    ``held`` tells whether some thread holds it (for pictures and tests, not for decisions).
    """
    __slots__ = ("name", "rank", "_lock")

    def __init__(self, name: str, rank: int):
        self.name = name              # the Xen lock this stands for
        self.rank = rank              # position in the lock order (module docstring)
        self._lock = threading.Lock()

    def acquire(self) -> None:
        """``spin_lock``: wait until free. Checked against the lock order when checking is on."""
        if _checking:
            _push(self, True)
        self._lock.acquire()

    def trylock(self) -> bool:
        """``spin_trylock``: take it if free and return True, else return False at once."""
        if self._lock.acquire(False):
            if _checking:
                _push(self, False)
            return True
        return False

    def release(self) -> None:
        """``spin_unlock``."""
        if _checking:
            _pop(self)
        self._lock.release()

    @property
    def held(self) -> bool:
        return self._lock.locked()

    def __enter__(self):
        self.acquire()          # through acquire/release, so tracers that wrap them see it
        return self

    def __exit__(self, *exc):
        self.release()

    def __repr__(self):
        return f"<SpinLock {self.name}{' held' if self.held else ''}>"


class RWLock:
    """Xen: ``rwlock_t``. Many readers or one writer; ``write_trylock`` never waits; O(1).

    ``_w`` is a turnstile: a writer holds it for as long as it writes; a reader holds it only
    while it registers itself in ``_readers`` (a deque, whose append and pop are atomic), so a
    waiting writer stops new readers from coming in and waits for the ones inside to leave.
    A writer therefore never starves behind a stream of readers.
    """
    __slots__ = ("name", "rank", "_w", "_readers", "writer")

    def __init__(self, name: str, rank: int):
        self.name = name              # the Xen lock this stands for
        self.rank = rank              # position in the lock order
        self._w = threading.Lock()    # held by the writer, or by a reader while it enters
        self._readers = deque()       # one entry per read hold
        self.writer = False           # True while held for writing

    @property
    def readers(self) -> int:
        """How many read holds there are now."""
        return len(self._readers)

    def read_lock(self) -> None:
        """``read_lock``: wait until no writer holds it (or waits for it)."""
        if _checking:
            _push(self, True)
        w = self._w
        w.acquire()
        self._readers.append(None)
        w.release()

    def read_unlock(self) -> None:
        if _checking:
            _pop(self)
        self._readers.pop()

    def write_lock(self) -> None:
        """``write_lock``: wait until nobody holds it."""
        if _checking:
            _push(self, True)
        self._w.acquire()
        readers = self._readers
        while readers:               # the readers inside finish; no new one gets in
            _time.sleep(0)
        self.writer = True

    def write_trylock(self) -> bool:
        """``write_trylock``: take it for writing if nobody holds it, else return False."""
        w = self._w
        if not w.acquire(False):
            return False
        if self._readers:
            w.release()
            return False
        self.writer = True
        if _checking:
            _push(self, False)
        return True

    def write_unlock(self) -> None:
        if _checking:
            _pop(self)
        self.writer = False
        self._w.release()

    @property
    def held(self) -> bool:
        return self.writer or bool(self._readers)

    def __repr__(self):
        state = "W" if self.writer else (f"R{self.readers}" if self.readers else "free")
        return f"<RWLock {self.name} {state}>"


# --- the deterministic scheduler's hook (tmemref.sim.sched) ---------------------------------------
# While a scheduler is installed, every lock operation goes to ``_sched.lock_op(lock, op)``,
# which keeps the lock's state in its own model and decides which thread runs next; ``held``
# asks ``_sched.lock_held(lock)``. The methods are swapped on the classes, so the threading
# path above stays exactly as it is and costs nothing when no scheduler runs.
_SCHED_OPS = {SpinLock: ("acquire", "trylock", "release"),
              RWLock: ("read_lock", "read_trylock", "read_unlock", "write_lock", "write_trylock",
                       "write_unlock")}
_REAL_OPS: dict = {}


def _routed(op: str):
    def method(self):
        return _sched.lock_op(self, op)
    method.__name__ = op
    return method


def install_scheduler(sched) -> None:
    """Route every lock operation to ``sched`` (``sched.lock_op(lock, op)`` with ``op`` the
    method's name, ``sched.lock_held(lock)`` for ``held``, ``sched.yield_point(label)``);
    ``None`` puts the threading primitives back. One scheduler per process at a time; a bound
    method taken before (``f = lock.acquire``) keeps the threading path. O(1)."""
    global _sched
    if sched is None:
        for (cls, name), real in _REAL_OPS.items():
            setattr(cls, name, real)
        _REAL_OPS.clear()
        _sched = None
        return
    if _sched is not None:
        raise RuntimeError("a scheduler is already installed")
    for cls, ops in _SCHED_OPS.items():
        methods = {n for n, v in vars(cls).items() if callable(v) and not n.startswith("_")}
        if methods - set(ops):      # an operation the scheduler would not see: refuse
            raise RuntimeError(f"{cls.__name__}.{sorted(methods - set(ops))} not routed")
    for cls, ops in _SCHED_OPS.items():
        for name in ops:
            if name in vars(cls):
                _REAL_OPS[cls, name] = vars(cls)[name]
                setattr(cls, name, _routed(name))
        _REAL_OPS[cls, "held"] = vars(cls)["held"]
        cls.held = property(lambda self: _sched.lock_held(self))
    _sched = sched
