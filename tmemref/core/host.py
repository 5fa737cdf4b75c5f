"""Xen: ``tmem.c`` — the hypercall entry point and the page operations.

:class:`Host` is one physical machine running Xen with tmem: a fixed array of frames, the domains
that live in it, and tmem's whole web of structures (clients → pools → 256 hashed rb-trees of
objects → radix trees of page descriptors → frames, plus the LRU lists and the free lists).
Guests call it through one entry point, :meth:`Host.do_tmem_op`, which returns exactly what
Xen's hypercall returns.

Data path of a put::

    do_tmem_op → client → pool (pools[pool_id]) → bucket (oid0^oid1^oid2) & 255 → rb-tree → obj
      → radix tree[index] → pgp → frame (tmem_page_list, else heap; persistent: billed)
      → LRU lists (ephemeral) or persistent list → statistics

Eviction (:mod:`tmemref.core.evict`) walks the same web bottom-up, from a pgp on an LRU list
through back pointers to its object and pool.

Thread safety: every operation takes the documented locks (:mod:`tmemref.host.locks`), so
several threads may call ``do_tmem_op`` at once. Object ids, indices and flags are validated on
entry; no bad input raises or changes any stored page.
"""
from __future__ import annotations

import errno
import operator
import threading
import time

import numpy as np

from .. import abi
from ..ds.radix import collect_node_metas
from ..ds.dlist import (ListHead, list_add_tail, list_check, list_del, list_iter,
                        list_linked, list_move_tail, list2_add_tail, list2_del, list2_linked,
                        list2_move_tail)
from ..errors import InvariantError
from ..host.alloc import SIZEOF, MAX_ALLOC, LARGEST_FIT, tmem_pool
from ..host.compress import default_codec, get_codec
from ..host.frames import HostMemory, PAGE_SIZE, MEMF_tmem
from ..host import locks as _locks
from ..host.locks import RWLock, SpinLock, RANK_TMEM, RANK_LISTS, yield_point
from . import control, evict, save, stats
from .client import Client, MAX_POOLS_PER_DOMAIN
from .obj import Obj, Pgp, SIZE_RAW, pgp_forget
from .pcd import Pcd, PcdLayer
from .pool import Pool

ENOMEM, ENODEV, EPERM, ENOSPC, EFAULT, EINVAL, ENOSYS = (
    errno.ENOMEM, errno.ENODEV, errno.EPERM, errno.ENOSPC, errno.EFAULT, errno.EINVAL,
    errno.ENOSYS)
EFROZEN, EEMPTY = abi.EFROZEN, abi.EEMPTY
PUT, GET, FLUSH_PAGE, FLUSH_OBJECT = (abi.TMEM_PUT_PAGE, abi.TMEM_GET_PAGE, abi.TMEM_FLUSH_PAGE,
                                      abi.TMEM_FLUSH_OBJECT)
SIZEOF_OBJ, SIZEOF_PGP, SIZEOF_SHARELIST = SIZEOF["obj"], SIZEOF["pgp"], SIZEOF["sharelist"]
U64, U32 = (1 << 64) - 1, (1 << 32) - 1
#: Where a pgp's timestamp sits in its block of host memory, in 64-bit words: Xen's x86-64
#: ``struct tmem_page_descriptor`` ends with it (bytes 64..71 of 72). tmemref keeps the other
#: fields in the :class:`Pgp` object; the timestamp stays in memory, as in Xen, because a
#: Python int per page would cost 32 bytes of heap for a number only the statistics read.
PGP_TIMESTAMP_WORD = 8
INVALID_UUID = (U64, U64)
MAX_GLOBAL_SHARED_POOLS = 16

#: Global statistics Xen keeps (``struct tmem_statistics``), all starting at 0.
GLOBAL_COUNTERS = (
    "total_tmem_ops", "errored_tmem_ops", "total_flush_pool", "alloc_failed", "evicted_pgs",
    "evict_attempts", "relinq_pgs", "relinq_attempts", "max_evicts_per_relinq", "low_on_memory",
    "deduped_puts", "tot_good_eph_puts", "failed_copies", "pcd_tot_tze_size", "pcd_tot_csize",
    "global_eph_count_max", "global_obj_count", "global_obj_count_max", "global_pgp_count",
    "global_pgp_count_max", "global_pcd_count", "global_pcd_count_max", "global_page_count",
    "global_page_count_max", "global_rtree_node_count", "global_rtree_node_count_max")


