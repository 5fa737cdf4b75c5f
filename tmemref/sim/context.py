"""Xen: tmem among its relatives — its history, a feature table, and what each packs into memory.

Not an engine part: the data and the measurement of the book's chapter "tmem in context".

* :data:`HISTORY` — dated events of tmem's life in Xen and Linux, each with its public source
  (a key of ``book/references.bib``);
* :data:`FEATURES` — Xen's tmem beside zcache, RAMster, zswap, zram and KSM, on the same
  columns, each row with its sources;
* :func:`sample_pages` — a fixed, deterministic sample of real file pages of this machine, each
  with the handle (file, page index) a cleancache put would give it;
* :func:`tmem_footprint` — the memory the engine (:class:`~tmemref.Host`) takes to hold those
  pages in a private ephemeral pool, under Xen's boot options ``tmem_compress``,
  ``tmem_dedup`` and ``tmem_tze``: frames counted by the engine, not estimated;
* :func:`zswap_footprint` — a small model of what a zswap-like store takes for the same pages:
  same-filled pages detected and kept as one value, every other page compressed on its own
  (LZ4 by default) into zsmalloc-like size classes, no dedup.

Both footprints are :class:`Footprint` records, so they can be put in one table.

>>> zsmalloc_class(100), zsmalloc_class(4001), zsmalloc_class(4096)
(112, 4016, 4096)
>>> same_filled(bytes(4096)), same_filled(b"ab" * 2048), same_filled(b"abc" * 1365 + b"a")
(True, True, False)
"""
from __future__ import annotations

import datetime
import math
from dataclasses import dataclass
from typing import Iterable, Optional, Sequence, Tuple

from .. import abi
from ..errors import InvariantError
from ..host.alloc import SIZEOF
from .filepages import file_page_handles

PAGE = abi.PAGE_SIZE

__all__ = ["Event", "HISTORY", "Feature", "FEATURES", "FEATURE_COLUMNS", "check_tables",
           "SAMPLE_ROOTS", "sample_pages", "Footprint", "tmem_footprint", "ZSWAP_ENTRY_BYTES",
           "ZS_HANDLE_BYTES", "ZSMALLOC_CHAIN", "zsmalloc_class", "zsmalloc_cost",
           "same_filled", "zswap_footprint"]


# =================================================================================================
# History and features, as data
# =================================================================================================

@dataclass(frozen=True, slots=True)
class Event:
    """One dated step of tmem's life."""
    when: str          # ISO date, or year-month, of the commit, release or advisory
    where: str         # "Xen" or "Linux"
    what: str          # what happened, in a sentence
    source: str        # key of book/references.bib


