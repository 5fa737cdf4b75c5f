"""Experiment runners for the eviction chapter: replay a workload against a fresh Host.

Every runner builds its own :class:`~tmemref.Host`, drives it only through
:meth:`Host.do_tmem_op` (plus, where a runner says so, the engine's own eviction functions
with a lock held on purpose), calls :meth:`Host.check` at the end, and returns plain numbers
or numpy arrays — deterministic for a given seed.

A reference of a :class:`~tmemref.sim.workloads.Workload` becomes hypercalls as cleancache
makes them, with a guest page cache of size zero (the guest drops every page at once):

* **get** the page; a return of 1 is a *hit* (and the data is checked: it must be the bytes
  that were put for that handle, else :class:`~tmemref.InvariantError`);
* then **put** it back if the get missed — or, in a *private* pool, also after a hit, since a
  private ephemeral get is exclusive: the hit took the page out of tmem, and the guest puts it
  again when it drops it. In a *shared* pool a hit leaves the page in place (and moves it to
  the young end of the LRU lists), so only misses are put.

Either way a page that is referenced stays in tmem and becomes the youngest page: tmem with
this workload is an LRU cache of file pages, which is what these experiments measure.

Runners:

=============================  =============================================================
:func:`make_bench`             a host, one domain and one ephemeral pool per guest, weights
:func:`replay`                 drive a workload, return the hit of every reference
:func:`hit_ratio`              fraction of hits after a warm-up, on a fresh host
:func:`hit_ratio_curve`        :func:`hit_ratio` for several host sizes
:func:`memory_curve`           the same, with tmem's capacity and a plain LRU cache's ratio
:func:`lru_hits`               the oracle: hits of a textbook LRU cache of a given size
:func:`weights_experiment`     two or more weighted guests under pressure, sampled over time
:func:`evictions_per_put`      eviction attempts made by each put as memory runs short
:func:`locked_walk`            pages an eviction walks past when one object's lock is held
:func:`held_elsewhere`         hold a lock in another thread ("another CPU") for a while
:func:`lru_order`              the pages on an ephemeral list, oldest first, as text
:func:`quota_truth_table`      ``client_over_quota`` under both rules for given numbers
=============================  =============================================================

>>> from tmemref.sim.workloads import scan
>>> hit_ratio(1024, scan(600, 10, 20), warmup=200)      # 200 pages fit: every re-read hits
1.0
"""
from __future__ import annotations

import errno
import threading
from contextlib import contextmanager
from dataclasses import dataclass, field

import numpy as np

from .. import abi
from ..abi import TmemOp
from ..core import evict
from ..ds.dlist import list_iter
from ..core.host import Host
from ..errors import InvariantError
from ..progress import progress
from .workloads import Workload

__all__ = ["Bench", "make_bench", "replay", "hit_ratio", "hit_ratio_curve",
           "weights_experiment", "evictions_per_put", "locked_walk", "set_weight",
           "free_frames", "held_elsewhere", "lru_hits", "memory_curve", "lru_order",
           "quota_truth_table"]

PAGE = 4096
TAG = 24          # bytes at the head of every page naming its handle (checked on a hit)


@dataclass
class Bench:
    """A host prepared for an experiment: guest g is domain ``1 + g`` with ephemeral pool
    ``pools[g]``. ``shared``: the pools are shared ones (each guest its own uuid)."""
    host: Host                         # the machine
    pools: list                        # pool id of each guest, in its own client
    shared: bool = False               # shared pools (gets leave pages) or private (exclusive)
    domids: list = field(default_factory=list)   # domain of each guest (1 + g)


def set_weight(host: Host, domid: int, weight: int) -> int:
    """Dom0 sets a client's weight: ``TMEM_CONTROL`` / ``TMEMC_SET_WEIGHT`` (``xl tmem-set
    -w``). Returns the hypercall's value (0 done, -1 no such client)."""
    return host.do_tmem_op(0, TmemOp(cmd=abi.TMEM_CONTROL, subop=abi.TMEMC_SET_WEIGHT,
                                     cli_id=domid, arg1=int(weight)))


