"""Speed of the TLSF sub-page allocator and of the page codecs. A script, not a test.

    python benchmarks/bench_tlsf.py            # about 40 s
    python benchmarks/bench_tlsf.py --quick    # about 10 s
    python benchmarks/bench_tlsf.py --instructions   # [3] only (needs valgrind; about 2 min)

[1] ns per alloc/free pair of :class:`tmemref.host.tlsf.Tlsf` in a steady state: ``--live``
    blocks stay allocated; each pair frees one of them (chosen at random) and allocates a new
    one in its place. Two size mixes: *metadata*, the structures a put allocates (pgp 80 %,
    object 10 %, radix node 5 %, pcd 4 %, sharelist 1 %, sizes from ``tmemref.host.alloc``);
    *compressed*, the LZO1X-1 sizes of real file pages that tmem would keep compressed
    (``0 < size < 4064``). Each without a lock and with a ``SpinLock`` (order checking off).
    At the end: frames held
    and ``used_size / total_size`` (how full the frames are).
[2] µs per page to compress and to decompress, per codec, on real file pages (the first
    ``--per-file`` pages of each file, in path order, half under /usr/lib/python3*, half under
    /usr/share),
    the ratio ``4096 * pages / sum of compressed sizes``, the share tmem would store raw
    (``size >= 4064``, compress_poor) and the share Xen's TLSF could not hold although under
    4064 (``LARGEST_FIT < size < 4064``).
[3] (``--instructions``) CPU instructions per alloc/free pair, counted by valgrind's callgrind:
    the metadata mix run with 10,000 and with 30,000 pairs, the difference of the two totals
    divided by 20,000. Deterministic, so it does not move
    with the load of the machine as the times above do.

Every time is the best of ``--repeat`` (3) runs measured with ``time.perf_counter``, sizes and
choices made before timing from a seeded ``random.Random``; the garbage collector stays on.
Take the numbers with a grain of salt: one machine, one Python, other processes on it.
"""
from __future__ import annotations

import argparse
import gc
import os
import platform
import random
import re
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from tmemref.host.alloc import SIZEOF                     # noqa: E402
from tmemref.host.compress import available, get_codec    # noqa: E402
from tmemref.host.frames import HostMemory                # noqa: E402
from tmemref.host.locks import RANK_XMEM, SpinLock        # noqa: E402
from tmemref.host.tlsf import LARGEST_FIT, MAX_ALLOC, Tlsf  # noqa: E402
from tmemref.sim.filepages import DEFAULT_ROOTS, file_pages  # noqa: E402

METADATA_MIX = (("pgp", 80), ("obj", 10), ("objnode", 5), ("pcd", 4), ("sharelist", 1))


BUSY = []      # figures measured while other processes took the CPU


def clock():
    return time.perf_counter(), time.process_time()


def since(start):
    """(wall, cpu) seconds since ``start = clock()``."""
    w, c = clock()
    return w - start[0], c - start[1]


def best_of(repeat, run):
    """Best wall time of ``run()``, which returns ``since(start)`` of its timed part; notes in
    BUSY when that run got noticeably less CPU than wall-clock time."""
    best, cpu = float("inf"), 0.0
    for _ in range(repeat):
        gc.collect()
        dt, c = run()
        if dt < best:
            best, cpu = dt, c
    if cpu and best > 1.15 * cpu:
        BUSY.append(best / cpu)
    return best


def frame_source():
    """Unlimited frames: get returns the next number, put takes it back."""
    spare, top = [], [0]

    def get():
        if spare:
            return spare.pop()
        top[0] += 1
        return top[0]
    return get, spare.append


def tlsf_pairs(sizes, live, pairs, seed, lock, repeat):
    """ns per alloc/free pair, and the final pool."""
    rng = random.Random(seed)
    first = [rng.choice(sizes) for _ in range(live)]
    nxt = [rng.choice(sizes) for _ in range(pairs)]
    victims = [rng.randrange(live) for _ in range(pairs)]
    holder = {}

    def run():
        get, put = frame_source()
        t = Tlsf("bench", get, put, lock=SpinLock("xmem", RANK_XMEM) if lock else None)
        slots = [t.alloc(s) for s in first]
        alloc, free = t.alloc, t.free
        t0 = clock()
        for i, s in zip(victims, nxt):
            free(slots[i])
            slots[i] = alloc(s)
        dt = since(t0)
        holder["pool"] = t
        return dt
    return best_of(repeat, run) / pairs * 1e9, holder["pool"]


def pairs_only(n):
    """Run ``n`` pairs of the metadata mix, untimed (what callgrind counts in [3]): a seeded
    sequence of 4096 (victim, size) choices, cycled, so the loop itself costs little."""
    meta = [SIZEOF[k] for k, w in METADATA_MIX for _ in range(w)]
    rng = random.Random(1)
    seq = [(rng.randrange(2000), rng.choice(meta)) for _ in range(4096)]
    first = [rng.choice(meta) for _ in range(2000)]
    get, put = frame_source()
    t = Tlsf("bench", get, put)
    slots = [t.alloc(s) for s in first]
    alloc, free = t.alloc, t.free
    for k in range(n):
        i, s = seq[k & 4095]
        free(slots[i])
        slots[i] = alloc(s)