#: tmem's life, oldest first. Commits are cited by the date they were committed.
HISTORY: Tuple[Event, ...] = (
    Event("2009-05-26", "Xen", "First tmem commit (6009f4ddb2): ephemeral and persistent pools, "
          "optional compression; released in Xen 4.0", "xen-6009f4ddb2"),
    Event("2009-07", "Linux", "\"Transcendent Memory and Linux\" at the Linux Symposium",
          "magenheimer2009tmem"),
    Event("2010-04-06", "Xen", "Deduplication with trailing-zero elimination (38c433d0c7), "
          "in Xen 4.1", "xen-38c433d0c7"),
    Event("2011-05", "Linux", "Cleancache and its Xen shim merged for Linux 3.0 "
          "(5bc20fc59706)", "linux-5bc20fc59706"),
    Event("2012-05", "Linux", "Frontswap merged for Linux 3.5", "linux-frontswap-doc"),
    Event("2012-09-05", "Xen", "XSA-15 (CVE-2012-3497): multiple tmem hypercall "
          "vulnerabilities; fixed in Xen 4.2.1 and 4.3", "xsa15"),
    Event("2013-07", "Linux", "zswap, a compressed cache for swap pages, merged for Linux 3.11",
          "linux-zswap-doc"),
    Event("2015-10", "Xen", "A to-do list for tmem: migration v2, tool clean-up, drop tze, "
          "dedup and zlib, simpler structures, 5 TB hosts, a security audit", "wilk2015todo"),
    Event("2016-09-27", "Xen", "Deduplication and tze deleted (1a70e54b5f), in Xen 4.8",
          "xen-1a70e54b5f"),
    Event("2017-11-22", "Xen", "SUPPORT.md lists tmem as Experimental (Xen 4.10)",
          "xen412-support"),
    Event("2019-01-11", "Xen", "CONFIG_TMEM off by default (a67ce55a3e), in Xen 4.12",
          "xen-a67ce55a3e"),
    Event("2019-05-13", "Xen", "tmem removed from the hypervisor (c492e19fdd), its tools and "
          "its documentation, for Xen 4.13", "xen-c492e19fdd"),
    Event("2019-07", "Linux", "Xen tmem driver removed (814bbf49dcd0), Linux 5.3",
          "linux-814bbf49dcd0"),
    Event("2022-01", "Linux", "Cleancache removed (0a4ee518185e), Linux 5.17",
          "linux-0a4ee518185e"),
    Event("2023-08-21", "Linux", "Frontswap removed (\"mm: kill frontswap\"): zswap, its last "
          "user, is called directly", "linux-killfrontswap"),
)


@dataclass(frozen=True, slots=True)
class Feature:
    """One system that keeps pages out of a guest's or a process's own memory."""
    system: str
    runs_in: str
    holds: str
    compression: str
    dedup: str
    same_filled: str
    status: str
    sources: Tuple[str, ...]   # keys of book/references.bib


#: Column titles of :data:`FEATURES`, in order (``sources`` is cited in the prose).
FEATURE_COLUMNS = ("system", "runs in", "holds", "compression", "dedup", "same-filled pages",
                   "status")

#: Xen's tmem and the Linux mechanisms around it.
FEATURES: Tuple[Feature, ...] = (
    Feature("Xen tmem", "Xen 4.0 to 4.12",
            "guests' clean pages (ephemeral) and swap (persistent), by hypercall",
            "LZO1X-1, optional", "ephemeral pages (Xen 4.1 to 4.7)",
            "a zero page stores nothing (tze, 4.1 to 4.7)", "removed in Xen 4.13",
            ("xen-6009f4ddb2", "xen-38c433d0c7", "xen-c492e19fdd")),
    Feature("zcache", "Linux staging, from 2.6.39",
            "its own clean pages and swap, via cleancache and frontswap",
            "yes", "no", "no", "never left staging",
            ("linux-frontswap-doc", "linux-zcache")),
    Feature("RAMster", "Linux staging",
            "as zcache, then sent to another machine's RAM",
            "as zcache", "no", "no", "merged into zcache, 2013",
            ("magenheimer2011ramster", "linux-frontswap-doc", "linux-zcache")),
    Feature("zswap", "Linux, from 3.11", "swap pages, at swap-out",
            "any kernel compressor", "no", "kept as the repeated value", "in Linux",
            ("linux-zswap-doc", "linux-zswap", "lwn2013zswap")),
    Feature("zram", "Linux, a block driver", "what is written to a RAM disk, often swap",
            "any kernel compressor", "no", "no memory allocated", "in Linux",
            ("linux-zram-doc", "linux-zsmalloc")),
    Feature("KSM", "Linux",
            "anonymous pages of processes that opt in (KVM guests too)",
            "no", "identical pages merged, copy-on-write", "merged like any page",
            "in Linux", ("arcangeli2009ksm", "linux-ksm-doc", "magenheimer2010internals")),
)


