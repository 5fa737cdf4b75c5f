"""A deterministic tmem workload for the benchmarks: several guests, both pool kinds, Zipf objects.

The same seed gives the same trace, op for op, on every machine (numpy's ``PCG64`` generator
seeded explicitly; no global random state, no clock).

What the trace models
---------------------
* ``guests`` guests (domids 1..guests). Each makes one **ephemeral** pool (slot 0, cleancache:
  one object per file, index = page offset in the file) and one **persistent** pool (slot 1,
  frontswap: 16 objects per swap device, the swap offset "swizzled" into object ``offset & 15``
  and index ``offset >> 4``, as Linux's tmem frontend does).
* Object popularity is Zipf-like: the object of rank ``r`` (1-based) is chosen with weight
  ``r ** -zipf_s``; each guest has its own ranking. Within an object the page index is uniform.
  Swap offsets are Zipf-ranked the same way.
* File sizes: 50 % small (1-8 pages), 40 % medium (9-64), 10 % large-sparse (up to 64 pages at
  an offset that is a random multiple of 4096 pages, so their radix trees are three levels
  deep).
* Op mix per guest op: ``eph_share`` of ops go to the ephemeral pool with put/get/flush/
  flush-object weights ``eph_mix``; the rest to the persistent pool with ``pers_mix``
  (flush-object is never sent to the swap pool: Linux only does that on swapoff). A
  flush-object picks its file uniformly, not by popularity (deleted files are rarely the hot
  ones).
* Memory pressure: the ephemeral universe (every (file, page) pair) is far larger than the host
  (``host_pages`` frames), so once the host fills, puts keep evicting. Each domain may be billed
  ``pers_max_pages`` frames, slightly more than its swap universe, so persistent puts succeed
  unless metadata pushes a domain over.
* ``warmup`` ops at the start fill the host; benchmarks time only what follows.

The trace is a list of plain tuples ``(domid, cmd, pool_id, oid, index)`` (``cmd`` from
:mod:`tmemref.abi`); :func:`build_ops` turns it into ``(domid, TmemOp)`` pairs with page
buffers, outside any timed region.

>>> t = make_trace(TraceConfig(n_ops=1000, warmup=100))
>>> len(t.ops), t.ops == make_trace(TraceConfig(n_ops=1000, warmup=100)).ops
(1000, True)
"""
from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

import numpy as np

from tmemref import abi

PUT, GET, FLUSH, FLUSH_OBJ = (abi.TMEM_PUT_PAGE, abi.TMEM_GET_PAGE, abi.TMEM_FLUSH_PAGE,
                              abi.TMEM_FLUSH_OBJECT)
EPH_POOL, PERS_POOL = 0, 1           # pool slots: each guest creates ephemeral, then persistent
SWIZ_BITS = 4                        # frontswap: 16 objects per swap device
PAGE_SIZE = abi.PAGE_SIZE


@dataclass(frozen=True)
class TraceConfig:
    """Knobs of :func:`make_trace`; the defaults are the full benchmark's trace."""
    n_ops: int = 240_000                 # ops in the trace, warm-up included
    warmup: int = 40_000                 # leading ops that fill the host (not timed)
    seed: int = 20240601                 # PCG64 seed
    guests: int = 4                      # domids 1..guests
    host_pages: int = 8_192              # host frames (32 MiB): far fewer than the data
    eph_files: int = 2_048               # files (ephemeral objects) per guest
    swap_pages: int = 1_024              # swap offsets per guest (persistent universe)
    pers_max_pages: int = 1_024 + 64     # frames a domain may be billed (swap data + metadata)
    zipf_s: float = 1.0                  # popularity exponent
    eph_share: float = 0.8               # fraction of ops on the ephemeral pool
    eph_mix: tuple = (0.50, 0.36, 0.135, 0.005)   # put, get, flush, flush-object
    pers_mix: tuple = (0.45, 0.40, 0.15)          # put, get, flush


@dataclass
class Trace:
    """A generated trace: the host to build, the domains and pools, and the ops."""
    config: TraceConfig
    host_pages: int                      # Host(pages=...)
    domains: list                        # [(domid, pages, max_pages)]
    pools: list                          # [(domid, persistent)] in creation order per domid
    ops: list                            # [(domid, cmd, pool_id, oid, index)]
    warmup: int                          # ops[:warmup] fill the host
    universe: dict = field(default_factory=dict)   # pages that could ever be stored, by kind

    def mix(self) -> dict:
        """Count of ops by (pool kind, command name), for the report."""
        names = {PUT: "put", GET: "get", FLUSH: "flush", FLUSH_OBJ: "flush-obj"}
        kinds = {EPH_POOL: "eph", PERS_POOL: "pers"}
        c = Counter((kinds[p], names[cmd]) for _, cmd, p, _, _ in self.ops)
        return dict(sorted(c.items()))


def zipf_weights(n: int, s: float) -> np.ndarray:
    """Probabilities of ranks 1..n proportional to ``rank ** -s``."""
    w = np.arange(1, n + 1, dtype=np.float64) ** -s
    return w / w.sum()


