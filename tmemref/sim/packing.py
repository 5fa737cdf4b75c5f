"""Experiments on packing pages: real pages through the codecs, the sub-page allocator's
blocks and who owns them, and what compression does to eviction.

Not a Xen concept itself: the runners behind the chapter "Compression and the allocator". Each
builds its own :class:`~tmemref.Host`, drives it through ``do_tmem_op`` (or the guest layer),
and, where a runner says so, calls the engine's own eviction (:func:`tmemref.core.evict.tmem_evict`)
directly; every runner calls :meth:`Host.check` before it returns. Timings use
``time.perf_counter`` and are the only nondeterministic results.

==============================  ================================================================
:func:`size_summary`            ratio, share stored whole, the 4033..4063 band
:func:`codec_us`                µs per page to compress and decompress, and sizes, per codec
:func:`sized_page`              a page that a codec compresses to (about) a given size
:func:`tlsf_tour`               a TLSF pool through each named case, one snapshot per step
:func:`tlsf_case`               which named case an allocation or a free was, from snapshots
:func:`block_kinds`             every block the structures use: what it is, whose it is
:func:`pool_blocks`             the blocks of one allocator, frame by frame, with their kinds
:func:`fill`                    one guest puts real pages (and re-reads some) on a small host
:func:`evict_series`            frames freed by each of n evictions in a row
:func:`interleaved_ages`        the worst layout: every frame holds an old and a young page
:func:`put_cost`                eviction attempts, evictions and frames of one more put
:func:`refill_race`             one CPU evicts while another puts: the holes are refilled
:func:`balloon_up`              a guest grows by n frames at the heap's reserve (tmem relinquishes)
:func:`sharelist_pinning`       guests join shared pools between puts; then everything is flushed
:func:`put_get_us`              µs per put and per get through ``do_tmem_op``, per host setting
:func:`copy_us`                 µs per page to copy it into host memory (a put's data work)
:func:`machine`                 the processor, CPUs and Python the timings were taken on
==============================  ================================================================

>>> s = size_summary(np.array([1000, 2000, 4040, 4100]))
>>> s["poor"], s["band"], round(s["ratio"], 2)
(0.25, 1, 1.47)
"""
from __future__ import annotations

import os
import platform
import random
import time

import numpy as np

from .. import abi
from ..abi import TmemOp
from ..core import evict
from ..core.host import Host
from ..core.obj import SIZE_RAW
from ..guest import TmemOps
from ..host.alloc import SIZEOF, tmem_pool
from ..host.compress import get_codec
from ..host.frames import PAGE_SIZE, HostMemory
from ..host.tlsf import (COALESCE_NEXT, COALESCE_PREV, LARGEST_FIT, MAX_ALLOC, NO_SPLIT,
                         REGION_NEW, REGION_RETURN, SPLIT)

__all__ = ["size_summary", "codec_us", "sized_page", "tlsf_tour", "tlsf_case",
           "block_kinds", "pool_blocks", "fill", "evict_series", "interleaved_ages", "put_cost",
           "refill_race", "balloon_up", "sharelist_pinning", "put_get_us", "copy_us", "machine",
           "FREE_NO_MERGE"]

#: The case of a free whose neighbours are both in use: the block goes on a free list as it is.
FREE_NO_MERGE = "free, no free neighbour"


# --- codecs on real pages ------------------------------------------------------------------------

def size_summary(sizes) -> dict:
    """What tmem would do with pages of these compressed ``sizes``:

    * ``ratio`` — raw bytes over compressed bytes (4096·n / Σ sizes);
    * ``poor`` — the share tmem stores whole (``size >= 4064``: ``compress_poor``);
    * ``band`` — how many fall in 4033..4063: kept compressed by Xen, but TLSF cannot serve the
      allocation (``compress_fit``);
    * ``stored_ratio`` — raw bytes over the bytes tmem stores (whole pages count 4096, the band
      too, as tmemref stores it by default), before block headers and metadata. O(n)."""
    sizes = np.asarray(sizes)
    n = len(sizes)
    whole = (sizes >= MAX_ALLOC) | (sizes > LARGEST_FIT)
    return {"ratio": float(PAGE_SIZE * n / sizes.sum()),
            "poor": float((sizes >= MAX_ALLOC).mean()),
            "band": int(((sizes > LARGEST_FIT) & (sizes < MAX_ALLOC)).sum()),
            "stored_ratio": float(PAGE_SIZE * n / np.where(whole, PAGE_SIZE, sizes).sum())}


