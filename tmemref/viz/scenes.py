"""Scripted scenes for the chapter "The data-structure web": small hosts, steps, highlights.

Everything the chapter shows is built here, deterministically, so the notebook only calls and
draws (and ``tests/test_scenes.py`` checks the scenes against Xen's rules):

=====================================  ======================================================
:func:`overview`                       two guests after a small workload: an ephemeral
                                       private pool, a persistent pool, a shared ephemeral
                                       pool joined by both (after ``TMEM_AUTH``)
:func:`tour`                           a host and a list of :class:`Step` — new pools, puts,
                                       radix extend, shared and private gets, a dup put, a
                                       flush, an eviction under memory pressure, a destroy
:func:`put_path`, :func:`evict_path`   the node ids a put walks top-down and an eviction
                                       bottom-up (through back pointers)
:func:`highlight`                      a copy of a :func:`~tmemref.viz.web` picture with a
                                       path drawn thick and numbered
:func:`trace_locks`                    record every lock operation inside a ``with`` block;
                                       :func:`lock_rows` tabulates them against the lock order
:func:`evict_one`, :func:`evict_while_held`, :func:`blocking_bottom_up`
                                       eviction experiments: which page goes, what a busy
                                       object lock does, why a blocking walk is forbidden
:data:`CORRUPTIONS`                    ways to break one invariant of a host on purpose
:func:`page_list_scene`                a host whose ``tmem_page_list`` holds unscrubbed frames
:func:`docstring_markdown`,            the package's docstrings and sources as Markdown
:func:`source_markdown`,
:func:`md_table`
=====================================  ======================================================

Hosts are :class:`~tmemref.Host` objects driven only through :meth:`Host.do_tmem_op`, except
where a scene is *about* an internal walk (eviction) and calls :func:`tmemref.core.evict.tmem_evict`
itself. Every helper that changes a host runs ``host.check()`` afterwards.
"""
from __future__ import annotations

import inspect
import re
import threading
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Callable, List, Optional, Sequence

from .. import abi
from ..abi import TmemOp
from ..core import evict as _evict
from ..core.host import Host
from ..ds.dlist import list_del, list_iter
from ..host import locks as _locks
from ._common import esc, html_label, obj_id, page_text, pgp_id, pool_id

#: The uuid of the shared pool in every scene.
SHARED_UUID = (0x5EED, 0xF00D)
#: Frames of the scenes' hosts: comfortably above the 1 MB (256-frame) free-memory guard.
HOST_PAGES = 1024
#: Each guest's own memory in the scenes (frames) and the most it may be billed for.
GUEST_PAGES, GUEST_MAX = 32, 128
#: Colours of highlighted paths: top-down (a put) and bottom-up (an eviction).
DOWN_COLOUR, UP_COLOUR = "#2ca02c", "#d62728"


