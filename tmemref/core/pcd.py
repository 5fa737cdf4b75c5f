"""Xen: page content descriptors (pcd) — deduplication and trailing-zero elimination.

With ``tmem_dedup`` on, the ephemeral pages of every pool of every client that hold the same
bytes share one copy. Each distinct content is a :class:`Pcd`; the pgps that hold it point at
it (``pgp.data is pcd``) and it lists them back. Like Linux's KSM, tmem does not hash: the
pcds live in 256 red-black trees, one per value of the content's first byte, keyed by the whole
content, each tree behind its own rwlock (``pcd_tree_rwlocks``, rank 3: after the object lock,
before the lists and the allocators).

What a pcd holds (``size``):

* ``PAGE_SIZE`` — a whole frame (``data`` is its number);
* ``0 < size < PAGE_SIZE`` — ``size`` bytes from the sub-page allocator: the page shrunk by
  trailing-zero elimination (tze), or its compressed form (``compressed``);
* ``0`` — an all-zero page under tze: nothing stored at all.

The order of a tree is Xen's: compressed contents (by length, then bytes compared as signed
chars) before uncompressed ones (by length, then 64-bit words compared in order, as unsigned
integers of the host's little-endian memory). :func:`content_key` builds a Python value with
exactly that order, so the tree compares keys with ``<`` and ``==``.

Named cases (the book draws each): ``MATCH`` (a put finds its content: the new frame is given
back, the pcd gains a user), ``NEW_PCD`` (no match: a pcd is made and linked into its tree),
``TZE_SHRINK`` (the new pcd keeps fewer bytes than a page and the frame goes back),
``ZERO_PAGE`` (nothing kept at all), ``LAST_USER`` (a pgp leaves a pcd that no one else uses:
the pcd and its data are freed), ``SECOND_CHANCE`` (eviction meets a shared page for the first
time: it goes back to the young end of the lists instead).
"""
from __future__ import annotations

import errno

import numpy as np

from ..ds.rbtree import RBTree
from ..errors import InvariantError
from ..host.locks import RWLock, RANK_PCD

PAGE_SIZE = 4096
#: Xen's ``PCD_TZE_MAX_SIZE``: a tze-shrunk page longer than this is kept whole.
PCD_TZE_MAX_SIZE = PAGE_SIZE - PAGE_SIZE // 64        # 4032
PCD_TREES = 256
ENOMEM = errno.ENOMEM

MATCH, NEW_PCD, TZE_SHRINK, ZERO_PAGE, LAST_USER, SECOND_CHANCE = (
    "match", "new pcd", "tze shrink", "zero page", "last user", "second chance")
CASES = (MATCH, NEW_PCD, TZE_SHRINK, ZERO_PAGE, LAST_USER, SECOND_CHANCE)

_XOR80 = bytes(range(128, 256)) + bytes(range(128))    # signed-char order as unsigned bytes


class Pcd:
    """Xen: ``struct tmem_page_content_descriptor`` (pcd) — one content, shared by its pgps.

    Invariants (checked by :meth:`PcdLayer.check`):

    1. it is in tree ``firstbyte`` under ``key``, and ``key`` is the key of what it stores;
    2. ``ref_count == len(pgps) >= 1``: no pcd without users, and every user points back
       (``pgp.data is self``) from a live ephemeral pool;
    3. ``size`` is ``PAGE_SIZE`` (``data`` a frame), in (0, PAGE_SIZE) (``data`` a sub-page
       handle of ``size`` bytes), or 0 (all-zero tze page, ``data`` None); tze sizes are
       multiples of 8 and at most 4032.
    """
    __slots__ = ("firstbyte", "size", "data", "compressed", "pgps", "ref_count", "rbnode",
                 "key", "meta")

    def __init__(self, firstbyte: int, key):
        self.firstbyte = firstbyte        # tree index: first byte of the (compressed) content
        self.key = key                    # content_key(...) of what it stores
        self.size = PAGE_SIZE             # PAGE_SIZE whole frame; 0 < n < PAGE_SIZE bytes; 0 none
        self.data = None                  # frame number, sub-page handle, or None
        self.compressed = False           # data is a compressed page (else raw or tze)
        self.pgps: dict = {}              # the pgps using it (Xen: pgp_list), as an ordered set
        self.ref_count = 0                # Xen: pgp_ref_count (== len(pgps))
        self.rbnode = None                # our node in pcd_trees[firstbyte]
        self.meta = None                  # handle of the pcd's own sub-page allocation

    def __repr__(self):
        kind = "compressed" if self.compressed else ("page" if self.size == PAGE_SIZE else "tze")
        return f"<pcd fb={self.firstbyte} {kind} size={self.size} refs={self.ref_count}>"


