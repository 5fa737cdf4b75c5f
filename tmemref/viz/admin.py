"""Xen: ``tmemc_list`` and the ``TMEMC_*`` handlers, shown: the tables and sessions of chapter 6.

What the book shows about the administrator's side, computed live from the package:

* :data:`COUNTER_DOCS` — what every two-letter LIST counter means, keyed ``(line, tag)``;
  :func:`list_keys`, :func:`counter_rows` — the keys of a LIST text and their meanings;
* :data:`SUBOP_HANDLERS`, :func:`subop_rows`, :func:`handler_rows` — which part of
  :mod:`tmemref.core.control` handles each ``TMEMC_*`` sub-op, and what it returns here;
* :data:`CONTROL_NOTE_TOPICS`, :func:`control_notes` — the fidelity notes about control;
* :class:`Transcript` — a host and the ``xl`` commands (:mod:`tmemref.xl`) run on it, printed
  as a shell session;
* :class:`CacheGuest`, :func:`absorbed_host`, :func:`make_room_steps`,
  :func:`freeable_breakdown` — the manageability sequence of tmem-internals.html (freeze →
  query freeable MB → flush → create → thaw), run live;
* :func:`statistics_host` — a small host with something in every counter.

>>> from tmemref import Host
>>> from tmemref.xl import tmem_freeze, tmem_freeable, tmem_list
>>> host = Host(pages=1024)
>>> _ = host.create_domain(1, pages=64, max_pages=128)
>>> guest = CacheGuest(host, 1)                     # its first hypercall makes its client
>>> guest.put(3)
3 × 1
>>> tmem_freeze(host, 1)
0
>>> guest.put(1)
1 × -EFROZEN
>>> print(tmem_list(host, 1), end="")               # xl adds a newline after the buffer
C=CI:1,ww:0,ca:0,co:0,fr:1,Tc:0,Ge:0,Pp:0,Gp:0
P=CI:1,PI:0,PT:EP,U0:0,U1:0
<BLANKLINE>
>>> tmem_freeable(host)                             # 3 pages + a metadata frame: < 1 MB
0
"""
from __future__ import annotations

import inspect
import re
from collections import Counter
from dataclasses import dataclass, field
from typing import List, Optional

from .. import abi
from ..abi import TmemOp
from ..core import control, save, stats
from ..core.host import Host
from ..guest.ops import Call, TmemOps
from ..guest.xl import (ALL, DOM0, LIST_BUFFER, command_line, sender_of, tmem_destroy,
                        tmem_flush, tmem_freeable, tmem_freeze, tmem_list, tmem_set,
                        tmem_shared_auth, tmem_thaw, uuid_parse)

__all__ = ["COUNTER_DOCS", "counter_rows", "list_keys", "SUBOP_HANDLERS", "handler_summary",
           "subop_rows", "handler_rows", "number_ranges", "CONTROL_NOTE_TOPICS",
           "control_notes", "Transcript", "Outcome", "CacheGuest", "absorbed_host",
           "tool_free_pages", "flush_kb_needed", "make_room_steps", "freeable_breakdown",
           "statistics_host", "STATS_UUID"]


# --- what the LIST counters mean ----------------------------------------------------------------
def _timing_docs() -> dict:
    """The T= keys (only in Xen <= 4.3 built with TMEM_PERF): four per timed operation."""
    ops = (("G", "successful gets"), ("P", "successful puts"), ("g", "failed gets"),
           ("p", "failed puts"), ("F", "page flushes"), ("O", "object flushes"),
           ("C", "page copies"), ("c", "compressions"), ("d", "decompressions"))
    parts = (("n", "count", "samples of"), ("t", "sum_cycles", "total cycles of"),
             ("x", "max_cycles", "most cycles one of"), ("m", "min_cycles", "fewest cycles one of"))
    return {("T", letter + suffix): f"{field}: {what} the {label} (TMEM_PERF builds only)"
            for letter, label in ops for suffix, field, what in parts}


