"""Xen: tmem's lock protocol, read off recorded schedules — what chapter 7 measures and draws.

The scheduler of :mod:`.sched` records every lock operation of a run (``Run.trace``). This
module turns those records into the chapter's evidence:

=================================  ==============================================================
:func:`live_locks`                 the lock objects of a live host, by name
:func:`lock_edges`                 which lock was taken while which was held, over some runs, and
                                   how: in the documented order, by a trylock against it, or by
                                   the ``obj_free`` exception (the hierarchy's picture)
:func:`tour`                       the runs the hierarchy is read from (one default schedule of
                                   each real-code scenario, plus dedup and persistent puts)
:func:`holds`, :func:`tries`       who held which lock from when to when, and the failed trylocks
                                   (the timeline of a put against an eviction)
:func:`preempt_at`                 the first schedule with one switch that makes a run do
                                   something (e.g. the evictor's trylock fail)
:func:`lock_ops`                   one thread's lock operations, in order (the two lock schemes)
:func:`explore_table`,             schedules and seconds per scenario, with and without sleep
:func:`load_table`                 sets; the larger bounds cached in a JSON file that
                                   ``python -m tmemref.sim.locking FILE`` regenerates
:func:`stress`                     real threads on one host: guests and domain 0 at once, under
                                   a faulthandler deadline (the stress test of the suite)
=================================  ==============================================================

Lock names in a trace are display names (``obj_spinlock[dom1 oid 1]``, ``xmem_pool lock#3``);
:func:`base_name` reduces them to the lock's own name, whose rank comes from the order block of
:mod:`tmemref.host.locks`' docstring (:func:`ranks`).
"""
from __future__ import annotations

import faulthandler
import json
import random
import re
import sys
import threading
import time
from dataclasses import dataclass
from functools import partial
from typing import Callable, Iterable, Optional

from .. import abi
from . import races
from ..abi import TmemOp
from ..host import locks
from .explore import explore
from .sched import BLOCKING, RELEASES, TRYLOCKS, Run, Scenario, World, encode, run

__all__ = ["ranks", "base_name", "live_locks", "Edge", "lock_edges", "tour", "Hold", "holds", "tries",
           "preempt_at", "lock_ops", "TABLE_SCENARIOS", "explore_table", "load_table",
           "stress", "main"]

_RANK_LINE = re.compile(r"^\s*rank (\d+)\s+(\S+)")


def ranks() -> dict:
    """``{lock name: rank}`` as the order block of :mod:`tmemref.host.locks`' docstring lists
    them (``pcd_tree_rwlocks[i]`` as ``pcd_tree_rwlock``, ``xmem_pool`` as ``xmem_pool lock``).
    O(docstring).

    >>> r = ranks(); r["tmem_rwlock"] < r["obj_spinlock"] < r["heap_lock"] < r["eph_lists_spinlock"]
    True
    """
    out = {}
    for line in locks.__doc__.splitlines():
        m = _RANK_LINE.match(line)
        if m:
            name = m.group(2)
            name = {"pcd_tree_rwlocks[i]": "pcd_tree_rwlock", "xmem_pool": "xmem_pool lock"}.get(
                name, name)
            out[name] = int(m.group(1))
    return out


def base_name(display: str) -> str:
    """The lock's own name from its display name in a trace: ``obj_spinlock[dom1 oid 1]`` and
    ``obj_spinlock#4`` are both ``obj_spinlock``. O(len).

    >>> base_name("pool_rwlock[dom1 pool 0]"), base_name("xmem_pool lock#7")
    ('pool_rwlock', 'xmem_pool lock')
    """
    return re.sub(r"(\[.*\]|#\d+)$", "", display)


