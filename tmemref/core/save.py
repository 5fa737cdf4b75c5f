"""Xen: the save/restore sub-ops of ``do_tmem_control`` (``tmemc_save_subop``,
``tmemc_save_get_next_page``, ``tmemc_save_get_next_inv``, ``tmemc_restore_put_page``,
``tmemc_restore_flush_page``) and the invalidation log of live migration.

A toolstack saving a guest asks tmem, one hypercall at a time, for what it needs to rebuild the
guest's tmem elsewhere: the client's flags, weight and cap, each pool's flags, page count and
uuid, then every persistent page with its handle (``struct tmem_handle``: pool id, index,
object id). Ephemeral pages are never saved: they may vanish at any time anyway.

Live migration (tmem-internals.html, "Save/Restore/Migrate"): ``SAVE_BEGIN`` with ``arg1 != 0``
freezes the client (new puts fail) and marks it *migrating*. The guest keeps running while its
pages are sent; it may still flush pages, and a duplicate put is refused (so it flushes the old
data). Each persistent page freed while migrating is logged — pool id, object id, index — on
the client's invalidation log, and once the guest is paused ``SAVE_GET_NEXT_INV`` hands the log
to the toolstack, which makes the target flush those pages. ``SAVE_END`` ends the migration.

The save cursor of a pool (``Pool.cur_pgp``) is the list node after which the next
``SAVE_GET_NEXT_PAGE`` continues: a pgp (on the list through its link b), or the persistent
list's head. When the page under the cursor is freed, the cursor steps back to the previous node, so the walk goes
on where it was (Xen instead keeps the freed descriptor on the list).

Return values are those of Xen <= 4.5 (``TMEMC_*`` numbering): -1 for an unknown client or
pool, and the sub-op's own value otherwise.

``Host(save_bugs=...)`` reproduces Xen's own bugs here (:data:`SAVE_BUGS`).
"""
from __future__ import annotations

import errno
import struct

from .. import abi
from ..ds.dlist import list2_del, list_empty
from ..host.alloc import MAX_ALLOC
from ..host.frames import PAGE_SIZE
from .obj import SIZE_RAW, Pgp

#: Xen's bugs in this code, by the name ``Host(save_bugs=...)`` takes, and what each does.
SAVE_BUGS = {
    "skip_first_page": "SAVE_GET_NEXT_PAGE's first call sets the cursor on the first page and "
                       "returns the next one, so the first page of every pool is never saved "
                       "(a one-page pool yields its list head, which matches no object). "
                       "Xen 4.0 to 4.12.",
    "raw_copy": "the copy helpers refuse a buffer in place of a guest frame, so an uncompressed "
                "page can be neither saved (SAVE_GET_NEXT_PAGE) nor restored "
                "(RESTORE_PUT_PAGE): -EINVAL. Compressed pages go through a scratch page and "
                "work. Xen 4.4 to 4.12.",
    "stale_end": "SAVE_END frees the logged invalidations without emptying the list or "
                 "resetting the save cursors, so the next migration of the client reports the "
                 "old invalidations again and each pool's walk resumes where the last one "
                 "stopped. Xen 4.0 to 4.12.",
}
#: ``Host(save_bugs="xen")``: all of them, as Xen 4.4 to 4.7 shipped them.
SAVE_BUGS_XEN = frozenset(SAVE_BUGS)

#: ``struct tmem_handle``: u32 pool_id, u32 index, u64 oid[3] (32 bytes).
HANDLE = struct.Struct("<II3Q")
U32 = (1 << 32) - 1
EINVAL, ENOMEM, EFAULT = errno.EINVAL, errno.ENOMEM, errno.EFAULT
MAX_POOLS = abi.MAX_POOLS_PER_DOMAIN

#: The sub-ops this module serves.
SUBOPS = frozenset(range(abi.TMEMC_SAVE_BEGIN, abi.TMEMC_SAVE_END + 1)) | {
    abi.TMEMC_RESTORE_BEGIN, abi.TMEMC_RESTORE_PUT_PAGE, abi.TMEMC_RESTORE_FLUSH_PAGE}