def check_tables(history: Sequence[Event] = HISTORY,
                 features: Sequence[Feature] = FEATURES) -> None:
    """The invariants of the two tables; ``InvariantError`` names the first one broken. O(rows).

    1. :data:`HISTORY` is in date order, every date ``YYYY``, ``YYYY-MM`` or ``YYYY-MM-DD``,
       every event happened in ``"Xen"`` or ``"Linux"`` and names a source;
    2. every :data:`FEATURES` row has a text in every column and at least one source, and no
       system appears twice.
    """
    for e in history:
        parts = e.when.split("-")
        try:
            if not (len(parts[0]) == 4 and all(len(p) == 2 for p in parts[1:])):
                raise ValueError
            datetime.date(*map(int, parts + ["01"] * (3 - len(parts))))
        except (ValueError, TypeError):
            raise InvariantError(f"HISTORY invariant 1: bad date {e.when!r}") from None
        if e.where not in ("Xen", "Linux") or not e.what or not e.source:
            raise InvariantError(f"HISTORY invariant 1: incomplete event {e!r}")
    dates = [e.when for e in history]
    if dates != sorted(dates):
        raise InvariantError("HISTORY invariant 1: events are not in date order")
    seen = set()
    for f in features:
        cells = (f.system, f.runs_in, f.holds, f.compression, f.dedup, f.same_filled, f.status)
        if not all(isinstance(c, str) and c for c in cells) or not f.sources:
            raise InvariantError(f"FEATURES invariant 2: incomplete row {f.system!r}")
        if f.system in seen:
            raise InvariantError(f"FEATURES invariant 2: {f.system!r} appears twice")
        seen.add(f.system)


# =================================================================================================
# Real pages
# =================================================================================================

#: Where the sample's pages come from, and how many from each: programs and shared libraries,
#: Python sources, documentation (mostly gzip-compressed), translations and C headers.
SAMPLE_ROOTS = (("/usr/bin", 500), ("/usr/lib/x86_64-linux-gnu", 500),
                ("/usr/lib/python3*", 500), ("/usr/share/doc", 300),
                ("/usr/share/locale", 200), ("/usr/include", 300))


def sample_pages(roots=SAMPLE_ROOTS, per_file: int = 8) -> list:
    """A fixed sample of the real file pages of this machine: for each ``(glob, n)`` of
    ``roots``, the first ``n`` pages of its files in sorted path order, at most ``per_file``
    from each file. Returns ``[(file, index, page)]``: files numbered across the whole sample,
    ``index`` the page's place in its file. Deterministic for a given machine; roots that do
    not exist contribute nothing. O(pages).

    >>> items = sample_pages([("/usr/lib/python3*", 5)], per_file=2)
    >>> [(f, i) for f, i, _ in items]
    [(0, 0), (0, 1), (1, 0), (1, 1), (2, 0)]
    """
    out, base = [], 0
    for pattern, n in roots:
        items = list(file_page_handles([pattern], limit=n, per_file=per_file))
        out += [(base + f, i, page) for f, i, page in items]
        if items:
            base += items[-1][0] + 1
    return out


# =================================================================================================
# Footprints
# =================================================================================================

@dataclass(frozen=True, slots=True)
class Footprint:
    """The memory one store takes to hold a set of pages.

    ``data_bytes`` holds the pages' contents and the allocators' waste; ``meta_bytes`` the
    descriptors that find them (tmem's pgps, objects, radix-tree nodes and pcds; zswap's
    entries and zsmalloc's handles).

    Invariants (:meth:`check`):

    1. ``0 <= kept <= offered`` and ``0 <= whole <= kept``;
    2. ``data_bytes >= 0`` and ``meta_bytes >= 0``;
    3. ``data_bytes`` is at least ``4096 * whole`` (a page kept whole takes a page).
    """
    name: str
    offered: int        # pages handed to the store
    kept: int           # pages it stored (zswap refuses a page that does not fit a class)
    whole: int          # pages kept as whole 4096-byte pages
    data_bytes: int
    meta_bytes: int

    @property
    def total_bytes(self) -> int:
        return self.data_bytes + self.meta_bytes

    @property
    def per_page(self) -> float:
        """Bytes per page kept (nan if none was)."""
        return self.total_bytes / self.kept if self.kept else math.nan

    def check(self) -> None:
        """Raise ``InvariantError`` naming the first broken invariant. O(1)."""
        if not (0 <= self.kept <= self.offered and 0 <= self.whole <= self.kept):
            raise InvariantError(f"Footprint invariant 1: kept {self.kept}, whole {self.whole} "
                                 f"of {self.offered} offered")
        if self.data_bytes < 0 or self.meta_bytes < 0:
            raise InvariantError("Footprint invariant 2: a negative byte count")
        if self.data_bytes < PAGE * self.whole:
            raise InvariantError(f"Footprint invariant 3: {self.whole} whole pages in "
                                 f"{self.data_bytes} bytes")


