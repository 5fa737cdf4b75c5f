"""Tests for tmemref.viz.scenes: the scripted hosts and helpers of the chapter "The web".

Expected values are reasoned from Xen's rules (facts §2, §4, §7; tmem-internals.html "Key Data
Structures"), not copied from a run: bucket = low byte of oid0^oid1^oid2, rb order
(oid2, oid1, oid0), radix levels of 6 bits with a direct root for page 0, pages billed to the
pool owner's list, oldest-first eviction, shared gets move to the young end, dup puts stay put,
private ephemeral gets are exclusive, trylock on the bottom-up path.
"""
import re

import numpy as np
import pytest

from tmemref import InvariantError, TmemOp, abi
from tmemref.core import evict
from tmemref.ds.dlist import list_iter
from tmemref.host import locks
from tmemref.host.frames import ANON, PAGE_LIST
from tmemref.viz import scenes, to_svg, web
from tmemref.viz._common import page_text

pytest.importorskip("graphviz")


def eph_texts(host):
    return [page_text(n.owner) for n in list_iter(host.eph_list)]


def client_texts(client):
    return [page_text(n.owner) for n in list_iter(client.eph_list)]


_ID = r'"(?:[^"\\]|\\.)*"|[\w.]+'
_EDGE = re.compile(rf'^\s*({_ID})((?::\w+)*)\s*->\s*({_ID})((?::\w+)*)\s*(?:\[(.*)\])?\s*$')


def edges_of(g):
    """``{(tail, head): [attr text, ...]}`` of a picture's DOT source (ports dropped)."""
    out = {}
    for line in g.source.splitlines():
        m = _EDGE.match(line)
        if m:
            key = (m[1].strip('"'), m[3].strip('"'))
            out.setdefault(key, []).append(m[5] or "")
    return out


# --- pages and calls --------------------------------------------------------------------------
def test_page_is_a_full_distinct_nonzero_page():
    pages = [scenes.page(t) for t in (0, 1, 7, 12345)]
    assert all(len(p) == abi.PAGE_SIZE and any(p) for p in pages)
    assert len(set(pages)) == len(pages)


# --- overview ---------------------------------------------------------------------------------
def test_overview_has_the_described_pools_and_sharing():
    s = scenes.overview()
    h = s.host
    h.check()
    c1, c2 = h.clients[1], h.clients[2]
    eph, pers = s.pool("d1 ephemeral"), s.pool("d2 persistent")
    shared = s.pool("d1 shared")
    assert (not eph.persistent, not eph.shared) == (True, True)
    assert pers.persistent and not pers.shared and pers.client is c2
    assert s.pool("d2 shared") is shared and shared.shared and not shared.persistent
    assert c1.pools[1] is shared and c2.pools[1] is shared
    assert shared.client is c1                        # its creator owns it
    assert [c.cli_id for c in shared.share_list] == [1, 2]


def test_overview_bucket_7_holds_two_objects_in_oid2_oid1_oid0_order():
    s = scenes.overview()
    eph = s.pool("d1 ephemeral")
    assert (0x107 ^ 0x100 ^ 0) & 0xFF == 7
    tree = eph.buckets[7]
    assert len(tree) == 2
    full = [b for b, t in enumerate(eph.buckets) if t.root is not None]
    assert full == [7]
    # key of (7,0,0) is (0,0,7) < (0,256,263): the root is the first inserted, the other is
    # its right child, red (an rb insert under a black root)
    assert tree.root.value.oid == (7, 0, 0)
    assert tree.root.right.value.oid == (0x107, 0x100, 0) and tree.root.right.red
    assert tree.root.left is None


def test_overview_radix_lists_and_billing():
    s = scenes.overview()
    h = s.host
    obj7 = s.pool("d1 ephemeral").find((7, 0, 0))
    # pages 0, 1, 70: 70 >= 64 needs height 2; root slots 0 and 1, a leaf under each
    assert obj7.tree.height == 2 and obj7.objnode_count == 3
    lone = s.pool("d1 ephemeral").find((0x107, 0x100, 0))
    assert lone.tree.height == 0 and lone.objnode_count == 0     # page 0 only: direct root
    # ephemeral pages: 4 private + 2 shared, all on client 1's list (the shared pool's owner)
    assert h.eph_count == 6 and h.clients[1].eph_count == 6 and h.clients[2].eph_count == 0
    assert eph_texts(h)[:4] == ["d1:p0:(7,0,0)[0]", "d1:p0:(7,0,0)[1]", "d1:p0:(7,0,0)[70]",
                                "d1:p0:(263,256,0)[0]"]
    assert client_texts(h.clients[1]) == eph_texts(h)
    # persistent pages: on the pool's list in put order, frames billed to domain 2
    pers = s.pool("d2 persistent")
    on_list = [n.owner for n in list_iter(pers.pers_list)]
    assert [p.index for p in on_list] == [0, 1]
    assert all(int(h.mem.owner[p.data]) == 2 for p in on_list)
    assert not any(n.owner.obj.pool is pers for n in list_iter(h.eph_list))


