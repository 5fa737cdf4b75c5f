"""Red-black tree with parent pointers. Xen: ``xen/common/rbtree.c`` (borrowed from Linux).

Properties of a tree, each checked by :meth:`RBTree.check` under its number:

1. Every node is red or black (``node.red`` is ``True`` or ``False``).
2. The root is black.
3. A red node has black children (an absent child, ``None``, counts as black).
4. Every path from a node down to an absent child passes the same number of black nodes.
5. An in-order walk meets strictly increasing keys.
6. Parent pointers agree with child pointers, and the root's parent is ``None``.
7. ``count`` equals the number of nodes.

From 3 and 4, the longest root-to-leaf path is at most twice the shortest, so a tree of ``n``
nodes has height at most ``2 * log2(n + 1)`` and find, insert and erase are O(log n).

Rebalancing cases
-----------------
Each case that rewires or repaints the tree has a stable name, a module constant listed in
:data:`CASES`; the book draws every one before and after. In the pictures an upper-case letter
is a black node, a lower-case letter a red one, and ``(x)`` a node of either colour. ``n`` is
the node being fixed, ``p`` its parent, ``g`` its grandparent, ``u`` its uncle, ``s`` its
sibling, ``sl``/``sr`` the sibling's left and right children. Only the left-hand form is drawn;
each case also has its mirror image.

When ``tree.trace`` is not ``None`` it is called with the case name *just before* the case
changes the tree, so a tracer that snapshots the tree on every call and once more after the
operation returns sees each case's before and after pictures in turn.

>>> t = RBTree()
>>> seen = []
>>> t.trace = seen.append
>>> for k in (1, 2, 3):
...     _ = t.insert(k, str(k))
>>> seen == [INSERT_ROOT, INSERT_ROTATE_OUTER]
True
>>> [n.key for n in t], t.root.key, t.height(), len(t)
([1, 2, 3], 2, 2, 3)
>>> t.find(2).value
'2'
>>> t.erase(t.find(2)); t.check(); [n.key for n in t]
[1, 3]

Keys are any totally ordered Python values; only ``<`` is used. The tmem engine keys its object
trees by ``(oid2, oid1, oid0)`` tuples, which is the order of Xen's ``oid_compare``.

Not thread-safe: the caller holds the lock that protects the tree (``pool_rwlock`` for the
object trees: read to find, write to insert or erase).

Xen: the C tree is intrusive (an ``rb_node`` embedded in ``struct tmem_object_root``, colour
kept in the low bit of the parent pointer) and each user writes its own search loop around
``rb_link_node``/``rb_insert_color``; here a node carries its key and value and the tree does
the search. Xen's tmem search descends left when the node's key is *smaller* (a mirror image of
this tree); that changes the drawing, not the behaviour.
"""

from tmemref.errors import InvariantError

__all__ = [
    "RBNode",
    "RBTree",
    "rb_next",
    "rb_prev",
    "CASES",
    "INSERT_ROOT",
    "INSERT_RECOLOR",
    "INSERT_ROTATE_INNER",
    "INSERT_ROTATE_OUTER",
    "ERASE_SWAP_SUCCESSOR",
    "ERASE_CHILD_RED",
    "ERASE_SIBLING_RED",
    "ERASE_SIBLING_BLACK_CHILDREN_BLACK",
    "ERASE_SIBLING_FAR_CHILD_BLACK",
    "ERASE_SIBLING_FAR_CHILD_RED",
]

# --- insert cases: a red node ``n`` has just been linked in as a leaf ---------------------------

#: ``n`` is the root (the first node, or case 1 recoloured its way up): paint it black.
#: The only case that adds one black node to every path::
#:
#:      n      -->      N
INSERT_ROOT = "insert case 0: node is the root, paint it black"

#: Parent and uncle both red: push the grandparent's black down one level and carry on
#: from ``g``, which is now red and may have a red parent::
#:
#:          G                  g      <- continue here
#:         / \                / \
#:        p   u      -->     P   U
#:       /                  /
#:      n                  n
INSERT_RECOLOR = "insert case 1: uncle red, recolor"

