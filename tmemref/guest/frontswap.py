"""Linux: frontswap on Xen tmem — ``tmem_frontswap_*`` of ``drivers/xen/tmem.c``.

Frontswap catches pages on their way to a swap device. Before the kernel writes a page to swap
it tries to *store* it in tmem; if that works the disk write is skipped, and the later swap-in
*loads* it back. A stored page must stay until the kernel invalidates it, so frontswap uses one
**persistent** private pool for every swap device, created on the first ``swapon``; its pages
are billed to the guest, and a store fails (the page goes to disk) when the guest is at its
allocation.

A swap page is named by (type, offset): the swap device and the page's slot in it. The Xen shim
**swizzles** that into a handle so that one device's pages spread over 16 objects instead of
one — 16 radix trees and 16 object locks instead of one hot one ("increasing tmem concurrency"):

    oid = ((type << 4) | (offset & 0xF), 0, 0)      index = offset >> 4

>>> swizzle(1, 0x123)
((19, 0, 0), 18)
>>> unswizzle((19, 0, 0), 18)
(1, 291)
>>> from tmemref import Host
>>> host = Host(pages=1024)
>>> _ = host.create_domain(1, pages=64, max_pages=256)
>>> fs = Frontswap(host, 1)
>>> fs.init(0)                                     # swapon: the one persistent pool
0
>>> fs.store(0, 5, b"S" * 4096)
0
>>> buf = bytearray(4096)
>>> fs.load(0, 5, buf), fs.load(0, 5, buf)         # persistent: a load leaves it there
(0, 0)
"""
from __future__ import annotations

from typing import Tuple

from .. import abi
from .ops import PAGE_SIZE, PRIVATE_UUID, TmemOps

#: Linux: SWIZ_BITS — low offset bits that pick one of 16 objects per swap type.
SWIZ_BITS = 4
SWIZ_MASK = (1 << SWIZ_BITS) - 1
_U32 = 1 << 32
#: ``type << SWIZ_BITS`` is computed in 32-bit unsigned arithmetic in Linux.
MAX_TYPE = 1 << (32 - SWIZ_BITS)


def _check(type_: int, offset: int) -> None:
    if type(type_) is not int or not 0 <= type_ < MAX_TYPE:
        raise ValueError(f"swap type must be an int in [0, 2**28), not {type_!r}")
    if type(offset) is not int or not 0 <= offset < (1 << 64):
        raise ValueError(f"a swap offset is a pgoff_t (unsigned 64-bit), not {offset!r}")


def swizzle(type_: int, offset: int) -> Tuple[abi.Oid, int]:
    """Linux: ``oswiz``/``iswiz`` — the tmem (oid, index) of swap slot (type, offset).

    Postconditions: ``oid[1] == oid[2] == 0``; ``oid[0] >> 4 == type``; the 16 consecutive
    offsets ``16k .. 16k+15`` share ``index == k`` and go to 16 different objects;
    :func:`unswizzle` inverts it. ``offset`` must be below 2**32 (callers reject larger).

    >>> swizzle(0, 0), swizzle(0, 15), swizzle(0, 16)
    (((0, 0, 0), 0), ((15, 0, 0), 0), ((0, 0, 0), 1))
    """
    _check(type_, offset)
    if offset >= _U32:
        raise ValueError(f"offset {offset:#x} does not fit in 32 bits (frontswap rejects it)")
    return ((type_ << SWIZ_BITS) | (offset & SWIZ_MASK), 0, 0), offset >> SWIZ_BITS


def unswizzle(oid: abi.Oid, index: int) -> Tuple[int, int]:
    """The swap slot (type, offset) a frontswap handle stands for (inverse of :func:`swizzle`).

    >>> unswizzle(*swizzle(3, 0xABCDE))
    (3, 703710)
    """
    if oid[1] or oid[2]:
        raise ValueError(f"{oid} is not a frontswap object id (words 1 and 2 must be 0)")
    return oid[0] >> SWIZ_BITS, (index << SWIZ_BITS) | (oid[0] & SWIZ_MASK)