def codec_us(codecs, pages, *, repeat: int = 3) -> dict:
    """``{name: (µs per page to compress, µs per page to decompress, compressed sizes)}`` for
    each of ``codecs`` (names or codec objects) over ``pages``. Each time is the best of
    ``repeat`` timed passes (``time.perf_counter``), taken in rounds — every codec once per
    round — so that a busy moment of the machine does not fall on one codec's passes alone; the
    sizes are an array in page order. Every page is checked to come back byte for byte.
    O(codecs × repeat × pages)."""
    codecs = [get_codec(c) if isinstance(c, str) else c for c in codecs]
    datas = {}
    for c in codecs:
        datas[c.name] = [c.compress(p) for p in pages]
        if any(c.decompress(d) != p for d, p in zip(datas[c.name], pages)):
            raise AssertionError(f"{c!r} does not give the pages back")
    best = {c.name: [float("inf"), float("inf")] for c in codecs}
    for _ in range(repeat):
        for c in codecs:
            for k, (fn, xs) in enumerate(((c.compress, pages), (c.decompress, datas[c.name]))):
                t0 = time.perf_counter()
                for x in xs:
                    fn(x)
                best[c.name][k] = min(best[c.name][k], time.perf_counter() - t0)
    n = len(pages)
    return {name: (b[0] / n * 1e6, b[1] / n * 1e6,
                   np.fromiter(map(len, datas[name]), dtype=np.int64, count=n))
            for name, b in best.items()}


def sized_page(size: int, *, codec="lzo1x-1", seed: int = 0) -> bytes:
    """A page that ``codec`` (a name or a codec) compresses to exactly ``size`` bytes if it can,
    else to the nearest size above: ``j`` zero bytes, then random bytes (seeded), with ``j``
    found by bisection (the compressed size falls as ``j`` grows). ``ValueError`` if no page of
    this shape reaches ``size``. O(log 4096) compressions."""
    c = get_codec(codec) if isinstance(codec, str) else codec
    noise = random.Random(seed).randbytes(PAGE_SIZE)

    def make(j):
        return bytes(j) + noise[:PAGE_SIZE - j]

    lo, hi = 0, PAGE_SIZE                       # smallest j whose page compresses to <= size
    while lo < hi:
        mid = (lo + hi) // 2
        if len(c.compress(make(mid))) <= size:
            hi = mid
        else:
            lo = mid + 1
    got = len(c.compress(make(lo)))
    if got == size:
        return make(lo)
    if got > size or lo == 0:
        raise ValueError(f"no page of this shape compresses to {size} bytes with {c.name}")
    return make(lo - 1)                         # the nearest size above


# --- TLSF pictures -------------------------------------------------------------------------------

def _chain(desc, frame):
    """The blocks of ``frame`` in a ``describe()`` snapshot: {header offset: (size, state)}."""
    return {off: (size, state) for off, size, state in desc["regions"].get(frame, ())}