_POOL_LONG = {
    "Pc": "pgp_count: pages in the pool now",
    "Pm": "pgp_count_max: most pages the pool ever held",
    "Oc": "obj_count: objects in the pool now",
    "Om": "obj_count_max: most objects it ever held",
    "Nc": "objnode_count: radix-tree nodes of its objects now",
    "Nm": "objnode_count_max: most radix-tree nodes",
    "ps": "good_puts: puts that stored the page (new or duplicate)",
    "pt": "puts: every put to the pool, failed ones included",
    "pd": "dup_puts_flushed: duplicate puts that failed, flushing the old page",
    "pr": "dup_puts_replaced: duplicate puts that overwrote the old page",
    "px": "no_mem_puts: puts that failed for want of memory (or because the client was frozen)",
    "gs": "found_gets: gets that returned a page",
    "gt": "gets: every get to a pool that held pages",
    "fs": "flushs_found: page flushes that found the page",
    "ft": "flushs: every page flush",
    "os": "flush_objs_found: object flushes that found the object",
    "ot": "flush_objs: every object flush",
}

#: What each two-letter counter of TMEMC_LIST means, keyed ``(line letter, tag)``: ``"G"`` the
#: host, ``"C"`` a client, ``"P"`` a client's pool, ``"S"`` a global shared pool, ``"T"`` timing.
#: Each value is ``"xen_field: meaning"`` (facts §8.2; Xen's ``tmemc_list*``).
COUNTER_DOCS = {
    # G= short
    ("G", "Tt"): "total_tmem_ops: tmem hypercalls of every kind, control operations included",
    ("G", "Te"): "errored_tmem_ops: hypercalls that returned a negative value",
    ("G", "Cf"): "failed_copies: page copies to or from a guest frame that failed",
    ("G", "Af"): "alloc_failed: sub-page (metadata) allocations that failed",
    ("G", "Pf"): "alloc_page_failed: frame allocations for page data that failed",
    ("G", "Ta"): "tmem_page_list_pages: frames on tmem's own free list (\"tmem pages avail\")",
    ("G", "Lm"): "low_on_memory: never incremented anywhere in Xen, always 0",
    ("G", "Et"): "evicted_pgs: ephemeral pages evicted",
    ("G", "Ea"): "evict_attempts: calls to the evictor, successful or not",
    ("G", "Rt"): "relinq_pgs: frames tmem handed to the heap when the heap ran dry",
    ("G", "Ra"): "relinq_attempts: times the heap asked tmem for a frame",
    ("G", "Rx"): "max_evicts_per_relinq: most evictions one such request needed",
    ("G", "Fp"): "total_flush_pool: never incremented anywhere in Xen, always 0",
    # G= long
    ("G", "Ec"): "eph_count: ephemeral pages in tmem now (all clients)",
    ("G", "Em"): "global_eph_count_max: most ephemeral pages ever held",
    ("G", "Oc"): "global_obj_count: objects now, all pools",
    ("G", "Om"): "global_obj_count_max: most objects ever",
    ("G", "Nc"): "global_rtree_node_count: radix-tree nodes now, all objects",
    ("G", "Nm"): "global_rtree_node_count_max: most radix-tree nodes ever",
    ("G", "Pc"): "global_pgp_count: page descriptors now (pages stored, all pools)",
    ("G", "Pm"): "global_pgp_count_max: most page descriptors ever",
    ("G", "Fc"): "global_page_count: whole frames holding page data now",
    ("G", "Fm"): "global_page_count_max: most such frames ever",
    ("G", "Sc"): "global_pcd_count: dedup page-content descriptors now (Xen 4.1-4.7)",
    ("G", "Sm"): "global_pcd_count_max: most page-content descriptors ever",
    ("G", "Ep"): "tot_good_eph_puts: successful puts to ephemeral pools",
    ("G", "Gd"): "deduped_puts: puts whose data matched a page already stored (dedup)",
    ("G", "Zt"): "pcd_tot_tze_size: bytes the dedup descriptors hold after trailing-zero "
                 "elimination (whole pages count 4096)",
    ("G", "Gz"): "pcd_tot_csize: bytes the dedup descriptors hold compressed (whole pages "
                 "count 4096)",
    # C= short
    ("C", "CI"): "cli_id: the client's domain id",
    ("C", "ww"): "weight: its share of ephemeral memory (xl tmem-set -w); 0 = none",
    ("C", "ca"): "cap: set by xl tmem-set -c, stored and listed, never enforced (Xen <= 4.7)",
    ("C", "co"): "compress: 1 if its new pages are compressed",
    ("C", "fr"): "frozen: 1 if its new puts are refused (xl tmem-freeze)",
    ("C", "Tc"): "total_cycles: cycles spent on its behalf (TMEM_PERF builds only, else 0)",
    ("C", "Ge"): "succ_eph_gets: successful gets from ephemeral pools it owns (a sharer's "
                 "get counts for the owner)",
    ("C", "Pp"): "succ_pers_puts: successful puts to persistent pools it owns",
    ("C", "Gp"): "succ_pers_gets: successful gets from persistent pools it owns",
    # C= long
    ("C", "Ec"): "eph_count: its ephemeral pages now (the length of its LRU list)",
    ("C", "Em"): "eph_count_max: most ephemeral pages it ever held",
    ("C", "cp"): "compressed_pages: its pages stored compressed now",
    ("C", "cb"): "compressed_sum_size: bytes of those compressed pages",
    ("C", "cn"): "compress_poor: pages that did not compress below the limit, stored raw",
    ("C", "cm"): "compress_nomem: compressions that failed for want of memory",
    # P= short
    ("P", "CI"): "cli_id: the client whose pool slot this line describes",
    ("P", "PI"): "pool_id: the pool's own id (for a shared pool, its owner's slot)",
    ("P", "PT"): "type: P/E persistent or ephemeral, then S/P shared or private",
    ("P", "U0"): "uuid[0]: first uuid word, hex (0 for a private pool)",
    ("P", "U1"): "uuid[1]: second uuid word, hex (0 for a private pool)",
    **{("P", tag): text for tag, text in _POOL_LONG.items()},
    # S= (global shared pools)
    ("S", "SI"): "index: the pool's slot in the global shared_pools[16] table",
    ("S", "PT"): "type: P/E persistent or ephemeral, then S for shared",
    ("S", "U0"): "uuid[0]: first uuid word, hex",
    ("S", "U1"): "uuid[1]: second uuid word, hex",
    ("S", "SC"): "sharer: the domain id of one client sharing the pool (once per sharer)",
    **{("S", tag): text for tag, text in _POOL_LONG.items()},
    # T= (not printed by tmemref: no cycle counters; Xen <= 4.3 with TMEM_PERF only)
    **_timing_docs(),
}