def live_locks(host) -> dict:
    """``{lock name: (rank, objects)}`` of the lock objects a live host holds: its own, its
    memory's, its sub-page allocators', the dedup trees' and every pool's and object's (a
    shared pool once). ``ValueError`` if two objects of one name have different ranks.
    O(pools + objects)."""
    found = [host.tmem_rwlock, host.eph_lists_lock, host.pers_lists_lock,
             host.mem.page_list_lock, host.mem.heap_lock, host.eph_mempool.lock]
    if host.pcd is not None:
        found += host.pcd.locks
    for client in host.clients.values():
        found.append(client.persistent_pool.lock)
        for pool in client.pools:
            if pool is not None:
                found.append(pool.lock)
                found += [obj.lock for obj in pool.objects()]
    out: dict = {}
    for lock in {id(x): x for x in found}.values():
        rank, n = out.get(lock.name, (lock.rank, 0))
        if rank != lock.rank:
            raise ValueError(f"two {lock.name} locks with ranks {rank} and {lock.rank}")
        out[lock.name] = (rank, n + 1)
    return out


@dataclass(frozen=True)
class Edge:
    """Lock ``taken`` while ``held`` was the innermost lock its thread held; ``tried``: by a
    trylock. ``kind``: ``"order"`` (a rank at least that of every lock held), ``"trylock"`` (a
    lower rank, tried: it cannot wait), ``"exception"`` (the named ``obj_free`` inversion),
    ``"violation"`` (anything else: a blocking acquire against the order)."""
    held: str
    taken: str
    kind: str
    tried: bool = False


def _kind(op: str, taken: str, held: list, rank: dict) -> str:
    top = max(rank[h] for h in held)
    if rank[taken] >= top:
        return "order"
    if op in TRYLOCKS:
        return "trylock"
    if (taken, held[-1]) == locks.OBJ_FREE_EXCEPTION:
        return "exception"
    return "violation"


def lock_edges(runs: Iterable[Run]) -> dict:
    """``{Edge: times}`` over the traces of ``runs``: for each lock operation that takes or
    tries a lock while its thread holds others, the innermost held lock (the last taken) and
    how the new one relates to the order (:class:`Edge`). O(trace length)."""
    rank = ranks()
    out: dict = {}
    for r in runs:
        held: dict = {}                                   # thread -> [display names]
        for _, tid, op, what, result in r.trace:
            if op not in BLOCKING and op not in TRYLOCKS and op not in RELEASES:
                continue
            stack = held.setdefault(tid, [])
            if op in RELEASES:
                i = len(stack) - 1 - stack[::-1].index(what)
                del stack[i]
                continue
            name = base_name(what)
            if stack:
                inner = [base_name(h) for h in stack]
                e = Edge(inner[-1], name, _kind(op, name, inner, rank), op in TRYLOCKS)
                out[e] = out.get(e, 0) + 1
            if op in BLOCKING or result:
                stack.append(what)
    return out


def _dedup_world() -> World:
    """dom1 with dedup on: two puts of the same content (the pcd trees and their locks)."""
    from ..core.host import Host
    host = Host(300, dedup=True)
    host.create_domain(1)
    p = host.do_tmem_op(1, TmemOp(cmd=abi.TMEM_NEW_POOL, flags=abi.pool_flags()))
    page = b"same" * 1024
    return World((("dom1", tuple((f"put {i}", partial(host.do_tmem_op, 1, TmemOp(
        cmd=abi.TMEM_PUT_PAGE, pool_id=p, oid=(1, 0, 0), index=i, page=page)))
        for i in range(2))),), host.check)


def _persistent_world() -> World:
    """dom1 puts into and flushes from a persistent pool (pers_lists_spinlock)."""
    from ..core.host import Host
    host = Host(300)
    host.create_domain(1, pages=8, max_pages=64)
    p = host.do_tmem_op(1, TmemOp(cmd=abi.TMEM_NEW_POOL, flags=abi.pool_flags(persist=True)))
    ops = [TmemOp(cmd=abi.TMEM_PUT_PAGE, pool_id=p, oid=(1, 0, 0), index=0, page=bytes(4096)),
           TmemOp(cmd=abi.TMEM_FLUSH_OBJECT, pool_id=p, oid=(1, 0, 0))]
    return World((("dom1", tuple((f"op {i}", partial(host.do_tmem_op, 1, op))
                                 for i, op in enumerate(ops))),), host.check)


