"""Radix tree of items keyed by a u32 index. Xen: ``xen/common/radix-tree.c`` (from Linux).

Invariants of a tree, each checked by :meth:`RadixTree.check` under its number:

1. Every node has 64 slots and its ``count`` equals the number of its non-``None`` slots.
2. No node reachable from the root is empty (``count`` 0): empty nodes are freed at once.
3. ``node_count`` equals the number of nodes reachable from the root.
4. ``count`` equals the number of items reachable from the root.
5. Shape: the slots of a node above the bottom level hold nodes, the slots of a bottom-level
   node hold items (never nodes), and every item's index is below ``64 ** height`` capped at
   ``2 ** 32``.
6. The height is minimal: at height 1 or more the root node uses some slot other than slot 0
   (a root using only slot 0 would have been shrunk).
7. Direct root only at height 0: at height 0 the root is ``None`` or the item at index 0
   itself; at heights 1..6 it is a :class:`RadixNode`.

A tree of height ``h`` has ``h`` levels of nodes and covers indices ``0 .. 64**h - 1`` (height 6
covers all ``2**32``). Each level consumes 6 bits of the index, most significant first. An empty
tree has height 0 and no root; the item at index 0 of a height-0 tree sits in the root itself,
so a tmem object holding only page 0 costs no node.

Named cases
-----------
Each is a module constant listed in :data:`CASES`. When ``tree.trace`` is not ``None`` it is
called with the case name *just before* the case changes the tree. ``[a b . .]`` is a node
showing its first slots (``.`` empty); ``*`` is the node the case creates or frees.

``DIRECT_ROOT`` -- index 0 goes into an empty tree: stored in the root, no node::

    root -> None        -->      root -> item0          (height 0)

``EXTEND`` -- an index beyond ``64 ** height`` arrives: a new root node goes on top with the old
root in its slot 0, once per missing level (the new index then hangs off a non-zero slot)::

    root -> [a b . .]   -->      root -> *[o . . .]     (height 1 -> 2)
                                           |
                                           o = [a b . .]

``SHRINK`` -- after a delete the root node uses only slot 0: its child becomes the root and the
node is freed, once per surplus level; from height 1 the item at index 0 becomes a direct root::

    root -> *[o . . .]  -->      root -> o = [a b . .]  (height 2 -> 1)
               |
               o = [a b . .]

``FREE_NODE`` -- a delete empties a node: it is freed and its slot in its parent cleared,
repeating upwards while the parent empties too::

    [x y . .]                    [x . . .]
       |         -->
      *[. . .]

Node billing
------------
``node_alloc()`` is called once for every node about to be created and returns a handle for it
(any true value: tmem's is the node's address in its pool's allocator), or a false value to
refuse; the node keeps the handle in ``meta`` and ``node_free(handle)`` is called once for every
node freed. At all times
``node_count == allocs - frees``. :meth:`RadixTree.insert` asks for every node it needs before
touching the tree, so a refusal leaves the tree exactly as it was (the nodes already granted are
given back through ``node_free``).

>>> freed = []
>>> t = RadixTree(node_free=lambda h: freed.append(1))
>>> t.insert(0, "p0"), t.height, t.node_count           # direct root
(0, 0, 0)
>>> t.insert(4096, "p4096"), t.height, t.node_count     # extend 0 -> 3
(0, 3, 5)
>>> t.lookup(4096), t.lookup(7), len(t)
('p4096', None, 2)
>>> t.delete(4096), t.height, t.node_count, len(freed)  # free nodes, shrink back
('p4096', 0, 0, 5)
>>> t.insert(0, "again")
-17
>>> list(t.items())
[(0, 'p0')]

Not thread-safe: the caller holds the lock that protects the tree (tmem: ``obj_spinlock``).

Xen: like the Linux code it copied, Xen allocates nodes on the way down during an insert, so
an allocation failure can leave a "stump" of empty nodes that ``obj_free`` later destroys;
here a failed insert changes nothing. Xen's nodes are ``tmem_object_node`` wrappers carrying a
back pointer to the object; here the callbacks do the billing and the node stays bare. Tags,
gang lookups and RCU of the Linux original are not modelled.
"""

import errno

from tmemref.errors import InvariantError

__all__ = [
    "RadixNode",
    "RadixTree",
    "RADIX_TREE_MAP_SHIFT",
    "RADIX_TREE_MAP_SIZE",
    "RADIX_TREE_MAP_MASK",
    "RADIX_TREE_INDEX_BITS",
    "RADIX_TREE_MAX_HEIGHT",
    "RADIX_TREE_MAX_INDEX",
    "CASES",
    "DIRECT_ROOT",
    "EXTEND",
    "SHRINK",
    "FREE_NODE",
]

