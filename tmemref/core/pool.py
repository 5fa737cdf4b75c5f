"""Xen: ``struct tmem_pool`` — a guest's pool: 256 hashed red-black trees of objects.

A pool is ephemeral (pages may vanish: clean page cache) or persistent (pages stay until
flushed: swap), private or shared (several clients find it by a 128-bit uuid).
"""
from __future__ import annotations

from ..ds.dlist import Head2, list_check, list_iter
from ..ds.rbtree import RBTree
from ..errors import InvariantError
from ..host.locks import RWLock, RANK_POOL
from ..host.alloc import SIZEOF
from .obj import oid_hash

SIZEOF_OBJNODE = SIZEOF["objnode"]

OBJ_HASH_BUCKETS = 256

#: Per-pool statistics, in the order the LIST long form prints them (P= and S= lines).
POOL_COUNTERS = ("puts", "good_puts", "no_mem_puts", "dup_puts_flushed", "dup_puts_replaced",
                 "gets", "found_gets", "flushs", "flushs_found", "flush_objs", "flush_objs_found")


class Pool:
    """Xen: ``struct tmem_pool``.

    Invariants (checked by :meth:`check`):

    1. every object in ``buckets[b]`` hashes to ``b`` and its ``pool`` is this pool;
    2. ``obj_count`` is the number of objects in all buckets; ``pgp_count`` and
       ``objnode_count`` are the sums over the objects;
    3. persistent: ``pers_list`` holds exactly this pool's pgps; ephemeral: it is empty;
    4. every maximum is at least its count;
    5. shared: the owner is on the sharelist, ``shared_count == len(share_list)``; private:
       the sharelist is empty.
    """
    __slots__ = ("pool_id", "client", "persistent", "shared", "uuid", "is_dying", "lock",
                 "buckets", "share_list", "share_meta", "shared_count", "pers_list", "cur_pgp",
                 "pgp_count", "pgp_count_max", "obj_count", "obj_count_max",
                 "objnode_count", "objnode_count_max", "mempool", "node_alloc", "node_free",
                 "sum_life_cycles", "sum_evicted_cycles") \
        + POOL_COUNTERS

    def __init__(self, client, pool_id: int, persistent: bool, shared: bool, uuid, mempool):
        self.pool_id = pool_id            # slot in the owner's pools[] (shared: owner's slot)
        self.client = client              # owner client (billed; shared pools: creator)
        self.persistent = persistent      # True: persistent; False: ephemeral
        self.shared = shared              # True: found by uuid in shared_pools[]
        self.uuid = uuid                  # (lo, hi); kept but meaningless for private pools
        self.is_dying = False             # set while its objects are destroyed; evictor skips
        self.lock = RWLock("pool_rwlock", RANK_POOL)
        self.buckets = [RBTree() for _ in range(OBJ_HASH_BUCKETS)]   # obj_rb_root[256]
        self.share_list: list = []        # clients sharing it (shared pools), in join order
        self.share_meta: list = []        # the sharelist entries' addresses, in the same order
        self.shared_count = 0             # len(share_list)
        self.pers_list = Head2()          # persistent_page_list (save/restore order)
        self.cur_pgp = None               # save cursor over pers_list
        self.pgp_count = self.pgp_count_max = 0
        self.obj_count = self.obj_count_max = 0
        self.objnode_count = self.objnode_count_max = 0
        self.sum_life_cycles = 0          # total time its flushed pages lived (host clock)
        self.sum_evicted_cycles = 0       # Xen's, never incremented (eviction keeps no times)
        self.mempool = mempool            # sub-page allocator billed for this pool's metadata
        self.node_alloc = self._node_alloc   # radix-tree node callbacks shared by all objects
        self.node_free = self._node_free
        for name in POOL_COUNTERS:
            setattr(self, name, 0)

    def _node_alloc(self):
        return self.mempool.alloc(SIZEOF_OBJNODE)

    def _node_free(self, addr) -> None:
        self.mempool.free(addr)

    @property
    def type_code(self) -> str:
        """The two ``PT:`` letters of LIST: P/E (persistent/ephemeral), S/P (shared/private)."""
        return ("P" if self.persistent else "E") + ("S" if self.shared else "P")

    def objects(self):
        """Every object, bucket by bucket, each bucket in key order. O(objects)."""
        for tree in self.buckets:
            for node in tree:
                yield node.value

    def find(self, oid):
        """Xen: ``obj_find`` (caller holds ``lock``) — the object or None. O(log objects)."""
        node = self.buckets[(oid[0] ^ oid[1] ^ oid[2]) & 0xFF].find((oid[2], oid[1], oid[0]))
        return None if node is None else node.value

    def check(self) -> None:
        """Verify invariants 1-5 and every object's own; raises :class:`InvariantError`."""
        objs = pgps = nodes = 0
        for b, tree in enumerate(self.buckets):
            if tree.root is None and tree.count == 0:
                continue                        # an empty bucket has nothing to check
            tree.check()
            for node in tree:
                obj = node.value
                if oid_hash(obj.oid) != b or obj.pool is not self:
                    raise InvariantError(f"pool invariant 1: obj {obj.oid} in bucket {b} of pool "
                                         f"{self.pool_id} hashes to {oid_hash(obj.oid)}")
                obj.check()
                objs += 1
                pgps += obj.pgp_count
                nodes += obj.objnode_count
        if (objs, pgps, nodes) != (self.obj_count, self.pgp_count, self.objnode_count):
            raise InvariantError(
                f"pool invariant 2: pool {self.pool_id} counts obj/pgp/objnode "
                f"{self.obj_count}/{self.pgp_count}/{self.objnode_count}, trees hold "
                f"{objs}/{pgps}/{nodes}")
        list_check(self.pers_list, name=f"persistent list of pool {self.pool_id}")
        on_list = [n.owner for n in list_iter(self.pers_list)]
        if self.persistent:
            if len(on_list) != pgps or any(p.obj.pool is not self or p.obj.tree.lookup(p.index)
                                           is not p for p in on_list):
                raise InvariantError(f"pool invariant 3: persistent list of pool {self.pool_id} "
                                     f"holds {len(on_list)} pages, trees hold {pgps}")
        elif on_list:
            raise InvariantError(f"pool invariant 3: ephemeral pool {self.pool_id} has a "
                                 f"persistent list")
        if (self.pgp_count_max < self.pgp_count or self.obj_count_max < self.obj_count
                or self.objnode_count_max < self.objnode_count):
            raise InvariantError(f"pool invariant 4: a maximum is below its count in pool "
                                 f"{self.pool_id}")
        if self.shared:
            if self.client not in self.share_list or self.shared_count != len(self.share_list):
                raise InvariantError(f"pool invariant 5: shared pool {self.uuid} sharelist "
                                     f"{[c.cli_id for c in self.share_list]} / owner "
                                     f"{self.client.cli_id} / count {self.shared_count}")
        elif self.share_list or self.shared_count:
            raise InvariantError(f"pool invariant 5: private pool {self.pool_id} has sharers")

    def __repr__(self):
        return f"<pool {self.client.cli_id}:{self.pool_id} {self.type_code} pgps={self.pgp_count}>"