def save_bugs_option(value) -> frozenset:
    """Validate ``Host(save_bugs=...)``: ``"xen"`` (all of :data:`SAVE_BUGS`) or an iterable
    of their names. ``ValueError``/``TypeError`` otherwise."""
    if value == "xen":
        return SAVE_BUGS_XEN
    if isinstance(value, (str, bytes)) or not hasattr(value, "__iter__"):
        raise TypeError(f"save_bugs must be 'xen' or a collection of names from "
                        f"{sorted(SAVE_BUGS)}, not {value!r}")
    names = frozenset(value)
    unknown = names - SAVE_BUGS_XEN
    if unknown:
        raise ValueError(f"unknown save_bugs {sorted(map(str, unknown))}; known: "
                         f"{sorted(SAVE_BUGS)}")
    return names


def do_save_restore(host, op, cli_id: int) -> int:
    """Dispatch a save/restore sub-op for client ``cli_id`` (``tmem_rwlock`` held for
    writing). O(1) except the page sub-ops, which cost a get or a put."""
    sub = op.subop
    client = host.clients.get(cli_id)
    pool_id = op.pool_id & U32
    pool = None if client is None or pool_id >= MAX_POOLS else client.pools[pool_id]
    if sub == abi.TMEMC_SAVE_BEGIN:
        return save_begin(host, client, op.arg1)
    if sub == abi.TMEMC_RESTORE_BEGIN:
        return restore_begin(host, cli_id)
    if sub in (abi.TMEMC_SAVE_GET_VERSION, abi.TMEMC_SAVE_GET_MAXPOOLS):
        return limits(sub)
    if sub == abi.TMEMC_SAVE_GET_NEXT_PAGE:
        return save_get_next_page(host, pool, pool_id, op.buf, op.arg1)
    if sub == abi.TMEMC_SAVE_GET_NEXT_INV:
        return save_get_next_inv(host, client, op.buf, op.arg1)
    if sub == abi.TMEMC_RESTORE_PUT_PAGE:
        return restore_put_page(host, pool, op.oid, op.arg2, op.buf)
    if sub == abi.TMEMC_RESTORE_FLUSH_PAGE:
        return restore_flush_page(host, pool, op.oid, op.arg2)
    if sub == abi.TMEMC_SAVE_END:
        return save_end(host, client)
    if sub in (abi.TMEMC_SAVE_GET_CLIENT_WEIGHT, abi.TMEMC_SAVE_GET_CLIENT_CAP,
               abi.TMEMC_SAVE_GET_CLIENT_FLAGS):
        return -1 if client is None else client_info(client, sub)
    if pool is None:
        return -1
    return pool_info(pool, sub, op.buf)


def save_begin(host, client, live: int) -> int:
    """Xen: ``SAVE_BEGIN`` — freeze the client for a save (remembering whether it was
    frozen); ``live`` != 0 also marks it migrating, so freed persistent pages are logged.
    1; 0 if the client does not exist or has no pool (nothing to save)."""
    if client is None or not client.pool_slots():
        return 0
    client.was_frozen = client.frozen
    client.frozen = True
    if live:
        client.live_migrating = True
    if "stale_end" not in host.save_bugs:
        _reset_cursors(host, client)
    return 1


def limits(sub: int) -> int:
    """Xen: ``SAVE_GET_VERSION`` / ``SAVE_GET_MAXPOOLS`` — the tmem spec version (1) and the
    pools a client may have (16), whatever client is named."""
    return abi.TMEM_SPEC_VERSION if sub == abi.TMEMC_SAVE_GET_VERSION else MAX_POOLS


def restore_begin(host, cli_id: int) -> int:
    """Xen: ``RESTORE_BEGIN`` — create the client of a domain being restored. 1; -1 if the
    domain has a client already (or does not exist, or is dying)."""
    dom = host.mem.domains.get(cli_id)
    if dom is None or dom.client is not None or dom.is_dying:
        return -1
    host._client_create(dom)
    return 1


def client_info(client, sub: int) -> int:
    """Xen: ``SAVE_GET_CLIENT_WEIGHT`` / ``_CAP`` (a value of -1 is reported as -2, so that
    -1 can mean "no such client") and ``_FLAGS`` (``TMEM_CLIENT_COMPRESS``, and
    ``TMEM_CLIENT_FROZEN`` if the client was frozen before the save)."""
    if sub == abi.TMEMC_SAVE_GET_CLIENT_FLAGS:
        return ((abi.TMEM_CLIENT_COMPRESS if client.compress else 0)
                | (abi.TMEM_CLIENT_FROZEN if client.was_frozen else 0))
    value = client.weight if sub == abi.TMEMC_SAVE_GET_CLIENT_WEIGHT else client.cap
    return -2 if value == U32 else value