def tmem_footprint(items: Sequence[Tuple[int, int, bytes]], *, compress: bool = False,
                   dedup: bool = False, tze: bool = False, codec=None,
                   name: Optional[str] = None) -> Footprint:
    """Put every ``(file, index, page)`` of ``items`` into a private ephemeral pool of a fresh
    :class:`~tmemref.Host` (object id ``(file, 0, 0)``, as cleancache names a file's pages)
    booted with ``compress``, ``dedup`` and ``tze`` (Xen's ``tmem_compress``, ``tmem_dedup``,
    ``tmem_tze``; ``codec`` as for ``Host``), on a host large enough that nothing is evicted.

    The memory is what the engine holds for the pages: the frames tmem took from the heap for
    them (data frames and the frames of its sub-page allocator), counted before the first put
    and after the last. ``meta_bytes`` is the descriptors' share (pgps, objects, radix-tree
    nodes, pcds at their ``SIZEOF``), the rest is data. ``ValueError`` if a put fails or a page
    is evicted (then the measure would be wrong). O(len(items)) hypercalls.
    """
    from ..core.host import Host
    from ..guest import TmemOps
    n = len(items)
    host = Host(pages=2 * n + 1024, compress=compress, dedup=dedup, tze=tze, codec=codec)
    if name is None:                         # what the host runs: Xen drops tze beside both
        opts = [o for o, on in (("dedup", dedup), ("tze", host.tze), ("LZO1X-1", compress))
                if on]
        name = "tmem, " + (" + ".join(opts) if opts else "plain") + (
            " (tze asked for, switched off)" if tze and not host.tze else "")
    host.create_domain(1, pages=16, max_pages=64)
    guest = TmemOps(host, 1)
    pool = guest.new_pool()
    before = host.mem.freeable_page_count
    for f, i, page in items:
        if guest.put_page(pool, (f, 0, 0), i, page) != 1:
            raise ValueError(f"the put of file {f} page {i} failed")
    if host.evicted_pgs:
        raise ValueError("pages were evicted: the host is too small for the measure")
    host.check()
    total = (host.mem.freeable_page_count - before) * PAGE
    meta = (host.eph_count * SIZEOF["pgp"] + host.global_obj_count * SIZEOF["obj"]
            + host.global_rtree_node_count * SIZEOF["objnode"]
            + host.global_pcd_count * host.sizeof_pcd)
    if dedup:
        whole = sum(1 for pcd in host.pcd.pcds() if pcd.size == PAGE)
    else:
        whole = host.eph_count - host.clients[1].compressed_pages
    return Footprint(name, n, host.eph_count, whole, total - meta, meta)


#: Bytes of one ``struct zswap_entry`` on x86-64 (Linux 6.7, mm/zswap.c, by its field list:
#: a red-black node, the swap entry, refcount and length, pool, handle or value, cgroup, LRU
#: links).
ZSWAP_ENTRY_BYTES = 80
#: zsmalloc keeps each object's 8-byte handle in a slab of its own and in the object's chunk.
ZS_HANDLE_BYTES = 8
#: zsmalloc's size classes: 32 bytes, then steps of 4096 / 256 = 16 bytes, up to a page.
ZS_MIN_CLASS, ZS_CLASS_STEP = 32, PAGE >> 8
#: Most pages chained into one zspage (CONFIG_ZSMALLOC_CHAIN_SIZE's default since Linux 6.3).
ZSMALLOC_CHAIN = 8


