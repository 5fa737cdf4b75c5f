"""Xen: the questions tmem-internals.html leaves open, each put to an experiment.

The design document leaves several things "as exercises" or "notes to self". The workload
study of its modified LRU is :mod:`tmemref.sim.study`; this module holds the other experiments:

====================================  ===========================================================
:func:`cap_vs_weights`                a working cap (Xen's was a no-op) against weights, two
                                      guests, in the model of :mod:`.study`
:func:`weights_model_vs_engine`       the model's weights against the engine's, same workload
:func:`numa_study`                    a two-node host: where tmem's pages land and how many
                                      gets are served from the far node; a node-local design
:func:`metadata_per_page`             sub-page bytes the engine allocates per ephemeral page
:func:`heap_limited_capacity`         what a direct-mapped heap limit implies for tmem
:func:`persistent_dedup_billing`      three ways to bill a persistent page two domains share,
                                      against the design document's scenario and random ones
:func:`persistent_dedup_premise`      the engine deduplicates ephemeral pages, not persistent
:func:`pcd_infra_bytes`               what pcds cost the global allocator, per content
====================================  ===========================================================

Every function is deterministic; those that drive the engine call ``host.check()``.
"""
from __future__ import annotations

import random
from dataclasses import dataclass

import numpy as np

from .study import Case, Variant, simulate
from .workloads import swamp, zipf

__all__ = ["CAP_SETTINGS", "cap_vs_weights", "weights_model_vs_engine", "numa_study",
           "X86_32_DIRECTMAP_BYTES", "X86_64_TMEM_RAM_LIMIT", "metadata_per_page",
           "heap_limited_capacity", "SCHEMES", "persistent_dedup_billing",
           "doc_billing_scenario", "persistent_dedup_premise", "pcd_infra_bytes"]


# --- caps and weights ----------------------------------------------------------------------------
#: The settings :func:`cap_vs_weights` compares: label -> Variant keywords. Guest 0 is the heavy
#: guest (domain 1), guest 1 the light one (domain 2), as in :func:`.workloads.swamp`.
CAP_SETTINGS = {
    "no weights, no cap": {},
    "weights 1:3, documented rule": {"weights": (1, 3), "quota_rule": "doc"},
    "weights 1:3, Xen's formula": {"weights": (1, 3), "quota_rule": "xen"},
    "cap: heavy guest at most 50 %": {"caps": (0.5, 1.0)},
    "cap: heavy guest at most 25 %": {"caps": (0.25, 1.0)},
}


def _swamp(first: str):
    """The eviction chapter's two guests: a heavy one reading 3x as often, and a light one."""
    return swamp(1200, head_start=1500, first=first, rate=3)