class Host:
    """Xen with tmem enabled: one machine's memory, its domains, and tmem's structures.

    ``Host(pages, compress=False, dedup=False, tze=False, shared_auth=True, ...)``:

    * ``pages`` — frames of host memory (4 KiB each) for guests and tmem alike;
    * ``compress`` — Xen's ``tmem_compress``: new clients compress their pages;
    * ``dedup`` — Xen's ``tmem_dedup``: ephemeral pages with the same content, in any pools of
      any clients, share one copy (:mod:`tmemref.core.pcd`); compression is then global (the
      boot option) and ``TMEMC_SET_COMPRESS`` is refused;
    * ``tze`` — Xen's ``tmem_tze``: dedup'ed pages are kept without their trailing zeros (an
      all-zero page costs nothing). Like Xen it acts only through dedup, and is switched off at
      boot when compression and dedup are both on ("not compatible");
    * ``tze_match`` — ``"doc"`` (default): a later put of the same content finds a page that
      tze shrank, as the doc intends; ``"xen"``: it never does, as in Xen's code;
    * ``shared_auth`` — joining a shared pool needs ``TMEM_AUTH`` by a privileged domain (else the
      guest silently gets a private pool), as Xen 4.9+ required;
    * ``quota_rule`` — ``"doc"`` (default): a weighted client whose share of ephemeral pages
      *exceeds* its weight's share is evicted from its own list, as tmem-internals.html says;
      ``"xen"``: Xen's code, whose formula is the inverse;
    * ``lock_scheme`` — ``"doc"`` (default): ``tmem_rwlock`` is taken for reading by page
      operations and for writing by invasive ones, as tmem-internals.html describes (Xen
      <= 4.3); ``"xen-4.5"``: every hypercall first takes it for writing and, for a page
      operation, drops it for the read lock once the pool is validated (Xen 4.5 and later);
    * ``min_free_pages`` — the free-memory guard of ``tmem_ensure_avail_pages`` (1 MB = 256
      frames beyond the heap's reserve, :meth:`HostMemory.total_free_pages`);
    * ``evict_budget`` — failed evictions a put tolerates before -ENOMEM (10);
    * ``dom0_pages`` — memory of domain 0, which always exists and is privileged;
    * ``dom0_max_pages`` — what domain 0 may be billed for (default: ``dom0_pages``);
    * ``codec`` — the compressor: a name (``"lzo1x-1"``, ``"lz4"``, ``"zstd"``, ``"zlib"``,
      :mod:`tmemref.host.compress`) or any object with ``compress(page)`` and
      ``decompress(data)``; default LZO1X-1 as in Xen (made when first needed; without
      python-lzo a fallback, with a warning naming it);
    * ``compress_fit`` — ``"doc"`` (default): a page that compresses to more than the
      allocator can ever serve (4033..4063 bytes: TLSF rounds such requests up to 4096) is
      stored whole and counted as poor; ``"xen"``: its allocation fails and so does the put
      (-ENOMEM, ``compress_nomem``), as in Xen;
    * ``clock`` — a callable giving "cycles" (a non-negative number, kept as a u64 int in
      each page's descriptor) for the pools' life-time statistics (``sum_life_cycles``;
      ``sum_evicted_cycles`` is kept, and never moves, as in Xen); default: the count of
      hypercalls so far, a logical clock that keeps runs deterministic;
    * ``save_bugs`` — Xen's bugs in save and restore to reproduce (default: none, the
      documented behaviour): names from :data:`tmemref.core.save.SAVE_BUGS`, or ``"xen"`` for
      all of them, as Xen 4.4-4.7 shipped.

    Complexity: a put, get or flush costs O(log objects-in-bucket + radix height); an eviction
    O(1) unless pages are skipped; ``check()`` is O(everything).
    """

    def __init__(self, pages: int = 4096, *, compress: bool = False, dedup: bool = False,
                 tze: bool = False, shared_auth: bool = True, quota_rule: str = "doc",
                 min_free_pages: int = 256, evict_budget: int = 10, dom0_pages: int = 0,
                 dom0_max_pages: int | None = None, codec=None, clock=None,
                 lock_scheme: str = "doc", tze_match: str = "doc", compress_fit: str = "doc",
                 save_bugs=()):
        if tze_match not in ("doc", "xen"):
            raise ValueError("tze_match must be 'doc' or 'xen'")
        if compress_fit not in ("doc", "xen"):
            raise ValueError("compress_fit must be 'doc' or 'xen'")
        if quota_rule not in ("doc", "xen"):
            raise ValueError("quota_rule must be 'doc' or 'xen'")
        if lock_scheme not in ("doc", "xen-4.5"):
            raise ValueError("lock_scheme must be 'doc' or 'xen-4.5'")
        if clock is not None:
            if not callable(clock):
                raise TypeError(f"clock must be a callable, not {type(clock).__name__}")
            t = clock()
            if type(t) not in (int, float) or not 0 <= t < 1 << 64:
                raise ValueError(f"clock() must give a number of cycles in 0..2**64-1, "
                                 f"not {t!r}")
        for name, value in (("pages", pages), ("min_free_pages", min_free_pages),
                            ("evict_budget", evict_budget), ("dom0_pages", dom0_pages)):
            _check_count(name, value)
        reserve = pages // 128                       # the heap's reserve (frames.py)
        if pages <= min_free_pages + dom0_pages + reserve:
            raise ValueError(
                f"a host of {pages} frames cannot keep {min_free_pages} frames free (the 1 MB "
                f"guard) beside domain 0's {dom0_pages} and the heap's reserve of {reserve}: "
                "every put would fail; give more pages or a smaller min_free_pages")
        self.save_bugs = save.save_bugs_option(save_bugs)   # Xen's save/restore bugs, if any
        self.mem = HostMemory(pages)                 # physical memory, heap, page list
        self.mem.relinquish = self._relinquish_page
        self._cpu = threading.local()                # .domid: the domain whose hypercall this
                                                     # thread runs (Xen's current); else dom0
        self.compress = bool(compress)               # boot option tmem_compress
        self.dedup = bool(dedup)                     # boot option tmem_dedup
        self.tze = bool(tze) and not (self.dedup and self.compress)  # tmem_tze ("not compatible")
        self.shared_auth = bool(shared_auth)         # auth needed to join shared pools
        self.global_shared_auth = False              # TMEM_AUTH(all, 1): everyone authorised
        self.quota_rule = quota_rule                 # "doc" or "xen" (client_over_quota)
        self.lock_scheme = lock_scheme               # "doc" (<= 4.3) or "xen-4.5" (see above)
        self.min_free_pages = min_free_pages         # ensure_avail guard (1 MB)
        self.evict_budget = evict_budget             # failed evictions tolerated per put
        if isinstance(codec, str):
            codec = get_codec(codec)
        self._codec = codec                          # compressor; None: default, made lazily
        self.compress_fit = compress_fit             # "doc" or "xen" (see above)
        self.clock = clock                           # optional cycle counter
        self.tmem_rwlock = RWLock("tmem_rwlock", RANK_TMEM)
        self.eph_lists_lock = SpinLock("eph_lists_spinlock", RANK_LISTS)
        self.pers_lists_lock = SpinLock("pers_lists_spinlock", RANK_LISTS)
        self.eph_list = ListHead()                   # global ephemeral LRU, oldest first
        self.eph_count = 0                           # len(eph_list)
        self.clients: dict = {}                      # domid -> Client, in creation order
        self.shared_pools = [None] * MAX_GLOBAL_SHARED_POOLS
        self.client_weight_total = 0                 # sum of all clients' weights
        self.eph_mempool = tmem_pool(self.mem)       # global TLSF pool ("tmem")
        self.infra_pool = self.eph_mempool           # pcds and sharelists: no owner (pool NULL)
        self.sizeof_pcd = SIZEOF["pcd"]
        self.pcd = PcdLayer(self, self.tze, tze_match) if self.dedup else None  # dedup trees
        for name in GLOBAL_COUNTERS:
            setattr(self, name, 0)
        self.privileged = {0}                        # domains allowed control operations
        self.create_domain(0, pages=dom0_pages,
                           max_pages=dom0_pages if dom0_max_pages is None else dom0_max_pages)
        self.mem.domains[0].privileged = True

    @property
    def codec(self):
        """The compressor (LZO1X-1 unless another was given), made on first use."""
        if self._codec is None:
            self._codec = default_codec()
        return self._codec

    # --- construction ---------------------------------------------------------------------------
    @classmethod
    def from_cmdline(cls, cmdline: str, pages: int = 4096, **kw) -> "Host":
        """Build a host from Xen's boot options: ``tmem`` must be present; ``tmem_compress``,
        ``tmem_dedup``, ``tmem_tze``, ``tmem_shared_auth`` are booleans (``opt`` or
        ``opt=0/1/yes/no/true/false/on/off``). Unknown words are other Xen options and ignored.

        >>> Host.from_cmdline("dom0_mem=512M tmem tmem_compress", pages=1024).compress
        True
        """
        opts = {}
        for word in cmdline.split():
            key, _, val = word.partition("=")
            if not val:
                on = True
            elif val.lower() in ("1", "yes", "true", "on", "enable"):
                on = True
            elif val.lower() in ("0", "no", "false", "off", "disable"):
                on = False
            else:
                continue
            opts[key.lower()] = on
        if not opts.get("tmem", False):
            raise ValueError("tmem is off on this command line (Xen: do_tmem_op returns -ENODEV)")
        kw.setdefault("compress", opts.get("tmem_compress", False))
        kw.setdefault("dedup", opts.get("tmem_dedup", False))
        kw.setdefault("tze", opts.get("tmem_tze", False))
        if "tmem_shared_auth" in opts:
            kw.setdefault("shared_auth", opts["tmem_shared_auth"])
        return cls(pages, **kw)

    def create_domain(self, domid: int, pages: int = 0, max_pages: int | None = None,
                      privileged: bool = False):
        """Create a domain holding ``pages`` frames of its own, billed up to ``max_pages``
        (default: ``pages``). Memory comes from the heap; if it is short, tmem gives back
        freeable frames (evicting ephemeral pages) under the heap lock, as Xen's
        ``alloc_heap_pages`` asks ``tmem_relinquish_pages``. ``MemoryError`` if it cannot;
        ``ValueError``/``TypeError`` for impossible arguments (nothing changes)."""
        if type(domid) is not int or not 0 <= domid < abi.TMEM_CLI_ID_NULL:
            raise ValueError(f"bad domain id {domid!r}: an int in [0, 0xFFFF)")
        if max_pages is None:
            max_pages = pages
        _check_count("pages", pages)
        _check_count("max_pages", max_pages)
        if pages > max_pages:
            raise ValueError(f"pages ({pages}) > max_pages ({max_pages}): a domain is never "
                             "given more memory than it may hold")
        d = self.mem.add_domain(domid, pages, max_pages, bool(privileged))
        if privileged:
            self.privileged.add(domid)
        return d

    def destroy_domain(self, domid: int) -> None:
        """Xen: ``domain_kill`` → ``tmem_destroy``: the domain is marked dying (its hypercalls
        get -ENODEV from now on), every pool of its client is flushed and the client freed
        under ``tmem_rwlock`` held for writing; then its memory goes back to the heap
        (scrubbed)."""
        d = self.mem.domains.get(domid) if type(domid) is int else None
        if d is None:
            raise ValueError(f"no domain {domid!r}")
        if domid == 0:
            raise ValueError("domain 0 cannot be destroyed")
        with self.tmem_rwlock_w():
            if d.is_dying:
                raise ValueError(f"domain {domid} is already being destroyed")
            d.is_dying = True
            client = self.clients.get(domid)
            if client is not None:
                for i, pool in enumerate(client.pools):
                    if pool is not None:
                        client.pools[i] = None
                        self._pool_flush(pool, client)
                self.client_weight_total -= client.weight
                client.persistent_pool.destroy()
                del self.clients[domid]
        self.mem.remove_domain(domid)
        self.privileged.discard(domid)

    class _WriteLocked:
        __slots__ = ("lock",)

        def __init__(self, lock):
            self.lock = lock

        def __enter__(self):
            self.lock.write_lock()

        def __exit__(self, *exc):
            self.lock.write_unlock()

    def tmem_rwlock_w(self):
        """Context manager holding ``tmem_rwlock`` for writing."""
        return Host._WriteLocked(self.tmem_rwlock)

    # --- the hypercall --------------------------------------------------------------------------
    def do_tmem_op(self, domid: int, op: abi.TmemOp) -> int:
        """Xen: ``do_tmem_op`` — the tmem hypercall from domain ``domid``. Returns Xen's value.

        Raises ``ValueError`` only if ``domid`` is not a domain of this host (no such caller
        exists in Xen). Everything else, however malformed, gets a return code, and every lock
        the call takes is released on every way out.
        """
        dom = self.mem.domains.get(domid) if type(domid) is int else None
        if dom is None:
            raise ValueError(f"no domain {domid!r} on this host")
        n = self.total_tmem_ops                # informational: no lock, not atomic
        if _locks._sched is not None:
            yield_point("total_tmem_ops")
        self.total_tmem_ops = n + 1
        cpu = self._cpu
        cpu.domid = domid                      # Xen's current: whose memory an eviction
        try:                                   # or a relinquish made now is for
            rc = self._dispatch(dom, op)
        finally:
            cpu.domid = 0
        if rc < 0:
            n = self.errored_tmem_ops
            if _locks._sched is not None:
                yield_point("errored_tmem_ops")
            self.errored_tmem_ops = n + 1
        return rc

    def _dispatch(self, dom, op) -> int:
        """Copy the op in once (as ``copy_from_guest`` does), validate the copy, and run it.
        Nothing below reads ``op`` again, so a guest changing it meanwhile changes nothing."""
        if type(op) is _TmemOp:                # the frequent case: each field read once
            cmd, pool_id, oid, index, page = op.cmd, op.pool_id, op.oid, op.index, op.page
            if type(cmd) is int and PUT <= cmd <= FLUSH_OBJECT:
                if not valid_fields(cmd, pool_id, op.uuid, op.flags, op.arg1, oid, index,
                                    op.subop, op.cli_id, op.arg2):
                    return -EFAULT
                return self._page_op(dom, cmd, pool_id, oid, index, page)
        c = copy_op(op)
        if c is None:
            return -EFAULT                     # no C struct tmem_op could hold these values
        cmd = c[0]
        if PUT <= cmd <= FLUSH_OBJECT:
            return self._page_op(dom, cmd, c[1], c[5], c[6], c[7])
        if cmd == abi.TMEM_CONTROL or cmd == abi.TMEM_AUTH or cmd == abi.TMEM_RESTORE_NEW:
            if not dom.privileged:
                return -EPERM
            op = abi.TmemOp(*c)                # the copy, for the control code to read
            with self.tmem_rwlock_w():
                if not self._caller_alive(dom):
                    return -ENODEV
                if cmd == abi.TMEM_CONTROL:
                    return control.do_control(self, dom, op)
                if cmd == abi.TMEM_AUTH:
                    return control.shared_pool_auth(self, op.arg1, op.uuid, op.flags)
                return control.restore_new_pool(self, dom, op)
        with self.tmem_rwlock_w():             # NEW/DESTROY_POOL and unknown commands
            if not self._caller_alive(dom):
                return -ENODEV
            client = dom.client or self._client_create(dom)
            if cmd == abi.TMEM_NEW_POOL:
                return self._new_pool(client, c[3], c[2], None)
            pool_id = c[1] & U32
            if cmd == abi.TMEM_DESTROY_POOL:
                return self._destroy_pool(client, pool_id)
            if pool_id >= MAX_POOLS_PER_DOMAIN or client.pools[pool_id] is None:
                return -ENODEV                 # Xen checks the pool before the command
            return -ENOSYS

    def _caller_alive(self, dom) -> bool:
        """The calling domain is still this host's and not dying (``tmem_rwlock`` held)."""
        return not dom.is_dying and self.mem.domains.get(dom.domid) is dom

    def _page_op(self, dom, cmd, pool_id, oid, index, page) -> int:
        """PUT, GET, FLUSH_PAGE, FLUSH_OBJECT: ``tmem_rwlock`` is held for reading across the
        whole operation, the lookup of the client and the pool included, so a pool cannot be
        destroyed (nor the domain die) under it. A first call creates the client, which needs
        the lock for writing; the lookup is then done again under the read lock."""
        if cmd == PUT:
            data = copy_page_in(page)          # the guest frame, read once (None: unreadable)
        elif cmd == GET:
            data = page_out_view(page)         # a view that pins the guest buffer (None: bad)
        if dom.client is None or self.lock_scheme == "xen-4.5":
            # Xen 4.5+ takes the lock for writing on every call, validates, then drops it and
            # takes it for reading; the documented scheme needs writing only to create the
            # client. Either way the lookup is (re)done under the read lock below.
            with self.tmem_rwlock_w():
                if self._caller_alive(dom) and dom.client is None:
                    self._client_create(dom)
        lock = self.tmem_rwlock
        lock.read_lock()
        try:
            client = dom.client
            if client is None or not self._caller_alive(dom):
                return -ENODEV
            pool_id &= U32                     # Xen compares (uint32_t)pool_id with 16
            if pool_id >= MAX_POOLS_PER_DOMAIN:
                return -ENODEV
            pool = client.pools[pool_id]
            if pool is None or pool.is_dying:
                return -ENODEV
            if cmd == PUT:
                mem = self.mem
                if mem.guard_pages() < self.min_free_pages and \
                        not evict.ensure_avail_pages(self, client):
                    return self._put_refused(pool, oid, index)
                return self._put(pool, oid, index, data, client.cli_id)
            if cmd == GET:
                return self._get(pool, oid, index, data, client.cli_id)
            if cmd == FLUSH_PAGE:
                return self._flush_page(pool, oid, index)
            return self._flush_object(pool, oid)
        finally:
            lock.read_unlock()

    def _client_create_locked(self, dom) -> Client:
        with self.tmem_rwlock_w():
            return dom.client or self._client_create(dom)

    # --- clients and pools ----------------------------------------------------------------------
    def _client_create(self, dom) -> Client:
        """Xen: ``client_create`` (caller holds tmem_rwlock for writing)."""
        client = Client(dom, self.mem, self.compress)
        dom.client = client
        self.clients[dom.domid] = client
        return client

    def _new_pool(self, client, flags, uuid, want_id) -> int:
        """Xen: ``do_tmem_new_pool``. ``want_id`` None: lowest free slot (guest call);
        an int: that slot (TMEM_RESTORE_NEW). Returns the pool id or -EPERM/-ENOMEM."""
        persistent = bool(flags & abi.TMEM_POOL_PERSIST)
        shared = bool(flags & abi.TMEM_POOL_SHARED)
        if (flags >> abi.TMEM_POOL_VERSION_SHIFT) & abi.TMEM_POOL_VERSION_MASK != abi.TMEM_SPEC_VERSION:
            return -EPERM
        if shared and persistent:
            return -EPERM
        if (flags >> abi.TMEM_POOL_PAGESIZE_SHIFT) & abi.TMEM_POOL_PAGESIZE_MASK != 0:
            return -EPERM                      # only the host page size (4 KiB)
        if flags & abi.TMEM_POOL_PRECOMPRESSED or flags & abi.TMEM_POOL_RESERVED_BITS:
            return -EPERM
        if flags >> 32:
            return -EPERM
        if want_id is None:
            try:
                slot = client.pools.index(None)
            except ValueError:
                return -EPERM                  # all 16 slots used
        else:
            if not 0 <= want_id < MAX_POOLS_PER_DOMAIN or client.pools[want_id] is not None:
                return -EPERM
            slot = want_id
        uuid = tuple(uuid)
        if shared:
            if uuid == INVALID_UUID:
                shared = False
            elif (self.shared_auth and not self.global_shared_auth
                  and uuid not in client.shared_auth_uuid):
                shared = False                 # not authorised: silently private
        if shared:
            for pool in self.shared_pools:
                if pool is not None and pool.uuid == uuid:
                    meta = self.infra_pool.alloc(SIZEOF_SHARELIST)
                    if not meta:
                        self.alloc_failed += 1
                        return -EPERM          # Xen: shared_pool_join failed
                    pool.share_list.append(client)
                    pool.share_meta.append(meta)
                    pool.shared_count += 1
                    client.pools[slot] = pool
                    return slot
            try:
                gslot = self.shared_pools.index(None)
            except ValueError:
                return -EPERM                  # no global shared slot
            meta = self.infra_pool.alloc(SIZEOF_SHARELIST)
            if not meta:
                self.alloc_failed += 1
                return -EPERM
            pool = Pool(client, slot, False, True, uuid, self.eph_mempool)
            pool.share_list.append(client)
            pool.share_meta.append(meta)
            pool.shared_count = 1
            self.shared_pools[gslot] = pool
        else:
            mempool = client.persistent_pool if persistent else self.eph_mempool
            pool = Pool(client, slot, persistent, False, uuid, mempool)
        client.pools[slot] = pool
        return slot

    def _destroy_pool(self, client, pool_id) -> int:
        """Xen: ``do_tmem_destroy_pool`` — 1 if a pool went, 0 for a bad or empty slot."""
        if not isinstance(pool_id, int) or not 0 <= pool_id < MAX_POOLS_PER_DOMAIN:
            return 0
        pool = client.pools[pool_id]
        if pool is None:
            return 0
        client.pools[pool_id] = None
        self._pool_flush(pool, client)
        return 1

    def _pool_flush(self, pool, client) -> None:
        """Xen: ``pool_flush`` (tmem_rwlock held for writing): a sharer quits a shared pool
        (the pool survives while others share it); otherwise every object is destroyed."""
        if pool.shared:
            if self._shared_pool_quit(pool, client):
                return                          # other sharers remain
            self.shared_pools[self.shared_pools.index(pool)] = None
        self._pool_destroy_objs(pool, None)

    def _pool_destroy_objs(self, pool, cli_id) -> None:
        """Xen: ``pool_destroy_objs`` — with the pool's write lock held across the whole walk,
        destroy every object (``cli_id`` None) or those a quitting sharer touched last. Only a
        pool destroyed whole is marked dying (see the fidelity notes for Xen's code)."""
        plock = pool.lock
        plock.write_lock()
        try:
            if cli_id is None:
                pool.is_dying = True
            for obj in list(pool.objects()):
                if cli_id is not None and obj.last_client != cli_id:
                    continue
                obj.lock.acquire()
                try:
                    self._obj_destroy(obj)
                finally:
                    obj.lock.release()
        finally:
            plock.write_unlock()

    def _shared_pool_quit(self, pool, client) -> bool:
        """Xen: ``shared_pool_quit`` — destroy the objects this client touched last, leave the
        sharelist, hand ownership to the next sharer. True if sharers remain."""
        self._pool_destroy_objs(pool, client.cli_id)
        if client in pool.share_list:
            i = pool.share_list.index(client)
            del pool.share_list[i]
            self.infra_pool.free(pool.share_meta.pop(i))
            pool.shared_count -= 1
        if not pool.share_list:
            return False
        if pool.client is client:
            self._shared_pool_reassign(pool, pool.share_list[0])
        return True

    def _shared_pool_reassign(self, pool, new_owner) -> None:
        """Xen: ``shared_pool_reassign`` — the pool's ephemeral pages move to the new owner's
        list (the doc's intent; Xen's code moved the old owner's whole list, see fidelity)."""
        old = pool.client
        self.eph_lists_lock.acquire()
        try:
            moved = [n.owner for n in list_iter(old.eph_list) if n.owner.obj.pool is pool]
            for pgp in moved:
                list2_del(pgp)
                list2_add_tail(pgp, new_owner.eph_list)
            old.eph_count -= len(moved)
            new_owner.eph_count += len(moved)
            if new_owner.eph_count > new_owner.eph_count_max:
                new_owner.eph_count_max = new_owner.eph_count
        finally:
            self.eph_lists_lock.release()
        for obj in pool.objects():              # compressed pages are counted by the owner
            for _, pgp in obj.tree.items():
                if pgp.size:
                    old.compressed_pages -= 1
                    old.compressed_sum_size -= pgp.size
                    new_owner.compressed_pages += 1
                    new_owner.compressed_sum_size += pgp.size
        pool.client = new_owner
        pool.pool_id = new_owner.pools.index(pool)

    # --- objects --------------------------------------------------------------------------------
    # Lock discipline: a function that finds or creates an object returns it locked; whoever
    # called it releases that lock in a ``finally``, also when the object was freed meanwhile
    # (a freed object is unreachable, so releasing its lock late is harmless). Nothing below
    # releases an object lock it did not take.
    def _obj_find_lock(self, pool, oid):
        """Top-down lookup: pool read lock, then *try* the object lock; if another CPU holds
        it, drop the pool lock and look again (so the pool lock is never held while waiting
        for an object lock). Returns the locked object or None."""
        plock = pool.lock
        while True:
            plock.read_lock()
            try:
                obj = pool.find(oid)
                if obj is None or obj.lock.trylock():
                    return obj
            finally:
                plock.read_unlock()
            time.sleep(0)

    def _obj_alloc_lock(self, pool, oid):
        """Xen: ``obj_alloc`` + insert — a new locked object, or the existing one if another
        CPU inserted it meanwhile; None if the metadata cannot be allocated."""
        meta = pool.mempool.alloc(SIZEOF_OBJ)
        if meta is None:
            self.alloc_failed += 1
            return None
        obj = Obj(pool, oid, pool.node_alloc, pool.node_free)
        obj.meta = meta
        plock = pool.lock
        plock.write_lock()
        try:
            other = pool.find(oid)
            if other is None:
                obj.rbnode = pool.buckets[(oid[0] ^ oid[1] ^ oid[2]) & 0xFF].insert(
                    (oid[2], oid[1], oid[0]), obj)
                obj.lock.acquire()
        finally:
            plock.write_unlock()
        if other is not None:                   # lost a race: use theirs
            pool.mempool.free(meta)
            return self._obj_find_lock(pool, oid)
        pool.obj_count += 1
        if pool.obj_count > pool.obj_count_max:
            pool.obj_count_max = pool.obj_count
        self.global_obj_count += 1
        if self.global_obj_count > self.global_obj_count_max:
            self.global_obj_count_max = self.global_obj_count
        return obj

    def _obj_free(self, obj, pool_locked: bool = False) -> None:
        """Xen: ``obj_free`` — the (locked) object has no pages left: take it out of its bucket
        (pool write lock, the named exception to the lock order, unless the caller holds it)
        and free it. The caller still holds, and releases, ``obj.lock``."""
        pool = obj.pool
        if not pool_locked:
            pool.lock.write_lock()
        try:
            obj.tree.destroy()                  # a stump of nodes left by a failed insert
            self._objnodes_changed(obj)
            oid = obj.oid
            pool.buckets[(oid[0] ^ oid[1] ^ oid[2]) & 0xFF].erase(obj.rbnode)
        finally:
            if not pool_locked:
                pool.lock.write_unlock()
        obj.rbnode = None
        obj.pool = None
        pool.obj_count -= 1
        self.global_obj_count -= 1
        pool.mempool.free(obj.meta)
        obj.meta = None

    def _obj_destroy(self, obj) -> None:
        """Xen: ``obj_destroy`` — free every page of a locked object, then the object. The
        caller holds the pool's write lock."""
        pool = obj.pool
        for _, pgp in list(obj.tree.items()):
            obj.tree.delete(pgp.index)
            obj.pgp_count -= 1
            self._pgp_delist_free(pgp, pool)
        self._objnodes_changed(obj)
        self._obj_free(obj, pool_locked=True)

    def _objnodes_changed(self, obj) -> None:
        """Bring the objnode counts of the object, pool and host in line with the radix tree."""
        delta = obj.tree.node_count - obj.objnode_count
        if delta:
            obj.objnode_count += delta
            pool = obj.pool
            pool.objnode_count += delta
            if pool.objnode_count > pool.objnode_count_max:
                pool.objnode_count_max = pool.objnode_count
            self.global_rtree_node_count += delta
            if self.global_rtree_node_count > self.global_rtree_node_count_max:
                self.global_rtree_node_count_max = self.global_rtree_node_count

    # --- page descriptors -----------------------------------------------------------------------
    def _pgp_store(self, pgp, pool, data, try_compress: bool, count: bool) -> int:
        """Put the guest's data into ``pgp`` (object lock held). 1, or -ENOMEM.

        Compressed (``try_compress``) when the codec gives 0 < size < 4064 bytes (the largest
        sub-page allocation), else a whole frame (persistent: billed to the owner's domain).
        With dedup, an ephemeral page goes through the pcd layer (:mod:`tmemref.core.pcd`).
        ``count``: a new put counts ``compress_poor``/``compress_nomem`` (a duplicate put
        does not, as in Xen)."""
        client = pool.client
        pcds = self.pcd if not pool.persistent else None
        if try_compress:
            c = self.codec.compress(data)
            n = len(c)
            if 0 < n < MAX_ALLOC and (n <= LARGEST_FIT or self.compress_fit == "xen"):
                if pcds is not None:
                    ok = pcds.associate(pgp, pool, c, None, True) == 0
                else:
                    handle = self._data_alloc(pool, c)
                    if ok := handle is not None:
                        pgp.data = handle
                if not ok:
                    if count:
                        client.compress_nomem += 1
                    return -ENOMEM
                pgp.size = len(c)
                client.compressed_pages += 1
                client.compressed_sum_size += len(c)
                return 1
            if count:
                client.compress_poor += 1
        mem = self.mem
        f = mem.alloc_domain_page(client.domain) if pool.persistent else mem.alloc_tmem_page()
        if f is None:
            return -ENOMEM
        o = f << 12
        mem.bytes[o:o + PAGE_SIZE] = data
        self.global_page_count += 1
        if self.global_page_count > self.global_page_count_max:
            self.global_page_count_max = self.global_page_count
        pgp.size = SIZE_RAW
        if pcds is not None:
            if pcds.associate(pgp, pool, data, f, False) != 0:
                self._free_data_frame(pool, f)
                return -ENOMEM
        else:
            pgp.data = f
        return 1

    def _free_data_frame(self, pool, f) -> None:
        """A frame of page data goes back (ephemeral: onto tmem_page_list; persistent: stolen
        back from the owner's domain onto it)."""
        if pool.persistent:
            self.mem.free_domain_page(pool.client.domain, f)
        else:
            self.mem.free_tmem_page(f)
        self.global_page_count -= 1

    def _data_alloc(self, pool, payload):
        """Sub-page data (compressed or tze-shrunk) from ``pool``'s allocator: a handle, or
        None (counted in ``alloc_failed``)."""
        n = len(payload)
        addr = pool.mempool.alloc(n)
        if addr is None:
            self.alloc_failed += 1
            return None
        self.mem.bytes[addr:addr + n] = payload
        return addr

    def _data_read(self, addr, size):
        """The ``size`` bytes of sub-page data at ``addr`` (a view of host memory)."""
        return self.mem.bytes[addr:addr + size]

    def _data_free(self, pool, addr, size) -> None:
        pool.mempool.free(addr)

    def _pgp_free_data(self, pgp, pool, pcd_locked: bool = False) -> None:
        """Xen: ``pgp_free_data`` — release a pgp's data: its pcd (the data goes with the last
        user), its compressed bytes, or its frame. ``pcd_locked``: the caller (eviction) holds
        the pcd's tree lock, which the pcd layer then releases."""
        data = pgp.data
        if data is None:
            return
        size = pgp.size
        if type(data) is Pcd:
            self.pcd.disassociate(pgp, pool, pcd_locked)
        elif size == SIZE_RAW:
            self._free_data_frame(pool, data)
        else:
            self._data_free(pool, data, size)
        if size:
            pool.client.compressed_pages -= 1
            pool.client.compressed_sum_size -= size
        pgp.data = None
        pgp.size = SIZE_RAW

    def _pgp_delist_free(self, pgp, pool) -> None:
        """Xen: ``pgp_delist_free`` — off its lists, data freed, descriptor freed.
        The pgp is already out of its radix tree."""
        if pool.persistent:
            self.pers_lists_lock.acquire()
            try:
                save.delist_persistent(pool, pgp)   # the save cursor; migration's log
            finally:
                self.pers_lists_lock.release()
        else:
            self.eph_lists_lock.acquire()
            try:
                list_del(pgp)
                list2_del(pgp)
                self.eph_count -= 1
                pool.client.eph_count -= 1
            finally:
                self.eph_lists_lock.release()
        self._pgp_free_data(pgp, pool)
        meta = pgp.meta
        pool.sum_life_cycles += self.now() - self.mem.words[(meta >> 3) + PGP_TIMESTAMP_WORD]
        pool.mempool.free(meta)
        pgp.obj = None
        pgp_forget(pgp)
        pool.pgp_count -= 1
        self.global_pgp_count -= 1

    def _pgp_remove(self, obj, pgp) -> None:
        """Take a pgp out of its (locked) object and free it; free the object too if that was
        its last page. The caller keeps, and releases, the object lock."""
        obj.tree.delete(pgp.index)
        obj.pgp_count -= 1
        pool = obj.pool
        if obj.tree.node_count != obj.objnode_count:
            self._objnodes_changed(obj)
        self._pgp_delist_free(pgp, pool)
        if obj.pgp_count == 0:
            self._obj_free(obj)

    # --- PUT ------------------------------------------------------------------------------------
    def _put(self, pool, oid, index, data, caller_id) -> int:
        """Xen: ``do_tmem_put``. 1 on success; -EFROZEN, -ENOMEM, -ENOSPC (failed duplicate),
        -EFAULT (``data`` None: the guest frame could not be read)."""
        n = pool.puts                           # informational: tmem_rwlock (read) only
        if _locks._sched is not None:
            yield_point("pool.puts")
        pool.puts = n + 1
        client = pool.client
        obj = self._obj_find_lock(pool, oid)
        if obj is None:
            if client.frozen:
                return -EFROZEN
            if data is None:                    # no object is created for a bad frame
                self.failed_copies += 1
                pool.no_mem_puts += 1
                return -EFAULT
            obj = self._obj_alloc_lock(pool, oid)
            if obj is None:
                return -ENOMEM                  # Xen counts no failed put here (no_mem_puts)
        try:
            rc = self._put_locked(obj, pool, client, index, data, caller_id)
        finally:
            obj.lock.release()
        if rc == 1:
            n = pool.good_puts                  # informational, after the object lock
            if _locks._sched is not None:
                yield_point("pool.good_puts")
            pool.good_puts = n + 1
        return rc

    def _put_locked(self, obj, pool, client, index, data, caller_id) -> int:
        """The put, object lock held (the caller releases it)."""
        pgp = obj.tree.lookup(index)
        if pgp is not None:
            if data is None:                    # a failed duplicate put never leaves the
                self.failed_copies += 1         # old data readable: flush it
                self._pgp_remove(obj, pgp)
                pool.dup_puts_flushed += 1
                return -EFAULT
            return self._dup_put(obj, pgp, data, caller_id)
        rc = -ENOMEM
        if client.frozen:
            rc = -EFROZEN
        elif data is None:                      # checked before anything is allocated
            self.failed_copies += 1
            rc = -EFAULT
        elif (meta := pool.mempool.alloc(SIZEOF_PGP)) is not None:
            self._track_max(pool)               # Xen's pgp_alloc counts the descriptor now,
            pgp = Pgp(obj, index)               # before the insert or the data can fail
            pgp.meta = meta                     # its timestamp: in its block, as in Xen
            self.mem.words[(meta >> 3) + PGP_TIMESTAMP_WORD] = (
                self.total_tmem_ops if self.clock is None else int(self.clock()) & U64)
            if obj.tree.insert(index, pgp) == 0:
                obj.pgp_count += 1
                pool.pgp_count += 1
                self.global_pgp_count += 1
                if obj.tree.node_count != obj.objnode_count:
                    self._objnodes_changed(obj)
                rc = self._pgp_store(pgp, pool, data, client.compress, True)
                if rc == 1:
                    self._pgp_enlist(pgp, pool, client)
                    if pool.shared:
                        obj.last_client = caller_id
                    if pool.persistent:
                        client.succ_pers_puts += 1
                    else:
                        self.tot_good_eph_puts += 1
                    return 1
                obj.tree.delete(index)
                obj.pgp_count -= 1
                pool.pgp_count -= 1
                self.global_pgp_count -= 1
                self._objnodes_changed(obj)
            else:
                self._objnodes_changed(obj)
                self.alloc_failed += 1
            pool.mempool.free(meta)
        else:
            self.alloc_failed += 1
        pool.no_mem_puts += 1
        if obj.pgp_count == 0:
            self._obj_free(obj)
        return rc

    def _put_refused(self, pool, oid, index) -> int:
        """A put the 1 MB guard refused (-ENOMEM). Xen returns before ``do_tmem_put``, so no
        pool counter moves — but if the handle holds older data, Xen leaves it readable, which
        breaks put-put-get coherence. The documented rule wins: that old page is flushed
        (counted as a failed duplicate put)."""
        if self._flush_handle(pool, oid, index):
            pool.puts += 1
            pool.dup_puts_flushed += 1
        return -ENOMEM

    def _pgp_enlist(self, pgp, pool, client) -> None:
        if pool.persistent:
            self.pers_lists_lock.acquire()
            try:
                list2_add_tail(pgp, pool.pers_list)
            finally:
                self.pers_lists_lock.release()
        else:
            self.eph_lists_lock.acquire()
            try:
                list_add_tail(pgp, self.eph_list)
                list2_add_tail(pgp, client.eph_list)
                self.eph_count += 1
                if self.eph_count > self.global_eph_count_max:
                    self.global_eph_count_max = self.eph_count
                client.eph_count += 1
                if client.eph_count > client.eph_count_max:
                    client.eph_count_max = client.eph_count
            finally:
                self.eph_lists_lock.release()

    def _track_max(self, pool) -> None:
        """The maxima of the pool's and the host's page counts, one page more than now
        (the descriptor being allocated)."""
        if pool.pgp_count >= pool.pgp_count_max:
            pool.pgp_count_max = pool.pgp_count + 1
        if self.global_pgp_count >= self.global_pgp_count_max:
            self.global_pgp_count_max = self.global_pgp_count + 1

    def _dup_put(self, obj, pgp, data, caller_id) -> int:
        """Xen: ``do_tmem_dup_put`` — replace the data, or fail with -ENOSPC having flushed the
        old data (never leave old data readable). Recompressed only if the client compresses
        and the old copy was compressed; otherwise stored whole (an uncompressed old copy
        without dedup is overwritten in place, which is what freeing its frame and taking the
        next free one amounts to). The LRU position of an ephemeral page does not change.
        Object lock held."""
        pool = obj.pool
        client = pool.client
        if client.live_migrating:
            ok = False
        elif pgp.size == SIZE_RAW and type(pgp.data) is int:
            o = pgp.data << 12
            self.mem.bytes[o:o + PAGE_SIZE] = data
            ok = True
        else:
            recompress = client.compress and pgp.size != SIZE_RAW
            self._pgp_free_data(pgp, pool)
            ok = self._pgp_store(pgp, pool, data, recompress, False) == 1
        if ok:
            if pool.shared:
                obj.last_client = caller_id
            pool.dup_puts_replaced += 1
            if pool.persistent:
                client.succ_pers_puts += 1
            return 1
        self._pgp_remove(obj, pgp)
        pool.dup_puts_flushed += 1
        return -ENOSPC

    # --- GET ------------------------------------------------------------------------------------
    def _get(self, pool, oid, index, out, caller_id) -> int:
        """Xen: ``do_tmem_get``. 1 and the page in ``out``; 0 if absent; -EEMPTY if the pool
        holds no page at all. Private ephemeral gets are exclusive (the page leaves tmem);
        shared ephemeral gets move the page to the young end of the LRU lists. ``out`` is the
        pinned view of the guest frame (None: it cannot take a page)."""
        if pool.pgp_count == 0:
            return -EEMPTY
        pool.gets += 1
        obj = self._obj_find_lock(pool, oid)
        if obj is None:
            return 0
        try:
            pgp = obj.tree.lookup(index)
            if pgp is None:
                return 0
            if out is None or not self._copy_out(pgp, out):
                self.failed_copies += 1         # fail before anything changes
                return -EFAULT
            client = pool.client
            if pool.persistent:
                client.succ_pers_gets += 1
            elif pool.shared:
                self.eph_lists_lock.acquire()
                try:
                    list_move_tail(pgp, self.eph_list)
                    list2_move_tail(pgp, client.eph_list)
                finally:
                    self.eph_lists_lock.release()
                obj.last_client = caller_id
                client.succ_eph_gets += 1
            else:
                self._pgp_remove(obj, pgp)
                client.succ_eph_gets += 1
        finally:
            obj.lock.release()
        pool.found_gets += 1
        return 1

    def _copy_out(self, pgp, out) -> bool:
        """Copy a stored page into the guest's frame; False if that failed (nothing else
        changes)."""
        try:
            data = pgp.data
            if type(data) is Pcd:
                self.pcd.copy_out(pgp, out)
            elif pgp.size == SIZE_RAW:
                o = data << 12
                out[:] = self.mem.bytes[o:o + PAGE_SIZE]
            else:
                out[:] = self.codec.decompress(bytes(self._data_read(data, pgp.size)))
            return True
        except Exception:
            return False

    # --- FLUSH ----------------------------------------------------------------------------------
    def _flush_page(self, pool, oid, index) -> int:
        """Xen: ``do_tmem_flush_page`` — 1 found or not; -EFROZEN if frozen (flushed anyway)."""
        pool.flushs += 1
        if self._flush_handle(pool, oid, index):
            pool.flushs_found += 1
        return -EFROZEN if pool.client.frozen else 1

    def _flush_handle(self, pool, oid, index) -> bool:
        """Remove the page at (oid, index) if there is one; True if there was."""
        obj = self._obj_find_lock(pool, oid)
        if obj is None:
            return False
        try:
            pgp = obj.tree.lookup(index)
            if pgp is None:
                return False
            self._pgp_remove(obj, pgp)
            return True
        finally:
            obj.lock.release()

    def _flush_object(self, pool, oid) -> int:
        """Xen: ``do_tmem_flush_object`` — every page of the object, with the pool's write
        lock held across the whole walk (taken under the object lock: the obj_free exception);
        same return rule."""
        pool.flush_objs += 1
        obj = self._obj_find_lock(pool, oid)
        if obj is not None:
            try:
                pool.lock.write_lock()
                try:
                    self._obj_destroy(obj)
                finally:
                    pool.lock.write_unlock()
            finally:
                obj.lock.release()
            pool.flush_objs_found += 1
        return -EFROZEN if pool.client.frozen else 1

    # --- memory given back to Xen ---------------------------------------------------------------
    def _relinquish_page(self, order: int = 0, memflags: int = 0):
        """Xen: ``tmem_relinquish_pages(order, memflags)`` — the heap is down to its reserve
        (``heap_lock`` held): hand over one frame from tmem_page_list, evicting (at most 10
        times, for the current domain's client: its quota applies) to fill it. Scrubbed
        unless the request is tmem's own (``MEMF_tmem``). None if nothing is freeable or
        ``order > 0`` (tmem gives single frames only). Never allocates from the heap."""
        mem = self.mem
        if not mem.freeable_pages():
            return None
        self.relinq_attempts += 1
        if order > 0:
            return None
        client = self._current_client()
        evicts = 0
        while not mem.page_list and evicts < self.evict_budget:
            if not evict.tmem_evict(self, client):
                break
            evicts += 1
        self.max_evicts_per_relinq = max(self.max_evicts_per_relinq, evicts)
        f = mem.page_list_take(scrub=not memflags & MEMF_tmem)
        if f is not None:
            self.relinq_pgs += 1
        return f

    def _current_client(self):
        """The client of the domain this thread runs a hypercall for (Xen's
        ``current->domain->tmem_client``); outside one, domain 0's (the toolstack's)."""
        dom = self.mem.domains.get(getattr(self._cpu, "domid", 0))
        return None if dom is None else dom.client

    # --- the heap's other users: ballooning and claims ------------------------------------------
    def balloon(self, domid: int, pages: int) -> int:
        """A guest's balloon driver moves its own memory to ``pages`` frames: down, it gives
        frames back to the heap (Xen: ``decrease_reservation``; they are scrubbed); up, it
        takes them again one at a time (``populate_physmap``, order 0), which at the heap's
        reserve makes tmem relinquish frames, evicting for this guest's client. Growth stops
        early once the domain holds ``max_pages`` (persistent tmem frames count) or the heap
        refuses (memory claimed by another domain, nothing left). Returns the frames of its
        own it holds afterwards. ``ValueError``/``TypeError`` for a bad domain or count.
        O(|change|)."""
        d = self._domain_arg(domid)
        _check_count("pages", pages)
        mem = self.mem
        cpu = self._cpu
        cpu.domid = domid                      # the guest's own hypercall
        try:
            have = len(d.own_frames)
            if pages < have:
                mem.free_domheap_pages(d, have - pages)
            for _ in range(pages - have):
                if mem.alloc_domheap_pages(d, 0) is None:
                    break
        finally:
            cpu.domid = 0
        return len(d.own_frames)

    def claim(self, domid: int, pages: int) -> int:
        """Xen: ``XENMEM_claim_pages`` (``domain_set_outstanding_pages``) — stake a claim that
        domain ``domid`` will hold ``pages`` frames in all, before its memory is populated:
        claimed memory is kept from every other allocation, tmem's puts included. Counts
        tmem's freeable frames as available, as Xen's claim code did. ``pages=0`` cancels
        the claim. Returns 0, -EINVAL (a claim already staked; ``pages`` not above what the
        domain holds, or above ``max_pages``) or -ENOMEM (not enough memory).
        ``ValueError``/``TypeError`` for a bad domain or count. O(1)."""
        d = self._domain_arg(domid)
        _check_count("pages", pages)
        return self.mem.claim(d, pages)

    def _domain_arg(self, domid):
        d = self.mem.domains.get(domid) if type(domid) is int else None
        if d is None:
            raise ValueError(f"no domain {domid!r} on this host")
        if d.is_dying:
            raise ValueError(f"domain {domid} is being destroyed")
        return d

    # --- convenience ----------------------------------------------------------------------------
    def now(self) -> int:
        """The host clock: ``clock()`` if one was given, else the hypercalls made so far."""
        return self.total_tmem_ops if self.clock is None else self.clock()

    def every_pool(self):
        """Yield each live pool once — a shared pool sits in the slots of every client that
        joined it — in client then slot order. O(clients x slots)."""
        seen = set()
        for client in self.clients.values():
            for _, pool in client.pool_slots():
                if id(pool) not in seen:
                    seen.add(id(pool))
                    yield pool

    def page_of(self, pgp) -> bytes:
        """The 4096 bytes a stored pgp holds, whatever its form (frame, compressed, pcd)."""
        out = bytearray(PAGE_SIZE)
        if not self._copy_out(pgp, memoryview(out)):
            raise InvariantError(f"{pgp} holds no readable page")
        return bytes(out)

    def freeable_pages(self) -> int:
        """Xen: ``tmem_freeable_pages`` — tmem_page_list + ephemeral (anonymous) frames."""
        return self.mem.freeable_pages()

    def list_stats(self, cli_id: int = abi.TMEM_CLI_ID_NULL, long: bool = True,
                   buflen: int = 32768) -> str:
        """The TMEMC_LIST text, as ``xl tmem-list`` prints it (see :mod:`tmemref.core.stats`)."""
        return stats.tmemc_list(self, cli_id, long, buflen)

    # --- invariants -----------------------------------------------------------------------------
    def check(self) -> None:
        """Verify every cross-structure invariant; raises :class:`InvariantError`.

        1. memory: :meth:`HostMemory.check` (each frame in one place, heap scrubbed, billing);
        2. every pool, object, radix tree and rb-tree passes its own ``check()``;
        3. each ephemeral pgp is on the global list and on its pool owner's list exactly once,
           and nothing else is; list lengths equal ``eph_count`` (global and per client); every
           list is a well-formed ring (checked before it is walked); each pgp keeps its own
           invariants 2-3 (data matches size; right links used) and each client its invariant 3;
        4. each raw pgp's frame is owned as its pool says (anonymous, or billed to the owner's
           domain) and no frame backs two pgps; global counts equal the sums;
        5. pool slots: each pool in a client's slots is its own or a shared pool it shares;
           ``shared_pools`` holds exactly the live shared pools;
        6. ``client_weight_total`` is the sum of weights;
        7. every sub-page allocator passes its own ``check()``, and the blocks it has handed out
           are exactly those the structures use (objects, pgps, radix nodes, compressed data,
           pcds and their data, sharelist entries): no block leaked, none used unallocated.
        8. each client's save state (invalidation log, save cursors) keeps its invariants
           4-5 (:class:`Client`).
        """
        from ..host.frames import ANON
        self.mem.check()
        pools, seen_frames = [], set()
        n_obj = n_pgp = n_nodes = n_frames = 0
        eph_pgps = set()
        for cli_id, client in self.clients.items():
            save.check_client(self, client)
            auth = client.shared_auth_uuid
            if len(auth) > 16 or len(set(auth)) != len(auth):
                raise InvariantError(f"client invariant 3: client {cli_id} has {len(auth)} "
                                     f"authorised uuids ({len(set(auth))} distinct), at most 16")
            if client.domain.client is not client or client.cli_id != cli_id:
                raise InvariantError(f"host invariant 5: client {cli_id} and its domain disagree")
            for pool in {id(p): p for p in client.pools if p is not None}.values():
                slots = sum(p is pool for p in client.pools)
                allowed = sum(c is client for c in pool.share_list) if pool.shared else 1
                if slots > max(allowed, 1):
                    raise InvariantError(f"host invariant 5: a pool is in {slots} slots of "
                                         f"client {cli_id} (sharelist entries: {allowed})")
            for slot, pool in client.pool_slots():
                if pool.client is not client and not (pool.shared and client in pool.share_list):
                    raise InvariantError(f"host invariant 5: client {cli_id} slot {slot} holds "
                                         f"a pool it neither owns nor shares")
                if pool.client is client and client.pools[pool.pool_id] is not pool:
                    raise InvariantError(f"host invariant 5: pool in slot {slot} of client "
                                         f"{cli_id} says it is pool {pool.pool_id}")
                if pool not in pools:
                    pools.append(pool)
        live_shared = [p for p in pools if p.shared]
        if sorted(map(id, live_shared)) != sorted(id(p) for p in self.shared_pools if p):
            raise InvariantError("host invariant 5: shared_pools and the clients' slots disagree")
        for pool in pools:
            pool.check()
            if pool.client.cli_id not in self.clients:
                raise InvariantError("host invariant 5: pool owned by a dead client")
            n_obj += pool.obj_count
            n_pgp += pool.pgp_count
            n_nodes += pool.objnode_count
            for obj in pool.objects():
                for _, pgp in obj.tree.items():
                    _check_pgp(pgp, pool, self.pcd is not None)
                    if type(pgp.data) is Pcd:
                        pass                    # its frame, if any, is the pcd's: below
                    elif pgp.size == SIZE_RAW:
                        f = pgp.data
                        want = pool.client.cli_id if pool.persistent else ANON
                        if f in seen_frames or int(self.mem.owner[f]) != want:
                            raise InvariantError(f"host invariant 4: frame {f} of {pgp} is "
                                                 f"owned by {int(self.mem.owner[f])}, not {want}"
                                                 " (or backs two pgps)")
                        seen_frames.add(f)
                        n_frames += 1
                    if not pool.persistent:
                        eph_pgps.add(id(pgp))
        if self.pcd is not None:
            for f in self.pcd.check(eph_pgps):
                if f in seen_frames or int(self.mem.owner[f]) != ANON:
                    raise InvariantError(f"host invariant 4: frame {f} of a pcd is owned by "
                                         f"{int(self.mem.owner[f])}, not tmem (or backs two)")
                seen_frames.add(f)
                n_frames += 1
        if (n_obj, n_pgp, n_nodes, n_frames) != (self.global_obj_count, self.global_pgp_count,
                                                 self.global_rtree_node_count,
                                                 self.global_page_count):
            raise InvariantError(
                f"host invariant 4: global obj/pgp/node/page counts {self.global_obj_count}/"
                f"{self.global_pgp_count}/{self.global_rtree_node_count}/{self.global_page_count}"
                f" but the structures hold {n_obj}/{n_pgp}/{n_nodes}/{n_frames}")
        list_check(self.eph_list, name="global ephemeral list")
        on_global = [n.owner for n in list_iter(self.eph_list)]
        if len(on_global) != self.eph_count or len(set(map(id, on_global))) != len(on_global) \
                or set(map(id, on_global)) != eph_pgps:
            raise InvariantError(f"host invariant 3: global ephemeral list holds "
                                 f"{len(on_global)} pages, eph_count {self.eph_count}, "
                                 f"trees hold {len(eph_pgps)} ephemeral pages")
        compressed = {id(c): [0, 0] for c in self.clients.values()}
        for pool in pools:
            counts = compressed[id(pool.client)]
            for obj in pool.objects():
                for _, pgp in obj.tree.items():
                    if pgp.size:
                        counts[0] += 1
                        counts[1] += pgp.size
        per_client = 0
        for client in self.clients.values():
            if [client.compressed_pages, client.compressed_sum_size] != compressed[id(client)]:
                raise InvariantError(
                    f"client invariant 6: client {client.cli_id} counts {client.compressed_pages}"
                    f" compressed pages of {client.compressed_sum_size} bytes, its pools hold "
                    f"{compressed[id(client)][0]} of {compressed[id(client)][1]}")
            list_check(client.eph_list, name=f"ephemeral list of client {client.cli_id}")
            owners = [n.owner for n in list_iter(client.eph_list)]
            if len(owners) != client.eph_count or client.eph_count > client.eph_count_max:
                raise InvariantError(f"host invariant 3: client {client.cli_id} list holds "
                                     f"{len(owners)} pages, eph_count {client.eph_count}")
            for pgp in owners:
                if pgp.obj is None or pgp.obj.pool.client is not client:
                    raise InvariantError(f"host invariant 3: {pgp} is on client "
                                         f"{client.cli_id}'s list but its pool is not theirs")
            per_client += len(owners)
        if per_client != self.eph_count:
            raise InvariantError(f"host invariant 3: client lists hold {per_client} pages, "
                                 f"global list {self.eph_count}")
        if self.client_weight_total != sum(c.weight for c in self.clients.values()):
            raise InvariantError("host invariant 6: client_weight_total is not the sum of weights")
        self._check_allocators(pools)

    def _check_allocators(self, pools) -> None:
        """Host invariant 7 (see :meth:`check`)."""
        allocators = {id(a): a for a in ([self.eph_mempool, self.infra_pool]
                                         + [c.persistent_pool for c in self.clients.values()])}
        for pool in pools:
            if id(pool.mempool) not in allocators:
                raise InvariantError(f"host invariant 7: {pool} allocates from a pool no live "
                                     "client owns")
        want = {key: [] for key in allocators}
        for allocator, addr, _, _ in self.sub_page_blocks(pools):
            want[id(allocator)].append(addr)
        for a in allocators.values():
            a.check()
            blocks = want[id(a)]
            used = a.used_blocks()
            if len(blocks) != len(set(blocks)) or set(blocks) != used:
                leaked = sorted(used - set(blocks))[:3]
                missing = sorted(set(blocks) - used)[:3]
                raise InvariantError(
                    f"host invariant 7: allocator {a.name} has {len(used)} blocks out, the "
                    f"structures use {len(blocks)} ({len(set(blocks))} distinct); leaked "
                    f"{[hex(x) for x in leaked]}, unallocated {[hex(x) for x in missing]}")

    def sub_page_blocks(self, pools=None):
        """Yield ``(allocator, address, kind, owner)`` for every sub-page block the structures
        use, from the pools given (default: :meth:`every_pool`) and the dedup layer. Kinds:
        ``object``, ``radix node``, ``pgp`` and ``compressed page`` from the pool's allocator,
        owned by the client that owns the pool; ``sharelist`` from the infrastructure pool,
        owned by the client that joined; ``pcd`` (infrastructure pool) and ``pcd data``
        (ephemeral pool), owned by no client (None). O(structures)."""
        infra = self.infra_pool
        for pool in self.every_pool() if pools is None else pools:
            mp, owner = pool.mempool, pool.client.cli_id
            for sharer, meta in zip(pool.share_list, pool.share_meta):
                yield infra, meta, "sharelist", sharer.cli_id
            for obj in pool.objects():
                yield mp, obj.meta, "object", owner
                if obj.tree.height:
                    metas = []
                    collect_node_metas(obj.tree.root, obj.tree.height, metas)
                    for meta in metas:
                        yield mp, meta, "radix node", owner
                for _, pgp in obj.tree.items():
                    yield mp, pgp.meta, "pgp", owner
                    if pgp.size != SIZE_RAW and type(pgp.data) is not Pcd:
                        yield mp, pgp.data, "compressed page", owner
        if self.pcd is not None:
            for pcd in self.pcd.pcds():
                yield infra, pcd.meta, "pcd", None      # the descriptor: no pool (Xen: NULL)
                if pcd.size and (pcd.compressed or pcd.size < PAGE_SIZE):
                    yield self.eph_mempool, pcd.data, "pcd data", None