def free_frames(host: Host) -> int:
    """Frames the 1 MB guard counts as free: tmem_page_list plus the heap beyond its reserve
    (:meth:`~tmemref.host.frames.HostMemory.guard_pages`)."""
    return host.mem.guard_pages()


@contextmanager
def held_elsewhere(lock, how: str = "lock"):
    """Hold ``lock`` in another thread — another CPU in the middle of an operation — for the
    duration of the ``with`` block. ``how``: ``"lock"`` (a :class:`~tmemref.host.locks.SpinLock`),
    ``"read"`` or ``"write"`` (a :class:`~tmemref.host.locks.RWLock`). The thread takes the lock
    before the block starts and releases it after the block ends, so the lock-order checker
    (per thread) sees nothing unusual.

    >>> from tmemref.host.locks import SpinLock
    >>> l = SpinLock("obj_spinlock", 2)
    >>> with held_elsewhere(l):
    ...     l.trylock()
    False
    >>> l.held
    False
    """
    take, give = {"lock": ("acquire", "release"), "read": ("read_lock", "read_unlock"),
                  "write": ("write_lock", "write_unlock")}[how]
    taken, done = threading.Event(), threading.Event()

    def cpu():
        getattr(lock, take)()
        taken.set()
        done.wait()
        getattr(lock, give)()

    t = threading.Thread(target=cpu, name="another-cpu", daemon=True)
    t.start()
    taken.wait()
    try:
        yield lock
    finally:
        done.set()
        t.join()


def make_bench(host_pages: int, guests: int = 1, *, guest_pages: int = 16,
               pool: str = "private", weights=None, quota_rule: str = "doc",
               **host_kw) -> Bench:
    """A fresh ``Host(host_pages, quota_rule=...)`` with ``guests`` domains (1, 2, ...) of
    ``guest_pages`` frames each, one ephemeral pool per guest (``pool``: ``"private"`` or
    ``"shared"``, each shared pool under its own uuid), and, if given, ``weights[g]`` set on
    guest g's client by dom0. O(guests)."""
    if pool not in ("private", "shared"):
        raise ValueError("pool must be 'private' or 'shared'")
    shared = pool == "shared"
    if shared:
        host_kw.setdefault("shared_auth", False)     # no TMEM_AUTH dance needed
    host = Host(host_pages, quota_rule=quota_rule, **host_kw)
    pools, domids = [], []
    for g in range(guests):
        d = 1 + g
        host.create_domain(d, pages=guest_pages, max_pages=guest_pages)
        pid = host.do_tmem_op(d, TmemOp(cmd=abi.TMEM_NEW_POOL, uuid=(g + 1, 0xC0FFEE) if shared
                                        else (0, 0), flags=abi.pool_flags(shared=shared)))
        if pid < 0:
            raise RuntimeError(f"NEW_POOL for domain {d} returned {abi.rc_name(pid)}")
        pools.append(pid)
        domids.append(d)
    if weights is not None:
        if len(weights) != guests:
            raise ValueError("one weight per guest")
        for d, w in zip(domids, weights):
            if set_weight(host, d, w) != 0:
                raise RuntimeError(f"SET_WEIGHT failed for domain {d}")
    return Bench(host, pools, shared, domids)