def _shares(run, n_guests: int, capacity: int) -> dict:
    res = run.samples["resident"]
    tail = slice(len(res) - max(1, len(res) // 4), len(res))
    total = res.sum(axis=1, keepdims=True)
    share = np.divide(res, total, out=np.zeros(res.shape), where=total > 0)
    start = int(run.samples["t"][tail.start]) if len(res) else 0
    return {"share": share[tail].mean(axis=0),
            "hit_ratio": np.array([run.hit_ratio(start, g) for g in range(n_guests)]),
            "resident": res, "t": run.samples["t"], "fill": total[tail].mean() / capacity}


def cap_vs_weights(first: str = "light", capacity: int = 720, samples: int = 50) -> dict:
    """The eviction chapter's weights experiment (a light guest and a heavy one reading 3x as
    often, ``first`` starting alone) in the model, for every setting of :data:`CAP_SETTINGS`.
    A cap, as this model enforces it: a client holding its cap's share of ``capacity`` evicts
    its own oldest page before each new put, even when memory is free. Returns ``{label:
    {"share", "hit_ratio", "resident", "t", "fill"}}``: each guest's share of tmem's pages and
    its hit ratio over the last quarter of the run, the resident pages over time, and how
    full tmem was. O(settings × references)."""
    w = _swamp(first)
    case = Case(w.name, w)
    every = max(1, len(w) // samples)
    return {label: _shares(simulate(case, Variant(label, **kw), capacity, every=every), 2,
                           capacity)
            for label, kw in CAP_SETTINGS.items()}


def weights_model_vs_engine(first: str = "light", samples: int = 50) -> dict:
    """The same weights experiment run by the engine (:func:`.experiments.weights_experiment`,
    the eviction chapter's) and by the model at the engine's capacity (the most ephemeral
    pages it held at once): the light guest's final share under each weight setting of
    :data:`CAP_SETTINGS`, ``{label: (engine, model)}``, plus ``capacity``. O(references)
    hypercalls per setting."""
    from .experiments import weights_experiment
    w = _swamp(first)
    out, runs = {}, {}
    for label, kw in CAP_SETTINGS.items():
        if "caps" in kw:
            continue
        runs[label] = weights_experiment(kw.get("weights", (0, 0)), kw.get("quota_rule", "doc"),
                                         workload=w, samples=samples)
    capacity = int(max(r["resident"].sum(axis=1).max() for r in runs.values()))
    model = cap_vs_weights(first, capacity, samples)
    for label, r in runs.items():
        out[label] = (float(r["final_share"][1]), float(model[label]["share"][1]))
    out["capacity"] = capacity
    return out


# --- NUMA ----------------------------------------------------------------------------------------
def numa_study(workload: str = "unbalanced", capacity: int = 1000) -> dict:
    """A two-node host: guest 0's vCPUs on node 0, guest 1's on node 1, each node holding half
    of tmem's ``capacity`` frames. ``workload``: ``"balanced"`` (two guests reading Zipf-popular
    pages at one rate) or ``"unbalanced"`` (the weights experiment's heavy and light guests,
    light first). Two designs:

    * ``"oblivious"`` — Xen's: one LRU for all; a put takes the frame freed last
      (``tmem_page_list``, last in first out) or, if there is none, a free frame of its own node
      first (``alloc_domheap_pages`` with no domain allocates on the running CPU's node);
    * ``"node-local"`` — each node's frames are a tmem of their own, with their own LRU: a
      guest's pages stay on its node, and it evicts only pages there.

    Returns ``{design: {"hit_ratio": per guest, "remote": per guest (share of its tmem hits
    served from the other node), "all_hit_ratio", "all_remote"}}`` over the last three
    quarters. O(references)."""
    if workload == "balanced":
        w = zipf(8000, 100, 20, 1.0, seed=11, guests=2)
    elif workload == "unbalanced":
        w = _swamp("light")
    else:
        raise ValueError("workload must be 'balanced' or 'unbalanced'")
    case = Case(workload, w)
    skip = len(w) // 4
    out = {}
    for design in ("oblivious", "node-local"):
        run = simulate(case, Variant(design, numa=design), capacity)
        out[design] = {"hit_ratio": [run.hit_ratio(skip, g) for g in (0, 1)],
                       "remote": [run.remote_share(skip, g) for g in (0, 1)],
                       "all_hit_ratio": run.hit_ratio(skip), "all_remote": run.remote_share(skip)}
    return out


# --- 32-bit --------------------------------------------------------------------------------------
#: Xen <= 4.2 on x86_32 (PAE): the direct-map area holding "Xen code/data/heap" is 12 MB
#: (``DIRECTMAP_MBYTES``, xen/include/asm-x86/config.h); there ``_xmalloc``, which tmem uses for
#: every sub-page allocation on i386 (xen/include/xen/tmem_xen.h), allocates from that heap.
X86_32_DIRECTMAP_BYTES = 12 << 20
#: Xen 4.12 on x86_64: tmem is disabled at boot when memory extends past the direct map that
#: ends at ``HYPERVISOR_VIRT_END`` (xen/arch/x86/setup.c): slots 262 to 272 of the top-level
#: page table (xen/include/asm-x86/config.h), 10 x 2**39 bytes = 5 TiB.
X86_64_TMEM_RAM_LIMIT = (272 - 262) << 39


def metadata_per_page(pages: int = 4096, pages_per_object: int = 16) -> dict:
    """Put ``pages`` distinct ephemeral pages, ``pages_per_object`` per object (a file's pages),
    into a host large enough to keep them all, and measure the sub-page allocator: ``bytes``
    (used bytes of the global TLSF pool — pgps, objects, radix nodes, block headers — per
    page), ``frames`` (its frames per page). Structure sizes are x86-64's. ``host.check()``
    at the end. O(pages) hypercalls."""
    from .. import abi
    from ..abi import TmemOp
    from ..core.host import Host
    if pages < 1 or pages_per_object < 1:
        raise ValueError("pages and pages_per_object must be >= 1")
    host = Host(pages + pages // 8 + 1024)
    host.create_domain(1, pages=16, max_pages=64)
    pool = host.do_tmem_op(1, TmemOp(cmd=abi.TMEM_NEW_POOL, flags=abi.pool_flags()))
    data = bytearray(4096)
    op = TmemOp(cmd=abi.TMEM_PUT_PAGE, pool_id=pool, page=data)
    for i in range(pages):
        data[:8] = i.to_bytes(8, "little")
        op.oid, op.index = (i // pages_per_object, 0, 0), i % pages_per_object
        if host.do_tmem_op(1, op) != 1:
            raise RuntimeError("the host was meant to keep every page")
    host.check()
    mp = host.eph_mempool
    return {"bytes": mp.used_size / pages, "frames": mp.num_regions / pages,
            "pages": pages, "pages_per_object": pages_per_object}


def heap_limited_capacity(heap_bytes: int, bytes_per_page: float) -> dict:
    """If every byte of a heap of ``heap_bytes`` went to tmem's metadata at ``bytes_per_page``
    per page, how many pages could tmem hold? ``{"pages", "gib"}`` (GiB of page data): an upper
    bound, since the heap also holds the rest of the hypervisor. O(1).

    >>> heap_limited_capacity(12 << 20, 96)["pages"]
    131072
    """
    if heap_bytes < 0 or bytes_per_page <= 0:
        raise ValueError("need heap_bytes >= 0 and bytes_per_page > 0")
    pages = int(heap_bytes // bytes_per_page)
    return {"pages": pages, "gib": pages * 4096 / 2**30}


# --- persistent dedup billing --------------------------------------------------------------------
#: Ways to bill a persistent page several domains hold, each a function of (the sharers, in
#: order of arrival) -> {domain: pages billed}.
SCHEMES = {
    "creator pays": lambda users: {users[0]: 1.0},
    "split evenly": lambda users: {d: 1.0 / len(users) for d in users},
    "each pays in full": lambda users: {d: 1.0 for d in users},
}


@dataclass
class _Billing:
    """Persistent pages held by domains under one billing scheme. O(sharers) per change."""
    scheme: str
    max_pages: dict

    def __post_init__(self):
        self.users: dict = {}          # content -> [domains holding it, in order of arrival]
        self.held: dict = {d: set() for d in self.max_pages}   # domain -> its contents
        self.billed: dict = {d: 0.0 for d in self.max_pages}   # domain -> pages billed
        self.overdrafts = 0            # a domain pushed over its max by another's action
        self.refused = 0               # puts refused (the putter would exceed its max)
        self.stored = 0                # puts stored
        self.bill = SCHEMES[self.scheme]

    def join(self, d, max_pages) -> None:
        self.max_pages[d] = max_pages
        self.held[d] = set()
        self.billed[d] = 0.0

    def _rebill(self, content, users, actor) -> None:
        """The sharers of ``content`` become ``users``; count who is pushed over its max."""
        old = self.bill(self.users[content]) if content in self.users else {}
        new = self.bill(users) if users else {}
        for u in set(old) | set(new):
            if u not in self.billed:
                continue
            was = self.billed[u] > self.max_pages[u] + 1e-9
            self.billed[u] += new.get(u, 0.0) - old.get(u, 0.0)
            if u != actor and not was and self.billed[u] > self.max_pages[u] + 1e-9:
                self.overdrafts += 1
        if users:
            self.users[content] = users
        else:
            del self.users[content]

    def frames(self) -> int:
        return len(self.users)

    def put(self, d, content) -> bool:
        if content in self.held[d]:
            return True
        users = self.users.get(content, []) + [d]
        if self.billed[d] + self.bill(users).get(d, 0.0) > self.max_pages[d] + 1e-9:
            self.refused += 1
            return False
        self._rebill(content, users, d)
        self.held[d].add(content)
        self.stored += 1
        return True

    def leave(self, d) -> None:
        """Domain ``d`` dies: its pages go; what others are billed may change."""
        for c in sorted(self.held.pop(d), key=repr):
            self._rebill(c, [u for u in self.users[c] if u != d], d)
        del self.max_pages[d], self.billed[d]


def doc_billing_scenario(scheme: str) -> dict:
    """The design document's question, played out: domain A (max 8 pages) creates a page;
    domain B, already at its max (4 of 4), puts the same page; then A is destroyed. Returns
    B's bill and max at the end, whether B's put was stored, and the host's frames. O(1)."""
    b = _Billing(scheme, {"A": 8, "B": 4})
    b.put("A", "X")
    for i in range(4):
        b.put("B", f"b{i}")
    stored = b.put("B", "X")
    before = b.billed["B"]
    b.leave("A")
    return {"B stored X": stored, "B billed before A died": before,
            "B billed after": b.billed["B"], "B max": 4, "frames": b.frames(),
            "overdrafts": b.overdrafts}


def persistent_dedup_billing(domains: int = 6, contents: int = 200, steps: int = 4000,
                             max_pages: int = 60, share: float = 0.5, seed: int = 0) -> dict:
    """A random run for each of :data:`SCHEMES`: ``domains`` domains (max ``max_pages`` each)
    put persistent pages, a fraction ``share`` of them drawn from a pool of ``contents`` pages
    every domain may hold (a common image), the rest their own; every 400 steps a random
    domain dies and a fresh one takes its place. Per scheme: ``overdrafts`` (a domain pushed
    over its max by another domain's death), ``refused`` puts, ``stored`` puts, and ``frames``
    / ``bills`` (host frames held against the pages billed, at the end). The same random
    choices for every scheme (seeded). O(steps × pages held)."""
    out = {}
    for scheme in SCHEMES:
        rng = random.Random(seed)
        b = _Billing(scheme, {d: max_pages for d in range(domains)})
        nxt = domains
        own = 0
        for step in range(steps):
            d = rng.choice(sorted(b.max_pages))
            if rng.random() < share:
                c = ("common", rng.randrange(contents))
            else:
                own += 1
                c = ("own", own)
            b.put(d, c)
            if step % 400 == 399:
                b.leave(rng.choice(sorted(b.max_pages)))
                b.join(nxt, max_pages)
                nxt += 1
        out[scheme] = {"overdrafts": b.overdrafts, "refused": b.refused, "stored": b.stored,
                       "frames": b.frames(), "bills": round(sum(b.billed.values()), 6)}
    return out


def persistent_dedup_premise() -> dict:
    """On a host booted with ``dedup``, two domains put the same page into an ephemeral pool
    each, then into a persistent pool each. Per kind: the contents (pcds) made and the puts
    deduplicated (``deduped_puts``). ``host.check()`` at the end. O(1)."""
    from .. import abi
    from ..abi import TmemOp
    from ..core.host import Host
    host = Host(2048, dedup=True)
    for d in (1, 2):
        host.create_domain(d, pages=16, max_pages=64)
    page = b"the same page".ljust(4096, b".")
    out = {}
    for kind, flags in (("ephemeral", abi.pool_flags()),
                        ("persistent", abi.pool_flags(persist=True))):
        pcds, deduped = host.global_pcd_count, host.deduped_puts
        for d in (1, 2):
            pid = host.do_tmem_op(d, TmemOp(cmd=abi.TMEM_NEW_POOL, flags=flags))
            rc = host.do_tmem_op(d, TmemOp(cmd=abi.TMEM_PUT_PAGE, pool_id=pid, oid=(1, 0, 0),
                                           page=page))
            if rc != 1:
                raise RuntimeError(f"{kind} put returned {rc}")
        out[kind] = {"pcds": host.global_pcd_count - pcds,
                     "deduped_puts": host.deduped_puts - deduped}
    host.check()
    return out


def pcd_infra_bytes(pages: int = 3000, distinct: int = 1000) -> dict:
    """Dedup's own metadata: on a host booted with ``dedup``, ``pages`` ephemeral puts of
    ``distinct`` contents (page i holds content i % distinct). Returns ``pcds``, ``pcd_bytes``
    (what their allocations take from the global sub-page pool: usable size plus a 16-byte
    block header each), ``per_content`` (bytes per content) and ``pool_bytes`` (the pool's used
    bytes, everything included). Xen allocates pcds with no pool (``pool_t`` NULL), from this
    same global pool, whose frames count as freeable; the note to self would have moved them
    to ``tmh_alloc_infra``. ``host.check()`` at the end. O(pages) hypercalls."""
    from .. import abi
    from ..abi import TmemOp
    from ..core.host import Host
    from ..host.tlsf import BHDR_OVERHEAD
    host = Host(distinct + distinct // 4 + 1024, dedup=True)
    host.create_domain(1, pages=16, max_pages=64)
    pool = host.do_tmem_op(1, TmemOp(cmd=abi.TMEM_NEW_POOL, flags=abi.pool_flags()))
    data = bytearray(4096)
    op = TmemOp(cmd=abi.TMEM_PUT_PAGE, pool_id=pool, page=data)
    for i in range(pages):
        data[:8] = (i % distinct).to_bytes(8, "little")
        op.oid, op.index = (i // 16, 0, 0), i % 16
        if host.do_tmem_op(1, op) != 1:
            raise RuntimeError("the host was meant to keep every page")
    host.check()
    pcds = list(host.pcd.pcds())
    mp = host.infra_pool
    pcd_bytes = sum(mp.usable_size(p.meta) + BHDR_OVERHEAD for p in pcds)
    return {"pcds": len(pcds), "pcd_bytes": pcd_bytes, "per_content": pcd_bytes / len(pcds),
            "pool_bytes": mp.used_size, "deduped_puts": host.deduped_puts}
