"""Measurements and small examples of tmem's two trees (the book's chapter 4).

Nothing here is used by the engine; it answers questions *about* :mod:`tmemref.ds.rbtree` and
:mod:`tmemref.ds.radix` with the real trees, and with numpy where a formula is faster:

========================================  ======================================================
:func:`numbered_invariants`               the numbered list of a module docstring, as data
:func:`case_constants`,                   each named case's constant name, and its own
:func:`case_docs`                         description and ASCII picture
:func:`rb_corruptions`,                   ways to break one numbered property of a tree copy,
:func:`radix_corruptions`                 so ``check()`` can be seen catching each one
:func:`find_rb_cases`,                    a smallest tree and operation that hits each named
:func:`find_radix_cases`                  case (:class:`CaseExample`), found by search
:func:`rb_min_nodes`,                     the tallest red-black tree of ``n`` nodes, built
:func:`tallest_rbtree`                    node by node
:func:`inode_numbers`,                    rb-tree depth of ``n`` objects in one tree versus
:func:`one_tree_depth`,                   spread over 256 hashed buckets (:class:`DepthStats`)
:func:`bucketed_depth`, :func:`depth_table`
:func:`index_set`, :func:`radix_height`,  radix-tree height and node count of an index set
:func:`radix_shape`, :func:`build_radix`  (numpy formula, and the real tree to check it)
:func:`metadata_bytes`                    what an object's metadata costs per page
========================================  ======================================================

Every random choice comes from ``numpy.random.default_rng(seed)``; results are deterministic.

The radix formula: a tree of height ``h`` has one node per level ``l`` (1 = bottom .. ``h`` =
root) for every distinct ``index >> (6 * l)`` of its indices, and ``h`` is the least height
whose range holds the largest index (0 for an empty tree or one holding only index 0).

>>> radix_shape([0, 4096])            # height 3: root, two level-2 nodes, two leaves
(3, 5)
>>> radix_shape(range(64)), radix_shape(range(65))
((1, 1), (2, 3))
"""
from __future__ import annotations

import inspect
import math
import re
from collections import deque
from dataclasses import dataclass
from functools import lru_cache

import numpy as np

from ..ds import radix as _radix
from ..ds import rbtree as _rbtree
from ..ds.radix import RADIX_TREE_MAP_SHIFT, RadixNode, RadixTree
from ..ds.rbtree import RBNode, RBTree

__all__ = [
    "numbered_invariants",
    "case_constants",
    "case_docs",
    "rb_corruptions",
    "radix_corruptions",
    "CaseExample",
    "replay",
    "find_rb_cases",
    "find_radix_cases",
    "rb_height_bound",
    "rb_min_nodes",
    "tallest_rbtree",
    "balanced_order",
    "INODE_KINDS",
    "inode_numbers",
    "DepthStats",
    "tree_depths",
    "one_tree_depth",
    "bucketed_depth",
    "depth_table",
    "INDEX_KINDS",
    "index_set",
    "radix_height",
    "radix_shape",
    "build_radix",
    "RB_NODE_BYTES",
    "metadata_bytes",
]

# ------------------------------------------------------------------------------------------------
# The modules' own documentation, as data
# ------------------------------------------------------------------------------------------------

_ITEM = re.compile(r"^(\d+)\.\s+(.*)$")
_ROLE = re.compile(r":[a-z]+:(`[^`]+`)")


def numbered_invariants(doc: str) -> list[tuple[int, str]]:
    """The first numbered list of ``doc`` as ``[(number, text), ...]``. O(len(doc)).

    Continuation lines (indented) are joined to their item with one space; reStructuredText
    inline literals (double backquotes) and roles (``:class:`X```) become Markdown literals.

    >>> numbered_invariants('''Intro:
    ...
    ... 1. One ``x``
    ...    two.
    ... 2. Three.
    ...
    ... After.''')
    [(1, 'One `x` two.'), (2, 'Three.')]
    """
    items: list[list] = []
    indent = None
    for line in doc.splitlines():
        stripped = line.strip()
        lead = len(line) - len(line.lstrip())
        m = _ITEM.match(stripped)
        if m and (indent is None or lead == indent):
            indent = lead
            items.append([int(m.group(1)), m.group(2).strip()])
        elif items and stripped and lead > indent:
            items[-1][1] += " " + stripped
        elif items:
            break
    return [(n, _ROLE.sub(r"\1", text).replace("``", "`")) for n, text in items]