# --- the tour ---------------------------------------------------------------------------------
def test_tour_steps_do_what_their_captions_say():
    t = scenes.tour()
    h = t.host
    keys = [st.key for st in t.steps]
    assert len(keys) == len(set(keys)) and 10 <= len(keys) <= 16
    assert not h.clients                               # no tmem call yet
    step = {st.key: st for st in t.steps}
    E, S = 0, 1

    def run(key):
        rc = step[key].fn(h)
        h.check()
        return rc

    assert run("pools") == 0                           # d2's persistent pool: its slot 0
    assert h.clients[1].pools[E] is not None and h.clients[2].pools[0].persistent
    assert run("shared") == 1
    assert h.clients[1].pools[S] is h.clients[2].pools[S]
    pool = h.clients[1].pools[E]

    assert run("put_a0") == 1
    a = pool.find(scenes.TOUR_A)
    assert a.tree.height == 0 and a.objnode_count == 0 and a.tree.root.index == 0
    assert run("put_a1") == 1
    assert a.tree.height == 1 and a.objnode_count == 1
    assert run("put_a100") == 1
    assert a.tree.height == 2 and a.objnode_count == 3           # root + leaves 0.. and 64..

    assert run("put_p") == 1
    pers = h.clients[2].pools[0]
    pp = pers.find(scenes.TOUR_P).tree.lookup(0)
    assert int(h.mem.owner[pp.data]) == 2 and pp not in [n.owner for n in list_iter(h.eph_list)]
    assert run("put_s") == 1
    assert client_texts(h.clients[1])[-1] == "d1:p1:(3,0,0)[0]"  # billed to the pool's owner
    assert h.clients[2].eph_count == 0
    assert run("put_b") == 1
    assert len(pool.buckets[7]) == 2
    assert eph_texts(h)[-2:] == ["d1:p0:(263,256,0)[0]", "d1:p0:(263,256,0)[1]"]

    assert run("get_s") == 1                            # shared get: to the young end
    assert eph_texts(h)[-1] == "d1:p1:(3,0,0)[0]"
    assert client_texts(h.clients[1])[-1] == "d1:p1:(3,0,0)[0]"
    assert h.clients[1].pools[S].find(scenes.TOUR_S).last_client == 1

    frame1 = a.tree.lookup(1).data
    assert run("get_a1") == 1                           # private get: exclusive
    assert a.tree.lookup(1) is None and "d1:p0:(7,0,0)[1]" not in eph_texts(h)
    assert int(h.mem.owner[frame1]) == PAGE_LIST and frame1 in h.mem.page_list

    pgp0 = a.tree.lookup(0)
    frame0, order = pgp0.data, eph_texts(h)
    assert run("dup_a0") == 1                           # dup put: in place, not moved
    assert a.tree.lookup(0) is pgp0 and pgp0.data == frame0 and eph_texts(h) == order
    assert bytes(h.mem.data[frame0]) == scenes.page(8)

    assert run("flush_b") == 1
    assert pool.find(scenes.TOUR_B) is None and len(pool.buckets[7]) == 1
    assert eph_texts(h) == ["d1:p0:(7,0,0)[0]", "d1:p0:(7,0,0)[100]", "d1:p1:(3,0,0)[0]"]

    assert run("squeeze") is None
    assert h.mem.guard_pages() == h.min_free_pages - 1 and 3 in h.mem.domains

    before = h.evicted_pgs
    assert run("evict") == 1                            # the oldest page goes first
    assert h.evicted_pgs == before + 1
    assert a.tree.lookup(0) is None and a.tree.lookup(100) is not None
    assert eph_texts(h) == ["d1:p0:(7,0,0)[100]", "d1:p1:(3,0,0)[0]", "d1:p1:(3,0,0)[1]"]

    assert run("destroy") == 1
    assert h.clients[1].pools[E] is None
    assert eph_texts(h) == ["d1:p1:(3,0,0)[0]", "d1:p1:(3,0,0)[1]"]


