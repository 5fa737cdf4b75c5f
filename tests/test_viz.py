"""Tests for tmemref.viz: the DOT text of the pictures, determinism, truncation, explorers.

The pictures are checked on their DOT source (``Digraph.source``), parsed into nodes and
edges, against what the facts say the structures must be (bucket = low byte of
oid0^oid1^oid2, rb order oid2, oid1, oid0, radix slots of 6 bits, LRU lists oldest first,
persistent pages on no LRU list), and rendered with ``dot`` once per picture kind.
"""
import re
import subprocess
import sys

import pytest

from tmemref import Host, TmemOp, abi
from tmemref.ds.radix import EXTEND, FREE_NODE, SHRINK, RadixTree
from tmemref.ds.rbtree import (ERASE_CHILD_RED, INSERT_RECOLOR, INSERT_ROOT, INSERT_ROTATE_OUTER,
                               RBTree)
from tmemref.viz import (case_pictures, explorer, frame_counts, frame_map, frame_map_figure,
                         lru, radix, rbtree, record, to_svg, web)
from tmemref.viz._common import BACK, CLIENT_LRU, GLOBAL_LRU, RED, BLACK

pytest.importorskip("graphviz")

UUID = (0x1234, 0x5678)


def page(i):
    return bytes([i % 251 + 1]) * 4096


def new_pool(h, d, **kw):
    uuid = kw.pop("uuid", (0, 0))
    rc = h.do_tmem_op(d, TmemOp(cmd=abi.TMEM_NEW_POOL, flags=abi.pool_flags(**kw), uuid=uuid))
    h.check()
    assert rc >= 0
    return rc


def put(h, d, pool, oid, index, i=0):
    rc = h.do_tmem_op(d, TmemOp(cmd=abi.TMEM_PUT_PAGE, pool_id=pool, oid=oid, index=index,
                                page=page(i)))
    h.check()
    assert rc == 1
    return rc


def small_host():
    """Two domains; d1: ephemeral private pool (slot 0) and a shared pool (slot 1); d2:
    persistent pool (slot 0) and joins the shared pool (slot 1). Six pages."""
    h = Host(pages=1024)
    for d in (1, 2):
        h.create_domain(d, pages=8, max_pages=64)
        assert h.do_tmem_op(0, TmemOp(cmd=abi.TMEM_AUTH, arg1=d, uuid=UUID, flags=1)) == 1
        h.check()
    e1 = new_pool(h, 1)
    s1 = new_pool(h, 1, shared=True, uuid=UUID)
    p2 = new_pool(h, 2, persist=True)
    s2 = new_pool(h, 2, shared=True, uuid=UUID)
    assert (e1, s1, p2, s2) == (0, 1, 0, 1)
    put(h, 1, e1, (7, 0, 0), 3, 0)
    put(h, 1, e1, (7, 0, 0), 70, 1)
    put(h, 1, e1, (263, 0, 0), 0, 2)       # 263 = 0x107: bucket 7 too, after (7,0,0) in order
    put(h, 2, s2, (5, 0, 0), 1, 3)         # into the shared pool, owned by client 1
    put(h, 2, p2, (9, 0, 0), 0, 4)
    put(h, 2, p2, (9, 0, 0), 1, 5)
    return h


# --- a small DOT parser ---------------------------------------------------------------------
_ID = r'"(?:[^"\\]|\\.)*"|[\w.]+'
_EDGE = re.compile(rf'^\s*({_ID})((?::\w+)*)\s*->\s*({_ID})((?::\w+)*)\s*(?:\[(.*)\])?\s*$')
_NODE = re.compile(rf'^\s*({_ID})\s*\[(.*)\]\s*$')


def _unq(s):
    return s[1:-1] if s.startswith('"') else s


