"""Solutions to the book's "build or change something" exercises, one or two per chapter.

Not a Xen concept: each function is what a reader is asked to write in a chapter's exercises,
kept here so that the book's hidden answer cells call tested code (``tests/test_solutions.py``)
instead of carrying logic of their own. Every one drives the engine through its public surface
(``Host.do_tmem_op``, the guest layer, ``xl``) or reads its structures the way the chapters'
pictures do; none changes the engine.

========================================  ======================================================
chapter 1  :func:`memory_flow`            ephemeral memory moving from one guest to another
chapter 2  :func:`xl_uuid_text`           the uuid text ``xl tmem-shared-auth`` needs for a Linux
                                          filesystem uuid
chapter 3  :func:`pages_top_down`,        one guest's pages found from its client down, and from
           :func:`pages_bottom_up`        its lists up
chapter 4  :func:`fib_bucket`,            a mixing bucket hash (Knuth's multiplicative hash) and
           :func:`hashed_depth`           the tree depths it gives
chapter 5  :func:`policy_hits`            LRU against other eviction policies on one workload
chapter 6  :func:`tmem_top`               per-client rates from two ``xl tmem-list -l`` snapshots
chapter 7  :func:`bottom_up_evict`,       an eviction that walks bottom-up with blocking locks,
           :func:`bottom_up_scenario`     and the explorer's scenario that runs it
chapter 8  :class:`HashedPcdIndex`,       deduplication through a hash table instead of 256
           :func:`index_costs`            first-byte trees, and what each costs per put
chapter 9  :class:`ZstdLevel`             a tmem codec: Zstandard at any level
chapter 12 :func:`zswap_dedup_footprint`  the zswap-like model with KSM-style dedup added
oracle     :func:`capped_dict_tmem`       a toy tmem that evicts: keeps every promise, differs
                                          from the reference
chapter 13 :class:`SlruPolicy`            segmented LRU, a policy of one's own in the workload study
appendix   :func:`repaired_dict_tmem`     the oracle appendix's buggy toy tmem, repaired
appendix   :func:`guess_uuid_attack`      reading another guest's shared pages by guessing its uuid
========================================  ======================================================
"""
from __future__ import annotations

import uuid as uuidlib
from collections import OrderedDict

import numpy as np

from .. import abi
from ..abi import TmemOp
from ..core.host import Host
from ..ds.dlist import list_iter
from ..ds.rbtree import RBTree
from ..host.compress import DecompressError
from .study import Policy, walk_for_victim
from .trees import DepthStats, tree_depths

__all__ = ["memory_flow", "xl_uuid_text", "pages_top_down", "pages_bottom_up", "fib_bucket",
           "hashed_depth", "POLICIES", "policy_hits", "tmem_top", "bottom_up_evict",
           "bottom_up_scenario", "HashedPcdIndex", "index_costs", "ZstdLevel",
           "guess_uuid_attack", "repaired_dict_tmem", "zswap_dedup_footprint", "capped_dict_tmem",
           "SlruPolicy"]

PAGE = abi.PAGE_SIZE


