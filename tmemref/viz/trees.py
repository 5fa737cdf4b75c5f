"""Pictures of the two trees tmem borrowed from Linux: red-black trees and radix trees.

* :func:`rbtree` draws one :class:`~tmemref.ds.rbtree.RBTree` (a pool bucket or a standalone
  tree), nodes filled red or black, left child on the left even when the right is missing.
* :func:`radix` draws one :class:`~tmemref.ds.radix.RadixTree`: each node is a row of its
  *used* slots only, labelled with the slot numbers; a height-0 tree shows the direct root.
* :func:`case_pictures` runs one insert or erase on a *copy* of a tree with ``tree.trace`` set
  and returns the picture before, the picture just before each named rebalancing case, the
  picture after, and the case names (the constants of ``CASES`` in each ds module).

The drawing primitives :func:`draw_rb` and :func:`draw_radix` are shared with
:func:`tmemref.viz.web`, which hangs a radix tree under each object of each bucket's rb-tree.

>>> from tmemref.ds.rbtree import RBTree
>>> t = RBTree()
>>> for k in (2, 1, 3): _ = t.insert(k)
>>> src = rbtree(t).source
>>> "n1 -> n0" in src and "n1 -> n2" in src       # root 2 (in-order n1) has children 1 and 3
True
"""
from __future__ import annotations

from dataclasses import dataclass, field

from ._common import BLACK, HIGHLIGHT, RED, esc, html_label, new_digraph, plural

# --------------------------------------------------------------------------------------------
# red-black trees
# --------------------------------------------------------------------------------------------


def _rb_count(node) -> int:
    """Nodes in the subtree at ``node`` (iterative). O(subtree)."""
    n, stack = 0, [node]
    while stack:
        x = stack.pop()
        if x is None:
            continue
        n += 1
        stack.append(x.left)
        stack.append(x.right)
    return n


def rb_style(red: bool, highlight: bool = False) -> dict:
    """Node attributes of an rb-tree node: filled red or black, white text; a thick blue
    outline when highlighted."""
    attrs = {"style": "filled", "fillcolor": RED if red else BLACK, "fontcolor": "white",
             "color": RED if red else BLACK}
    if highlight:
        attrs.update(color=HIGHLIGHT, penwidth="3")
    return attrs


def draw_rb(g, root, node_id, draw_node, *, nil: bool = False, budget: int | None = None,
            edge_attrs: dict | None = None, more_label=None, between=None):
    """Draw the rb-tree under ``root`` into ``g``; return the rb nodes drawn (BFS order).

    ``node_id(rbnode)`` gives each node's id; ``draw_node(g, rbnode, nid)`` emits the node
    itself. Child edges go left then right; a missing child is an invisible placeholder (or a
    NIL leaf when ``nil``) so a lone child sits on its own side. With ``budget``, only that
    many nodes are drawn (breadth first) and each cut subtree becomes one node labelled
    ``more_label(k)`` (default ``"… k more"``). O(nodes drawn), plus O(cut subtrees' sizes)
    to count what was cut. ``between(g, rbnode, nid)``, if given, is called between the left
    and the right child edges (the web hangs the object's radix tree there, so with
    ``ordering=out`` it sits between the two subtrees).
    """
    if root is None:
        return []
    edge_attrs = dict(edge_attrs or {})
    more_label = more_label or (lambda k: f"… {k} more")
    drawn = []
    queue = [root]
    head = 0
    ids = {}
    while head < len(queue):
        x = queue[head]
        head += 1
        nid = node_id(x)
        ids[id(x)] = nid
        draw_node(g, x, nid)
        drawn.append(x)
        for side, child in (("L", x.left), ("R", x.right)):
            if side == "R" and between is not None:
                between(g, x, nid)
            cid = f"{nid}_{side}"
            port = "sw" if side == "L" else "se"
            if child is None:
                if nil:
                    g.node(cid, "NIL", shape="box", style="filled", fillcolor=BLACK,
                           fontcolor="white", fontsize="6", width="0.25", height="0.15",
                           margin="0.01")
                    g.edge(nid, cid, tailport=port, **edge_attrs)
                else:
                    g.node(cid, "", style="invis", width="0.1", height="0.1")
                    g.edge(nid, cid, style="invis")
                continue
            if budget is not None and len(queue) >= budget:
                k = _rb_count(child)
                g.node(cid, more_label(k), shape="plaintext", fontsize="8")
                g.edge(nid, cid, style="dotted", tailport=port, **edge_attrs)
                continue
            queue.append(child)
            g.edge(nid, node_id(child), tailport=port, **edge_attrs)
    return drawn


