"""Xen: ``tmem_evict``, ``tmem_try_to_evict_pgp``, ``client_over_quota``, ``tmem_ensure_avail_pages``.

Eviction is the one frequent operation no guest asks for: when memory runs short, tmem frees
the oldest ephemeral page. It walks the web *bottom-up* — from a pgp on an LRU list, through its
back pointers, to its object and pool — while puts and gets walk it *top-down*. Taking the same
locks in the opposite order could deadlock, so the walk only ever *tries* the locks it needs
(:mod:`tmemref.host.locks`) and skips a page when a try fails:

* ``SKIP_DYING``   the page's pool is being destroyed;
* ``SKIP_OBJ_BUSY`` another CPU holds the page's object lock;
* ``SKIP_PCD_BUSY`` (dedup) another CPU holds the tree lock of the page's content;
* ``SECOND_CHANCE`` (dedup) the page's content is shared with another page and this page was
  never sent back before: it is marked *eviction attempted* and moved to the young end of both
  lists; when it reaches the old end again it goes. Only the pgp goes: the content stays while
  another pgp uses it;
* ``SKIP_POOL_BUSY`` the page is its object's last, so the object will be freed, which needs the
  pool lock for writing, and that lock is busy.

Which list: the global LRU, unless the client that needs memory is *over quota*, in which case
its own list (and only its own: no fallback to the global list).

Persistent pages are never on these lists, so they are never evicted.
"""
from __future__ import annotations

from ..ds.dlist import list_del, list_iter, list_move_tail, list2_del, list2_move_tail
from .obj import pgp_forget

SKIP_DYING = "pool dying"
SKIP_OBJ_BUSY = "object locked"
SKIP_POOL_BUSY = "last page, pool lock busy"
SKIP_PCD_BUSY = "content tree locked"
SECOND_CHANCE = "second chance"
SKIPS = (SKIP_DYING, SKIP_OBJ_BUSY, SKIP_PCD_BUSY, SECOND_CHANCE, SKIP_POOL_BUSY)


def client_over_quota(host, client) -> bool:
    """Xen: ``client_over_quota`` — should eviction come from this client's own list?

    False when nobody has a weight, this client has none, or it holds no ephemeral page.
    ``quota_rule="doc"`` (default): True when the client's share of all ephemeral pages exceeds
    its weight's share of the total weight — the rule tmem-internals.html states.
    ``quota_rule="xen"``: Xen's code, ``g*100//c > T*100//w``, which holds when the client's
    share is *below* its weight's share (the inverse; see the book's fidelity notes).
    """
    total, w, c = host.client_weight_total, client.weight, client.eph_count
    if total == 0 or w == 0 or c == 0:
        return False
    g = host.eph_count
    if host.quota_rule == "xen":
        return (g * 100) // c > (total * 100) // w
    return c * total > g * w


def tmem_evict(host, client, trace=None) -> int:
    """Xen: ``tmem_evict`` — free the oldest evictable ephemeral page. Returns 1 or 0.

    ``client`` is the client whose operation needs memory (None for the host itself).
    ``trace``, if given, is called ``trace(pgp, reason)`` for each page skipped.
    O(1) when the oldest page can go; O(skipped pages) otherwise.
    """
    host.evict_attempts += 1
    lists = host.eph_lists_lock
    lists.acquire()
    try:
        if host.client_weight_total and client is not None and client.eph_count \
                and client_over_quota(host, client):
            head = client.eph_list
        else:
            head = host.eph_list
        victim = pool_locked = pcd_lock = None
        pcds = host.pcd
        for node in list_iter(head):
            pgp = node.owner
            obj = pgp.obj
            pool = obj.pool
            if pool.is_dying:
                if trace is not None:
                    trace(pgp, SKIP_DYING)
                continue
            if not obj.lock.trylock():
                if trace is not None:
                    trace(pgp, SKIP_OBJ_BUSY)
                continue
            if pcds is not None:
                pcd = pgp.data
                pcd_lock = pcds.locks[pcd.firstbyte]
                if not pcd_lock.write_trylock():
                    pcd_lock = None
                    obj.lock.release()
                    if trace is not None:
                        trace(pgp, SKIP_PCD_BUSY)
                    continue
                if pcd.ref_count > 1 and not pgp.eviction_attempted:
                    pgp.eviction_attempted = True
                    list_move_tail(pgp, host.eph_list)
                    list2_move_tail(pgp, pool.client.eph_list)
                    pcd_lock.write_unlock()
                    pcd_lock = None
                    obj.lock.release()
                    if trace is not None:
                        trace(pgp, SECOND_CHANCE)
                    continue
            if obj.pgp_count > 1:               # the object survives: its lock is enough
                victim = pgp
                break
            if pool.lock.write_trylock():       # last page: the object goes, pool lock too
                victim = pgp
                pool_locked = True
                break
            if pcd_lock is not None:
                pcd_lock.write_unlock()
                pcd_lock = None
            obj.lock.release()
            if trace is not None:
                trace(pgp, SKIP_POOL_BUSY)
        if victim is None:
            return 0
        owner = pool.client
        list_del(pgp)
        list2_del(pgp)
        host.eph_count -= 1
        owner.eph_count -= 1
    finally:
        lists.release()
    try:
        obj.tree.delete(pgp.index)
        obj.pgp_count -= 1
        if obj.tree.node_count != obj.objnode_count:
            host._objnodes_changed(obj)
        locked, pcd_lock = pcd_lock is not None, None   # handed to the pcd layer, which
        host._pgp_free_data(pgp, pool, pcd_locked=locked)  # releases it on every path
        pool.mempool.free(pgp.meta)             # no life-time statistics: Xen's eviction
        pgp.obj = None                          # frees the pgp without them
        pgp_forget(pgp)
        pool.pgp_count -= 1
        host.global_pgp_count -= 1
        if obj.pgp_count == 0:
            host._obj_free(obj, pool_locked=True)
    finally:
        if pcd_lock is not None:
            pcd_lock.write_unlock()
        if pool_locked:
            pool.lock.write_unlock()
        obj.lock.release()
    host.evicted_pgs += 1
    return 1


def ensure_avail_pages(host, client) -> bool:
    """Xen: ``tmem_ensure_avail_pages`` — before a put takes any object lock, make sure at
    least ``min_free_pages`` (1 MB) are free — on tmem_page_list or on the heap beyond its
    reserve (``total_free_pages``) — evicting as needed; give up after ``evict_budget`` (10)
    failed evictions. False means the put fails with -ENOMEM.

    Why before the object lock: a client putting many pages into one object holds that
    object's lock; if it evicted while holding it, every eviction would skip its own pages
    and the put would take time linear in the object's size (the livelock Xen hit).
    """
    mem = host.mem
    budget = host.evict_budget
    while mem.guard_pages() < host.min_free_pages:
        if not tmem_evict(host, client):
            budget -= 1
            if budget <= 0:
                return False
    return True
