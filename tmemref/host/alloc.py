"""Xen: ``xmem_pool`` — where tmem's sub-page allocations (metadata, compressed data) come from.

Every object, page descriptor, radix-tree node and compressed page that tmem allocates is
carved out of *frames* of host memory, so metadata competes with data for the same memory, as
it does in Xen. One interface, :class:`MemPool`, serves both kinds of pool Xen has:

* the global ephemeral pool (``tmem``): its frames are anonymous tmem frames (freeable);
* one pool per client for persistent pools: its frames are billed to the client's domain, so a
  domain at ``max_pages`` cannot even allocate the descriptor of a persistent page. Like Xen's
  patched TLSF, the first frame is taken lazily, on first use.

This allocator only counts bytes (no placement, no fragmentation): it grows by one frame when
the bytes in use would exceed its frames, and shrinks when a whole frame's worth is unused. A
TLSF allocator with real placement can replace it behind the same three methods.

Invariant: ``0 <= used <= len(frames) * PAGE_SIZE``, and less than one whole frame is unused.

>>> from tmemref.host.frames import HostMemory
>>> m = HostMemory(4); p = MemPool(m)
>>> p.alloc(SIZEOF["pgp"]), len(p.frames), m.freeable_page_count
(64, 1, 1)
>>> p.free(SIZEOF["pgp"]); len(p.frames)
0
"""
from __future__ import annotations

from ..errors import InvariantError
from .frames import PAGE_SIZE

#: Bytes each tmem structure takes on x86-64 Xen (approximate ``sizeof``; what gets billed).
SIZEOF = {
    "obj": 112,        # struct tmem_object_root: oid, rb node, counts, radix root, pool, lock
    "pgp": 64,         # struct tmem_page_descriptor: two list unions, obj, size, index, data
    "objnode": 560,    # struct tmem_object_node: obj pointer + radix_tree_node (64 slots)
    "pcd": 72,         # struct tmem_page_content_descriptor
    "sharelist": 24,   # struct share_list
}
#: Largest sub-page allocation (TLSF: page minus two block headers) — compressed data must fit.
MAX_ALLOC = PAGE_SIZE - 2 * 16


class MemPool:
    """Xen: ``struct xmem_pool`` (tmem's ``tmem_mempool`` / per-client ``persistent_pool``).

    ``domain=None`` makes the global ephemeral pool; a domain makes a billed per-client pool.
    O(1) per call.
    """
    __slots__ = ("mem", "domain", "frames", "used", "failed")

    def __init__(self, mem, domain=None):
        self.mem = mem            # HostMemory the frames come from
        self.domain = domain      # Domain billed for the frames, or None (anonymous)
        self.frames: list = []    # frames backing this pool
        self.used = 0             # bytes handed out
        self.failed = 0           # allocations refused for want of a frame (Xen: alloc_failed)

    def alloc(self, size: int):
        """Reserve ``size`` bytes; returns a handle to free them with (here: the size itself),
        or None (and nothing changes) if a needed frame is refused."""
        need = self.used + size
        cap = len(self.frames) * PAGE_SIZE
        while need > cap:
            mem = self.mem
            f = (mem.alloc_tmem_page(False) if self.domain is None
                 else mem.alloc_domain_page(self.domain, False))
            if f is None:
                self._shrink()
                self.failed += 1
                return None
            self.frames.append(f)
            cap += PAGE_SIZE
        self.used = need
        return size

    def free(self, size: int) -> None:
        """Give ``size`` bytes back; whole frames no longer needed go back to tmem_page_list."""
        self.used -= size
        if len(self.frames) * PAGE_SIZE - self.used >= PAGE_SIZE:
            self._shrink()

    def _shrink(self) -> None:
        mem, frames = self.mem, self.frames
        while frames and len(frames) * PAGE_SIZE - self.used >= PAGE_SIZE:
            f = frames.pop()
            if self.domain is None:
                mem.free_tmem_page(f)
            else:
                mem.free_domain_page(self.domain, f)

    def destroy(self) -> None:
        """Free every frame (the pool's owner is gone)."""
        self.used = 0
        self._shrink()

    def check(self) -> None:
        """``0 <= used <= capacity`` and less than a whole spare frame."""
        cap = len(self.frames) * PAGE_SIZE
        if not 0 <= self.used <= cap:
            raise InvariantError(f"mempool invariant: {self.used} bytes used of {cap}")
        if cap - self.used >= PAGE_SIZE:
            raise InvariantError(f"mempool invariant: a whole spare frame kept ({cap - self.used} B free)")