def _split_literal(text: str) -> tuple[str, str]:
    """Split RST text at its ``::`` literal block: ``(prose, picture)`` (picture dedented)."""
    if "::" not in text:
        return text.strip().replace("``", "`"), ""
    prose, _, block = text.partition("::")
    lines = block.strip("\n").splitlines()
    pad = min((len(x) - len(x.lstrip()) for x in lines if x.strip()), default=0)
    picture = "\n".join(x[pad:].rstrip() for x in lines).strip("\n")
    prose = " ".join(prose.split()).replace("``", "`")
    return (prose + ":" if prose else prose), picture


def case_constants(module) -> dict[str, str]:
    """``{case: constant name}`` for every case of ``module.CASES``, in that order. O(cases).

    >>> case_constants(_radix)[_radix.SHRINK]
    'SHRINK'
    """
    names = {getattr(module, n): n for n in module.__all__
             if isinstance(getattr(module, n), str) and getattr(module, n) in module.CASES}
    return {case: names[case] for case in module.CASES}


def case_docs(module) -> dict[str, tuple[str, str]]:
    """Each named case of ``module`` (``rbtree`` or ``radix``): ``{case: (prose, picture)}``.

    rbtree documents a case in the ``#:`` comment above its constant; radix in its module
    docstring, as a ````NAME`` -- text::`` paragraph. ``picture`` is the ASCII drawing (``""``
    if none). Keys follow ``module.CASES`` order. O(size of the source).

    >>> docs = case_docs(_radix)
    >>> docs[_radix.DIRECT_ROOT][0]
    'index 0 goes into an empty tree: stored in the root, no node:'
    >>> "root -> item0" in docs[_radix.DIRECT_ROOT][1]
    True
    """
    names = case_constants(module)
    source = inspect.getsource(module).splitlines()
    doc = module.__doc__ or ""
    out = {}
    for case in module.CASES:
        name = names[case]
        text = ""
        for i, line in enumerate(source):
            if line.startswith(f"{name} = "):
                j = i
                while j > 0 and source[j - 1].startswith("#:"):
                    j -= 1
                text = "\n".join(x[3:] if x.startswith("#: ") else x[2:] for x in source[j:i])
                break
        if not text:
            m = re.search(rf"``{name}`` -- (.*?)(?=\n``[A-Z_]+`` -- |\n\S[^\n]*\n---)", doc, re.S)
            if m:
                text = m.group(1)
        if not text:
            raise ValueError(f"no documentation found for case {name}")
        out[case] = _split_literal(text)
    return out


# ------------------------------------------------------------------------------------------------
# Corruptions: one broken property each, for check() to catch
# ------------------------------------------------------------------------------------------------


def _rb_nodes(tree):
    """Every node of ``tree``, breadth first, following child links only."""
    out, queue = [], deque([tree.root] if tree.root is not None else [])
    while queue:
        x = queue.popleft()
        out.append(x)
        queue.extend(c for c in (x.left, x.right) if c is not None)
    return out


def _first(nodes, pred, what):
    for x in nodes:
        if pred(x):
            return x
    raise ValueError(f"the tree has no {what} to corrupt")


def rb_corruptions():
    """``[(property, description, corrupt), ...]``: ``corrupt(tree)`` breaks exactly that one
    property of a valid red-black tree in place (use a copy). Each needs a tree with a red
    leaf, a black node with a red child below the root, and a leaf two levels down, e.g. keys
    0..9 inserted in order; ``ValueError`` if the tree lacks the node it needs.

    >>> t = RBTree(); _ = [t.insert(k) for k in range(10)]
    >>> [p for p, _, _ in rb_corruptions()]
    [1, 2, 3, 4, 5, 6, 7]
    """

    def bad_colour(t):
        _first(_rb_nodes(t), lambda x: x is not t.root, "non-root node").red = "pink"

    def red_root(t):
        t.root.red = True

    def red_red(t):
        x = _first(_rb_nodes(t), lambda x: x is not t.root and not x.red and any(
            c is not None and c.red for c in (x.left, x.right)), "black node with a red child")
        x.red = True

    def black_count(t):
        x = _first(_rb_nodes(t), lambda x: x.red and x.left is None and x.right is None,
                   "red leaf")
        x.red = False

    def swap_keys(t):
        lo, hi = t.first(), t.last()
        lo.key, hi.key = hi.key, lo.key

    def wrong_parent(t):
        x = _first(_rb_nodes(t), lambda x: x.parent is not None and x.parent is not t.root,
                   "node below the root's children")
        x.parent = t.root

    def miscount(t):
        t.count += 1

    return [
        (1, "a node's colour is neither red nor black", bad_colour),
        (2, "the root painted red", red_root),
        (3, "a black node with a red child painted red", red_red),
        (4, "a red leaf painted black", black_count),
        (5, "the smallest and largest keys swapped", swap_keys),
        (6, "a node's parent pointer aimed at the root", wrong_parent),
        (7, "the node count one too high", miscount),
    ]