def replay(bench: Bench, workload: Workload, *, every: int = 0, observe=None) -> np.ndarray:
    """Drive ``workload`` against ``bench`` (get, then put on a miss — and after every hit in a
    private pool). Returns a bool array: was reference i a hit?

    ``every`` > 0 calls ``observe(i, host)`` after reference ``i`` whenever ``(i + 1) %
    every == 0``. A put that fails (-ENOMEM: nothing evictable) is allowed — the page is just
    not cached — any other failure raises ``RuntimeError``. O(len(workload)) hypercalls."""
    host, pools, shared = bench.host, bench.pools, bench.shared
    if workload.guests > len(pools):
        raise ValueError("the workload has more guests than the bench")
    domids = bench.domids
    page = bytearray(PAGE)
    buf = bytearray(PAGE)
    get = TmemOp(cmd=abi.TMEM_GET_PAGE, page=buf)
    put = TmemOp(cmd=abi.TMEM_PUT_PAGE, page=page)
    hits = np.zeros(len(workload), dtype=bool)
    do = host.do_tmem_op
    enomem = -errno.ENOMEM
    for i, (g, f, p) in enumerate(workload):
        d, pid, oid = domids[g], pools[g], (f, 0, 0)
        tag = f"{g}:{f}:{p}".encode().ljust(TAG, b".")
        get.pool_id, get.oid, get.index = pid, oid, p
        rc = do(d, get)
        if rc == 1:
            if bytes(buf[:TAG]) != tag:
                raise InvariantError(f"get of guest {g} file {f} page {p} returned the data "
                                     f"of {bytes(buf[:TAG])!r}")
            hits[i] = True
        elif rc not in (0, -abi.EEMPTY):
            raise RuntimeError(f"GET returned {abi.rc_name(rc)}")
        if rc != 1 or not shared:
            page[:TAG] = tag
            put.pool_id, put.oid, put.index = pid, oid, p
            rc = do(d, put)
            if rc != 1 and rc != enomem:
                raise RuntimeError(f"PUT returned {abi.rc_name(rc)}")
        if every and (i + 1) % every == 0:
            observe(i, host)
    return hits


def hit_ratio(host_pages: int, workload: Workload, *, warmup: int = 0, guest_pages: int = 16,
              pool: str = "private", check: bool = True, **bench_kw) -> float:
    """Replay ``workload`` on a fresh host of ``host_pages`` frames and return the fraction of
    references after the first ``warmup`` that hit. ``host.check()`` at the end (``check``).
    O(len(workload)).

    >>> from tmemref.sim.workloads import zipf
    >>> w = zipf(2000, 8, 8, seed=3)                 # 64 pages: all fit in 1024 frames
    >>> hit_ratio(1024, w, warmup=1000) > 0.99
    True
    """
    if not 0 <= warmup < len(workload):
        raise ValueError("need 0 <= warmup < len(workload)")
    bench = make_bench(host_pages, workload.guests, guest_pages=guest_pages, pool=pool,
                       **bench_kw)
    hits = replay(bench, workload)
    if check:
        bench.host.check()
    return float(hits[warmup:].mean())


def hit_ratio_curve(sizes, workload: Workload, **kw) -> np.ndarray:
    """:func:`hit_ratio` for each host size in ``sizes`` (each on a fresh host; a progress bar
    on a terminal)."""
    return np.array([hit_ratio(int(n), workload, **kw)
                     for n in progress(sizes, desc="hit ratio", unit=" hosts")])


def lru_hits(workload: Workload, capacity: float) -> np.ndarray:
    """The oracle: which references hit in a textbook LRU cache of ``capacity`` pages (a read
    makes a page the youngest; a miss inserts it and, when full, drops the oldest).
    ``capacity=float("inf")`` gives the compulsory misses only (first references).
    O(len(workload)), an ``OrderedDict``.

    >>> from tmemref.sim.workloads import scan
    >>> lru_hits(scan(6, 1, 3), 3).tolist(), lru_hits(scan(6, 1, 3), 2).tolist()
    ([False, False, False, True, True, True], [False, False, False, False, False, False])
    """
    from collections import OrderedDict
    cache: OrderedDict = OrderedDict()
    out = np.zeros(len(workload), dtype=bool)
    for i, key in enumerate(workload.keys().tolist()):
        if key in cache:
            out[i] = True
            cache.move_to_end(key)
        else:
            cache[key] = None
            if len(cache) > capacity:
                cache.popitem(last=False)
    return out


