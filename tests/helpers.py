"""Shared helpers for the contract, bad-input and invariant tests.

* thin wrappers around :meth:`Host.do_tmem_op` that call ``host.check()`` after every call
  (the house rule: check after every mutation) and make sure no lock is left held;
* deterministic page contents (incompressible and compressible);
* :func:`snapshot` — every piece of *stored* state (page bytes, pools, objects, frame owners,
  LRU orders, billing, allocators), so a test can assert that a refused call changed nothing.
  Statistics counters are deliberately left out: a refused call may count itself.
"""
from __future__ import annotations

import hashlib

import numpy as np

from tmemref import TmemOp, abi
from tmemref.core.pcd import Pcd
from tmemref.ds.dlist import list_owners

PAGE = abi.PAGE_SIZE
U64 = (1 << 64) - 1
ALL = abi.TMEM_CLI_ID_NULL


# --- page contents ------------------------------------------------------------------------------
def page(n: int) -> bytes:
    """A 4096-byte page of pseudo-random (incompressible) bytes, different for each ``n``."""
    return np.random.default_rng(1000 + n).integers(0, 256, PAGE, dtype=np.uint8).tobytes()


def cpage(n: int) -> bytes:
    """A highly compressible 4096-byte page, different for each ``n`` (never all zero)."""
    return (n.to_bytes(8, "little") + b"\x5a" * 56) * (PAGE // 64)


def released_view():
    """A memoryview of a page that has been released: no buffer can be read from it."""
    m = memoryview(bytearray(PAGE))
    m.release()
    return m


def closed_mmap():
    """An anonymous mmap of a page, closed."""
    import mmap
    m = mmap.mmap(-1, PAGE)
    m.close()
    return m


# --- calls --------------------------------------------------------------------------------------
def assert_no_locks_held(host) -> None:
    """No tmem lock anywhere is held between hypercalls (a leaked lock would hang the next)."""
    assert not host.tmem_rwlock.held, "tmem_rwlock left held"
    assert not host.eph_lists_lock.held, "eph_lists_spinlock left held"
    assert not host.pers_lists_lock.held, "pers_lists_spinlock left held"
    for pool in all_pools(host):
        assert not pool.lock.held, f"pool_rwlock of {pool} left held"
        for obj in pool.objects():
            assert not obj.lock.held, f"obj_spinlock of {obj} left held"


def call(host, domid: int, op, check: bool = True) -> int:
    """One hypercall; then ``host.check()`` and the no-leaked-lock check."""
    rc = host.do_tmem_op(domid, op)
    assert isinstance(rc, int), f"hypercall returned {rc!r}, not an int"
    if check:
        host.check()
        assert_no_locks_held(host)
    return rc


def new_pool(host, domid, persist=False, shared=False, uuid=(0, 0), flags=None) -> int:
    if flags is None:
        flags = abi.pool_flags(persist=persist, shared=shared)
    return call(host, domid, TmemOp(cmd=abi.TMEM_NEW_POOL, flags=flags, uuid=uuid))


def destroy_pool(host, domid, pool_id) -> int:
    return call(host, domid, TmemOp(cmd=abi.TMEM_DESTROY_POOL, pool_id=pool_id))


def put(host, domid, pool_id, oid, index, data) -> int:
    return call(host, domid, TmemOp(cmd=abi.TMEM_PUT_PAGE, pool_id=pool_id, oid=oid,
                                    index=index, page=data))


def get(host, domid, pool_id, oid, index):
    """(rc, bytes of the buffer after the call). The buffer starts as 0xEE bytes."""
    buf = bytearray(b"\xee" * PAGE)
    rc = call(host, domid, TmemOp(cmd=abi.TMEM_GET_PAGE, pool_id=pool_id, oid=oid,
                                  index=index, page=buf))
    return rc, bytes(buf)


def flush_page(host, domid, pool_id, oid, index) -> int:
    return call(host, domid, TmemOp(cmd=abi.TMEM_FLUSH_PAGE, pool_id=pool_id, oid=oid,
                                    index=index))


def flush_object(host, domid, pool_id, oid) -> int:
    return call(host, domid, TmemOp(cmd=abi.TMEM_FLUSH_OBJECT, pool_id=pool_id, oid=oid))


def control(host, subop, cli_id=ALL, arg1=0, arg2=0, buf=None, domid=0, oid=(0, 0, 0),
            pool_id=0) -> int:
    return call(host, domid, TmemOp(cmd=abi.TMEM_CONTROL, subop=subop, cli_id=cli_id,
                                    arg1=arg1, arg2=arg2, buf=buf, oid=oid, pool_id=pool_id))


def auth(host, cli_id, uuid, on=1, domid=0) -> int:
    """TMEM_AUTH from ``domid`` (dom0): let ``cli_id`` join the shared pool ``uuid``."""
    return call(host, domid, TmemOp(cmd=abi.TMEM_AUTH, arg1=cli_id, flags=on, uuid=uuid))


# --- looking inside -----------------------------------------------------------------------------
def all_pools(host):
    """Every live pool once (shared pools appear in several clients' slots)."""
    seen, out = set(), []
    for client in host.clients.values():
        for pool in client.pools:
            if pool is not None and id(pool) not in seen:
                seen.add(id(pool))
                out.append(pool)
    for pool in host.shared_pools:
        if pool is not None and id(pool) not in seen:
            seen.add(id(pool))
            out.append(pool)
    return out


def pool_of(host, domid, pool_id):
    return host.clients[domid].pools[pool_id]


def pool_name(pool):
    """A name for a pool that survives being rebuilt: shared pools by uuid, others by
    (owner, slot)."""
    if pool is None:
        return None
    if pool.shared:
        return ("shared",) + tuple(pool.uuid)
    return ("private", pool.client.cli_id, pool.pool_id)


def pgp_key(pgp):
    obj = pgp.obj
    return (pool_name(obj.pool), tuple(obj.oid), pgp.index)


def lru(head):
    """The pages on an LRU list, oldest first, as (oid, index)."""
    return [(tuple(p.obj.oid), p.index) for p in list_owners(head)]


def pgp_bytes(host, pgp) -> bytes:
    """The page a pgp stores, whatever its representation."""
    return host.page_of(pgp)


def stored(host, pool):
    """{(oid, index): bytes} of every page in ``pool``."""
    out = {}
    for obj in pool.objects():
        for index, pgp in obj.tree.items():
            out[(tuple(obj.oid), index)] = pgp_bytes(host, pgp)
    return out


def memory_sha256(host) -> str:
    """sha256 of host memory, all of it except the bytes no state lives in: the payload of each
    free TLSF block past its two list links, which holds whatever was there before (stale
    headers, old data), as in Xen. Headers, links and used payloads are all hashed. O(frames)."""
    flat = host.mem.data.copy().reshape(-1)
    pools = [host.eph_mempool, host.infra_pool] + [c.persistent_pool
                                                    for c in host.clients.values()]
    for a in {id(a): a for a in pools}.values():
        for f, row in a.describe()["regions"].items():
            for off, size, state in row:
                if state == "free":
                    hdr = (f << 12) + off
                    flat[hdr + 32:hdr + 16 + size] = 0     # after the header and the links
    return hashlib.sha256(flat.tobytes()).hexdigest()


def snapshot(host) -> dict:
    """All stored state of ``host`` as plain comparable values (no statistics counters)."""
    mem = host.mem
    snap = {
        "frames_sha256": memory_sha256(host),
        "owner": mem.owner.tolist(),
        "heap": list(mem.heap),
        "page_list": list(mem.page_list),
        "freeable_page_count": mem.freeable_page_count,
        "domains": {d: (dom.tot_pages, dom.max_pages, tuple(dom.own_frames), dom.privileged,
                        dom.client is not None)
                    for d, dom in sorted(mem.domains.items())},
        "eph_list": [pgp_key(p) for p in list_owners(host.eph_list)],
        "eph_count": host.eph_count,
        "shared_pools": [pool_name(p) for p in host.shared_pools],
        "client_weight_total": host.client_weight_total,
        "global_shared_auth": host.global_shared_auth,
        "globals": (host.global_obj_count, host.global_pgp_count, host.global_page_count,
                    host.global_rtree_node_count),
        "eph_mempool": (host.eph_mempool.used_size, sorted(host.eph_mempool.used_blocks())),
        "privileged": sorted(host.privileged),
        "pcds": None if host.pcd is None else sorted(
            (p.firstbyte, p.key, p.size, p.compressed, p.ref_count, p.data
             if p.size == 4096 and not p.compressed else None) for p in host.pcd.pcds()),
        "pcd_totals": (host.global_pcd_count, host.pcd_tot_tze_size, host.pcd_tot_csize),
    }
    clients = {}
    for cid, c in host.clients.items():
        clients[cid] = {
            "pools": [pool_name(p) for p in c.pools],
            "weight": c.weight, "cap": c.cap, "compress": c.compress, "frozen": c.frozen,
            "live_migrating": c.live_migrating,
            "eph_list": [pgp_key(p) for p in list_owners(c.eph_list)],
            "eph_count": c.eph_count,
            "shared_auth_uuid": sorted(map(tuple, c.shared_auth_uuid)),
            "mempool": (c.persistent_pool.used_size, sorted(c.persistent_pool.used_blocks())),
        }
    snap["clients"] = clients
    pools = {}
    for pool in all_pools(host):
        objs = {}
        for obj in pool.objects():
            pages = {}
            for index, pgp in obj.tree.items():
                data = pgp.data
                where = (("pcd", data.firstbyte, data.size, data.ref_count)
                         if type(data) is Pcd else data if pgp.size == 0 else bytes(data))
                pages[index] = (pgp.size, where, pgp_bytes(host, pgp))
            objs[tuple(obj.oid)] = (obj.last_client, obj.pgp_count, obj.objnode_count, pages)
        pools[pool_name(pool)] = {
            "owner": pool.client.cli_id, "pool_id": pool.pool_id,
            "persistent": pool.persistent, "shared": pool.shared, "uuid": tuple(pool.uuid),
            "is_dying": pool.is_dying,
            "share_list": [c.cli_id for c in pool.share_list], "shared_count": pool.shared_count,
            "counts": (pool.obj_count, pool.pgp_count, pool.objnode_count),
            "pers_list": [(tuple(p.obj.oid), p.index) for p in list_owners(pool.pers_list)],
            "objects": objs,
        }
    snap["pools"] = pools
    return snap


def diff(a: dict, b: dict) -> list:
    """Top-level keys (and client/pool sub-keys) whose values differ, for assertion messages."""
    out = []
    for k in sorted(set(a) | set(b)):
        if a.get(k) != b.get(k):
            if isinstance(a.get(k), dict) and isinstance(b.get(k), dict):
                for kk in sorted(set(a[k]) | set(b[k]), key=repr):
                    if a[k].get(kk) != b[k].get(kk):
                        out.append(f"{k}[{kk!r}]")
            else:
                out.append(k)
    return out