def _radix_nodes(tree):
    """``[(node, level), ...]`` breadth first (level 1 = bottom); empty below height 1."""
    if tree.height == 0:
        return []
    out, queue = [], deque([(tree.root, tree.height)])
    while queue:
        node, level = queue.popleft()
        out.append((node, level))
        if level > 1:
            queue.extend((c, level - 1) for c in node.slots if c is not None)
    return out


def radix_corruptions():
    """``[(invariant, description, corrupt), ...]`` for a radix tree, as :func:`rb_corruptions`.

    Each needs a tree of height 2..5 whose bottom nodes hold at least two items, e.g. indices
    ``0..99`` and ``5000``.

    >>> [p for p, _, _ in radix_corruptions()]
    [1, 2, 3, 4, 5, 6, 7]
    """

    def leaf(t, want=1):
        return _first([n for n, lv in _radix_nodes(t) if lv == 1],
                      lambda n: n.count >= want, "bottom node")

    def miscount_node(t):
        leaf(t).count += 1

    def empty_node(t):
        n = leaf(t)
        t.count -= n.count
        n.slots = [None] * len(n.slots)
        n.count = 0

    def node_count(t):
        t.node_count += 1

    def item_count(t):
        t.count += 1

    def item_high(t):
        free = t.root.slots.index(None, 1)
        t.root.slots[free] = "item"
        t.root.count += 1
        t.count += 1

    def extra_level(t):
        top = RadixNode()
        top.slots[0] = t.root
        top.count = 1
        t.root = top
        t.height += 1
        t.node_count += 1

    def zero_height(t):
        t.height = 0

    return [
        (1, "a node's count one too high", miscount_node),
        (2, "a bottom node emptied but left in the tree", empty_node),
        (3, "node_count one too high", node_count),
        (4, "the item count one too high", item_count),
        (5, "an item stored in a slot of the root node (not the bottom level)", item_high),
        (6, "an extra root node using only slot 0", extra_level),
        (7, "height 0 with a node as the root", zero_height),
    ]


# ------------------------------------------------------------------------------------------------
# Smallest examples of each named case, by search
# ------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class CaseExample:
    """A small tree and one operation on it that hits ``case``.

    ``setup``: the operations that build the tree from empty, ``("insert", key)`` or
    ``("erase", key)``; ``op``/``key``: the operation that hits the case (``"insert"`` or
    ``"erase"``, as :func:`tmemref.viz.case_pictures` takes them); ``cases``: every case that
    operation hits, in order; ``size``: nodes (rb) or items (radix) before it.
    """
    case: str
    kind: str          # "rbtree" or "radix"
    setup: tuple       # ((op, key), ...) building the tree
    op: str            # "insert" or "erase"
    key: int           # the key (rb) or index (radix) of the operation
    cases: tuple       # every case name the operation hits, in order
    size: int          # nodes or items before the operation

    def tree(self):
        """A fresh tree built by ``setup``. O(len(setup) log n)."""
        return replay(self.kind, self.setup)

    def describe(self) -> str:
        """``"insert 3 on the tree built by insert 1, insert 2"``."""
        if not self.setup:
            return f"{self.op} {self.key} into an empty tree"
        built = ", ".join(f"{o} {k}" for o, k in self.setup)
        return f"{self.op} {self.key} on the tree built by {built}"


def replay(kind: str, ops):
    """Build a tree of ``kind`` (``"rbtree"``/``"radix"``) from empty by ``ops``. O(ops log n).

    Radix items are ``"item <index>"``.

    >>> [n.key for n in replay("rbtree", [("insert", 2), ("insert", 1), ("erase", 2)])]
    [1]
    >>> replay("radix", [("insert", 64)]).height
    2
    """
    if kind == "rbtree":
        t = RBTree()
        for op, k in ops:
            if op == "insert":
                t.insert(k)
            else:
                t.erase(t.find(k))
        return t
    if kind == "radix":
        t = RadixTree()
        for op, k in ops:
            if op == "insert":
                t.insert(k, f"item {k}")
            else:
                t.delete(k)
        return t
    raise ValueError(f"kind must be 'rbtree' or 'radix', not {kind!r}")