#: Parent red, uncle black, ``n`` the inner grandchild: rotate at ``p`` so that the old
#: parent becomes the outer grandchild, then case 3 applies (with ``n`` and ``p`` swapped)::
#:
#:          G                  G
#:         / \                / \
#:        p   U      -->     n   U
#:         \                /
#:          n              p
INSERT_ROTATE_INNER = "insert case 2: uncle black, inner grandchild, rotate at parent"

#: Parent red, uncle black, ``n`` the outer grandchild: rotate at ``g`` and swap the colours
#: of ``p`` and ``g``. Black counts are unchanged and no red node has a red child: done::
#:
#:          G                  P
#:         / \                / \
#:        p   U      -->     n   g
#:       / \                    / \
#:      n   c                  c   U
INSERT_ROTATE_OUTER = "insert case 3: uncle black, outer grandchild, rotate at grandparent"

# --- erase: unlinking the node ----------------------------------------------------------------

#: The node to erase has two children: its in-order successor ``s`` (the leftmost node of
#: its right subtree, which has no left child) is unlinked from where it is and takes the
#: erased node's place and colour. What is lost is then one ``s`` at its old position, a node
#: with at most one child ``x``::
#:
#:         (d)                  (s)
#:         / \                  / \
#:        L   R        -->     L   R
#:           /                    /
#:         (s)                   x
#:           \
#:            x
ERASE_SWAP_SUCCESSOR = "erase: two children, successor takes the node's place"

#: The unlinked node was black with one child, which is then necessarily a red leaf: the
#: child takes its place and is painted black, restoring every black count at once::
#:
#:        (p)                  (p)
#:         |                    |
#:         D         -->        C
#:         |
#:         c
ERASE_CHILD_RED = "erase: red child replaces the black node, paint it black"

# --- erase: fixing a missing black ---------------------------------------------------------------
# A black leaf was unlinked: every path through ``n`` (its place, which may be empty) now has
# one black node fewer than the paths through ``s``. ``n`` is black or absent and is not the
# root; ``s`` exists because its side of ``p`` has at least one black node.

#: Sibling red (so ``p`` and the nephews are black): rotate at ``p`` and swap the colours of
#: ``p`` and ``s``. ``n`` now has a black sibling (old ``sl``); go on with case 2, 3 or 4::
#:
#:          P                   S
#:         / \                 / \
#:        N   s       -->     p   Sr
#:           / \             / \
#:          Sl  Sr          N   Sl
ERASE_SIBLING_RED = "erase case 1: sibling red, rotate at parent"

#: Sibling black with two black children: paint ``s`` red, which takes one black off the
#: sibling's side too. If ``p`` was red, painting it black puts the black back: done. If
#: ``p`` was black, ``p`` is now short of one black and the fix goes on from ``p``::
#:
#:         (p)                 (p)     <- paint black if red, else continue here
#:         / \                 / \
#:        N   S       -->     N   s
#:           / \                 / \
#:          Sl  Sr              Sl  Sr
ERASE_SIBLING_BLACK_CHILDREN_BLACK = "erase case 2: sibling and its children black, recolor"

#: Sibling black, far nephew black, near nephew red: rotate at ``s`` and swap the colours of
#: ``s`` and ``sl``. The new sibling ``Sl`` is black with a red far child: case 4::
#:
#:         (p)                 (p)
#:         / \                 / \
#:        N   S       -->     N   Sl
#:           / \                   \
#:          sl  Sr                  s
#:                                   \
#:                                    Sr
ERASE_SIBLING_FAR_CHILD_BLACK = "erase case 3: sibling black, far nephew black, rotate at sibling"

#: Sibling black, far nephew red: rotate at ``p``; ``s`` takes ``p``'s colour, ``p`` and
#: ``sr`` turn black. ``n``'s side gains the black it lacked and no other count changes: done::
#:
#:         (p)                 (s)
#:         / \                 / \
#:        N   S       -->     P   Sr
#:           / \             / \
#:         (sl) sr          N  (sl)
ERASE_SIBLING_FAR_CHILD_RED = "erase case 4: sibling black, far nephew red, rotate at parent"

