"""Xen: ``tmem_dedup`` and ``tmem_tze`` at work — the experiments of the deduplication chapter.

Not engine code: everything here drives :class:`~tmemref.Host` through ``do_tmem_op`` (or
reads its structures the way the pictures do) and computes what the book compares with it.

* :func:`real_pages` — a fixed, deterministic sample of the pages of real files on this
  machine (the Python library and ``/usr/share``), as a page cache holds them;
* :func:`put_pages` — several guests put the same pages into their own private ephemeral pools;
  the host's own counters (``Ep``, ``Gd``, ``Sc``, ``Zt``, ``Fc`` of ``xl tmem-list``) after
  each guest, and the frames tmem used;
* :func:`independent_count` — the same counters predicted with ``hashlib`` and
  ``bytes.rstrip``, without the engine: :func:`kept_size` is trailing-zero elimination
  written a second way;
* :func:`key_order` — how Xen's comparisons order contents, against ``memcmp``;
* :func:`second_chance_scene` and :func:`evict_once` — the slider of the second chance;
  :class:`Eviction` says what one call of ``tmem_evict`` did, by case name;
* :func:`dedup_probe` — the second chance as a side channel: one guest learns whether
  another holds a page;
* :class:`PersistentDedup` — a model of deduplicated *persistent* pages under five billing
  rules, :func:`billing_experiment` (a random workload) and :func:`doc_scenario` (the design
  document's question).

>>> kept_size(b"abc" + bytes(4093)), kept_size(bytes(4096)), kept_size(b"x" * 4033)
(8, 0, 4096)
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from fractions import Fraction

import numpy as np

from .. import abi
from ..abi import TmemOp
from ..core import evict, pcd as pcd_mod
from ..core.host import Host
from ..core.listparse import parse_list
from ..core.pcd import PCD_TZE_MAX_SIZE, content_key
from ..ds.dlist import list_iter
from ..errors import InvariantError
from ..guest import TmemOps
from ..viz._common import page_text        # a page's name, as the pictures write it
from .experiments import lru_order, make_bench
from .filepages import file_pages

__all__ = ["SAMPLE_ROOTS", "real_pages", "kept_size", "independent_count", "put_pages",
           "PutRun", "key_order", "CASE_NAMES", "content_page", "tail_page", "cases_scene",
           "run_traced", "tze_kept", "Eviction", "evict_once",
           "second_chance_scene", "lru_text", "dedup_probe", "RULES", "PersistentDedup",
           "billing_experiment", "doc_scenario"]

PAGE = abi.PAGE_SIZE

#: The two halves of the real-data sample: the Python library, and ``/usr/share``.
SAMPLE_ROOTS = (("/usr/lib/python3*",), ("/usr/share",))

#: ``{case value: constant name}`` for the named cases of the pcd layer and of eviction
#: (``"second chance"`` -> ``"SECOND_CHANCE"``), as the book prints them.
CASE_NAMES = {v: k for m in (pcd_mod, evict) for k, v in sorted(vars(m).items())
              if k.isupper() and isinstance(v, str)
              and v in getattr(m, "CASES", ()) + getattr(m, "SKIPS", ())}


# --- real pages ---------------------------------------------------------------------------------
def real_pages(limit: int = 2400, *, per_file: int = 2, groups=SAMPLE_ROOTS) -> list:
    """``limit`` pages of real files: an equal share from each group of roots (by default the
    Python library, then ``/usr/share``), files in sorted path order, at most ``per_file``
    pages (the first ones) of each file; a file's last page zero-padded as a page cache holds
    it. The same machine gives the same list every time. O(limit) reads.

    >>> len(real_pages(10)), {len(p) for p in real_pages(10)}
    (10, {4096})
    """
    if limit <= 0:
        raise ValueError("limit must be positive")
    each, extra = divmod(limit, len(groups))
    out = []
    for i, roots in enumerate(groups):
        out += file_pages(roots, limit=each + (i < extra), per_file=per_file)
    return out


def kept_size(page) -> int:
    """What trailing-zero elimination keeps of ``page``, computed without the engine: the
    length without its trailing zero bytes, rounded up to whole 8-byte words; a whole page when
    that exceeds 4032 bytes (Xen's ``PCD_TZE_MAX_SIZE``); 0 for an all-zero page. O(PAGE)."""
    n = len(bytes(page).rstrip(b"\0"))
    n = -(-n // 8) * 8
    return PAGE if n > PCD_TZE_MAX_SIZE else n


def independent_count(pages, guests: int, *, tze: bool = False, tze_match: str = "doc") -> dict:
    """The host's dedup counters predicted for ``guests`` guests each putting ``pages`` (no
    eviction), from SHA-256 digests and :func:`kept_size` alone: ``Ep`` (good ephemeral puts),
    ``Sc`` (pcds), ``Gd`` (deduplicated puts), ``Zt`` (bytes the pcds keep under tze; 0
    without) and ``Fc`` (whole frames of data).

    With ``tze_match="xen"`` a page shrunk by tze is never found again (Xen's compare): each
    put of one makes a pcd of its own. O(guests × pages)."""
    digests = [hashlib.sha256(p).digest() for p in pages]
    kept = [kept_size(p) if tze else PAGE for p in pages]
    puts = guests * len(pages)
    whole = {d for d, k in zip(digests, kept) if k == PAGE}
    if tze and tze_match == "xen":
        shrunk = [k for k in kept if k < PAGE]
        pcds = len(whole) + guests * len(shrunk)
        zt = PAGE * len(whole) + guests * sum(shrunk)
        deduped = guests * (len(pages) - len(shrunk)) - len(whole)
    else:
        distinct = dict(zip(digests, kept))
        pcds = len(distinct)
        zt = sum(distinct.values()) if tze else 0
        deduped = puts - pcds
    return {"Ep": puts, "Sc": pcds, "Gd": deduped, "Zt": zt, "Fc": len(whole)}


def tze_kept(lengths) -> np.ndarray:
    """What the engine keeps of the tail of a file of each length in ``lengths`` (bytes,
    0 … 4096): each :func:`tail_page` is put into a fresh dedup + tze host and the size of its
    pcd read back (4096: a whole frame). O(len(lengths)) hypercalls."""
    lengths = [int(n) for n in lengths]
    if any(not 0 <= n <= PAGE for n in lengths):
        raise ValueError("lengths must be in 0..4096")
    host = Host(pages=len(lengths) + 1024, dedup=True, tze=True)
    host.create_domain(1, pages=16)
    g = TmemOps(host, 1)
    pool = g.new_pool()
    out = np.zeros(len(lengths), dtype=np.int64)
    for i, n in enumerate(lengths):
        oid, index = (i // 64 + 1, 0, 0), i % 64
        if g.put_page(pool, oid, index, tail_page(n)) != 1:
            raise RuntimeError(f"put of a {n}-byte tail failed")
        out[i] = host.clients[1].pools[pool].find(oid).tree.lookup(index).data.size
    host.check()
    return out


@dataclass
class PutRun:
    """What :func:`put_pages` saw: the host, and after each guest's last put the host's
    counters from ``xl tmem-list -l`` (``Ep``, ``Gd``, ``Sc``, ``Zt``, ``Gz``, ``Fc``) and the
    frames tmem held (``frames``: data and metadata)."""
    host: Host                         # the host after every guest's puts
    after: list = field(default_factory=list)   # one dict per guest, in order


#: The counters of the ``G=`` line that :func:`put_pages` records.
COUNTERS = ("Ep", "Gd", "Sc", "Zt", "Gz", "Fc")


def put_pages(pages, guests: int, **host_kw) -> PutRun:
    """Guests 1 … ``guests`` (domains 1, 2, …) each put ``pages``, in order, into a private
    ephemeral pool of their own (page ``i`` at object ``(i // 64 + 1, 0, 0)``, index ``i %
    64``), on a fresh host large enough that nothing is evicted. ``host_kw`` go to
    :class:`~tmemref.Host` (``dedup``, ``tze``, ``tze_match``, ``compress``). Every put must
    return 1; ``host.check()`` at the end. O(guests × pages) hypercalls."""
    if guests < 1:
        raise ValueError("at least one guest")
    n = len(pages)
    frames = guests * n + guests * n // 16 + 1024       # data, metadata, guard, guests
    bench = make_bench(frames, guests, **host_kw)
    host = bench.host
    run = PutRun(host)
    op = TmemOp(cmd=abi.TMEM_PUT_PAGE)
    for d, pool in zip(bench.domids, bench.pools):
        op.pool_id = pool
        for i, page in enumerate(pages):
            op.oid, op.index, op.page = (i // 64 + 1, 0, 0), i % 64, page
            rc = host.do_tmem_op(d, op)
            if rc != 1:
                raise RuntimeError(f"guest {d} put {i} returned {abi.rc_name(rc)}")
        g = parse_list(host.list_stats())["global"]
        row = {k: int(g[k]) for k in COUNTERS}
        row["frames"] = host.mem.freeable_page_count
        run.after.append(row)
    host.check()
    if host.evicted_pgs:
        raise RuntimeError("the host was too small: pages were evicted")
    return run


# --- the key order --------------------------------------------------------------------------------
def key_order(contents, compressed: bool = False) -> list:
    """Ranks of ``contents`` (byte strings) in a pcd tree, as Xen's comparisons order them
    (:func:`tmemref.core.pcd.content_key`), beside their ranks by ``memcmp`` (plain byte
    order, shorter first on a tie): ``[(xen_rank, memcmp_rank), …]`` in input order.
    O(n log n × length).

    >>> key_order([b"\\x01" + bytes(7) + b"\\x00" * 8, bytes(7) + b"\\x01" + b"\\x00" * 8])
    [(0, 1), (1, 0)]
    """
    contents = [bytes(c) for c in contents]
    xen = sorted(range(len(contents)), key=lambda i: content_key(contents[i], compressed))
    mem = sorted(range(len(contents)), key=lambda i: contents[i])
    return [(xen.index(i), mem.index(i)) for i in range(len(contents))]


# --- the named cases ------------------------------------------------------------------------------
def content_page(tag: str) -> bytes:
    """A 4096-byte page whose content is named by ``tag`` (pages with the same tag are
    identical): ``"content A"`` and its padding. O(PAGE)."""
    return f"content {tag} ".encode().ljust(PAGE, b".")


def tail_page(n: int) -> bytes:
    """The last page of a small file: ``n`` bytes of text, then zeros. O(PAGE)."""
    return (b"tail of a file " * 300)[:n].ljust(PAGE, b"\0")


def cases_scene():
    """``(host, steps)``: a host with dedup and tze, domains 1 and 2 with a private ephemeral
    pool each, and six steps — d1 puts content A; d2 puts A; d1 puts the 100-byte tail of a
    file; d2 puts an all-zero page; d1 flushes its A; d2 flushes its A. Each step returns the
    hypercall's value. O(1)."""
    host = Host(pages=1024, dedup=True, tze=True)
    for d in (1, 2):
        host.create_domain(d, pages=16, max_pages=64)
    g1, g2 = TmemOps(host, 1), TmemOps(host, 2)
    p1, p2 = g1.new_pool(), g2.new_pool()
    steps = [("d1 puts content A", lambda h: g1.put_page(p1, (1, 0, 0), 0, content_page("A"))),
             ("d2 puts content A", lambda h: g2.put_page(p2, (2, 0, 0), 0, content_page("A"))),
             ("d1 puts a file's 100-byte tail",
              lambda h: g1.put_page(p1, (1, 0, 0), 1, tail_page(100))),
             ("d2 puts an all-zero page", lambda h: g2.put_page(p2, (2, 0, 0), 1, bytes(PAGE))),
             ("d1 flushes its A", lambda h: g1.flush_page(p1, (1, 0, 0), 0)),
             ("d2 flushes its A", lambda h: g2.flush_page(p2, (2, 0, 0), 0))]
    return host, steps


def run_traced(host, steps) -> list:
    """Apply ``steps`` (``(caption, fn)``, ``fn(host)``) with the pcd layer's trace on; one
    row per step: caption, return value, the named cases in order (constant names), then the
    host's pcds (``Sc``), deduplicated puts (``Gd``), whole data frames (``Fc``) and tze bytes
    (``Zt``) after it. ``host.check()`` after each step. O(steps)."""
    rows = []
    for caption, fn in steps:
        cases = []
        old, host.pcd.trace = host.pcd.trace, cases.append
        try:
            rc = fn(host)
        finally:
            host.pcd.trace = old
        host.check()
        g = parse_list(host.list_stats())["global"]
        rows.append((caption, rc, [CASE_NAMES[c] for c in cases],
                     int(g["Sc"]), int(g["Gd"]), int(g["Fc"]), int(g["Zt"])))
    return rows


# --- the second chance ----------------------------------------------------------------------------

@dataclass
class Eviction:
    """What one call of ``tmem_evict`` did: the pages it skipped, by reason (the case names
    of :mod:`tmemref.core.evict`), the page it evicted (``None``: none) and whether that freed
    the page's pcd (``LAST_USER``) or left it to the other pgps that use it."""
    skipped: list            # [(page name, reason)], in walk order
    victim: str | None       # page name, "d1:p0:(1,0,0)[2]"
    pcd_freed: bool          # the victim was its pcd's last user

    def __repr__(self):
        parts = [f"{CASE_NAMES.get(why, why)} {name}" for name, why in self.skipped]
        if self.victim is None:
            parts.append("nothing evicted")
        else:
            parts.append(f"evicted {self.victim} ("
                         + ("LAST_USER: its pcd freed)" if self.pcd_freed
                            else "its pcd stays for the other users)"))
        return "; ".join(parts)


def evict_once(host) -> Eviction:
    """Call ``tmem_evict`` once (for no client: the global list) and say what it did.
    O(pages skipped)."""
    skipped, cases = [], []
    before = lru_order(host)
    layer = host.pcd
    old, layer.trace = layer.trace, cases.append
    try:
        evict.tmem_evict(host, None,
                         trace=lambda pgp, why: skipped.append((page_text(pgp), why)))
    finally:
        layer.trace = old
    gone = [p for p in before if p not in set(lru_order(host))]
    return Eviction(skipped, gone[0] if gone else None, pcd_mod.LAST_USER in cases)


def second_chance_scene():
    """``(host, steps)`` for the slider: a dedup host where domain 1 put contents A, X, B and
    domain 2 put A and C (oldest first, A shared by both), and five steps that each call
    ``tmem_evict`` once (:func:`evict_once`). O(1)."""
    host = Host(pages=1024, dedup=True)
    for d in (1, 2):
        host.create_domain(d, pages=16, max_pages=64)
    g1, g2 = TmemOps(host, 1), TmemOps(host, 2)
    p1, p2 = g1.new_pool(), g2.new_pool()
    for g, p, oid, index, tag in [(g1, p1, (1, 0, 0), 0, "A"), (g1, p1, (1, 0, 0), 1, "X"),
                                  (g2, p2, (2, 0, 0), 0, "A"), (g1, p1, (1, 0, 0), 2, "B"),
                                  (g2, p2, (2, 0, 0), 1, "C")]:
        if g.put_page(p, oid, index, content_page(tag)) != 1:
            raise RuntimeError("the scene's put failed")
    host.check()
    return host, [("tmem_evict", evict_once)] * 5


def lru_text(host) -> str:
    """The global ephemeral list, oldest first, one page a line: its name, its content's
    first bytes, how many pgps use its pcd, and ``sent back once`` when it had its second
    chance. O(pages)."""
    lines = []
    for node in list_iter(host.eph_list):
        pgp = node.owner
        pcd = pgp.data
        text = host.pcd.stored_bytes(pcd)[:10].decode("ascii", "replace")
        mark = "  sent back once" if pgp.eviction_attempted else ""
        lines.append(f"{page_text(pgp):18} {text!r:14} pgps on its pcd: {pcd.ref_count}{mark}")
    return "\n".join(lines) or "(empty)"


def dedup_probe(victim_holds: bool, *, dedup: bool = True, victim_pages: int = 20) -> dict:
    """Does guest 2 learn whether guest 1 holds a page, through the second chance?

    Guest 1 (the victim) puts ``victim_pages`` pages — the first one a secret page when
    ``victim_holds``. Guest 2 then puts its guess of the secret, and after it distinct pages
    until ``victim_pages + 1`` pages have been evicted: with plain LRU every page older than
    the guess, and the guess itself, would be gone. Finally guest 2 gets its guess back.
    Returns ``{"hit": bool, "fillers": int, "sent_back": [page names marked by a second
    chance before the get]}``. O(host size)."""
    bench = make_bench(600, 2, dedup=dedup)
    host, (pv, pa) = bench.host, bench.pools
    secret = content_page("secret: the root password is hunter2")
    for i in range(victim_pages):
        page = secret if (i == 0 and victim_holds) else content_page(f"victim page {i}")
        if host.do_tmem_op(1, TmemOp(cmd=abi.TMEM_PUT_PAGE, pool_id=pv, oid=(1, 0, 0),
                                     index=i, page=page)) != 1:
            raise RuntimeError("victim put failed")
    attacker = TmemOps(host, 2)
    if attacker.put_page(pa, (9, 0, 0), 0, secret) != 1:
        raise RuntimeError("probe put failed")
    start, fillers = host.evicted_pgs, 0
    while host.evicted_pgs < start + victim_pages + 1:
        fillers += 1
        if attacker.put_page(pa, (10, 0, 0), fillers, content_page(f"filler {fillers}")) != 1:
            raise RuntimeError("filler put failed")
    marked = sorted(page_text(n.owner) for n in list_iter(host.eph_list)
                    if n.owner.eviction_attempted)
    hit = attacker.get_page(pa, (9, 0, 0), 0, bytearray(PAGE)) == 1
    host.check()
    return {"hit": hit, "fillers": fillers, "sent_back": marked}


# --- persistent pages: who pays? --------------------------------------------------------------
RULES = {
    "first": "the domain whose put made the frame pays for it; when it leaves, the sharer that "
             "joined first after it pays",
    "orphan": "the domain whose put made the frame pays for it; when it leaves, nobody does",
    "split": "every domain using the frame pays an equal fraction of it",
    "every": "every persistent page is billed to its domain as if it had its own copy",
    "per-content": "each domain pays once for each distinct content it holds, whoever else "
                   "holds it too",
}


class PersistentDedup:
    """Not a Xen concept (Xen never deduplicated persistent pages): a model of persistent
    pages shared by content between domains, billed by one of :data:`RULES`.

    Each domain has a maximum (``max_pages``); a put is admitted only if the putting domain's
    bill, after the put, stays within it — the check Xen makes when it bills a persistent
    frame to a domain. A page is ``(domain, page id) -> content``; one frame per content.

    Invariants (:meth:`check`, raising :class:`~tmemref.errors.InvariantError`):

    1. ``users[c]`` counts, per domain, exactly the pages holding content ``c``, and a content
       is held (has a frame) only while some page holds it;
    2. the bills kept up to date step by step equal the bills the rule gives when computed
       from scratch;
    3. ``payer[c]`` (rules ``first`` and ``orphan``) is a domain using ``c``, or ``None`` only
       under ``orphan``.

    Soundness is a separate question (:meth:`unsound`): a rule is sound if, after every step,
    (S1) no domain's bill exceeds its maximum and (S2) every frame is paid for in full.

    >>> m = PersistentDedup("first", {1: 10, 2: 1})
    >>> m.put(1, "X"), m.put(2, "Y"), m.put(2, "X")     # 2 is at its maximum, X is free
    (True, True, True)
    >>> m.destroy(1); m.check(); m.unsound()
    ['S1: domain 2 is billed 2 > its maximum 1']
    """

    def __init__(self, rule: str, max_pages: dict):
        if rule not in RULES:
            raise ValueError(f"rule must be one of {sorted(RULES)}")
        if not max_pages or any(int(m) < 0 for m in max_pages.values()):
            raise ValueError("max_pages: a non-negative maximum per domain")
        self.rule = rule
        self.max_pages = {int(d): int(m) for d, m in max_pages.items()}
        self.pages: dict = {}                      # (domain, page id) -> content
        self.users: dict = {}                      # content -> {domain: pages}, join order
        self.payer: dict = {}                      # content -> paying domain (first/orphan)
        self.bill = {d: Fraction(0) for d in self.max_pages}   # kept step by step
        self.next_id = 0                           # page ids, never reused
        self.refused = 0                           # puts refused: bill would exceed maximum

    # --- the rule ------------------------------------------------------------------------------
    def _share(self, c) -> dict:
        """What content ``c`` adds to each domain's bill under the rule, now."""
        users = self.users.get(c)
        if not users:
            return {}
        if self.rule == "every":
            return {d: Fraction(n) for d, n in users.items()}
        if self.rule == "per-content":
            return {d: Fraction(1) for d in users}
        if self.rule == "split":
            return {d: Fraction(1, len(users)) for d in users}
        payer = self.payer.get(c)
        return {} if payer is None else {payer: Fraction(1)}

    def _change(self, c, fn) -> None:
        """Apply ``fn()`` (which changes the users of ``c``) and update the bills."""
        for d, x in self._share(c).items():
            self.bill[d] -= x
        fn()
        for d, x in self._share(c).items():
            self.bill[d] += x

    # --- operations -------------------------------------------------------------------------------
    def put(self, dom: int, content) -> bool:
        """Domain ``dom`` stores a new page holding ``content``; False (nothing changes) if its
        bill would then exceed its maximum. O(sharers of the content)."""
        if dom not in self.max_pages:
            raise KeyError(f"no domain {dom}")
        made = content not in self.users

        def add():
            users = self.users.setdefault(content, {})
            users[dom] = users.get(dom, 0) + 1
            if made and self.rule in ("first", "orphan"):
                self.payer[content] = dom
        self._change(content, add)
        if self.bill[dom] > self.max_pages[dom]:      # refused: undo, as if never tried
            self._change(content, lambda: self._drop(content, dom))
            self.refused += 1
            return False
        self.pages[(dom, self.next_id)] = content
        self.next_id += 1
        return True

    def _drop(self, content, dom) -> None:
        """One page of ``dom`` stops holding ``content`` (the users' side of a flush)."""
        users = self.users[content]
        users[dom] -= 1
        if users[dom] == 0:
            del users[dom]
        if not users:
            del self.users[content]
            self.payer.pop(content, None)
        elif self.payer.get(content) == dom and dom not in users:
            self.payer[content] = next(iter(users)) if self.rule == "first" else None

    def flush(self, dom: int, page_id: int) -> None:
        """Domain ``dom`` flushes one of its pages. When it held the last page of its content
        the frame goes; when the paying domain stops using a content others still use, the
        rule says who pays next. O(sharers)."""
        content = self.pages.pop((dom, page_id))
        self._change(content, lambda: self._drop(content, dom))

    def destroy(self, dom: int) -> None:
        """Domain ``dom`` dies: every page of it is flushed (its maximum stays, for a new
        domain of the same id). O(its pages × sharers)."""
        for d, page_id in sorted(k for k in self.pages if k[0] == dom):
            self.flush(d, page_id)

    # --- measures ---------------------------------------------------------------------------------
    def frames(self) -> int:
        """Frames in use: one per distinct content held. O(1)."""
        return len(self.users)

    def unsound(self) -> list:
        """The soundness properties broken now (empty: none): S1 a domain billed beyond its
        maximum; S2 a frame not paid for in full. O(domains + contents)."""
        out = [f"S1: domain {d} is billed {b} > its maximum {self.max_pages[d]}"
               for d, b in sorted(self.bill.items()) if b > self.max_pages[d]]
        unpaid = sum(1 for c in self.users if sum(self._share(c).values()) < 1)
        if unpaid:
            out.append(f"S2: {unpaid} frame(s) paid for by nobody in full")
        return out

    def _bills_from_scratch(self) -> dict:
        bill = {d: Fraction(0) for d in self.max_pages}
        for c in self.users:
            for d, x in self._share(c).items():
                bill[d] += x
        return bill

    def check(self) -> None:
        """Verify invariants 1-3; raises :class:`InvariantError`. O(pages + contents)."""
        counted: dict = {}
        for (d, _), c in self.pages.items():
            per = counted.setdefault(c, {})
            per[d] = per.get(d, 0) + 1
        if counted != {c: dict(u) for c, u in self.users.items()} or \
                any(not u for u in self.users.values()):
            raise InvariantError("persistent dedup invariant 1: users do not match the pages")
        if self._bills_from_scratch() != self.bill:
            raise InvariantError("persistent dedup invariant 2: the bills kept step by step "
                                 "differ from the rule's")
        for c in self.users:
            payer = self.payer.get(c)
            if self.rule in ("first", "orphan") and (
                    (payer is None and self.rule == "first") or
                    (payer is not None and payer not in self.users[c])):
                raise InvariantError(f"persistent dedup invariant 3: content {c!r} is paid "
                                     f"for by {payer}, not one of its users")


def billing_experiment(rule: str, *, steps: int = 2000, seed: int = 0, domains: int = 4,
                       max_pages: int = 4, contents: int = 12) -> dict:
    """A random workload on :class:`PersistentDedup` under ``rule``: each step a random domain
    puts a page (60 %; contents drawn with probability ∝ 1/(k+1), so a few are common), flushes
    one of its pages (30 %) or dies and is replaced by a fresh domain (10 %). ``check()`` after
    every step. Returns the steps at which S1 or S2 was broken, the puts refused, and the
    average pages held and frames used. Deterministic for a seed. O(steps × pages)."""
    rng = np.random.default_rng(seed)
    m = PersistentDedup(rule, {d: max_pages for d in range(1, domains + 1)})
    p = 1.0 / np.arange(1, contents + 1)
    p /= p.sum()
    over = unpaid = 0
    held = frames = 0
    for _ in range(steps):
        d = int(rng.integers(1, domains + 1))
        r = rng.random()
        if r < 0.6:
            m.put(d, int(rng.choice(contents, p=p)))
        elif r < 0.9:
            own = sorted(k for k in m.pages if k[0] == d)
            if own:
                m.flush(*own[int(rng.integers(len(own)))])
        else:
            m.destroy(d)
        m.check()
        broken = m.unsound()
        over += any(b.startswith("S1") for b in broken)
        unpaid += any(b.startswith("S2") for b in broken)
        held += len(m.pages)
        frames += m.frames()
    return {"rule": rule, "steps_over_max": over, "steps_unpaid": unpaid,
            "refused": m.refused, "pages_held": held / steps, "frames": frames / steps}


def doc_scenario(rule: str) -> dict:
    """The design document's question under ``rule``: domain A (maximum 10) is well under its
    maximum and puts X; domain B (maximum 2) puts Y and Z, reaching its maximum, then puts X
    — a match of A's page; then A dies. Returns whether B's put of X was admitted, B's bill
    after A's death (a ``Fraction``) and what is broken then (:meth:`PersistentDedup.unsound`).
    O(1)."""
    m = PersistentDedup(rule, {1: 10, 2: 2})
    m.put(1, "X")
    m.put(2, "Y")
    m.put(2, "Z")
    admitted = m.put(2, "X")
    m.destroy(1)
    m.check()
    return {"rule": rule, "admitted": admitted, "bill": m.bill[2], "max": 2,
            "broken": m.unsound()}