def _rb_whole(tree) -> bool:
    """Every node reachable from the root names its parent correctly (the tree can be drawn)."""
    if tree.root is not None and tree.root.parent is not None:
        return False
    for x in _rb_nodes(tree):
        for c in (x.left, x.right):
            if c is not None and c.parent is not x:
                return False
    return True


def _rb_signature(node):
    if node is None:
        return None
    return (node.key, node.red, _rb_signature(node.left), _rb_signature(node.right))


def _traced(kind, setup, op, key, whole):
    """Replay ``setup``, then run ``op`` on ``key`` with a tracer; ``(cases, ok)``, where ``ok``
    says the tree was whole (``whole(tree)``) at every trace call."""
    t = replay(kind, setup)
    cases, ok = [], [True]

    def trace(name):
        cases.append(name)
        if whole is not None and not whole(t):
            ok[0] = False
    t.trace = trace
    if kind == "rbtree":
        if op == "insert":
            t.insert(key)
        else:
            t.erase(t.find(key))
    else:
        if op == "insert":
            t.insert(key, f"item {key}")
        else:
            t.delete(key)
    t.trace = None
    t.check()
    return tuple(cases), ok[0]


def _pick(found, kind, setup, op, key, cases, size):
    for case in set(cases):
        ex = CaseExample(case, kind, tuple(setup), op, key, cases, size)
        rank = (size, len(cases), len(setup), setup, op, key)
        if case not in found or rank < found[case][0]:
            found[case] = (rank, ex)


def find_rb_cases(keys=range(1, 8), max_ops: int = 8, drawable: bool = True):
    """``{case: CaseExample}`` for every name in ``rbtree.CASES``: a smallest tree, then fewest
    cases hit, then shortest setup. Searches breadth first over the trees reachable from empty
    by at most ``max_ops`` inserts/erases of ``keys`` (each tree once, by its shape and colours),
    trying every insert and erase on each. O(trees × len(keys) × max_ops log n).

    With ``drawable`` an operation counts only if the tree is whole (every child's parent
    pointer right) at every trace call, so that a picture drawn at that moment (which walks
    parent pointers) is right. ``ValueError`` if some case is not found.

    >>> ex = find_rb_cases()[_rbtree.INSERT_ROTATE_OUTER]
    >>> ex.size, ex.op, ex.cases == (_rbtree.INSERT_ROTATE_OUTER,)
    (2, 'insert', True)
    """
    keys = list(keys)
    found: dict = {}
    seen = {None}
    frontier = [()]
    for depth in range(max_ops + 1):
        nxt = []
        for setup in frontier:
            t = replay("rbtree", setup)
            present = sorted(n.key for n in t)
            for op, key in [("insert", k) for k in keys if k not in present] + \
                           [("erase", k) for k in present]:
                cases, ok = _traced("rbtree", setup, op, key, _rb_whole if drawable else None)
                if ok and cases:
                    _pick(found, "rbtree", setup, op, key, cases, len(present))
                if depth < max_ops:
                    after = setup + ((op, key),)
                    sig = _rb_signature(replay("rbtree", after).root)
                    if sig not in seen:
                        seen.add(sig)
                        nxt.append(after)
        frontier = nxt
    missing = [c for c in _rbtree.CASES if c not in found]
    if missing:
        raise ValueError(f"no example found for {missing}")
    return {c: found[c][1] for c in _rbtree.CASES}


def find_radix_cases(indices=(0, 1, 63, 64, 128, 4096)):
    """``{case: CaseExample}`` for every name in ``radix.CASES``, searching every subset of
    ``indices`` (built by ascending inserts) and every insert or delete on it. Prefers an
    operation that leaves a non-empty tree, then the smallest tree, then fewest cases hit.
    O(2**len(indices) × len(indices)). ``ValueError`` if some case is not found.

    >>> ex = find_radix_cases()[_radix.EXTEND]
    >>> ex.setup, ex.op, ex.key
    ((('insert', 0),), 'insert', 1)
    """
    indices = sorted(indices)
    found: dict = {}
    for mask in range(1 << len(indices)):
        present = [i for b, i in enumerate(indices) if mask >> b & 1]
        setup = tuple(("insert", i) for i in present)
        for op, key in [("insert", i) for i in indices if i not in present] + \
                       [("erase", i) for i in present]:
            cases, _ = _traced("radix", setup, op, key, None)
            if not cases:
                continue
            empty_after = op == "erase" and len(present) == 1
            for case in set(cases):
                ex = CaseExample(case, "radix", setup, op, key, cases, len(present))
                rank = (empty_after, len(present), len(cases), present, op, key)
                if case not in found or rank < found[case][0]:
                    found[case] = (rank, ex)
    missing = [c for c in _radix.CASES if c not in found]
    if missing:
        raise ValueError(f"no example found for {missing}")
    return {c: found[c][1] for c in _radix.CASES}