def test_tour_rows_number_states_as_the_explorer_does():
    rows = scenes.tour_rows()
    n_steps = len(scenes.tour().steps)
    assert [r[0] for r in rows] == list(range(1, n_steps + 2))
    assert rows[0][1:] == ("initial state", "", "(empty)", 0)
    evicted = {r[1]: r[4] for r in rows}
    assert evicted.pop("evict") == 1 and not any(evicted.values())
    assert dict((r[1], r[2]) for r in rows)["squeeze"] == ""       # no hypercall: no rc


def test_tour_record_pairs_match_steps():
    t = scenes.tour()
    assert [c for c, _ in t.pairs()] == [s.caption for s in t.steps]


# --- paths and highlights ---------------------------------------------------------------------
def test_put_path_follows_edges_of_the_web():
    s = scenes.overview()
    h = s.host
    g = web(h)
    e = edges_of(g)
    path = scenes.put_path(h, 1, 0, (0x107, 0x100, 0), 0)
    obj7, objb = "c1p0o7.0.0", "c1p0o263.256.0"
    # the rb-tree search passes the bucket's root (7,0,0) before its right child
    assert path[:5] == ["d1", "c1", "c1p0", obj7, objb]
    assert path[5] == "c1p0o263.256.0i0"               # direct root: no radix node between
    assert re.fullmatch(r"f\d+", path[6])
    assert all((a, b) in e for a, b in zip(path, path[1:]))
    deep = scenes.put_path(h, 1, 0, (7, 0, 0), 70)
    assert deep[3:7] == [obj7, obj7 + "r", obj7 + "r.1", obj7 + "i70"]   # 70 >> 6 == 1
    assert all((a, b) in e for a, b in zip(deep, deep[1:]))
    shared = scenes.put_path(h, 2, 1, (3, 0, 0), 5)
    assert shared[:3] == ["d2", "c2", "c1p1"]          # d2's slot 1 is client 1's shared pool
    assert all((a, b) in e for a, b in zip(shared, shared[1:]))
    with pytest.raises(ValueError):
        scenes.put_path(h, 1, 0, (7, 0, 0), 2)
    with pytest.raises(ValueError):
        scenes.put_path(h, 1, 0, (8, 0, 0), 0)


def test_evict_path_climbs_back_pointers_from_the_oldest_page():
    s = scenes.overview()
    h = s.host
    path = scenes.evict_path(h)
    assert path == ["eph_list", "c1p0o7.0.0i0", "c1p0o7.0.0", "c1p0", "c1"]
    e = edges_of(web(h))
    # pgp -> obj and obj -> pool are the web's (dashed) back pointers; pool -> client is not drawn
    assert ("c1p0o7.0.0i0", "c1p0o7.0.0") in e and ("c1p0o7.0.0", "c1p0") in e
    assert all("dashed" in a for a in e[("c1p0o7.0.0", "c1p0")])
    with pytest.raises(ValueError):
        scenes.evict_path(scenes.new_host(1))


def test_highlight_restyles_the_path_and_leaves_the_original_alone():
    h = scenes.overview().host
    g = web(h)
    src = g.source
    path = scenes.evict_path(h)
    hg = scenes.highlight(g, path, colour=scenes.UP_COLOUR)
    assert g.source == src
    e = edges_of(hg)
    walk = path[1:]                                    # the head is a note, not a node
    for i, (a, b) in enumerate(zip(walk, walk[1:]), start=1):
        attrs = " ".join(e[(a, b)])
        assert scenes.UP_COLOUR in attrs and "penwidth=2.6" in attrs and f'" {i}"' in attrs
    # pool -> client was added, and does not shape the layout
    assert "constraint=false" in " ".join(e[("c1p0", "c1")])
    assert "oldest on" in hg.source and "eph_list" not in {k[0] for k in e}
    # no other edge was restyled
    restyled = [k for k, v in e.items() if any(scenes.UP_COLOUR in a for a in v)]
    assert sorted(restyled) == sorted(zip(walk, walk[1:]))
    svg = to_svg(hg)
    assert svg.startswith("<svg") and svg.rstrip().endswith("</svg>")