def parse(src):
    """``(nodes, edges)``: ``nodes[id]`` the attribute text of every node statement (joined),
    ``edges`` a list of ``(tail, tail_port, head, head_port, attrs)``."""
    nodes, edges = {}, []
    for line in src.splitlines():
        m = _EDGE.match(line)
        if m:
            edges.append((_unq(m[1]), m[2], _unq(m[3]), m[4], m[5] or ""))
            continue
        m = _NODE.match(line)
        if m and m[1] not in ("graph", "node", "edge"):
            nodes.setdefault(_unq(m[1]), []).append(m[2])
    return {k: " ".join(v) for k, v in nodes.items()}, edges


def edge_attrs(edges, tail, head):
    return [a for t, _, h, _, a in edges if t == tail and h == head]


def pgps_of(h):
    out = []
    seen = set()
    for c in h.clients.values():
        for _, pool in c.pool_slots():
            if id(pool) in seen:
                continue
            seen.add(id(pool))
            for obj in pool.objects():
                out += [pgp for _, pgp in obj.tree.items()]
    return out


# --- web ------------------------------------------------------------------------------------
def test_web_nodes_and_edges_of_the_small_host():
    h = small_host()
    nodes, edges = parse(web(h).source)
    for nid in ("d0", "d1", "d2", "c1", "c2", "c1p0", "c1p1", "c2p0", "c1p0o7.0.0",
                "c1p0o263.0.0", "c1p1o5.0.0", "c2p0o9.0.0", "c1p0o7.0.0i3", "c1p0o7.0.0i70",
                "c1p0o263.0.0i0", "c1p1o5.0.0i1", "c2p0o9.0.0i0", "c2p0o9.0.0i1"):
        assert nid in nodes, nid
    assert "c2p1" not in nodes                       # the shared pool is drawn once, as c1p1
    # domain -> client -> slot -> pool; client 2's slot 1 points at client 1's shared pool
    assert edge_attrs(edges, "d1", "c1") and edge_attrs(edges, "d2", "c2")
    slot_edges = {(t, tp, hd) for t, tp, hd, _, _ in edges if t in ("c1", "c2")}
    assert slot_edges == {("c1", ":s0:s", "c1p0"), ("c1", ":s1:s", "c1p1"),
                          ("c2", ":s0:s", "c2p0"), ("c2", ":s1:s", "c1p1")}
    assert "bold" in edge_attrs(edges, "c2", "c1p1")[0]
    # bucket 7 -> rb root (7,0,0) (black); (263,0,0) is its right child (red)
    assert [(tp, a) for t, tp, hd, _, a in edges if t == "c1p0" and hd == "c1p0o7.0.0"][0][0] \
        == ":b7:s"
    right = [a for t, _, hd, _, a in edges if t == "c1p0o7.0.0" and hd == "c1p0o263.0.0"]
    assert len(right) == 1 and "tailport=se" in right[0]
    assert f'fillcolor="{BLACK}"' in nodes["c1p0o7.0.0"]
    assert f'fillcolor="{RED}"' in nodes["c1p0o263.0.0"]
    # radix tree of (7,0,0): indices 3 and 70 need height 2; root slots 0 and 1 (70 >> 6 = 1),
    # leaves hold slot 3 and slot 70 & 63 = 6
    r = "c1p0o7.0.0r"
    assert edge_attrs(edges, "c1p0o7.0.0", r)
    assert 'PORT="s0"' in nodes[r] and 'PORT="s1"' in nodes[r] and 'PORT="s2"' not in nodes[r]
    assert ("c1p0o7.0.0r", ":s0:s", "c1p0o7.0.0r.0") in {(t, tp, hd) for t, tp, hd, _, _ in edges}
    assert ("c1p0o7.0.0r.0", ":s3:s", "c1p0o7.0.0i3") in {(t, tp, hd) for t, tp, hd, _, _ in edges}
    assert ("c1p0o7.0.0r.1", ":s6:s", "c1p0o7.0.0i70") in {(t, tp, hd) for t, tp, hd, _, _ in edges}
    # (263,0,0) holds only index 0: a direct root, no radix node
    assert "c1p0o263.0.0r" not in nodes
    assert "direct" in edge_attrs(edges, "c1p0o263.0.0", "c1p0o263.0.0i0")[0]
    # each raw pgp points at its frame; persistent frames are billed to domain 2
    for pgp in pgps_of(h):
        pool = pgp.obj.pool
        nid = f"c{pool.client.cli_id}p{pool.pool_id}o" + ".".join(map(str, pgp.obj.oid)) \
            + f"i{pgp.index}"
        assert edge_attrs(edges, nid, f"f{pgp.data}"), nid
        assert ("billed d2" in nodes[f"f{pgp.data}"]) == pool.persistent