# ------------------------------------------------------------------------------------------------
# Red-black height: the bound and the tallest tree
# ------------------------------------------------------------------------------------------------


def rb_height_bound(n: int) -> int:
    """The largest whole height the bound ``2 * log2(n + 1)`` allows for ``n`` nodes. O(1).

    >>> rb_height_bound(0), rb_height_bound(1), rb_height_bound(3), rb_height_bound(1000)
    (0, 2, 4, 19)
    """
    return math.floor(2 * math.log2(n + 1))


_INF = float("inf")


@lru_cache(maxsize=None)
def _f(h: int, b: int, red: bool):
    """Fewest nodes of a subtree of height exactly ``h`` (nodes on its longest path), black
    height ``b`` (black nodes on each path down to an absent child, the root included) and a
    root of the given colour; ``h = 0`` is the absent child (black, ``b = 0``)."""
    if h == 0:
        return 0 if (b == 0 and not red) else _INF
    if red:  # children black (or absent), same black height
        return 1 + _f(h - 1, b, False) + _g(h - 1, b, False)
    if b == 0:
        return _INF
    return 1 + min(_f(h - 1, b - 1, False), _f(h - 1, b - 1, True)) + \
        min(_g(h - 1, b - 1, False), _g(h - 1, b - 1, True))


@lru_cache(maxsize=None)
def _g(h: int, b: int, red: bool):
    """Fewest nodes over heights ``0..h`` (same meaning as :func:`_f`)."""
    return min(_f(k, b, red) for k in range(h + 1))


def rb_min_nodes(height: int) -> int:
    """Fewest nodes of a red-black tree (black root) whose longest root-to-leaf path has
    ``height`` nodes. A dynamic programme over (height, black height, colour). O(height^3).

    >>> [rb_min_nodes(h) for h in range(6)]
    [0, 1, 2, 4, 6, 10]
    """
    if height == 0:
        return 0
    return int(min(_f(height, b, False) for b in range(1, height + 1)))


def _argmin_child(h: int, b: int, red_allowed: bool, exact: bool):
    """``(height, colour)`` of the cheapest child with black height ``b``: of height exactly
    ``h`` if ``exact``, else of any height ``0..h``."""
    best = None
    for hh in ([h] if exact else range(h + 1)):
        for red in ((False, True) if red_allowed else (False,)):
            cost = _f(hh, b, red)
            if best is None or cost < best[0]:
                best = (cost, hh, red)
    return best[1], best[2]


def _build_min(h: int, b: int, red: bool):
    """The cheapest subtree of :func:`_f`'s shape, keys unset; its tall child on the left."""
    if h == 0:
        return None
    node = RBNode(None)
    node.red = red
    cb = b if red else b - 1
    lh, lred = _argmin_child(h - 1, cb, not red, True)
    rh, rred = _argmin_child(h - 1, cb, not red, False)
    node.left = _build_min(lh, cb, lred)
    node.right = _build_min(rh, cb, rred)
    for c in (node.left, node.right):
        if c is not None:
            c.parent = node
    return node


def tallest_rbtree(n: int) -> RBTree:
    """A valid red-black tree of ``n`` nodes (keys ``0..n-1``) as tall as any can be.

    It takes the tallest height ``H`` with ``rb_min_nodes(H) <= n``, builds that smallest tree
    node by node (its longest path on the root's left, alternating black and red as far as the
    black heights allow), numbers it in order, then inserts the remaining keys ``m..n-1`` with
    :meth:`RBTree.insert`. Those go down the right spine, where only left rotations happen,
    which never lift the left subtree, so the height stays ``H``. O(n log n).

    >>> t = tallest_rbtree(6); t.check(); t.height(), len(t)
    (4, 6)
    """
    if n < 0:
        raise ValueError("n must be >= 0")
    h = 0
    while rb_min_nodes(h + 1) <= n:
        h += 1
    tree = RBTree()
    if h == 0:
        return tree
    b = min(range(1, h + 1), key=lambda bb: _f(h, bb, False))
    tree.root = _build_min(h, b, False)
    i = 0
    for x in _inorder(tree.root):
        x.key = i
        i += 1
    tree.count = i
    for k in range(i, n):
        tree.insert(k)
    return tree