def zsmalloc_class(size: int) -> int:
    """The size class zsmalloc serves an allocation of ``size`` bytes (1 to 4096) from:
    the smallest of 32, 48, 64, ..., 4096 that holds it. O(1)."""
    if type(size) is not int or not 0 < size <= PAGE:
        raise ValueError(f"zsmalloc serves 1 to {PAGE} bytes (an int), not {size!r}")
    steps = max(0, -(-(size - ZS_MIN_CLASS) // ZS_CLASS_STEP))
    return ZS_MIN_CLASS + steps * ZS_CLASS_STEP


def zsmalloc_cost(size: int, chain: int = ZSMALLOC_CHAIN) -> float:
    """Memory one object of ``size`` bytes (1 to 4096) takes in a full zsmalloc pool: its
    class's zspage — the chain of 1 to ``chain`` pages that wastes least per object — divided
    among the objects the zspage holds. O(chain).

    >>> zsmalloc_cost(2048), zsmalloc_cost(1000), round(zsmalloc_cost(1500), 1)
    (2048.0, 1024.0, 1509.1)
    """
    c = zsmalloc_class(size)
    return min(k * PAGE / (k * PAGE // c) for k in range(1, chain + 1))


def same_filled(page) -> bool:
    """Whether ``page`` is one 8-byte value repeated (zswap's ``zswap_is_page_same_filled``
    test on x86-64; an all-zero page is one). O(page)."""
    page = bytes(page)
    return page == page[:8] * (len(page) // 8)


def zswap_footprint(pages: Iterable[bytes], *, codec="lz4", same_filled_pages: bool = True,
                    entry_bytes: int = ZSWAP_ENTRY_BYTES, chain: int = ZSMALLOC_CHAIN,
                    name: Optional[str] = None) -> Footprint:
    """A model of a zswap-like store holding ``pages``: no dedup; a same-filled page (if
    ``same_filled_pages``) costs only its entry; every other page is compressed on its own
    (``codec``: a name of :mod:`tmemref.host.compress` or a codec object) and its compressed
    bytes plus their 8-byte handle go into a zsmalloc-like pool (:func:`zsmalloc_cost`);
    a page whose compressed form does not fit a page is refused (zswap then writes it to the
    swap device). Each page kept costs one ``entry_bytes`` entry, each compressed one also a
    handle. A full pool is assumed: no partly used zspages. O(pages) compressions.

    >>> fp = zswap_footprint([bytes(4096), b"tmem " * 819 + b"!"])
    >>> fp.kept, fp.whole, fp.data_bytes < 100, fp.meta_bytes
    (2, 0, True, 168)
    """
    from ..host.compress import get_codec
    if isinstance(codec, str):
        codec = get_codec(codec)
    if name is None:
        name = "zswap-like, " + ("same-filled + " if same_filled_pages else "") + codec.name
    offered = kept = whole = 0
    data = meta = 0.0
    for page in pages:
        offered += 1
        if same_filled_pages and same_filled(page):
            kept += 1
            meta += entry_bytes
            continue
        stored = len(codec.compress(page))
        if stored > PAGE:
            continue                                 # refused: zs_malloc says -ENOSPC
        kept += 1
        whole += zsmalloc_class(min(PAGE, stored + ZS_HANDLE_BYTES)) == PAGE
        data += zsmalloc_cost(min(PAGE, stored + ZS_HANDLE_BYTES), chain)
        meta += entry_bytes + ZS_HANDLE_BYTES
    return Footprint(name, offered, kept, whole, round(data), round(meta))
