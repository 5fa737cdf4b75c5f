"""Tests for tmemref.sim.trees: radix shapes, rb depths, the tallest rb-tree, case search.

Expected values are worked out by hand from the structures' definitions (6 index bits per
radix level; red-black properties 1-7), never read off the code under test. Where a value is
too big to work out, two independent computations are compared (the radix formula against the
real tree; the tallest-tree builder against brute force over every colouring of every shape).
"""
import itertools
import re

import numpy as np
import pytest

from tmemref.sim import trees as M
from tmemref.ds import radix, rbtree
from tmemref.ds.radix import RadixTree
from tmemref.ds.rbtree import RBNode, RBTree
from tmemref.errors import InvariantError
from tmemref.host.alloc import SIZEOF

# -- radix: height and node count ----------------------------------------------------------------


@pytest.mark.parametrize("index, height", [
    (0, 0),                      # a lone index 0 is a direct root
    (1, 1), (63, 1),             # one node of 64 slots
    (64, 2), (4095, 2),          # 64 * 64 = 4096
    (4096, 3), (64**3 - 1, 3),
    (64**3, 4), (64**4, 5),
    (2**30 - 1, 5), (2**30, 6),  # 64**5 = 2**30
    (2**32 - 1, 6),              # 6 levels * 6 bits = 36 >= 32
])
def test_radix_height(index, height):
    assert M.radix_height(index) == height


def test_radix_height_rejects_non_u32():
    with pytest.raises(ValueError):
        M.radix_height(2**32)
    with pytest.raises(ValueError):
        M.radix_height(-1)


@pytest.mark.parametrize("indices, shape", [
    ([], (0, 0)),
    ([0], (0, 0)),                        # direct root: no node
    ([1], (1, 1)),
    ([64], (2, 2)),                       # root + the leaf covering 64..127
    (range(64), (1, 1)),                  # one full leaf
    (range(65), (2, 3)),                  # root + leaves 0..63 and 64..127
    ([0, 4096], (3, 5)),                  # root, two level-2 nodes, two leaves
    (range(4096), (2, 65)),               # 64 full leaves + root
    (range(4097), (3, 68)),               # 65 leaves, 2 level-2 nodes, root
    (range(64**3), (3, 4161)),            # 4096 + 64 + 1 (1 GiB file)
    ([2**32 - 1], (6, 6)),                # one path from root to leaf
    ([0, 2**32 - 1], (6, 11)),            # two paths sharing only the root
    # 64 indices 2**26 apart: height 6; the level-5 nodes (shift 30) number 64 / 16 = 4,
    # every lower level has 64 distinct prefixes: 4 * 64 + 4 + 1
    ([i * 2**26 for i in range(64)], (6, 261)),
])
def test_radix_shape_by_hand(indices, shape):
    assert M.radix_shape(indices) == shape


def test_radix_shape_ignores_order_and_duplicates():
    assert M.radix_shape([4096, 0, 4096, 0]) == M.radix_shape([0, 4096])


@pytest.mark.parametrize("seed", range(6))
def test_radix_shape_agrees_with_the_real_tree(seed):
    rng = np.random.default_rng(seed)
    spans = [64, 4096, 2**18, 2**24, 2**32]
    indices = rng.integers(0, spans[seed % len(spans)], size=int(rng.integers(1, 300)),
                           dtype=np.uint64)
    indices = list(dict.fromkeys(indices.tolist()))
    t = M.build_radix(indices)
    t.check()
    assert (t.height, t.node_count) == M.radix_shape(indices)
    assert len(t) == len(indices)


@pytest.mark.parametrize("kind", M.INDEX_KINDS)
def test_index_sets_agree_with_the_real_tree(kind):
    ix = M.index_set(kind, 300, seed=3)
    t = M.build_radix(ix)
    t.check()
    assert (t.height, t.node_count) == M.radix_shape(ix)


def test_build_radix_rejects_duplicates():
    with pytest.raises(ValueError):
        M.build_radix([5, 5])


