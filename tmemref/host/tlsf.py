"""Xen: ``xen/common/xmalloc_tlsf.c`` — the Two-Level Segregated Fit allocator behind tmem's
sub-page allocations (objects, pgps, radix nodes, compressed pages).

A pool (:class:`Tlsf`, Xen's ``struct xmem_pool``) grows by one frame at a time. Each frame is
one *region*, tiled by *blocks*; every block starts with a 16-byte header (the x86-64 layout of
Xen's ``struct bhdr``: the previous block's address, then the size with two flag bits) and the
region ends with a sentinel header of size 0::

    offset 0     16               16+s   32+s               4080        4096
           | hdr | payload (s bytes) | hdr | payload ... |  | sentinel hdr |

The headers live where Xen keeps them: in the frames themselves, read and written as
little-endian 64-bit words of host memory (word index = byte address >> 3). At header address
``b``::

    word 0  prev_hdr   header of the block physically before (NO_BLOCK for the first)
    word 1  size       payload bytes | FREE_BLOCK (0x1) | PREV_FREE (0x2)
    word 2  prev free  a FREE block only (its payload): the block before it on its free list
    word 3  next free  ... and the block after it (Xen's ``struct free_ptr``: prev, then next)

"No block" is :data:`NO_BLOCK`, all ones, where Xen writes NULL: address 0 is frame 0's first
header here. A pool's Python state is the bitmaps, the free-list heads (Xen's ``matrix``)
and the set of frames held: a block costs no Python object at all.

A fresh region is one free block of ``PAGE_SIZE - 2 * BHDR_OVERHEAD`` = 4064 bytes, the
largest block there can be, which Xen reports as the pool's maximum allocation
(:data:`MAX_ALLOC`, ``xmem_pool_maxalloc``; tmem keeps a compressed page iff
``0 < size < MAX_ALLOC``).

Free blocks sit on segregated free lists indexed by two levels: the first level (``fl``) is the
power of two of the size (sizes below 128 bytes all go to ``fl`` 0), the second (``sl``) splits
that power of two into 32 equal steps. A bitmap per level says which lists are non-empty, so
finding a list with a big enough block is a couple of bit tricks, O(1). Each list is doubly
linked through the free blocks' words 2 and 3: a block goes on at the head and comes off
anywhere in O(1). A request is rounded
*up* to the start of the next class (:func:`mapping_search`), so any block on that list or a
higher one fits ("good fit"). A consequence worth knowing: requests of
``LARGEST_FIT + 1 .. MAX_ALLOC`` (4033..4064 bytes) round up to 4096 and can never be served,
although they are below :data:`MAX_ALLOC`; so in Xen 4.12 a page that compresses to 4033..4063
bytes is kept "compressed", its allocation fails, and the put fails with -ENOMEM
(``compress_nomem``) where storing it whole would have worked.

The named cases, used in the code, the tests and the book:

* **region-new** — no list has a big enough block: take a frame (``get_frame``) and make it one
  free block. The first frame is taken this way too, lazily, on the first allocation;
* **split** — the block found is at least a header plus a minimum block bigger than asked: the
  tail becomes a free block of its own, on its free list;
* **no-split** — the leftover would be too small to be a block: the whole block is handed out;
* **coalesce-next** / **coalesce-prev** — a freed block merges with a free physical neighbour
  after / before it (both may happen on one free);
* **region-return** — after coalescing, the free block spans its whole region: the frame goes
  back at once (``put_frame``).

>>> frames = [7, 3]
>>> t = Tlsf("demo", frames.pop, frames.append)
>>> a = t.alloc(100); hex(a), t.usable_size(a), t.num_regions       # region-new, then split
('0x3010', 112, 1)
>>> t.used_size                                   # 112 + 16 (header) + 16 (sentinel)
144
>>> [t._mem[(a >> 3) - 2 + k] for k in (0, 1)] == [NO_BLOCK, 112]    # its header, in frame 3
True
>>> t.free(a); t.num_regions, frames                                # region-return
(0, [7, 3])
"""
from __future__ import annotations

from ..errors import InvariantError
from .frames import PAGE_SIZE

__all__ = ["Tlsf", "MAX_ALLOC", "LARGEST_FIT", "BHDR_OVERHEAD", "MIN_BLOCK_SIZE", "MEM_ALIGN",
           "MAX_SLI", "FL_COUNT", "mapping_insert", "mapping_search", "class_range"]

