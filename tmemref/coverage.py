"""Where each part of Xen's tmem design document is taught in the book and built in the package.

Xen: ``docs/misc/tmem-internals.html`` ("Transcendent Memory Internals in Xen", Dan
Magenheimer, 2010), the design document tmem shipped from Xen 4.0 to 4.12. :data:`ENTRIES` maps
each of its sections, and each mechanism named in them, to the chapter and section of the book
that teaches it and to the part of ``tmemref`` that implements it. Mechanisms the book does not
teach yet point at the chapter that is planned for them and are marked ``"planned"``.

Invariants (:func:`problems` lists every broken one, :func:`check` raises
:class:`~tmemref.errors.InvariantError` for them; ``tests/test_coverage.py`` runs both on the real
book):

1. Every section of :data:`DOC_SECTIONS` has at least one entry, and every entry names one of
   them; no (section, item) pair appears twice.
2. A ``"taught"`` entry names a book page that exists and is in ``_toc.yml``, and a heading of
   that page whose anchor (MyST's slug) is ``anchor``.
3. A ``"taught"`` entry's ``module`` (``package.module`` or ``package.module:Attr.attr``) can be
   imported and resolved; only a whole-section entry (``item == ""``) may have no module.
4. A ``"planned"`` entry names one of :data:`PLANNED_CHAPTERS` and no anchor (the chapter's
   author adds it when it lands, and flips the status).

>>> sorted({e.status for e in ENTRIES})      # every part of the document is taught
['taught']
>>> [e.chapter for e in ENTRIES if e.item == "Duplicate puts"]
['book/ch02_guest_view.md']
"""
from __future__ import annotations

import importlib
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

from .errors import InvariantError

#: The sections of the design document, in its order (its ``<h2>`` headings).
DOC_SECTIONS = (
    "Overview", "Source Code Organization", "Prefixes/Abbreviations/Glossary",
    "Key Data Structures", "Scalability/Concurrency", "Control and Manageability",
    "Save/Restore/Migrate", "Miscellaneous Tmem Topics", "Known Issues", "Bibliography",
)

#: Chapters other authors will write: file -> title. Planned entries must point at one.
PLANNED_CHAPTERS = {
    "book/ch07_locks.md": "Locks, races and the explorer",
    "book/ch08_dedup.md": "Deduplication and trailing zeros",
    "book/ch09_compression.md": "Compression and the allocator",
    "book/ch10_migration.md": "Save, restore and live migration",
    "book/ch11_heap.md": "The heap, the reserve, claims and ballooning",
    "book/ch12_context.md": "tmem in context",
    "book/ch13_open_questions.md": "Open questions, answered",
    "book/oracle.md": "tmemref as an oracle",
}

TAUGHT, PLANNED = "taught", "planned"


@dataclass(frozen=True)
class Entry:
    """One part of the design document and where it lives."""
    section: str                 # one of DOC_SECTIONS
    item: str                    # the mechanism or topic; "" for the section as a whole
    chapter: str                 # book page, relative to the repository root
    anchor: Optional[str]        # heading slug in that page; None while planned
    module: Optional[str]        # "tmemref.core.evict:ensure_avail_pages"; None: prose only
    status: str = TAUGHT         # TAUGHT or PLANNED


def _t(section, item, chapter, anchor, module=None):
    return Entry(section, item, f"book/{chapter}.md", anchor, module)


def _p(section, item, chapter, module=None):
    return Entry(section, item, f"book/{chapter}.md", None, module, PLANNED)


_KDS, _SC, _CM, _SRM, _MISC, _KI = (
    "Key Data Structures", "Scalability/Concurrency", "Control and Manageability",
    "Save/Restore/Migrate", "Miscellaneous Tmem Topics", "Known Issues")

