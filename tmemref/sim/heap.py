"""Experiments on Xen's heap as tmem shares it: the reserve's allocation rules, ballooning
against an absorbed host, and claims. Every function builds fresh hosts and returns numbers;
the engine never imports this module.

>>> rows = allocation_rules()
>>> [r[3] for r in rows if r[:3] == (0, "at the reserve", "yes")]
['1 frame given back by tmem']
"""
from __future__ import annotations

from typing import List, Tuple

from .. import abi
from ..abi import TmemOp
from ..core.host import Host

PAGE = abi.PAGE_SIZE


def _page(i: int) -> bytes:
    return i.to_bytes(8, "little") * (PAGE // 8)


def filled_host(pages: int = 1024, guest_pages: int = 64, eph_pages: int = 300) -> Host:
    """Guest 1 (``guest_pages`` of its own) has put ``eph_pages`` pages into an ephemeral
    pool, one object of 64 pages after another. O(eph_pages)."""
    host = Host(pages=pages)
    host.create_domain(1, pages=guest_pages, max_pages=4 * guest_pages)
    pool = host.do_tmem_op(1, TmemOp(cmd=abi.TMEM_NEW_POOL, flags=abi.pool_flags()))
    for i in range(eph_pages):
        if host.do_tmem_op(1, TmemOp(cmd=abi.TMEM_PUT_PAGE, pool_id=pool,
                                     oid=(i // 64, 0, 0), index=i % 64, page=_page(i))) != 1:
            raise RuntimeError(f"put {i} failed")
    return host


def allocation_rules(pages: int = 1024, orders=(0, 2, 9)) -> List[Tuple]:
    """Xen's ``alloc_heap_pages`` rules, observed: for a request of each order, with the heap
    above its reserve (530 frames past it) or down to it, and with tmem holding freeable
    frames or not, one fresh host — domain 9 asks for ``2**order`` frames. Rows
    ``(order, heap, tmem freeable, what happened)``. O(len(orders) * pages)."""
    rows = []
    for at_reserve in (False, True):
        for freeable in (False, True):
            for order in orders:
                host = filled_host(pages, eph_pages=300 if freeable else 0)
                mem = host.mem
                keep = mem.midsize_alloc_zone_pages + (0 if at_reserve else 530)
                d = host.create_domain(9, pages=len(mem.heap) - keep)
                d.max_pages += 1 << order
                heap, rt = len(mem.heap), host.relinq_pgs
                got = mem.alloc_domheap_pages(d, order)
                host.check()
                if got is None:
                    seen = "refused"
                elif host.relinq_pgs > rt:
                    seen = f"{host.relinq_pgs - rt} frame given back by tmem"
                else:
                    n = heap - len(mem.heap)
                    seen = f"{n} frame{'s' * (n != 1)} from the heap"
                rows.append((order, "at the reserve" if at_reserve else "above the reserve",
                             "yes" if freeable else "no", seen))
    return rows


def balloon_cycle(host: Host, domid: int, steps) -> List[Tuple]:
    """Balloon domain ``domid`` to each target of ``steps`` in turn; a row per step
    ``(target, frames it holds, free heap frames, frames tmem relinquished so far, pages
    evicted so far)``. O(sum of the changes)."""
    rows = []
    for target in steps:
        held = host.balloon(domid, target)
        host.check()
        rows.append((target, held, len(host.mem.heap), host.relinq_pgs, host.evicted_pgs))
    return rows