def _usable(allocator, addr) -> int:
    """Payload bytes of an allocated block, -1 if ``addr`` is none."""
    try:
        return allocator.usable_size(addr)
    except ValueError:
        return -1


def _check_pgp(pgp, pool, dedup: bool) -> None:
    """Pgp invariants 2 and 3 (see :class:`Pgp`)."""
    data = pgp.data
    if dedup and not pool.persistent:
        if type(data) is not Pcd:
            raise InvariantError(f"pgp invariant 2: {pgp} of a dedup host holds no pcd "
                                 f"({data!r})")
        if (pgp.size != SIZE_RAW) != data.compressed or \
                (data.compressed and pgp.size != data.size):
            raise InvariantError(f"pgp invariant 2: {pgp} and its {data} disagree on size")
    elif pgp.size == SIZE_RAW:
        if type(data) is not int:
            raise InvariantError(f"pgp invariant 2: raw {pgp} has no frame ({data!r})")
    elif type(data) is not int or _usable(pool.mempool, data) < pgp.size:
        raise InvariantError(f"pgp invariant 2: compressed {pgp} says {pgp.size} bytes but "
                             f"its block {data!r:.60} is not that big")
    if pool.persistent:
        if list_linked(pgp) or not list2_linked(pgp):
            raise InvariantError(f"pgp invariant 3: persistent {pgp} must be on its pool's list "
                                 f"(link b) and on no LRU list (link a)")
    elif not (list_linked(pgp) and list2_linked(pgp)):
        raise InvariantError(f"pgp invariant 3: ephemeral {pgp} must be on both LRU lists")