#: The map, in the design document's order.
ENTRIES = (
    _t("Overview", "", "ch01_why_tmem",
       "the-idea-memory-the-hypervisor-owns-and-guests-borrow-by-copy", "tmemref.core.host:Host"),
    _t("Overview", "proper isolation against malicious guests: XSA-15 and reduced security "
       "support", "ch12_context", "xsa-15-and-reduced-security-support",
       "tmemref.core.host:Host.do_tmem_op"),
    _t("Overview", "optionally, increase page density through compression and/or "
       "deduplication: measured against a zswap-like store", "ch12_context",
       "measured-tmems-packing-against-a-zswap-like-store",
       "tmemref.sim.context:tmem_footprint"),
    _t("Source Code Organization", "", "architecture", "the-modules-as-they-are", "tmemref"),
    _t("Source Code Organization", "tmem.c / tmem_xen.c: the hypervisor-independent and the "
       "Xen-specific halves", "architecture", "the-modules-as-they-are", "tmemref.host.frames"),
    _t("Source Code Organization", "porting to other hypervisors (never attempted; Linux's "
       "zcache and RAMster ported it into a kernel)", "ch12_context",
       "tmem-inside-one-kernel-zcache-and-ramster", "tmemref.sim.context:FEATURES"),
    _t("Source Code Organization", "a port checked against the reference through the "
       "hypercall alone", "oracle", "one-interface-the-hypercall", "tmemref.oracle:Tmem"),
    _t("Source Code Organization", "red-black trees (rbtree.c)", "ch04_trees",
       "the-red-black-tree", "tmemref.ds.rbtree:RBTree"),
    _t("Source Code Organization", "radix trees (radix-tree.c)", "ch04_trees", "the-radix-tree",
       "tmemref.ds.radix:RadixTree"),
    _t("Source Code Organization", "locks and lists", "architecture", "the-lock-order",
       "tmemref.host.locks:RWLock"),
    _t("Source Code Organization", "the TLSF allocator (xmalloc_tlsf.c)", "ch09_compression",
       "tlsf-a-block-in-constant-time", "tmemref.host.tlsf:Tlsf"),
    _t("Source Code Organization", "LZO1X compression (lzo.c)", "ch09_compression",
       "four-codecs-on-real-pages", "tmemref.host.compress:Lzo1x1"),
    _t("Prefixes/Abbreviations/Glossary", "", "glossary", "glossary"),
    _t("Prefixes/Abbreviations/Glossary", "tmh: the host (Xen-specific) layer", "glossary",
       "glossary", "tmemref.host"),
    _t("Prefixes/Abbreviations/Glossary", "tmemc: control", "glossary", "glossary",
       "tmemref.core.control:do_control"),
    _t("Prefixes/Abbreviations/Glossary", "cli / client", "glossary", "glossary",
       "tmemref.core.client:Client"),
    _t(_KDS, "", "ch03_web", "layer-by-layer-and-why-each-is-what-it-is", "tmemref.core"),
    _t(_KDS, "client_t and its 16 pool slots", "ch03_web",
       "layer-by-layer-and-why-each-is-what-it-is", "tmemref.core.client:Client"),
    _t(_KDS, "pool_t", "ch03_web", "layer-by-layer-and-why-each-is-what-it-is",
       "tmemref.core.pool:Pool"),
    _t(_KDS, "sharelist_t", "ch02_guest_view", "pools", "tmemref.core.pool:Pool.share_list"),
    _t(_KDS, "256 trees per pool, chosen by a hash of the object id", "ch04_trees",
       "objects-depth-with-and-without-the-hash", "tmemref.core.obj:oid_hash"),
    _t(_KDS, "obj_t and its radix tree of pages", "ch04_trees",
       "pages-radix-nodes-for-dense-sparse-and-skewed-indices", "tmemref.core.obj:Obj"),
    _t(_KDS, "pgp_t, the page descriptor", "ch03_web", "layer-by-layer-and-why-each-is-what-it-is",
       "tmemref.core.obj:Pgp"),
    _t(_KDS, "pfp_t, the page frame", "ch03_web", "layer-by-layer-and-why-each-is-what-it-is",
       "tmemref.host.frames:HostMemory"),
    _t(_KDS, "pcd_t, the page content descriptor", "ch08_dedup",
       "one-copy-per-content-the-pcd-layer", "tmemref.core.pcd:Pcd"),
    _t(_KDS, "the per-client and global ephemeral lists", "ch05_eviction",
       "two-lists-oldest-first", "tmemref.core.host:Host._pgp_enlist"),
    _t(_KDS, "top-down access by puts and gets", "ch03_web", "a-put-walks-top-down",
       "tmemref.core.host:Host._put"),
    _t(_KDS, "bottom-up access by memory reclamation", "ch03_web", "an-eviction-walks-bottom-up",
       "tmemref.core.evict:tmem_evict"),
    _t(_KDS, "back pointers", "ch03_web", "back-pointers-and-invariants",
       "tmemref.core.host:Host.check"),
    _t(_KDS, "sentinels and assertions", "ch03_web", "back-pointers-and-invariants",
       "tmemref.errors:InvariantError"),
    _t(_KDS, "tmh_page_list: freed frames kept unscrubbed", "ch03_web",
       "the-tmem-page-list-and-scrubbing", "tmemref.host.frames:HostMemory.flush_page_list"),
    _t(_SC, "", "ch03_web", "an-eviction-walks-bottom-up", "tmemref.host.locks"),
    _t(_SC, "0.2 % (2 % with compression) of CPU time in tmem", "ch07_locks",
       "why-tmem-needs-locks", "tmemref.host.locks"),
    _t(_SC, "the big lock (tmem_lock boot option)", "ch07_locks", "the-big-lock",
       "tmemref.sim.races:big_locked"),
    _t(_SC, "tmem_rwlock", "ch05_eviction", "the-1-mb-guard", "tmemref.core.host:Host.tmem_rwlock_w"),
    _t(_SC, "pool_rwlock and obj_spinlock", "ch03_web", "a-put-walks-top-down",
       "tmemref.core.host:Host._obj_find_lock"),
    _t(_SC, "eph_lists_spinlock and pers_lists_spinlock", "ch03_web",
       "an-eviction-walks-bottom-up", "tmemref.host.locks:SpinLock"),
    _t(_SC, "pcd_tree_rwlocks", "ch08_dedup", "256-trees-chosen-by-the-first-byte",
       "tmemref.core.pcd:PcdLayer"),
    _t(_SC, "tmh_page_list_lock", "architecture", "the-lock-order",
       "tmemref.host.frames:HostMemory"),
    _t(_SC, "the implied lock of the per-CPU compression buffers", "ch07_locks",
       "the-implied-lock", "tmemref.host.compress:Codec"),
    _t(_SC, "trylocks and the order of locks", "ch05_eviction", "the-walk-tmem_evict",
       "tmemref.core.evict:tmem_evict"),
    _t(_SC, "the livelock and the 1 MB guard", "ch05_eviction", "the-1-mb-guard",
       "tmemref.core.evict:ensure_avail_pages"),
    _t(_SC, "atomic and informational counters", "ch07_locks", "counters-that-drift",
       "tmemref.host.locks:yield_point"),
    _t(_CM, "", "ch06_control", "a-privileged-interface", "tmemref.core.control:do_control"),
    _t(_CM, "freeable memory", "ch06_control", "what-counts-as-freeable",
       "tmemref.core.host:Host.freeable_pages"),
    _t(_CM, "freeze and thaw", "ch06_control", "making-room-for-a-new-guest",
       "tmemref.core.control:freeze_pools"),
    _t(_CM, "query freeable MB", "ch06_control", "making-room-for-a-new-guest",
       "tmemref.xl:tmem_freeable"),
    _t(_CM, "flush (relinquish) memory", "ch06_control", "making-room-for-a-new-guest",
       "tmemref.core.control:flush_mem"),
    _t(_CM, "statistics as two-letter ASCII counters (tmemc_list)", "ch06_control",
       "statistics-xl-tmem-list", "tmemref.core.stats:tmemc_list"),
    _t(_CM, "xen-tmem-list-parse", "ch06_control", "statistics-xl-tmem-list",
       "tmemref.core.listparse:format_list_parse"),
    _t(_SRM, "", "ch10_migration", "save-restore-and-live-migration", "tmemref.migrate:migrate"),
    _t(_SRM, "save: freeze, version, client and pool information, persistent pages",
       "ch10_migration", "what-a-save-carries", "tmemref.migrate:save"),
    _t(_SRM, "live migration: handles of invalidated persistent pages", "ch10_migration",
       "live-migration", "tmemref.core.save:save_get_next_inv"),
    _t(_SRM, "restore through new API calls from the tools", "ch10_migration", "restore",
       "tmemref.core.save:restore_put_page"),
    _t(_SRM, "per-pool persistent lists and per-client invalidated lists, overlaid in unions",
       "ch10_migration", "live-migration", "tmemref.core.save:delist_persistent"),
    _t(_MISC, "", "ch02_guest_view", "duplicate-puts"),
    _t(_MISC, "Duplicate puts", "ch02_guest_view", "duplicate-puts",
       "tmemref.core.host:Host._dup_put"),
    _t(_MISC, "Duplicate puts: put-put-get coherency checked on any implementation", "oracle",
       "the-promises", "tmemref.oracle:Promises"),
    _t(_MISC, "Page deduplication", "ch08_dedup", "one-copy-per-content-the-pcd-layer",
       "tmemref.core.pcd:PcdLayer.associate"),
    _t(_MISC, "Trailing-zero elimination", "ch08_dedup", "trailing-zeros",
       "tmemref.core.pcd:tze_size"),
    _t(_MISC, "Compression of deduplicated pages", "ch08_dedup",
       "experiment-the-pages-of-real-files", "tmemref.core.pcd:content_key"),
    _t(_MISC, "Memory accounting: persistent pages billed to the domain", "ch06_control",
       "what-counts-as-freeable", "tmemref.host.frames:HostMemory.alloc_domain_page"),
    _t(_MISC, "tmh_alloc_infra and its note to self", "ch09_compression",
       "the-note-to-self-pcds-and-sharelists", "tmemref.sim.packing:sharelist_pinning"),
    _t(_MISC, "freeing into the pool that allocated (shared_pool_reassign)", "ch09_compression",
       "freeing-into-the-pool-that-allocated", "tmemref.core.host:Host._shared_pool_reassign"),
    _t(_MISC, "Deduplication of persistent pages: the accounting exercise for the reader",
       "ch13_open_questions", "deduplicating-persistent-pages-who-pays",
       "tmemref.sim.questions:persistent_dedup_billing"),
    _t(_MISC, "Memory allocation: TLSF for sub-page allocations", "ch09_compression",
       "tlsf-a-block-in-constant-time", "tmemref.host.alloc:tmem_pool"),
    _t(_MISC, "per-client allocator pools and the delayed first page", "ch09_compression",
       "the-first-frame-taken-lazily", "tmemref.host.alloc:client_pool"),
    _t(_MISC, "Memory allocation interdependency (MEMF_tmem, tmem_relinquish_pages)",
       "ch06_control", "without-the-freeze", "tmemref.core.host:Host._relinquish_page"),
    _t(_MISC, "LRU page reclamation", "ch05_eviction", "two-lists-oldest-first",
       "tmemref.core.evict:tmem_evict"),
    _t(_MISC, "a shared get promotes the page", "ch05_eviction", "two-lists-oldest-first",
       "tmemref.core.host:Host._get"),
    _t(_MISC, "the second chance of deduplicated pages", "ch08_dedup", "the-second-chance",
       "tmemref.core.evict:tmem_evict"),
    _t(_MISC, "modified LRU against workloads", "ch05_eviction",
       "experiment-1-what-lru-does-to-a-page-cache", "tmemref.sim.experiments:memory_curve"),
    _t(_MISC, "modified LRU against a broad range of workloads", "ch13_open_questions",
       "the-modified-lru-against-a-broad-range-of-workloads", "tmemref.sim.study:sweep"),
    _t(_MISC, "Internal fragmentation", "ch09_compression", "internal-fragmentation",
       "tmemref.sim.packing:evict_series"),
    _t(_MISC, "Weights", "ch05_eviction", "experiment-2-weights",
       "tmemref.core.evict:client_over_quota"),
    _t(_MISC, "Caps (a no-op)", "ch06_control", "weights-and-caps", "tmemref.core.control:set_var"),
    _t(_MISC, "Shared pools and authentication (LKML, ocfs2)", "ch02_guest_view", "pools",
       "tmemref.core.control:shared_pool_auth"),
    _t(_MISC, "32-bit implementation", "ch13_open_questions", "what-32-bit-changes",
       "tmemref.sim.questions:heap_limited_capacity"),
    _t(_KI, "", "ch11_heap", "the-heap-a-reserve-claims-and-ballooning"),
    _t(_KI, "Fragmentation: order > 0 allocations", "ch11_heap", "the-reserve",
       "tmemref.host.frames:HostMemory.alloc_domheap_pages"),
    _t(_KI, "the 'memory is scarce' reserve in alloc_heap_pages", "ch11_heap", "the-reserve",
       "tmemref.host.frames:HostMemory._alloc_order_locked"),
    _t(_KI, "NUMA", "ch13_open_questions", "numa-a-two-node-host",
       "tmemref.sim.questions:numa_study"),
    _t("Bibliography", "", "references", "references"),
    _t("Bibliography", "oss.oracle.com/projects/tmem: the project's papers, commits and talks",
       "ch12_context", "ten-years-in-xen", "tmemref.sim.context:HISTORY"),
)


