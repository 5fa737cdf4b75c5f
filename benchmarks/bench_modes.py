"""What dedup, trailing-zero elimination and compression cost per put. A script, not a test.

    python benchmarks/bench_modes.py            # 6,000 real file pages, best of 3 (~30 s)
    python benchmarks/bench_modes.py --pages 2000

Every mode puts the same real pages (the first pages of the files under /usr/lib/python3* and
/usr/share, sorted, 4 per file: what a guest's page cache would hand cleancache) into one
ephemeral pool of one guest, on a host big enough that nothing is evicted, then reads them all
back. Times are the best of ``--repeat`` runs with ``time.perf_counter``; all ops are built
before the timed part. It prints µs per put and per get for each mode, the bare codec call per
page, and the two aims:

* a put with dedup and tze on costs at most 2x the plain put;
* a compressed put costs at most 1.5x (bare LZO1X-1 compress + the plain put).

Take the numbers with a grain of salt: one machine, one Python, other processes on it.
"""
from __future__ import annotations

import argparse
import gc
import platform
import time

from tmemref import Host, TmemOp, abi
from tmemref.host.compress import default_codec
from tmemref.sim.filepages import file_pages

MODES = {
    "plain": {},
    "dedup": dict(dedup=True),
    "dedup+tze": dict(dedup=True, tze=True),
    "compress (LZO1X-1)": dict(compress=True),
    "dedup+compress": dict(dedup=True, compress=True),
}


def run_mode(pages, kw, repeat):
    """(µs per put, µs per get, frames holding pages and metadata after the puts, deduped
    puts, pcds) for one mode: best of ``repeat``."""
    best_put = best_get = float("inf")
    for _ in range(repeat):
        host = Host(pages=len(pages) + len(pages) // 8 + 1024, **kw)
        host.create_domain(1, pages=4)
        pool = host.do_tmem_op(1, TmemOp(cmd=abi.TMEM_NEW_POOL, flags=abi.pool_flags()))
        puts = [TmemOp(cmd=abi.TMEM_PUT_PAGE, pool_id=pool, oid=(i // 64, 0, 0), index=i % 64,
                       page=p) for i, p in enumerate(pages)]
        buf = bytearray(4096)
        gets = [TmemOp(cmd=abi.TMEM_GET_PAGE, pool_id=pool, oid=op.oid, index=op.index,
                       page=buf) for op in puts]
        do = host.do_tmem_op
        gc.collect()
        t0 = time.perf_counter()
        for op in puts:
            do(1, op)
        t1 = time.perf_counter()
        held = (host.global_page_count + host.eph_mempool.num_regions, host.deduped_puts,
                host.global_pcd_count)
        for op in gets:
            do(1, op)
        t2 = time.perf_counter()
        if host.evicted_pgs:
            raise RuntimeError("the host evicted: make it bigger")
        best_put = min(best_put, (t1 - t0) / len(puts) * 1e6)
        best_get = min(best_get, (t2 - t1) / len(gets) * 1e6)
    return (best_put, best_get) + held


def bare_codec(pages, repeat):
    codec = default_codec()
    best = float("inf")
    for _ in range(repeat):
        t0 = time.perf_counter()
        for p in pages:
            codec.compress(p)
        best = min(best, (time.perf_counter() - t0) / len(pages) * 1e6)
    return codec.name, best


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--pages", type=int, default=6000)
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args(argv)
    pages = list(file_pages(limit=args.pages, per_file=4))
    print(f"tmemref bench_modes — Python {platform.python_version()}, {platform.machine()}; "
          f"{len(pages)} real file pages, best of {args.repeat}")
    results = {}
    for name, kw in MODES.items():
        put, get, frames, deduped, pcds = run_mode(pages, kw, args.repeat)
        results[name] = put
        print(f"  {name:20} put {put:6.2f} µs  get {get:6.2f} µs  frames {frames:6d}  "
              f"(deduped puts {deduped}, pcds {pcds})")
    codec, c = bare_codec(pages, args.repeat)
    print(f"  bare {codec} compress: {c:.2f} µs per page")
    plain = results["plain"]
    r1 = results["dedup+tze"] / plain
    r2 = results["compress (LZO1X-1)"] / (c + plain)
    print(f"aim dedup+tze put <= 2x plain put          : {'met' if r1 <= 2 else 'NOT met'} "
          f"({r1:.2f}x)")
    print(f"aim compressed put <= 1.5x (codec + plain) : {'met' if r2 <= 1.5 else 'NOT met'} "
          f"({r2:.2f}x)")


if __name__ == "__main__":
    main()