def test_highlight_of_a_put_numbers_every_hop():
    h = scenes.overview().host
    path = scenes.put_path(h, 1, 0, (7, 0, 0), 70)
    hg = scenes.highlight(web(h), path)
    e = edges_of(hg)
    for i, (a, b) in enumerate(zip(path, path[1:]), start=1):
        assert any(f'" {i}"' in x and scenes.DOWN_COLOUR in x for x in e[(a, b)])


# --- locks ------------------------------------------------------------------------------------
def test_trace_of_a_put_follows_the_lock_order():
    h = scenes.overview().host
    with scenes.trace_locks() as events:
        assert scenes.put(h, 1, 0, (7, 0, 0), 2, 9) == 1
    rows = scenes.lock_rows(events)
    assert events[0].name == "tmem_rwlock" and events[0].op == "read_lock"
    assert events[-1].name == "tmem_rwlock" and events[-1].op == "read_unlock"
    assert not any(r[5] == "VIOLATION" for r in rows)
    assert rows[-1][4] == "—"                           # nothing held at the end
    names = [e.name for e in events]
    # the top-down path takes the object lock only with a try (facts §7.2)
    assert [e.op for e in events if e.name == "obj_spinlock"][0] == "trylock"
    assert names.index("pool_rwlock") < names.index("obj_spinlock") < \
        names.index("eph_lists_spinlock")


def test_trace_of_an_eviction_only_tries_the_lower_locks():
    h = scenes.overview().host
    scenes.call(h, 1, cmd=abi.TMEM_FLUSH_OBJECT, pool_id=0, oid=(7, 0, 0))
    with scenes.trace_locks() as events:
        gone = scenes.evict_one(h)
    assert gone == "d1:p0:(263,256,0)[0]"              # oldest left, last page of its object
    takes = [(e.name, e.op) for e in events if e.op in ("acquire", "trylock", "read_lock",
                                                         "write_lock", "write_trylock")]
    # it waits only for the lists' lock, then tries the lower ones; freeing the page and its
    # descriptors takes the free-frame list's and the allocator's locks, which rank higher
    assert takes[:3] == [("eph_lists_spinlock", "acquire"), ("obj_spinlock", "trylock"),
                         ("pool_rwlock", "write_trylock")]
    assert {n for n, _ in takes[3:]} == {"tmem_page_list_lock", "xmem_pool lock"}
    rows = scenes.lock_rows(events)
    orders = [r[5] for r in rows if r[5]]
    assert orders[:3] == ["in order", "try: never waits", "try: never waits"]
    assert set(orders[3:]) == {"in order"}


def test_trace_locks_restores_the_classes_and_does_not_nest():
    orig = (locks.SpinLock.__dict__["acquire"], locks.RWLock.__dict__["write_trylock"])
    with pytest.raises(ZeroDivisionError):
        with scenes.trace_locks():
            assert locks.SpinLock.__dict__["acquire"] is not orig[0]
            1 / 0
    assert (locks.SpinLock.__dict__["acquire"], locks.RWLock.__dict__["write_trylock"]) == orig
    with scenes.trace_locks():
        with pytest.raises(RuntimeError):
            with scenes.trace_locks():
                pass
    assert locks.SpinLock.__dict__["acquire"] is orig[0]


def test_lock_rows_judges_takes():
    E = scenes.LockEvent
    rows = scenes.lock_rows([
        E("eph_lists_spinlock", 4, "acquire", None, "t"),
        E("obj_spinlock", 2, "acquire", None, "t"),          # blocking below a held rank
        E("obj_spinlock", 2, "release", None, "t"),
        E("eph_lists_spinlock", 4, "release", None, "t"),
        E("obj_spinlock", 2, "acquire", None, "t"),
        E("pool_rwlock", 1, "write_lock", None, "t"),        # the named exception
        E("pool_rwlock", 1, "write_unlock", None, "t"),
        E("pool_rwlock", 1, "write_trylock", False, "t"),
        E("obj_spinlock", 2, "release", None, "t"),
    ])
    verdicts = [r[5] for r in rows]
    assert verdicts == ["in order", "VIOLATION", "", "", "in order", "the obj_free exception",
                        "", "try failed: skip", ""]
    assert rows[7][4] == "obj_spinlock" and rows[-1][4] == "—"   # a failed try holds nothing


# --- eviction experiments ---------------------------------------------------------------------
def test_evict_one_on_an_empty_host_evicts_nothing():
    h = scenes.new_host(1)
    assert scenes.evict_one(h) is None