def slugify(title: str) -> str:
    """MyST's heading anchor (GitHub style) for a heading's text, inline markup removed. O(n).

    >>> slugify("The walk: `tmem_evict`"), slugify("### `check()` catches it")
    ('the-walk-tmem_evict', 'check-catches-it')
    """
    text = re.sub(r"[`*]", "", title.lstrip("#").strip())
    return re.sub(r"[^\w\u4e00-\u9fff\- ]", "", text.lower().replace(" ", "-"))


def heading_anchors(path: Path) -> set:
    """The anchors of a page's headings (levels 1–3, as the book numbers them), code cells
    and fenced blocks skipped. O(size of the page)."""
    text = re.sub(r"^(`{3,}|~{3,}).*?^\1\s*$", "", path.read_text(), flags=re.S | re.M)
    return {slugify(m.group(1)) for m in re.finditer(r"^#{1,3} (.+)$", text, re.M)}


def resolve(module: str):
    """Import ``package.module`` and follow ``:Attr.attr`` on it; raise ImportError or
    AttributeError if it points at nothing.

    >>> resolve("tmemref.core.evict:tmem_evict").__name__
    'tmem_evict'
    """
    name, _, attrs = module.partition(":")
    obj = importlib.import_module(name)
    for part in filter(None, attrs.split(".")):
        obj = getattr(obj, part)
    return obj