def test_index_sets():
    dense = M.index_set("dense", 100)
    assert dense.tolist() == list(range(100))
    sparse = M.index_set("sparse", 1000, seed=1)
    assert len(set(sparse.tolist())) == 1000 and sparse.max() < 2**32
    assert sparse.tolist() == sorted(sparse.tolist())
    assert sparse.tolist() == M.index_set("sparse", 1000, seed=1).tolist()
    assert sparse.tolist() != M.index_set("sparse", 1000, seed=2).tolist()
    skewed = M.index_set("skewed", 100, seed=1, huge=3)
    assert skewed[:97].tolist() == list(range(97))
    assert len(set(skewed.tolist())) == 100
    assert all(2**31 <= v < 2**32 for v in skewed[97:].tolist())
    # A skewed set is as tall as a tree gets. At height 6 the dense part 0..96 costs 2 leaves,
    # one node on each of levels 2..5 and the root. Below the root a far index v >= 2**31 sits
    # under the level-5 node v >> 30 (2 or 3: the root digit has only 2 bits) and, if the far
    # indices differ in v >> 24 (checked), on paths of their own on levels 1..4.
    far = skewed[97:].tolist()
    assert len({v >> 24 for v in far}) == 3
    h, nodes = M.radix_shape(skewed)
    assert h == 6
    assert nodes == (2 + 4 + 1) + 3 * 4 + len({v >> 30 for v in far})
    with pytest.raises(ValueError):
        M.index_set("lumpy", 3)


def test_metadata_bytes():
    m = M.metadata_bytes(range(64))
    assert m["pages"] == 64 and m["nodes"] == 1
    assert m["total"] == SIZEOF["obj"] + 64 * SIZEOF["pgp"] + SIZEOF["objnode"]
    assert m["per_page"] == m["total"] / 64
    assert M.metadata_bytes([0])["total"] == SIZEOF["obj"] + SIZEOF["pgp"]   # direct root
    assert M.metadata_bytes([])["total"] == 0
    toy = {"obj": 1, "pgp": 10, "objnode": 100}
    assert M.metadata_bytes([0, 4096], toy)["total"] == 1 + 2 * 10 + 5 * 100


def test_dense_metadata_per_page_approaches_pgp_plus_a_node_share():
    # a long dense file: one leaf per 64 pages, plus a few upper nodes
    per_page = M.metadata_bytes(range(64**3))["per_page"]
    floor = SIZEOF["pgp"] + SIZEOF["objnode"] / 64
    assert floor < per_page < floor + 1


# -- red-black: bound, tallest tree, depth -------------------------------------------------------


def test_rb_height_bound():
    assert M.rb_height_bound(0) == 0
    assert M.rb_height_bound(1) == 2          # 2 * log2(2)
    assert M.rb_height_bound(7) == 6          # 2 * log2(8)
    assert M.rb_height_bound(1000) == 19      # 2 * log2(1001) = 19.93


def test_rb_min_nodes_by_hand():
    # height 1: a black root. 2: black root + red child. 3: B-B-r path (root's other child a
    # black leaf): 4. 4: B-r-B-r path: 6. 5: B-B-r-B-r: 10 (worked in the chapter).
    assert [M.rb_min_nodes(h) for h in range(6)] == [0, 1, 2, 4, 6, 10]


def test_rb_min_nodes_closed_form():
    # Alternating black/red along the tall path, perfect black trees hanging off it:
    # height 2k needs 2**(k+1) - 2 nodes, height 2k+1 needs 3 * 2**k - 2.
    for h in range(1, 40):
        k = h // 2
        want = 2 ** (k + 1) - 2 if h % 2 == 0 else 3 * 2**k - 2
        assert M.rb_min_nodes(h) == want, h