def _inorder_ids(tree):
    """Stable ids for a standalone tree's nodes: ``n<in-order position>``."""
    ids = {}
    for i, node in enumerate(tree):
        ids[id(node)] = f"n{i}"
    return ids


def rbtree(tree, *, label=str, nil: bool = False, highlight=(), title: str | None = None,
           size: str | None = "7.5,5"):
    """A picture of one red-black tree: nodes ``label(key)``, filled red or black.

    ``nil`` draws the NIL leaves as small black boxes; ``highlight`` is a collection of keys
    to outline; ``title`` is printed above. Node ids are ``n<in-order position>``, so the same
    tree always gives the same DOT. O(n).
    """
    g = new_digraph("rbtree", size=size, ordering="out", ranksep="0.25")
    if title:
        g.attr(label=title, labelloc="t")
    ids = _inorder_ids(tree)
    hl = set(highlight)

    def draw_node(gg, x, nid):
        text = str(label(x.key))
        gg.node(nid, html_label(esc(text)), shape="circle" if len(text) <= 4 else "ellipse",
                width="0.35", height="0.35", **rb_style(x.red, x.key in hl))

    if tree.root is None:
        g.node("empty", "(empty tree)", shape="plaintext")
    else:
        draw_rb(g, tree.root, lambda x: ids.get(id(x), "x"), draw_node, nil=nil)
    return g


# --------------------------------------------------------------------------------------------
# radix trees
# --------------------------------------------------------------------------------------------

RADIX_FILL = "#eef3e2"


def _radix_table(header: str, cells, more: int, fill: str = RADIX_FILL) -> str:
    """HTML-like label of a radix node: a header row and one cell per shown used slot."""
    ncols = max(1, len(cells) + (1 if more else 0))
    row = "".join(f'<TD PORT="s{slot}">{slot}</TD>' for slot in cells)
    if more:
        row += f"<TD><I>+{more}</I></TD>"
    if not cells and not more:
        row = "<TD><I>empty</I></TD>"
    return html_label(
        f'<TABLE BORDER="0" CELLBORDER="1" CELLSPACING="0" CELLPADDING="2" BGCOLOR="{fill}">'
        f'<TR><TD COLSPAN="{ncols}"><FONT POINT-SIZE="8">{esc(header)}</FONT></TD></TR>'
        f"<TR>{row}</TR></TABLE>")


