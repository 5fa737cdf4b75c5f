"""Xen: the page allocator and ``tmem_xen.h`` — physical memory as a numpy array of frames.

Every byte a guest or tmem uses comes out of one fixed array ``data[nframes, 4096]``. Each frame
is in exactly one place, recorded in ``owner[f]``:

* ``HEAP`` (-1): on the heap free list ``heap``, scrubbed (all zero);
* ``PAGE_LIST`` (-2): on ``tmem_page_list``, freed by tmem and *not* scrubbed — only tmem reuses it,
  overwriting it whole, so no guest can read what it held;
* ``ANON`` (-3): an ephemeral tmem frame (data or metadata), billed to nobody, counted in
  ``freeable_page_count``;
* ``d >= 0``: billed to domain ``d`` — its own memory, or a persistent tmem frame (data, or a
  page of the domain's metadata pool).

Invariants (checked by :meth:`HostMemory.check`):

1. Every frame is in exactly one state; ``heap`` and ``page_list`` hold exactly the frames whose
   owner says so, without repeats.
2. Every heap frame is all zero (scrubbed before it went back to the heap).
3. ``freeable_page_count`` equals the number of ``ANON`` frames.
4. Each domain's ``tot_pages`` equals the frames owned by it, and ``tot_pages <= max_pages``
   (except memory given at creation, which may exceed a smaller ``max_pages``).
5. ``outstanding_claims`` is the sum of the domains' ``outstanding_pages``, none negative.

The heap keeps a **reserve** (Xen's ``midsize_alloc_zone_pages``, 1/128 of memory) for
allocations of 2 to 256 pages: once no more than the reserve is free, a request for one page
(or for 512 and more) is served only by tmem giving a frame back (``tmem_relinquish_pages``),
never from the reserve — as long as tmem holds something freeable. ``total_free_pages()`` is
the free memory beyond the reserve, which is what tmem's 1 MB guard counts.

>>> m = HostMemory(8)
>>> d = m.add_domain(1, pages=2, max_pages=3)
>>> f = m.alloc_domain_page(d); m.alloc_domain_page(d) is None   # at max_pages
True
>>> m.free_domain_page(d, f); len(m.page_list), d.tot_pages
(1, 2)
>>> m.check()
"""
from __future__ import annotations

import errno

import numpy as np

from ..errors import InvariantError
from .locks import SpinLock, RANK_PAGE_LIST, RANK_HEAP

PAGE_SIZE = 4096
HEAP, PAGE_LIST, ANON = -1, -2, -3
#: Xen's ``MEMF_tmem``: the allocation is tmem's own (a frame tmem gives back to it is not
#: scrubbed, and it is not billed to a claim).
MEMF_tmem = 1 << 2
#: Xen's ``MIDSIZE_ALLOC_FRAC``: the heap keeps 1/128 of memory for mid-size allocations.
MIDSIZE_ALLOC_FRAC = 128
#: Orders Xen's allocator serves from the reserve when memory is short (2 to 256 pages).
MIDSIZE_ORDERS = range(1, 9)
STATE_NAMES = {HEAP: "heap", PAGE_LIST: "page_list", ANON: "tmem"}
EINVAL, ENOMEM = errno.EINVAL, errno.ENOMEM


class Domain:
    """Xen: ``struct domain`` as far as memory goes: what it holds and may hold."""
    __slots__ = ("domid", "tot_pages", "max_pages", "own_frames", "privileged", "client",
                 "is_dying", "outstanding_pages")

    def __init__(self, domid: int, max_pages: int, privileged: bool):
        self.domid = domid                # domain id
        self.tot_pages = 0                # frames billed to it (own memory + persistent tmem)
        self.max_pages = max_pages        # the most it may be billed for
        self.own_frames: list = []        # its own memory (not tmem), in allocation order
        self.privileged = privileged      # may issue control operations (dom0)
        self.client = None                # its tmem client, created on its first tmem op
        self.is_dying = False             # being destroyed: its hypercalls get -ENODEV
        self.outstanding_pages = 0        # its claim not yet allocated (Xen: claimed pages)

    def __repr__(self):
        return f"<Domain {self.domid} tot={self.tot_pages} max={self.max_pages}>"