def pool_info(pool, sub: int, buf) -> int:
    """Xen: ``SAVE_GET_POOL_FLAGS`` (type bits, page size field 0, spec version),
    ``SAVE_GET_POOL_NPAGES`` (its page count) and ``SAVE_GET_POOL_UUID`` (two u64 written to
    ``buf``; 0, or -EFAULT if ``buf`` cannot take 16 bytes)."""
    if sub == abi.TMEMC_SAVE_GET_POOL_FLAGS:
        return ((abi.TMEM_POOL_PERSIST if pool.persistent else 0)
                | (abi.TMEM_POOL_SHARED if pool.shared else 0)
                | (abi.TMEM_SPEC_VERSION << abi.TMEM_POOL_VERSION_SHIFT))
    if sub == abi.TMEMC_SAVE_GET_POOL_NPAGES:
        return pool.pgp_count
    from .host import page_out_view
    view = page_out_view(buf, None)
    if view is None or view.nbytes < 16:
        return -EFAULT
    with view:
        view[:16] = struct.pack("<2Q", *pool.uuid)
    return 0


def save_get_next_page(host, pool, pool_id: int, buf, bufsize: int) -> int:
    """Xen: ``SAVE_GET_NEXT_PAGE`` — the next page of a persistent pool's list: its handle
    (32 bytes) then the page are written to ``buf``, and the result of the get is returned
    (1). -1 when the walk has passed the last page (or the pool is missing or ephemeral);
    -ENOMEM if ``bufsize`` < 4096 + 32; -EFAULT if ``buf`` cannot take them.

    The page is chosen under ``pers_lists_spinlock`` and read by the engine's get after it is
    dropped (Xen holds it across the get, taking object locks under it, against its own lock
    order; ``tmem_rwlock``, held for writing, keeps every page operation out meanwhile)."""
    from .host import page_out_view
    if pool is None or not pool.persistent:
        return -1
    if bufsize < PAGE_SIZE + HANDLE.size:
        return -ENOMEM
    view = page_out_view(buf, None)
    if view is None:
        return -EFAULT
    with view:
        if view.nbytes < PAGE_SIZE + HANDLE.size:
            return -EFAULT
        head = pool.pers_list
        with host.pers_lists_lock:
            if "skip_first_page" in host.save_bugs:
                node = _next_node_skipping_first(pool, head)
            else:
                node = (head if pool.cur_pgp is None else pool.cur_pgp).next2
                if node is head:
                    return -1
            if node is None:
                return -1
            pool.cur_pgp = node
            pgp = node.owner
        if pgp is None:                 # the list head read as a page: no object has its oid
            return 0
        oid, index = pgp.obj.oid, pgp.index
        view[:HANDLE.size] = HANDLE.pack(pool_id, index, *oid)
        if "raw_copy" in host.save_bugs and pgp.size == SIZE_RAW:
            pool.gets += 1              # Xen's get, failing in its copy of a raw page
            host.failed_copies += 1
            return -EINVAL
        return host._get(pool, oid, index, view[HANDLE.size:HANDLE.size + PAGE_SIZE],
                         pool.client.cli_id)


def _next_node_skipping_first(pool, head):
    """Xen's cursor step: on the first call the cursor is set on the first page and the step
    is taken from there, so the first page is skipped; None at the end."""
    cur = pool.cur_pgp
    if list_empty(head):
        return None
    if cur is None:
        cur = head.next2
    elif cur.next2 is head:
        return None
    return cur.next2


def save_get_next_inv(host, client, buf, bufsize: int) -> int:
    """Xen: ``SAVE_GET_NEXT_INV`` — the next logged invalidation, as a handle written to
    ``buf``: 1; 0 at the end of the log (the cursor is reset), if the client does not exist
    or if ``bufsize`` < 32; -EFAULT if ``buf`` cannot take 32 bytes."""
    from .host import page_out_view
    if client is None or bufsize < HANDLE.size:
        return 0
    with host.pers_lists_lock:
        log = client.invalidated
        i = 0 if client.inv_cursor is None else client.inv_cursor + 1
        if i >= len(log):
            client.inv_cursor = None
            return 0
        view = page_out_view(buf, None)
        if view is None or view.nbytes < HANDLE.size:
            if view is not None:
                view.release()
            return -EFAULT
        client.inv_cursor = i
        pool_id, oid, index = log[i]
        with view:
            view[:HANDLE.size] = HANDLE.pack(pool_id, index, *oid)
    return 1