def tlsf_case(before: dict, after: dict, op: str, addr: int) -> list:
    """The named cases (:mod:`tmemref.host.tlsf`) an ``op`` (``"alloc"`` or ``"free"``) of the
    block whose payload is at ``addr`` went through, read off two ``describe()`` snapshots.
    An allocation: ``region-new`` (if it took a frame), then ``split`` or ``no-split``. A free:
    ``coalesce-next`` and/or ``coalesce-prev``, then ``region-return`` if the frame went back;
    :data:`FREE_NO_MERGE` if none of those. O(blocks of the frame).

    >>> t = tmem_pool(HostMemory(2)); s0 = t.describe(); a = t.alloc(100)
    >>> tlsf_case(s0, t.describe(), "alloc", a)
    ['region-new', 'split']
    """
    frame, off = addr >> 12, (addr & 0xFFF) - 16
    cases = []
    if op == "alloc":
        if after["num_regions"] > before["num_regions"]:
            cases.append(REGION_NEW)
        blocks = _chain(after, frame)
        size = blocks[off][0]
        nxt = blocks.get(off + 16 + size)
        old = _chain(before, frame).get(off + 16 + size)
        cases.append(SPLIT if nxt and nxt[1] == "free" and old is None else NO_SPLIT)
        return cases
    if op != "free":
        raise ValueError("op must be 'alloc' or 'free'")
    was, now = _chain(before, frame), _chain(after, frame)
    size = was[off][0]
    nxt = off + 16 + size
    if was.get(nxt, (0, ""))[1] == "free":
        cases.append(COALESCE_NEXT)
    if now and off not in now:
        cases.append(COALESCE_PREV)
    if after["num_regions"] < before["num_regions"]:
        cases.append(REGION_RETURN)
    return cases or [FREE_NO_MERGE]


def tlsf_tour(sizes=None):
    """A pool of the real allocator, with frames from a real :class:`HostMemory`, taken through
    every named case: the sub-page allocations of two puts of compressed pages (object, pgp,
    radix node, data of the two ``sizes``; the second page takes a second frame), frees that
    merge with neither, the previous, the next neighbour, an allocation that fits a free block
    exactly, and the free that empties the second frame (it goes back). Returns
    ``[(caption, snapshot, marked address or None, cases)]``, the first the empty pool.
    O(steps × blocks).

    >>> [c for _, _, _, c in tlsf_tour()][1]
    ['region-new', 'split']
    """
    c1, c2 = sizes or (1517, 1803)
    pool = tmem_pool(HostMemory(8))
    names = {}
    out = [("an empty pool: no frame yet (the first is taken on first use)", pool.describe(),
            None, [])]

    def step(what, op, arg):
        before = pool.describe()
        if op == "alloc":
            addr = pool.alloc(arg)
            names[what] = addr
            label = f"alloc {arg} B ({what})"
        else:
            addr = names.pop(arg)
            pool.free(addr)
            label = f"free the {arg}"
        pool.check()
        cases = tlsf_case(before, pool.describe(), op, addr)
        out.append((f"{label}: {', '.join(cases)}", pool.describe(),
                    addr if op == "alloc" else None, cases))

    step("object", "alloc", SIZEOF["obj"])
    step("pgp 1", "alloc", SIZEOF["pgp"])
    step("radix node", "alloc", SIZEOF["objnode"])
    step("page 1, compressed", "alloc", c1)
    step("pgp 2", "alloc", SIZEOF["pgp"])
    step("page 2, compressed", "alloc", c2)
    step(None, "free", "pgp 1")
    step(None, "free", "radix node")
    step(None, "free", "object")
    step("page 3, compressed to 784 B", "alloc", 784)
    step(None, "free", "page 2, compressed")
    return out
    return out


# --- whose blocks --------------------------------------------------------------------------------

def block_kinds(host: Host) -> dict:
    """``{payload address: (kind, owner)}`` for every sub-page block the host's structures use
    (:meth:`Host.sub_page_blocks`): kinds ``object``, ``radix node``, ``pgp``, ``compressed
    page``, ``sharelist`` (owner: the client that joined), ``pcd`` and ``pcd data`` (owner
    None: no client); the owner of the others is the client that owns their pool.
    O(structures)."""
    return {addr: (kind, owner) for _, addr, kind, owner in host.sub_page_blocks()}