def problems(entries=ENTRIES, root: Optional[Path] = None, toc_pages=None) -> list:
    """Every broken invariant of the module docstring, as text (empty: the map is sound).

    ``root`` is the repository (default: the one this package sits in); ``toc_pages`` the set of
    page paths ``_toc.yml`` lists (default: read from ``root/_toc.yml``). O(entries + pages)."""
    root = Path(root) if root is not None else Path(__file__).resolve().parent.parent
    if toc_pages is None:
        toc_pages = _toc_pages(root / "_toc.yml")
    out, seen, anchors = [], set(), {}
    for section in DOC_SECTIONS:
        if not any(e.section == section for e in entries):
            out.append(f"section {section!r} of the design document is not mapped")
    for e in entries:
        where = f"{e.section} / {e.item or '(section)'}"
        if e.section not in DOC_SECTIONS:
            out.append(f"{where}: no such section in the design document")
        if (e.section, e.item) in seen:
            out.append(f"{where}: mapped twice")
        seen.add((e.section, e.item))
        if e.status == PLANNED:
            if e.chapter not in PLANNED_CHAPTERS:
                out.append(f"{where}: planned for {e.chapter}, which is not a planned chapter")
            if e.anchor is not None:
                out.append(f"{where}: planned, yet it names an anchor")
            continue
        if e.status != TAUGHT:
            out.append(f"{where}: unknown status {e.status!r}")
            continue
        page = root / e.chapter
        if not page.is_file() or e.chapter not in toc_pages:
            out.append(f"{where}: {e.chapter} is not a page of the book")
            continue
        if page not in anchors:
            anchors[page] = heading_anchors(page)
        if e.anchor not in anchors[page]:
            out.append(f"{where}: {e.chapter} has no heading #{e.anchor}")
        if e.module is None:
            if e.item:
                out.append(f"{where}: a mechanism needs the module that implements it")
            continue
        try:
            resolve(e.module)
        except (ImportError, AttributeError) as err:
            out.append(f"{where}: {e.module} points at nothing ({err})")
    return out