PAGE_SHIFT = PAGE_SIZE.bit_length() - 1
PAGE_MASK = PAGE_SIZE - 1
POINTER_SIZE = 8                                  # x86-64
MEM_ALIGN = 2 * POINTER_SIZE                      # every block size is a multiple of this
MIN_BLOCK_SIZE = 2 * POINTER_SIZE                 # payload of a free block: its two list links
BHDR_SIZE = POINTER_SIZE + 8 + MIN_BLOCK_SIZE     # struct bhdr: prev_hdr, u32 size (padded), links
BHDR_OVERHEAD = BHDR_SIZE - MIN_BLOCK_SIZE        # header bytes in front of every payload: 16
MAX_ALLOC = PAGE_SIZE - 2 * BHDR_OVERHEAD         # a region's single free block: 4064

MAX_LOG2_SLI = 5
MAX_SLI = 1 << MAX_LOG2_SLI                       # second-level lists per power of two: 32
FLI_OFFSET = 6                                    # fl 1 starts at 2**(FLI_OFFSET + 1) = 128
SMALL_BLOCK = 128                                 # below: fl 0, one list per 4 bytes
MAX_FLI = 30
REAL_FLI = MAX_FLI - FLI_OFFSET                   # first-level bits in Xen's bitmap: 24

FREE_BLOCK = 0x1                                  # size word bit 0: this block is free
PREV_FREE = 0x2                                   # size word bit 1: the block before is free
SIZE_MASK = ~0x3
NO_BLOCK = (1 << 64) - 1                          # a header word naming no block (Xen: NULL)
HDR_WORDS = BHDR_OVERHEAD >> 3                    # words from a header to its payload: 2
END_WORD = (PAGE_SIZE - BHDR_OVERHEAD) >> 3       # word offset of a region's sentinel: 510

#: Named cases (see the module docstring).
REGION_NEW, SPLIT, NO_SPLIT = "region-new", "split", "no-split"
COALESCE_NEXT, COALESCE_PREV, REGION_RETURN = "coalesce-next", "coalesce-prev", "region-return"


def mapping_insert(size: int) -> tuple:
    """``(fl, sl)`` of the free list a free block of ``size`` bytes goes on. O(1).

    >>> mapping_insert(112), mapping_insert(240), mapping_insert(MAX_ALLOC)
    ((0, 28), (1, 28), (5, 31))
    """
    if size < SMALL_BLOCK:
        return 0, size // (SMALL_BLOCK // MAX_SLI)
    fl = size.bit_length() - 1
    return fl - FLI_OFFSET, (size >> (fl - MAX_LOG2_SLI)) - MAX_SLI


def mapping_search(size: int) -> tuple:
    """``(block, fl, sl)`` for a request of ``size`` bytes: the request rounded to the minimum
    block and the alignment, then up to the start of its class, and that class, where the search
    starts. Any block on list ``(fl, sl)`` or a higher one has at least ``block`` bytes. O(1).

    >>> mapping_search(1), mapping_search(100), mapping_search(2064), mapping_search(4033)
    ((16, 0, 4), (112, 0, 28), (2112, 5, 1), (4096, 6, 0))
    """
    r = MIN_BLOCK_SIZE if size < MIN_BLOCK_SIZE else (size + MEM_ALIGN - 1) & -MEM_ALIGN
    if r < SMALL_BLOCK:
        return r, 0, r // (SMALL_BLOCK // MAX_SLI)
    t = (1 << (r.bit_length() - 1 - MAX_LOG2_SLI)) - 1
    r += t
    fl = r.bit_length() - 1
    return r & ~t, fl - FLI_OFFSET, (r >> (fl - MAX_LOG2_SLI)) - MAX_SLI


def class_range(fl: int, sl: int) -> tuple:
    """``(lo, hi)``: the block sizes ``lo <= size < hi`` that list ``(fl, sl)`` holds. O(1)."""
    if fl == 0:
        step = SMALL_BLOCK // MAX_SLI
        return sl * step, (sl + 1) * step
    step = 1 << (fl + FLI_OFFSET - MAX_LOG2_SLI)
    lo = (1 << (fl + FLI_OFFSET)) + sl * step
    return lo, lo + step


#: Largest request that can be served (its rounded size still fits a fresh region).
LARGEST_FIT = max(s for s in range(1, MAX_ALLOC + 1) if mapping_search(s)[0] <= MAX_ALLOC)
#: First-level classes a one-frame region can use (fl 0..5; Xen's bitmap has REAL_FLI bits).
FL_COUNT = mapping_insert(MAX_ALLOC)[0] + 1

# Precomputed tables, indexed by size (every size here is <= MAX_ALLOC).
_SEARCH = [None] + [(b, fl, -1 << sl) if b <= MAX_ALLOC else None
                    for b, fl, sl in map(mapping_search, range(1, MAX_ALLOC + 1))]