def test_web_back_pointers_are_dashed_grey_and_do_not_constrain():
    h = small_host()
    _, edges = parse(web(h).source)
    for pgp in pgps_of(h):
        pool = pgp.obj.pool
        obj = f"c{pool.client.cli_id}p{pool.pool_id}o" + ".".join(map(str, pgp.obj.oid))
        (a,) = edge_attrs(edges, f"{obj}i{pgp.index}", obj)
        assert "style=dashed" in a and "constraint=false" in a and BACK in a
        (b,) = edge_attrs(edges, obj, f"c{pool.client.cli_id}p{pool.pool_id}")
        assert "style=dashed" in b and "constraint=false" in b
    _, edges = parse(web(h, show_back=False).source)
    assert not [a for *_, a in edges if "style=dashed" in a]


def test_web_only_nonempty_buckets_appear():
    h = small_host()
    nodes, _ = parse(web(h).source)
    want = {"c1p0": {7}, "c1p1": {5}, "c2p0": {9}}      # oid0 ^ oid1 ^ oid2, low byte
    for pid, buckets in want.items():
        assert {int(b) for b in re.findall(r'PORT="b(\d+)"', nodes[pid])} == buckets


def test_web_lru_chains_follow_the_lists_oldest_first():
    h = small_host()
    _, edges = parse(web(h).source)
    glob = [(t, hd) for t, _, hd, _, a in edges if GLOBAL_LRU in a]
    cli = [(t, hd) for t, _, hd, _, a in edges if CLIENT_LRU in a]
    order = ["c1p0o7.0.0i3", "c1p0o7.0.0i70", "c1p0o263.0.0i0", "c1p1o5.0.0i1"]
    assert glob == list(zip(order, order[1:]))
    # the shared pool's page is on its owner's (client 1's) list; persistent pages on none
    assert cli == list(zip(order, order[1:]))
    _, edges = parse(web(h, show_lru=False).source)
    assert not [a for *_, a in edges if GLOBAL_LRU in a or CLIENT_LRU in a]


def test_web_is_deterministic():
    assert web(small_host()).source == web(small_host()).source
    assert lru(small_host()).source == lru(small_host()).source
    assert frame_map(small_host()).source == frame_map(small_host()).source


def test_web_truncates_big_objects_and_pools():
    h = Host(pages=1024)
    h.create_domain(1, pages=4)
    p = new_pool(h, 1)
    for i in range(20):
        put(h, 1, p, (1, 0, 0), i, i)
    for o in range(2, 12):                  # ten more objects, buckets 2..11, one page each
        put(h, 1, p, (o, 0, 0), 0, o)
    src = web(h, max_pages_per_obj=8, max_objs_per_pool=3, max_buckets_per_pool=3).source
    nodes, _ = parse(src)
    assert "… 12 more pages" in src
    assert sum(1 for n in nodes if re.fullmatch(r"c1p0o1\.0\.0i\d+", n)) == 8
    assert "+8 buckets (8 obj)" in src             # buckets 1, 2, 3 shown; 4..11 hidden
    assert {int(b) for b in re.findall(r'PORT="b(\d+)"', nodes["c1p0"])} == {1, 2, 3}
    # a bucket whose rb-tree is cut says how many objects are hidden
    h2 = Host(pages=1024)
    h2.create_domain(1, pages=4)
    p = new_pool(h2, 1)
    for k in range(7):
        put(h2, 1, p, (5 + 256 * k, 0, 0), 0, k)       # all in bucket 5
    src = web(h2, max_objs_per_pool=3).source
    objs = [n for n in parse(src)[0] if re.fullmatch(r"c1p0o\d+\.0\.0", n)]
    hidden = [int(k) for k in re.findall(r"… (\d+) more objects?", src)]
    assert len(objs) == 3 and hidden and sum(hidden) == 4