def _inorder(root):
    stack, x = [], root
    while stack or x is not None:
        while x is not None:
            stack.append(x)
            x = x.left
        x = stack.pop()
        yield x
        x = x.right


def balanced_order(n: int) -> list[int]:
    """Keys ``0..n-1`` in the breadth-first order of a balanced search tree (median first).

    Inserted in this order into an :class:`RBTree` with ``n = 2**k - 1`` they give the perfect
    tree of height ``k``: every red parent then has a red sibling, so insert only recolours.
    O(n).

    >>> balanced_order(7)
    [3, 1, 5, 0, 2, 4, 6]
    """
    out, queue = [], deque([(0, n)])
    while queue:
        lo, hi = queue.popleft()
        if lo >= hi:
            continue
        mid = (lo + hi) // 2
        out.append(mid)
        queue.append((lo, mid))
        queue.append((mid + 1, hi))
    return out


# ------------------------------------------------------------------------------------------------
# Objects: one tree or 256 hashed trees
# ------------------------------------------------------------------------------------------------

#: Kinds of inode-number sets :func:`inode_numbers` makes.
INODE_KINDS = ("random", "clumpy", "strided")


def inode_numbers(kind: str, n: int, seed: int = 0, *, run: int = 64) -> np.ndarray:
    """``n`` distinct inode numbers (uint64) in the order a guest would create the objects.

    * ``"random"``: uniform over ``0 .. 2**32 - 1``, in random order;
    * ``"clumpy"``: runs of consecutive numbers (lengths 1 .. ``2 * run``, mean about ``run``),
      each run starting at a random number and created in increasing order, like files made
      together in one directory;
    * ``"strided"``: ``256 * (base + i)``, in increasing order: every number has the same low
      byte, so all land in one of tmem's 256 buckets (the hash's worst case).

    O(n).

    >>> inode_numbers("clumpy", 5, run=8).tolist() == sorted(inode_numbers("clumpy", 5, run=8).tolist())
    True
    >>> sorted(set((inode_numbers("strided", 100) & 255).tolist()))
    [0]
    """
    if n < 0:
        raise ValueError("n must be >= 0")
    rng = np.random.default_rng(seed)
    if kind == "strided":
        base = int(rng.integers(0, 2**20))
        return (np.arange(n, dtype=np.uint64) + np.uint64(base)) * np.uint64(256)
    chunks, total, seen = [], 0, set()
    while total < n:
        if kind == "random":
            cand = rng.integers(0, 2**32, size=max(2 * (n - total), 16), dtype=np.uint64)
        elif kind == "clumpy":
            length = int(rng.integers(1, 2 * run + 1))
            start = int(rng.integers(0, 2**32 - length))
            cand = np.arange(start, start + length, dtype=np.uint64)
        else:
            raise ValueError(f"kind must be one of {INODE_KINDS}, not {kind!r}")
        fresh = [v for v in cand.tolist() if v not in seen and not seen.add(v)]
        chunks.append(np.array(fresh[: n - total], dtype=np.uint64))
        total += len(chunks[-1])
    return np.concatenate(chunks) if chunks else np.zeros(0, dtype=np.uint64)


@dataclass(frozen=True)
class DepthStats:
    """Depth of a set of objects kept in one or more red-black trees.

    Depths count nodes from a tree's root (the root is at depth 1), so ``mean_depth`` is the
    average number of nodes a successful find visits and ``height`` the worst case.
    """
    objects: int        # objects in all trees together
    trees: int          # non-empty trees
    height: int         # longest root-to-leaf path over all trees (nodes); 0 if no objects
    mean_depth: float   # average depth of an object (nodes visited by a find); 0.0 if none
    largest: int        # objects in the fullest tree


