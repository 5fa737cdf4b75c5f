"""Xen: ``struct tmem_object_root`` (obj) and ``struct tmem_page_descriptor`` (pgp).

An object is one file (cleancache) or one slice of a swap device (frontswap), named by a 3x64-bit
``oid``; it lives in one of its pool's 256 red-black trees and holds its pages in a radix tree
keyed by the 32-bit page index. A pgp describes one stored page and points back at its object.
"""
from __future__ import annotations

from ..ds.dlist import ListHead2
from ..ds.radix import RadixTree
from ..errors import InvariantError
from ..host.locks import SpinLock, RANK_OBJ

#: pgp.size when the data is a whole raw frame (``pfp``).
SIZE_RAW = 0


class Pgp(ListHead2):
    """Xen: ``struct tmem_page_descriptor`` — one stored page.

    Like the C struct, a pgp embeds both its list heads: its :class:`ListHead` links
    (``prev``/``next``, "link a") and its second links (``prev2``/``next2``, "link b").

    Invariants (checked by :meth:`Host.check`, which sees the lists):

    1. ``obj.tree.lookup(index) is self`` while it is stored.
    2. ``size == 0`` ⇒ ``data`` is a frame number holding the whole page; ``size > 0`` ⇒
       ``data`` is the address of ``size`` bytes of compressed page in its pool's allocator;
       on a dedup host an ephemeral pgp's ``data`` is its :class:`~tmemref.core.pcd.Pcd`.
    3. Ephemeral: link a on the global ephemeral list and link b on the owner client's
       ephemeral list. Persistent: link b on the pool's persistent list, link a unlinked.
       (Xen keeps a persistent pgp freed during live migration, on the client's invalidated list
       through the link-a union, with its handle written over link b and ``timestamp``;
       tmemref logs the handle on ``Client.invalidated`` and frees the pgp.)
    """
    __slots__ = ("obj", "index", "size", "data", "eviction_attempted", "meta")

    def __init__(self, obj, index: int):
        self.prev = self.next = self      # link a (union: global eph list | client invalidated
        self.owner = self                 # list); the owner of both links is the pgp itself
        self.prev2 = self.next2 = self    # link b (union: client eph list | pool persistent list)
        self.obj = obj                    # back pointer: the object holding this page
        self.index = index                # page index in the object (u32)
        self.size = SIZE_RAW              # 0: whole frame in data; n>0: n compressed bytes
        self.data = None                  # frame number (size 0) or bytes (size > 0); None: no data yet
        self.eviction_attempted = False   # dedup second chance: already sent to the back once
        self.meta = None                  # its own block in its pool's allocator, which holds
                                          # its timestamp (Host: PGP_TIMESTAMP_WORD)

    def __repr__(self):
        return f"<pgp {self.obj.oid}[{self.index}] size={self.size}>"


def pgp_forget(pgp) -> None:
    """A freed, delisted pgp drops its links, as Xen's ``list_del`` poisons them: an unlinked
    list head points at itself, and such self-references would leave every freed pgp to the
    cycle collector."""
    pgp.prev = pgp.next = pgp.owner = pgp.prev2 = pgp.next2 = None


class Obj:
    """Xen: ``struct tmem_object_root`` — one object of a pool.

    Invariants (checked by :meth:`check`):

    1. ``pgp_count == len(tree) >= 1`` (an object exists only while it holds a page).
    2. ``objnode_count == tree.node_count``.
    3. every pgp in the tree has ``pgp.obj is self`` and ``pgp.index`` equal to its key.
    4. ``rbnode.value is self`` and ``rbnode.key == key(oid)``.
    """
    __slots__ = ("oid", "rbnode", "tree", "pool", "last_client", "lock", "pgp_count",
                 "objnode_count", "meta")

    def __init__(self, pool, oid, node_alloc, node_free):
        self.oid = oid                    # (oid0, oid1, oid2), three u64
        self.rbnode = None                # our node in pool.buckets[hash]
        self.tree = RadixTree(node_alloc, node_free)   # index -> Pgp
        self.pool = pool                  # back pointer: the pool holding this object
        self.last_client = -1             # shared pools: domid that last put/got here; -1 none
        self.lock = SpinLock("obj_spinlock", RANK_OBJ)
        self.pgp_count = 0                # pages stored (== len(tree))
        self.objnode_count = 0            # radix-tree interior nodes (== tree.node_count)
        self.meta = None                  # its own block in its pool's allocator, which holds
                                          # its timestamp (Host: PGP_TIMESTAMP_WORD)

    def check(self) -> None:
        """Verify invariants 1-4; raises :class:`InvariantError`."""
        tree = self.tree
        tree.check()
        if self.pgp_count != len(tree) or self.pgp_count < 1:
            raise InvariantError(f"obj invariant 1: obj {self.oid} pgp_count {self.pgp_count}, "
                                 f"radix tree holds {len(tree)}")
        if self.objnode_count != tree.node_count:
            raise InvariantError(f"obj invariant 2: obj {self.oid} objnode_count "
                                 f"{self.objnode_count}, radix tree has {tree.node_count} nodes")
        for index, pgp in tree.items():
            if pgp.obj is not self or pgp.index != index:
                raise InvariantError(f"obj invariant 3: pgp at index {index} of obj {self.oid} "
                                     f"points at {pgp.obj and pgp.obj.oid}[{pgp.index}]")
        oid = self.oid
        if self.rbnode is None or self.rbnode.value is not self or \
                self.rbnode.key != (oid[2], oid[1], oid[0]):
            raise InvariantError(f"obj invariant 4: obj {oid} and its rb-tree node disagree")

    def __repr__(self):
        return f"<obj {self.oid} pages={self.pgp_count}>"


def obj_key(oid):
    """Order of objects in a bucket's rb-tree: oid[2], then oid[1], then oid[0]."""
    return (oid[2], oid[1], oid[0])


def oid_hash(oid) -> int:
    """Xen: ``oid_hash`` — the bucket of an object: ``hash_long(o0^o1^o2) & 255``.

    On 64-bit Xen the golden-ratio multiplier is 1 modulo 2**18, so the low 8 bits survive the
    hash unchanged and the bucket is simply the low byte of the xor.

    >>> oid_hash((7, 0, 0)), oid_hash((0x1ff, 0x100, 0))
    (7, 255)
    """
    return (oid[0] ^ oid[1] ^ oid[2]) & 0xFF