def draw_radix(g, tree, prefix: str, draw_item, *, max_items: int | None = None,
               max_slots: int = 12):
    """Draw ``tree``'s nodes into ``g``; return ``(entry, drawn)``.

    ``entry`` is the id the owner should point at: the root node ``<prefix>r``, or (height
    0) the direct-root item's id, or None for an empty tree. ``draw_item(g, index, item)``
    emits an item and returns its id. Items are visited in index order; at most ``max_items``
    are drawn (the slot cells of the rest stay, without edges) and each node shows its first
    ``max_slots`` used slots and a ``+k`` cell for the others. Node ids: ``<prefix>r`` and
    ``<prefix>r.<slot>.<slot>…`` down the path. ``drawn`` counts the items drawn.
    O(64 * nodes drawn).
    """
    from ..ds.radix import RADIX_TREE_MAP_SHIFT
    if tree.height == 0:
        if tree.root is None or max_items == 0:
            return None, 0
        return draw_item(g, 0, tree.root), 1
    budget = [max_items if max_items is not None else float("inf")]
    drawn = [0]

    def node(rn, level, base, nid):
        used = [i for i, s in enumerate(rn.slots) if s is not None]
        shown = used[:max_slots]
        span = 1 << (RADIX_TREE_MAP_SHIFT * level)
        top = min(base + span - 1, (1 << 32) - 1)
        header = f"h{level} · {base}..{top}" if level > 1 else f"leaf · {base}..{top}"
        g.node(nid, _radix_table(header, shown, len(used) - len(shown)), shape="plaintext",
               margin="0")
        step = span >> RADIX_TREE_MAP_SHIFT
        for slot in shown:
            if budget[0] <= 0:
                break
            child = rn.slots[slot]
            if level == 1:
                iid = draw_item(g, base + slot, child)
                budget[0] -= 1
                drawn[0] += 1
                g.edge(f"{nid}:s{slot}:s", iid)
            else:
                cid = f"{nid}.{slot}"
                g.edge(f"{nid}:s{slot}:s", cid)
                node(child, level - 1, base + slot * step, cid)

    root_id = f"{prefix}r"
    node(tree.root, tree.height, 0, root_id)
    return root_id, drawn[0]


def item_text(item) -> str:
    """Default label of a radix item: a tmem pgp as ``pgp → frame 17`` / ``pgp → 45 B``
    (compressed), anything else as ``str(item)``."""
    if hasattr(item, "obj") and hasattr(item, "index") and hasattr(item, "size"):
        if item.data is None:
            return "pgp (no data)"
        return f"pgp → frame {item.data}" if item.size == 0 else f"pgp → {item.size} B"
    return str(item)


def oid_key_label(key) -> str:
    """Label of an object-tree rb key ``(oid2, oid1, oid0)`` as the object id ``(oid0,oid1,oid2)``:
    ``rbtree(pool.buckets[7], label=oid_key_label)``.

    >>> oid_key_label((0, 0, 7))
    '(7,0,0)'
    """
    return "(" + ",".join(str(w) for w in reversed(key)) + ")"


def radix(tree, *, label=None, max_items: int = 64, max_slots: int = 16,
          title: str | None = None, size: str | None = "7.5,5"):
    """A picture of one radix tree: a ``root`` box (height, items, nodes), every node as a row
    of its used slots, items below the leaf nodes (``label(item)``, default :func:`item_text`).

    A height-0 tree shows the direct root: ``root`` points straight at the item of index 0.
    Item ids are ``i<index>``, node ids ``r``, ``r.<slot>``… O(64 * nodes drawn).
    """
    g = new_digraph("radix", size=size, ranksep="0.3")
    if title:
        g.attr(label=title, labelloc="t")
    lab = label or item_text
    g.node("root", f"root\\nheight {tree.height}\\n{plural(len(tree), 'item')}, "
           f"{plural(tree.node_count, 'node')}",
           shape="box", style="rounded,filled", fillcolor="#f5f5f5")

    def draw_item(gg, index, item):
        iid = f"i{index}"
        gg.node(iid, html_label(f"[{index}]<BR/>{esc(lab(item))}"), shape="box",
                style="filled", fillcolor="#fdf6e3")
        return iid

    entry, drawn = draw_radix(g, tree, "", draw_item, max_items=max_items, max_slots=max_slots)
    if entry is None:
        g.node("null", "NULL", shape="plaintext")
        g.edge("root", "null")
    elif tree.height == 0:
        g.edge("root", entry, label=" direct root")
    else:
        g.edge("root", entry)
    if len(tree) > drawn:
        g.node("more", "… " + plural(len(tree) - drawn, "more item"), shape="plaintext")
        g.edge("root", "more", style="dotted")
    return g


# --------------------------------------------------------------------------------------------
# named cases, before and after
# --------------------------------------------------------------------------------------------