def list_keys(text: str) -> list:
    """Every ``(line letter, tag)`` that occurs in LIST text, in order of first appearance.

    >>> list_keys("G=Tt:1,Te:0\\nC=CI:1,ww:0\\nC=CI:2,ww:3\\n")
    [('G', 'Tt'), ('G', 'Te'), ('C', 'CI'), ('C', 'ww')]
    """
    seen = {}
    for line in text.splitlines():
        if len(line) < 2 or line[1] != "=":
            continue
        for item in line[2:].split(","):
            tag, sep, _ = item.partition(":")
            if sep:
                seen.setdefault((line[0], tag), None)
    return list(seen)


def counter_rows(text: str, shared_pool_stats: bool = True) -> list:
    """Rows ``(line, tag, Xen counter, meaning, value)`` for every key of a LIST text, in the
    text's order; ``value`` is the first occurrence's (several ``C=`` lines: the first
    client's). ``shared_pool_stats=False`` leaves out the ``S=`` tags that repeat the pool
    counters of ``P=`` lines (``Pc`` … ``ot``). KeyError for a key :data:`COUNTER_DOCS` does
    not describe."""
    first = {}
    for line in text.splitlines():
        if len(line) < 2 or line[1] != "=":
            continue
        for item in line[2:].split(","):
            tag, sep, raw = item.partition(":")
            if sep:
                first.setdefault((line[0], tag), raw)
    rows = []
    for key in list_keys(text):
        if not shared_pool_stats and key[0] == "S" and key[1] in _POOL_LONG:
            continue
        xen, _, meaning = COUNTER_DOCS[key].partition(": ")
        rows.append((f"{key[0]}=", key[1], xen, meaning, first[key]))
    return rows