def test_web_compressed_pages_show_their_size():
    h = Host(pages=1024, compress=True)
    h.create_domain(1, pages=4)
    p = new_pool(h, 1)
    put(h, 1, p, (7, 0, 0), 0, 0)            # 4096 equal bytes compress to a few dozen
    nodes, edges = parse(web(h).source)
    pgp = h.clients[1].pools[0].find((7, 0, 0)).tree.lookup(0)
    assert pgp.size > 0
    assert f"compressed {pgp.size} B" in nodes["c1p0o7.0.0i0z"]
    assert edge_attrs(edges, "c1p0o7.0.0i0", "c1p0o7.0.0i0z")
    assert not [n for n in nodes if re.fullmatch(r"f\d+", n)]


def test_web_can_show_some_domains_only():
    nodes, _ = parse(web(small_host(), domains=[2]).source)
    assert "d2" in nodes and "c2" in nodes and "d1" not in nodes and "c1" not in nodes
    assert "c1p1" in nodes and "c1p0" not in nodes     # the shared pool client 2 uses


# --- trees ----------------------------------------------------------------------------------
def test_rbtree_colours_and_sides():
    t = RBTree()
    for k in (1, 2, 3, 4):          # 3 rotates 2 to the root; 4 recolours 1 and 3 black
        t.insert(k)
    t.check()
    nodes, edges = parse(rbtree(t).source)
    fill = {n: re.search(r'fillcolor="([^"]+)"', nodes[n])[1] for n in ("n0", "n1", "n2", "n3")}
    assert fill == {"n0": BLACK, "n1": BLACK, "n2": BLACK, "n3": RED}
    assert {(t_, h_) for t_, _, h_, _, a in edges if "invis" not in a} == \
        {("n1", "n0"), ("n1", "n2"), ("n2", "n3")}
    # 3 has only a right child: an invisible placeholder holds its left side
    assert "style=invis" in nodes["n2_L"]
    src = rbtree(t, nil=True).source
    assert src.count('label=NIL') == 5             # n + 1 NIL leaves for n = 4


def test_radix_picture_shows_used_slots_and_direct_root():
    t = RadixTree()
    t.insert(0, "a")
    nodes, edges = parse(radix(t).source)
    assert "direct root" in edge_attrs(edges, "root", "i0")[0] and "r" not in nodes
    t.insert(65, "b")                             # height 2: root slots 0 and 1
    nodes, edges = parse(radix(t).source)
    assert set(re.findall(r'PORT="s(\d+)"', nodes["r"])) == {"0", "1"}
    assert set(re.findall(r'PORT="s(\d+)"', nodes["r.1"])) == {"1"}
    assert ("r.1", ":s1:s", "i65") in {(a, p, b) for a, p, b, _, _ in edges}
    assert "height 2" in nodes["root"]