def _page(n: int) -> bytes:
    return n.to_bytes(8, "little") * (PAGE // 8)


# --- chapter 1 ----------------------------------------------------------------------------------

def memory_flow(host_pages: int = 4096, first: int = 2000, second: int = 4000,
                every: int = 250) -> dict:
    """Guest 1 puts ``first`` distinct pages into a private ephemeral pool; then guest 2 puts
    ``second`` pages into its own, and every ``every`` puts the ephemeral pages tmem holds for
    each guest are sampled. Returns arrays ``{"puts", "guest1", "guest2"}`` (``puts`` = guest 2's
    puts so far). Each guest owns 256 frames. ``ValueError`` for sizes that are not positive.
    O(first + second) hypercalls.

    >>> f = memory_flow(1024, first=300, second=600, every=300)
    >>> f["guest1"].tolist(), f["guest2"].tolist()
    ([300, 300, 109], [0, 300, 600])
    """
    if min(host_pages, first, second, every) <= 0:
        raise ValueError("sizes must be positive")
    host = Host(pages=host_pages)
    pools = {}
    for d in (1, 2):
        host.create_domain(d, pages=16, max_pages=64)
        pools[d] = host.do_tmem_op(d, TmemOp(cmd=abi.TMEM_NEW_POOL, flags=abi.pool_flags()))

    def put(d, i):
        host.do_tmem_op(d, TmemOp(cmd=abi.TMEM_PUT_PAGE, pool_id=pools[d], oid=(i // 64, 0, 0),
                                  index=i % 64, page=_page(d << 32 | i)))

    for i in range(first):
        put(1, i)
    samples = [(0, host.clients[1].eph_count, host.clients[2].eph_count)]
    for i in range(second):
        put(2, i)
        if (i + 1) % every == 0:
            samples.append((i + 1, host.clients[1].eph_count, host.clients[2].eph_count))
    host.check()
    puts, g1, g2 = (np.array(col) for col in zip(*samples))
    return {"puts": puts, "guest1": g1, "guest2": g2}


# --- chapter 2 ----------------------------------------------------------------------------------

def xl_uuid_text(fs_uuid: uuidlib.UUID) -> str:
    """The text to give ``xl tmem-shared-auth -u`` so that it authorises the pool Linux's
    cleancache asks for when it mounts a filesystem with uuid ``fs_uuid``.

    Linux sends ``uuid_lo`` = bytes 0–7 and ``uuid_hi`` = bytes 8–15 of the uuid, each read as
    a little-endian number; ``xl`` reads the printed uuid's first 16 hex digits as ``uuid_hi``
    and the last 16 as ``uuid_lo``. So print ``uuid_hi`` then ``uuid_lo``, in hex. O(1).

    >>> xl_uuid_text(uuidlib.UUID("00112233-4455-6677-8899-aabbccddeeff"))
    'ffeeddcc-bbaa-9988-7766-554433221100'
    """
    if not isinstance(fs_uuid, uuidlib.UUID):
        raise TypeError("fs_uuid must be a uuid.UUID")
    raw = fs_uuid.bytes
    lo, hi = int.from_bytes(raw[:8], "little"), int.from_bytes(raw[8:], "little")
    return str(uuidlib.UUID(f"{hi:016x}{lo:016x}"))


# --- chapter 3 ----------------------------------------------------------------------------------

def _name(pgp) -> str:
    pool = pgp.obj.pool
    o = ",".join(str(w) for w in pgp.obj.oid)
    return f"d{pool.client.cli_id}:p{pool.pool_id}:({o})[{pgp.index}]"


def pages_top_down(host: Host, domid: int) -> list:
    """Every page a guest can reach through its pool slots, found top-down: client → each pool
    in its slots (shared pools included) → the pool's objects → each object's radix tree.
    Names as the chapters write them (``d1:p0:(7,0,0)[3]``: owner, owner's slot), sorted.
    ``KeyError`` if the domain has no client. O(pages)."""
    client = host.clients[domid]
    return sorted(_name(pgp) for _, pool in client.pool_slots() for obj in pool.objects()
                  for _, pgp in obj.tree.items())


def pages_bottom_up(host: Host, domid: int) -> list:
    """The pages tmem books to a guest, found bottom-up from its lists: its client's ephemeral
    list, and the persistent list of every pool it owns. Sorted names. O(pages)."""
    client = host.clients[domid]
    found = [node.owner for node in list_iter(client.eph_list)]
    for _, pool in client.pool_slots():
        if pool.client is client and pool.persistent:
            found += [node.owner for node in list_iter(pool.pers_list)]
    return sorted(_name(pgp) for pgp in found)


# --- chapter 4 ----------------------------------------------------------------------------------

#: Knuth's multiplier for 64 bits, 2**64 divided by the golden ratio (Linux's GOLDEN_RATIO_64).
GOLDEN_RATIO_64 = 0x61C8864680B583EB


def fib_bucket(oid, bits: int = 8) -> int:
    """A mixing bucket for an object id: xor the three words, multiply by
    :data:`GOLDEN_RATIO_64` modulo 2**64 and keep the top ``bits`` bits (multiplicative
    "Fibonacci" hashing, Knuth, TAOCP vol. 3, section 6.4; Linux's ``hash_64``). Every bit of the oid moves the
    bucket, where tmem's ``oid_hash`` keeps only the low byte. O(1).

    >>> [fib_bucket((k * 256, 0, 0)) for k in range(1, 5)]
    [200, 145, 89, 34]
    """
    if not 1 <= bits <= 32:
        raise ValueError("bits must be in 1..32")
    x = (oid[0] ^ oid[1] ^ oid[2]) & (2**64 - 1)
    return ((x * GOLDEN_RATIO_64) & (2**64 - 1)) >> (64 - bits)


def hashed_depth(keys, bucket=fib_bucket, buckets: int = 256) -> DepthStats:
    """Insert objects ``(key, 0, 0)`` into ``buckets`` red-black trees chosen by
    ``bucket(oid)`` (in the given order) and return their :class:`~tmemref.sim.trees.DepthStats`,
    as :func:`tmemref.sim.trees.bucketed_depth` does for tmem's low-byte hash.
    O(n log n)."""
    trees = [RBTree() for _ in range(buckets)]
    for k in np.asarray(keys).tolist():
        b = bucket((int(k), 0, 0))
        if not 0 <= b < buckets:
            raise ValueError(f"bucket {b} outside 0..{buckets - 1}")
        trees[b].insert(int(k))
    depths = [tree_depths(t) for t in trees if len(t)]
    if not depths:
        return DepthStats(0, 0, 0, 0.0, 0)
    every = np.concatenate(depths)
    return DepthStats(int(every.size), len(depths), int(every.max()), float(every.mean()),
                      max(len(d) for d in depths))


# --- chapter 5 ----------------------------------------------------------------------------------

#: Policies :func:`policy_hits` knows: where a missed page goes in, what a hit does, who leaves.
POLICIES = {
    "lru": "a miss goes in at the young end; a hit moves the page to the young end; the oldest "
           "leaves (tmem)",
    "lip": "a miss goes in at the OLD end; a hit moves the page to the young end; the oldest "
           "leaves (LRU insertion policy)",
    "fifo": "a miss goes in at the young end; a hit changes nothing; the oldest leaves",
    "random": "a miss goes in; a hit changes nothing; a page chosen at random leaves",
}


def policy_hits(workload, capacity: int, policy: str = "lru", *, seed: int = 0) -> np.ndarray:
    """Which references of ``workload`` hit in a cache of ``capacity`` pages run by ``policy``
    (one of :data:`POLICIES`). ``"lru"`` is :func:`tmemref.sim.lru_hits`, which tmem's
    ephemeral pools match (chapter 5); the others are the changes the exercise asks for.
    ``seed`` drives ``"random"``. O(len(workload)); ``"random"`` O(capacity) per eviction.

    >>> from tmemref.sim import scan
    >>> w = scan(60, n_files=1, pages_per_file=20)        # three passes over 20 pages
    >>> [int(policy_hits(w, 10, p).sum()) for p in ("lru", "lip")]
    [0, 18]
    """
    from collections import OrderedDict
    if policy not in POLICIES:
        raise ValueError(f"unknown policy {policy!r}; known: {sorted(POLICIES)}")
    if capacity < 1:
        raise ValueError("capacity must be >= 1")
    rng = np.random.default_rng(seed)
    cache: OrderedDict = OrderedDict()        # first = oldest
    out = np.zeros(len(workload), dtype=bool)
    for i, key in enumerate(workload.keys().tolist()):
        if key in cache:
            out[i] = True
            if policy in ("lru", "lip"):
                cache.move_to_end(key)
            continue
        if len(cache) >= capacity:
            if policy == "random":
                victim = list(cache)[int(rng.integers(len(cache)))]
                del cache[victim]
            else:
                cache.popitem(last=False)
        cache[key] = None
        if policy == "lip":
            cache.move_to_end(key, last=False)
    return out


# --- chapter 6 ----------------------------------------------------------------------------------

def tmem_top(before: str, after: str) -> list:
    """What each client did between two ``xl tmem-list -l -a`` snapshots: one dict per client
    of ``after`` (sorted by client id) with the changes in ``puts`` (pt), ``stored`` (ps),
    ``gets`` (gt), ``found`` (gs) and ``flushes`` (ft) summed over the client's own ``P=``
    lines, its ephemeral pages now (``Ec``) and its get hit ratio (``found / gets``, None
    without gets). A client absent from ``before`` counts from zero. ``ValueError`` if a
    snapshot is not a long listing. O(length of the listings)."""
    from ..core.listparse import parse_list
    keys = {"puts": "pt", "stored": "ps", "gets": "gt", "found": "gs", "flushes": "ft"}

    def totals(text):
        parsed = parse_list(text)
        out = {}
        for c in parsed["clients"]:
            if "Ec" not in c:
                raise ValueError("tmem_top needs long listings (xl tmem-list -l)")
            sums = {name: sum(p.get(tag, 0) for p in c["pools"]) for name, tag in keys.items()}
            out[c["CI"]] = (sums, c["Ec"])
        return out

    old, new = totals(before), totals(after)
    rows = []
    for cli in sorted(new):
        sums, ec = new[cli]
        base = old.get(cli, ({k: 0 for k in keys}, 0))[0]
        row = {"client": cli, **{k: sums[k] - base[k] for k in keys}, "ephemeral_pages": ec}
        row["hit_ratio"] = row["found"] / row["gets"] if row["gets"] else None
        rows.append(row)
    return rows


# --- chapter 7 ----------------------------------------------------------------------------------

def bottom_up_evict(host: Host, client=None) -> int:
    """Evict the oldest ephemeral page walking *bottom-up* with blocking locks: under the list
    lock, wait for the page's object lock (where Xen only tries it), then let go of the list
    and free the page (which takes the list lock again to unlink it, and the pool's write lock
    if the object goes). Wrong on purpose: it waits for a rank-2 lock holding a rank-5 one,
    while a put or flush holding that object lock waits for the list lock. ``client`` is
    unused (the global list), as in :func:`tmemref.sim.races.naive_evict`. 1 if a page
    went. O(1)."""
    with host.eph_lists_lock:
        node = next(iter(list_iter(host.eph_list)), None)
        if node is None:
            return 0
        pgp = node.owner
        obj = pgp.obj
        obj.lock.acquire()                      # blocking, against the order
    try:                                        # the object lock keeps the page in place
        host._pgp_remove(obj, pgp)
    finally:
        obj.lock.release()
    host.evicted_pgs += 1
    return 1


def bottom_up_scenario(check_order: bool = True):
    """The explorer's eviction world (:func:`tmemref.sim.races.eviction_world`: an evictor
    against a flush that frees an object and a put) with :func:`bottom_up_evict` as the
    evictor; ``check_order=False`` runs it without the lock-order checker."""
    from functools import partial

    from .races import eviction_world
    from .sched import Scenario
    return Scenario("bottom-up" + ("" if check_order else ", no order checker"),
                    partial(eviction_world, bottom_up_evict), check_order=check_order)


# --- chapter 9: compression and the allocator ---------------------------------------------------

class ZstdLevel:
    """A tmem codec running Zstandard at any ``level`` (the engine's ``zstd`` codec runs level
    1), with the interface of :mod:`tmemref.host.compress`: ``name``, ``compress(page)`` and
    ``decompress(data, size=4096)``, which gives back exactly ``size`` bytes or raises
    :class:`~tmemref.host.compress.DecompressError`. Give it to ``Host(codec=...)``. One
    context per codec, so use one per thread. Each call is O(page), at a cost that grows with
    the level.

    >>> c = ZstdLevel(9); page = b"tmem " * 819 + b"x"
    >>> c.name, c.decompress(c.compress(page)) == page, len(c.compress(page)) < 100
    ('zstd-9', True, True)
    """

    def __init__(self, level: int):
        import zstandard
        if type(level) is not int:
            raise TypeError(f"level must be an int, not {type(level).__name__}")
        if not 1 <= level <= zstandard.MAX_COMPRESSION_LEVEL:
            raise ValueError(f"level must be 1..{zstandard.MAX_COMPRESSION_LEVEL}, not {level}")
        self.name = f"zstd-{level}"
        self.library = f"zstandard {zstandard.__version__}"
        self._compressor = zstandard.ZstdCompressor(level=level, write_content_size=False)
        self._decompressor = zstandard.ZstdDecompressor()
        self._error = zstandard.ZstdError

    def compress(self, page) -> bytes:
        return self._compressor.compress(page)

    def decompress(self, data, size: int = PAGE) -> bytes:
        try:
            out = self._decompressor.decompress(data, max_output_size=size)
        except self._error as e:
            raise DecompressError(f"{self.name}: data does not decompress to {size} bytes "
                                  f"({e})") from None
        if len(out) != size:
            raise DecompressError(f"{self.name}: data decompresses to {len(out)} bytes, "
                                  f"not {size}")
        return out

    def __repr__(self):
        return f"<ZstdLevel {self.name}>"


# --- appendix: fidelity -------------------------------------------------------------------------

def guess_uuid_attack(shared_auth: bool,
                      victim_uuid: str = "00000000-0000-5eed-0000-00000000f00d") -> bool:
    """Can a guest read another guest's shared-pool page by guessing the pool's uuid?

    Guest 1, authorised by dom0 (``xl tmem-shared-auth``), creates a shared pool with
    ``victim_uuid`` (as ``xl`` prints it) and puts a page.
    Guest 2, never authorised, asks for a shared pool with the same uuid and gets that page's
    handle. Returns True if guest 2 read guest 1's bytes. ``Host(shared_auth=True)`` is Xen 4.9
    and later (authorisation required; the default); ``False`` is Xen 4.8 and earlier booted
    without ``tmem_shared_auth``. O(1) hypercalls."""
    host = Host(pages=1024, shared_auth=shared_auth)
    for d in (1, 2):
        host.create_domain(d, pages=16, max_pages=64)
    from ..xl import tmem_shared_auth, uuid_parse
    tmem_shared_auth(host, 1, uuid=victim_uuid, auth=1)
    words = uuid_parse(victim_uuid)
    secret = b"guest 1's secret".ljust(PAGE, b".")
    shared = abi.pool_flags(shared=True)
    p1 = host.do_tmem_op(1, TmemOp(cmd=abi.TMEM_NEW_POOL, flags=shared, uuid=words))
    host.do_tmem_op(1, TmemOp(cmd=abi.TMEM_PUT_PAGE, pool_id=p1, oid=(1, 0, 0), page=secret))
    p2 = host.do_tmem_op(2, TmemOp(cmd=abi.TMEM_NEW_POOL, flags=shared, uuid=words))
    buf = bytearray(PAGE)
    rc = host.do_tmem_op(2, TmemOp(cmd=abi.TMEM_GET_PAGE, pool_id=p2, oid=(1, 0, 0), page=buf))
    host.check()
    return rc == 1 and bytes(buf) == secret


# --- chapter 8 ----------------------------------------------------------------------------------

class HashedPcdIndex:
    """Chapter 8's exercise: find a page's content through one hash table instead of tmem's 256
    first-byte red-black trees ("There may be better ways to implement this").

    A content goes to bucket ``h % buckets`` of its 64-bit BLAKE2b hash ``h`` (in a hypervisor
    each bucket would have its own lock, as each tree has); inside the bucket a dict maps ``h``
    to the contents stored under it. A lookup reads the whole content once to hash it and, when
    the hash is known, compares the whole content (two pages may share a hash): ``lookup``
    returns the bytes read each way, for the comparison with the trees.

    Invariants (:meth:`check`):

    1. every stored content sits in bucket ``h % buckets`` under its own hash ``h``;
    2. no content is stored twice, and ``count`` is the number stored.

    >>> ix = HashedPcdIndex()
    >>> ix.lookup(b"a" * 4096)[0], ix.lookup(b"a" * 4096)[0], ix.count
    (False, True, 1)
    """

    def __init__(self, buckets: int = 256):
        if buckets < 1:
            raise ValueError("buckets must be >= 1")
        self.buckets = [dict() for _ in range(buckets)]    # hash -> [contents]
        self.count = 0                                     # contents stored

    @staticmethod
    def hash(content) -> int:
        """64-bit BLAKE2b of the content. O(len)."""
        import hashlib
        return int.from_bytes(hashlib.blake2b(content, digest_size=8).digest(), "little")

    def lookup(self, content) -> tuple:
        """Find ``content``, storing it if absent: ``(found, bucket, bytes hashed, bytes
        compared)``. O(len) plus one comparison per content sharing its hash."""
        content = bytes(content)
        h = self.hash(content)
        b = h % len(self.buckets)
        same = self.buckets[b].setdefault(h, [])
        compared = 0
        for other in same:
            compared += len(content)
            if other == content:
                return True, b, len(content), compared
        same.append(content)
        self.count += 1
        return False, b, len(content), compared

    def check(self) -> None:
        """Verify invariants 1-2; raises :class:`~tmemref.errors.InvariantError`. O(bytes
        stored)."""
        from ..errors import InvariantError
        n = 0
        for b, table in enumerate(self.buckets):
            for h, contents in table.items():
                if len(set(contents)) != len(contents):
                    raise InvariantError("hashed index invariant 2: a content stored twice")
                for c in contents:
                    if self.hash(c) != h or h % len(self.buckets) != b:
                        raise InvariantError("hashed index invariant 1: a content under "
                                             "another hash or bucket")
                n += len(contents)
        if n != self.count:
            raise InvariantError(f"hashed index invariant 2: {n} contents, count {self.count}")


def _tree_lookup(trees, page) -> tuple:
    """One put's search of tmem's first-byte trees, counted as Xen's ``tmh_page_cmp`` works:
    each comparison reads 64-bit words until the first that differs (the whole page when
    equal). Inserts the page when absent. ``(found, tree, comparisons, bytes compared)``."""
    from ..core.pcd import content_key
    words = np.frombuffer(page, dtype="<u8")
    fb = page[0]
    node, visits, read = trees[fb].root, 0, 0
    while node is not None:
        visits += 1
        differ = np.flatnonzero(words != node.value)
        if differ.size == 0:
            return True, fb, visits, read + PAGE
        w = int(differ[0])
        read += 8 * (w + 1)
        node = node.left if words[w] < node.value[w] else node.right
    trees[fb].insert(content_key(page, False), words)
    return False, fb, visits, read


def index_costs(pages, buckets: int = 256) -> dict:
    """Put ``pages`` (whole pages, in order) through tmem's 256 first-byte trees and through a
    :class:`HashedPcdIndex` of ``buckets`` buckets. For each (``"trees"``, ``"hash"``):
    ``lookups``, ``found`` (duplicates), ``busiest`` (the share of lookups that went to the
    busiest tree or bucket, ``busiest_lock``: under one lock each, what a hypervisor would
    serialise),
    ``compares`` (whole-content comparisons per lookup), ``compared`` and ``hashed`` (bytes per
    lookup). Both must find the same duplicates (``ValueError`` otherwise). O(n log n) page
    comparisons."""
    trees = [RBTree() for _ in range(256)]
    index = HashedPcdIndex(buckets)
    rows = {"trees": [], "hash": []}       # (found, lock, comparisons, compared, hashed)
    for page in pages:
        page = bytes(page)
        if len(page) != PAGE:
            raise ValueError("whole 4096-byte pages only")
        rows["trees"].append(_tree_lookup(trees, page) + (0,))
        found, b, hashed, compared = index.lookup(page)
        rows["hash"].append((found, b, compared // PAGE, compared, hashed))
    if not pages:
        raise ValueError("no pages")
    index.check()
    out = {}
    for name, r in rows.items():
        a = np.array(r, dtype=np.int64)
        per_lock = np.bincount(a[:, 1])
        out[name] = {"lookups": len(a), "found": int(a[:, 0].sum()),
                     "busiest": float(per_lock.max() / len(a)),
                     "busiest_lock": int(per_lock.argmax()),
                     "compares": float(a[:, 2].mean()), "compared": float(a[:, 3].mean()),
                     "hashed": float(a[:, 4].mean())}
    if out["trees"]["found"] != out["hash"]["found"]:
        raise ValueError("the two indexes disagree on the duplicates")
    return out


# --- appendix: the package and its oracle ------------------------------------------------------

def repaired_dict_tmem():
    """The oracle appendix's ``BuggyDictTmem`` with its one bug repaired: a class whose duplicate
    put replaces the old page, as put-put-get coherency demands. Built on request (it subclasses
    :class:`tmemref.oracle.BuggyDictTmem`, which this module does not import at load time). O(1).

    >>> from tmemref import oracle
    >>> oracle.compare(oracle.oracle_host, repaired_dict_tmem(), oracle.random_trace(100, 0)) is None
    True
    """
    from ..oracle import BuggyDictTmem

    class RepairedDictTmem(BuggyDictTmem):
        """``BuggyDictTmem`` whose duplicate put replaces the page instead of keeping the first."""

        def _store(self, pool, key, data) -> None:
            pool.pages[key] = data

    return RepairedDictTmem


# --- chapter 12: tmem in context ---------------------------------------------------------------

def zswap_dedup_footprint(pages, codec="lz4"):
    """The zswap-like model of :func:`tmemref.sim.context.zswap_footprint` with KSM-style
    deduplication added: a page whose exact content is already kept shares the kept copy
    and costs only its own entry (a refused content stays refused). Returns a
    :class:`~tmemref.sim.context.Footprint`. O(pages) compressions at most.

    >>> from tmemref.sim.context import zswap_footprint
    >>> twice = [b"tmem " * 819 + b"!"] * 2
    >>> zswap_dedup_footprint(twice).data_bytes < zswap_footprint(twice).data_bytes
    True
    """
    from ..host.compress import get_codec
    from .context import ZSWAP_ENTRY_BYTES, Footprint, zswap_footprint
    codec = get_codec(codec) if isinstance(codec, str) else codec
    kept_before: dict = {}                      # content -> kept (True) or refused (False)
    offered = kept = whole = data = meta = 0
    for page in pages:
        page = bytes(page)
        offered += 1
        if page in kept_before:
            if kept_before[page]:
                kept += 1
                meta += ZSWAP_ENTRY_BYTES
            continue
        one = zswap_footprint([page], codec=codec)
        kept_before[page] = one.kept == 1
        kept, whole = kept + one.kept, whole + one.whole
        data, meta = data + one.data_bytes, meta + one.meta_bytes
    return Footprint(f"zswap-like, same-filled + {codec.name} + dedup", offered, kept, whole,
                     data, meta)


# --- the oracle page ----------------------------------------------------------------------------

def capped_dict_tmem(capacity: int):
    """The oracle page's build exercise: a :class:`tmemref.oracle.DictTmem` that holds at most
    ``capacity`` ephemeral pages, across all pools, and evicts the one put longest ago when a
    put of a new handle needs room. Persistent pages are never evicted. Returns the class
    (``CappedDictTmem``), a factory as :func:`tmemref.oracle.compare` wants. Its ``check()``
    adds invariant 3: at most ``capacity`` ephemeral pages. ``ValueError`` for a capacity
    below 1. A put costs O(pages held).

    >>> from tmemref import oracle
    >>> Capped = capped_dict_tmem(2)
    >>> trace = oracle.random_trace(200, seed=1)
    >>> oracle.broken_promise(Capped, trace) is None, oracle.compare(oracle.DictTmem, Capped,
    ...                                                              trace) is None
    (True, False)
    """
    from collections import OrderedDict

    from ..errors import InvariantError
    from ..oracle import DictTmem
    if type(capacity) is not int or capacity < 1:
        raise ValueError(f"capacity is a positive int, not {capacity!r}")

    class CappedDictTmem(DictTmem):
        """``DictTmem`` with room for ``capacity`` ephemeral pages, evicting oldest first."""

        def __init__(self):
            super().__init__()
            self.age = OrderedDict()            # (id(pool), key) -> pool, oldest put first

        def _ephemeral(self):
            return [p for slots in self.domains.values() for p in slots
                    if p is not None and not p.persistent]

        def _store(self, pool, key, data) -> None:
            if not pool.persistent:
                self.age.pop((id(pool), key), None)
                while key not in pool.pages and self.age and \
                        sum(len(p.pages) for p in self._ephemeral()) >= capacity:
                    (_, old), victim = self.age.popitem(last=False)
                    victim.pages.pop(old, None)  # gone already (flushed, got): nothing to do
                self.age[(id(pool), key)] = pool
            pool.pages[key] = data

        def check(self) -> None:
            super().check()
            held = sum(len(p.pages) for p in self._ephemeral())
            if held > capacity:
                raise InvariantError(f"CappedDictTmem invariant 3: {held} ephemeral pages, "
                                     f"room for {capacity}")

    return CappedDictTmem
# --- chapter 13 ---------------------------------------------------------------------------------



class SlruPolicy(Policy):
    """Segmented LRU (Karedla, Love and Wherry, "Caching strategies to improve disk system
    performance", IEEE Computer 27(3), 1994), as a :class:`tmemref.sim.study.Policy`: a new
    page enters a *probationary* segment; a reference to a page there promotes it to the young
    end of a *protected* segment of at most ``PROTECTED`` of the capacity, whose oldest page,
    when it overflows, drops back to the young end of probation. Victims come from probation,
    oldest first, then from the protected segment. A page the walk sends back (a second chance)
    goes to the young end of its segment. No per-owner lists. O(1) per operation.

    >>> from tmemref.sim.study import Variant, make_case, simulate
    >>> run = simulate(make_case("zipf + one-pass scan"), Variant("slru", policy=SlruPolicy), 1000)
    >>> lru = simulate(make_case("zipf + one-pass scan"), Variant("lru"), 1000)
    >>> run.hit_ratio(4000) > lru.hit_ratio(4000)
    True
    """
    PROTECTED = 0.8

    def __init__(self, capacity, seed=0, owners=False):
        if owners:
            raise ValueError("SlruPolicy keeps no per-owner lists")
        super().__init__(capacity, seed, owners)
        self.probation: OrderedDict = OrderedDict()     # oldest first
        self.protected: OrderedDict = OrderedDict()
        self.limit = max(1, int(self.PROTECTED * capacity))

    def __len__(self):
        return len(self.probation) + len(self.protected)

    def insert(self, key, owner, next_use=None):
        self.probation[key] = None

    def touch(self, key, next_use=None):
        if key in self.protected:
            self.protected.move_to_end(key)
            return
        del self.probation[key]
        self.protected[key] = None
        if len(self.protected) > self.limit:
            old, _ = self.protected.popitem(last=False)
            self.probation[old] = None

    def remove(self, key):
        if key in self.probation:
            del self.probation[key]
        else:
            del self.protected[key]

    def evict(self, accept=None, owner=None):
        if owner is not None:
            raise ValueError("SlruPolicy keeps no per-owner lists")
        for segment in (self.probation, self.protected):
            if accept is None:
                victim = next(iter(segment), None)
            else:
                victim = walk_for_victim(segment, accept, segment.move_to_end)
            if victim is not None:
                del segment[victim]
                return victim
        return None