_TmemOp = abi.TmemOp
_fields = operator.attrgetter("cmd", "pool_id", "uuid", "flags", "arg1", "oid", "index", "page",
                              "subop", "cli_id", "arg2", "buf")     # one read of every field
_U32_FIELDS = ("cmd", "index", "flags", "arg1", "subop", "cli_id", "arg2")


def _check_count(name: str, value) -> None:
    """A count of frames: an int >= 0 (TypeError / ValueError otherwise)."""
    if type(value) is not int:
        raise TypeError(f"{name} must be an int, not {type(value).__name__}")
    if value < 0:
        raise ValueError(f"{name} must be >= 0, not {value}")


def copy_op(op):
    """Xen: ``copy_from_guest`` of a ``struct tmem_op`` — read every field of ``op`` exactly
    once and return the copy as a tuple in :class:`TmemOp` field order, or None if no C struct
    could hold the values (the hypercall then returns -EFAULT).

    The rule (:func:`valid_fields`): every u32 field (``cmd, index, flags, arg1, subop,
    cli_id, arg2``) is an ``int`` in [0, 2**32); ``pool_id`` is 32 bits, signed or not, in
    [-2**31, 2**32) (Xen casts it to u32 before comparing with 16); ``oid`` is a tuple of three
    u64, ``uuid`` of two. Only exact ``int`` counts (not bool, float, Decimal or numpy
    scalars): a value is tested by its type before any comparison, so no ``__eq__`` or
    ``__index__`` of a guest's object ever runs. ``page`` and ``buf`` are guest buffers,
    checked where they are used. :func:`tmemref.abi.explain` says in words which field is
    wrong.
    """
    if not isinstance(op, _TmemOp):
        return None
    try:
        c = _fields(op)
    except Exception:                   # a subclass whose attributes raise
        return None
    cmd, pool_id, uuid, flags, arg1, oid, index, _, subop, cli_id, arg2, _ = c
    return c if valid_fields(cmd, pool_id, uuid, flags, arg1, oid, index, subop, cli_id,
                             arg2) else None