def test_case_pictures_rbtree_leave_the_tree_alone():
    t = RBTree()
    for k in (1, 2):
        t.insert(k)
    before = rbtree(t).source
    cp = case_pictures(t, 3)
    assert cp.cases == [INSERT_ROTATE_OUTER] and [c for c, _ in cp.steps] == cp.cases
    assert rbtree(t).source == before and len(t) == 2
    assert "n2" not in parse(cp.before.source)[0] and "n2" in parse(cp.after.source)[0]
    assert len(cp.states()) == 3
    t.insert(3)
    cp = case_pictures(t, 4)
    # uncle red: recolour, which turns the grandparent (the root) red; case 0 paints it black
    assert cp.cases == [INSERT_RECOLOR, INSERT_ROOT]
    cp = case_pictures(t, 1, "erase")
    assert len(cp.after.source) < len(cp.before.source) and ERASE_CHILD_RED not in cp.cases
    with pytest.raises(KeyError):
        case_pictures(t, 99, "erase")


def test_case_pictures_radix():
    t = RadixTree()
    t.insert(1, "a")                   # height 1
    cp = case_pictures(t, 64)          # needs height 2: one new root on top
    assert cp.cases == [EXTEND] and t.height == 1
    t.insert(64, "b")
    cp = case_pictures(t, 64, "erase")  # leaf of 64 emptied and freed, root left with slot 0
    assert cp.cases == [FREE_NODE, SHRINK] and cp.result == "b"


# --- lists and frames -----------------------------------------------------------------------
def test_lru_rows_oldest_first():
    h = small_host()
    nodes, edges = parse(lru(h).source)
    order = ["c1p0o7.0.0i3", "c1p0o7.0.0i70", "c1p0o263.0.0i0", "c1p1o5.0.0i1"]
    assert [(t, hd) for t, _, hd, _, a in edges if GLOBAL_LRU in a] == \
        [(f"G_{a}", f"G_{b}") for a, b in zip(order, order[1:])]
    assert [(t, hd) for t, _, hd, _, a in edges if CLIENT_LRU in a] == \
        [(f"L1_{a}", f"L1_{b}") for a, b in zip(order, order[1:])]
    assert "d1:p0:(7,0,0)[3]" in nodes["G_c1p0o7.0.0i3"]
    assert "d1:p1:(5,0,0)[1]" in nodes["L1_c1p1o5.0.0i1"]
    assert "(empty)" in nodes["L2_x0"]                    # client 2 has no ephemeral page
    src = lru(h, show_persistent=True).source
    assert "P_c2p0_c2p0o9.0.0i0" in src and "P_c2p0_c2p0o9.0.0i1" in src


def test_lru_cuts_long_lists():
    h = Host(pages=1024)
    h.create_domain(1, pages=4)
    p = new_pool(h, 1)
    for i in range(30):
        put(h, 1, p, (1, 0, 0), i, i)
    nodes, _ = parse(lru(h, max_per_list=10).source)
    assert "… 20 more" in nodes["G_more"]
    assert "G_c1p0o1.0.0i0" in nodes and "G_c1p0o1.0.0i29" in nodes
    assert "G_c1p0o1.0.0i5" not in nodes


def test_frame_counts_and_map():
    h = small_host()
    c = frame_counts(h)
    assert c["d1 own memory"] == 8 and c["d2 own memory"] == 8
    assert c["tmem ephemeral data"] == 4             # 3 private + 1 shared ephemeral page
    assert c["d2 persistent tmem data"] == 2
    assert c["tmem ephemeral metadata"] >= 1 and c["d2 persistent tmem metadata"] >= 1
    assert c["d2 persistent tmem data"] + c["d2 persistent tmem metadata"] + 8 == \
        h.mem.domains[2].tot_pages
    assert sum(c.values()) == 1024
    src = frame_map(h).source
    assert src.count("<TD BGCOLOR") - len(c) == 1024           # one cell per frame + legend
    src = frame_map(h, max_cells=256).source
    assert "one cell per 4 frames" in src


def test_frame_map_figure():
    fig = frame_map_figure(small_host())
    texts = [t.get_text() for t in fig.legends[0].get_texts()]
    assert "tmem ephemeral data: 4" in texts
    import io
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    assert buf.getvalue()[:4] == b"\x89PNG"