class HostMemory:
    """Xen: the heap (``alloc_domheap_pages``) plus ``tmem_page_list`` and domain billing.

    All allocators are O(1) per frame (stacks of frame numbers; orders are counted, not
    placed: a request of order ``n`` takes ``2**n`` frames from anywhere). ``relinquish`` is
    the hook through which the heap asks tmem for memory (``tmem_relinquish_pages``).
    """

    def __init__(self, nframes: int):
        if nframes <= 0:
            raise ValueError("a host needs at least one frame")
        self.nframes = nframes
        self.data = np.zeros((nframes, PAGE_SIZE), dtype=np.uint8)   # physical memory
        self.bytes = memoryview(self.data).cast("B")   # the same memory, flat: frame f at f<<12
        self.words = self.bytes.cast("Q")              # and as 64-bit words: byte a at word a>>3
        self.owner = np.full(nframes, HEAP, dtype=np.int32)          # state of each frame
        self._own = memoryview(self.owner)             # the same, for cheap one-frame writes
        self.heap = list(range(nframes - 1, -1, -1))   # free, scrubbed frames (a stack)
        self.page_list: list = []                      # tmem_page_list: free, unscrubbed
        self.freeable_page_count = 0                   # ANON frames (ephemeral tmem)
        self.domains: dict = {}                        # domid -> Domain
        self.relinquish = None     # callable(order, memflags) -> frame or None (tmem_relinquish_pages)
        self.midsize_alloc_zone_pages = nframes // MIDSIZE_ALLOC_FRAC   # the heap's reserve
        self.outstanding_claims = 0                    # claimed, not yet allocated (all domains)
        self.page_list_lock = SpinLock("tmem_page_list_lock", RANK_PAGE_LIST)
        self.heap_lock = SpinLock("heap_lock", RANK_HEAP)
        # statistics of the host layer
        self.alloc_page_failed = 0     # tmem frame allocations that found no frame

    # --- domains --------------------------------------------------------------------------------
    def add_domain(self, domid: int, pages: int, max_pages: int, privileged: bool = False):
        """Create a domain and give it ``pages`` frames from the heap (tmem relinquishes frames
        once the heap is down to its reserve). Raises ``MemoryError`` (and changes nothing) if
        memory is short. Takes ``heap_lock`` for the whole allocation, as Xen's
        ``alloc_heap_pages`` does, so tmem's relinquish (and the eviction it runs) happens
        under it."""
        if pages < 0 or max_pages < 0:
            raise ValueError("pages and max_pages must be >= 0")
        with self.heap_lock:
            if domid in self.domains:
                raise ValueError(f"domain {domid} exists")
            got = []
            for _ in range(pages):
                f = self._alloc_locked(None, 0)
                if f is None:
                    for g in got:
                        self._heap_free_locked(g)
                    raise MemoryError(f"only {len(got)} of {pages} frames free for domain {domid}")
                got.append(f)
            d = Domain(domid, max_pages, privileged)
            for f in got:
                self._own[f] = domid
            d.own_frames = got
            d.tot_pages = len(got)
            self.domains[domid] = d
        return d

    def remove_domain(self, domid: int) -> None:
        """Give a dead domain's own frames back to the heap, scrubbed (tmem frees its own
        first); its claim, if any, lapses."""
        with self.heap_lock:
            d = self.domains.pop(domid)
            for f in d.own_frames:
                self._heap_free_locked(f)
            d.tot_pages -= len(d.own_frames)
            d.own_frames = []
            self.outstanding_claims -= d.outstanding_pages
            d.outstanding_pages = 0

    def _adjust_tot_pages(self, d: Domain, delta: int) -> None:
        """Xen: ``domain_adjust_tot_pages`` — bill ``delta`` frames to ``d``; a domain with an
        outstanding claim has it shrink as it is served (and grow back as it frees frames).
        ``heap_lock`` held when the domain has a claim."""
        d.tot_pages += delta
        if d.outstanding_pages:
            before = d.outstanding_pages
            d.outstanding_pages = max(0, before - delta)
            self.outstanding_claims -= before - d.outstanding_pages

    def claim(self, d: Domain, pages: int) -> int:
        """Xen: ``domain_set_outstanding_pages`` — stake a claim that ``d`` will hold ``pages``
        frames, so that nobody else (tmem's puts included) can take the memory while it is
        being populated. ``pages == 0`` cancels the claim. Free memory here counts tmem's
        freeable frames as available (Xen's claim code did). 0; -EINVAL (a claim already
        staked, ``pages <= tot_pages`` or ``> max_pages``); -ENOMEM (not enough memory). O(1).
        """
        with self.heap_lock:
            if pages == 0:
                self.outstanding_claims -= d.outstanding_pages
                d.outstanding_pages = 0
                return 0
            if d.outstanding_pages:
                return -EINVAL
            if pages <= d.tot_pages or pages > d.max_pages:
                return -EINVAL
            avail = len(self.heap) + self.freeable_pages() - self.outstanding_claims
            need = pages - d.tot_pages
            if need > avail:
                return -ENOMEM
            d.outstanding_pages = need
            self.outstanding_claims += need
            return 0

    def alloc_domheap_pages(self, d: Domain, order: int = 0, memflags: int = 0):
        """Xen: ``alloc_domheap_pages(d, order, memflags)`` for a domain's own memory (not
        tmem's): ``2**order`` frames billed to ``d`` and appended to its own memory, or None
        (nothing changes) if ``d`` would pass ``max_pages`` or the heap refuses
        (:meth:`_alloc_order_locked`). O(2**order)."""
        n = 1 << order
        with self.heap_lock:
            if d.tot_pages + n > d.max_pages:
                return None
            got = self._alloc_order_locked(d, order, memflags)
            if got is None:
                return None
            for f in got:
                self._own[f] = d.domid
            d.own_frames.extend(got)
            self._adjust_tot_pages(d, n)
        return got

    def free_domheap_pages(self, d: Domain, n: int) -> None:
        """A domain gives its ``n`` most recently allocated frames of its own memory back
        (Xen: ``decrease_reservation``); they are scrubbed onto the heap. O(n)."""
        if not 0 <= n <= len(d.own_frames):
            raise ValueError(f"domain {d.domid} holds {len(d.own_frames)} frames of its own, "
                             f"cannot give back {n}")
        with self.heap_lock:
            for _ in range(n):
                self._heap_free_locked(d.own_frames.pop())
            self._adjust_tot_pages(d, -n)

    # --- heap -----------------------------------------------------------------------------------
    def freeable_pages(self) -> int:
        """Xen: ``tmem_freeable_pages`` — frames tmem could give back: its free list plus its
        anonymous (ephemeral) frames."""
        return len(self.page_list) + self.freeable_page_count

    def total_free_pages(self) -> int:
        """Xen: ``total_free_pages`` — free heap frames beyond the reserve (0 when the heap
        holds no more than the reserve: Xen's unsigned difference would wrap; see the
        fidelity notes)."""
        return max(0, len(self.heap) - self.midsize_alloc_zone_pages)

    def guard_pages(self) -> int:
        """What tmem's 1 MB guard counts as free (Xen: ``tmem_page_list_pages +
        total_free_pages()``): tmem_page_list plus the heap beyond its reserve."""
        free = len(self.heap) - self.midsize_alloc_zone_pages   # total_free_pages(), inlined
        return len(self.page_list) + (free if free > 0 else 0)

    def _alloc_locked(self, d, memflags: int):
        """One frame (order 0) of :meth:`_alloc_order_locked`, or None."""
        got = self._alloc_order_locked(d, 0, memflags)
        return None if got is None else got[0]

    def _alloc_order_locked(self, d, order: int, memflags: int):
        """Xen: ``alloc_heap_pages`` with ``heap_lock`` held — ``2**order`` frames, or None.

        1. Claimed memory is off limits unless ``d`` holds a large enough claim itself.
        2. Once the heap is down to its reserve and tmem has something freeable, requests of
           order 0 or >= 9 go to tmem (``relinquish``) and nowhere else — tmem's own order-0
           allocations (``MEMF_tmem``) included, whose frames then come back unscrubbed;
           relinquish refuses order > 0, so a large request fails. Orders 1-8 use the reserve.
        3. Otherwise the heap serves the request if it holds enough frames.

        Relinquish never allocates from the heap, so the heap and tmem cannot call each other
        in a loop (the ``MEMF_tmem`` rule of tmem-internals.html)."""
        n = 1 << order
        heap = self.heap
        freeable = self.freeable_pages()
        if self.outstanding_claims + n > len(heap) + freeable and \
                (d is None or d.outstanding_pages < n):
            return None
        if order not in MIDSIZE_ORDERS and len(heap) <= self.midsize_alloc_zone_pages \
                and freeable and self.relinquish is not None:
            f = self.relinquish(order, memflags)
            return None if f is None else [f]
        if len(heap) < n:
            return None
        return [heap.pop() for _ in range(n)]

    def _heap_alloc(self, d, memflags: int):
        self.heap_lock.acquire()
        try:
            return self._alloc_locked(d, memflags)
        finally:
            self.heap_lock.release()

    def _heap_free_locked(self, f: int) -> None:
        """Scrub a frame and put it on the heap (``heap_lock`` held)."""
        self.data[f] = 0
        self._own[f] = HEAP
        self.heap.append(f)

    @property
    def free_pages(self) -> int:
        """Frames free now: heap (the reserve included) + tmem_page_list."""
        return len(self.heap) + len(self.page_list)

    # --- tmem frames ----------------------------------------------------------------------------
    def alloc_tmem_page(self, data: bool = True):
        """Xen: ``__tmem_alloc_page`` — an anonymous (ephemeral) frame: the tmem page list first,
        then the heap with ``MEMF_tmem``. Returns a frame number or None. ``data``: a frame for
        page data, whose failure counts in ``alloc_page_failed`` (metadata frames do not)."""
        f = self._page_list_get()
        if f is None:
            f = self._heap_alloc(None, MEMF_tmem)
            if f is None:
                self.alloc_page_failed += data
                return None
        self._own[f] = ANON
        self.freeable_page_count += 1
        return f

    def free_tmem_page(self, f: int) -> None:
        """Xen: ``__tmem_free_page`` — back on tmem_page_list, unscrubbed."""
        self.freeable_page_count -= 1
        self._page_list_put(f)

    def alloc_domain_page(self, d: Domain, data: bool = True):
        """Xen: ``__tmem_alloc_page_thispool`` — a frame billed to domain ``d`` (persistent
        data or metadata). Fails (None) once ``d`` holds ``max_pages``. ``data`` as for
        :meth:`alloc_tmem_page`."""
        if d.tot_pages >= d.max_pages:
            self.alloc_page_failed += data
            return None
        f = self._page_list_get()
        if f is None:
            f = self._heap_alloc(d, MEMF_tmem)
            if f is None:
                self.alloc_page_failed += data
                return None
        self._own[f] = d.domid
        if d.outstanding_pages:
            with self.heap_lock:
                self._adjust_tot_pages(d, 1)
        else:
            d.tot_pages += 1
        return f

    def free_domain_page(self, d: Domain, f: int) -> None:
        """Xen: ``__tmem_free_page_thispool`` — steal the frame back from the domain onto
        tmem_page_list."""
        if d.outstanding_pages:
            with self.heap_lock:
                self._adjust_tot_pages(d, -1)
        else:
            d.tot_pages -= 1
        self._page_list_put(f)

    def _page_list_get(self):
        """Xen: ``tmem_page_list_get`` — a frame off tmem_page_list, or None."""
        self.page_list_lock.acquire()
        try:
            pl = self.page_list
            return pl.pop() if pl else None
        finally:
            self.page_list_lock.release()

    def _page_list_put(self, f: int) -> None:
        """Xen: ``tmem_page_list_put`` — a frame onto tmem_page_list, unscrubbed."""
        self.page_list_lock.acquire()
        try:
            self._own[f] = PAGE_LIST
            self.page_list.append(f)
        finally:
            self.page_list_lock.release()

    def page_list_take(self, scrub: bool):
        """Take a frame off tmem_page_list for the heap's use (relinquish), scrubbing it first
        unless ``scrub`` is False (a ``MEMF_tmem`` request: tmem overwrites it anyway)."""
        f = self._page_list_get()
        if f is None:
            return None
        if scrub:
            self.data[f] = 0
        self._own[f] = HEAP     # transiently; the caller assigns it
        return f

    def flush_page_list(self) -> int:
        """Scrub every frame on tmem_page_list and give it back to the heap; returns how many."""
        n = 0
        while (f := self._page_list_get()) is not None:
            with self.heap_lock:
                self._heap_free_locked(f)
            n += 1
        return n

    # --- invariants -----------------------------------------------------------------------------
    def check(self) -> None:
        """Verify invariants 1-5 of the module docstring; raises :class:`InvariantError`."""
        owner = self.owner
        for name, lst, state in (("heap", self.heap, HEAP), ("page_list", self.page_list, PAGE_LIST)):
            if len(set(lst)) != len(lst):
                raise InvariantError(f"frames invariant 1: a frame is twice on the {name}")
            n_state = int(np.count_nonzero(owner == state))
            if n_state != len(lst) or (lst and not np.all(owner[lst] == state)):
                raise InvariantError(f"frames invariant 1: {name} holds {len(lst)} frames but "
                                     f"{n_state} frames are marked {STATE_NAMES[state]}")
        if self.heap and self.data[self.heap].any():
            raise InvariantError("frames invariant 2: a frame on the heap was not scrubbed")
        n_anon = int(np.count_nonzero(owner == ANON))
        if n_anon != self.freeable_page_count:
            raise InvariantError(f"frames invariant 3: freeable_page_count is "
                                 f"{self.freeable_page_count} but {n_anon} tmem frames exist")
        counts = np.bincount(owner[owner >= 0]) if np.any(owner >= 0) else np.zeros(0, int)
        known = 0
        for domid, d in self.domains.items():
            held = int(counts[domid]) if domid < len(counts) else 0
            known += held
            if held != d.tot_pages:
                raise InvariantError(f"frames invariant 4: domain {domid} is billed "
                                     f"{d.tot_pages} frames but holds {held}")
            if d.tot_pages > max(d.max_pages, len(d.own_frames)):
                raise InvariantError(f"frames invariant 4: domain {domid} holds {d.tot_pages} "
                                     f"> max_pages {d.max_pages}")
        claims = [d.outstanding_pages for d in self.domains.values()]
        if min(claims, default=0) < 0 or sum(claims) != self.outstanding_claims:
            raise InvariantError(f"frames invariant 5: outstanding_claims is "
                                 f"{self.outstanding_claims}, the domains claim {claims}")
        if known != int(np.count_nonzero(owner >= 0)):
            raise InvariantError("frames invariant 1: a frame is owned by a domain that does "
                                 "not exist")