def tour() -> list:
    """The runs the lock hierarchy is read from: the default schedule of every real-code
    scenario of :mod:`.races` (eviction against a flush and a put, the guard, relinquish under
    the heap lock, both lock schemes) and of two single-thread worlds (a dedup put, a
    persistent put and flush). O(their steps)."""
    names = ("evict", "put-evict", "guard", "relinquish", "counters", "xen-4.5")
    runs = [run(races.SCENARIOS[n]) for n in names]
    runs += [run(Scenario("dedup", _dedup_world)), run(Scenario("persistent", _persistent_world))]
    for r in runs:
        if r.failure is not None:
            raise RuntimeError(f"the tour's run failed: {r.failure}")
    return runs


# --- timelines -----------------------------------------------------------------------------------
@dataclass(frozen=True)
class Hold:
    """Thread ``thread`` held lock ``lock`` (display name) in ``mode`` (``"R"`` read, ``"W"``
    write or exclusive) from trace position ``start`` to ``end`` (its release)."""
    thread: str
    lock: str
    mode: str
    start: int
    end: int


def holds(r: Run) -> list:
    """Every lock hold of a run, as :class:`Hold` records in order of acquisition; positions
    are indices into ``r.trace``. A hold still open at the end ends at the trace's length.
    O(trace length)."""
    open_: dict = {}
    out = []
    for i, (_, tid, op, what, result) in enumerate(r.trace):
        if op in BLOCKING or (op in TRYLOCKS and result):
            mode = "R" if op.startswith("read") else "W"
            open_.setdefault((tid, what), []).append((i, mode))
        elif op in RELEASES:
            start, mode = open_[tid, what].pop()
            out.append(Hold(r.names[tid], what, mode, start, i))
    for (tid, what), rest in open_.items():
        out += [Hold(r.names[tid], what, mode, start, len(r.trace)) for start, mode in rest]
    return sorted(out, key=lambda h: (h.start, h.thread))


def tries(r: Run) -> list:
    """The failed trylocks of a run: ``(trace position, thread, lock)``. O(trace length)."""
    return [(i, r.names[tid], what) for i, (_, tid, op, what, result) in enumerate(r.trace)
            if op in TRYLOCKS and not result]


def preempt_at(scenario: Scenario, wanted: Callable[[Run], bool], *, limit: int = 200):
    """The first schedule ``a…ab`` — thread a runs ``i`` decisions, then b takes over, and the
    default goes on — whose run satisfies ``wanted``: ``(schedule text, run)``. ``ValueError``
    if none of the first ``limit`` does. O(limit × run)."""
    for i in range(limit):
        r = run(scenario, (0,) * i + (1,))
        if r.failure is None and wanted(r):
            return encode(r.choices), r
    raise ValueError(f"no schedule of {scenario.name} with one switch does that")


def lock_ops(r: Run, thread: Optional[str] = None) -> list:
    """``(op, lock display name, result)`` of every lock operation in a run, of one thread if
    named. O(trace length)."""
    return [(op, what, result) for _, tid, op, what, result in r.trace
            if (op in BLOCKING or op in TRYLOCKS or op in RELEASES)
            and (thread is None or r.names[tid] == thread)]


# --- schedules and seconds -------------------------------------------------------------------------
#: The scenarios of the chapter's table, real code first.
TABLE_SCENARIOS = ("evict", "put-evict", "guard", "relinquish", "counters", "xen-4.5",
                   "naive-evict", "no-guard", "pool-lookup-race", "lock-leak", "xen-4.5-window",
                   "racy-pgp-count")