def memory_curve(sizes, workload: Workload, *, warmup: int = 0, **kw) -> dict:
    """For each host size: tmem's hit ratio after ``warmup`` (as :func:`hit_ratio`), its
    ``capacity`` (the most ephemeral pages it held at once: what the frames left after guest
    memory, the 1 MB guard and metadata could hold), and the hit ratio of a plain LRU cache
    of that capacity (:func:`lru_hits`), plus ``agree`` — the fraction of references on which
    tmem and that LRU cache agree. Arrays, one entry per size; ``host.check()`` after each.
    ``infinite`` is the hit ratio with unlimited memory (first references miss, nothing else).
    A progress bar on a terminal.
    """
    sizes = np.asarray(sizes, dtype=np.int64)
    out = {"sizes": sizes, "hit_ratio": np.zeros(len(sizes)), "capacity":
           np.zeros(len(sizes), dtype=np.int64), "lru": np.zeros(len(sizes)),
           "agree": np.zeros(len(sizes))}
    for j, n in enumerate(progress(sizes.tolist(), desc="memory curve", unit=" hosts")):
        bench = make_bench(n, workload.guests, **kw)
        peak = [0]

        def observe(i, h):
            if h.eph_count > peak[0]:
                peak[0] = h.eph_count

        hits = replay(bench, workload, every=1, observe=observe)
        bench.host.check()
        oracle = lru_hits(workload, peak[0])
        out["hit_ratio"][j] = hits[warmup:].mean()
        out["capacity"][j] = peak[0]
        out["lru"][j] = oracle[warmup:].mean()
        out["agree"][j] = (hits == oracle).mean()
    out["infinite"] = float(lru_hits(workload, float("inf"))[warmup:].mean())
    return out


def lru_order(host: Host, cli_id: int | None = None) -> list:
    """The pages on the global ephemeral list (or client ``cli_id``'s), oldest first, named
    ``d1:p0:(7,0,0)[3]`` as the pictures name them. O(pages on the list)."""
    from ..viz._common import page_text
    head = host.eph_list if cli_id is None else host.clients[cli_id].eph_list
    return [page_text(n.owner) for n in list_iter(head)]


def quota_truth_table(rows) -> list:
    """Call :func:`tmemref.core.evict.client_over_quota` under both rules for each ``(c, g, w,
    T)`` in ``rows``: the client holds ``c`` of the host's ``g`` ephemeral pages and has weight
    ``w`` of a total ``T``. Returns one dict per row with ``c, g, w, T``, ``share`` (c/g),
    ``weight_share`` (w/T) and the verdicts ``doc`` and ``xen`` (True: evict from its own list).
    The host and client are stand-ins carrying just the fields the function reads.

    >>> [(r["doc"], r["xen"]) for r in quota_truth_table([(10, 100, 1, 4), (50, 100, 1, 4)])]
    [(False, True), (True, False)]
    """
    from types import SimpleNamespace
    out = []
    for c, g, w, total in rows:
        row = {"c": c, "g": g, "w": w, "T": total, "share": c / g if g else float("nan"),
               "weight_share": w / total if total else float("nan")}
        for rule in ("doc", "xen"):
            host = SimpleNamespace(client_weight_total=total, eph_count=g, quota_rule=rule)
            client = SimpleNamespace(weight=w, eph_count=c)
            row[rule] = bool(evict.client_over_quota(host, client))
        out.append(row)
    return out