def check(entries=ENTRIES, root: Optional[Path] = None) -> None:
    """Raise :class:`~tmemref.errors.InvariantError` listing every problem :func:`problems`
    finds; return None if the map is sound. O(entries + pages)."""
    found = problems(entries, root)
    if found:
        raise InvariantError("coverage map: " + "; ".join(found))


def _toc_pages(toc: Path) -> set:
    """Page paths (``book/x.md``) listed in ``_toc.yml``: every ``file:`` and the ``root:``."""
    text = toc.read_text()
    names = re.findall(r"^\s*(?:-\s*)?(?:file|root):\s*(\S+)", text, re.M)
    return {n if n.endswith(".md") else f"{n}.md" for n in names}


def planned(entries=ENTRIES) -> list:
    """The planned entries, as ``(chapter, title, section, item)``, in map order."""
    return [(e.chapter, PLANNED_CHAPTERS.get(e.chapter, "?"), e.section, e.item)
            for e in entries if e.status == PLANNED]


def rows(entries=ENTRIES) -> list:
    """Rows for the book's appendix: ``(section, item, taught in, implemented by)``, where
    "taught in" is a Markdown link ``[title › heading](page.md#anchor)`` relative to ``book/``
    for taught entries and "planned: " with the planned chapter's title otherwise; modules are
    named without their ``tmemref.`` prefix. O(entries)."""
    root = Path(__file__).resolve().parent.parent
    titles, headings = {}, {}
    out = []
    for e in entries:
        name = Path(e.chapter).name
        if e.status == TAUGHT:
            page = root / e.chapter
            if page not in titles:
                text = page.read_text()
                titles[page] = re.search(r"^# (.+)$", text, re.M).group(1).strip()
                body = re.sub(r"^(`{3,}|~{3,}).*?^\1\s*$", "", text, flags=re.S | re.M)
                headings[page] = {slugify(h): h.strip().replace("`", "")
                                  for h in re.findall(r"^#{1,3} (.+)$", body, re.M)}
            heading = headings[page].get(e.anchor, e.anchor)
            place = titles[page] if heading == titles[page] else f"{titles[page]} › {heading}"
            where = f"[{place}]({name}#{e.anchor})"
        else:
            where = f"planned: *{PLANNED_CHAPTERS.get(e.chapter, '?')}* (`{name}`)"
        module = f"`{e.module.removeprefix('tmemref.')}`" if e.module else "—"
        out.append((e.section, e.item or "*(the section as a whole)*", where, module))
    return out