#: Every case name, in the order the module documents them.
CASES = (
    INSERT_ROOT,
    INSERT_RECOLOR,
    INSERT_ROTATE_INNER,
    INSERT_ROTATE_OUTER,
    ERASE_SWAP_SUCCESSOR,
    ERASE_CHILD_RED,
    ERASE_SIBLING_RED,
    ERASE_SIBLING_BLACK_CHILDREN_BLACK,
    ERASE_SIBLING_FAR_CHILD_BLACK,
    ERASE_SIBLING_FAR_CHILD_RED,
)


class RBNode:
    """One node of an :class:`RBTree`. Xen: ``struct rb_node`` plus the owner's key.

    Fields:
      ``key``    -- the ordering key; must not change while the node is in a tree.
      ``value``  -- the caller's payload (tmem: the object).
      ``left``   -- child with smaller keys; ``None`` if absent.
      ``right``  -- child with larger keys; ``None`` if absent.
      ``parent`` -- ``None`` for the root and for a node not in a tree.
      ``red``    -- ``True`` red, ``False`` black. A new node is red.

    >>> n = RBNode((0, 0, 7), "obj")
    >>> n.red, n.parent, n.left, n.right
    (True, None, None, None)
    """

    __slots__ = ("key", "value", "left", "right", "parent", "red")

    def __init__(self, key, value=None):
        """Make a red node that is in no tree. O(1)."""
        self.key = key
        self.value = value
        self.left = None
        self.right = None
        self.parent = None
        self.red = True

    def __repr__(self):
        return f"<RBNode {self.key!r} {'red' if self.red else 'black'}>"


def rb_next(node):
    """Return the in-order successor of ``node``, or ``None``. Xen: ``rb_next``.

    O(log n) worst case, O(1) amortised over a full walk.

    >>> t = RBTree()
    >>> for k in (5, 1, 9): _ = t.insert(k)
    >>> rb_next(t.find(5)).key, rb_next(t.find(9))
    (9, None)
    """
    child = node.right
    if child is not None:
        while child.left is not None:
            child = child.left
        return child
    parent = node.parent
    while parent is not None and node is parent.right:
        node = parent
        parent = node.parent
    return parent


def rb_prev(node):
    """Return the in-order predecessor of ``node``, or ``None``. Xen: ``rb_prev``.

    O(log n) worst case, O(1) amortised over a full walk.

    >>> t = RBTree()
    >>> for k in (5, 1, 9): _ = t.insert(k)
    >>> rb_prev(t.find(5)).key, rb_prev(t.find(1))
    (1, None)
    """
    child = node.left
    if child is not None:
        while child.right is not None:
            child = child.right
        return child
    parent = node.parent
    while parent is not None and node is parent.left:
        node = parent
        parent = node.parent
    return parent