# --- the sub-ops and who handles them -----------------------------------------------------------
#: Which callable of the engine does the work of each ``TMEMC_*`` sub-op in
#: :func:`tmemref.core.control.do_control` (None: not modelled).
SUBOP_HANDLERS = {
    abi.TMEMC_THAW: control.freeze_pools,
    abi.TMEMC_FREEZE: control.freeze_pools,
    abi.TMEMC_FLUSH: control.flush_mem,
    abi.TMEMC_DESTROY: control.freeze_pools,
    abi.TMEMC_LIST: stats.tmemc_list_into,
    abi.TMEMC_SET_WEIGHT: control.set_var,
    abi.TMEMC_SET_CAP: control.set_var,
    abi.TMEMC_SET_COMPRESS: control.set_var,
    abi.TMEMC_QUERY_FREEABLE_MB: Host.freeable_pages,
    abi.TMEMC_SAVE_BEGIN: save.save_begin,
    abi.TMEMC_SAVE_GET_VERSION: save.limits,
    abi.TMEMC_SAVE_GET_MAXPOOLS: save.limits,
    abi.TMEMC_SAVE_GET_CLIENT_WEIGHT: save.client_info,
    abi.TMEMC_SAVE_GET_CLIENT_CAP: save.client_info,
    abi.TMEMC_SAVE_GET_CLIENT_FLAGS: save.client_info,
    abi.TMEMC_SAVE_GET_POOL_FLAGS: save.pool_info,
    abi.TMEMC_SAVE_GET_POOL_NPAGES: save.pool_info,
    abi.TMEMC_SAVE_GET_POOL_UUID: save.pool_info,
    abi.TMEMC_SAVE_GET_NEXT_PAGE: save.save_get_next_page,
    abi.TMEMC_SAVE_GET_NEXT_INV: save.save_get_next_inv,
    abi.TMEMC_SAVE_END: save.save_end,
    abi.TMEMC_RESTORE_BEGIN: save.restore_begin,
    abi.TMEMC_RESTORE_PUT_PAGE: save.restore_put_page,
    abi.TMEMC_RESTORE_FLUSH_PAGE: save.restore_flush_page,
}

_XEN_PREFIX = re.compile(r"\AXen: ``[^`]+``(?: / ``[^`]+``)?(?: \([^)]*\))? — ")


def handler_summary(fn) -> str:
    """The first paragraph of a handler's docstring, without its ``Xen: ``name`` — `` prefix,
    with reST ````code```` turned into Markdown ```code```.

    >>> handler_summary(control.flush_mem)[:40]
    'evict ephemeral pages until `ceil(kb/4)`'
    """
    if fn is None:
        return "not modelled"
    doc = inspect.getdoc(fn) or ""
    para = " ".join(doc.split("\n\n", 1)[0].split())
    para = _XEN_PREFIX.sub("", para)
    return para.replace("``", "`")


def _demo_host() -> Host:
    """A small host for :func:`subop_rows`: guest 1 with one ephemeral page."""
    host = Host(pages=1024)
    host.create_domain(1, pages=64, max_pages=128)
    CacheGuest(host, 1).put(1)
    return host


def number_ranges(numbers) -> str:
    """Sorted numbers as runs: ``"10–21, 30, 32, 33"``.

    >>> number_ranges([33, 10, 11, 12, 30, 32])
    '10–12, 30, 32, 33'
    """
    nums = sorted(numbers)
    runs, start = [], None
    for i, n in enumerate(nums):
        if start is None:
            start = n
        if i + 1 == len(nums) or nums[i + 1] != n + 1:
            runs.append(str(start) if n == start else
                        f"{start}, {n}" if n == start + 1 else f"{start}–{n}")
            start = None
    return ", ".join(runs)