def make_trace(cfg: TraceConfig = TraceConfig()) -> Trace:
    """Generate the trace described in the module docstring. O(n_ops)."""
    rng = np.random.Generator(np.random.PCG64(cfg.seed))
    g = cfg.guests
    n = cfg.n_ops

    # Files of each guest: an inode number (the oid's first word), a size and a base offset.
    files = []
    for d in range(g):
        kind = rng.random(cfg.eph_files)
        size = np.where(kind < 0.5, rng.integers(1, 9, cfg.eph_files),
                        rng.integers(9, 65, cfg.eph_files))
        base = np.where(kind >= 0.9, rng.integers(1, 1024, cfg.eph_files) * 4096, 0)
        inode = 1000 + d * 1_000_000 + rng.permutation(cfg.eph_files * 8)[:cfg.eph_files] * 3
        files.append((inode, size, base))
    file_p = zipf_weights(cfg.eph_files, cfg.zipf_s)
    swap_p = zipf_weights(cfg.swap_pages, cfg.zipf_s)
    swap_perm = [rng.permutation(cfg.swap_pages) for _ in range(g)]   # rank -> offset

    guest = rng.integers(0, g, n)
    eph = rng.random(n) < cfg.eph_share
    eph_cmd = rng.choice(np.array([PUT, GET, FLUSH, FLUSH_OBJ]), n, p=np.array(cfg.eph_mix))
    pers_cmd = rng.choice(np.array([PUT, GET, FLUSH]), n, p=np.array(cfg.pers_mix))
    file_rank = rng.choice(cfg.eph_files, n, p=file_p)
    file_any = rng.integers(0, cfg.eph_files, n)
    page_u = rng.random(n)
    swap_rank = rng.choice(cfg.swap_pages, n, p=swap_p)

    ops = []
    append = ops.append
    for i in range(n):
        d = int(guest[i])
        domid = d + 1
        if eph[i]:
            cmd = int(eph_cmd[i])
            inode, size, base = files[d]
            f = int(file_any[i]) if cmd == FLUSH_OBJ else int(file_rank[i])
            oid = (int(inode[f]), 0, 0)
            index = int(base[f]) + int(page_u[i] * int(size[f]))
            append((domid, cmd, EPH_POOL, oid, 0 if cmd == FLUSH_OBJ else index))
        else:
            cmd = int(pers_cmd[i])
            off = int(swap_perm[d][int(swap_rank[i])])
            oid = (off & ((1 << SWIZ_BITS) - 1), 0, 0)
            append((domid, cmd, PERS_POOL, oid, off >> SWIZ_BITS))

    domains = [(d + 1, 0, cfg.pers_max_pages) for d in range(g)]
    pools = [(d + 1, persist) for d in range(g) for persist in (False, True)]
    universe = {"eph": int(sum(int(s.sum()) for _, s, _ in files)),
                "pers": g * cfg.swap_pages}
    return Trace(cfg, cfg.host_pages, domains, pools, ops, min(cfg.warmup, n), universe)


def make_pages(count: int = 64, seed: int = 7) -> list:
    """``count`` distinct 4096-byte pages (``bytes``) that puts cycle through."""
    rng = np.random.Generator(np.random.PCG64(seed))
    return [rng.integers(0, 256, PAGE_SIZE, dtype=np.uint8).tobytes() for _ in range(count)]


def build_ops(trace: Trace, pages=None, n_bufs: int = 64) -> list:
    """``[(domid, TmemOp)]`` for every op of the trace: puts carry one of ``pages`` (chosen by
    position), gets one of ``n_bufs`` writable 4096-byte buffers. Build once, replay many
    times: the engine never changes a ``TmemOp``."""
    from tmemref import TmemOp
    pages = pages or make_pages()
    bufs = [bytearray(PAGE_SIZE) for _ in range(n_bufs)]
    out = []
    for i, (domid, cmd, pool_id, oid, index) in enumerate(trace.ops):
        if cmd == PUT:
            page = pages[i % len(pages)]
        elif cmd == GET:
            page = bufs[i % n_bufs]
        else:
            page = None
        out.append((domid, TmemOp(cmd=cmd, pool_id=pool_id, oid=oid, index=index, page=page)))
    return out


def setup_host(trace: Trace, **host_kw):
    """A fresh :class:`tmemref.Host` with the trace's domains and pools (slot 0 ephemeral,
    slot 1 persistent in every guest)."""
    from tmemref import Host, TmemOp
    host = Host(pages=trace.host_pages, **host_kw)
    for domid, pages, max_pages in trace.domains:
        host.create_domain(domid, pages=pages, max_pages=max_pages)
    want = {}
    for domid, persist in trace.pools:
        slot = host.do_tmem_op(domid, TmemOp(cmd=abi.TMEM_NEW_POOL,
                                             flags=abi.pool_flags(persist=persist)))
        want.setdefault(domid, 0)
        if slot != want[domid]:
            raise RuntimeError(f"guest {domid}: pool created in slot {slot}, expected "
                               f"{want[domid]}")
        want[domid] += 1
    return host


if __name__ == "__main__":
    t = make_trace()
    print(f"{len(t.ops)} ops (warm-up {t.warmup}), host {t.host_pages} frames, "
          f"universe {t.universe}")
    for k, v in t.mix().items():
        print(f"  {k[0]:4} {k[1]:9} {v:7d}")
