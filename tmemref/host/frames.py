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

>>> m = HostMemory(8)
>>> d = m.add_domain(1, pages=2, max_pages=3)
>>> f = m.alloc_domain_page(d); m.alloc_domain_page(d) is None   # at max_pages
True
>>> m.free_domain_page(d, f); len(m.page_list), d.tot_pages
(1, 2)
>>> m.check()
"""
from __future__ import annotations

import numpy as np

from ..errors import InvariantError
from .locks import SpinLock, RANK_PAGE_LIST, RANK_HEAP

PAGE_SIZE = 4096
HEAP, PAGE_LIST, ANON = -1, -2, -3
STATE_NAMES = {HEAP: "heap", PAGE_LIST: "page_list", ANON: "tmem"}


class Domain:
    """Xen: ``struct domain`` as far as memory goes: what it holds and may hold."""
    __slots__ = ("domid", "tot_pages", "max_pages", "own_frames", "privileged", "client",
                 "is_dying")

    def __init__(self, domid: int, max_pages: int, privileged: bool):
        self.domid = domid                # domain id
        self.tot_pages = 0                # frames billed to it (own memory + persistent tmem)
        self.max_pages = max_pages        # the most it may be billed for
        self.own_frames: list = []        # its own memory (not tmem), in allocation order
        self.privileged = privileged      # may issue control operations (dom0)
        self.client = None                # its tmem client, created on its first tmem op
        self.is_dying = False             # being destroyed: its hypercalls get -ENODEV

    def __repr__(self):
        return f"<Domain {self.domid} tot={self.tot_pages} max={self.max_pages}>"


class HostMemory:
    """Xen: the heap (``alloc_domheap_pages``) plus ``tmem_page_list`` and domain billing.

    All allocators are O(1) (stacks of frame numbers). ``relinquish`` is the hook through which
    the heap asks tmem for memory when it runs dry (``tmem_relinquish_pages``).
    """

    def __init__(self, nframes: int):
        if nframes <= 0:
            raise ValueError("a host needs at least one frame")
        self.nframes = nframes
        self.data = np.zeros((nframes, PAGE_SIZE), dtype=np.uint8)   # physical memory
        self.bytes = memoryview(self.data).cast("B")   # the same memory, flat: frame f at f<<12
        self.owner = np.full(nframes, HEAP, dtype=np.int32)          # state of each frame
        self.heap = list(range(nframes - 1, -1, -1))   # free, scrubbed frames (a stack)
        self.page_list: list = []                      # tmem_page_list: free, unscrubbed
        self.freeable_page_count = 0                   # ANON frames (ephemeral tmem)
        self.domains: dict = {}                        # domid -> Domain
        self.relinquish = None     # callable() -> frame or None: tmem gives a frame back (scrubbed)
        self.page_list_lock = SpinLock("tmem_page_list_lock", RANK_PAGE_LIST)
        self.heap_lock = SpinLock("heap_lock", RANK_HEAP)
        # statistics of the host layer
        self.alloc_page_failed = 0     # tmem frame allocations that found no frame

    # --- domains --------------------------------------------------------------------------------
    def add_domain(self, domid: int, pages: int, max_pages: int, privileged: bool = False):
        """Create a domain and give it ``pages`` frames from the heap (tmem relinquishes frames
        if the heap is short). Raises ``MemoryError`` (and changes nothing) if memory is short.
        Takes ``heap_lock`` for the whole allocation, as Xen's ``alloc_heap_pages`` does, so
        tmem's relinquish (and the eviction it runs) happens under it."""
        if pages < 0 or max_pages < 0:
            raise ValueError("pages and max_pages must be >= 0")
        with self.heap_lock:
            if domid in self.domains:
                raise ValueError(f"domain {domid} exists")
            got = []
            for _ in range(pages):
                f = self._heap_alloc_locked(for_tmem=False)
                if f is None:
                    for g in got:
                        self._heap_free_locked(g)
                    raise MemoryError(f"only {len(got)} of {pages} frames free for domain {domid}")
                got.append(f)
            d = Domain(domid, max_pages, privileged)
            for f in got:
                self.owner[f] = domid
            d.own_frames = got
            d.tot_pages = len(got)
            self.domains[domid] = d
        return d

    def remove_domain(self, domid: int) -> None:
        """Give a dead domain's own frames back to the heap, scrubbed (tmem frees its own first)."""
        with self.heap_lock:
            d = self.domains.pop(domid)
            for f in d.own_frames:
                self._heap_free_locked(f)
            d.tot_pages -= len(d.own_frames)
            d.own_frames = []

    # --- heap -----------------------------------------------------------------------------------
    def _heap_alloc_locked(self, for_tmem: bool):
        """``alloc_heap_pages`` of order 0, ``heap_lock`` held. A request not from tmem
        (``MEMF_tmem`` clear) may make tmem relinquish a frame — under the heap lock, as in
        Xen; tmem's own requests may not (that would loop)."""
        if self.heap:
            return self.heap.pop()
        if not for_tmem and self.relinquish is not None:
            return self.relinquish()
        return None

    def _heap_alloc(self, for_tmem: bool):
        with self.heap_lock:
            return self._heap_alloc_locked(for_tmem)

    def _heap_free_locked(self, f: int) -> None:
        """Scrub a frame and put it on the heap (``heap_lock`` held)."""
        self.data[f] = 0
        self.owner[f] = HEAP
        self.heap.append(f)

    @property
    def free_pages(self) -> int:
        """Frames free to tmem now: heap + tmem_page_list (what the 1 MB guard counts)."""
        return len(self.heap) + len(self.page_list)

    # --- tmem frames ----------------------------------------------------------------------------
    def alloc_tmem_page(self, data: bool = True):
        """Xen: ``__tmem_alloc_page`` — an anonymous (ephemeral) frame: the tmem page list first,
        then the heap with ``MEMF_tmem``. Returns a frame number or None. ``data``: a frame for
        page data, whose failure counts in ``alloc_page_failed`` (metadata frames do not)."""
        f = self._page_list_get()
        if f is None:
            f = self._heap_alloc(for_tmem=True)
            if f is None:
                self.alloc_page_failed += data
                return None
        self.owner[f] = ANON
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
            f = self._heap_alloc(for_tmem=True)
            if f is None:
                self.alloc_page_failed += data
                return None
        self.owner[f] = d.domid
        d.tot_pages += 1
        return f

    def free_domain_page(self, d: Domain, f: int) -> None:
        """Xen: ``__tmem_free_page_thispool`` — steal the frame back from the domain onto
        tmem_page_list."""
        d.tot_pages -= 1
        self._page_list_put(f)

    def _page_list_get(self):
        """Xen: ``tmem_page_list_get`` — a frame off tmem_page_list, or None."""
        with self.page_list_lock:
            pl = self.page_list
            return pl.pop() if pl else None

    def _page_list_put(self, f: int) -> None:
        """Xen: ``tmem_page_list_put`` — a frame onto tmem_page_list, unscrubbed."""
        with self.page_list_lock:
            self.owner[f] = PAGE_LIST
            self.page_list.append(f)

    def page_list_pop_scrubbed(self):
        """Take a frame off tmem_page_list for the heap's use, scrubbing it first."""
        f = self._page_list_get()
        if f is None:
            return None
        self.data[f] = 0
        self.owner[f] = HEAP     # transiently; the caller assigns it
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
        """Verify invariants 1-4 of the module docstring; raises :class:`InvariantError`."""
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
        if known != int(np.count_nonzero(owner >= 0)):
            raise InvariantError("frames invariant 1: a frame is owned by a domain that does "
                                 "not exist")
