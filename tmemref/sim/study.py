"""Xen: tmem's modified LRU (tmem-internals.html, "LRU page reclamation"), studied as a sweep.

The design document lists three ways tmem bends least-recently-used eviction — a page whose
locks are busy is skipped, a get from a *shared* pool promotes its page instead of taking it
out, a deduplicated page gets a second chance — and ends: "All of these modified-LRU
algorithms deserve to be studied carefully against a broad range of workloads". This module is
that study: a model of tmem's ephemeral memory fast enough to sweep many configurations
(:data:`VARIANTS` of the policy × :data:`CASES` of workload × capacities × guest page-cache
sizes), run through any ``concurrent.futures.Executor``, with its results kept as data.

**The model** (:func:`simulate`). A :class:`Case` is a stream of references (guest, file,
page) and, per reference, a content id. Each guest has its own LRU page cache of
``guest_cache`` pages in front of tmem (0: every reference reaches tmem, as in the eviction
chapter). A reference the guest's cache misses is a tmem **get**; a page the guest's cache
drops is a cleancache **put** (with no guest cache: the page itself, after a miss). tmem holds
at most ``capacity`` frames of data; before every put it makes room (the 1 MB guard's rule:
evict until a frame is free), walking its :class:`Policy` from the next victim on. A put that
finds nothing to evict fails (the page is simply not kept). What a :class:`Variant` changes:

* ``pool="private"`` — a get that hits takes the page out (Xen's exclusive private get); with
  no guest cache the guest puts it right back, which nets to one more reference to the page
  (:meth:`Policy.touch`). ``pool="shared"`` — a get that hits leaves the page and promotes it;
  a put of a page still held is a duplicate put, which moves nothing (Xen's
  ``do_tmem_dup_put``). With ``Case.same_files`` the guests read one file set, so in a shared
  pool they share one copy of each page;
* ``busy=B`` — trylock skips: the objects (files) of the last ``B`` references are taken to be
  locked by other CPUs while the walk runs, so their pages are skipped — a worst case, as if
  ``B`` other operations were always in flight;
* ``dedup`` — frames are counted per distinct *content*: a put of a content already held takes
  no frame, and evicting one of several pages of a content frees none. ``"second-chance"``
  adds Xen's rule: the first time the walk reaches a page whose content is shared it marks it
  *eviction attempted* and sends it to the young end instead;
* ``policy`` — where a new page goes and what a reference does (:data:`POLICIES`: ``lru``,
  ``fifo``, ``lip``, ``random``, and ``opt``, Belady's clairvoyant MIN, the bound);
* ``weights`` / ``caps`` / ``numa`` — used by :mod:`tmemref.sim.questions`, not the sweep.

The engine agrees with the model where both apply (:func:`engine_agreement`: a replay through
``Host.do_tmem_op`` and the model at the capacity the engine reached, reference by reference).

**The sweep** (:func:`sweep`) splits :data:`GRID` into one task per (case, guest cache,
capacity), each running every variant; :func:`save` and :func:`load` keep the results as
JSON (``book/_data/workload_study.json``), and :func:`check_cache` re-runs a sample of tasks
and raises :class:`~tmemref.errors.InvariantError` when a number differs or the grid, the
code's version or the traces changed. ``python -m tmemref.sim.study`` regenerates everything
(``--workers N`` processes, ``--scheduler ADDRESS`` a ``dask.distributed`` cluster,
``--record-traces`` records the real traces again first, ``--check N`` only re-runs N tasks).

>>> run = simulate(make_case("loop 600"), variant("lru"), capacity=500)
>>> run.hit_ratio(warmup=600)                  # a loop larger than memory: LRU keeps nothing
0.0
>>> simulate(make_case("loop 600"), variant("lip"), capacity=500).hit_ratio(warmup=600) > 0.8
True
"""
from __future__ import annotations

import argparse
import hashlib
import heapq
import json
import os
import random
import sys
import time
from collections import OrderedDict, deque
from dataclasses import asdict, dataclass, field
from functools import lru_cache
from pathlib import Path
from types import SimpleNamespace
from typing import Optional

import numpy as np

from ..errors import InvariantError
from .workloads import Workload, interleave, scan, swamp, zipf, zipf_probabilities

__all__ = ["Case", "CASES", "make_case", "Policy", "ListPolicy", "RandomPolicy", "OptPolicy",
           "POLICIES", "Variant", "VARIANTS", "variant", "Run", "simulate", "Grid", "GRID",
           "tasks", "run_task", "sweep", "Study", "save", "load", "check_cache",
           "engine_agreement", "DATA", "STUDY_FILE", "TRACES_FILE", "main",
           "DISK", "GUEST", "TMEM", "REMOTE", "SECOND"]

#: Where the book keeps the study's data: the traces it replays and the results it caches.
DATA = Path(__file__).resolve().parents[2] / "book" / "_data"
STUDY_FILE = "workload_study.json"
TRACES_FILE = "page_traces.npz"
#: Bumped whenever a change to the model changes any number (the cache records it).
MODEL_VERSION = 1

#: Where a reference was served from (:attr:`Run.served`).
DISK, GUEST, TMEM, REMOTE = 0, 1, 2, 3
#: What a walk's ``accept`` may answer besides True/False: send the page to the young end.
SECOND = "second chance"