def instructions_per_pair():
    """[3]: callgrind's instruction totals at 10,000 and 30,000 pairs on ``target``."""
    totals = []
    for n in (10_000, 30_000):
        out = subprocess.run(["valgrind", "--tool=callgrind", "--callgrind-out-file=/dev/null",
                              sys.executable, os.path.abspath(__file__), "--pairs-only", str(n)],
                             capture_output=True, text=True, check=True).stderr
        totals.append(int(re.search(r"Collected : (\d+)", out).group(1)))
    return (totals[1] - totals[0]) / 20_000


def codec_figures(pages, repeat):
    n = len(pages)
    rows = []
    for name in available():
        c = get_codec(name)
        comp, dec = c.compress, c.decompress
        datas = [comp(p) for p in pages]
        assert all(dec(d) == p for d, p in zip(datas, pages))

        def run_c():
            t0 = clock()
            for p in pages:
                comp(p)
            return since(t0)

        def run_d():
            t0 = clock()
            for d in datas:
                dec(d)
            return since(t0)
        tc = best_of(repeat, run_c) / n * 1e6
        td = best_of(repeat, run_d) / n * 1e6
        sizes = [len(d) for d in datas]
        poor = sum(s >= MAX_ALLOC for s in sizes)
        gap = sum(LARGEST_FIT < s < MAX_ALLOC for s in sizes)
        stored = sum(s if s < MAX_ALLOC else 4096 for s in sizes)
        rows.append((name, c.library, tc, td, 4096 * n / sum(sizes), 4096 * n / stored,
                     100 * poor / n, 100 * gap / n))
    return rows


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="fewer pairs and pages")
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--live", type=int, default=2000, help="blocks kept allocated")
    ap.add_argument("--per-file", type=int, default=4, help="pages taken from each file")
    ap.add_argument("--instructions", action="store_true",
                    help="only [3]: instructions per pair under callgrind")
    ap.add_argument("--pairs-only", type=int, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.pairs_only is not None:
        return pairs_only(args.pairs_only)
    if args.instructions:
        print(f"[3] instructions per alloc/free pair, metadata mix (callgrind, Python "
              f"{platform.python_version()}):")
        print(f"    tlsf    {instructions_per_pair():>8,.0f}")
        return
    pairs = 50_000 if args.quick else 200_000
    npages = 2000 if args.quick else 10_000
    print(f"bench_tlsf — Python {platform.python_version()} ({platform.python_implementation()}), "
          f"{platform.machine()}, {os.cpu_count()} CPUs, {time.strftime('%Y-%m-%d')}")

    pages = [p for root in DEFAULT_ROOTS
             for p in file_pages([root], limit=npages // 2, per_file=args.per_file)]
    lzo = get_codec(available()[0])
    csizes = [s for s in (len(lzo.compress(p)) for p in pages) if 0 < s <= LARGEST_FIT]
    meta = [SIZEOF[k] for k, w in METADATA_MIX for _ in range(w)]
    print(f"\n[1] Tlsf: ns per alloc/free pair, {args.live} live blocks, {pairs} pairs, "
          f"best of {args.repeat}")
    print(f"    {'mix':<12}{'no lock':>9}{'SpinLock':>10}{'frames':>8}"
          f"{'used/total':>12}")
    for label, sizes in (("metadata", meta), ("compressed", csizes)):
        ns, pool = tlsf_pairs(sizes, args.live, pairs, 1, False, args.repeat)
        ns_lock, _ = tlsf_pairs(sizes, args.live, pairs, 1, True, args.repeat)
        pool.check()
        print(f"    {label:<12}{ns:>9.0f}{ns_lock:>10.0f}{pool.num_regions:>8}"
              f"{pool.used_size / pool.total_size:>12.3f}")
    print(f"    (compressed mix: {len(csizes)} LZO1X-1 sizes of real pages, "
          f"mean {sum(csizes) / len(csizes):.0f} B)")

    print(f"\n[2] codecs on {len(pages)} real pages (half from each of "
          f"{', '.join(DEFAULT_ROOTS)}, the first {args.per_file} of each file), "
          f"best of {args.repeat}")
    print(f"    {'codec':<9}{'µs/page c':>10}{'µs/page d':>10}{'ratio':>7}{'stored':>8}"
          f"{'>=4064':>8}{'4033-63':>9}  library")
    for name, lib, tc, td, ratio, stored, poor, gap in codec_figures(pages, args.repeat):
        print(f"    {name:<9}{tc:>10.1f}{td:>10.1f}{ratio:>7.2f}{stored:>8.2f}{poor:>7.1f}%"
              f"{gap:>8.2f}%  {lib}")
    print("    ratio: 4096*pages / compressed bytes; stored: the same with pages of size >= 4064"
          " kept raw (4096 B)")
    if BUSY:
        print(f"\n[{len(BUSY)} figures had wall/cpu up to {max(BUSY):.2f}: the machine was busy, "
              f"rerun before keeping them]")


if __name__ == "__main__":
    main()