def subop_rows(grouped: bool = False) -> list:
    """For every sub-op of :data:`tmemref.abi.SUBOP_NAMES`, in numeric order:
    ``(number, name, handler, what it does here, sent by, rc from dom0, rc from dom1)``.

    The two rc columns are live: each sub-op is issued on a fresh small host (guest 1 holds
    one ephemeral page) with ``cli_id`` 1 — or "all" for FLUSH and QUERY_FREEABLE_MB, which
    only take that — from domain 0 and from the guest (always -EPERM: control is for
    privileged domains only). LIST gets a 32768-byte buffer. ``grouped=True`` folds the
    save / restore sub-ops (:mod:`tmemref.core.save`) into one row whose number column gives
    their ranges (:func:`number_ranges`). O(sub-ops) small hosts."""
    rows = []
    for sub in sorted(abi.SUBOP_NAMES):
        rcs = []
        for caller in (DOM0, 1):
            host = _demo_host()
            cli = ALL if sub in (abi.TMEMC_FLUSH, abi.TMEMC_QUERY_FREEABLE_MB) else 1
            op = TmemOp(cmd=abi.TMEM_CONTROL, subop=sub, cli_id=cli,
                        arg1=LIST_BUFFER if sub == abi.TMEMC_LIST else 0,
                        buf=bytearray(LIST_BUFFER) if sub == abi.TMEMC_LIST else None)
            rcs.append(abi.rc_name(host.do_tmem_op(caller, op)))
            host.check()
        fn = SUBOP_HANDLERS[sub]
        rows.append((sub, abi.SUBOP_NAMES[sub].removeprefix("TMEMC_"), _where(fn),
                     handler_summary(fn), sender_of(sub), rcs[0], rcs[1]))
    if grouped:
        kept = [r for r in rows if r[0] not in control.SAVE_RESTORE_SUBOPS]
        rest = [r for r in rows if r[0] in control.SAVE_RESTORE_SUBOPS]
        kept.append((number_ranges([r[0] for r in rest]),
                     f"SAVE_* and RESTORE_* ({len(rest)} sub-ops)", SAVE_MODULE, SAVE_SUMMARY,
                     "save / restore / migrate, Xen <= 4.5 (libxc)",
                     "/".join(sorted({r[5] for r in rest})),
                     "/".join(sorted({r[6] for r in rest}))))
        rows = kept
    return rows


SAVE_MODULE = "core.save"
SAVE_SUMMARY = ("save, restore and live migration: a client's pools and persistent pages "
                "read out one hypercall at a time, rebuilt on a target, and the invalidation "
                "log of a live migration")


def _where(fn) -> str:
    return "—" if fn is None else f"{fn.__module__.removeprefix('tmemref.')}.{fn.__qualname__}"


def handler_rows() -> list:
    """``(handler, sub-op names, what it does here)`` — one row per engine function of
    :data:`SUBOP_HANDLERS` (in order of its first sub-op), the functions of
    :mod:`tmemref.core.save` folded into one row.

    >>> handler_rows()[0][:2]
    ('core.control.freeze_pools', ['THAW', 'FREEZE', 'DESTROY'])
    """
    groups: dict = {}
    for sub in sorted(SUBOP_HANDLERS):
        fn = SUBOP_HANDLERS[sub]
        key = SAVE_MODULE if sub in control.SAVE_RESTORE_SUBOPS else fn
        groups.setdefault(key, []).append(abi.SUBOP_NAMES[sub].removeprefix("TMEMC_"))
    return [(key, subs, SAVE_SUMMARY) if key == SAVE_MODULE
            else (_where(key), subs, handler_summary(key)) for key, subs in groups.items()]


#: Topics of :data:`tmemref.fidelity.NOTES` about the control plane and its statistics.
CONTROL_NOTE_TOPICS = (
    "Who may call control operations", "TMEMC_DESTROY", "TMEM_AUTH flag value",
    "TMEM_AUTH for a domain that never used tmem", "T= timing line in LIST", "LIST quirks",
    "A LIST line that does not fit", "Over-quota rule for weighted clients",
    "TMEM_AUTH twice with the same uuid", "TMEM_RESTORE_NEW for client 0xFFFF",
)


def control_notes() -> list:
    """The fidelity notes of :data:`CONTROL_NOTE_TOPICS`, in that order (KeyError if one
    is missing from :data:`tmemref.fidelity.NOTES`)."""
    from ..fidelity import NOTES
    by_topic = {n.topic: n for n in NOTES}
    return [by_topic[t] for t in CONTROL_NOTE_TOPICS]