# --- cases ---------------------------------------------------------------------------------------
@dataclass(frozen=True, eq=False)
class Case:
    """A workload for the study: references, and what each page holds.

    Invariants (:meth:`check` raises :class:`~tmemref.errors.InvariantError`; built from bad
    arrays, a case raises ``ValueError``):

    1. ``content`` is None or one ``int64`` id per reference;
    2. one page (guest, file, page — or file, page with ``same_files``) never has two content
       ids.
    """
    name: str
    workload: Workload
    content: Optional[np.ndarray] = None   # content id per reference; None: all pages differ
    same_files: bool = False               # the guests read one file set (file f is one file)
    family: str = ""                       # for tables: "zipf", "loop", "mix", "trace", ...

    def __post_init__(self):
        if self.content is not None:
            object.__setattr__(self, "content", np.ascontiguousarray(self.content,
                                                                     dtype=np.int64))
        try:
            self.check()
        except InvariantError as e:
            raise ValueError(str(e)) from None

    def check(self) -> None:
        """Raise :class:`~tmemref.errors.InvariantError` unless the invariants hold.
        O(n log n)."""
        if self.content is None:
            return
        if self.content.shape != self.workload.guest.shape:
            raise InvariantError(f"case {self.name}: invariant 1: one content id per reference")
        page = self._page_ids()
        k, first = np.unique(page, return_index=True)
        if not np.array_equal(self.content[first][np.searchsorted(k, page)], self.content):
            raise InvariantError(f"case {self.name}: invariant 2: a page with two content ids")

    def _page_ids(self) -> np.ndarray:
        w = self.workload
        return w.file * w.pages_per_file + w.page if self.same_files else w.keys()

    def arrays(self, pool: str):
        """``(tmem key, object key, guest-cache key, content)`` per reference, as Python lists,
        for a ``"private"`` or ``"shared"`` pool. O(n)."""
        w = self.workload
        width = int(w.file.max()) + 1 if len(w) else 1
        gkey = w.keys()
        one = pool == "shared" and self.same_files
        tkey = w.file * w.pages_per_file + w.page if one else gkey
        okey = w.file if one else w.guest * width + w.file
        if self.content is not None:
            content = self.content
        else:
            content = w.file * w.pages_per_file + w.page if self.same_files else gkey
        return tkey.tolist(), okey.tolist(), gkey.tolist(), content.tolist()

    def __len__(self) -> int:
        return len(self.workload)


def _shift_files(w: Workload, by: int, guest: int | None = None, name: str | None = None):
    g = w.guest if guest is None else np.full(len(w), guest)
    return Workload(name or w.name, g, w.file + by, w.page, max(w.guests, int(g.max()) + 1),
                    w.pages_per_file)


def _same_popularity(n_refs: int, guests: int, n_files: int, ppf: int, alpha: float,
                     seed: int) -> Workload:
    """Guests reading ONE file set with one popularity ranking, each its own random stream."""
    rng = np.random.default_rng(seed)
    n = n_files * ppf
    rank_to_page = rng.permutation(n)
    p = zipf_probabilities(n, alpha)
    parts = []
    for g in range(guests):
        pages = rank_to_page[rng.choice(n, size=n_refs, p=p)]
        parts.append(Workload(f"zipf a={alpha:g}", np.full(n_refs, g), pages // ppf, pages % ppf,
                              guests, ppf))
    return interleave(parts)