def valid_fields(cmd, pool_id, uuid, flags, arg1, oid, index, subop, cli_id, arg2) -> bool:
    """Could a C ``struct tmem_op`` hold these values? (See :func:`copy_op`.) O(1)."""
    if not (type(cmd) is int and type(index) is int and type(flags) is int
            and type(arg1) is int and type(subop) is int and type(cli_id) is int
            and type(arg2) is int and type(pool_id) is int
            and type(oid) is tuple and len(oid) == 3 and type(uuid) is tuple and len(uuid) == 2):
        return False
    a, b, d = oid
    u, v = uuid
    if not (type(a) is int and type(b) is int and type(d) is int and type(u) is int
            and type(v) is int):
        return False
    # OR-ing non-negative ints and shifting tests all ranges at once; a negative value makes
    # the OR negative, which fails the same test.
    return not ((cmd | index | flags | arg1 | subop | cli_id | arg2) >> 32
                or (a | b | d | u | v) >> 64 or not -0x80000000 <= pool_id <= U32)


def copy_page_in(page):
    """A put's guest frame read once: its 4096 bytes, or None if it cannot be read as exactly
    4096 contiguous bytes (released memoryview, closed mmap, an array of a non-byte dtype, a
    wrong size, anything else). Never raises. ``bytes`` are immutable and used as they are."""
    if type(page) is bytes:
        return page if len(page) == PAGE_SIZE else None
    try:
        with memoryview(page) as m:
            if m.nbytes != PAGE_SIZE or not m.c_contiguous or not _plain(m.format):
                return None
            return m.tobytes()
    except Exception:
        return None


def _plain(fmt: str) -> bool:
    """A buffer of plain numbers (bytes, ints, floats), not of pointers or Python objects:
    only such memory may be read or written as a page of bytes."""
    return fmt.lstrip("@=<>!") in _PLAIN_FORMATS


_PLAIN_FORMATS = frozenset("bBhHiIlLqQnNefd?c")


def page_out_view(buf, size=PAGE_SIZE):
    """A get's guest frame: a flat writable view of exactly ``size`` bytes (None: any size),
    or None. The view pins the buffer (a bytearray cannot be resized, a memoryview released
    or an mmap closed while it exists), so the copy out cannot fail half way. Never raises."""
    if type(buf) is bytearray and (size is None or len(buf) == size):
        return memoryview(buf)             # the common guest frame: flat, writable bytes
    try:
        m = memoryview(buf)
    except Exception:
        return None
    try:
        if (size is None or m.nbytes == size) and not m.readonly and m.c_contiguous \
                and _plain(m.format):
            return m.cast("B") if m.format != "B" or m.ndim != 1 else m
    except Exception:
        pass
    m.release()
    return None