# --- a session at the console -------------------------------------------------------------------
class Outcome:
    """A step's result, shown by its text (e.g. in an explorer's caption); ``ok`` says
    whether it did what was asked."""
    __slots__ = ("text", "ok", "value")

    def __init__(self, text: str, ok: bool = True, value=None):
        self.text, self.ok, self.value = text, ok, value

    def __repr__(self):
        return self.text


@dataclass
class Transcript:
    """A host and the commands run on it, kept as the lines of a shell session.

    ``t.run("freeze", None)`` calls :func:`tmem_freeze` with ``(host, None)``, appends
    ``# xl tmem-freeze -a`` and whatever xl printed (nothing, here), and returns the
    function's value. ``t.note(text)`` adds a comment line. ``str(t)`` is the session;
    ``t.calls`` every hypercall made (:class:`~tmemref.guest.ops.Call`).

    >>> from tmemref import Host
    >>> t = Transcript(Host(pages=512))
    >>> t.run("freeable")
    0
    >>> print(t)
    # xl tmem-freeable
    0
    >>> print(t.calls[0])
    dom0 CONTROL subop=QUERY_FREEABLE_MB cli_id=65535 arg1=0 arg2=0 -> 0
    """
    host: Host
    lines: List[str] = field(default_factory=list)
    calls: List[Call] = field(default_factory=list)

    _FUNCS = {"list": tmem_list, "freeze": tmem_freeze, "thaw": tmem_thaw, "set": tmem_set,
              "shared_auth": tmem_shared_auth, "freeable": tmem_freeable, "flush": tmem_flush,
              "destroy": tmem_destroy}

    def run(self, name: str, domid: Optional[int] = None, **opts):
        fn = self._FUNCS[name]
        self.lines.append("# " + command_line(name, domid, **opts))
        if name == "freeable":
            out = fn(self.host, trace=self.calls)
        elif name == "flush":
            out = fn(self.host, opts["kb"], domid, trace=self.calls)
        else:
            out = fn(self.host, domid, trace=self.calls, **opts)
        if name == "list":
            self.lines.append(out.rstrip("\n"))
        elif name in ("freeable", "flush"):
            self.lines.append(str(out) + (" KB flushed" if name == "flush" else ""))
        return out

    def note(self, text: str) -> None:
        self.lines.append("# " + text)

    def __str__(self):
        return "\n".join(self.lines)


# --- the manageability sequence -----------------------------------------------------------------
def _page_of(n: int) -> bytes:
    """A distinct, recognisable 4096-byte page for sequence number ``n``."""
    return (n.to_bytes(8, "little") + b"clean page") * 227 + bytes(4096 - 18 * 227)