def _all_rb_heights(n):
    """Every height a valid red-black tree of n nodes can have: every BST shape, every
    colouring, kept if RBTree.check() accepts it."""
    def shapes(lo, hi):
        if lo == hi:
            yield None
            return
        for root in range(lo, hi):
            for left in shapes(lo, root):
                for right in shapes(root + 1, hi):
                    yield (root, left, right)

    heights = set()
    for shape in shapes(0, n):
        for colours in itertools.product((False, True), repeat=n):
            t = RBTree()

            def build(s, parent):
                if s is None:
                    return None
                x = RBNode(s[0])
                x.red = colours[s[0]]
                x.parent = parent
                x.left = build(s[1], x)
                x.right = build(s[2], x)
                return x
            t.root = build(shape, None)
            t.count = n
            try:
                t.check()
            except InvariantError:
                continue
            heights.add(t.height())
    return heights


@pytest.mark.parametrize("n", range(1, 8))
def test_tallest_rbtree_is_tallest_by_brute_force(n):
    t = M.tallest_rbtree(n)
    t.check()
    assert t.height() == max(_all_rb_heights(n))


@pytest.mark.parametrize("n", [0, 1, 2, 5, 22, 100, 1000, 5000])
def test_tallest_rbtree(n):
    t = M.tallest_rbtree(n)
    t.check()
    assert len(t) == n and [x.key for x in t] == list(range(n))
    h = t.height()
    assert M.rb_min_nodes(h) <= n and (n == 0 or M.rb_min_nodes(h + 1) > n)
    assert h <= M.rb_height_bound(n)


def test_tallest_rbtree_of_1000():
    # rb_min_nodes(17) = 3 * 2**8 - 2 = 766 <= 1000 < rb_min_nodes(18) = 2**10 - 2 = 1022
    assert M.tallest_rbtree(1000).height() == 17


def test_balanced_order_builds_the_perfect_tree():
    assert M.balanced_order(7) == [3, 1, 5, 0, 2, 4, 6]
    assert sorted(M.balanced_order(100)) == list(range(100))
    for k in range(1, 10):
        n = 2**k - 1
        s = M.one_tree_depth(M.balanced_order(n))
        assert s.height == k
        # 2**(d-1) nodes at depth d: sum d * 2**(d-1) = (k-1) * 2**k + 1
        assert s.mean_depth == pytest.approx(((k - 1) * 2**k + 1) / n)


def test_depth_of_nothing():
    assert M.one_tree_depth([]) == M.DepthStats(0, 0, 0, 0.0, 0)
    assert M.bucketed_depth([]).objects == 0


def test_bucketed_depth():
    one_each = M.bucketed_depth(range(256))
    assert (one_each.trees, one_each.height, one_each.mean_depth, one_each.largest) == \
        (256, 1, 1.0, 1)
    two_each = M.bucketed_depth(range(512))          # buckets hold b and b + 256
    assert (two_each.trees, two_each.height, two_each.mean_depth) == (256, 2, 1.5)
    same = [256 * k for k in M.balanced_order(15)]   # all in bucket 0
    assert M.bucketed_depth(same) == M.one_tree_depth(same)
    assert M.bucketed_depth(same).trees == 1
    four = M.bucketed_depth(range(8), buckets=4)     # 4 trees of 2
    assert (four.trees, four.largest, four.height) == (4, 2, 2)
    with pytest.raises(ValueError):
        M.bucketed_depth(range(8), buckets=3)


@pytest.mark.parametrize("kind", M.INODE_KINDS)
def test_inode_numbers(kind):
    a = M.inode_numbers(kind, 2000, seed=5)
    assert a.dtype == np.uint64 and len(a) == 2000 and len(set(a.tolist())) == 2000
    assert a.tolist() == M.inode_numbers(kind, 2000, seed=5).tolist()
    assert a.tolist() != M.inode_numbers(kind, 2000, seed=6).tolist()
    assert len(M.inode_numbers(kind, 0)) == 0