@dataclass
class CasePictures:
    """What :func:`case_pictures` returns.

    ``before``/``after``: the tree before and after the operation; ``cases``: the case names
    hit, in order (the ``CASES`` constants of the ds module); ``steps``: one
    ``(case name, picture just before that case ran)`` per case; ``result``: what the
    operation returned.
    """
    before: object
    after: object
    cases: list = field(default_factory=list)
    steps: list = field(default_factory=list)
    result: object = None

    def states(self):
        """``(caption, picture)`` pairs for :func:`tmemref.viz.explorer`: before, each case,
        after."""
        out = [("before", self.before)]
        out += [(f"about to run: {name}", pic) for name, pic in self.steps]
        out.append(("after", self.after))
        return out


def copy_rbtree(tree):
    """A structural copy of an RBTree (same shape, colours, keys; values shared). O(n)."""
    from ..ds.rbtree import RBNode, RBTree
    new = RBTree()
    new.count = tree.count
    if tree.root is None:
        return new

    def cp(x, parent):
        y = RBNode(x.key, x.value)
        y.red = x.red
        y.parent = parent
        if x.left is not None:
            y.left = cp(x.left, y)
        if x.right is not None:
            y.right = cp(x.right, y)
        return y
    new.root = cp(tree.root, None)
    return new


def copy_radix(tree):
    """A structural copy of a RadixTree (items shared, no billing callbacks). O(64 * nodes)."""
    from ..ds.radix import RadixNode, RadixTree
    new = RadixTree()
    new.height, new.count, new.node_count = tree.height, tree.count, tree.node_count

    def cp(n):
        if not isinstance(n, RadixNode):
            return n
        m = RadixNode()
        m.slots = [cp(s) if isinstance(s, RadixNode) else s for s in n.slots]
        m.count = n.count
        return m
    new.root = cp(tree.root)
    return new


def case_pictures(tree, key, op: str = "insert", *, value=None, label=str, nil: bool = False):
    """Run ``op`` (``"insert"`` or ``"erase"``) of ``key`` on a copy of ``tree`` with
    ``trace`` set; return a :class:`CasePictures`. ``tree`` itself is not changed.

    For an :class:`~tmemref.ds.rbtree.RBTree` the key is an rb key; for a
    :class:`~tmemref.ds.radix.RadixTree` it is an index (``value`` is the item to insert,
    default ``"item <index>"``; ``label`` then labels items). The inserted/erased key is
    outlined in the rb-tree pictures. O(n) per picture.

    >>> from tmemref.ds.rbtree import RBTree, INSERT_ROTATE_OUTER
    >>> t = RBTree(); _ = [t.insert(k) for k in (1, 2)]
    >>> cp = case_pictures(t, 3)
    >>> cp.cases == [INSERT_ROTATE_OUTER], len(t), len(cp.steps)
    (True, 2, 1)
    """
    from ..ds.radix import RadixTree
    from ..ds.rbtree import RBTree
    if op not in ("insert", "erase"):
        raise ValueError("op must be 'insert' or 'erase'")
    if isinstance(tree, RBTree):
        work = copy_rbtree(tree)

        def pic(caption):
            return rbtree(work, label=label, nil=nil, highlight=(key,), title=caption)
        before = pic("before")
        cases, steps = [], []

        def trace(name):
            cases.append(name)
            steps.append((name, pic(name)))
        work.trace = trace
        if op == "insert":
            result = work.insert(key, value)
        else:
            node = work.find(key)
            if node is None:
                raise KeyError(key)
            result = work.erase(node)
        work.trace = None
        work.check()
        return CasePictures(before, pic("after"), cases, steps, result)
    if isinstance(tree, RadixTree):
        work = copy_radix(tree)

        def pic(caption):
            return radix(work, label=label, title=caption)
        before = pic("before")
        cases, steps = [], []

        def trace(name):
            cases.append(name)
            steps.append((name, pic(name)))
        work.trace = trace
        if op == "insert":
            result = work.insert(key, f"item {key}" if value is None else value)
        else:
            result = work.delete(key)
        work.trace = None
        work.check()
        return CasePictures(before, pic("after"), cases, steps, result)
    raise TypeError(f"case_pictures draws RBTree or RadixTree, not {type(tree).__name__}")