#: Index bits consumed per level.
RADIX_TREE_MAP_SHIFT = 6
#: Slots per node.
RADIX_TREE_MAP_SIZE = 1 << RADIX_TREE_MAP_SHIFT
#: Mask selecting one level's slot from a shifted index.
RADIX_TREE_MAP_MASK = RADIX_TREE_MAP_SIZE - 1
#: Indices are u32 (a tmem page index).
RADIX_TREE_INDEX_BITS = 32
#: Largest valid index.
RADIX_TREE_MAX_INDEX = (1 << RADIX_TREE_INDEX_BITS) - 1
#: Levels needed to cover every u32 index: ceil(32 / 6).
RADIX_TREE_MAX_HEIGHT = -(-RADIX_TREE_INDEX_BITS // RADIX_TREE_MAP_SHIFT)

DIRECT_ROOT = "direct root: index 0 of an empty tree stored in the root, no node"
EXTEND = "extend: new root node above the old root, height + 1"
SHRINK = "shrink: root node using only slot 0 replaced by its child, height - 1"
FREE_NODE = "free node: a node emptied by a delete is freed"

#: Every case name, in the order the module documents them.
CASES = (DIRECT_ROOT, EXTEND, SHRINK, FREE_NODE)

# _LIMIT[h]: first index a tree of height h cannot hold (capped at 2**32).
_LIMIT = tuple(
    min(1 << (RADIX_TREE_MAP_SHIFT * h), 1 << RADIX_TREE_INDEX_BITS)
    for h in range(RADIX_TREE_MAX_HEIGHT + 1)
)
# _SHIFT[h]: shift that selects the root node's slot in a tree of height h >= 1.
_SHIFT = tuple(RADIX_TREE_MAP_SHIFT * max(h - 1, 0) for h in range(RADIX_TREE_MAX_HEIGHT + 1))

_ENOMEM = -errno.ENOMEM
_EEXIST = -errno.EEXIST


def _bad_index(index):
    """The ValueError for an index outside u32."""
    return ValueError(f"radix tree index {index!r} is outside 0..{RADIX_TREE_MAX_INDEX}")


class RadixNode:
    """An interior node: 64 slots. Xen: ``struct radix_tree_node`` (``rtn``).

    Fields:
      ``slots`` -- 64 entries: child nodes above the bottom level, items at the bottom level;
                   ``None`` marks an empty slot.
      ``count`` -- number of non-``None`` slots (0 only transiently, before the node is freed).

    >>> n = RadixNode()
    >>> len(n.slots), n.count
    (64, 0)
    """

    __slots__ = ("slots", "count", "meta")

    def __init__(self, meta=None):
        """Make an empty node. O(64)."""
        self.slots = [None] * RADIX_TREE_MAP_SIZE
        self.count = 0
        self.meta = meta              # the handle node_alloc gave for it (None: unbilled)

    def __repr__(self):
        used = [i for i, s in enumerate(self.slots) if s is not None]
        return f"<RadixNode count={self.count} used={used}>"


class RadixTree:
    """A radix tree mapping u32 indices to items. Xen: ``struct radix_tree_root``.

    Methods: :meth:`insert`, :meth:`lookup`, :meth:`delete`, :meth:`items`, ``len()``,
    :meth:`destroy`, :meth:`check`.

    Fields:
      ``root``       -- ``None`` (empty), the item at index 0 (height 0), or a RadixNode.
      ``height``     -- levels of nodes, 0..6; 0 when empty or holding only index 0.
      ``node_count`` -- nodes in the tree (tmem: ``obj->objnode_count``).
      ``count``      -- items in the tree (tmem: ``obj->pgp_count``).
      ``node_alloc`` -- ``None`` or ``() -> handle``, asked once per node to create (false:
                        refused).
      ``node_free``  -- ``None`` or ``(handle) -> None``, told once per node freed.
      ``trace``      -- ``None`` or a callable given each case name just before the case runs.

    >>> t = RadixTree()
    >>> t.insert(63, "a"), t.insert(64, "b"), [i for i, _ in t.items()], t.height
    (0, 0, [63, 64], 2)
    """

    __slots__ = ("root", "height", "node_count", "count", "node_alloc", "node_free", "trace")

    def __init__(self, node_alloc=None, node_free=None):
        """Make an empty tree with the given billing callbacks. O(1)."""
        self.root = None
        self.height = 0
        self.node_count = 0
        self.count = 0
        self.node_alloc = node_alloc
        self.node_free = node_free
        self.trace = None

    def __len__(self):
        """Return the number of items. O(1)."""
        return self.count

    def lookup(self, index):
        """Return the item at ``index``, or ``None``. O(height). Xen: ``radix_tree_lookup``.

        ``ValueError`` if ``index`` is outside 0..2**32-1.

        >>> t = RadixTree(); _ = t.insert(4095, "x")
        >>> t.lookup(4095), t.lookup(4094), t.lookup(2**32 - 1)
        ('x', None, None)
        """
        height = self.height
        if not 0 <= index < _LIMIT[height]:
            if 0 <= index <= RADIX_TREE_MAX_INDEX:
                return None
            raise _bad_index(index)
        node = self.root
        if height == 0:
            return node
        shift = _SHIFT[height]
        while shift:
            node = node.slots[(index >> shift) & RADIX_TREE_MAP_MASK]
            if node is None:
                return None
            shift -= RADIX_TREE_MAP_SHIFT
        return node.slots[index & RADIX_TREE_MAP_MASK]

    def insert(self, index, item):
        """Store ``item`` at ``index``; return 0, ``-EEXIST`` or ``-ENOMEM``. O(height).

        Plus O(64) per node created. ``-EEXIST``: the index already holds an item (the tree is
        unchanged). ``-ENOMEM``: ``node_alloc`` refused one of the nodes needed; the tree is
        unchanged and every node granted was returned through ``node_free``. ``ValueError`` if
        ``index`` is outside 0..2**32-1 or ``item`` is ``None``. Xen: ``radix_tree_insert``.

        >>> t = RadixTree(node_alloc=lambda: False)
        >>> t.insert(0, "a"), t.insert(1, "b"), len(t)      # index 0 needs no node
        (0, -12, 1)
        """
        if item is None:
            raise ValueError("radix tree items cannot be None (None marks an empty slot)")
        height = self.height
        if 0 <= index < _LIMIT[height]:
            if height == 0:  # index is 0
                if self.root is not None:
                    return _EEXIST
                if self.trace is not None:
                    self.trace(DIRECT_ROOT)
                self.root = item
                self.count = 1
                return 0
            node = self.root
            shift = _SHIFT[height]
            while shift:
                child = node.slots[(index >> shift) & RADIX_TREE_MAP_MASK]
                if child is None:
                    break
                node = child
                shift -= RADIX_TREE_MAP_SHIFT
            else:
                slots = node.slots
                slot = index & RADIX_TREE_MAP_MASK
                if slots[slot] is not None:
                    return _EEXIST
                slots[slot] = item
                node.count += 1
                self.count += 1
                return 0
            # A path node is missing at `shift`: create shift / 6 nodes down to the bottom.
            need = shift // RADIX_TREE_MAP_SHIFT
            metas = self._obtain(need)
            if metas is None:
                return _ENOMEM
            self.node_count += need
            _hang(node, index, shift, item, metas)
            self.count += 1
            return 0
        if not 0 <= index <= RADIX_TREE_MAX_INDEX:
            raise _bad_index(index)
        return self._insert_extending(index, item)

    def _insert_extending(self, index, item):
        """Insert at an index that needs a taller tree (slow path of :meth:`insert`)."""
        height = self.height
        new_height = height + 1
        while index >= _LIMIT[new_height]:
            new_height += 1
        top_shift = _SHIFT[new_height]
        if self.root is None:
            # Empty tree: just a fresh path of new_height nodes, nothing to push down.
            need = new_height
        else:
            # new_height - height nodes stacked above the old root (via slot 0), and a fresh
            # path below the top node: the index's top digit is non-zero, so it shares nothing.
            need = (new_height - height) + (new_height - 1)
        metas = self._obtain(need)
        if metas is None:
            return _ENOMEM
        if self.root is None:
            top = RadixNode(metas.pop())
            self.root = top
            self.height = new_height
            self.node_count += need
        else:
            trace = self.trace
            while self.height < new_height:
                if trace is not None:
                    trace(EXTEND)                   # node_count still says what is reachable
                top = RadixNode(metas.pop())
                top.slots[0] = self.root
                top.count = 1
                self.root = top
                self.height += 1
                self.node_count += 1
            self.node_count += need - (new_height - height)   # the fresh path below the top
        _hang(self.root, index, top_shift, item, metas)
        self.count += 1
        return 0

    def _obtain(self, need):
        """Ask ``node_alloc`` for ``need`` nodes; all or nothing: the list of their handles,
        or None (every handle granted given back). O(need)."""
        alloc = self.node_alloc
        if alloc is None:
            return [None] * need
        got = []
        for _ in range(need):
            h = alloc()
            if not h:
                free = self.node_free
                if free is not None:
                    for g in got:
                        free(g)
                return None
            got.append(h)
        return got

    def delete(self, index):
        """Remove and return the item at ``index``, or ``None``. Xen: ``radix_tree_delete``.

        O(height); nodes that become empty are freed (``FREE_NODE``) and surplus levels are
        removed (``SHRINK``), each through ``node_free``. ``ValueError`` if ``index`` is outside
        0..2**32-1.

        >>> t = RadixTree(); _ = t.insert(0, "a"); _ = t.insert(64, "b")
        >>> t.height, t.delete(64), t.height, t.root
        (2, 'b', 0, 'a')
        """
        height = self.height
        if not 0 <= index < _LIMIT[height]:
            if 0 <= index <= RADIX_TREE_MAX_INDEX:
                return None
            raise _bad_index(index)
        if height == 0:
            item = self.root
            if item is not None:
                self.root = None
                self.count = 0
            return item
        node = self.root
        shift = _SHIFT[height]
        while shift:
            node = node.slots[(index >> shift) & RADIX_TREE_MAP_MASK]
            if node is None:
                return None
            shift -= RADIX_TREE_MAP_SHIFT
        slots = node.slots
        slot = index & RADIX_TREE_MAP_MASK
        item = slots[slot]
        if item is None:
            return None
        slots[slot] = None
        node.count -= 1
        self.count -= 1
        if node.count == 0:
            self._prune(index)
        if self.height:
            root = self.root
            if root.count == 1 and root.slots[0] is not None:
                self._shrink()
        return item

    def _prune(self, index):
        """Free the empty bottom node on ``index``'s path and every ancestor it empties."""
        path = []
        node = self.root
        shift = _SHIFT[self.height]
        while shift:
            slot = (index >> shift) & RADIX_TREE_MAP_MASK
            path.append((node, slot))
            node = node.slots[slot]
            shift -= RADIX_TREE_MAP_SHIFT
        trace = self.trace
        free = self.node_free
        while True:  # node is empty
            if trace is not None:
                trace(FREE_NODE)
            if free is not None:
                free(node.meta)
            self.node_count -= 1
            if not path:
                self.root = None
                self.height = 0
                return
            node, slot = path.pop()
            node.slots[slot] = None
            node.count -= 1
            if node.count:
                return

    def _shrink(self):
        """Drop root nodes that use only slot 0, down to a direct root if possible."""
        trace = self.trace
        free = self.node_free
        root = self.root
        while self.height and root.count == 1 and root.slots[0] is not None:
            if trace is not None:
                trace(SHRINK)
            child = root.slots[0]
            root.slots[0] = None
            root.count = 0
            self.root = child
            self.height -= 1
            if free is not None:
                free(root.meta)
            self.node_count -= 1
            root = child

    def items(self):
        """Return an iterator of ``(index, item)`` in increasing index order. O(n + nodes).

        The pairs are gathered before the iterator is returned, so the caller may insert or
        delete while iterating. Xen: the nearest C call is ``radix_tree_gang_lookup``.

        >>> t = RadixTree()
        >>> for i in (4096, 0, 63): _ = t.insert(i, i * 10)
        >>> [(i, v) for i, v in t.items()]
        [(0, 0), (63, 630), (4096, 40960)]
        """
        out = []
        if self.height == 0:
            if self.root is not None:
                out.append((0, self.root))
        else:
            _collect(self.root, self.height, 0, out)
        return iter(out)

    def destroy(self, fn=None):
        """Empty the tree: ``fn(item)`` for each item, ``node_free(handle)`` for each node. O(n + nodes).

        Items are passed in increasing index order. The tree is already empty (height 0, no
        nodes) when the first callback runs, so callbacks may use it. No case is traced.
        Xen: ``radix_tree_destroy(root, slot_free)``, used by tmem's ``obj_free``.

        >>> got = []
        >>> t = RadixTree(); _ = t.insert(5, "a"); _ = t.insert(0, "b")
        >>> t.destroy(got.append); got, len(t), t.node_count
        (['b', 'a'], 0, 0)
        """
        pairs = list(self.items())
        metas = []
        if self.height:
            collect_node_metas(self.root, self.height, metas)
        self.root = None
        self.height = 0
        self.count = 0
        self.node_count = 0
        free = self.node_free
        if free is not None:
            for m in metas:
                free(m)
        if fn is not None:
            for _, item in pairs:
                fn(item)

    def check(self):
        """Check invariants 1-7 of the module docstring; raise InvariantError naming one.

        O(64 * nodes).

        >>> t = RadixTree(); _ = t.insert(100, "x")
        >>> t.check()
        >>> t.node_count += 1
        >>> t.check()
        Traceback (most recent call last):
        ...
        tmemref.errors.InvariantError: radix invariant 3: node_count is 3 but 2 nodes are reachable
        """
        height = self.height
        root = self.root
        if type(height) is not int or not 0 <= height <= RADIX_TREE_MAX_HEIGHT:
            raise InvariantError(f"radix invariant 7: height {height!r} is not in 0..6")
        if height == 0:
            if isinstance(root, RadixNode):
                raise InvariantError("radix invariant 7: height is 0 but the root is a node")
            nodes, items = 0, (0 if root is None else 1)
        else:
            if not isinstance(root, RadixNode):
                raise InvariantError(
                    f"radix invariant 7: height is {height} but the root is {root!r}, not a "
                    "node (a direct root is allowed only at height 0)"
                )
            nodes, items = _check_node(root, height, 0)
            if root.count == 1 and root.slots[0] is not None:
                raise InvariantError(
                    f"radix invariant 6: height {height} is not minimal: the root node uses "
                    "only slot 0"
                )
        if nodes != self.node_count:
            raise InvariantError(
                f"radix invariant 3: node_count is {self.node_count} but {nodes} nodes are "
                "reachable"
            )
        if items != self.count:
            raise InvariantError(
                f"radix invariant 4: count is {self.count} but {items} items are reachable"
            )


def collect_node_metas(node, level, out):
    """Append the ``meta`` of ``node`` and every node below it (``level`` >= 1). O(nodes)."""
    out.append(node.meta)
    if level > 1:
        for child in node.slots:
            if child is not None:
                collect_node_metas(child, level - 1, out)


def _hang(node, index, shift, item, metas):
    """Hang a fresh chain of nodes from ``node`` (whose slot at ``shift`` is empty) to ``item``.

    Creates ``shift / 6`` nodes, each taking a handle from ``metas``; the caller has obtained
    and counted them.
    """
    while shift:
        child = RadixNode(metas.pop())
        node.slots[(index >> shift) & RADIX_TREE_MAP_MASK] = child
        node.count += 1
        node = child
        shift -= RADIX_TREE_MAP_SHIFT
    node.slots[index & RADIX_TREE_MAP_MASK] = item
    node.count += 1


def _collect(node, level, base, out):
    """Append ``(index, item)`` below ``node`` (at ``level`` >= 1, first index ``base``)."""
    if level == 1:
        for slot, item in enumerate(node.slots):
            if item is not None:
                out.append((base + slot, item))
        return
    step = 1 << (RADIX_TREE_MAP_SHIFT * (level - 1))
    for slot, child in enumerate(node.slots):
        if child is not None:
            _collect(child, level - 1, base + slot * step, out)


def _check_node(node, level, base):
    """Check invariants 1, 2 and 5 below ``node``; return ``(nodes, items)`` reachable."""
    slots = node.slots
    if type(slots) is not list or len(slots) != RADIX_TREE_MAP_SIZE:
        raise InvariantError(
            f"radix invariant 1: the node covering index {base} does not have 64 slots"
        )
    used = RADIX_TREE_MAP_SIZE - slots.count(None)
    if node.count != used:
        raise InvariantError(
            f"radix invariant 1: the node covering index {base} has count {node.count} but "
            f"{used} used slots"
        )
    if not used:
        raise InvariantError(f"radix invariant 2: the node covering index {base} is empty")
    if level == 1:
        if RadixNode in map(type, slots):
            raise InvariantError(
                f"radix invariant 5: a node sits in a bottom-level slot of the node covering "
                f"index {base}"
            )
        if base + RADIX_TREE_MAP_MASK > RADIX_TREE_MAX_INDEX:
            last = max(i for i, item in enumerate(slots) if item is not None)
            if base + last > RADIX_TREE_MAX_INDEX:
                raise InvariantError(
                    f"radix invariant 5: an item sits at index {base + last} >= 2**32"
                )
        return 1, used
    nodes, items = 1, 0
    step = 1 << (RADIX_TREE_MAP_SHIFT * (level - 1))
    for slot, child in enumerate(slots):
        if child is None:
            continue
        if type(child) is not RadixNode:
            raise InvariantError(
                f"radix invariant 5: item {child!r} sits above the bottom level (slot for "
                f"index {base + slot * step}, {level - 1} levels up)"
            )
        n, i = _check_node(child, level - 1, base + slot * step)
        nodes += n
        items += i
    return nodes, items
