"""Xen: ``do_tmem_control`` and the ``tmemc_*`` functions — the management tools' interface.

Reached through ``TMEM_CONTROL`` (sub-ops ``TMEMC_*``), ``TMEM_AUTH`` and ``TMEM_RESTORE_NEW``,
from privileged domains only (the XSA-15 fix); :meth:`Host.do_tmem_op` checks that and holds
``tmem_rwlock`` for writing around every call here.

The manageability sequence of tmem-internals.html, for making room for a new guest::

    FREEZE (all) → QUERY_FREEABLE_MB → FLUSH (KB) → allocate the guest's memory → THAW (all)

Return values are classic Xen's: 0 or a count on success, -1 (``-EPERM``) for an unknown
client or a refused request. A client id is a ``domid_t``: only its low 16 bits count
(``0x10001`` is domain 1, ``0x1FFFF`` all clients). The save and restore sub-ops are in
:mod:`tmemref.core.save`.
"""
from __future__ import annotations

import errno

from .. import abi
from . import evict, save, stats

CLI_ALL = abi.TMEM_CLI_ID_NULL
DOMID_MASK = 0xFFFF                 # domid_t: Xen truncates a u32 client id to 16 bits
U32 = (1 << 32) - 1
#: The save/restore sub-ops (served by :func:`tmemref.core.save.do_save_restore`).
SAVE_RESTORE_SUBOPS = save.SUBOPS


def _targets(host, cli_id):
    """The clients a control op addresses: all of them, or the one named (None if unknown)."""
    if cli_id == CLI_ALL:
        return list(host.clients.values())
    client = host.clients.get(cli_id)
    return None if client is None else [client]


def do_control(host, dom, op) -> int:
    """Xen: ``do_tmem_control`` — dispatch a ``TMEMC_*`` sub-op."""
    sub, cli_id = op.subop, op.cli_id & DOMID_MASK
    if sub in (abi.TMEMC_THAW, abi.TMEMC_FREEZE, abi.TMEMC_DESTROY):
        return freeze_pools(host, cli_id, sub)
    if sub == abi.TMEMC_FLUSH:
        if cli_id != CLI_ALL:
            return -1                           # flushing one client is not implemented in Xen
        return flush_mem(host, op.arg1)
    if sub == abi.TMEMC_LIST:
        return stats.tmemc_list_into(host, cli_id, op.buf, op.arg1, bool(op.arg2))
    if sub in (abi.TMEMC_SET_WEIGHT, abi.TMEMC_SET_CAP, abi.TMEMC_SET_COMPRESS):
        return set_var(host, cli_id, sub, op.arg1)
    if sub == abi.TMEMC_QUERY_FREEABLE_MB:
        return host.freeable_pages() >> 8
    if sub in SAVE_RESTORE_SUBOPS:
        return save.do_save_restore(host, op, cli_id)
    return -1


def freeze_pools(host, cli_id, sub) -> int:
    """Xen: ``tmemc_freeze_pools`` — FREEZE sets ``frozen``; THAW clears it; DESTROY, in Xen's
    code, also only clears it (it destroys nothing — recorded in the fidelity notes)."""
    clients = _targets(host, cli_id)
    if clients is None:
        return -1
    for client in clients:
        client.frozen = sub == abi.TMEMC_FREEZE
    return 0


def flush_mem(host, kb: int) -> int:
    """Xen: ``tmemc_flush_mem`` / ``tmem_relinquish_npages`` — evict ephemeral pages until
    ``ceil(kb/4)`` frames sit on tmem_page_list (or eviction fails), then scrub every frame on
    the list and give it to the heap. Returns the KB given back.

    As in Xen, ``kb + 3`` is computed in 32 bits (so a request within 3 KB of 4 GiB wraps to
    almost nothing), and the evictions are made for the calling domain's client, whose quota
    applies."""
    pages = ((kb + 3) & U32) >> 2
    mem = host.mem
    client = host._current_client()
    while len(mem.page_list) < pages:
        if not evict.tmem_evict(host, client):
            break
    return mem.flush_page_list() * 4


def set_var(host, cli_id, sub, arg) -> int:
    """Xen: ``tmemc_set_var`` — weight (keeping ``client_weight_total``), cap (stored, never
    enforced), compress (refused when dedup is on). -1 for an unknown client, and for "all
    clients" when there is none (Xen's result starts at -1 and only a client sets it)."""
    clients = _targets(host, cli_id)
    if not clients:
        return -1
    if sub == abi.TMEMC_SET_COMPRESS and host.dedup:
        return -1
    for client in clients:
        if sub == abi.TMEMC_SET_WEIGHT:
            host.client_weight_total += arg - client.weight
            client.weight = arg
        elif sub == abi.TMEMC_SET_CAP:
            client.cap = arg
        else:
            client.compress = bool(arg)
    return 0


def shared_pool_auth(host, cli_id, uuid, auth) -> int:
    """Xen: ``tmemc_shared_pool_auth`` (TMEM_AUTH) — ``auth`` 1 lets client ``cli_id`` join
    the shared pool ``uuid``, 0 takes that back; for all clients it switches the global
    "everyone is authorised" knob. 1 done; 0 nothing to revoke; -EINVAL no such domain;
    -ENOMEM all 16 slots used."""
    cli_id &= DOMID_MASK
    if cli_id == CLI_ALL:
        host.global_shared_auth = bool(auth)
        return 1
    dom = host.mem.domains.get(cli_id)
    if dom is None:
        return -errno.EINVAL
    client = dom.client or host._client_create(dom)
    uuid = tuple(uuid)
    slots = client.shared_auth_uuid
    if auth:
        if uuid in slots:
            return 1
        if len(slots) >= 16:
            return -errno.ENOMEM
        slots.append(uuid)
        return 1
    if uuid in slots:
        slots.remove(uuid)
        return 1
    return 0


def restore_new_pool(host, dom, op) -> int:
    """Xen: TMEM_RESTORE_NEW — create pool ``op.pool_id`` for client ``op.arg1`` (a restore
    rebuilding a saved guest). -EPERM if the client does not exist or the slot is taken.
    ``arg1`` 0xFFFF ("no client") makes it a NEW_POOL of the caller's own client, in its
    lowest free slot, as in Xen (which assumed that client existed; here it is created)."""
    cli_id = op.arg1 & DOMID_MASK
    if cli_id == CLI_ALL:
        client = dom.client or host._client_create(dom)
        return host._new_pool(client, op.flags, op.uuid, None)
    client = host.clients.get(cli_id)
    if client is None:
        return -errno.EPERM
    return host._new_pool(client, op.flags, op.uuid, op.pool_id & U32)