def weights_experiment(weights=(1, 3), quota_rule: str = "doc", *, workload: Workload | None = None,
                       host_pages: int = 1024, guest_pages: int = 16, samples: int = 60,
                       n_refs: int = 6000, n_files: int = 64, pages_per_file: int = 16,
                       alpha: float = 0.6, seed: int = 0, check: bool = True) -> dict:
    """Guests with ``weights`` (one each) share a host too small for them all; each reads its
    own file set. Sampled ``samples`` times over the run.

    Default workload: :func:`~tmemref.sim.workloads.zipf` with ``n_refs`` references per guest
    to ``n_files * pages_per_file`` pages each (``alpha``, ``seed``), guests in turn.
    Returns a dict of numpy arrays (rows = samples, columns = guests):

    * ``t`` — references replayed so far (all guests) at each sample;
    * ``resident`` — each guest's ephemeral pages in tmem (its client's ``eph_count``);
    * ``share`` — ``resident`` over all ephemeral pages;
    * ``hit_ratio`` — each guest's hit ratio over the references since the previous sample;
    * ``weight_share`` — each weight over the sum of weights (1-d);
    * ``final_share`` / ``final_hit_ratio`` — means over the last quarter of the samples (1-d);
    * ``evict_attempts``, ``evicted`` — host counters at the end (ints);
    * ``weights``, ``quota_rule``.

    ``host.check()`` at the end. O(references).

    With two equally busy guests the weights hardly matter under either rule: each guest then
    evicts mostly its own oldest pages anyway, so the split stays where plain LRU puts it. The
    rules differ when one guest is busier or arrives later — :func:`~.workloads.swamp`.
    """
    from .workloads import zipf
    guests = len(weights)
    if workload is None:
        workload = zipf(n_refs, n_files, pages_per_file, alpha, seed=seed, guests=guests)
    if workload.guests != guests:
        raise ValueError("one weight per guest of the workload")
    bench = make_bench(host_pages, guests, guest_pages=guest_pages, weights=list(weights),
                       quota_rule=quota_rule)
    host = bench.host
    clients = [host.clients[d] for d in bench.domids]
    every = max(1, len(workload) // samples)
    rows_t, rows_res = [], []

    def observe(i, h):
        rows_t.append(i + 1)
        rows_res.append([c.eph_count for c in clients])

    hits = replay(bench, workload, every=every, observe=observe)
    if check:
        host.check()
    t = np.array(rows_t, dtype=np.int64)
    resident = np.array(rows_res, dtype=np.int64).reshape(len(t), guests)
    total = resident.sum(axis=1, keepdims=True)
    share = np.divide(resident, total, out=np.zeros(resident.shape), where=total > 0)
    bounds = np.concatenate([[0], t])
    hr = np.zeros((len(t), guests))
    for k in range(len(t)):
        part = slice(bounds[k], bounds[k + 1])
        for g in range(guests):
            mine = workload.guest[part] == g
            hr[k, g] = hits[part][mine].mean() if mine.any() else np.nan
    tail = slice(len(t) - max(1, len(t) // 4), len(t))
    w = np.asarray(weights, dtype=np.float64)
    return {
        "t": t, "resident": resident, "share": share, "hit_ratio": hr,
        "weight_share": w / w.sum() if w.sum() else np.full(guests, np.nan),
        "final_share": share[tail].mean(axis=0), "final_hit_ratio": hr[tail].mean(axis=0),
        "evict_attempts": int(host.evict_attempts), "evicted": int(host.evicted_pgs),
        "weights": tuple(weights), "quota_rule": quota_rule,
    }


def evictions_per_put(host_pages: int = 1024, n_puts: int = 1500, *, guest_pages: int = 16,
                      pages_per_object: int = 16, check: bool = True) -> dict:
    """One guest puts ``n_puts`` distinct pages (``pages_per_object`` per object) into an
    ephemeral pool, and for each put records what the 1 MB guard saw and did. Returns arrays
    (one entry per put):

    * ``free_before`` — free frames the guard counts (:func:`free_frames`) before the put;
    * ``attempts`` — eviction attempts the put made (``evict_attempts`` difference);
    * ``evicted`` — pages it evicted; ``rc`` — its return value;

    plus ``min_free_pages`` and ``resident`` (ephemeral pages at the end). O(n_puts)."""
    bench = make_bench(host_pages, 1, guest_pages=guest_pages)
    host, pid = bench.host, bench.pools[0]
    page = bytearray(PAGE)
    op = TmemOp(cmd=abi.TMEM_PUT_PAGE, pool_id=pid, page=page)
    free_before = np.zeros(n_puts, dtype=np.int64)
    attempts = np.zeros(n_puts, dtype=np.int64)
    evicted = np.zeros(n_puts, dtype=np.int64)
    rcs = np.zeros(n_puts, dtype=np.int64)
    for i in range(n_puts):
        op.oid, op.index = (i // pages_per_object, 0, 0), i % pages_per_object
        page[:8] = i.to_bytes(8, "little")
        free_before[i] = free_frames(host)
        a, e = host.evict_attempts, host.evicted_pgs
        rcs[i] = host.do_tmem_op(1, op)
        attempts[i] = host.evict_attempts - a
        evicted[i] = host.evicted_pgs - e
    if check:
        host.check()
    return {"free_before": free_before, "attempts": attempts, "evicted": evicted, "rc": rcs,
            "min_free_pages": host.min_free_pages, "resident": host.eph_count}


def locked_walk(object_pages: int, other_pages: int = 0, *, host_pages: int = 1024,
                guard_first: bool = False, check: bool = True) -> dict:
    """The livelock of tmem-internals.html, measured. Guest 1 has put ``object_pages`` pages
    into one object (the oldest pages in tmem), then guest 2 ``other_pages`` pages. Guest 1
    now puts one more page into its object and needs a free frame.

    * ``guard_first=False`` — the order *before* the 1 MB guard: the put already holds its
      object's lock when it evicts, so each ``tmem_evict`` walks past every page of that
      object (``SKIP_OBJ_BUSY``) before reaching anything it may take; with nothing else to
      take it fails, and the put retries up to ``evict_budget`` times.
    * ``guard_first=True`` — the guard's order: evict first, take the object lock after;
      the oldest page simply goes.

    This runner takes guest 1's object lock itself (standing in for the put in progress) and
    calls :func:`tmemref.core.evict.tmem_evict` like :func:`~tmemref.core.evict.ensure_avail_pages`
    does — at most ``evict_budget`` failures — counting the pages each attempt visits. Returns
    ``visits`` (pages looked at, all attempts), ``attempts``, ``evicted`` (0 or 1),
    ``victim`` (the page that went, as text, or None) and ``skips`` (reason -> count).
    The lock is released before returning; ``host.check()`` at the end. O(budget × pages)."""
    bench = make_bench(host_pages, 2, guest_pages=16)
    host = bench.host
    page = bytearray(PAGE)
    for d, n, oid in ((1, object_pages, (1, 0, 0)), (2, other_pages, (2, 0, 0))):
        for i in range(n):
            page[:8] = (d << 32 | i).to_bytes(8, "little")
            rc = host.do_tmem_op(d, TmemOp(cmd=abi.TMEM_PUT_PAGE, pool_id=bench.pools[d - 1],
                                           oid=oid, index=i, page=page))
            if rc != 1:
                raise RuntimeError(f"setup put returned {abi.rc_name(rc)}")
    client = host.clients[1]
    obj = client.pools[bench.pools[0]].find((1, 0, 0)) if object_pages else None
    skips: dict = {}
    seen = [0]
    victim = []
    before = host.evicted_pgs

    def trace(pgp, reason):
        seen[0] += 1
        skips[reason] = skips.get(reason, 0) + 1

    attempts = evicted = 0
    if obj is not None and not guard_first:
        obj.lock.acquire()                        # the put in progress holds its object lock
    try:
        failures = 0
        while failures < host.evict_budget:
            attempts += 1
            listed = lru_order(host)
            got = evict.tmem_evict(host, client, trace=trace)
            if got:
                left = set(lru_order(host))
                victim.extend(t for t in listed if t not in left)
                evicted = 1
                seen[0] += 1                      # the page taken was visited too
                break
            failures += 1
    finally:
        if obj is not None and not guard_first:
            obj.lock.release()
    if check:
        host.check()
    if host.evicted_pgs - before != evicted:
        raise InvariantError("evicted_pgs disagrees with what tmem_evict returned")
    return {"visits": seen[0], "attempts": attempts, "evicted": evicted,
            "victim": victim[0] if victim else None, "skips": dict(sorted(skips.items()))}