def explore_table(names=TABLE_SCENARIOS, preemptions: int = 1, results=None) -> list:
    """One row per scenario: ``{"scenario", "k", "verdict", "schedules", "cut", "seconds",
    "schedules_full", "seconds_full"}`` — the exhaustive search with at most ``preemptions``
    preemptions with sleep sets (``schedules`` run, ``cut`` of them cut short) and without
    (``_full``), inline in this process. ``results``: ``{(name, reduce): Result}`` already
    computed with that bound, reused instead of running again. Raises ``AssertionError`` if
    the two searches disagree on the verdict. O(sum of the schedules)."""
    rows = []
    results = results or {}
    for name in names:
        got = {}
        for reduce in (True, False):
            got[reduce] = results.get((name, reduce)) or explore(name, preemptions,
                                                                 reduce=reduce, workers=1)
        red, full = got[True], got[False]
        assert red.verdict == full.verdict, (name, red.verdict, full.verdict)
        rows.append({"scenario": name, "k": preemptions, "verdict": red.verdict,
                     "schedules": red.schedules, "cut": red.pruned,
                     "seconds": round(red.seconds, 3), "schedules_full": full.schedules,
                     "seconds_full": round(full.seconds, 3)})
    return rows


def load_table(path) -> dict:
    """The cached table written by :func:`main`: ``{"command", "python", "date", "rows"}``."""
    with open(path) as f:
        return json.load(f)


def main(argv=None) -> int:
    """``python -m tmemref.sim.locking FILE [--k K]``: run :func:`explore_table` with bound K
    (default 2) and write it to FILE as JSON, with the command that made it, and how the
    domain creation of the ``relinquish`` scenario ends over all schedules, with and without
    sleep sets (``relinquish_outcomes``: outcome -> schedules)."""
    import argparse
    import platform
    p = argparse.ArgumentParser(prog="python -m tmemref.sim.locking",
                                description="Cache the explorer's schedules and seconds.")
    p.add_argument("file")
    p.add_argument("--k", type=int, default=2)
    a = p.parse_args(argv)
    rows = explore_table(preemptions=a.k)
    census = Scenario("relinquish, census", partial(races.relinquish_world, True))
    outcomes = {("with" if reduce else "without") + " sleep sets":
                explore(census, a.k, reduce=reduce, workers=1).kinds for reduce in (True, False)}
    data = {"command": f"python -m tmemref.sim.locking {a.file} --k {a.k}",
            "python": platform.python_version(), "date": time.strftime("%Y-%m-%d"),
            "rows": rows, "relinquish_outcomes": outcomes}
    with open(a.file, "w") as f:
        json.dump(data, f, indent=1)
        f.write("\n")
    for r in rows:
        print(r)
    return 0


# --- real threads --------------------------------------------------------------------------------
_UUID = (0x51, 0x52)


def _guest_loop(host, domid, seed, stop, stats, victims):
    """Random page and pool operations from one vCPU of ``domid`` until ``stop``. A domain in
    ``victims`` may be destroyed under it: a call for a domain that does not exist raises
    ValueError by design (no such caller exists in Xen); that one exception is counted."""
    rng = random.Random(seed)
    pages = [(seed * 100 + i).to_bytes(8, "little") * 512 for i in range(8)]
    buf = bytearray(4096)
    while not stop.is_set():
        try:
            r = rng.random()
            pool_id, oid, index = rng.randrange(4), (rng.randrange(6), 0, 0), rng.randrange(48)
            if r < 0.45:
                op = TmemOp(cmd=abi.TMEM_PUT_PAGE, pool_id=pool_id, oid=oid, index=index,
                            page=pages[rng.randrange(8)])
            elif r < 0.75:
                op = TmemOp(cmd=abi.TMEM_GET_PAGE, pool_id=pool_id, oid=oid, index=index,
                            page=buf)
            elif r < 0.85:
                op = TmemOp(cmd=abi.TMEM_FLUSH_PAGE, pool_id=pool_id, oid=oid, index=index)
            elif r < 0.90:
                op = TmemOp(cmd=abi.TMEM_FLUSH_OBJECT, pool_id=pool_id, oid=oid)
            elif r < 0.95:
                kind = rng.randrange(3)
                op = TmemOp(cmd=abi.TMEM_NEW_POOL, uuid=_UUID,
                            flags=abi.pool_flags(persist=kind == 1, shared=kind == 2))
            else:
                op = TmemOp(cmd=abi.TMEM_DESTROY_POOL, pool_id=pool_id)
            rc = host.do_tmem_op(domid, op)
            if type(rc) is not int:
                raise TypeError(f"hypercall returned {rc!r}")
            stats["calls"] += 1
        except ValueError:
            if domid not in victims:
                raise
            stats["gone"] += 1
            time.sleep(0.001)