def tree_depths(tree) -> np.ndarray:
    """Depth (root = 1) of every node of an :class:`RBTree`, in breadth-first order. O(n).

    >>> t = RBTree(); _ = [t.insert(k) for k in balanced_order(7)]
    >>> sorted(tree_depths(t).tolist())
    [1, 2, 2, 3, 3, 3, 3]
    """
    out = []
    stack = [(tree.root, 1)] if tree.root is not None else []
    while stack:
        x, d = stack.pop()
        out.append(d)
        if x.left is not None:
            stack.append((x.left, d + 1))
        if x.right is not None:
            stack.append((x.right, d + 1))
    return np.array(out, dtype=np.int64)


def _stats(trees) -> DepthStats:
    depths = [tree_depths(t) for t in trees if len(t)]
    if not depths:
        return DepthStats(0, 0, 0, 0.0, 0)
    allv = np.concatenate(depths)
    return DepthStats(int(allv.size), len(depths), int(allv.max()), float(allv.mean()),
                      max(len(d) for d in depths))


def one_tree_depth(keys) -> DepthStats:
    """Insert ``keys`` (distinct, in the given order) into one :class:`RBTree`; its depths.
    O(n log n).

    >>> s = one_tree_depth(balanced_order(15)); (s.height, s.mean_depth * 15)
    (4, 49.0)
    """
    t = RBTree()
    for k in np.asarray(keys).tolist():
        t.insert(k)
    return _stats([t])


def bucketed_depth(keys, buckets: int = 256) -> DepthStats:
    """Insert ``keys`` into ``buckets`` trees, choosing ``key & (buckets - 1)`` as tmem's
    ``oid_hash`` does for an object ``(key, 0, 0)``; each tree gets its keys in the given
    order. ``buckets`` must be a power of two. O(n log(n / buckets)).

    >>> s = bucketed_depth(range(512)); (s.trees, s.largest, s.height)
    (256, 2, 2)
    """
    if buckets <= 0 or buckets & (buckets - 1):
        raise ValueError("buckets must be a power of two")
    keys = np.asarray(keys, dtype=np.uint64)
    which = (keys & np.uint64(buckets - 1)).astype(np.int64)
    order = np.argsort(which, kind="stable")
    bounds = np.searchsorted(which[order], np.arange(buckets + 1))
    trees = []
    for b in range(buckets):
        t = RBTree()
        for k in keys[order[bounds[b]:bounds[b + 1]]].tolist():
            t.insert(k)
        trees.append(t)
    return _stats(trees)


def depth_table(sizes, kinds=INODE_KINDS, seed: int = 0, buckets: int = 256) -> list[dict]:
    """One row per (kind, n): ``{"kind", "n", "one": DepthStats, "hashed": DepthStats}``, the
    same ``inode_numbers(kind, n, seed)`` in one tree and in ``buckets`` hashed trees.
    O(sum(sizes) log n) per kind.
    """
    rows = []
    for kind in kinds:
        for n in sizes:
            keys = inode_numbers(kind, int(n), seed)
            rows.append({"kind": kind, "n": int(n), "one": one_tree_depth(keys),
                         "hashed": bucketed_depth(keys, buckets)})
    return rows


# ------------------------------------------------------------------------------------------------
# Page indices: radix-tree shape and metadata
# ------------------------------------------------------------------------------------------------

def _distinct(a) -> np.ndarray:
    """Sorted distinct values of a uint64 array (sort + compare: ``np.unique`` is far slower
    on large uint64 arrays with numpy 2.x). O(n log n).

    >>> _distinct(np.array([5, 1, 5, 0], dtype=np.uint64)).tolist()
    [0, 1, 5]
    """
    s = np.sort(np.asarray(a, dtype=np.uint64))
    if s.size < 2:
        return s
    keep = np.empty(s.size, dtype=bool)
    keep[0] = True
    np.not_equal(s[1:], s[:-1], out=keep[1:])
    return s[keep]


def _count_distinct_sorted(s: np.ndarray) -> int:
    """Distinct values of an already sorted array. O(n)."""
    return int(s.size and 1 + np.count_nonzero(s[1:] != s[:-1]))


#: Kinds of index sets :func:`index_set` makes.
INDEX_KINDS = ("dense", "sparse", "skewed")