def test_inode_kinds_have_their_shape():
    clumpy = M.inode_numbers("clumpy", 5000, seed=1, run=50).tolist()
    breaks = sum(1 for a, b in zip(clumpy, clumpy[1:]) if b != a + 1)
    assert breaks < 5000 / 10           # runs averaging about 50
    strided = M.inode_numbers("strided", 300).tolist()
    assert {v & 255 for v in strided} == {strided[0] & 255}
    rand = M.inode_numbers("random", 5000, seed=1)
    assert rand.max() < 2**32
    assert len({v & 255 for v in rand.tolist()}) == 256
    with pytest.raises(ValueError):
        M.inode_numbers("lumpy", 3)


def test_depth_table():
    rows = M.depth_table([64, 512], seed=2)
    assert [(r["kind"], r["n"]) for r in rows] == \
        [(k, n) for k in M.INODE_KINDS for n in (64, 512)]
    for r in rows:
        assert r["one"].objects == r["hashed"].objects == r["n"]
        assert r["hashed"].height <= r["one"].height
        if r["kind"] == "strided":
            assert r["one"] == r["hashed"]
        assert r["one"].height <= M.rb_height_bound(r["n"])


# -- the modules' documentation as data ----------------------------------------------------------


@pytest.mark.parametrize("module", [rbtree, radix])
def test_numbered_invariants(module):
    items = M.numbered_invariants(module.__doc__)
    assert [n for n, _ in items] == list(range(1, 8))
    flat = re.sub(r":[a-z]+:`", "`", " ".join(module.__doc__.split()).replace("``", "`"))
    for _, text in items:
        assert text in flat
        assert "``" not in text and ":class:" not in text


def test_case_constants():
    assert list(M.case_constants(rbtree).values()) == [
        "INSERT_ROOT", "INSERT_RECOLOR", "INSERT_ROTATE_INNER", "INSERT_ROTATE_OUTER",
        "ERASE_SWAP_SUCCESSOR", "ERASE_CHILD_RED", "ERASE_SIBLING_RED",
        "ERASE_SIBLING_BLACK_CHILDREN_BLACK", "ERASE_SIBLING_FAR_CHILD_BLACK",
        "ERASE_SIBLING_FAR_CHILD_RED"]
    for module in (rbtree, radix):
        for case, name in M.case_constants(module).items():
            assert getattr(module, name) == case


@pytest.mark.parametrize("module", [rbtree, radix])
def test_case_docs(module):
    docs = M.case_docs(module)
    assert list(docs) == list(module.CASES)
    for prose, picture in docs.values():
        assert prose and "-->" in picture


# -- corruptions ---------------------------------------------------------------------------------


def test_rb_corruptions_each_break_their_property():
    base = RBTree()
    for k in range(10):
        base.insert(k)
    from tmemref.viz import copy_rbtree
    for prop, _, corrupt in M.rb_corruptions():
        t = copy_rbtree(base)
        t.check()
        corrupt(t)
        with pytest.raises(InvariantError, match=rf"^rbtree invariant {prop}:"):
            t.check()
    base.check()


def test_radix_corruptions_each_break_their_invariant():
    base = M.build_radix(list(range(100)) + [5000])
    from tmemref.viz import copy_radix
    for prop, _, corrupt in M.radix_corruptions():
        t = copy_radix(base)
        t.check()
        corrupt(t)
        with pytest.raises(InvariantError, match=rf"^radix invariant {prop}:"):
            t.check()
    base.check()


# -- case search ---------------------------------------------------------------------------------


def _hits(example):
    t = example.tree()
    t.check()
    seen = []
    t.trace = seen.append
    if example.kind == "rbtree":
        if example.op == "insert":
            t.insert(example.key)
        else:
            t.erase(t.find(example.key))
    else:
        if example.op == "insert":
            assert t.insert(example.key, "x") == 0
        else:
            assert t.delete(example.key) is not None
    t.check()
    return seen


