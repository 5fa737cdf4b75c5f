"""Intrusive doubly linked circular list. Xen: ``struct list_head`` (xen/include/xen/list.h).

Invariants of a list (its sentinel head plus the nodes linked to it), checked by
:func:`list_check`:

1. Links are mutual: for every node ``n`` on the ring, head included, ``n.next.prev is n`` and
   ``n.prev.next is n``.
2. The ring is closed: following ``next`` from the head comes back to the head, meeting each node
   once (no ``None`` link, no loop that leaves the head out).
3. When a count is given, the ring holds exactly that many nodes (the head is not counted).

A :class:`ListHead` is either a list's sentinel head or a node embedded in the object that owns
it (``owner``). An unlinked node and an empty head both point at themselves, so "is it on a
list?" is one identity test. One owner may embed several heads, one per list it is on (a tmem
page descriptor is on a global LRU list and on its client's list at once).

>>> head = ListHead()
>>> a, b, c = ListHead("a"), ListHead("b"), ListHead("c")
>>> list_add_tail(a, head); list_add_tail(b, head); list_add(c, head)
>>> list(list_owners(head))
['c', 'a', 'b']
>>> list_move_tail(c, head); list_del(a)
>>> list(list_owners(head)), list_len(head), list_linked(a), list_empty(head)
(['b', 'c'], 2, False, False)
>>> list_check(head, count=2)

Not thread-safe: the caller holds the lock that protects the list (in tmem, for example,
``eph_lists_spinlock`` for the ephemeral LRU lists).

Xen: the C list is the same ring of ``prev``/``next`` pointers; ``container_of`` recovers the
owner from the address of the embedded node, which here is the explicit ``owner`` field. Xen's
``list_del`` poisons the pointers of the removed node; here every removal re-initialises it
(``list_del_init`` semantics), so a removed node can be tested with :func:`list_linked` and
re-added at once.

**Two lists at once.** A C struct on two lists embeds two ``list_head`` structs. A Python
object has one identity, so :class:`ListHead2` carries its second pair of links as the fields
``prev2`` and ``next2``; a list threaded through them has a :class:`Head2` as its head. The
``list2_*`` functions change such a list; the reading functions (:func:`list_iter`,
:func:`list_owners`, :func:`list_len`, :func:`list_empty`, :func:`list_check`) see from the
head's type which pair to follow.

>>> h1, h2, x = ListHead(), Head2(), ListHead2("x")
>>> list_add_tail(x, h1); list2_add_tail(x, h2)
>>> list(list_owners(h1)), list(list_owners(h2)), list_linked(x), list2_linked(x)
(['x'], ['x'], True, True)
>>> list2_del(x); list(list_owners(h2)), list(list_owners(h1))
([], ['x'])
"""

import operator

from tmemref.errors import InvariantError

__all__ = [
    "ListHead",
    "list_add",
    "list_add_tail",
    "list_del",
    "list_move_tail",
    "list_empty",
    "list_linked",
    "list_iter",
    "list_owners",
    "list_len",
    "list_check",
    "ListHead2",
    "Head2",
    "list2_add_tail",
    "list2_del",
    "list2_move_tail",
    "list2_linked",
]


class ListHead:
    """A list's sentinel head, or a node embedded in its owner. Xen: ``struct list_head``.

    Fields:
      ``prev``  -- the previous node on the ring; ``self`` when unlinked / empty.
      ``next``  -- the next node on the ring; ``self`` when unlinked / empty.
      ``owner`` -- the object that embeds this node; ``None`` for a sentinel head.

    >>> h = ListHead()
    >>> h.next is h and h.prev is h and h.owner is None
    True
    """

    __slots__ = ("prev", "next", "owner")

    def __init__(self, owner=None):
        """Make an unlinked node (or an empty list head). O(1)."""
        self.prev = self
        self.next = self
        self.owner = owner

    def __repr__(self):
        state = "linked" if self.next is not self else "unlinked"
        return f"<ListHead owner={self.owner!r} {state}>"