def index_set(kind: str, n: int, seed: int = 0, *, huge: int = 4) -> np.ndarray:
    """``n`` distinct page indices (uint64, sorted) of one object.

    * ``"dense"``: ``0 .. n-1``, a file cached from its start;
    * ``"sparse"``: ``n`` random indices over all of ``0 .. 2**32 - 1``;
    * ``"skewed"``: ``0 .. n-huge-1`` plus ``huge`` random indices at or above ``2**31`` (a
      file with a few pages written far out, e.g. a sparse database file).

    O(n).

    >>> index_set("skewed", 6, huge=2)[:4].tolist(), int(index_set("skewed", 6, huge=2)[-1]) >= 2**31
    ([0, 1, 2, 3], True)
    """
    if n < 0:
        raise ValueError("n must be >= 0")
    rng = np.random.default_rng(seed)
    if kind == "dense":
        return np.arange(n, dtype=np.uint64)
    if kind == "sparse":
        out = np.zeros(0, dtype=np.uint64)
        while out.size < n:
            out = _distinct(np.concatenate(
                [out, rng.integers(0, 2**32, size=n - out.size, dtype=np.uint64)]))
        return out
    if kind == "skewed":
        k = min(huge, n)
        far = np.zeros(0, dtype=np.uint64)
        while far.size < k:
            far = _distinct(np.concatenate(
                [far, rng.integers(2**31, 2**32, size=k - far.size, dtype=np.uint64)]))
        return np.concatenate([np.arange(n - k, dtype=np.uint64), far])
    raise ValueError(f"kind must be one of {INDEX_KINDS}, not {kind!r}")


def radix_height(max_index: int) -> int:
    """Height of the smallest radix tree that can hold ``max_index`` (0: a direct root). O(1).

    >>> [radix_height(i) for i in (0, 1, 63, 64, 4095, 4096, 2**30 - 1, 2**30, 2**32 - 1)]
    [0, 1, 1, 2, 2, 3, 5, 6, 6]
    """
    if not 0 <= max_index < 1 << 32:
        raise ValueError("an index is a u32")
    h = 0
    while max_index >= 1 << (RADIX_TREE_MAP_SHIFT * h):
        h += 1
    return h


def radix_shape(indices) -> tuple[int, int]:
    """``(height, nodes)`` of the radix tree holding exactly ``indices`` (any order, distinct or
    not), by the formula of the module docstring: numpy, no tree built. O(n log n).

    >>> radix_shape([]), radix_shape([0]), radix_shape([2**32 - 1])
    ((0, 0), (0, 0), (6, 6))
    """
    idx = _distinct(indices)
    if idx.size == 0:
        return 0, 0
    h = radix_height(int(idx[-1]))
    # idx is sorted, so each shifted copy is too: count its distinct values in one pass.
    nodes = sum(_count_distinct_sorted(idx >> np.uint64(RADIX_TREE_MAP_SHIFT * level))
                for level in range(1, h + 1))
    return h, nodes


def build_radix(indices) -> RadixTree:
    """The real :class:`RadixTree` holding ``indices`` (items ``True``), inserted in the given
    order. O(n × height).

    >>> t = build_radix([0, 4096]); t.height, t.node_count
    (3, 5)
    """
    t = RadixTree()
    for i in np.asarray(indices, dtype=np.uint64).tolist():
        rc = t.insert(i, True)
        if rc:
            raise ValueError(f"insert of index {i} returned {rc}")
    return t


#: Bytes of one red-black tree link: Xen's ``struct rb_node`` is three 8-byte words (the parent
#: pointer with the colour in its low bit, and two child pointers). What each page would carry
#: if an object kept its pages in an rb-tree instead of a radix tree.
RB_NODE_BYTES = 24


def metadata_bytes(indices, sizeof=None) -> dict:
    """What one object holding pages ``indices`` costs in tmem metadata, in bytes.

    ``{"pages", "nodes", "obj", "pgp", "objnode", "total", "per_page"}``: the object itself, one
    page descriptor per page, one radix node (``tmem_object_node``) per node of
    :func:`radix_shape`, priced by ``sizeof`` (default the engine's
    :data:`tmemref.host.alloc.SIZEOF`, what the engine bills). O(n log n).

    >>> m = metadata_bytes([0]); m["nodes"], m["total"] == m["obj"] + m["pgp"]
    (0, True)
    """
    if sizeof is None:
        from ..host.alloc import SIZEOF as sizeof
    pages = int(_distinct(indices).size)
    _, nodes = radix_shape(indices)
    out = {"pages": pages, "nodes": nodes, "obj": sizeof["obj"] if pages else 0,
           "pgp": pages * sizeof["pgp"], "objnode": nodes * sizeof["objnode"]}
    out["total"] = out["obj"] + out["pgp"] + out["objnode"]
    out["per_page"] = out["total"] / pages if pages else 0.0
    return out