class CacheGuest:
    """A guest that keeps putting new clean pages into one private ephemeral pool, as
    cleancache does when its page cache is squeezed (``oid`` = a file, 64 pages per file).

    ``CacheGuest(host, domid)`` makes the pool (the guest's first hypercall);
    ``put(n)`` puts the next ``n`` pages and returns an :class:`Outcome` counting the return
    codes (``value`` is the :class:`collections.Counter`). Runs ``host.check()`` after each
    batch. O(n) hypercalls.
    """

    def __init__(self, host: Host, domid: int):
        self.host = host
        self.ops = TmemOps(host, domid)
        self.pool = self.ops.new_pool(0)
        if self.pool < 0:
            raise RuntimeError(f"NEW_POOL failed: {abi.rc_name(self.pool)}")
        self.next = 0

    def put(self, n: int) -> Outcome:
        rcs = Counter()
        for _ in range(n):
            i = self.next
            self.next += 1
            rcs[self.ops.put_page(self.pool, (i // 64, 0, 0), i % 64, _page_of(i))] += 1
        self.host.check()
        text = ", ".join(f"{k} × {abi.rc_name(rc)}" for rc, k in sorted(rcs.items(),
                                                                       reverse=True))
        return Outcome(text, ok=set(rcs) <= {1}, value=rcs)

    def __repr__(self):
        return f"<CacheGuest dom{self.ops.domid} pool {self.pool}, {self.next} pages put>"


def absorbed_host(pages: int = 4096, *, dom0_pages: int = 256, guest_pages: int = 768,
                  extra: int = 256):
    """A host where tmem has absorbed nearly all free memory: domain 1 (``guest_pages`` of
    its own) puts clean pages until tmem first has to evict, then ``extra`` more. Afterwards
    only the 1 MB guard (256 frames, less the one the last put took) is free.

    Returns ``(host, guest)`` (a :class:`CacheGuest`). Deterministic. O(pages) hypercalls.
    """
    host = Host(pages=pages, dom0_pages=dom0_pages)
    host.create_domain(1, pages=guest_pages, max_pages=2 * guest_pages)
    guest = CacheGuest(host, 1)
    while host.evicted_pgs == 0:
        guest.put(64)
    guest.put(extra)
    return host, guest


def tool_free_pages(host: Host) -> int:
    """Frames the toolstack sees as free (the heap: ``xl info``'s free memory). Memory held
    by tmem — even freeable memory on its free list — is not free to it."""
    return len(host.mem.heap)


def flush_kb_needed(host: Host, pages: int) -> int:
    """KB to ask TMEMC_FLUSH for so that ``pages`` frames are free on the heap (0 if they
    are already)."""
    return max(0, pages - tool_free_pages(host)) * 4


def make_room_steps(t: Transcript, domid: int, pages: int, *, max_pages: Optional[int] = None,
                    freeze: bool = True, meanwhile: Optional[tuple] = None,
                    claim: bool = False) -> list:
    """The steps of tmem-internals.html's "freeable memory" sequence, for
    :func:`tmemref.viz.record`: ``[(caption, fn), …]``, each ``fn(host)`` running one
    step on ``t.host`` and logging it in the transcript ``t``.

    1. ``xl tmem-freeze -a`` (skipped if ``freeze`` is False);
    2. ``xl tmem-freeable`` — whole MB tmem could release;
    3. TMEMC_FLUSH of :func:`flush_kb_needed` KB (no xl command: libxc / xend);
    4. ``meanwhile``, if given: ``(caption, fn)`` — what a guest does in the meantime;
    5. create domain ``domid`` with ``pages`` frames — the tool does so only if it sees
       ``pages`` free frames on the heap (:func:`tool_free_pages`), else it refuses, as
       a tool that "may notice that there is insufficient free memory and fail the
       creation" (tmem-internals.html). With ``claim`` (xl.conf's ``claim_mode``) the
       tool instead creates the domain empty, stakes a claim for ``pages``
       (:meth:`Host.claim`, which counts tmem's freeable memory as available) and, if
       granted, populates the domain (:meth:`Host.balloon` up to ``pages``);
    6. ``xl tmem-thaw -a`` (if frozen in step 1).
    """
    host = t.host
    steps = []
    if freeze:
        steps.append(("xl tmem-freeze -a", lambda h: t.run("freeze", None)))
    steps.append(("xl tmem-freeable", lambda h: t.run("freeable")))

    def flush(h):
        kb = flush_kb_needed(host, pages)
        return t.run("flush", None, kb=kb)

    steps.append(("flush: TMEMC_FLUSH of the KB the new guest still lacks", flush))
    if meanwhile is not None:
        caption, fn = meanwhile

        def busy(h):
            out = fn(h)
            t.note(f"meanwhile: {caption} → {out!r}")
            return out

        steps.append((f"meanwhile: {caption}", busy))

    def create(h):
        free = tool_free_pages(host)
        limit = pages if max_pages is None else max_pages
        if claim:
            host.create_domain(domid, pages=0, max_pages=limit)
            rc = host.claim(domid, pages)
            got = host.balloon(domid, pages) if rc == 0 else 0
            out = Outcome(f"claim {abi.rc_name(rc)}, populated {got} frames",
                          got == pages, value=free)
        elif free < pages:
            out = Outcome(f"refused: {free} frames free", False, value=free)
        else:
            host.create_domain(domid, pages=pages, max_pages=limit)
            out = Outcome("created", True, value=free)
        t.note(f"create domain {domid}, {pages * 4} KB: {out!r}")
        return out

    steps.append((f"create domain {domid} ({pages} frames)", create))
    if freeze:
        steps.append(("xl tmem-thaw -a", lambda h: t.run("thaw", None)))
    return steps


def freeable_breakdown(host: Host) -> dict:
    """Every frame tmem holds, by kind, and whether ``xl tmem-freeable`` counts it:
    ``{kind: (frames, counted)}``. The counted frames add up to
    :meth:`Host.freeable_pages` (tmem_page_list + ephemeral frames); persistent frames are
    billed to their domains and never counted."""
    from .frames import frame_counts
    counts = frame_counts(host)
    out = {}
    for name, counted in (("tmem page list (free)", True), ("tmem ephemeral data", True),
                          ("tmem ephemeral metadata", True)):
        out[name] = (counts.get(name, 0), counted)
    for name, n in counts.items():
        if "persistent tmem" in name:
            out[name] = (n, False)
    return out


# --- a host with something in every counter -----------------------------------------------------
#: The uuid of :func:`statistics_host`'s shared pool, as an administrator types it.
STATS_UUID = "5eed0000-0000-0001-f00d-000000000002"


def statistics_host() -> Host:
    """A small host whose LIST output has every kind of line and most counters non-zero.

    Domain 1: a private ephemeral pool (cleancache-like: 6 puts, a duplicate put, two
    exclusive gets, a flush that hits and one that misses, an object flush that misses) and a
    persistent pool (frontswap-like: 4 puts, a get). Domain 2: weight 2, compression on,
    a private ephemeral pool with 3 compressible pages. Both, authorised by dom0 for
    :data:`STATS_UUID`, join one shared ephemeral pool and put a page each; domain 2 gets
    domain 1's. Finally domain 2 is frozen and tries one more put (-EFROZEN). Every call is
    followed by ``host.check()``. Deterministic.
    """
    host = Host(pages=1024)
    for d in (1, 2):
        host.create_domain(d, pages=64, max_pages=256)
    g1, g2 = TmemOps(host, 1), TmemOps(host, 2)
    buf = bytearray(abi.PAGE_SIZE)

    def ok(rc, want=1):
        host.check()
        if rc != want:
            raise RuntimeError(f"statistics_host: got {abi.rc_name(rc)}, wanted "
                               f"{abi.rc_name(want)}")
        return rc

    eph = g1.new_pool(0)
    pers = g1.new_pool(abi.TMEM_POOL_PERSIST)
    host.check()
    for i in range(6):
        ok(g1.put_page(eph, (10 + i // 4, 0, 0), i % 4, _page_of(i)))
    ok(g1.put_page(eph, (10, 0, 0), 0, _page_of(100)))          # duplicate put: replaced
    ok(g1.get_page(eph, (10, 0, 0), 0, buf))                     # exclusive gets
    ok(g1.get_page(eph, (11, 0, 0), 1, buf))
    ok(g1.flush_page(eph, (10, 0, 0), 1))                        # found
    ok(g1.flush_page(eph, (10, 0, 0), 9))                        # not found: still 1
    ok(g1.flush_object(eph, (99, 0, 0)))                         # not found: still 1
    for i in range(4):
        ok(g1.put_page(pers, (19, 0, 0), i, _page_of(200 + i)))
    ok(g1.get_page(pers, (19, 0, 0), 2, buf))
    ok(g2.get_page(g2.new_pool(0), (1, 0, 0), 0, buf), -abi.EEMPTY)   # makes client 2
    tmem_set(host, 2, weight=2, compress=1)
    host.check()
    for i in range(3):
        ok(g2.put_page(0, (1, 0, 0), i, bytes([65 + i]) * abi.PAGE_SIZE))
    lo_hi = uuid_parse(STATS_UUID)
    for g in (g1, g2):
        tmem_shared_auth(host, g.domid, uuid=STATS_UUID, auth=1)
        pool = g.new_pool(abi.TMEM_POOL_SHARED, uuid=lo_hi)
        host.check()
        ok(g.put_page(pool, (30, 0, 0), g.domid, _page_of(300 + g.domid)))
    ok(g2.get_page(1, (30, 0, 0), 1, buf))                       # shared: not exclusive
    tmem_freeze(host, 2)
    ok(g2.put_page(0, (1, 0, 0), 7, _page_of(7)), -abi.EFROZEN)
    return host