def _dom0_loop(host, seed, stop, stats, guests, victims):
    """Domain 0: destroys and re-creates the victim domains, freezes and thaws, lists,
    flushes and authorises, until ``stop``; then leaves every victim alive."""
    rng = random.Random(seed)
    out = bytearray(32768)
    ctl = partial(TmemOp, cmd=abi.TMEM_CONTROL)
    while not stop.is_set():
        r = rng.random()
        if r < 0.3:
            victim = rng.choice(victims)
            if victim in host.mem.domains:
                host.destroy_domain(victim)
            else:
                host.create_domain(victim, pages=8, max_pages=200)
                stats["recreated"] += 1
        elif r < 0.5:
            sub = rng.choice((abi.TMEMC_FREEZE, abi.TMEMC_THAW, abi.TMEMC_THAW))
            host.do_tmem_op(0, ctl(subop=sub, cli_id=rng.choice(guests)))
        elif r < 0.65:
            host.do_tmem_op(0, ctl(subop=abi.TMEMC_LIST, cli_id=abi.TMEM_CLI_ID_NULL,
                                   arg1=len(out), arg2=1, buf=out))
        elif r < 0.75:
            host.do_tmem_op(0, ctl(subop=abi.TMEMC_FLUSH, cli_id=abi.TMEM_CLI_ID_NULL, arg1=64))
        else:
            host.do_tmem_op(0, TmemOp(cmd=abi.TMEM_AUTH, arg1=rng.choice(guests), flags=1,
                                      uuid=_UUID))
        time.sleep(0.002)
    for victim in victims:
        if victim not in host.mem.domains:
            host.create_domain(victim, pages=8, max_pages=200)


def stress(host, seconds: float = 3.0, *, guests=(1, 2, 3, 4), victims=(3, 4),
           vcpus: int = 2, seed: int = 0, deadline: float = 120.0) -> dict:
    """Real threads on ``host``: ``vcpus`` threads per guest domain doing random page and pool
    operations, and domain 0 destroying and re-creating the ``victims`` among them (and
    freezing, listing, flushing, authorising) for ``seconds``. Creates and authorises the
    guests first. A ``faulthandler`` deadline of ``deadline`` seconds turns a hang into a dump
    of every thread's stack and the end of the process — a hang cannot pass silently. Returns
    ``{"calls", "gone", "recreated", "errors"}`` (``errors``: exceptions that escaped a
    thread, as ``(thread, repr)``). Nondeterministic by nature (real threads). O(seconds)."""
    for d in guests:
        host.create_domain(d, pages=8, max_pages=200)
        if host.do_tmem_op(0, TmemOp(cmd=abi.TMEM_AUTH, arg1=d, flags=1, uuid=_UUID)) != 1:
            raise RuntimeError(f"could not authorise domain {d}")
    stop = threading.Event()
    stats = {"calls": 0, "gone": 0, "recreated": 0, "errors": []}
    targets = [partial(_guest_loop, host, d, seed + 10 * d + v, stop, stats, victims)
               for d in guests for v in range(vcpus)]
    targets.append(partial(_dom0_loop, host, seed + 7, stop, stats, guests, victims))

    def wrap(fn):
        def body():
            try:
                fn()
            except BaseException as e:          # noqa: BLE001 — reported to the caller
                stats["errors"].append((threading.current_thread().name, repr(e)))
        return body

    # the process's own stderr: under Jupyter, sys.stderr is a stream with no file descriptor
    faulthandler.dump_traceback_later(deadline, exit=True, file=sys.__stderr__)
    try:
        threads = [threading.Thread(target=wrap(t), name=f"cpu{i}")
                   for i, t in enumerate(targets)]
        for t in threads:
            t.start()
        time.sleep(seconds)
        stop.set()
        for t in threads:
            t.join()
    finally:
        faulthandler.cancel_dump_traceback_later()
    return stats


if __name__ == "__main__":
    sys.exit(main())
