"""Xen: ``struct client`` — everything tmem knows about one guest (domain)."""
from __future__ import annotations

from ..ds.dlist import Head2
from ..host.alloc import client_pool

MAX_POOLS_PER_DOMAIN = 16

#: Per-client statistics kept as Xen keeps them (LIST's C= line).
CLIENT_COUNTERS = ("compress_poor", "compress_nomem", "compressed_pages", "compressed_sum_size",
                   "total_cycles", "succ_pers_puts", "succ_eph_gets", "succ_pers_gets")


class Client:
    """Xen: ``struct client`` (``client_t``), created on a domain's first tmem operation.

    Invariants (checked by :meth:`Host.check`, which sees the global lists):

    1. ``eph_count`` is the length of ``eph_list`` and ``eph_count <= eph_count_max``;
    2. every pool in ``pools`` either belongs to this client or is a shared pool it is on the
       sharelist of, and appears in one slot only;
    3. ``shared_auth_uuid`` holds at most 16 distinct uuids;
    4. ``invalidated`` (the invalidation log of live migration) is empty unless the client is
       migrating; each entry is a handle ``(pool_id < 16, oid, u32 index)``; ``inv_cursor`` is
       None or an index into it;
    5. the save cursor of each of its pools is None, the pool's persistent list head, or the
       list node of one of the pool's pages;
    6. ``compressed_pages`` and ``compressed_sum_size`` count the compressed pgps of the pools
       it owns and their sizes.
    """
    __slots__ = ("cli_id", "domain", "pools", "weight", "cap", "compress", "frozen",
                 "was_frozen", "live_migrating", "eph_list", "eph_count", "eph_count_max",
                 "shared_auth_uuid", "persistent_pool", "invalidated", "inv_cursor") \
        + CLIENT_COUNTERS

    def __init__(self, domain, mem, compress: bool):
        self.cli_id = domain.domid        # the domain id
        self.domain = domain              # back pointer to the domain (billing)
        self.pools = [None] * MAX_POOLS_PER_DOMAIN   # pool slots; a shared pool in each sharer
        self.weight = 0                   # share of ephemeral memory; 0 = no quota (global LRU)
        self.cap = 0                      # stored and reported, never enforced (as in Xen)
        self.compress = compress          # compress this client's pages (boot option default)
        self.frozen = False               # new puts refused with -EFROZEN
        self.was_frozen = False           # frozen state before a save froze it
        self.live_migrating = False       # between SAVE_BEGIN(live) and SAVE_END
        self.eph_list = Head2()           # this client's ephemeral pgps, oldest first
        self.eph_count = 0                # len(eph_list)
        self.eph_count_max = 0            # high-water mark of eph_count
        self.shared_auth_uuid: list = []  # uuids this client may join (<= 16)
        self.persistent_pool = client_pool(mem, domain)  # billed TLSF pool, first frame lazily
        self.invalidated: list = []       # (pool_id, oid, index) of persistent pages freed
                                          # while live-migrating, oldest first
        self.inv_cursor = None            # SAVE_GET_NEXT_INV: index last returned; None: none
        for name in CLIENT_COUNTERS:
            setattr(self, name, 0)

    def pool_slots(self):
        """(slot, pool) for every used slot, in slot order."""
        return [(i, p) for i, p in enumerate(self.pools) if p is not None]

    def __repr__(self):
        return f"<client {self.cli_id} eph={self.eph_count} w={self.weight}>"