class Frontswap:
    """Linux: the Xen tmem backend of frontswap (``tmem_frontswap_ops``), one guest's.

    ``Frontswap(host, domid, trace=False)`` (``trace`` as for
    :class:`~tmemref.guest.ops.TmemOps`). ``pool_id`` is -1 until :meth:`init` creates
    the single persistent private pool (a failed creation leaves it negative and the next
    ``init`` tries again); while it is negative every store and load fails with -1.

    Methods: :meth:`init`, :meth:`store`, :meth:`load`, :meth:`invalidate_page` (one
    hypercall each), :meth:`invalidate_area` (16 hypercalls). ``ops`` is the underlying
    :class:`~tmemref.guest.ops.TmemOps` (its ``trace`` records every hypercall).

    Counters (``/sys/kernel/debug/frontswap``, kept by ``mm/frontswap.c``):

    * ``loads`` — loads that returned the page;
    * ``succ_stores`` / ``failed_stores`` — stores that returned 0 / -1;
    * ``invalidates`` — ``invalidate_page`` calls.

    Xen/Linux: the frontend ``mm/frontswap.c`` also keeps a bitmap of stored offsets per swap
    device: it loads and invalidates only offsets it stored, and (in later kernels) invalidates
    an offset before storing it again, so tmem's duplicate put is then never used. That bitmap
    is not modelled: every call here reaches the hypervisor, and ``invalidates`` counts every
    call.
    """

    def __init__(self, host, domid: int, trace=False):
        self.ops = TmemOps(host, domid, trace)   # the raw hypercalls
        self.pool_id = -1                 # the persistent pool; < 0: none (yet)
        self.loads = 0                    # successful loads
        self.succ_stores = 0              # stores that returned 0
        self.failed_stores = 0            # stores that returned -1
        self.invalidates = 0              # invalidate_page calls

    def init(self, type_: int) -> int:
        """Linux: ``tmem_frontswap_init`` (at swapon of device ``type_``) — create the one
        persistent private pool if there is none yet. Returns the pool id (or the negative
        errno of a failed creation)."""
        if self.pool_id < 0:
            self.pool_id = self.ops.new_pool(abi.TMEM_POOL_PERSIST, PRIVATE_UUID, PAGE_SIZE)
        return self.pool_id

    def store(self, type_: int, offset: int, page) -> int:
        """Linux: ``tmem_frontswap_store`` — 0 if tmem took the page (PUT_PAGE returned 1),
        else -1: no pool, ``offset >= 2**32``, or Xen refused (e.g. -ENOMEM at the guest's
        allocation, -EFROZEN). A failed put of an existing handle flushed the old copy."""
        _check(type_, offset)
        ret = -1
        if self.pool_id >= 0 and offset < _U32:
            oid, index = swizzle(type_, offset)
            ret = 0 if self.ops.put_page(self.pool_id, oid, index, page) == 1 else -1
        if ret == 0:
            self.succ_stores += 1
        else:
            self.failed_stores += 1
        return ret

    def load(self, type_: int, offset: int, buf) -> int:
        """Linux: ``tmem_frontswap_load`` — 0 and ``buf`` filled if GET_PAGE returned 1,
        else -1. The page stays in tmem (persistent pools never lose a page to a get)."""
        _check(type_, offset)
        ret = -1
        if self.pool_id >= 0 and offset < _U32:
            oid, index = swizzle(type_, offset)
            ret = 0 if self.ops.get_page(self.pool_id, oid, index, buf) == 1 else -1
        if ret == 0:
            self.loads += 1
        return ret

    def invalidate_page(self, type_: int, offset: int) -> None:
        """Linux: ``tmem_frontswap_flush_page`` — the swap slot was freed: FLUSH_PAGE."""
        _check(type_, offset)
        self.invalidates += 1
        if self.pool_id < 0 or offset >= _U32:
            return
        oid, index = swizzle(type_, offset)
        self.ops.flush_page(self.pool_id, oid, index)

    def invalidate_area(self, type_: int) -> None:
        """Linux: ``tmem_frontswap_flush_area`` — swapoff of device ``type_``: FLUSH_OBJECT on
        its 16 swizzled objects, from the last (low bits 15) to the first, as Linux did."""
        _check(type_, 0)
        if self.pool_id < 0:
            return
        for low in range(SWIZ_MASK, -1, -1):
            self.ops.flush_object(self.pool_id, swizzle(type_, low)[0])

    def counters(self) -> dict:
        """The debugfs counters, by name."""
        return {"loads": self.loads, "succ_stores": self.succ_stores,
                "failed_stores": self.failed_stores, "invalidates": self.invalidates}

    def __repr__(self):
        return f"<Frontswap dom{self.ops.domid} pool={self.pool_id} {self.counters()}>"