def page(tag: int) -> bytes:
    """A recognisable 4096-byte page for ``tag`` (never all zero).

    >>> page(3)[:7], len(page(3))
    (b'page 3 ', 4096)
    """
    unit = f"page {tag} ".encode()
    return (unit * (abi.PAGE_SIZE // len(unit) + 1))[:abi.PAGE_SIZE]


def call(host: Host, domid: int, **fields) -> int:
    """One hypercall ``TmemOp(**fields)`` from ``domid``, then ``host.check()``; returns the rc."""
    rc = host.do_tmem_op(domid, TmemOp(**fields))
    host.check()
    return rc


def new_pool(host, domid, *, persist=False, shared=False, uuid=(0, 0)) -> int:
    """``TMEM_NEW_POOL`` from ``domid``; the pool id (or a negative rc)."""
    return call(host, domid, cmd=abi.TMEM_NEW_POOL,
                flags=abi.pool_flags(persist=persist, shared=shared), uuid=uuid)


def put(host, domid, pool, oid, index, tag=0) -> int:
    """``TMEM_PUT_PAGE`` of ``page(tag)`` at ``(pool, oid, index)``."""
    return call(host, domid, cmd=abi.TMEM_PUT_PAGE, pool_id=pool, oid=oid, index=index,
                page=page(tag))


def get(host, domid, pool, oid, index) -> int:
    """``TMEM_GET_PAGE`` into a fresh buffer; the rc (the data is dropped)."""
    return call(host, domid, cmd=abi.TMEM_GET_PAGE, pool_id=pool, oid=oid, index=index,
                page=bytearray(abi.PAGE_SIZE))


def auth(host, domid, uuid=SHARED_UUID, on=True) -> int:
    """``TMEM_AUTH`` from dom0: let client ``domid`` join the shared pool ``uuid``."""
    return call(host, 0, cmd=abi.TMEM_AUTH, arg1=domid, uuid=uuid, flags=int(on))


def _need(rc: int, want: int) -> None:
    """A scene's set-up call must do what the scene says, or the picture would lie."""
    if rc != want:
        raise RuntimeError(f"scene set-up returned {abi.rc_name(rc)}, expected {want}")


def new_host(*domids: int, pages: int = HOST_PAGES) -> Host:
    """A host of ``pages`` frames with guests ``domids`` (``GUEST_PAGES`` own frames each)."""
    host = Host(pages=pages)
    for d in domids:
        host.create_domain(d, pages=GUEST_PAGES, max_pages=GUEST_MAX)
    return host


# --- the overview host ------------------------------------------------------------------------
@dataclass
class Scene:
    """A host and the ``(domid, pool_id)`` of its named pools."""
    host: Host
    pools: dict = field(default_factory=dict)   # name -> (domid, pool id in that domain)

    def pool(self, name: str):
        """The :class:`~tmemref.core.pool.Pool` object of a named pool."""
        domid, pid = self.pools[name]
        return self.host.clients[domid].pools[pid]


#: The pages of :func:`overview`: (pool name, putting domain, oid, index), in put order.
OVERVIEW_PUTS = (
    ("d1 ephemeral", 1, (7, 0, 0), 0),
    ("d1 ephemeral", 1, (7, 0, 0), 1),
    ("d1 ephemeral", 1, (7, 0, 0), 70),          # 70 >= 64: a second radix level
    ("d1 ephemeral", 1, (0x107, 0x100, 0), 0),   # 0x107 ^ 0x100 = 7: bucket 7 again
    ("d2 persistent", 2, (9, 0, 0), 0),
    ("d2 persistent", 2, (9, 0, 0), 1),
    ("d2 shared", 2, (3, 0, 0), 5),
    ("d1 shared", 1, (3, 0, 0), 6),              # the same shared object, from the other guest
)


def overview() -> Scene:
    """Two guests after a small workload (see :data:`OVERVIEW_PUTS`).

    Domain 1: an ephemeral private pool (slot 0). Domain 2: a persistent private pool (slot 0).
    dom0 authorises both for :data:`SHARED_UUID`, then each asks for a shared pool with it: one
    pool, created (and owned) by client 1, in slot 1 of both clients. O(pages)."""
    host = new_host(1, 2)
    s = Scene(host)
    s.pools["d1 ephemeral"] = (1, new_pool(host, 1))
    s.pools["d2 persistent"] = (2, new_pool(host, 2, persist=True))
    for d in (1, 2):
        _need(auth(host, d), 1)
    s.pools["d1 shared"] = (1, new_pool(host, 1, shared=True, uuid=SHARED_UUID))
    s.pools["d2 shared"] = (2, new_pool(host, 2, shared=True, uuid=SHARED_UUID))
    for name, (d, pid) in s.pools.items():
        if pid < 0:
            raise RuntimeError(f"NEW_POOL for {name} returned {abi.rc_name(pid)}")
    for tag, (name, d, oid, index) in enumerate(OVERVIEW_PUTS, start=1):
        _need(put(host, d, s.pools[name][1], oid, index, tag), 1)
    return s


# --- the step-by-step tour --------------------------------------------------------------------
@dataclass
class Step:
    """One step of :func:`tour`: a key tests refer to, a caption, and ``fn(host) -> rc|None``."""
    key: str
    caption: str
    fn: Callable


@dataclass
class Tour:
    """The host the tour starts from and its steps (apply them in order)."""
    host: Host
    steps: List[Step]

    def pairs(self):
        """``[(caption, fn)]`` for :func:`tmemref.viz.record`."""
        return [(s.caption, s.fn) for s in self.steps]


#: Handles of the tour: d1's private ephemeral pool is slot 0, the shared pool slot 1 of both
#: guests, d2's persistent pool slot 0.
TOUR_A = (7, 0, 0)            # d1's file: pages 0, 1, 100
TOUR_B = (0x107, 0x100, 0)    # d1's second file, same bucket (7) as TOUR_A
TOUR_S = (3, 0, 0)            # the shared file
TOUR_P = (9, 0, 0)            # d2's swap object


def tour() -> Tour:
    """A fresh host (domains 1 and 2, no clients yet) and the steps of the chapter's explorer.

    The steps, in order: both guests create private pools; dom0 authorises the shared uuid and
    both join one shared pool; d1 puts page 0 of ``TOUR_A`` (new object, direct radix root),
    page 1 (a leaf node), page 100 (``EXTEND`` to height 2); d2 puts a persistent page and a
    shared page; d1 puts two pages of ``TOUR_B`` (same bucket); d1 gets the shared page (it
    moves to the young end); d1 gets page 1 of ``TOUR_A`` (exclusive: it leaves); d1 puts page
    0 of ``TOUR_A`` again (a dup put: same frame, same place on the lists); d1 flushes
    ``TOUR_B``; domain 3 boots and leaves one frame fewer than the 1 MB guard free; d2 puts a
    shared page, so ``tmem_ensure_avail_pages`` evicts the oldest ephemeral page first; d1
    destroys its private pool."""
    host = new_host(1, 2)
    E, S, P = 0, 1, 0                      # pool ids (checked by the steps that create them)

    def pools(h):
        _need(new_pool(h, 1), E)
        return new_pool(h, 2, persist=True)

    def shared(h):
        for d in (1, 2):
            _need(auth(h, d), 1)
        _need(new_pool(h, 1, shared=True, uuid=SHARED_UUID), S)
        return new_pool(h, 2, shared=True, uuid=SHARED_UUID)

    def put_b(h):
        _need(put(h, 1, E, TOUR_B, 0, 6), 1)
        return put(h, 1, E, TOUR_B, 1, 7)

    def squeeze(h):
        h.create_domain(3, pages=h.mem.guard_pages() - (h.min_free_pages - 1))
        h.check()
        return None

    steps = [
        Step("pools", "d1: NEW_POOL ephemeral private (client 1 is created; slot 0), "
             "d2: NEW_POOL persistent private (client 2; slot 0)", pools),
        Step("shared", "dom0: TMEM_AUTH d1 and d2 for the uuid; both NEW_POOL shared: one pool "
             "(owned by its creator, client 1) in slot 1 of both", shared),
        Step("put_a0", "d1: PUT (7,0,0)[0] — a new object in bucket 7; page 0 is the radix "
             "tree's direct root (no node)", lambda h: put(h, 1, E, TOUR_A, 0, 1)),
        Step("put_a1", "d1: PUT (7,0,0)[1] — same object; the radix tree gets a leaf node "
             "(height 1)", lambda h: put(h, 1, E, TOUR_A, 1, 2)),
        Step("put_a100", "d1: PUT (7,0,0)[100] — 100 ≥ 64: EXTEND, a new root above the leaf "
             "(height 2)", lambda h: put(h, 1, E, TOUR_A, 100, 3)),
        Step("put_p", "d2: PUT persistent (9,0,0)[0] — a frame billed to d2, on the pool's "
             "persistent list, on no LRU list", lambda h: put(h, 2, P, TOUR_P, 0, 4)),
        Step("put_s", "d2: PUT shared (3,0,0)[0] — the pool's owner is client 1, so the page "
             "joins client 1's LRU list", lambda h: put(h, 2, S, TOUR_S, 0, 5)),
        Step("put_b", "d1: PUT (263,256,0)[0] and [1] — a second object in bucket 7: the "
             "bucket's rb-tree gets a second node", put_b),
        Step("get_s", "d1: GET shared (3,0,0)[0] — the page stays and moves to the young end "
             "of both LRU lists", lambda h: get(h, 1, S, TOUR_S, 0)),
        Step("get_a1", "d1: GET private (7,0,0)[1] — exclusive: the page leaves tmem (its "
             "frame goes to the tmem page list)", lambda h: get(h, 1, E, TOUR_A, 1)),
        Step("dup_a0", "d1: PUT (7,0,0)[0] again, new data — a dup put: same pgp, same frame, "
             "same place on the LRU lists", lambda h: put(h, 1, E, TOUR_A, 0, 8)),
        Step("flush_b", "d1: FLUSH_OBJECT (263,256,0) — both pages, the radix leaf and the "
             "rb-tree node go", lambda h: call(h, 1, cmd=abi.TMEM_FLUSH_OBJECT, pool_id=E,
                                               oid=TOUR_B)),
        Step("squeeze", f"domain 3 boots and takes all but {host.min_free_pages - 1} free "
             f"frames beyond the heap's reserve (a put wants {host.min_free_pages})", squeeze),
        Step("evict", f"d2: PUT shared (3,0,0)[1] — fewer than {host.min_free_pages} frames "
             "free: tmem_evict frees the oldest ephemeral page first",
             lambda h: put(h, 2, S, TOUR_S, 1, 9)),
        Step("destroy", "d1: DESTROY_POOL 0 — every object of the pool is destroyed",
             lambda h: call(h, 1, cmd=abi.TMEM_DESTROY_POOL, pool_id=E)),
    ]
    return Tour(host, steps)


def tour_rows(t: Optional[Tour] = None) -> list:
    """Run a tour (default a fresh :func:`tour`) and tabulate it, numbered as the explorer
    numbers its states (1 = the initial state): ``(n, step key, rc name or "", global
    ephemeral list oldest first, pages evicted by the step)``. O(steps × pages)."""
    from ..abi import rc_name
    t = t or tour()
    host = t.host

    def lru():
        return " → ".join(page_text(n.owner) for n in list_iter(host.eph_list)) or "(empty)"
    rows = [(1, "initial state", "", lru(), 0)]
    for n, st in enumerate(t.steps, start=2):
        before = host.evicted_pgs
        rc = st.fn(host)
        host.check()
        rows.append((n, st.key, "" if rc is None else rc_name(rc), lru(),
                     host.evicted_pgs - before))
    return rows


# --- paths through the web --------------------------------------------------------------------
def _rb_path(pool, oid):
    """The rb-tree nodes from the bucket's root down to ``oid``'s node (None if absent)."""
    key = (oid[2], oid[1], oid[0])
    x = pool.buckets[(oid[0] ^ oid[1] ^ oid[2]) & 0xFF].root
    path = []
    while x is not None:
        path.append(x)
        if key == x.key:
            return path
        x = x.left if key < x.key else x.right
    return None


def put_path(host, domid: int, pool_slot: int, oid, index: int) -> List[str]:
    """Node ids of :func:`~tmemref.viz.web` along the top-down walk of a put or get of a page
    that is stored: domain → client → pool → rb-tree nodes from the bucket's root to the
    object → radix nodes → pgp → frame. ``ValueError`` if the page is not stored.
    O(rb depth + radix height)."""
    from ..ds.radix import RADIX_TREE_MAP_MASK, RADIX_TREE_MAP_SHIFT
    client = host.clients[domid]
    pool = client.pools[pool_slot]
    rb = _rb_path(pool, oid) if pool is not None else None
    if rb is None:
        raise ValueError(f"no object {oid} in pool {pool_slot} of domain {domid}")
    obj = rb[-1].value
    pgp = obj.tree.lookup(index)
    if pgp is None:
        raise ValueError(f"no page {index} in object {oid}")
    ids = [f"d{domid}", f"c{client.cli_id}", pool_id(pool)]
    ids += [obj_id(pool, x.value) for x in rb]
    oid_node = ids[-1]
    h = obj.tree.height
    if h:
        nid = f"{oid_node}r"
        ids.append(nid)
        for level in range(h, 1, -1):
            nid += f".{(index >> (RADIX_TREE_MAP_SHIFT * (level - 1))) & RADIX_TREE_MAP_MASK}"
            ids.append(nid)
    ids.append(pgp_id(pool, pgp))
    if pgp.size == 0 and pgp.data is not None:
        ids.append(f"f{int(pgp.data)}")
    return ids


def evict_path(host, pgp=None) -> List[str]:
    """Node ids of the bottom-up walk of an eviction of ``pgp`` (default: the oldest page on
    the global ephemeral list): the list head, the pgp, then back pointers pgp → obj → pool →
    owner client. The head is ``"eph_list"``, a node :func:`highlight` adds. O(1)."""
    if pgp is None:
        head = host.eph_list.next
        if head is host.eph_list:
            raise ValueError("no ephemeral page to evict")
        pgp = head.owner
    pool = pgp.obj.pool
    return ["eph_list", pgp_id(pool, pgp), obj_id(pool, pgp.obj), pool_id(pool),
            f"c{pool.client.cli_id}"]


_EDGE_RE = re.compile(r'^\t("(?:[^"\\]|\\.)*"|[^\s:"]+)((?::[\w]+)*) -> '
                      r'("(?:[^"\\]|\\.)*"|[^\s:"]+)((?::[\w]+)*)(.*)$', re.S)


def _unquote(s: str) -> str:
    return s[1:-1] if s.startswith('"') else s


def highlight(g, path: Sequence[str], *, colour: str = DOWN_COLOUR, numbers: bool = True,
              head_label: Optional[str] = None):
    """A copy of picture ``g`` with ``path`` (a list of node ids) drawn thick in ``colour``.

    Each node on the path gets a thick outline; each edge between consecutive ids is redrawn
    thick and numbered ``1, 2, …`` (``numbers``); an edge the picture lacks (a back pointer the
    web does not draw, such as pool → client) is added without shaping the layout. A path that
    starts at ``"eph_list"`` (see :func:`evict_path`) marks its first page with a note,
    ``head_label`` (default "oldest on global eph_list"). The original is left alone.
    O(lines of ``g``)."""
    h = g.copy()
    path = list(path)
    if path and path[0] == "eph_list":          # the list head: a note on the oldest page
        path = path[1:]
        if path:
            note = esc(head_label or "oldest on global eph_list").replace(" on ", " on<BR/>")
            h.node(path[0], xlabel=html_label(f'<FONT COLOR="{colour}">{note}</FONT>'))
    want = {(a, b): i for i, (a, b) in enumerate(zip(path, path[1:]), start=1)}
    done = set()
    body = []
    for line in h.body:
        m = _EDGE_RE.match(line)
        if m:
            key = (_unquote(m[1]), _unquote(m[3]))
            if key in want and key not in done:
                done.add(key)
                rest = m[5].rstrip("\n")
                extra = (f'color="{colour}" fontcolor="{colour}" penwidth=2.6 style=solid '
                         f'arrowsize=0.8')
                if numbers:
                    extra += f' xlabel=" {want[key]}" fontsize=10'
                attrs = rest.strip()
                if attrs.startswith("[") and attrs.endswith("]"):
                    rest = f" {attrs[:-1]} {extra}]"
                else:
                    rest = f" [{extra}]"
                line = f"\t{m[1]}{m[2]} -> {m[3]}{m[4]}{rest}\n"
        body.append(line)
    h.body[:] = body
    for nid in path:
        h.node(nid, color=colour, penwidth="2.6")
    for (a, b), i in want.items():
        if (a, b) not in done:
            attrs = {"color": colour, "fontcolor": colour, "penwidth": "2.6",
                     "constraint": "false", "arrowsize": "0.8"}
            if numbers:
                attrs.update(xlabel=f" {i}", fontsize="10")
            h.edge(a, b, **attrs)
    return h


# --- locks ------------------------------------------------------------------------------------
@dataclass
class LockEvent:
    """One lock operation seen by :func:`trace_locks`."""
    name: str            # the Xen lock (SpinLock/RWLock ``name``)
    rank: int            # its place in the lock order
    op: str              # acquire, trylock, release, read_lock, write_trylock, ...
    ok: Optional[bool]   # a try's result; None for operations that cannot fail
    thread: str          # name of the thread that did it


_TRACED = {
    "SpinLock": ("acquire", "trylock", "release"),
    "RWLock": ("read_lock", "read_unlock", "write_lock", "write_trylock", "write_unlock"),
}
_trace_mutex = threading.Lock()


@contextmanager
def trace_locks():
    """Record every operation on every tmemref lock inside the ``with`` block, in order.

    Yields the list of :class:`LockEvent` it fills. It wraps the lock classes' methods for the
    duration (all threads see the wrappers) and restores them on exit; traces cannot nest.
    Costs one list append per lock operation."""
    if not _trace_mutex.acquire(False):
        raise RuntimeError("trace_locks() does not nest")
    events: List[LockEvent] = []
    saved = []
    try:
        for cls_name, methods in _TRACED.items():
            cls = getattr(_locks, cls_name)
            for meth in methods:
                orig = cls.__dict__[meth]
                saved.append((cls, meth, orig))

                def wrapper(self, *a, _orig=orig, _meth=meth, **k):
                    r = _orig(self, *a, **k)
                    events.append(LockEvent(self.name, self.rank, _meth,
                                            r if isinstance(r, bool) else None,
                                            threading.current_thread().name))
                    return r
                wrapper.__name__ = meth
                wrapper.__doc__ = orig.__doc__
                setattr(cls, meth, wrapper)
        yield events
    finally:
        for cls, meth, orig in saved:
            setattr(cls, meth, orig)
        _trace_mutex.release()


_TAKES = {"acquire": True, "read_lock": True, "write_lock": True,
          "trylock": False, "write_trylock": False}
_DROPS = {"release", "read_unlock", "write_unlock"}


def lock_rows(events: Sequence[LockEvent]) -> list:
    """Rows ``(n, lock, rank, operation, held after, order)`` for a trace of one thread.

    ``order`` judges each *take* against the lock order of :mod:`tmemref.host.locks`: a
    blocking take whose rank is not below any held lock is ``in order``; the ``obj_free``
    exception is named; a blocking take below a held rank is a ``VIOLATION``; a try is
    ``try: never waits`` (or ``try failed``). Releases have no verdict. O(events × held)."""
    held: list = []
    rows = []
    for n, e in enumerate(events, start=1):
        verdict = ""
        if e.op in _TAKES:
            top = max(held, key=lambda x: x[1], default=None)
            if not _TAKES[e.op]:
                verdict = "try: never waits" if e.ok else "try failed: skip"
            elif top is None or e.rank >= top[1]:
                verdict = "in order"
            elif (e.name, top[0]) == _locks.OBJ_FREE_EXCEPTION:
                verdict = "the obj_free exception"
            else:
                verdict = "VIOLATION"
            if e.ok is not False:
                held.append((e.name, e.rank))
        elif e.op in _DROPS:
            for i in range(len(held) - 1, -1, -1):
                if held[i][0] == e.name:
                    del held[i]
                    break
        rows.append((n, e.name, e.rank, e.op + ("" if e.ok is None else f" → {e.ok}"),
                     ", ".join(name for name, _ in held) or "—", verdict))
    return rows


# --- eviction experiments ---------------------------------------------------------------------
def evict_one(host, client=None, trace=None) -> Optional[str]:
    """Call :func:`tmemref.core.evict.tmem_evict` once; return the evicted page as
    ``d1:p0:(7,0,0)[3]`` (None if nothing could be evicted). ``trace(pgp, reason)`` is passed
    on. Runs ``host.check()``. O(pages on the list)."""
    before = {id(n.owner): (n.owner, page_text(n.owner)) for n in list_iter(host.eph_list)}
    rc = _evict.tmem_evict(host, client, trace)
    host.check()
    if not rc:
        return None
    gone = [text for pgp, text in before.values() if pgp.obj is None]
    if len(gone) != 1:
        raise RuntimeError(f"tmem_evict returned 1 but {len(gone)} pages left the lists")
    return gone[0]


def evict_while_held(host, lock, client=None):
    """Evict once while *another thread* holds ``lock`` (a ``SpinLock`` or an ``RWLock``, held
    for writing), as another CPU in the middle of an operation would. Returns ``(evicted,
    skipped)``: the evicted page's text (or None) and ``[(page text, reason)]`` for every page
    the walk skipped. The other thread lets go before this returns. O(pages on the list)."""
    taken, done = threading.Event(), threading.Event()

    def other_cpu():
        if hasattr(lock, "write_lock"):
            lock.write_lock()
            taken.set()
            done.wait()
            lock.write_unlock()
        else:
            lock.acquire()
            taken.set()
            done.wait()
            lock.release()

    t = threading.Thread(target=other_cpu, name="other-cpu", daemon=True)
    t.start()
    taken.wait()
    skipped = []
    try:
        evicted = evict_one(host, client, lambda pgp, why: skipped.append((page_text(pgp), why)))
    finally:
        done.set()
        t.join()
    return evicted, skipped


def blocking_bottom_up(host) -> str:
    """What the lock-order checker says if the eviction walk *waited* for the object lock of
    the oldest ephemeral page while holding ``eph_lists_spinlock`` (it never does: it tries).
    Returns the :class:`~tmemref.host.locks.LockOrderError` message; nothing is changed and no
    lock is left held. ``RuntimeError`` if the checker let it pass."""
    node = host.eph_list.next
    if node is host.eph_list:
        raise ValueError("no ephemeral page")
    obj = node.owner.obj
    was = _locks._checking
    _locks.set_order_checking(True)
    try:
        with host.eph_lists_lock:
            try:
                obj.lock.acquire()
            except _locks.LockOrderError as e:
                return str(e)
            obj.lock.release()
        raise RuntimeError("the lock-order checker accepted a blocking bottom-up acquire")
    finally:
        _locks.set_order_checking(was)


# --- invariants -------------------------------------------------------------------------------
def _first_pool(host):
    return host.clients[1].pools[0]


def _first_obj(host):
    return next(_first_pool(host).objects())


def _bump_pgp_count(host):
    _first_pool(host).pgp_count += 1


def _wrong_back_pointer(host):
    objs = list(_first_pool(host).objects())
    _, pgp = next(iter(objs[0].tree.items()))
    pgp.obj = objs[1]


def _off_the_lru(host):
    list_del(host.eph_list.next)


def _dirty_heap_frame(host):
    host.mem.data[host.mem.heap[-1], 0] = 0xAA


def _wrong_bucket(host):
    pool = _first_pool(host)
    obj = _first_obj(host)
    b = (obj.oid[0] ^ obj.oid[1] ^ obj.oid[2]) & 0xFF
    pool.buckets[b].erase(obj.rbnode)
    obj.rbnode = pool.buckets[(b + 1) & 0xFF].insert((obj.oid[2], obj.oid[1], obj.oid[0]), obj)


#: ``(what is broken, fn(host))``: each breaks one invariant of an :func:`overview` host.
CORRUPTIONS = (
    ("a pool counts one page too many (pool.pgp_count += 1)", _bump_pgp_count),
    ("a pgp's back pointer names another object of the pool", _wrong_back_pointer),
    ("the oldest page is unlinked from the global LRU list only", _off_the_lru),
    ("a frame on the heap is not all zero", _dirty_heap_frame),
    ("an object sits in the bucket after its own", _wrong_bucket),
)


def corrupted(fn) -> str:
    """Build a fresh :func:`overview` host, apply ``fn`` to it and return the message of the
    :class:`~tmemref.InvariantError` that ``check()`` raises. ``RuntimeError`` if it passes."""
    from ..errors import InvariantError
    host = overview().host
    fn(host)
    try:
        host.check()
    except InvariantError as e:
        return str(e)
    raise RuntimeError(f"{fn.__name__}: check() passed a corrupted host")


# --- the tmem page list -----------------------------------------------------------------------
def page_list_scene(puts: int = 320, flushed: int = 96) -> Scene:
    """Domain 1 puts ``puts`` pages (object ``(1,0,0)``, then object ``(2,0,0)`` for the last
    ``flushed``) into an ephemeral pool, then flushes object ``(2,0,0)``: its frames land on
    ``tmem_page_list``, unscrubbed. Pool name ``"d1 ephemeral"``. O(puts)."""
    if not 0 <= flushed <= puts:
        raise ValueError("need 0 <= flushed <= puts")
    host = new_host(1)
    s = Scene(host, {"d1 ephemeral": (1, new_pool(host, 1))})
    pid = s.pools["d1 ephemeral"][1]
    for i in range(puts):
        oid, index = ((1, 0, 0), i) if i < puts - flushed else ((2, 0, 0), i - (puts - flushed))
        _need(put(host, 1, pid, oid, index, i), 1)
    _need(call(host, 1, cmd=abi.TMEM_FLUSH_OBJECT, pool_id=pid, oid=(2, 0, 0)), 1)
    return s


def dirty_frames(host, frames) -> int:
    """How many of ``frames`` hold a non-zero byte. O(len(frames) × 4096)."""
    frames = list(frames)
    if not frames:
        return 0
    return int(host.mem.data[frames].any(axis=1).sum())


# --- exercises --------------------------------------------------------------------------------
def bucket_live(oid) -> int:
    """Put one page with ``oid`` into a fresh pool and return the index of the one non-empty
    bucket (the engine's answer, not the formula's)."""
    host = new_host(1)
    pid = new_pool(host, 1)
    _need(put(host, 1, pid, tuple(oid), 0), 1)
    pool = host.clients[1].pools[pid]
    full = [b for b, t in enumerate(pool.buckets) if t.root is not None]
    if len(full) != 1:
        raise RuntimeError(f"one object but {len(full)} non-empty buckets")
    return full[0]


def radix_live(indices) -> tuple:
    """Put pages at ``indices`` into one object of a fresh pool; ``(nodes, height)`` of its
    radix tree."""
    host = new_host(1)
    pid = new_pool(host, 1)
    for i in indices:
        _need(put(host, 1, pid, (1, 0, 0), i), 1)
    obj = host.clients[1].pools[pid].find((1, 0, 0))
    return obj.objnode_count, obj.tree.height


def lru_exercise() -> Scene:
    """The host of the LRU exercise: d1 has a private pool (slot 0) and a shared pool (slot 1).
    Puts: A = private (1,0,0)[0], B = shared (2,0,0)[0], C = private (1,0,0)[1]; then a get
    of B (shared) and a second put of A (a dup put)."""
    host = new_host(1)
    _need(auth(host, 1), 1)
    s = Scene(host, {"private": (1, new_pool(host, 1)),
                     "shared": (1, new_pool(host, 1, shared=True, uuid=SHARED_UUID))})
    priv, shar = s.pools["private"][1], s.pools["shared"][1]
    _need(put(host, 1, priv, (1, 0, 0), 0, 1), 1)
    _need(put(host, 1, shar, (2, 0, 0), 0, 2), 1)
    _need(put(host, 1, priv, (1, 0, 0), 1, 3), 1)
    _need(get(host, 1, shar, (2, 0, 0), 0), 1)
    _need(put(host, 1, priv, (1, 0, 0), 0, 4), 1)
    return s


# --- Markdown ---------------------------------------------------------------------------------
_ROLE = re.compile(r":(?:class|meth|func|mod|data|attr|exc|obj):`(~?)([^`]+)`")
_LITERAL = re.compile(r"``([^`]+)``")


def _inline(text: str) -> str:
    text = _ROLE.sub(lambda m: f"`{m[2].rsplit('.', 1)[-1] if m[1] else m[2]}`", text)
    return _LITERAL.sub(lambda m: f"`{m[1]}`", text)


def docstring_markdown(obj, *, doctests: bool = True) -> str:
    """The docstring of ``obj`` as Markdown: reST roles and double back-quotes become code,
    a paragraph ending in ``::`` introduces a fenced literal block, underlined titles become
    bold lines, and doctests become ``pycon`` blocks (or are dropped, ``doctests=False``).

    >>> def f():
    ...     '''Use :class:`~a.B`, :func:`c.d` and ``x``::
    ...
    ...         literal
    ...
    ...     Done.
    ...     '''
    >>> print(docstring_markdown(f))
    Use `B`, `c.d` and `x`:
    <BLANKLINE>
    ```text
    literal
    ```
    <BLANKLINE>
    Done.
    """
    doc = inspect.getdoc(obj) or ""
    lines = doc.splitlines()
    out: List[str] = []
    i = 0
    while i < len(lines):
        line = lines[i]
        stripped = line.strip()
        if stripped.startswith(">>>"):
            block = []
            while i < len(lines) and lines[i].strip():
                block.append(lines[i].strip() if lines[i].lstrip().startswith((">>>", "..."))
                             else lines[i])
                i += 1
            if doctests:
                out += ["```pycon", *block, "```"]
            elif out and out[-1] == "":
                out.pop()
            continue
        if (i + 1 < len(lines) and stripped and re.fullmatch(r"([-=~^])\1{2,}", lines[i + 1].strip())
                and len(lines[i + 1].strip()) >= len(stripped)):
            out.append(f"**{_inline(stripped)}**")
            i += 2
            continue
        if stripped.endswith("::"):
            head = _inline(line.rstrip()[:-2].rstrip())
            if head.strip():
                out.append(head + ":")
            i += 1
            while i < len(lines) and not lines[i].strip():
                i += 1
            block = []
            while i < len(lines) and (not lines[i].strip() or lines[i].startswith((" ", "\t"))):
                block.append(lines[i])
                i += 1
            while block and not block[-1].strip():
                block.pop()
            indent = min((len(b) - len(b.lstrip()) for b in block if b.strip()), default=0)
            out += ["", "```text", *(b[indent:] for b in block), "```", ""]
            continue
        out.append(_inline(line))
        i += 1
    while out and not out[-1].strip():
        out.pop()
    text = "\n".join(out)
    return re.sub(r"\n{3,}", "\n\n", text)


def source_markdown(obj) -> str:
    """The source of ``obj`` as a fenced ``python`` Markdown block (never pasted: read live)."""
    import textwrap
    return "```python\n" + textwrap.dedent(inspect.getsource(obj)).rstrip() + "\n```"


def md_table(headers: Sequence[str], rows) -> str:
    """A Markdown table; ``|`` in a cell is escaped.

    >>> print(md_table(["a"], [("x|y",)]))
    | a |
    |---|
    | x\\|y |
    """
    def cell(v):
        return str(v).replace("|", "\\|")
    lines = ["| " + " | ".join(map(cell, headers)) + " |",
             "|" + "|".join("---" for _ in headers) + "|"]
    lines += ["| " + " | ".join(map(cell, r)) + " |" for r in rows]
    return "\n".join(lines)