_FFS = {1 << i: i for i in range(max(REAL_FLI, MAX_SLI))}      # lowest set bit -> its index
_INSERT = [fl << MAX_LOG2_SLI | sl for fl, sl in map(mapping_insert, range(MAX_ALLOC + 1))]


def _words(buf):
    """``buf`` (any writable C-contiguous buffer: a bytearray, a numpy array, a memoryview) as
    native 64-bit words: little-endian on x86-64, as Xen's."""
    v = memoryview(buf).cast("B")
    if v.readonly:
        raise TypeError("a pool's memory must be writable")
    return v.cast("Q")


def _hex(a) -> str:
    return "none" if a == NO_BLOCK else f"{a:#x}"


class Tlsf:
    """Xen: ``struct xmem_pool`` — one TLSF pool whose regions are single frames.

    ``Tlsf(name, get_frame, put_frame, *, lock=None, memory=None)``: ``get_frame()`` returns a
    frame number or None; ``put_frame(f)`` takes one back. ``lock`` (a
    :class:`~tmemref.host.locks.SpinLock` of rank ``RANK_XMEM``) is held around the pool's
    changes, *released* around ``get_frame`` (Xen drops the pool lock to call ``get_mem``,
    which may reach the heap, a lower rank) and held around ``put_frame``. ``memory`` is the
    writable buffer the frames live in, frame ``f`` at bytes ``f << 12 .. (f << 12) + 4095``
    (:class:`~tmemref.host.frames.HostMemory`'s ``bytes`` or ``data``): the block headers are
    written there. Without it (a standalone pool: doctests, tests, benchmarks) the pool keeps a
    private zeroed bytearray, doubled whenever a frame beyond its end arrives.

    ==========================  ============================================================
    :meth:`alloc`               ``size`` bytes -> payload address ``frame << 12 | offset``
    :meth:`free`                give a block back (coalesce, maybe return its frame)
    :meth:`usable_size`         bytes a block really has (its request rounded up)
    :meth:`destroy`             give every frame back
    :meth:`describe`            plain-data snapshot for pictures
    :meth:`check`               verify the invariants below
    ==========================  ============================================================

    Counters: ``used_size`` (Xen's: payload and header of every used block, plus each region's
    sentinel header), ``num_regions`` (frames held), ``total_size`` (their bytes), ``failed``
    (allocations that returned None, Xen's ``alloc_failed``).

    Invariants (:meth:`check`), over the header words in memory (module docstring):

    1. The bitmaps match the free lists: bit ``sl`` of ``sl_bitmap[fl]`` is set iff list
       ``(fl, sl)`` is non-empty, and bit ``fl`` of ``fl_bitmap`` iff ``sl_bitmap[fl] != 0``.
    2. Each free list is a proper doubly linked list (the head's prev link is none, every other
       member's names the member before it, no block is listed twice); every block on list
       ``(fl, sl)`` is free and its size maps to ``(fl, sl)``; every free block is on a list.
    3. The blocks tile each held region exactly: from offset 0, each header follows the previous
       payload, sizes are multiples of 16 and at least 16, and the last header is the size-0
       sentinel at ``PAGE_SIZE - 16``; every block on a free list is one of these headers.
    4. Each block's ``prev_hdr`` word names the block physically before it (none for the
       first), and its ``PREV_FREE`` bit says whether that block is free.
    5. Free blocks are coalesced: no two free blocks are neighbours, and no region is one free
       block (it would have been returned).
    6. ``used_size`` and ``num_regions`` equal the sums over the regions.

    Xen: a request that can never be served (over :data:`LARGEST_FIT`) is refused before any
    frame is taken, where Xen's very first allocation takes (and keeps) its first region
    before finding that out. ``destroy`` gives the frames
    back, where ``xmem_pool_destroy`` only reports bytes still in use. No ``max_size``
    (tmem passes 0: unlimited). "No block" is all ones, not NULL, and a block leaving a free
    list keeps its stale links (Xen zeroes them): nothing reads a used block's payload.
    """
    __slots__ = ("name", "lock", "_get_frame", "_put_frame", "_mem", "_buf", "_heads",
                 "_fl", "_sl", "_regions", "used_size", "num_regions", "failed")

    def __init__(self, name: str, get_frame, put_frame, *, lock=None, memory=None):
        self.name = name                # pool name (Xen: "tmem", or a client's "client:N")
        self.lock = lock                # SpinLock of rank RANK_XMEM, or None (single thread)
        self._get_frame = get_frame     # () -> frame or None (Xen: get_mem)
        self._put_frame = put_frame     # (frame) -> None (Xen: put_mem)
        self._buf = bytearray() if memory is None else None   # private memory, grown on demand
        self._mem = _words(self._buf if memory is None else memory)   # the frames, as u64 words
        # free-list heads (Xen: matrix), index fl << 5 | sl: the first block's header, or NO_BLOCK
        self._heads = [NO_BLOCK] * (FL_COUNT * MAX_SLI)
        self._fl = 0                    # first-level bitmap
        self._sl = [0] * REAL_FLI       # second-level bitmaps
        self._regions: dict = {}        # frame -> None, the regions held (insertion ordered)
        self.used_size = 0              # bytes used (Xen: used_size)
        self.num_regions = 0            # frames held (Xen: num_regions)
        self.failed = 0                 # allocations that returned None (Xen: alloc_failed)

    @property
    def total_size(self) -> int:
        """Bytes of the frames held (Xen's total adds the pool struct itself)."""
        return self.num_regions * PAGE_SIZE

    @property
    def frames(self) -> list:
        """The frames held, sorted. O(regions log regions)."""
        return sorted(self._regions)

    def alloc(self, size: int):
        """The payload address of a new block of at least ``size`` bytes, or None (counted in
        ``failed``) if ``size > LARGEST_FIT`` or no frame could be had; then nothing changed.
        Cases: region-new (maybe), split or no-split. O(1) plus ``get_frame``.

        Xen: ``xmem_pool_alloc``.
        """
        if size.__class__ is not int or not 0 < size <= LARGEST_FIT:
            return self._refuse(size)
        want, fl, mask = _SEARCH[size]
        added = None
        lock = self.lock
        if lock is not None:
            lock.acquire()
        try:
            sl_bm = self._sl
            while True:
                t = sl_bm[fl] & mask                   # a big enough list in this fl?
                if t:
                    break
                t = self._fl & (-2 << fl)              # else the first non-empty higher fl
                if t:
                    fl = _FFS[t & -t]
                    t = sl_bm[fl]
                    break
                # region-new: drop the lock while the frame is fetched (Xen drops it for get_mem)
                if lock is not None:
                    lock.release()
                try:
                    f = self._get_frame()
                finally:
                    if lock is not None:
                        lock.acquire()
                if f is None:
                    self.failed += 1
                    return None
                self._add_region(f)
                added = f
            bit = t & -t
            i = fl << MAX_LOG2_SLI | _FFS[bit]
            heads = self._heads
            m = self._mem                              # (read after _add_region: it may grow)
            b = heads[i]                               # the list head, unlinked:
            h = b >> 3
            n = m[h + 3]                               # its next becomes the head
            heads[i] = n
            if n == NO_BLOCK:
                t = sl_bm[fl] = sl_bm[fl] ^ bit
                if not t:
                    self._fl ^= 1 << fl
            else:
                m[(n >> 3) + 2] = NO_BLOCK
            w = m[h + 1]
            bsize = w & SIZE_MASK
            rest = bsize - want
            if rest >= BHDR_SIZE:
                # split: the tail becomes a free block (its successor's PREV_FREE stays set)
                b2 = b + BHDR_OVERHEAD + want
                h2 = b2 >> 3
                rest -= BHDR_OVERHEAD
                m[h2] = b
                m[h2 + 1] = rest | FREE_BLOCK
                m[(b + BHDR_OVERHEAD + bsize) >> 3] = b2
                i = _INSERT[rest]                      # self._insert(b2, rest), inlined
                n = heads[i]
                m[h2 + 2] = NO_BLOCK
                m[h2 + 3] = n
                if n == NO_BLOCK:
                    fl = i >> MAX_LOG2_SLI
                    sl_bm[fl] |= 1 << (i & 31)
                    self._fl |= 1 << fl
                else:
                    m[(n >> 3) + 2] = b2
                heads[i] = b2
                m[h + 1] = want | (w & PREV_FREE)
            else:
                # no-split: hand out the whole block
                n = (b + BHDR_OVERHEAD + bsize) >> 3
                m[n + 1] &= ~PREV_FREE
                m[h + 1] = w & ~FREE_BLOCK
                want = bsize
            self.used_size += want + BHDR_OVERHEAD
            if added is not None and b >> PAGE_SHIFT != added:
                self._unused_region(added)
            return b + BHDR_OVERHEAD
        finally:
            if lock is not None:
                lock.release()

    def _refuse(self, size):
        """alloc's slow path: a bad size raises; one that cannot fit counts as failed."""
        if size.__class__ is not int:
            raise TypeError(f"size must be an int, not {type(size).__name__}")
        if size <= 0:
            raise ValueError(f"size must be positive, not {size}")
        self.failed += 1
        return None

    def free(self, addr: int) -> None:
        """Give back the block whose payload is at ``addr``. ``ValueError`` (nothing changes) if
        ``addr`` is not the payload of an allocated block. Cases: coalesce-next, coalesce-prev,
        region-return. O(1) plus ``put_frame``.

        Xen: ``xmem_pool_free``, which trusts its caller. Here ``addr - 16`` is checked in
        O(1) to be a used block's header (:meth:`_allocated`): 16-aligned, in a held frame, its
        size word says used, at least 16 bytes and ending inside the frame, and the header
        that size leads to links back to it. A real header's ``prev_hdr`` names a real header,
        so an address inside a payload passes only where the frame holds words that look like
        a used header and a successor naming it: a payload's own bytes, or headers an earlier
        owner of the frame left behind (the stale headers the pool leaves inside merged blocks
        are marked free, and fail). Walking the chain would settle it, in O(blocks of the
        frame); Xen checks nothing.
        """
        if addr.__class__ is not int:
            raise TypeError(f"address must be an int, not {type(addr).__name__}")
        b = addr - BHDR_OVERHEAD
        lock = self.lock
        if lock is not None:
            lock.acquire()
        try:
            # self._allocated(b), inlined
            if b & 15 or b >> PAGE_SHIFT not in self._regions:
                raise self._not_allocated(addr)
            m = self._mem
            h = b >> 3
            w = m[h + 1]
            bsize = w & SIZE_MASK
            n = h + HDR_WORDS + (bsize >> 3)           # the next header's words
            if w & FREE_BLOCK or bsize < MIN_BLOCK_SIZE or (b & PAGE_MASK) + bsize > MAX_ALLOC \
                    or m[n] != b:
                raise self._not_allocated(addr)
            self.used_size -= bsize + BHDR_OVERHEAD
            heads = self._heads
            wn = m[n + 1]
            if wn & FREE_BLOCK:
                # coalesce-next: absorb the free block after (its header stays, marked free)
                nsize = wn & SIZE_MASK
                lp, ln = m[n + 2], m[n + 3]            # self._extract(next, nsize), inlined
                if ln != NO_BLOCK:
                    m[(ln >> 3) + 2] = lp
                if lp != NO_BLOCK:
                    m[(lp >> 3) + 3] = ln
                else:                                  # it was its list's head
                    i = _INSERT[nsize]
                    heads[i] = ln
                    if ln == NO_BLOCK:
                        self._clear_bits(i)
                bsize += nsize + BHDR_OVERHEAD
                n += HDR_WORDS + (nsize >> 3)
                m[n] = b
                wn = m[n + 1]
            if w & PREV_FREE:
                # coalesce-prev: the free block before absorbs this one; this header stays in
                # the payload marked free, as Xen's does, so no stale header looks used
                m[h + 1] = w | FREE_BLOCK
                p = m[h]
                h = p >> 3
                psize = m[h + 1] & SIZE_MASK
                lp, ln = m[h + 2], m[h + 3]            # self._extract(p, psize), inlined
                if ln != NO_BLOCK:
                    m[(ln >> 3) + 2] = lp
                if lp != NO_BLOCK:
                    m[(lp >> 3) + 3] = ln
                else:
                    i = _INSERT[psize]
                    heads[i] = ln
                    if ln == NO_BLOCK:
                        self._clear_bits(i)
                bsize += psize + BHDR_OVERHEAD
                b = p
                m[n] = b
            if bsize == MAX_ALLOC:
                # region-return: the block spans its whole frame (Xen: no block before it and
                # the sentinel after it); the frame goes back unscrubbed, headers and all
                f = b >> PAGE_SHIFT
                del self._regions[f]
                self.num_regions -= 1
                self.used_size -= BHDR_OVERHEAD          # the sentinel
                self._put_frame(f)
                return
            m[h + 1] = bsize | FREE_BLOCK
            i = _INSERT[bsize]                         # self._insert(b, bsize), inlined
            ln = heads[i]
            m[h + 2] = NO_BLOCK
            m[h + 3] = ln
            if ln == NO_BLOCK:
                fl = i >> MAX_LOG2_SLI
                self._sl[fl] |= 1 << (i & 31)
                self._fl |= 1 << fl
            else:
                m[(ln >> 3) + 2] = b
            heads[i] = b
            m[n + 1] = wn | PREV_FREE
        finally:
            if lock is not None:
                lock.release()

    def usable_size(self, addr: int) -> int:
        """Payload bytes of the allocated block at ``addr`` (its request rounded up); ``ValueError``
        if there is none (checked as :meth:`free` does). O(1)."""
        w = self._allocated(addr - BHDR_OVERHEAD) if addr.__class__ is int else None
        if w is None:
            raise self._not_allocated(addr)
        return w & SIZE_MASK

    def destroy(self) -> int:
        """Give every frame back, whatever is still allocated (the owner is gone); returns how
        many. O(regions)."""
        lock = self.lock
        if lock is not None:
            lock.acquire()
        try:
            frames = list(self._regions)
            self._heads[:] = [NO_BLOCK] * len(self._heads)
            self._regions.clear()
            self._fl = 0
            self._sl = [0] * REAL_FLI
            self.used_size = self.num_regions = 0
            for f in frames:
                self._put_frame(f)
            return len(frames)
        finally:
            if lock is not None:
                lock.release()

    # -- internals (caller holds the lock) ------------------------------------------------

    def _not_allocated(self, addr) -> ValueError:
        return ValueError(f"{self.name}: {addr:#x} is not an allocated block"
                          if addr.__class__ is int else
                          f"{self.name}: {addr!r} is not an allocated block")

    def _allocated(self, b: int):
        """The size word of the allocated block whose header is at ``b``, or None: the O(1)
        check that :meth:`free` inlines (its docstring says what it proves)."""
        if b & 15 or b >> PAGE_SHIFT not in self._regions:
            return None
        m = self._mem
        w = m[(b >> 3) + 1]
        bsize = w & SIZE_MASK
        if w & FREE_BLOCK or bsize < MIN_BLOCK_SIZE or (b & PAGE_MASK) + bsize > MAX_ALLOC \
                or m[(b + BHDR_OVERHEAD + bsize) >> 3] != b:
            return None
        return w

    def _insert(self, b: int, bsize: int) -> None:
        """Push free block ``b`` on the head of its list (alloc and free inline this). O(1)."""
        m, i = self._mem, _INSERT[bsize]
        n = self._heads[i]
        m[(b >> 3) + 2] = NO_BLOCK
        m[(b >> 3) + 3] = n
        if n == NO_BLOCK:
            self._set_bits(i)
        else:
            m[(n >> 3) + 2] = b
        self._heads[i] = b

    def _extract(self, b: int, bsize: int) -> None:
        """Unlink free block ``b`` from its list, wherever it is on it (free inlines this).
        O(1)."""
        m = self._mem
        lp, ln = m[(b >> 3) + 2], m[(b >> 3) + 3]
        if ln != NO_BLOCK:
            m[(ln >> 3) + 2] = lp
        if lp != NO_BLOCK:
            m[(lp >> 3) + 3] = ln
        else:                                          # the head (it has no prev)
            i = _INSERT[bsize]
            self._heads[i] = ln
            if ln == NO_BLOCK:
                self._clear_bits(i)

    def _set_bits(self, i: int) -> None:
        """List ``i`` is no longer empty: set its bits in both bitmaps."""
        fl = i >> MAX_LOG2_SLI
        self._sl[fl] |= 1 << (i & 31)
        self._fl |= 1 << fl

    def _clear_bits(self, i: int) -> None:
        """List ``i`` became empty: clear its bit, and its first-level bit if it was the last."""
        fl = i >> MAX_LOG2_SLI
        t = self._sl[fl] = self._sl[fl] & ~(1 << (i & 31))
        if not t:
            self._fl &= ~(1 << fl)

    def _add_region(self, f: int) -> None:
        """region-new: frame ``f`` becomes one free block and the sentinel after it (the rest
        of the frame is not touched: a frame off tmem_page_list is not scrubbed)."""
        b = f << PAGE_SHIFT
        m = self._mem
        if (b + PAGE_SIZE) >> 3 > len(m):
            m = self._grow(f)
        h = b >> 3
        m[h] = NO_BLOCK
        m[h + 1] = MAX_ALLOC | FREE_BLOCK
        m[h + END_WORD] = b
        m[h + END_WORD + 1] = PREV_FREE                  # size 0, used: the sentinel
        self._insert(b, MAX_ALLOC)
        self._regions[f] = None
        self.num_regions += 1
        self.used_size += BHDR_OVERHEAD                  # only the sentinel counts as used

    def _grow(self, f: int):
        """Frame ``f`` lies beyond the pool's memory: double the private buffer (at least to
        cover it; amortised O(1) per frame), or refuse if the memory is the caller's."""
        buf = self._buf
        if buf is None:
            raise ValueError(f"{self.name}: frame {f} lies outside the pool's memory")
        self._mem.release()                              # a bytearray with a view cannot grow
        buf.extend(bytes(max((f + 1) << PAGE_SHIFT, 2 * len(buf)) - len(buf)))
        self._mem = _words(buf)
        return self._mem

    def _unused_region(self, f: int) -> None:
        """region-return for a frame this allocation fetched but did not use: while the lock
        was dropped for ``get_frame``, another CPU freed room elsewhere, and the search found
        that first. Xen keeps such a region, wholly free, until the pool dies; it is given back
        here, so no pool ever holds a frame it does not use."""
        b = f << PAGE_SHIFT
        if f not in self._regions or self._mem[(b >> 3) + 1] != MAX_ALLOC | FREE_BLOCK:
            return                                      # someone else has used it since
        self._extract(b, MAX_ALLOC)
        del self._regions[f]
        self.num_regions -= 1
        self.used_size -= BHDR_OVERHEAD
        self._put_frame(f)

    # -- pictures and checks ----------------------------------------------------------------

    def _chain(self, f: int):
        """``(header, word)`` of region ``f``'s blocks in address order, sentinel last; stops
        after a size that is 0 or does not tile the region (the header is yielded, the chain
        ends there). Nothing for a frame beyond the pool's memory. O(blocks of the frame)."""
        b = f << PAGE_SHIFT
        end = b + PAGE_SIZE - BHDR_OVERHEAD
        m = self._mem
        if (b + PAGE_SIZE) >> 3 > len(m):
            return
        while True:
            w = m[(b >> 3) + 1]
            yield b, w
            s = w & SIZE_MASK
            if not s or s & 15 or b + BHDR_OVERHEAD + s > end:
                return
            b += BHDR_OVERHEAD + s

    def _members(self, i: int):
        """The headers on free list ``i``, head first, following the next links; stops at a
        block seen before or outside the pool's memory, so a corrupt list still ends."""
        m, seen, b = self._mem, set(), self._heads[i]
        while b != NO_BLOCK and b not in seen and 0 <= (b >> 3) + 3 < len(m):
            seen.add(b)
            yield b
            b = m[(b >> 3) + 3]

    def used_blocks(self) -> set:
        """The payload addresses of every allocated block. O(blocks)."""
        return {b + BHDR_OVERHEAD for f in self._regions for b, w in self._chain(f)
                if w & SIZE_MASK and not w & FREE_BLOCK}

    def describe(self) -> dict:
        """A plain-data snapshot for pictures: counters, the bitmaps, the non-empty free lists
        ``(fl, sl, lo, hi, [payload addresses, head first])`` in class order, and per held
        frame (sorted) its blocks ``(offset of header, size, "used" | "free" | "sentinel")``.
        O(blocks)."""
        regions = {}
        for f in sorted(self._regions):
            row = []
            for b, w in self._chain(f):
                state = "sentinel" if not w & SIZE_MASK else "free" if w & FREE_BLOCK else "used"
                row.append((b - (f << PAGE_SHIFT), w & SIZE_MASK, state))
            regions[f] = row
        lists = []
        for i, head in enumerate(self._heads):
            if head != NO_BLOCK:
                fl, sl = i >> MAX_LOG2_SLI, i & 31
                lists.append((fl, sl, *class_range(fl, sl),
                              [b + BHDR_OVERHEAD for b in self._members(i)]))
        return {"name": self.name, "used_size": self.used_size, "total_size": self.total_size,
                "num_regions": self.num_regions, "failed": self.failed,
                "fl_bitmap": self._fl, "sl_bitmaps": list(self._sl[:FL_COUNT]),
                "free_lists": lists, "regions": regions}

    def _fail(self, n: int, msg: str):
        raise InvariantError(f"tlsf {self.name} invariant {n}: {msg}")

    def check(self) -> None:
        """Verify invariants 1-6 of the class docstring, reading the headers from memory; raise
        :class:`InvariantError` naming the first broken one. Reads no word outside the frames
        held. O(blocks)."""
        m, heads, regions, fail = self._mem, self._heads, self._regions, self._fail
        # 1. bitmaps <-> lists
        if len(self._sl) != REAL_FLI or len(heads) != FL_COUNT * MAX_SLI:
            fail(1, f"{len(self._sl)} second-level bitmaps, {len(heads)} lists")
        for fl in range(REAL_FLI):
            word = self._sl[fl]
            for sl in range(MAX_SLI):
                i = fl << MAX_LOG2_SLI | sl
                on = bool(word >> sl & 1)
                if on != (i < len(heads) and heads[i] != NO_BLOCK):
                    fail(1, f"sl_bitmap[{fl}] bit {sl} is {int(on)} but list ({fl}, {sl}) "
                            f"is {'non-' if not on else ''}empty")
            if word >> MAX_SLI:
                fail(1, f"sl_bitmap[{fl}] has bits above {MAX_SLI - 1}")
            if bool(self._fl >> fl & 1) != bool(word):
                fail(1, f"fl_bitmap bit {fl} disagrees with sl_bitmap[{fl}]")
        if self._fl >> REAL_FLI:
            fail(1, f"fl_bitmap has bits above {REAL_FLI - 1}")
        # 2. each list well linked, its members free blocks of its class; every free block listed
        listed = {}
        for i, b in enumerate(heads):
            where, before = divmod(i, MAX_SLI), NO_BLOCK
            while b != NO_BLOCK:
                if b in listed:
                    fail(2, f"{b:#x} is listed twice (again on list {where})")
                if b & 15 or b >> PAGE_SHIFT not in regions or (b >> 3) + 3 >= len(m):
                    fail(2, f"{_hex(b)} on list {where} is not a free block")
                w = m[(b >> 3) + 1]
                if not w & FREE_BLOCK:
                    fail(2, f"{b:#x} on list {where} is not a free block")
                s = w & SIZE_MASK
                if s > MAX_ALLOC or _INSERT[s] != i:
                    fail(2, f"{b:#x} of {s} B is on list {where}")
                if m[(b >> 3) + 2] != before:
                    fail(2, f"{b:#x} on list {where} links back to {_hex(m[(b >> 3) + 2])}, "
                            f"not {_hex(before)}")
                listed[b] = i
                before, b = b, m[(b >> 3) + 3]
        for f in regions:
            end = (f << PAGE_SHIFT) + PAGE_SIZE - BHDR_OVERHEAD
            for b, w in self._chain(f):
                s = w & SIZE_MASK             # (a size that breaks the tiling is invariant 3's)
                tiles = not s & 15 and MIN_BLOCK_SIZE <= s <= end - BHDR_OVERHEAD - b
                if w & FREE_BLOCK and tiles and b not in listed:
                    fail(2, f"free block {b:#x} is on no list")
        # 3-5. tiling, links, coalescing
        chained = set()
        used = 0
        for f in regions:
            base = f << PAGE_SHIFT
            end = base + PAGE_SIZE - BHDR_OVERHEAD
            before, wbefore, count = NO_BLOCK, 0, 0
            for b, w in self._chain(f):
                chained.add(b)
                count += 1
                s = w & SIZE_MASK
                if s % MEM_ALIGN or (s < MIN_BLOCK_SIZE and b != end):
                    fail(3, f"block {b:#x} has size {s}")
                if m[b >> 3] != before:
                    fail(4, f"block {b:#x} links back to {_hex(m[b >> 3])}, not {_hex(before)}")
                if bool(w & PREV_FREE) != bool(wbefore & FREE_BLOCK):
                    fail(4, f"block {b:#x} has PREV_FREE={int(bool(w & PREV_FREE))} but the "
                            f"block before is {'free' if wbefore & FREE_BLOCK else 'used'}")
                if w & FREE_BLOCK and wbefore & FREE_BLOCK:
                    fail(5, f"free blocks {before:#x} and {b:#x} are neighbours")
                if not s:
                    if w & FREE_BLOCK:
                        fail(3, f"sentinel {b:#x} is marked free")
                    break
                if not w & FREE_BLOCK:
                    used += s + BHDR_OVERHEAD
                before, wbefore = b, w
            else:
                fail(3, f"region {f} does not end with its sentinel")
            if b != end:
                fail(3, f"region {f} ends at offset {b - base}, not {end - base}")
            if count == 2 and wbefore & FREE_BLOCK:
                fail(5, f"region {f} is wholly free but still held")
        for b in listed:
            if b not in chained:
                fail(3, f"{b:#x} is on a free list but on no region's chain")
        # 6. counters
        if self.num_regions != len(regions):
            fail(6, f"num_regions {self.num_regions} but {len(regions)} regions")
        if self.used_size != used + BHDR_OVERHEAD * len(regions):
            fail(6, f"used_size {self.used_size} but blocks and sentinels sum to "
                    f"{used + BHDR_OVERHEAD * len(regions)}")

    def __repr__(self):
        return (f"<Tlsf {self.name} {self.num_regions} frames, {self.used_size} B used, "
                f"{self.failed} failed>")