class RBTree:
    """A red-black tree of :class:`RBNode`. Xen: ``struct rb_root`` and ``rbtree.c``.

    Methods: :meth:`find`, :meth:`insert`, :meth:`erase`, :meth:`first`, :meth:`last`,
    ``len()``, iteration (in key order), :meth:`height`, :meth:`check`.

    Fields:
      ``root``  -- the root node; ``None`` when empty.
      ``count`` -- number of nodes (Xen keeps this in the owner, e.g. ``pool->obj_count``).
      ``trace`` -- ``None``, or a callable given each case name just before the case runs.

    >>> t = RBTree()
    >>> t.insert("b").key, len(t), t.first() is t.last()
    ('b', 1, True)
    """

    __slots__ = ("root", "count", "trace")

    def __init__(self):
        """Make an empty tree. O(1)."""
        self.root = None
        self.count = 0
        self.trace = None

    def __len__(self):
        """Return the number of nodes. O(1)."""
        return self.count

    def __iter__(self):
        """Yield the nodes in increasing key order. O(n) for the whole walk.

        The walk follows parent pointers lazily: to erase while walking, take ``list(tree)``
        first and erase from that list.

        >>> t = RBTree()
        >>> for k in (3, 1, 2): _ = t.insert(k)
        >>> for n in list(t): t.erase(n)
        >>> len(t), t.root
        (0, None)
        """
        node = self.root
        if node is None:
            return
        while node.left is not None:
            node = node.left
        while node is not None:
            yield node
            node = rb_next(node)

    def find(self, key):
        """Return the node with ``key``, or ``None``. O(log n). Xen: tmem's ``obj_find`` loop.

        >>> t = RBTree(); _ = t.insert((0, 0, 1), "o")
        >>> t.find((0, 0, 1)).value, t.find((0, 0, 2))
        ('o', None)
        """
        node = self.root
        while node is not None:
            nkey = node.key
            if key < nkey:
                node = node.left
            elif nkey < key:
                node = node.right
            else:
                return node
        return None

    def first(self):
        """Return the node with the smallest key, or ``None``. O(log n). Xen: ``rb_first``.

        >>> t = RBTree(); _ = [t.insert(k) for k in (4, 2, 6)]
        >>> t.first().key
        2
        """
        node = self.root
        if node is not None:
            while node.left is not None:
                node = node.left
        return node

    def last(self):
        """Return the node with the largest key, or ``None``. O(log n). Xen: ``rb_last``.

        >>> t = RBTree(); _ = [t.insert(k) for k in (4, 2, 6)]
        >>> t.last().key
        6
        """
        node = self.root
        if node is not None:
            while node.right is not None:
                node = node.right
        return node

    def insert(self, key, value=None):
        """Insert a new node for ``key`` and return it; ``KeyError`` if ``key`` is present.

        O(log n): one descent, then at most two rotations and O(log n) recolourings.
        Xen: tmem's ``obj_rb_insert`` (search + ``rb_link_node``) then ``rb_insert_color``.

        >>> t = RBTree(); n = t.insert(1, "one")
        >>> n.value, n.red
        ('one', False)
        >>> t.insert(1)
        Traceback (most recent call last):
        ...
        KeyError: 1
        """
        parent = None
        node = self.root
        left = False
        while node is not None:
            parent = node
            nkey = node.key
            if key < nkey:
                node = node.left
                left = True
            elif nkey < key:
                node = node.right
                left = False
            else:
                raise KeyError(key)
        node = RBNode(key, value)
        self.count += 1
        if parent is None:
            self.root = node
            if self.trace is not None:
                self.trace(INSERT_ROOT)
            node.red = False
            return node
        node.parent = parent
        if left:
            parent.left = node
        else:
            parent.right = node
        if parent.red:
            self._insert_fixup(node, parent)
        return node

    def _insert_fixup(self, node, parent):
        """Restore property 3 above the red ``node`` whose ``parent`` is red. O(log n)."""
        trace = self.trace
        while True:
            # parent is red, so it is not the root and gparent exists.
            gparent = parent.parent
            uncle = gparent.right
            if parent is not uncle:  # parent is the left child
                if uncle is not None and uncle.red:
                    if trace is not None:
                        trace(INSERT_RECOLOR)
                    parent.red = False
                    uncle.red = False
                    gparent.red = True
                    node = gparent
                    parent = node.parent
                    if parent is None:
                        break
                    if not parent.red:
                        return
                    continue
                if node is parent.right:
                    if trace is not None:
                        trace(INSERT_ROTATE_INNER)
                    self._rotate_left(parent)
                    parent = node
                if trace is not None:
                    trace(INSERT_ROTATE_OUTER)
                self._rotate_right(gparent)
            else:  # mirror image: parent is the right child
                uncle = gparent.left
                if uncle is not None and uncle.red:
                    if trace is not None:
                        trace(INSERT_RECOLOR)
                    parent.red = False
                    uncle.red = False
                    gparent.red = True
                    node = gparent
                    parent = node.parent
                    if parent is None:
                        break
                    if not parent.red:
                        return
                    continue
                if node is parent.left:
                    if trace is not None:
                        trace(INSERT_ROTATE_INNER)
                    self._rotate_right(parent)
                    parent = node
                if trace is not None:
                    trace(INSERT_ROTATE_OUTER)
                self._rotate_left(gparent)
            parent.red = False
            gparent.red = True
            return
        # case 1 reached the root and left it red.
        if trace is not None:
            trace(INSERT_ROOT)
        node.red = False

    def erase(self, node):
        """Unlink ``node``, which must be in this tree, and rebalance. O(log n).

        The erased node's ``left``, ``right`` and ``parent`` are cleared; its key and value are
        left for the caller. Xen: ``rb_erase``. ``ValueError`` if ``node`` is plainly not in
        this tree (no parent and not the root); other misuse corrupts the tree, as in C.

        >>> t = RBTree(); n = t.insert(1); _ = t.insert(2)
        >>> t.erase(n); [x.key for x in t], n.parent
        ([2], None)
        """
        trace = self.trace
        left = node.left
        right = node.right
        parent = node.parent
        if parent is None and self.root is not node:
            raise ValueError(f"rbtree erase: {node!r} is not in this tree")
        if left is None or right is None:
            # At most one child: it takes the node's place.
            child = right if left is None else left
            if parent is None:
                self.root = child
            elif parent.left is node:
                parent.left = child
            else:
                parent.right = child
            if child is not None:
                # Property 4 makes a lone child a red leaf under a black node.
                child.parent = parent          # link fully before anyone looks (trace)
                if trace is not None:
                    trace(ERASE_CHILD_RED)
                child.red = False
                fix = False
            else:
                fix = not node.red
        else:
            if trace is not None:
                trace(ERASE_SWAP_SUCCESSOR)
            succ = right
            if succ.left is None:
                # The successor is the right child: it keeps its own right subtree.
                fix_parent = succ
                child = succ.right
            else:
                while succ.left is not None:
                    succ = succ.left
                fix_parent = succ.parent
                child = succ.right
                fix_parent.left = child
                if child is not None:
                    child.parent = fix_parent
                succ.right = right
                right.parent = succ
            succ.left = left
            left.parent = succ
            succ.parent = parent
            if parent is None:
                self.root = succ
            elif parent.left is node:
                parent.left = succ
            else:
                parent.right = succ
            succ_red = succ.red
            succ.red = node.red
            if child is not None:
                if trace is not None:
                    trace(ERASE_CHILD_RED)
                child.red = False
                fix = False
            else:
                fix = not succ_red
            parent = fix_parent
        self.count -= 1
        node.left = node.right = node.parent = None
        if fix and parent is not None:
            self._erase_fixup(parent)

    def _erase_fixup(self, parent):
        """Give back the black missing under ``parent`` on the side of an absent child. O(log n).

        ``n`` starts as the empty place (``None``) left by a black leaf; it climbs while case 2
        moves the shortage up.
        """
        trace = self.trace
        node = None
        while True:
            sib = parent.right
            if node is not sib:  # node is the left child (or the empty left place)
                if sib.red:
                    if trace is not None:
                        trace(ERASE_SIBLING_RED)
                    self._rotate_left(parent)
                    sib.red = False
                    parent.red = True
                    sib = parent.right
                far = sib.right
                if far is None or not far.red:
                    near = sib.left
                    if near is None or not near.red:
                        if trace is not None:
                            trace(ERASE_SIBLING_BLACK_CHILDREN_BLACK)
                        sib.red = True
                        if parent.red:
                            parent.red = False
                            return
                        node = parent
                        parent = node.parent
                        if parent is None:
                            return
                        continue
                    if trace is not None:
                        trace(ERASE_SIBLING_FAR_CHILD_BLACK)
                    self._rotate_right(sib)
                    near.red = False
                    sib.red = True
                    far = sib
                    sib = near
                if trace is not None:
                    trace(ERASE_SIBLING_FAR_CHILD_RED)
                self._rotate_left(parent)
            else:  # mirror image: node is the right child
                sib = parent.left
                if sib.red:
                    if trace is not None:
                        trace(ERASE_SIBLING_RED)
                    self._rotate_right(parent)
                    sib.red = False
                    parent.red = True
                    sib = parent.left
                far = sib.left
                if far is None or not far.red:
                    near = sib.right
                    if near is None or not near.red:
                        if trace is not None:
                            trace(ERASE_SIBLING_BLACK_CHILDREN_BLACK)
                        sib.red = True
                        if parent.red:
                            parent.red = False
                            return
                        node = parent
                        parent = node.parent
                        if parent is None:
                            return
                        continue
                    if trace is not None:
                        trace(ERASE_SIBLING_FAR_CHILD_BLACK)
                    self._rotate_left(sib)
                    near.red = False
                    sib.red = True
                    far = sib
                    sib = near
                if trace is not None:
                    trace(ERASE_SIBLING_FAR_CHILD_RED)
                self._rotate_right(parent)
            sib.red = parent.red
            parent.red = False
            far.red = False
            return

    def _rotate_left(self, x):
        """Lift ``x.right`` into ``x``'s place; ``x`` becomes its left child. O(1).

        ::

              x                y
             / \\              / \\
            a   y     -->    x   c
               / \\          / \\
              b   c        a   b
        """
        y = x.right
        b = y.left
        x.right = b
        if b is not None:
            b.parent = x
        p = x.parent
        y.parent = p
        if p is None:
            self.root = y
        elif p.left is x:
            p.left = y
        else:
            p.right = y
        y.left = x
        x.parent = y

    def _rotate_right(self, x):
        """Lift ``x.left`` into ``x``'s place; ``x`` becomes its right child. O(1).

        ::

                x            y
               / \\          / \\
              y   c  -->   a   x
             / \\              / \\
            a   b            b   c
        """
        y = x.left
        b = y.right
        x.left = b
        if b is not None:
            b.parent = x
        p = x.parent
        y.parent = p
        if p is None:
            self.root = y
        elif p.left is x:
            p.left = y
        else:
            p.right = y
        y.right = x
        x.parent = y

    def height(self):
        """Return the number of nodes on the longest root-to-leaf path; 0 when empty. O(n).

        >>> t = RBTree(); t.height()
        0
        >>> for k in range(7): _ = t.insert(k)
        >>> t.height()
        4
        """
        best = 0
        stack = [(self.root, 1)] if self.root is not None else []
        while stack:
            node, depth = stack.pop()
            if depth > best:
                best = depth
            if node.left is not None:
                stack.append((node.left, depth + 1))
            if node.right is not None:
                stack.append((node.right, depth + 1))
        return best

    def check(self):
        """Check properties 1-7 of the module docstring; raise InvariantError naming one. O(n).

        Child links are followed only after the child's parent pointer is checked (6), so a
        corrupted tree cannot send the walk round a loop.

        >>> t = RBTree(); _ = [t.insert(k) for k in range(5)]
        >>> t.check()
        >>> t.root.red = True
        >>> t.check()
        Traceback (most recent call last):
        ...
        tmemref.errors.InvariantError: rbtree invariant 2: the root 1 is red
        """
        root = self.root
        nodes = 0
        if root is not None:
            if root.parent is not None:
                raise InvariantError(
                    f"rbtree invariant 6: the root {root.key!r} has parent {root.parent!r}"
                )
            if root.red is not True and root.red is not False:
                raise InvariantError(
                    f"rbtree invariant 1: node {root.key!r} has colour {root.red!r}"
                )
            if root.red:
                raise InvariantError(f"rbtree invariant 2: the root {root.key!r} is red")
            prev = []

            def walk(node):
                """Check the subtree at ``node``; return its black height (None counts 1)."""
                nonlocal nodes
                if node is None:
                    return 1
                red = node.red
                if red is not True and red is not False:
                    raise InvariantError(
                        f"rbtree invariant 1: node {node.key!r} has colour {red!r}"
                    )
                for child in (node.left, node.right):
                    if child is None:
                        continue
                    if child.parent is not node:
                        raise InvariantError(
                            f"rbtree invariant 6: {child!r} is a child of {node!r} "
                            f"but its parent is {child.parent!r}"
                        )
                    if red and child.red is True:
                        raise InvariantError(
                            f"rbtree invariant 3: red node {node.key!r} has red child "
                            f"{child.key!r}"
                        )
                nodes += 1
                left_black = walk(node.left)
                if prev and not prev[0] < node.key:
                    raise InvariantError(
                        f"rbtree invariant 5: key {node.key!r} follows {prev[0]!r} in order"
                    )
                prev[:] = [node.key]
                right_black = walk(node.right)
                if left_black != right_black:
                    raise InvariantError(
                        f"rbtree invariant 4: below node {node.key!r} the left paths have "
                        f"{left_black} black nodes and the right paths {right_black}"
                    )
                return left_black + (0 if red else 1)

            walk(root)
        if nodes != self.count:
            raise InvariantError(
                f"rbtree invariant 7: count is {self.count} but the tree has {nodes} nodes"
            )