def test_evict_while_an_object_lock_is_held_skips_its_pages():
    h = scenes.overview().host
    obj = h.clients[1].pools[0].find((7, 0, 0))
    evicted, skipped = scenes.evict_while_held(h, obj.lock)
    assert [why for _, why in skipped] == [evict.SKIP_OBJ_BUSY] * 3
    assert [t for t, _ in skipped] == ["d1:p0:(7,0,0)[0]", "d1:p0:(7,0,0)[1]",
                                       "d1:p0:(7,0,0)[70]"]
    assert evicted == "d1:p0:(263,256,0)[0]"
    assert not obj.lock.held and obj.pgp_count == 3


def test_evict_while_a_pool_lock_is_held_skips_last_pages_only():
    h = scenes.overview().host
    pool = h.clients[1].pools[0]
    scenes.call(h, 1, cmd=abi.TMEM_FLUSH_OBJECT, pool_id=0, oid=(7, 0, 0))
    # oldest: (263,256,0)[0], its object's only page -> needs the pool lock for writing
    evicted, skipped = scenes.evict_while_held(h, pool.lock)
    assert skipped == [("d1:p0:(263,256,0)[0]", evict.SKIP_POOL_BUSY)]
    assert evicted == "d1:p1:(3,0,0)[5]"               # shared object has two pages: no pool lock
    assert not pool.lock.held


def test_blocking_bottom_up_is_refused_by_the_checker():
    h = scenes.overview().host
    msg = scenes.blocking_bottom_up(h)
    assert "obj_spinlock (rank 2)" in msg and "eph_lists_spinlock (rank 5)" in msg
    assert locks._checking is True                    # conftest's setting is restored
    assert not locks.held_locks() and not h.eph_lists_lock.held
    h.check()
    locks.set_order_checking(False)
    try:
        scenes.blocking_bottom_up(h)
        assert locks._checking is False
    finally:
        locks.set_order_checking(True)


# --- invariants -------------------------------------------------------------------------------
@pytest.mark.parametrize("what,fn,label", [
    (c[0], c[1], lbl) for c, lbl in zip(scenes.CORRUPTIONS, (
        "pool invariant 2",          # a count no longer matches the trees
        "invariant 3",               # obj invariant 3: a pgp must point back at its object
        "invariant 3",               # every ephemeral pgp is on both LRU lists
        "frames invariant 2",        # heap frames are scrubbed
        "pool invariant 1",          # an object lives in the bucket its oid hashes to
    ))])
def test_each_corruption_is_caught(what, fn, label):
    msg = scenes.corrupted(fn)
    assert label in msg, (what, msg)


def test_corrupted_raises_when_nothing_is_broken():
    scenes.overview().host.check()
    with pytest.raises(RuntimeError):
        scenes.corrupted(lambda host: None)


def test_corruptions_break_a_copy_not_a_shared_host():
    a, b = scenes.overview().host, scenes.overview().host
    scenes.CORRUPTIONS[0][1](a)
    with pytest.raises(InvariantError):
        a.check()
    b.check()


# --- the tmem page list -----------------------------------------------------------------------
def test_page_list_holds_unscrubbed_frames_until_tmemc_flush():
    s = scenes.page_list_scene(puts=40, flushed=12)
    h = s.host
    mem = h.mem
    pool = s.pool("d1 ephemeral")
    assert pool.pgp_count == 28 and pool.find((2, 0, 0)) is None
    # the flushed pages' 12 data frames, and the frame their object, radix node and pgps
    # were carved from, which keeps its TLSF block headers (unscrubbed, as in Xen)
    assert len(mem.page_list) == 13 and scenes.dirty_frames(h, mem.page_list) == 13
    assert scenes.dirty_frames(h, mem.heap) == 0
    n = len(mem.page_list)
    out = h.do_tmem_op(0, TmemOp(cmd=abi.TMEM_CONTROL, subop=abi.TMEMC_FLUSH,
                                 cli_id=abi.TMEM_CLI_ID_NULL, arg1=0))
    h.check()
    assert out == 4 * n and not mem.page_list                   # facts §8.1: KB of the list
    assert not mem.data[mem.heap].any()
    assert pool.pgp_count == 28                                 # 0 KB asked: nothing evicted
    with pytest.raises(ValueError):
        scenes.page_list_scene(puts=3, flushed=4)


