"""Xen: ``tmem_xen.c`` — where tmem's sub-page allocations (metadata, compressed data) come from.

Every object, page descriptor, radix-tree node, content descriptor, sharelist entry and
compressed or tze-shrunk page that tmem allocates is a block of a TLSF pool
(:class:`tmemref.host.tlsf.Tlsf`, Xen's ``xmem_pool``) carved out of *frames* of host memory, so
metadata competes with data for the same memory, and internal fragmentation is real: freeing a
block frees a frame only when it was the frame's last one.

There are two kinds of pool, as in Xen:

* :func:`tmem_pool` — the global pool ("tmem"): ephemeral pools' metadata and data, and the
  structures allocated with no pool at all (pcds, sharelists: the seed's "note to self"). Its
  frames are anonymous tmem frames (freeable);
* :func:`client_pool` — one per client, for its persistent pools: its frames are billed to the
  client's domain, so a domain at ``max_pages`` cannot even allocate the descriptor of a
  persistent page. Like Xen's patched TLSF, the first frame is taken lazily, on first use.

Each pool has its own lock (``xmem_pool lock``, rank 6), dropped while it takes a frame. Both
kinds write their block headers into the frames, in ``mem.bytes``, as Xen's do.

>>> from tmemref.host.frames import HostMemory
>>> m = HostMemory(4); p = tmem_pool(m)
>>> a = p.alloc(SIZEOF["pgp"]); hex(a), p.num_regions, m.freeable_page_count
('0x10', 1, 1)
>>> p.free(a); p.num_regions, len(m.page_list)
(0, 1)
"""
from __future__ import annotations

from .locks import SpinLock, RANK_XMEM
from .tlsf import MAX_ALLOC, LARGEST_FIT, Tlsf

__all__ = ["SIZEOF", "MAX_ALLOC", "LARGEST_FIT", "tmem_pool", "client_pool"]

#: Bytes each tmem structure takes on x86-64 Xen, from its field list (``sizeof`` estimates:
#: what gets allocated and billed).
SIZEOF = {
    "obj": 112,        # struct tmem_object_root: oid, rb node, counts, radix root, pool, lock
    "pgp": 72,         # struct tmem_page_descriptor: two list unions, obj, size, index, flags,
                       #   data union, timestamp/pool_id union
    "objnode": 560,    # struct tmem_object_node: obj pointer + radix_tree_node (64 slots)
    "pcd": 72,         # struct tmem_page_content_descriptor
    "sharelist": 24,   # struct share_list
}


def tmem_pool(mem) -> Tlsf:
    """Xen: ``tmem_mempool`` — the global sub-page pool, its frames anonymous (``MEMF_tmem``,
    from tmem_page_list first)."""
    return Tlsf("tmem", lambda: mem.alloc_tmem_page(False), mem.free_tmem_page,
                lock=SpinLock("xmem_pool lock", RANK_XMEM), memory=mem.bytes)


def client_pool(mem, domain) -> Tlsf:
    """Xen: a client's ``persistent_pool`` — frames billed to ``domain`` (first one lazily)."""
    return Tlsf(f"client:{domain.domid}", lambda: mem.alloc_domain_page(domain, False),
                lambda f: mem.free_domain_page(domain, f),
                lock=SpinLock("xmem_pool lock", RANK_XMEM), memory=mem.bytes)