def list_add(node, head):
    """Insert the unlinked ``node`` right after ``head`` (at the front). O(1).

    Raises ``ValueError`` if ``node`` is already on a list (the check Linux makes under
    ``CONFIG_DEBUG_LIST``; without it the ring would be silently corrupted).

    >>> h, a, b = ListHead(), ListHead(1), ListHead(2)
    >>> list_add(a, h); list_add(b, h)
    >>> list(list_owners(h))
    [2, 1]
    """
    if node.next is not node:
        raise ValueError("list_add: node is already on a list")
    nxt = head.next
    nxt.prev = node
    node.next = nxt
    node.prev = head
    head.next = node


def list_add_tail(node, head):
    """Insert the unlinked ``node`` right before ``head`` (at the tail). O(1).

    Raises ``ValueError`` if ``node`` is already on a list.

    >>> h, a, b = ListHead(), ListHead(1), ListHead(2)
    >>> list_add_tail(a, h); list_add_tail(b, h)
    >>> list(list_owners(h))
    [1, 2]
    """
    if node.next is not node:
        raise ValueError("list_add_tail: node is already on a list")
    prv = head.prev
    prv.next = node
    node.prev = prv
    node.next = head
    head.prev = node


def list_del(node):
    """Unlink ``node`` and leave it pointing at itself (``list_del_init``). O(1).

    Deleting a node that is not on a list does nothing.

    >>> h, a = ListHead(), ListHead(1)
    >>> list_add(a, h); list_del(a)
    >>> list_empty(h), list_linked(a)
    (True, False)
    """
    prv = node.prev
    nxt = node.next
    prv.next = nxt
    nxt.prev = prv
    node.prev = node
    node.next = node


def list_move_tail(node, head):
    """Unlink ``node`` (if linked) and insert it at the tail of ``head``. O(1).

    This is the LRU "touch": the node becomes the most recently used one.

    >>> h, a, b = ListHead(), ListHead(1), ListHead(2)
    >>> list_add_tail(a, h); list_add_tail(b, h); list_move_tail(a, h)
    >>> list(list_owners(h))
    [2, 1]
    """
    prv = node.prev
    nxt = node.next
    prv.next = nxt
    nxt.prev = prv
    prv = head.prev
    prv.next = node
    node.prev = prv
    node.next = head
    head.prev = node


# --- the second pair of links -------------------------------------------------------------------
class ListHead2(ListHead):
    """A node that can be on two lists at once: :class:`ListHead`'s links, plus a second pair
    ``prev2``/``next2`` (``self`` when not on a second list), followed from a :class:`Head2`.
    Xen: a struct embedding two ``struct list_head`` fields."""

    __slots__ = ("prev2", "next2")

    def __init__(self, owner=None):
        ListHead.__init__(self, owner)
        self.prev2 = self
        self.next2 = self


class Head2:
    """The sentinel head of a list threaded through the second links of :class:`ListHead2`
    nodes. Empty: it points at itself."""

    __slots__ = ("prev2", "next2", "owner")

    def __init__(self):
        self.prev2 = self
        self.next2 = self
        self.owner = None

    def __repr__(self):
        return f"<Head2 {'empty' if self.next2 is self else 'non-empty'}>"


def list2_add_tail(node, head):
    """:func:`list_add_tail` through the second links: ``node`` at the tail of ``head``. O(1).
    ``ValueError`` if ``node`` is already on a second list."""
    if node.next2 is not node:
        raise ValueError("list2_add_tail: node is already on a list")
    prv = head.prev2
    prv.next2 = node
    node.prev2 = prv
    node.next2 = head
    head.prev2 = node


def list2_del(node):
    """:func:`list_del` through the second links (the node then points at itself). O(1)."""
    prv = node.prev2
    nxt = node.next2
    prv.next2 = nxt
    nxt.prev2 = prv
    node.prev2 = node
    node.next2 = node


def list2_move_tail(node, head):
    """:func:`list_move_tail` through the second links (no hot path uses it: a shared get's
    LRU touch, a dedup second chance). O(1)."""
    list2_del(node)
    list2_add_tail(node, head)


def list2_linked(node):
    """Return True if ``node`` is on a list through its second links. O(1)."""
    return node.next2 is not node