def test_dirty_frames_counts_nonzero_frames():
    h = scenes.new_host(1)
    f = h.mem.heap[-1]
    assert scenes.dirty_frames(h, []) == 0 and scenes.dirty_frames(h, [f]) == 0
    h.mem.data[f, 4095] = 1
    assert scenes.dirty_frames(h, [f, h.mem.heap[0]]) == 1
    h.mem.data[f, 4095] = 0


# --- exercises --------------------------------------------------------------------------------
@pytest.mark.parametrize("oid", [(0x1FF, 0x100, 0), (7, 0, 0), (0, 0, 0x300), (0xAB, 0xCD, 0xEF),
                                 (2**64 - 1, 0, 0)])
def test_bucket_live_is_the_low_byte_of_the_xor(oid):
    assert scenes.bucket_live(oid) == (oid[0] ^ oid[1] ^ oid[2]) & 0xFF


@pytest.mark.parametrize("indices,want", [
    ([0], (0, 0)),                   # direct root
    ([5], (1, 1)),                   # any other index needs a leaf
    ([0, 63], (1, 1)),
    ([0, 63, 64], (3, 2)),           # root + two leaves
    ([0, 4096], (5, 3)),             # 4096 = 64**2: two chains of two under a root
    ([2**32 - 1], (6, 6)),           # 32 bits / 6 per level: 6 levels, one node each
])
def test_radix_live(indices, want):
    assert scenes.radix_live(indices) == want


def test_lru_exercise_evicts_the_dup_put_page_first():
    s = scenes.lru_exercise()
    h = s.host
    assert eph_texts(h) == ["d1:p0:(1,0,0)[0]", "d1:p0:(1,0,0)[1]", "d1:p1:(2,0,0)[0]"]
    assert scenes.evict_one(h) == "d1:p0:(1,0,0)[0]"
    assert scenes.evict_one(h) == "d1:p0:(1,0,0)[1]"


def test_lru_exercise_with_the_private_object_busy():
    s = scenes.lru_exercise()
    lock = s.pool("private").find((1, 0, 0)).lock
    evicted, skipped = scenes.evict_while_held(s.host, lock)
    assert evicted == "d1:p1:(2,0,0)[0]"
    assert [w for _, w in skipped] == [evict.SKIP_OBJ_BUSY] * 2


# --- Markdown ---------------------------------------------------------------------------------
def test_docstring_markdown_converts_rest():
    def f():
        """Title line with :meth:`Host.check` and :mod:`~tmemref.host.locks`.

        Cases
        -----
        Order::

            a -> b
              c

        >>> 1 + 1
        2

        Tail ``x``.
        """
    md = scenes.docstring_markdown(f)
    assert md.startswith("Title line with `Host.check` and `locks`.")
    assert "**Cases**" in md and "-----" not in md
    assert "Order:\n\n```text\na -> b\n  c\n```" in md
    assert "```pycon\n>>> 1 + 1\n2\n```" in md
    assert md.rstrip().endswith("Tail `x`.")
    no_doctest = scenes.docstring_markdown(f, doctests=False)
    assert ">>>" not in no_doctest and "Tail `x`." in no_doctest


def test_docstring_markdown_of_the_lock_module_keeps_the_order_table():
    md = scenes.docstring_markdown(locks, doctests=False)
    block = md.split("```text\n", 1)[1].split("```", 1)[0]
    ranks = [int(m) for m in re.findall(r"^rank (\d)", block, re.M)]
    assert ranks == sorted(ranks) and ranks[0] == locks.RANK_TMEM
    assert ">>>" not in md and ":class:" not in md


def test_source_markdown_and_md_table():
    from tmemref.core.host import Host
    src = scenes.source_markdown(Host._obj_find_lock)
    assert src.startswith("```python\ndef _obj_find_lock(") and src.endswith("\n```")
    assert scenes.md_table(["a", "b"], [(1, "x|y")]).splitlines() == \
        ["| a | b |", "|---|---|", "| 1 | x\\|y |"]


def test_frames_of_an_evicted_page_go_to_the_page_list_not_the_heap():
    # the scrubbing rule behind the chapter's last section: tmem keeps its freed frames
    h = scenes.overview().host
    pgp = h.eph_list.next.owner
    f = pgp.data
    assert int(h.mem.owner[f]) == ANON
    assert scenes.evict_one(h) == "d1:p0:(7,0,0)[0]"
    assert int(h.mem.owner[f]) == PAGE_LIST and np.any(h.mem.data[f])