def test_find_rb_cases():
    found = M.find_rb_cases()
    assert list(found) == list(rbtree.CASES)
    for case, ex in found.items():
        assert ex.case == case
        assert case in _hits(ex) and tuple(_hits(ex)) == ex.cases
        assert ex.size == len(ex.tree())
    # smallest trees, by hand: the first insert; parent + grandparent for a rotation; a node
    # with two children; three black nodes for a black sibling with black children; a red
    # sibling needs two black children under it, its black parent and the black leaf erased
    assert found[rbtree.INSERT_ROOT].size == 0
    assert found[rbtree.INSERT_ROTATE_OUTER].size == 2
    assert found[rbtree.INSERT_ROTATE_INNER].size == 2
    assert found[rbtree.INSERT_RECOLOR].size == 3
    assert found[rbtree.ERASE_SWAP_SUCCESSOR].size == 3
    assert found[rbtree.ERASE_SIBLING_BLACK_CHILDREN_BLACK].size == 3
    assert found[rbtree.ERASE_SIBLING_RED].size == 5


def test_find_rb_cases_without_the_drawable_filter():
    # a black node with one red child, erased: two nodes
    ex = M.find_rb_cases(drawable=False)[rbtree.ERASE_CHILD_RED]
    assert ex.size == 2 and ex.op == "erase"


def test_find_radix_cases():
    found = M.find_radix_cases()
    assert list(found) == list(radix.CASES)
    for case, ex in found.items():
        assert case in _hits(ex) and tuple(_hits(ex)) == ex.cases
    assert (found[radix.DIRECT_ROOT].size, found[radix.DIRECT_ROOT].key) == (0, 0)
    # every example but the first leaves a non-empty tree
    for ex in found.values():
        assert ex.op == "insert" or ex.size > 1


def test_replay_rejects_unknown_kind():
    with pytest.raises(ValueError):
        M.replay("btree", [])


# -- ds bug found while writing chapter 4 (reported to the lead) ---------------------------------


def _whole(tree):
    """Every node reachable from the root names its parent correctly."""
    stack = [tree.root] if tree.root is not None else []
    if tree.root is not None and tree.root.parent is not None:
        return False
    while stack:
        x = stack.pop()
        for c in (x.left, x.right):
            if c is not None:
                if c.parent is not x:
                    return False
                stack.append(c)
    return True


def test_rbtree_trace_sees_a_whole_tree_when_a_red_child_replaces_its_parent():
    # rbtree.py: "tree.trace ... is called with the case name *just before* the case changes
    # the tree". Erasing a black node with one red child calls trace(ERASE_CHILD_RED) after the
    # parent's child link already points at the child but before child.parent is updated, so a
    # tracer sees a half-linked tree; viz.case_pictures (which walks parent pointers to number
    # the nodes) then loops forever.
    t = RBTree()
    t.insert(1)
    t.insert(2)                       # 1 black, 2 red right child
    t.insert(0)                       # 1 black root, 0 and 2 red
    t.erase(t.find(0))
    states = []
    t.trace = lambda name: states.append((name, _whole(t)))
    t.erase(t.find(1))                # black root with one red child
    assert states == [(rbtree.ERASE_CHILD_RED, True)]


def _reachable_radix_nodes(tree):
    if tree.height == 0:
        return 0
    count, stack = 0, [(tree.root, tree.height)]
    while stack:
        node, level = stack.pop()
        count += 1
        if level > 1:
            stack.extend((c, level - 1) for c in node.slots if c is not None)
    return count


def test_radix_trace_sees_node_count_before_the_case():
    # radix.py: trace is called "just before the case changes the tree". On the EXTEND path,
    # insert adds every node it will create to node_count before the first trace(EXTEND), so
    # a tracer sees node_count ahead of the nodes in the tree (case_pictures' "about to run:
    # EXTEND" picture of {0} + insert 1 reads "height 0, 1 item, 1 node" with no node drawn).
    t = RadixTree()
    t.insert(0, "a")
    seen = []
    t.trace = lambda name: seen.append((name, t.node_count, _reachable_radix_nodes(t)))
    t.insert(1, "b")
    t.check()
    assert seen == [(radix.EXTEND, 0, 0)]