def pool_blocks(host: Host, allocator) -> list:
    """The blocks of ``allocator`` (one of the host's TLSF pools), frame by frame in address
    order: ``(frame, header offset, size, state, kind, owner)``; ``state`` is ``used``,
    ``free`` or ``sentinel``, ``kind``/``owner`` come from :func:`block_kinds` (None for free
    blocks and sentinels). O(blocks)."""
    kinds = block_kinds(host)
    rows = []
    for f, blocks in allocator.describe()["regions"].items():
        for off, size, state in blocks:
            kind, owner = kinds[(f << 12) + off + 16] if state == "used" else (None, None)
            rows.append((f, off, size, state, kind, owner))
    return rows


# --- fragmentation -------------------------------------------------------------------------------

def _one_guest(host_pages, guest_pages=16, **host_kw):
    host = Host(host_pages, **host_kw)
    host.create_domain(1, pages=guest_pages, max_pages=guest_pages)
    pid = host.do_tmem_op(1, TmemOp(cmd=abi.TMEM_NEW_POOL, flags=abi.pool_flags()))
    return host, pid


def fill(pages, *, host_pages: int = 1024, rereads: int = 0, seed: int = 1, alpha: float = 1.2,
         check: bool = True, **host_kw) -> dict:
    """One guest (domain 1, 16 frames, a private ephemeral pool) puts every page of ``pages``
    once, in a seeded random order (page ``i`` under handle ``(i // 4, 0, 0)``, index ``i % 4``),
    on a ``Host(host_pages, **host_kw)`` — then re-reads ``rereads`` pages chosen by a Zipf law
    (exponent ``alpha``): each a get (exclusive: the page leaves tmem) and a put back, as
    cleancache would. Returns the host and, per put (in order), ``evicted`` and ``attempts``
    (``evicted_pgs`` and ``evict_attempts`` differences) and ``rc``; ``held`` (ephemeral pages at
    the end) and ``tmem_frames`` (frames billed to nobody: data frames and the global pool's).
    Every hit is checked to give the page back. O(puts)."""
    host, pid = _one_guest(host_pages, **host_kw)
    order = list(range(len(pages)))
    random.Random(seed).shuffle(order)
    picks = []
    if rereads:
        ranks = np.random.default_rng(seed).zipf(alpha, rereads) - 1
        picks = [order[int(r) % len(order)] for r in ranks]
    put = TmemOp(cmd=abi.TMEM_PUT_PAGE, pool_id=pid)
    buf = bytearray(PAGE_SIZE)
    get = TmemOp(cmd=abi.TMEM_GET_PAGE, pool_id=pid, page=buf)
    n = len(order) + len(picks)
    evicted = np.zeros(n, dtype=np.int64)
    attempts = np.zeros(n, dtype=np.int64)
    rcs = np.zeros(n, dtype=np.int64)
    do = host.do_tmem_op
    for k, i in enumerate(order + picks):
        handle = (i // 4, 0, 0), i % 4
        if k >= len(order):
            get.oid, get.index = handle
            if do(1, get) == 1 and buf != pages[i]:
                raise AssertionError(f"page {i} came back changed")
        put.oid, put.index = handle
        put.page = pages[i]
        e, a = host.evicted_pgs, host.evict_attempts
        rcs[k] = do(1, put)
        evicted[k], attempts[k] = host.evicted_pgs - e, host.evict_attempts - a
    if check:
        host.check()
    return {"host": host, "pool": pid, "evicted": evicted, "attempts": attempts, "rc": rcs,
            "held": host.eph_count, "tmem_frames": host.mem.freeable_page_count}


def evict_series(host: Host, n: int) -> np.ndarray:
    """Call :func:`tmemref.core.evict.tmem_evict` ``n`` times (for the host, no client) and
    return the frames each freed (the fall of tmem's anonymous frames: a data frame, a frame
    of the global pool that came empty). Stops early if an eviction fails; ``check()`` after.
    O(n)."""
    mem = host.mem
    freed = []
    for _ in range(n):
        before = mem.freeable_page_count
        if not evict.tmem_evict(host, None):
            break
        freed.append(before - mem.freeable_page_count)
    host.check()
    return np.asarray(freed, dtype=np.int64)


def interleaved_ages(n_old: int = 300, *, size: int = 1910, compress: bool = True,
                     host_pages: int = 1024) -> dict:
    """The layout that makes eviction slow: one guest puts ``2 * n_old`` pages that compress to
    ``size`` bytes (two to a frame with their pgps, at the default size), flushes every second
    one, and puts ``n_old`` new pages, which TLSF places in the holes. Each frame then holds an
    *old* page (at the head of the LRU list) and a *young* one (at the tail). Finally a
    domain 3 takes heap frames until the 1 MB guard is one frame short, so the next put must
    evict. Returns ``host``, ``pool``, ``mixed`` (frames of the global pool holding one old and
    one young page), ``frames`` (frames holding pages) and ``next`` (a fresh page for
    :func:`put_cost`). ``compress=False``: the same puts and flushes, uncompressed. O(n_old)."""
    host, pid = _one_guest(host_pages, compress=compress)
    pages = [sized_page(size, seed=s) for s in range(3 * n_old + 1)]
    ops = TmemOps(host, 1)

    def handle(i):
        return (i // 64, 0, 0), i % 64

    for i in range(2 * n_old):
        if ops.put_page(pid, *handle(i), pages[i]) != 1:
            raise RuntimeError("the host is too small for the pages")
    for i in range(1, 2 * n_old, 2):
        ops.flush_page(pid, *handle(i))
    for i in range(2 * n_old, 3 * n_old):
        if ops.put_page(pid, *handle(i), pages[i]) != 1:
            raise RuntimeError("the host is too small for the pages")
    where = {}
    for obj in host.clients[1].pools[pid].objects():
        for index, pgp in obj.tree.items():
            young = obj.oid[0] * 64 + index >= 2 * n_old
            where.setdefault(pgp.data >> 12 if pgp.size else pgp.data, set()).add(young)
    take = host.mem.guard_pages() - host.min_free_pages + 1
    host.create_domain(3, pages=take, max_pages=take)
    host.check()
    return {"host": host, "pool": pid, "mixed": sum(len(s) == 2 for s in where.values()),
            "frames": len(where), "next": (handle(3 * n_old), pages[3 * n_old])}


def put_cost(host: Host, pool: int, handle, page, domid: int = 1) -> dict:
    """One put, measured: its return value, the eviction ``attempts`` and ``evicted`` pages it
    cost, and the frames the guard counted free before and after. ``check()`` after. O(put)."""
    mem = host.mem
    before = mem.guard_pages()
    a, e = host.evict_attempts, host.evicted_pgs
    rc = TmemOps(host, domid).put_page(pool, *handle, page)
    host.check()
    return {"rc": rc, "attempts": host.evict_attempts - a, "evicted": host.evicted_pgs - e,
            "free_before": before, "free_after": mem.guard_pages()}


def refill_race(host: Host, pool: int, pages, *, domid: int = 1,
                first_index: int = 1 << 20) -> dict:
    """Two CPUs, interleaved by hand: in each round CPU A evicts the oldest ephemeral page
    (:func:`tmemref.core.evict.tmem_evict`, as a request for memory from Xen's heap does) and
    CPU B puts the next of ``pages`` (through ``do_tmem_op``, into ``pool`` of ``domid``, at
    indexes from ``first_index`` of object ``(1 << 40, 0, 0)``). Returns ``rounds``,
    ``frames_freed`` (by all of A's evictions, net of B's puts: the fall of tmem's anonymous
    frames) and ``refilled`` (rounds in which B's compressed page went into the frame A's
    eviction had just taken a compressed page out of). ``check()`` after. O(rounds)."""
    client_pool = host.clients[domid].pools[pool]
    oid = (1 << 40, 0, 0)
    ops = TmemOps(host, domid)
    start = host.mem.freeable_page_count
    refilled = 0
    for k, page in enumerate(pages):
        victim = host.eph_list.next.owner
        opened = victim.data >> 12 if victim.size != SIZE_RAW else None
        if not evict.tmem_evict(host, None):
            raise RuntimeError("nothing to evict")
        if ops.put_page(pool, oid, first_index + k, page) != 1:
            raise RuntimeError("a put failed")
        obj = client_pool.find(oid)
        new = obj.tree.lookup(first_index + k) if obj is not None else None
        refilled += new is not None and new.size != SIZE_RAW and new.data >> 12 == opened
    host.check()
    return {"rounds": len(pages), "frames_freed": start - host.mem.freeable_page_count,
            "refilled": refilled}


def balloon_up(host: Host, domid: int, extra: int) -> dict:
    """Domain ``domid`` (created here, empty, if it does not exist) balloons up by ``extra``
    frames beyond everything free on the heap and on tmem's page list, so the last ``extra``
    must come from tmem relinquishing frames, each after at most ``evict_budget`` evictions.
    Returns ``asked``, ``got`` (frames the domain gained), ``short`` (asked - got), and the
    differences of ``relinq_attempts``, ``relinq_pgs``, ``evict_attempts``, ``evicted_pgs``.
    O(asked)."""
    mem = host.mem
    if domid not in mem.domains:
        host.create_domain(domid, pages=0, max_pages=mem.nframes)
    d = mem.domains[domid]
    have = len(d.own_frames)
    asked = len(mem.heap) - mem.midsize_alloc_zone_pages + len(mem.page_list) + extra
    counters = ("relinq_attempts", "relinq_pgs", "evict_attempts", "evicted_pgs")
    start = [getattr(host, c) for c in counters]
    got = host.balloon(domid, have + asked) - have
    host.check()
    out = {"asked": asked, "got": got, "short": asked - got}
    out.update((c, getattr(host, c) - s) for c, s in zip(counters, start))
    return out


# --- accounting ----------------------------------------------------------------------------------

def sharelist_pinning(pages, *, guests: int = 3, mounts: int = 4, puts_between: int = 40,
                      **host_kw) -> dict:
    """Who holds which frames, and what a full flush cannot free. ``guests`` domains each put
    compressed pages into a private ephemeral pool; between every ``puts_between`` puts one of
    them mounts one more of ``mounts`` cluster filesystems (joins a shared pool: one sharelist
    entry, 24 bytes, allocated from the global pool with no owner); domain 1 also keeps 100
    pages in a persistent pool (its own billed pool). Then dom0 flushes all of tmem
    (``TMEMC_FLUSH``). Returns ``before`` and ``after`` (:func:`tmemref.viz.frame_counts`),
    ``sharelists`` (entries), ``sharelist_frames`` (distinct frames holding them), ``left``
    (frames the global pool still holds after the flush), ``freeable_left`` (what tmem then
    reports freeable), ``left_kinds`` (kinds of the blocks in those frames), ``neighbours``
    (kinds of the other blocks that shared a frame with a sharelist entry before the flush)
    and ``host``.
    O(puts)."""
    from ..viz.frames import frame_counts
    host_kw.setdefault("compress", True)
    host = Host(4096, shared_auth=False, **host_kw)
    ops = {}
    for d in range(1, guests + 1):
        host.create_domain(d, pages=16, max_pages=1024)
        ops[d] = TmemOps(host, d)
    private = {d: ops[d].new_pool() for d in ops}
    persistent = ops[1].new_pool(abi.TMEM_POOL_PERSIST)
    k = 0
    for d in ops:
        for m in range(mounts):
            for _ in range(puts_between):
                g = 1 + k % guests
                if ops[g].put_page(private[g], (k // 4, 0, 0), k % 4, pages[k % len(pages)]) != 1:
                    raise RuntimeError("a put failed")
                k += 1
            ops[d].new_pool(abi.TMEM_POOL_SHARED, uuid=(m + 1, 0x5EED))
    for i in range(100):
        if ops[1].put_page(persistent, (i // 4, 0, 0), i % 4, pages[(7 * i) % len(pages)]) != 1:
            raise RuntimeError("a persistent put failed")
    host.check()
    before = frame_counts(host)
    metas = [m for p in host.shared_pools if p is not None for m in p.share_meta]
    frames = sorted({m >> 12 for m in metas})
    neighbours = sorted({row[4] for row in pool_blocks(host, host.eph_mempool)
                         if row[0] in frames and row[4] not in (None, "sharelist")})
    host.do_tmem_op(0, TmemOp(cmd=abi.TMEM_CONTROL, subop=abi.TMEMC_FLUSH,
                              cli_id=abi.TMEM_CLI_ID_NULL, arg1=0xFFFF_FFF0))
    host.check()
    kinds = sorted({row[4] for row in pool_blocks(host, host.eph_mempool) if row[4]})
    return {"host": host, "before": before, "after": frame_counts(host),
            "sharelists": len(metas), "sharelist_frames": len(frames),
            "left": host.eph_mempool.num_regions, "freeable_left": host.mem.freeable_pages(),
            "left_kinds": kinds, "neighbours": neighbours}


# --- CPU -----------------------------------------------------------------------------------------

def put_get_us(pages, configs, *, repeat: int = 3) -> dict:
    """``{label: (µs per put, µs per get)}`` through ``do_tmem_op``, for each ``label: host
    keywords`` of ``configs``: one guest puts every page into a private ephemeral pool of a host
    big enough that nothing is evicted, then gets them all; the ops are built before the clock
    starts. Each figure is the best of ``repeat`` rounds (``time.perf_counter``), every
    configuration once per round. Every get is checked. O(configs × repeat × pages)."""
    n = len(pages)
    best = {label: [float("inf"), float("inf")] for label in configs}
    for _ in range(repeat):
        for label, host_kw in configs.items():
            host, pid = _one_guest(n + n // 4 + 1024, guest_pages=4, **host_kw)
            puts = [TmemOp(cmd=abi.TMEM_PUT_PAGE, pool_id=pid, oid=(i // 4, 0, 0),
                           index=i % 4, page=p) for i, p in enumerate(pages)]
            bufs = [bytearray(PAGE_SIZE) for _ in pages]
            gets = [TmemOp(cmd=abi.TMEM_GET_PAGE, pool_id=pid, oid=op.oid, index=op.index,
                           page=b) for op, b in zip(puts, bufs)]
            do = host.do_tmem_op
            t0 = time.perf_counter()
            for op in puts:
                do(1, op)
            t1 = time.perf_counter()
            for op in gets:
                do(1, op)
            t2 = time.perf_counter()
            if any(b != p for b, p in zip(bufs, pages)):
                raise AssertionError("a get did not give its page back")
            host.check()
            b = best[label]
            b[0], b[1] = min(b[0], t1 - t0), min(b[1], t2 - t1)
    return {label: (b[0] / n * 1e6, b[1] / n * 1e6) for label, b in best.items()}


def copy_us(pages, *, repeat: int = 5) -> float:
    """µs per page to copy it into a frame of host memory (what a put without compression does
    with the data: ``mem.bytes[o:o + 4096] = page``), best of ``repeat``
    (``time.perf_counter``). O(repeat × pages)."""
    mem = HostMemory(1)
    frame = mem.bytes
    best = float("inf")
    for _ in range(repeat):
        t0 = time.perf_counter()
        for p in pages:
            frame[0:PAGE_SIZE] = p
        best = min(best, time.perf_counter() - t0)
    return best / len(pages) * 1e6


def machine() -> str:
    """The processor (from /proc/cpuinfo when there is one), its CPUs and the Python the
    timings are taken with, e.g. ``"AMD EPYC, 2 CPUs, CPython 3.11.2"``. O(1)."""
    model = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                if line.startswith("model name"):
                    model = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    return (f"{model}, {os.cpu_count()} CPUs, {platform.python_implementation()} "
            f"{platform.python_version()}")