def save_end(host, client) -> int:
    """Xen: ``SAVE_END`` — the migration is over: the client stops migrating, the log is
    freed, and the client is frozen again only if it was before the save. 0; -1 if the
    client does not exist."""
    if client is None:
        return -1
    client.live_migrating = False
    client.frozen = client.was_frozen
    if "stale_end" not in host.save_bugs:
        with host.pers_lists_lock:
            client.invalidated.clear()
        _reset_cursors(host, client)
    return 0


def _reset_cursors(host, client) -> None:
    with host.pers_lists_lock:
        client.inv_cursor = None
        for _, pool in client.pool_slots():
            pool.cur_pgp = None


def restore_put_page(host, pool, oid, index: int, buf) -> int:
    """Xen: ``RESTORE_PUT_PAGE`` — put the page in ``buf`` at (``oid``, ``index``) as the
    pool's owner would (billed to it; no 1 MB guard, as in Xen): the put's value; -1 if the
    pool does not exist; -EFAULT if ``buf`` is not one readable page."""
    from .host import copy_page_in
    if pool is None:
        return -1
    data = copy_page_in(buf)
    cli_id = pool.client.cli_id
    if data is not None and "raw_copy" in host.save_bugs and not _stored_compressed(host,
                                                                                   pool, data):
        rc = host._put(pool, oid, index, None, cli_id)    # the copy fails: Xen's undo path
        return -EINVAL if rc == -EFAULT else rc
    return host._put(pool, oid, index, data, cli_id)


def restore_flush_page(host, pool, oid, index: int) -> int:
    """Xen: ``RESTORE_FLUSH_PAGE`` — flush (``oid``, ``index``) on the target of a live
    migration, as the owner's flush would: 1 (found or not), -EFROZEN if the client is
    frozen (flushed anyway); -1 if the pool does not exist."""
    return -1 if pool is None else host._flush_page(pool, oid, index)


def _stored_compressed(host, pool, data: bytes) -> bool:
    """Would the owner keep this page compressed (and so copy it through a scratch page)?"""
    return pool.client.compress and 0 < len(host.codec.compress(data)) < MAX_ALLOC


# --- the invalidation log -----------------------------------------------------------------------

def delist_persistent(pool, pgp) -> None:
    """Xen: the persistent half of ``pgp_delist_free`` (``pers_lists_spinlock`` held): take
    ``pgp`` off its pool's list, stepping the save cursor back if it is on it, and — while
    the owner is migrating — log its handle on the owner's invalidation log. O(1)."""
    if pool.cur_pgp is pgp:
        pool.cur_pgp = pgp.prev2
    client = pool.client
    if client.live_migrating:
        client.invalidated.append((pool.pool_id, pgp.obj.oid, pgp.index))
    list2_del(pgp)


def check_client(host, client) -> None:
    """The client's save invariants (see :class:`tmemref.core.client.Client`, 4 and 5)."""
    from ..errors import InvariantError
    log = client.invalidated
    if log and not client.live_migrating and "stale_end" not in host.save_bugs:
        raise InvariantError(f"client invariant 4: client {client.cli_id} logs {len(log)} "
                             "invalidations but is not migrating")
    if client.inv_cursor is not None and not 0 <= client.inv_cursor < len(log):
        raise InvariantError(f"client invariant 4: invalidation cursor {client.inv_cursor} "
                             f"outside a log of {len(log)}")
    for pool_id, oid, index in log:
        if not 0 <= pool_id < MAX_POOLS or len(oid) != 3 or not 0 <= index <= U32:
            raise InvariantError(f"client invariant 4: bad logged handle "
                                 f"{(pool_id, oid, index)}")
    for _, pool in client.pool_slots():
        cur = pool.cur_pgp
        owner = None if cur is None else cur.owner
        if cur is not None and cur is not pool.pers_list and (
                not isinstance(owner, Pgp) or owner.obj is None or owner.obj.pool is not pool
                or owner is not cur):
            raise InvariantError(f"client invariant 5: the save cursor of pool {pool.pool_id} "
                                 "is not on its persistent list")