# --- explorer and record --------------------------------------------------------------------
def test_explorer_builds_a_linked_slider_and_stack():
    widgets = pytest.importorskip("ipywidgets")
    from ipywidgets.embed import embed_data
    t = RBTree()
    states = []
    for k in (5, 3, 8, 1):
        t.insert(k)
        states.append((f"insert {k}", rbtree(t)))
    box = explorer(states)
    assert isinstance(box, widgets.VBox)
    slider, stack = box.children
    assert isinstance(slider, widgets.IntSlider) and isinstance(stack, widgets.Stack)
    assert len(stack.children) == 4 and slider.max == 3 and slider.min == 0
    assert all(isinstance(c, widgets.HTML) for c in stack.children)
    html0 = stack.children[0].value
    assert "<svg" in html0 and "<?xml" not in html0 and "insert 5" in html0
    # the jslink is in the embedded widget state, tying slider.value to stack.selected_index
    state = embed_data(views=[box])["manager_state"]["state"]
    links = [s["state"] for s in state.values() if s["model_name"] == "LinkModel"]
    assert any(lk["source"] == ["IPY_MODEL_" + slider.model_id, "value"] and
               lk["target"] == ["IPY_MODEL_" + stack.model_id, "selected_index"] for lk in links)
    # render: map states to pictures
    box = explorer([1, 2], render=lambda k: (f"k={k}", f"<svg><text>{k}</text></svg>"))
    assert box.children[0].max == 1 and "k=2" in box.children[1].children[1].value
    with pytest.raises(ValueError):
        explorer([])


def test_record_captures_each_step():
    h = Host(pages=1024)
    h.create_domain(1, pages=4)
    p = new_pool(h, 1)

    def putter(i):
        return lambda host: host.do_tmem_op(1, TmemOp(cmd=abi.TMEM_PUT_PAGE, pool_id=p,
                                                      oid=(7, 0, 0), index=i, page=page(i)))

    def getter(host):
        return host.do_tmem_op(1, TmemOp(cmd=abi.TMEM_GET_PAGE, pool_id=p, oid=(7, 0, 0),
                                         index=0, page=bytearray(4096)))
    states = record(h, [("put 0", putter(0)), ("put 1", putter(1)), ("get 0", getter),
                        ("get 0 again", getter)])
    assert [c for c, _ in states] == ["initial state", "put 0 → 1", "put 1 → 1",
                                      "get 0 → 1", "get 0 again → 0"]
    pics = [g.source for _, g in states]
    assert "c1p0o7.0.0i0" not in pics[0] and "c1p0o7.0.0i0" in pics[1]
    assert "c1p0o7.0.0i1" in pics[2] and "c1p0o7.0.0i0" not in pics[3]  # private get: gone
    assert pics[3] == pics[4]
    states = record(h, [("flush", lambda host: None)], picture=lru, initial=None)
    assert len(states) == 1 and states[0][0] == "flush"


# --- rendering and import hygiene -----------------------------------------------------------
def test_pictures_render_with_dot():
    h = small_host()
    t = RBTree()
    for k in range(6):
        t.insert(k)
    for g in (web(h), lru(h, show_persistent=True), frame_map(h), rbtree(t, nil=True),
              radix(h.clients[1].pools[0].find((7, 0, 0)).tree)):
        svg = to_svg(g)
        assert svg.startswith("<svg") and svg.rstrip().endswith("</svg>")
        assert "<?xml" not in svg and "<!DOCTYPE" not in svg
        assert 'size="7.5' in g.source or "size=\"7.5" in g.source


def test_core_does_not_import_viz():
    code = ("import sys, tmemref; from tmemref import Host; Host(pages=512); "
            "bad = [m for m in ('graphviz', 'ipywidgets', 'matplotlib', 'tmemref.viz') "
            "if m in sys.modules]; print(bad); sys.exit(1 if bad else 0)")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert r.returncode == 0, r.stdout + r.stderr