def _from_traces(names, traces, same_files=False) -> tuple:
    """One guest per trace name (guest g replays traces[names[g]]); a name ending in '@half'
    starts that trace at its middle and wraps around."""
    parts, contents = [], []
    ppf = 1 + max(int(traces[n.split("@")[0]].page.max()) for n in names)
    for g, name in enumerate(names):
        t = traces[name.split("@")[0]]
        order = np.arange(len(t))
        if name.endswith("@half"):
            order = np.roll(order, -(len(t) // 2))
        parts.append(Workload(t.name, np.full(len(t), g), t.file[order], t.page[order],
                              len(names), ppf))
        contents.append(t.content[order])
    w = parts[0] if len(parts) == 1 else interleave(parts)
    if len(parts) == 1:
        return w, contents[0]
    # interleave orders by turn, then by part: rebuild the contents in the same order
    turn = np.concatenate([np.arange(len(p)) for p in parts])
    which = np.concatenate([np.full(len(p), i) for i, p in enumerate(parts)])
    return w, np.concatenate(contents)[np.lexsort((which, turn))]


_N = 16000        # references per synthetic case (two guests: 8000 each)
_SYN = (100, 20)  # files, pages per file: 2000 pages


def _zipf_case(alpha):
    return lambda traces: Case(f"zipf a={alpha:g}", zipf(_N, *_SYN, alpha, seed=1),
                               family="zipf")


def _loop_case(pages):
    return lambda traces: Case(f"loop {pages}", scan(_N, pages // 20, 20), family="loop")


def _zipf_scan(traces):
    hot = zipf(_N // 2, *_SYN, 1.0, seed=2)
    cold = _shift_files(scan(_N // 2, 400, 20), _SYN[0])          # 8000 pages read once
    return Case("zipf + one-pass scan", interleave([hot, cold], name="zipf + one-pass scan"),
                family="mix")


def _zipf_loop(traces):
    hot = zipf(_N // 2, *_SYN, 1.0, seed=3)
    loop = _shift_files(scan(_N // 2, 50, 20), 0, guest=1)
    return Case("zipf + loop, 2 guests", interleave([hot, loop], name="zipf + loop"),
                family="mix")


def _swamp(traces):
    w = swamp(_N // 4, head_start=_N // 4, first="light", rate=2, light_files=25,
              heavy_files=100, pages_per_file=20, alpha=0.8, seed=5)
    return Case("heavy + light, 2 guests", w, family="mix")


def _same_files(traces):
    return Case("same files, 2 guests", _same_popularity(_N // 2, 2, *_SYN, 1.0, seed=4),
                same_files=True, family="mix")


def _trace_case(label, names, same_files=False):
    def build(traces):
        if traces is None:
            raise ValueError(f"case {label!r} needs the recorded traces")
        w, content = _from_traces(names, traces)
        return Case(label, w, content, same_files=same_files, family="trace")
    return build


#: The study's workloads, by name, in display order: name -> builder(traces) -> Case.
CASES = {
    "zipf a=0.6": _zipf_case(0.6), "zipf a=0.8": _zipf_case(0.8), "zipf a=1": _zipf_case(1.0),
    "zipf a=1.2": _zipf_case(1.2), "zipf a=1.4": _zipf_case(1.4),
    "loop 600": _loop_case(600), "loop 1500": _loop_case(1500),
    "zipf + one-pass scan": _zipf_scan, "zipf + loop, 2 guests": _zipf_loop,
    "heavy + light, 2 guests": _swamp, "same files, 2 guests": _same_files,
    "trace: python": _trace_case("trace: python", ["python"]),
    "trace: grep": _trace_case("trace: grep", ["grep"]),
    "trace: sqlite": _trace_case("trace: sqlite", ["sqlite"]),
    "trace: copyrights": _trace_case("trace: copyrights", ["copyrights"]),
    "trace: sqlite + grep, 2 guests": _trace_case("trace: sqlite + grep, 2 guests",
                                                  ["sqlite", "grep"]),
    "trace: python, 2 guests, same image": _trace_case(
        "trace: python, 2 guests, same image", ["python", "python@half"], same_files=True),
}


@lru_cache(maxsize=4)
def _traces(path: str, stamp: float):
    from .traces import load as load_traces
    return load_traces(path)


def make_case(name: str, data=None) -> Case:
    """The case called ``name`` (a key of :data:`CASES`). Trace cases read the recorded
    traces from ``data`` (default :data:`DATA`). O(references)."""
    if name not in CASES:
        raise ValueError(f"no case {name!r}; known: {', '.join(CASES)}")
    path = Path(data or DATA) / TRACES_FILE
    traces = _traces(str(path), path.stat().st_mtime) if path.exists() else None
    return CASES[name](traces)


# --- policies ------------------------------------------------------------------------------------
def walk_for_victim(walk, accept, to_young):
    """The eviction walk over ``walk`` (keys, oldest first): the first key ``accept`` answers
    True for; each key it answers :data:`SECOND` for is sent to the young end (``to_young``)
    after the walk, and if none was True the walk goes on into those, in order, as Xen's walk
    reaches the pages it sent back. None if no key is accepted. O(keys walked)."""
    victim, again = None, []
    for key in walk:
        verdict = accept(key)
        if verdict is True:
            victim = key
            break
        if verdict == SECOND:
            again.append(key)
    for key in again:
        to_young(key)
    if victim is None:
        victim = next((k for k in again if accept(k) is True), None)
    return victim


class Policy:
    """The order in which a model tmem gives up its resident pages.

    A policy holds the resident keys and nothing else; :func:`simulate` tells it what happens
    to them: :meth:`insert` (a put of a page not held), :meth:`touch` (a reference to a held
    page), :meth:`remove` (the page leaves: an exclusive get), and asks it for a victim with
    :meth:`evict`. ``owner`` groups pages into per-owner lists (Xen's per-client lists) when
    the policy was made with ``owners=True``. ``next_use`` (the reference index of the page's
    next get, or ``inf``) is given only to policies with ``clairvoyant = True``.
    """
    clairvoyant = False

    def __init__(self, capacity: int, seed: int = 0, owners: bool = False):
        self.capacity, self.seed, self.owners = capacity, seed, owners

    def insert(self, key, owner, next_use=None) -> None:
        raise NotImplementedError

    def touch(self, key, next_use=None) -> None:
        raise NotImplementedError

    def remove(self, key) -> None:
        raise NotImplementedError

    def evict(self, accept=None, owner=None):
        """Choose a victim, remove it, return its key (None: nothing acceptable). ``accept(key)``
        answers True (take it), False (skip it: it keeps its place) or :data:`SECOND` (send it
        to the young end; it may still be taken at the end of this walk if nothing else is).
        ``owner``: walk only that owner's pages."""
        raise NotImplementedError


class ListPolicy(Policy):
    """LRU-like lists, oldest first: ``young`` (a new page goes to the young end; else to the
    old end) and ``moves`` (a reference moves its page to the young end; else it stays).
    LRU is ``(True, True)``, FIFO ``(True, False)``, LIP — the LRU insertion policy of Qureshi
    et al. (ISCA 2007) — ``(False, True)``. O(1) per operation; an eviction walks past the
    pages it skips."""
    young, moves = True, True

    def __init__(self, capacity, seed=0, owners=False):
        super().__init__(capacity, seed, owners)
        self.order: OrderedDict = OrderedDict()      # key -> owner, oldest first
        self.lists: dict = {}                        # owner -> OrderedDict (owners=True)

    def __len__(self):
        return len(self.order)

    def insert(self, key, owner, next_use=None):
        self.order[key] = owner
        if not self.young:
            self.order.move_to_end(key, last=False)
        if self.owners:
            mine = self.lists.setdefault(owner, OrderedDict())
            mine[key] = None
            if not self.young:
                mine.move_to_end(key, last=False)

    def touch(self, key, next_use=None):
        if self.moves:
            self._to_young(key)

    def _to_young(self, key):
        self.order.move_to_end(key)
        if self.owners:
            self.lists[self.order[key]].move_to_end(key)

    def remove(self, key):
        owner = self.order.pop(key)
        if self.owners:
            del self.lists[owner][key]

    def evict(self, accept=None, owner=None):
        walk = self.order if owner is None else self.lists.get(owner, ())
        if accept is None:
            victim = next(iter(walk), None)
        else:
            victim = walk_for_victim(walk, accept, self._to_young)
        if victim is not None:
            self.remove(victim)
        return victim


class LruPolicy(ListPolicy):
    """Least recently used (tmem's lists)."""


class FifoPolicy(ListPolicy):
    """First in, first out: a reference does not move a page."""
    moves = False


class LipPolicy(ListPolicy):
    """LRU insertion policy: a new page goes in at the old end."""
    young = False


class RandomPolicy(Policy):
    """A victim chosen at random (seeded; Python's ``random.Random``). If the first choice is
    skipped, the rest are tried in a random order. Second chances are skips. No per-owner
    lists. O(1) per operation, O(pages) for a walk past a skip."""

    def __init__(self, capacity, seed=0, owners=False):
        if owners:
            raise ValueError("RandomPolicy keeps no per-owner lists")
        super().__init__(capacity, seed, owners)
        self.keys: list = []
        self.at: dict = {}
        self.rng = random.Random(seed)

    def __len__(self):
        return len(self.keys)

    def insert(self, key, owner, next_use=None):
        self.at[key] = len(self.keys)
        self.keys.append(key)

    def touch(self, key, next_use=None):
        pass

    def remove(self, key):
        i = self.at.pop(key)
        last = self.keys.pop()
        if i < len(self.keys):
            self.keys[i] = last
            self.at[last] = i

    def evict(self, accept=None, owner=None):
        if owner is not None:
            raise ValueError("RandomPolicy keeps no per-owner lists")
        if not self.keys:
            return None
        first = self.keys[self.rng.randrange(len(self.keys))]
        victim = first if accept is None or accept(first) is True else None
        if victim is None:
            rest = [k for k in self.keys if k != first]
            self.rng.shuffle(rest)
            victim = next((k for k in rest if accept(k) is True), None)
        if victim is not None:
            self.remove(victim)
        return victim


class OptPolicy(Policy):
    """Belady's MIN: evict the page whose next get is furthest away (clairvoyant). No cache
    that stores every put can hit more often. No skips, no per-owner lists. O(log n) per
    operation (a heap with lazy deletion)."""
    clairvoyant = True

    def __init__(self, capacity, seed=0, owners=False):
        if owners:
            raise ValueError("OptPolicy keeps no per-owner lists")
        super().__init__(capacity, seed, owners)
        self.next: dict = {}
        self.heap: list = []

    def __len__(self):
        return len(self.next)

    def insert(self, key, owner, next_use=None):
        self.touch(key, next_use)

    def touch(self, key, next_use=None):
        self.next[key] = next_use
        heapq.heappush(self.heap, (-next_use, key))

    def remove(self, key):
        del self.next[key]

    def evict(self, accept=None, owner=None):
        if accept is not None or owner is not None:
            raise ValueError("OptPolicy supports no skips and no per-owner lists")
        while self.heap:
            neg, key = heapq.heappop(self.heap)
            if self.next.get(key) == -neg:
                del self.next[key]
                return key
        return None


#: Policies by name (a :class:`Variant` may also name a :class:`Policy` subclass directly).
POLICIES = {"lru": LruPolicy, "fifo": FifoPolicy, "lip": LipPolicy, "random": RandomPolicy,
            "opt": OptPolicy}


# --- variants ------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Variant:
    """One way to run tmem's ephemeral memory (see the module docstring)."""
    name: str                       # id in results
    label: str = ""                 # for tables and legends
    policy: object = "lru"          # a key of POLICIES, or a Policy subclass
    pool: str = "private"           # "private" (exclusive gets) or "shared" (gets promote)
    busy: int = 0                   # objects of the last `busy` references are locked
    dedup: str = "off"              # "off", "plain" or "second-chance"
    weights: Optional[tuple] = None  # per guest (client_over_quota chooses the list)
    quota_rule: str = "doc"         # "doc" or "xen" (tmemref.core.evict.client_over_quota)
    caps: Optional[tuple] = None    # per guest: the most of `capacity` it may hold (0..1)
    numa: Optional[str] = None      # None, "oblivious" (Xen) or "node-local"

    def __post_init__(self):
        if self.pool not in ("private", "shared"):
            raise ValueError("pool must be 'private' or 'shared'")
        if self.dedup not in ("off", "plain", "second-chance"):
            raise ValueError("dedup must be 'off', 'plain' or 'second-chance'")
        if self.quota_rule not in ("doc", "xen"):
            raise ValueError("quota_rule must be 'doc' or 'xen'")
        if self.numa not in (None, "oblivious", "node-local"):
            raise ValueError("numa must be None, 'oblivious' or 'node-local'")
        if not isinstance(self.busy, int) or self.busy < 0:
            raise ValueError("busy must be an int >= 0")
        if not (self.policy in POLICIES or isinstance(self.policy, type)
                and issubclass(self.policy, Policy)):
            raise ValueError(f"unknown policy {self.policy!r}")
        if sum(x is not None for x in (self.weights, self.caps)) + (self.numa == "node-local") > 1:
            raise ValueError("weights, caps and node-local lists do not combine")

    def make_policy(self, capacity: int, seed: int, owners: bool) -> Policy:
        cls = POLICIES[self.policy] if isinstance(self.policy, str) else self.policy
        return cls(capacity, seed, owners)


#: The variants the sweep compares, in display order.
VARIANTS = (
    Variant("lru", "strict LRU"),
    Variant("shared", "shared gets", pool="shared"),
    Variant("trylock", "trylock skips", busy=2),
    Variant("dedup", "dedup", dedup="plain"),
    Variant("dedup-2nd", "dedup + 2nd chance", dedup="second-chance"),
    Variant("tmem", "skips + dedup + 2nd", busy=2, dedup="second-chance"),
    Variant("fifo", "FIFO", policy="fifo"),
    Variant("random", "random", policy="random"),
    Variant("lip", "LIP", policy="lip"),
    Variant("opt", "OPT", policy="opt"),
)


def variant(name: str) -> Variant:
    """The variant of :data:`VARIANTS` called ``name``."""
    for v in VARIANTS:
        if v.name == name:
            return v
    raise ValueError(f"no variant {name!r}; known: {', '.join(v.name for v in VARIANTS)}")


# --- the model -----------------------------------------------------------------------------------
@dataclass
class Run:
    """What :func:`simulate` saw."""
    served: np.ndarray              # per reference: DISK, GUEST, TMEM or REMOTE
    guest: np.ndarray               # per reference: its guest
    failed_puts: int = 0            # puts that found nothing to evict
    evictions: int = 0              # pages evicted
    second_chances: int = 0         # pages sent back once (dedup second chance)
    samples: dict = field(default_factory=dict)  # t, resident (per owner) when every > 0

    def hit_ratio(self, warmup: int = 0, guest: Optional[int] = None) -> float:
        """Fraction of references after the first ``warmup`` not read from disk (served by
        the guest's cache or by tmem), of all guests or of ``guest``. O(n)."""
        s = self.served[warmup:]
        if guest is not None:
            s = s[self.guest[warmup:] == guest]
        return float((s != DISK).mean()) if len(s) else float("nan")

    def tmem_hit_ratio(self, warmup: int = 0) -> float:
        """Fraction of the gets (references the guest's cache missed) after ``warmup`` that
        tmem served. O(n)."""
        s = self.served[warmup:]
        gets = s != GUEST
        return float((s[gets] >= TMEM).mean()) if gets.any() else float("nan")

    def remote_share(self, warmup: int = 0, guest: Optional[int] = None) -> float:
        """Of tmem's hits after ``warmup`` (of ``guest``), the fraction served from the other
        NUMA node. O(n)."""
        s = self.served[warmup:]
        if guest is not None:
            s = s[self.guest[warmup:] == guest]
        hits = s >= TMEM
        return float((s[hits] == REMOTE).mean()) if hits.any() else float("nan")


def _guest_misses(gkey, guests, tkey, guest_cache: int):
    """For a clairvoyant policy: the guest-cache misses (tmem gets) and, for each, the index of
    the next get of the same tmem key (inf if none)."""
    n = len(gkey)
    miss = np.ones(n, dtype=bool)
    if guest_cache:
        caches: dict = {}
        for i in range(n):
            c = caches.setdefault(guests[i], OrderedDict())
            if gkey[i] in c:
                c.move_to_end(gkey[i])
                miss[i] = False
            else:
                c[gkey[i]] = None
                if len(c) > guest_cache:
                    c.popitem(last=False)
    nxt = [float("inf")] * n
    seen: dict = {}
    for i in range(n - 1, -1, -1):
        if miss[i]:
            nxt[i] = seen.get(tkey[i], float("inf"))
            seen[tkey[i]] = i
    return miss, nxt


def simulate(case: Case, var: Variant, capacity: int, guest_cache: int = 0, *, seed: int = 0,
             every: int = 0) -> Run:
    """Replay ``case`` against a model tmem of ``capacity`` frames run as ``var``, each guest
    with an LRU page cache of ``guest_cache`` pages in front. ``every`` > 0 samples each
    owner's resident pages after every ``every`` references (``Run.samples``).
    Deterministic for a given ``seed`` (which only ``random`` uses).
    O(references) times the walk (O(1) unless pages are skipped)."""
    if capacity < 1:
        raise ValueError("capacity must be >= 1")
    if guest_cache < 0:
        raise ValueError("guest_cache must be >= 0")
    w = case.workload
    n = len(w)
    tkey, okey, gkey, content = case.arrays(var.pool)
    guests = w.guest.tolist()
    n_guests = w.guests
    private, shared = var.pool == "private", var.pool == "shared"
    exclusive = private and guest_cache > 0
    dedup, second = var.dedup != "off", var.dedup == "second-chance"
    numa, local = var.numa is not None, var.numa == "node-local"
    weights, caps = var.weights, var.caps
    if weights is not None and len(weights) != n_guests or caps is not None and len(caps) != n_guests:
        raise ValueError("one weight (or cap) per guest")
    owner_lists = weights is not None or caps is not None or local
    policy = var.make_policy(capacity, seed, owner_lists)
    future = policy.clairvoyant
    if future:
        _, next_get = _guest_misses(gkey, guests, tkey, guest_cache)
        last_get: dict = {}

    served = np.zeros(n, dtype=np.int8)
    out = Run(served, w.guest.copy())
    resident: dict = {}          # key -> [content, owner (client), object, list owner]
    refs: dict = {}              # content -> pages holding it
    attempted: set = set()       # pages marked "eviction attempted"
    used = 0                     # frames of data
    count = [0] * n_guests       # resident pages per client
    objs: dict = {}              # object -> resident pages (busy only)
    busy = deque(maxlen=var.busy) if var.busy else None
    busy_set: set = set()
    # NUMA: guest g runs on node g % 2; frames are node 0's first half, node 1's second
    node_cap = [capacity // 2, capacity - capacity // 2]
    heap_free = list(node_cap)
    used_node = [0, 0]
    page_list: list = []         # freed frames by node, reused last-in first-out
    frame_node: dict = {}        # content -> node of its frame
    caches = [OrderedDict() for _ in range(n_guests)] if guest_cache else None
    total_weight = sum(weights) if weights is not None else 0
    cap_pages = [int(c * capacity) for c in caps] if caps is not None else None
    rule = var.quota_rule

    def accept(key):
        entry = resident[key]
        if busy_set and entry[2] in busy_set:
            return False
        if second and refs[entry[0]] > 1 and key not in attempted:
            attempted.add(key)
            out.second_chances += 1
            return SECOND
        return True

    walk_accept = accept if (busy is not None or second) else None

    def drop(key, evicted):
        nonlocal used
        c, owner, obj, _ = resident.pop(key)
        if not evicted:
            policy.remove(key)
        attempted.discard(key)
        count[owner] -= 1
        if busy is not None:
            objs[obj] -= 1
        left = refs[c] - 1
        if left:
            refs[c] = left
        else:
            del refs[c]
            used -= 1
            if numa:
                nd = frame_node.pop(c)
                used_node[nd] -= 1
                page_list.append(nd)

    def evict_one(client, node):
        """One eviction for a put by ``client`` (its vCPU on ``node``); False if none."""
        walk = None
        if weights is not None and total_weight:
            from ..core.evict import client_over_quota
            h = SimpleNamespace(client_weight_total=total_weight, eph_count=len(resident),
                                quota_rule=rule)
            if count[client] and client_over_quota(h, SimpleNamespace(
                    weight=weights[client], eph_count=count[client])):
                walk = client
        elif local:
            walk = node
        if busy_set and walk is None and sum(objs.get(o, 0) for o in busy_set) >= len(resident):
            return False                    # every page is locked: the walk would find none
        victim = policy.evict(walk_accept, walk)
        if victim is None:
            return False
        drop(victim, True)
        out.evictions += 1
        return True

    def put(j, client, t):
        """Cleancache puts the page of reference ``j`` for ``client`` at time ``t``."""
        nonlocal used
        key = tkey[j]
        if key in resident:
            return                          # a duplicate put: nothing moves
        node = client % 2
        if cap_pages is not None:
            while count[client] >= cap_pages[client]:
                if not count[client] or not _evict_own(client):
                    out.failed_puts += 1
                    return
        while (used_node[node] >= node_cap[node]) if local else (used >= capacity):
            if not evict_one(client, node):
                out.failed_puts += 1
                return
        c = content[j] if dedup else key
        if c in refs:
            refs[c] += 1
        else:
            refs[c] = 1
            used += 1
            if numa:
                if local:
                    nd = node
                elif page_list:
                    nd = page_list.pop()
                else:
                    nd = node if heap_free[node] else 1 - node
                    heap_free[nd] -= 1
                frame_node[c] = nd
                used_node[nd] += 1
        owner = client if private else 0
        list_owner = frame_node[c] if local else owner
        resident[key] = [c, owner, okey[j], list_owner]
        count[owner] += 1
        if busy is not None:
            objs[okey[j]] = objs.get(okey[j], 0) + 1
        if future:
            nu = next_get[last_get[key]]
            while nu <= t:
                nu = next_get[nu]
            policy.insert(key, list_owner, nu)
        else:
            policy.insert(key, list_owner)

    def _evict_own(client):
        victim = policy.evict(walk_accept, client)
        if victim is None:
            return False
        drop(victim, True)
        out.evictions += 1
        return True

    t_samples, r_samples = [], []
    for i in range(n):
        g = guests[i]
        if caches is not None:
            cache = caches[g]
            gk = gkey[i]
            if gk in cache:                 # the guest's own cache: tmem sees nothing
                cache.move_to_end(gk)
                cache[gk] = i
                served[i] = GUEST
                continue
        key = tkey[i]
        if future:
            last_get[key] = i
        hit = key in resident
        if hit:
            entry = resident[key]
            served[i] = REMOTE if numa and frame_node[entry[0]] != g % 2 else TMEM
            if exclusive:
                drop(key, False)
            else:
                policy.touch(key, next_get[i] if future else None)
                if private:
                    attempted.discard(key)   # the guest's re-put makes a fresh pgp
        if caches is not None:
            cache[gk] = i
            if len(cache) > guest_cache:
                _, j = cache.popitem(last=False)
                put(j, g, i)
        elif not hit:
            put(i, g, i)
        if busy is not None:
            busy.append(okey[i])
            busy_set = set(busy)
        if every and (i + 1) % every == 0:
            t_samples.append(i + 1)
            r_samples.append(list(count))
    if every:
        out.samples = {"t": np.array(t_samples, dtype=np.int64),
                       "resident": np.array(r_samples, dtype=np.int64).reshape(-1, n_guests)}
    return out


# --- the engine, for comparison ------------------------------------------------------------------
def engine_agreement(case: Case, var: Variant, host_pages: int, guest_cache: int = 0,
                     *, limit: Optional[int] = None) -> dict:
    """Replay ``case`` through a real :class:`~tmemref.Host` of ``host_pages`` frames
    (``dedup=True`` for a dedup variant; shared pools for ``pool="shared"``; every page's bytes
    name its content, so dedup matches exactly the pages the model merges) with the same guest
    page caches, then run the model at the capacity the engine reached (its most data frames
    held at once) and compare reference by reference. ``var`` must be an LRU variant without
    skips, weights, caps or NUMA (what a lone replay can reproduce). ``limit``: only the first
    references. Returns ``capacity``, ``engine`` and ``model`` hit ratios (whole run),
    ``agree`` (fraction of references served alike) and ``second_chances`` (the model's).
    ``host.check()`` at the end. O(references) hypercalls."""
    from .. import abi
    from ..abi import TmemOp
    from .experiments import make_bench
    if var.policy != "lru" or var.busy or var.weights or var.caps or var.numa:
        raise ValueError("engine_agreement compares plain LRU variants (dedup and shared "
                         "pools allowed)")
    if limit is not None:
        case = Case(case.name, case.workload[:limit],
                    None if case.content is None else case.content[:limit], case.same_files,
                    case.family)
    w = case.workload
    shared = var.pool == "shared"
    bench = make_bench(host_pages, w.guests, pool=var.pool, dedup=var.dedup != "off")
    host = bench.host
    pools, domids = list(bench.pools), bench.domids
    if shared and case.same_files:     # one file set: every guest joins guest 0's pool
        for g in range(1, w.guests):
            pools[g] = host.do_tmem_op(domids[g], TmemOp(
                cmd=abi.TMEM_NEW_POOL, uuid=(1, 0xC0FFEE), flags=abi.pool_flags(shared=True)))
    tkey, okey, gkey, content = case.arrays(var.pool)
    files, pages = w.file.tolist(), w.page.tolist()
    guests = w.guest.tolist()
    served = np.zeros(len(w), dtype=np.int8)
    buf, page = bytearray(4096), bytearray(4096)
    get = TmemOp(cmd=abi.TMEM_GET_PAGE, page=buf)
    put = TmemOp(cmd=abi.TMEM_PUT_PAGE, page=page)
    caches = [OrderedDict() for _ in range(w.guests)]
    do = host.do_tmem_op
    peak = 0

    def tag(j):
        return f"content {content[j]}".encode().ljust(24, b".")

    def put_page(j, g):
        nonlocal peak
        page[:24] = tag(j)
        put.pool_id, put.oid, put.index = pools[g], (files[j], 0, 0), pages[j]
        rc = do(domids[g], put)
        if rc not in (1, -12):
            raise RuntimeError(f"PUT returned {abi.rc_name(rc)}")
        held = host.global_pcd_count if var.dedup != "off" else host.eph_count
        peak = max(peak, held)

    for i, g in enumerate(guests):
        cache = caches[g]
        if guest_cache and gkey[i] in cache:
            cache.move_to_end(gkey[i])
            cache[gkey[i]] = i
            served[i] = GUEST
            continue
        get.pool_id, get.oid, get.index = pools[g], (files[i], 0, 0), pages[i]
        rc = do(domids[g], get)
        if rc == 1:
            if bytes(buf[:24]) != tag(i):
                raise InvariantError(f"reference {i}: the engine returned other bytes")
            served[i] = TMEM
        if guest_cache:
            cache[gkey[i]] = i
            if len(cache) > guest_cache:
                _, j = cache.popitem(last=False)
                put_page(j, g)
        elif rc != 1 or not shared:
            put_page(i, g)
    host.check()
    model = simulate(case, var, peak, guest_cache)
    return {"capacity": peak, "engine": float((served != DISK).mean()),
            "model": model.hit_ratio(), "agree": float(((served != DISK) ==
                                                        (model.served != DISK)).mean()),
            "second_chances": model.second_chances}


# --- the sweep -----------------------------------------------------------------------------------
@dataclass(frozen=True)
class Grid:
    """What the sweep runs: every case × guest cache × capacity × variant."""
    cases: tuple = tuple(CASES)
    variants: tuple = tuple(v.name for v in VARIANTS)
    capacities: tuple = (250, 500, 1000, 2000)
    guest_caches: tuple = (0, 256)
    warmup: float = 0.0            # share of each case not counted (0: OPT is then a bound)

    def size(self) -> int:
        return len(self.cases) * len(self.variants) * len(self.capacities) * len(
            self.guest_caches)


#: The grid the book's cached study was run on.
GRID = Grid()

#: Columns of a result row.
COLUMNS = ("case", "variant", "capacity", "guest_cache", "hit_ratio", "tmem_hit_ratio",
           "failed_puts")


def tasks(grid: Grid = GRID) -> list:
    """One task per (case, guest cache, capacity), in a fixed order: ``(case, guest_cache,
    capacity, variants, warmup)``. O(tasks)."""
    return [(c, gc, cap, grid.variants, grid.warmup)
            for c in grid.cases for gc in grid.guest_caches for cap in grid.capacities]


def run_task(case_name: str, guest_cache: int, capacity: int, variants, warmup: float,
             data=None) -> list:
    """Every variant of ``variants`` (names, or :class:`Variant` objects) on one case,
    guest-cache size and capacity: one row per variant (see :data:`COLUMNS`). A task for an
    executor. O(variants × references)."""
    case = make_case(case_name, data)
    skip = int(warmup * len(case))
    rows = []
    for v in variants:
        var = v if isinstance(v, Variant) else variant(v)
        r = simulate(case, var, capacity, guest_cache)
        rows.append([case_name, var.name, capacity, guest_cache, r.hit_ratio(skip),
                     r.tmem_hit_ratio(skip), r.failed_puts])
    return rows


@dataclass
class Study:
    """A sweep's results: rows of :data:`COLUMNS`, and how they were made."""
    rows: list
    grid: Grid = GRID
    seconds: float = 0.0
    executor: str = ""
    meta: dict = field(default_factory=dict)   # the cache file's other fields (load)

    def value(self, case: str, var: str, capacity: int, guest_cache: int = 0,
              column: str = "hit_ratio"):
        """One number of the study."""
        i = COLUMNS.index(column)
        for r in self.rows:
            if r[:4] == [case, var, capacity, guest_cache]:
                return r[i]
        raise KeyError((case, var, capacity, guest_cache))

    def table(self, capacity: int, guest_cache: int = 0, column: str = "hit_ratio") -> dict:
        """``{case: {variant: value}}`` at one capacity and guest-cache size."""
        i = COLUMNS.index(column)
        out: dict = {}
        for r in self.rows:
            if r[2] == capacity and r[3] == guest_cache:
                out.setdefault(r[0], {})[r[1]] = r[i]
        return out

    def versus(self, baseline: str = "lru", margin: float = 0.01) -> dict:
        """Each variant against ``baseline`` over every configuration (case, capacity, guest
        cache): ``{variant: {"mean", "best", "worst", "wins", "losses"}}`` — the mean
        difference of hit ratios, the largest gain and loss as ``(difference, case, capacity,
        guest_cache)``, and how many configurations it wins or loses by more than ``margin``.
        Ties keep the first configuration in grid order. O(rows)."""
        base = {tuple(r[i] for i in (0, 2, 3)): r[4] for r in self.rows if r[1] == baseline}
        out: dict = {}
        for r in self.rows:
            d = r[4] - base[r[0], r[2], r[3]]
            s = out.setdefault(r[1], {"sum": 0.0, "n": 0, "best": None, "worst": None,
                                      "wins": 0, "losses": 0})
            s["sum"] += d
            s["n"] += 1
            if s["best"] is None or d > s["best"][0]:
                s["best"] = (d, r[0], r[2], r[3])
            if s["worst"] is None or d < s["worst"][0]:
                s["worst"] = (d, r[0], r[2], r[3])
            s["wins"] += d > margin
            s["losses"] += d < -margin
        for s in out.values():
            s["mean"] = s.pop("sum") / s.pop("n")
        return out


def _map(fn, items, executor, workers, desc):
    """``fn(*item)`` for each item, results in item order, through ``executor`` or a local
    process pool of ``workers`` (1: inline); a progress bar on a terminal."""
    from ..progress import progress
    if executor is None and (workers == 1 or len(items) <= 1):
        return [fn(*it) for it in progress(items, desc=desc, unit=" tasks")]
    own = executor is None
    if own:
        from concurrent.futures import ProcessPoolExecutor
        executor = ProcessPoolExecutor(workers or os.cpu_count())
    try:
        from concurrent.futures import as_completed
        futures = [executor.submit(fn, *it) for it in items]
        for _ in progress(as_completed(futures), total=len(futures), desc=desc, unit=" tasks"):
            pass
        return [f.result() for f in futures]
    finally:
        if own:
            executor.shutdown()


def sweep(grid: Grid = GRID, *, executor=None, workers: Optional[int] = None,
          data=None) -> Study:
    """Run every task of ``grid``: through ``executor`` (any ``concurrent.futures.Executor``,
    e.g. a ``dask.distributed`` client's ``get_executor()``), or a local process pool of
    ``workers`` (default: one per CPU; 1 runs inline). The results do not depend on which.
    A progress bar on a terminal. O(grid size × references)."""
    t0 = time.perf_counter()
    items = [t + (data,) for t in tasks(grid)]
    parts = _map(run_task, items, executor, workers, "workload study")
    how = type(executor).__name__ if executor is not None else (
        "inline" if workers == 1 else f"{workers or os.cpu_count()} processes")
    return Study([r for part in parts for r in part], grid, time.perf_counter() - t0, how)


def _traces_digest(data=None) -> str:
    """A digest of the recorded traces' arrays (not of the file, whose zip headers carry
    times), or "" without traces."""
    path = Path(data or DATA) / TRACES_FILE
    if not path.exists():
        return ""
    h = hashlib.sha256()
    with np.load(path) as z:
        for name in sorted(z.files):
            h.update(name.encode())
            h.update(np.ascontiguousarray(z[name]).tobytes())
    return h.hexdigest()


def save(study: Study, path=None, data=None) -> Path:
    """Write ``study`` as JSON (default ``DATA / STUDY_FILE``), with the grid, the model
    version, the traces' digest and the command that regenerates it. Returns the path."""
    path = Path(path or Path(data or DATA) / STUDY_FILE)
    doc = {"about": "tmem's modified-LRU variants against many workloads: hit ratios "
                    "(tmemref.sim.study)",
           "command": "python -m tmemref.sim.study", "model_version": MODEL_VERSION,
           "traces_sha256": _traces_digest(data), "grid": asdict(study.grid),
           "seconds": round(study.seconds, 1), "executor": study.executor,
           "columns": list(COLUMNS), "rows": study.rows}
    text = json.dumps(doc, indent=None, separators=(",", ":"))
    path.write_text(text.replace('],[', '],\n[') + "\n")
    return path


def load(path=None, data=None) -> Study:
    """Read a study written by :func:`save`."""
    path = Path(path or Path(data or DATA) / STUDY_FILE)
    doc = json.loads(path.read_text())
    grid = Grid(**{k: tuple(v) if isinstance(v, list) else v for k, v in doc["grid"].items()})
    if tuple(doc["columns"]) != COLUMNS:
        raise InvariantError(f"{path}: columns {doc['columns']} are not {list(COLUMNS)}")
    return Study(doc["rows"], grid, doc["seconds"], doc["executor"], doc)


def check_cache(sample: int = 4, *, path=None, data=None, seed: int = 0) -> list:
    """Check the cached study against the code: same grid (:data:`GRID`), model version and
    traces, and ``sample`` tasks (chosen with ``seed``, always including the first task of the
    shortest real trace) re-run inline with exactly the cached numbers. Returns the re-run rows; raises
    :class:`~tmemref.errors.InvariantError` naming the first difference (regenerate with
    ``python -m tmemref.sim.study``). O(sample tasks)."""
    study = load(path, data)
    meta = study.meta
    if study.grid != GRID:
        raise InvariantError("the cached study was run on another grid: regenerate it")
    if meta["model_version"] != MODEL_VERSION:
        raise InvariantError(f"the cached study is of model version {meta['model_version']}, "
                             f"the code is {MODEL_VERSION}: regenerate it")
    if meta["traces_sha256"] != _traces_digest(data):
        raise InvariantError("the traces changed since the study was cached: regenerate it")
    if len(study.rows) != GRID.size():
        raise InvariantError(f"the cache has {len(study.rows)} rows, the grid {GRID.size()}")
    all_tasks = tasks(GRID)
    traces = [make_case(c, data) for c in GRID.cases]
    shortest = min((c for c in traces if c.family == "trace"), key=len).name
    first_trace = next(i for i, t in enumerate(all_tasks) if t[0] == shortest)
    rng = np.random.default_rng(seed)
    picks = sorted({first_trace, *rng.choice(len(all_tasks), max(0, sample - 1),
                                             replace=False).tolist()})
    cached = {tuple(r[:4]): r for r in study.rows}
    rerun = []
    for i in picks:
        for row in run_task(*all_tasks[i], data):
            old = cached.get(tuple(row[:4]))
            if old != row:
                raise InvariantError(f"re-run {row} differs from the cache {old}: "
                                     "regenerate with python -m tmemref.sim.study")
            rerun.append(row)
    return rerun


def main(argv=None) -> int:
    """``python -m tmemref.sim.study [--workers W] [--scheduler ADDRESS] [--record-traces]
    [--check N] [--data DIR]``: run the sweep and write the cache (or only check it)."""
    p = argparse.ArgumentParser(prog="python -m tmemref.sim.study",
                                description="Regenerate the workload study's cached results.")
    p.add_argument("--workers", type=int, metavar="W", help="processes (default: CPUs; 1 inline)")
    p.add_argument("--scheduler", metavar="ADDRESS",
                   help="run on a dask.distributed cluster (its scheduler's address)")
    p.add_argument("--record-traces", action="store_true",
                   help="record the real traces again first (needs strace)")
    p.add_argument("--check", type=int, metavar="N", help="only re-run N tasks against the cache")
    p.add_argument("--data", type=Path, default=DATA, help=f"data directory (default {DATA})")
    a = p.parse_args(argv)
    if a.check is not None:
        rows = check_cache(a.check, data=a.data)
        print(f"{len(rows)} cached results re-run: all agree")
        return 0
    if a.record_traces:
        from . import traces
        t0 = time.perf_counter()
        recorded = traces.record_all()
        traces.save(a.data / TRACES_FILE, recorded)
        print(f"recorded {', '.join(f'{t.name} ({len(t)} pages read)' for t in recorded)} "
              f"in {time.perf_counter() - t0:.1f} s")
    if a.scheduler:
        from distributed import Client
        with Client(a.scheduler) as client:
            study = sweep(executor=client.get_executor(), data=a.data)
    else:
        study = sweep(workers=a.workers, data=a.data)
    path = save(study, data=a.data)
    print(f"{len(study.rows)} results ({len(tasks())} tasks, {study.executor}) in "
          f"{study.seconds:.1f} s -> {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