def list_empty(head):
    """Return True if the list headed by ``head`` has no node. O(1).

    >>> list_empty(ListHead())
    True
    """
    if head.__class__ is Head2:
        return head.next2 is head
    return head.next is head


def list_linked(node):
    """Return True if ``node`` is on a list. O(1).

    >>> list_linked(ListHead())
    False
    """
    return node.next is not node


def list_iter(head):
    """Yield the nodes from the front (``head.next``) to the tail (``head.prev``). O(1) per node.

    The next node is read before a node is yielded, so the caller may ``list_del`` (or move to
    another list) the node it was just given; removing any *other* node during the walk is not
    safe.

    >>> h = ListHead()
    >>> for i in range(3): list_add_tail(ListHead(i), h)
    >>> for n in list_iter(h):
    ...     if n.owner == 1: list_del(n)
    >>> [n.owner for n in list_iter(h)]
    [0, 2]
    """
    if head.__class__ is Head2:
        node = head.next2
        while node is not head:
            nxt = node.next2
            yield node
            node = nxt
        return
    node = head.next
    while node is not head:
        nxt = node.next
        yield node
        node = nxt


def list_owners(head):
    """Yield ``node.owner`` for each node, front to tail; same safety as :func:`list_iter`.

    O(1) per node.

    >>> h = ListHead()
    >>> list_add_tail(ListHead("x"), h)
    >>> list(list_owners(h))
    ['x']
    """
    for node in list_iter(head):
        yield node.owner


def list_len(head):
    """Return the number of nodes on the list (the head is not counted). O(n).

    >>> list_len(ListHead())
    0
    """
    return sum(1 for _ in list_iter(head))


def list_check(head, count=None, name="list"):
    """Check the numbered invariants of the list headed by ``head``; raise InvariantError. O(n).

    ``count``, when given, is the length the caller's own counter says the list has (invariant
    3). ``name`` labels the list in the message. The closed ring (2) is checked first, walking
    ``next`` only and remembering every node seen, so a corrupted ring cannot loop forever.

    >>> h, a, b = ListHead(), ListHead(1), ListHead(2)
    >>> list_add_tail(a, h); list_add_tail(b, h)
    >>> list_check(h, count=2)
    >>> a.next = h                      # b is now skipped going forwards
    >>> list_check(h)
    Traceback (most recent call last):
    ...
    tmemref.errors.InvariantError: list invariant 1: node 1's next does not link back
    """
    second = head.__class__ is Head2
    nxt = operator.attrgetter("next2" if second else "next")
    prv = operator.attrgetter("prev2" if second else "prev")
    # 2: the forward walk must come back to head, meeting each node once.
    seen = {id(head)}
    nodes = [head]
    node = nxt(head)
    while node is not head:
        if not isinstance(node, ListHead2 if second else ListHead):
            raise InvariantError(
                f"{name} invariant 2: ring not closed: after {_label(nodes[-1], head)} comes "
                f"{node!r}, not a ListHead"
            )
        if id(node) in seen:
            raise InvariantError(
                f"{name} invariant 2: ring not closed: the walk from the head meets "
                f"{_label(node, head)} twice without returning to the head"
            )
        seen.add(id(node))
        nodes.append(node)
        node = nxt(node)
    # 1: every link is answered by the link back.
    for node in nodes:
        if prv(nxt(node)) is not node:
            raise InvariantError(
                f"{name} invariant 1: {_label(node, head)}'s next does not "
                "link back"
            )
        if nxt(prv(node)) is not node:
            raise InvariantError(
                f"{name} invariant 1: {_label(node, head)}'s prev does not "
                "link forward"
            )
    # 3: the caller's counter agrees.
    if count is not None and len(nodes) - 1 != count:
        raise InvariantError(
            f"{name} invariant 3: the list holds {len(nodes) - 1} nodes but its count says {count}"
        )


def _label(node, head):
    """Name a node for an error message: the head, or the node by its owner."""
    if node is head:
        return "the head"
    if node.owner is None:
        return "a node with no owner"
    return f"node {node.owner!r}"