def tze_size(page) -> int:
    """Xen: ``tmh_tze_pfp_scan`` — the page's length without its trailing zero 64-bit words
    (a multiple of 8; 0 for an all-zero page). O(PAGE_SIZE).

    >>> tze_size(bytes(4096)), tze_size(b"a" + bytes(4095)), tze_size(b"\\x01" * 4096)
    (0, 8, 4096)
    """
    words = np.frombuffer(page, dtype=np.uint64)
    nz = np.flatnonzero(words)
    return 0 if nz.size == 0 else int(nz[-1] + 1) * 8


def content_key(data, compressed: bool):
    """The tree key of a content, ordered as Xen's comparisons order it.

    Compressed (``tmh_pcd_cmp``): ``(0, length, bytes with the sign bit flipped)``; raw or
    tze-shrunk (``tmh_page_cmp``/``tmh_tze_pfp_cmp``): ``(1, length, 64-bit words
    big-endian)`` — byte-swapping each little-endian word makes bytewise order the order of
    the words as unsigned integers.
    """
    n = len(data)
    if compressed:
        return (0, n, bytes(data).translate(_XOR80))
    return (1, n, np.frombuffer(data, dtype="<u8").astype(">u8").tobytes())


class PcdLayer:
    """Xen: ``pcd_tree_roots[256]`` and ``pcd_tree_rwlocks[256]`` with the pcd routines.

    ``tze_match`` chooses how a later put finds a page that tze shrank: ``"doc"`` (default)
    finds it, as tmem-internals.html intends; ``"xen"`` never does, as Xen's code (a pcd
    shorter than a page is compared as "greater" before its tze comparison is reached).
    """

    def __init__(self, host, tze: bool, tze_match: str = "doc"):
        self.host = host
        self.tze = tze
        self.tze_match = tze_match
        self.trees = [RBTree() for _ in range(PCD_TREES)]
        self.locks = [RWLock("pcd_tree_rwlock", RANK_PCD) for _ in range(PCD_TREES)]
        self.serial = 0                   # unique suffix of keys that "xen" tze never matches
        self.trace = None                 # called with a case name, when not None

    # --- put ------------------------------------------------------------------------------------
    def associate(self, pgp, pool, data, frame, compressed: bool) -> int:
        """Xen: ``pcd_associate`` — give ``pgp`` the pcd of ``data``, making one if no pcd holds
        that content. Raw puts arrive with the page already copied into ``frame`` (given back
        on a match, or kept, or given back after a tze shrink); compressed ones with the bytes
        only. 0, or -ENOMEM (nothing changed; the caller still owns ``frame``). Object lock
        held; takes the tree's write lock. O(log pcds * compare)."""
        host = self.host
        if compressed:
            size = len(data)
            fb = data[0]
        else:
            size = tze_size(data) if self.tze else PAGE_SIZE
            if size > PCD_TZE_MAX_SIZE:
                size = PAGE_SIZE
            fb = data[0]
        key = content_key(memoryview(data)[:size], compressed)
        lock = self.locks[fb]
        lock.write_lock()
        try:
            tree = self.trees[fb]
            node = tree.find(key)
            shrunk = None
            if node is None and not compressed and 0 < size < PAGE_SIZE:
                shrunk = host._data_alloc(pool, data[:size])
                if shrunk is None:        # no room for the shrunk copy: keep the page whole
                    size, key = PAGE_SIZE, content_key(data, False)
                    node = tree.find(key)
            if node is not None:
                pcd = node.value
                if self.trace is not None:
                    self.trace(MATCH)
                if frame is not None:
                    host._free_data_frame(pool, frame)
                host.deduped_puts += 1
            else:
                pcd = self._new_pcd(pool, fb, key, data, frame, size, compressed, shrunk)
                if pcd is None:
                    return -ENOMEM
            pcd.ref_count += 1
            pcd.pgps[pgp] = None
            pgp.data = pcd
            pgp.eviction_attempted = False
            return 0
        finally:
            lock.write_unlock()

    def _new_pcd(self, pool, fb, key, data, frame, size, compressed, shrunk):
        """A pcd for a content no pcd holds; None (nothing kept) if memory is short."""
        host = self.host
        meta = host.infra_pool.alloc(host.sizeof_pcd)
        if not meta:
            host.alloc_failed += 1
            if shrunk is not None:
                host._data_free(pool, shrunk, size)
            return None
        pcd = Pcd(fb, key)
        pcd.meta = meta
        if compressed:
            handle = host._data_alloc(pool, data)
            if handle is None:
                host.infra_pool.free(meta)
                return None
            pcd.data, pcd.size, pcd.compressed = handle, size, True
            host.pcd_tot_csize += size
        elif size == 0:
            if self.trace is not None:
                self.trace(ZERO_PAGE)
            pcd.size = 0
            host._free_data_frame(pool, frame)
        elif size < PAGE_SIZE:
            if self.trace is not None:
                self.trace(TZE_SHRINK)
            pcd.data, pcd.size = shrunk, size
            host.pcd_tot_tze_size += size
            host._free_data_frame(pool, frame)
        else:                             # a whole page
            pcd.data = frame
            if self.tze:
                host.pcd_tot_tze_size += PAGE_SIZE
            if host.compress:
                host.pcd_tot_csize += PAGE_SIZE
        if self.tze_match == "xen" and not compressed and pcd.size < PAGE_SIZE:
            self.serial += 1              # Xen's compare never reaches these: no later match
            pcd.key = key + (self.serial,)
        if self.trace is not None:
            self.trace(NEW_PCD)
        pcd.rbnode = self.trees[fb].insert(pcd.key, pcd)
        host.global_pcd_count += 1
        if host.global_pcd_count > host.global_pcd_count_max:
            host.global_pcd_count_max = host.global_pcd_count
        return pcd

    # --- free -----------------------------------------------------------------------------------
    def disassociate(self, pgp, pool, have_lock: bool = False) -> None:
        """Xen: ``pcd_disassociate`` — ``pgp`` stops using its pcd; the pcd and its data go
        when that was the last user. Takes the tree's write lock unless the caller holds it
        (eviction), and releases it either way. O(log pcds)."""
        pcd = pgp.data
        lock = self.locks[pcd.firstbyte]
        if not have_lock:
            lock.write_lock()
        try:
            del pcd.pgps[pgp]
            pcd.ref_count -= 1
            pgp.data = None
            if pcd.ref_count:
                return
            if self.trace is not None:
                self.trace(LAST_USER)
            host = self.host
            self.trees[pcd.firstbyte].erase(pcd.rbnode)
            pcd.rbnode = None
            host.global_pcd_count -= 1
            if pcd.compressed:
                host._data_free(pool, pcd.data, pcd.size)
                host.pcd_tot_csize -= pcd.size
            elif pcd.size < PAGE_SIZE:
                host.pcd_tot_tze_size -= pcd.size
                if pcd.size:
                    host._data_free(pool, pcd.data, pcd.size)
            else:
                if self.tze:
                    host.pcd_tot_tze_size -= PAGE_SIZE
                if host.compress:
                    host.pcd_tot_csize -= PAGE_SIZE
                host._free_data_frame(pool, pcd.data)
            pcd.data = None
            host.infra_pool.free(pcd.meta)
            pcd.meta = None
        finally:
            lock.write_unlock()

    # --- get ------------------------------------------------------------------------------------
    def copy_out(self, pgp, out) -> None:
        """Xen: ``pcd_copy_to_client`` — the page a pgp's pcd holds, into the guest's frame,
        under the tree's read lock: decompressed, or the tze bytes then zeros, or the frame."""
        pcd = pgp.data
        host = self.host
        lock = self.locks[pcd.firstbyte]
        lock.read_lock()
        try:
            size = pcd.size
            if pcd.compressed:
                out[:] = host.codec.decompress(bytes(host._data_read(pcd.data, size)))
            elif size == PAGE_SIZE:
                o = pcd.data << 12
                out[:] = host.mem.bytes[o:o + PAGE_SIZE]
            else:
                if size:
                    out[:size] = host._data_read(pcd.data, size)
                out[size:] = bytes(PAGE_SIZE - size)
        finally:
            lock.read_unlock()

    # --- invariants -----------------------------------------------------------------------------
    def pcds(self):
        """Every pcd, tree by tree, each tree in key order."""
        for tree in self.trees:
            for node in tree:
                yield node.value

    def check(self, eph_pgps: set) -> list:
        """Verify invariants 1-3 of :class:`Pcd` and the layer's totals; ``eph_pgps`` is the
        set of ids of every live ephemeral pgp (each must reach exactly one pcd). Returns the
        frames the pcds hold (the host checks their ownership). Raises
        :class:`InvariantError`."""
        host = self.host
        n = csize = tze = users = 0
        frames = []
        for fb, tree in enumerate(self.trees):
            if tree.root is None and tree.count == 0:
                continue
            tree.check()
            for node in tree:
                pcd = node.value
                n += 1
                if pcd.firstbyte != fb or pcd.rbnode is not node or node.key != pcd.key:
                    raise InvariantError(f"pcd invariant 1: {pcd} sits in tree {fb} under "
                                         f"another key or node")
                if not pcd.compressed and pcd.size < PAGE_SIZE and (
                        pcd.size % 8 or pcd.size > PCD_TZE_MAX_SIZE
                        or (pcd.size == 0) != (pcd.data is None)):
                    raise InvariantError(f"pcd invariant 3: {pcd} has a bad tze size")
                stored = self.stored_bytes(pcd)
                want = content_key(stored, pcd.compressed)
                if (pcd.key[:3] if len(pcd.key) == 4 else pcd.key) != want or \
                        (stored[:1] and stored[0] != fb):
                    raise InvariantError(f"pcd invariant 1: {pcd}'s key is not the key of "
                                         f"what it stores")
                if pcd.ref_count != len(pcd.pgps) or pcd.ref_count < 1:
                    raise InvariantError(f"pcd invariant 2: {pcd} counts {pcd.ref_count} "
                                         f"users, lists {len(pcd.pgps)}")
                for pgp in pcd.pgps:
                    if pgp.data is not pcd or id(pgp) not in eph_pgps:
                        raise InvariantError(f"pcd invariant 2: {pgp} is listed by {pcd} "
                                             "but does not use it (or is not a live page)")
                users += pcd.ref_count
                if pcd.compressed:
                    csize += pcd.size
                elif pcd.size == PAGE_SIZE:
                    frames.append(pcd.data)
                    tze += PAGE_SIZE if self.tze else 0
                    csize += PAGE_SIZE if host.compress else 0
                else:
                    tze += pcd.size
        if users != len(eph_pgps):
            raise InvariantError(f"pcd invariant 2: {len(eph_pgps)} ephemeral pages but the "
                                 f"pcds have {users} users")
        if (n, csize, tze) != (host.global_pcd_count, host.pcd_tot_csize, host.pcd_tot_tze_size):
            raise InvariantError(f"pcd totals: {n} pcds / {csize} B compressed / {tze} B tze "
                                 f"held, counters say {host.global_pcd_count} / "
                                 f"{host.pcd_tot_csize} / {host.pcd_tot_tze_size}")
        return frames

    def stored_bytes(self, pcd) -> bytes:
        """What a pcd stores: the compressed bytes, the tze bytes, or the whole frame."""
        if pcd.size == PAGE_SIZE and not pcd.compressed:
            o = pcd.data << 12
            return bytes(self.host.mem.bytes[o:o + PAGE_SIZE])
        return bytes(self.host._data_read(pcd.data, pcd.size)) if pcd.size else b""
