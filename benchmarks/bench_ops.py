"""Throughput, metadata and scaling figures of the tmemref engine. A script, not a test.

    python benchmarks/bench_ops.py             # full run: about 30 s on a quiet 2-vCPU machine
    python benchmarks/bench_ops.py --quick     # smaller trace, fewer ops: about 12 s
    python benchmarks/bench_ops.py --profile   # also cProfile one replay, print the top 20

(The last line printed is the run's own wall and CPU time; benchmarks/README.md has the same
figures.)

Figures (see benchmarks/README.md for what each means and the numbers measured):

1. ops/s replaying the trace of ``trace.py`` through ``Host.do_tmem_op``;
2. the same trace through :class:`DictModel` (a bare dict + OrderedDict LRU of the same
   capacity) and the ratio engine/dict;
3. Python heap bytes per resident page (tracemalloc), dense and sparse objects;
4. µs per op at 10^3, 10^4, 10^5 resident pages.

All op objects and page buffers are built before any timed region (and frozen out of the
garbage collector's reach with ``gc.freeze``); every time is the best of ``--repeat`` (3) runs
measured with ``time.perf_counter``; the garbage collector stays on (collecting what the
engine allocates is part of what the engine costs). Take the numbers with a grain of salt: one machine, one
Python, and other processes on it.
"""
from __future__ import annotations

import argparse
import cProfile
import gc
import importlib.util
import io
import os
import platform
import pstats
import sys
import time
import tracemalloc
from collections import Counter, OrderedDict

import numpy as np

import tmemref
from tmemref import Host, TmemOp, abi
from tmemref.host.alloc import SIZEOF
from tmemref.progress import progress

# benchmarks/trace.py would shadow the standard library's ``trace``: load it by path.
_spec = importlib.util.spec_from_file_location(
    "tmemref_bench_trace", os.path.join(os.path.dirname(os.path.abspath(__file__)), "trace.py"))
tracegen = importlib.util.module_from_spec(_spec)
sys.modules[_spec.name] = tracegen
_spec.loader.exec_module(tracegen)

PUT, GET, FLUSH, FLUSH_OBJ = tracegen.PUT, tracegen.GET, tracegen.FLUSH, tracegen.FLUSH_OBJ
PAGE_SIZE = abi.PAGE_SIZE
ENOMEM = -12


# --- 2. the baseline -------------------------------------------------------------------------
class DictModel:
    """The least a tmem can do: a dict of pages, an LRU of the ephemeral ones, no checks.

    ``pages`` maps ``(domid, pool_id, oid, index)`` to a frame of a preallocated numpy array
    (so it copies the same 4096 bytes per put and get as the engine); ``lru`` is an
    ``OrderedDict`` of the ephemeral keys, oldest first; ``objs`` maps ``(domid, pool_id, oid)``
    to its set of indices, which flush-object needs. Same semantics as the engine where it
    matters for the work done: private ephemeral gets are exclusive, a duplicate put
    overwrites in place without touching the LRU, a full store evicts the oldest ephemeral
    page, persistent pages count against the domain's ``max_pages``. No metadata billing, no
    locks, no validation, no statistics.
    """

    def __init__(self, capacity: int, persistent_pools, pers_caps: dict):
        self.data = np.zeros((capacity, PAGE_SIZE), dtype=np.uint8)
        self.free = list(range(capacity - 1, -1, -1))
        self.pages = {}
        self.lru = OrderedDict()
        self.objs = {}
        self.persistent = set(persistent_pools)      # {(domid, pool_id)}
        self.pers_count = {d: 0 for d in pers_caps}
        self.pers_caps = dict(pers_caps)

    def _drop(self, key):
        self.free.append(self.pages.pop(key))
        s = self.objs[key[:3]]
        s.discard(key[3])
        if not s:
            del self.objs[key[:3]]

    def do_tmem_op(self, domid, op):
        cmd = op.cmd
        pool_id = op.pool_id
        if cmd == PUT:
            key = (domid, pool_id, op.oid, op.index)
            f = self.pages.get(key)
            if f is not None:
                self.data[f] = np.frombuffer(op.page, dtype=np.uint8)
                return 1
            pers = (domid, pool_id) in self.persistent
            if pers and self.pers_count[domid] >= self.pers_caps[domid]:
                return ENOMEM
            if not self.free:
                if not self.lru:
                    return ENOMEM
                old, _ = self.lru.popitem(last=False)
                self._drop(old)
            f = self.free.pop()
            self.data[f] = np.frombuffer(op.page, dtype=np.uint8)
            self.pages[key] = f
            obj = key[:3]
            s = self.objs.get(obj)
            if s is None:
                s = self.objs[obj] = set()
            s.add(op.index)
            if pers:
                self.pers_count[domid] += 1
            else:
                self.lru[key] = None
            return 1
        if cmd == GET:
            key = (domid, pool_id, op.oid, op.index)
            f = self.pages.get(key)
            if f is None:
                return 0
            memoryview(op.page).cast("B")[:] = self.data[f].data
            if (domid, pool_id) not in self.persistent:
                del self.lru[key]
                self._drop(key)
            return 1
        if cmd == FLUSH:
            key = (domid, pool_id, op.oid, op.index)
            if key in self.pages:
                self._forget(key)
            return 1
        if cmd == FLUSH_OBJ:
            s = self.objs.get((domid, pool_id, op.oid))
            if s:
                for index in list(s):
                    self._forget((domid, pool_id, op.oid, index))
            return 1
        return -38

    def _forget(self, key):
        if (key[0], key[1]) in self.persistent:
            self.pers_count[key[0]] -= 1
        else:
            del self.lru[key]
        self._drop(key)

    def resident(self) -> int:
        return len(self.pages)


def dict_model_for(trace) -> DictModel:
    """A :class:`DictModel` as big as the trace's host: its frames minus the 1 MB guard."""
    persistent = []
    for domid, persist in trace.pools:
        if persist:
            persistent.append((domid, tracegen.PERS_POOL))
    return DictModel(trace.host_pages - 256, persistent,
                     {d: maxp for d, _, maxp in trace.domains})


# --- helpers -----------------------------------------------------------------------------------
def replay(do, ops) -> None:
    for domid, op in ops:
        do(domid, op)


def timed_replay(make, ops, warmup, repeat):
    """Best-of-``repeat`` wall seconds for ``ops[warmup:]`` on a fresh target each time (the
    warm-up is replayed untimed first). Returns (best wall seconds, CPU seconds of that run,
    last target). CPU time well below wall time means other processes took the CPU."""
    best, cpu, target = float("inf"), 0.0, None
    head, body = ops[:warmup], ops[warmup:]
    for _ in progress(range(repeat), desc="replays", unit=" runs"):
        target = None
        gc.collect()
        target = make()
        replay(target.do_tmem_op, head)
        gc.collect()
        c0 = time.process_time()
        t0 = time.perf_counter()
        replay(target.do_tmem_op, body)
        dt = time.perf_counter() - t0
        if dt < best:
            best, cpu = dt, time.process_time() - c0
    return best, cpu, target


def contention(wall, cpu):
    """A note when the process got noticeably less CPU than wall time."""
    return f"  [wall/cpu {wall / cpu:.2f}: the machine was busy]" if cpu and wall > 1.1 * cpu \
        else ""


def outcome_counts(target, ops, warmup):
    """Return codes of the timed part by (pool kind, command, rc), from one untimed replay,
    and the pages evicted during it (engine only; 0 for the model)."""
    replay(target.do_tmem_op, ops[:warmup])
    ev0 = getattr(target, "evicted_pgs", 0)
    c = Counter()
    names = {PUT: "put", GET: "get", FLUSH: "flush", FLUSH_OBJ: "flush-obj"}
    for domid, op in ops[warmup:]:
        rc = target.do_tmem_op(domid, op)
        c[("eph" if op.pool_id == tracegen.EPH_POOL else "pers", names[op.cmd], rc)] += 1
    return c, getattr(target, "evicted_pgs", 0) - ev0


def hit_rate(c, kind):
    hits = c.get((kind, "get", 1), 0)
    total = sum(v for (k, cmd, _), v in c.items() if k == kind and cmd == "get")
    return hits / total if total else 0.0


# --- 1 & 2 -------------------------------------------------------------------------------------
def bench_trace(cfg, repeat, check=True):
    trace = tracegen.make_trace(cfg)
    ops = tracegen.build_ops(trace)
    # The half million op objects are the harness's, not the engine's: keep the cycle
    # collector from walking them on every full collection (README: "garbage collector").
    gc.collect()
    gc.freeze()
    n = len(ops) - trace.warmup
    print(f"trace: {len(ops)} ops ({trace.warmup} warm-up, {n} timed), {cfg.guests} guests, "
          f"host {trace.host_pages} frames, universe {trace.universe['eph']} ephemeral + "
          f"{trace.universe['pers']} persistent pages")
    print("  mix: " + ", ".join(f"{k[0]} {k[1]} {v}" for k, v in trace.mix().items()))

    # outcomes (untimed): does the engine do the same kind of work as the model?
    host = tracegen.setup_host(trace)
    ce, evicted = outcome_counts(host, ops, trace.warmup)
    if check:
        host.check()
    resident_e = host.global_pgp_count
    del host
    cd, _ = outcome_counts(dict_model_for(trace), ops, trace.warmup)

    t_eng, c_eng, _ = timed_replay(lambda: tracegen.setup_host(trace), ops, trace.warmup,
                                   repeat)
    t_dict, c_dict, model = timed_replay(lambda: dict_model_for(trace), ops, trace.warmup,
                                         repeat)
    eng_ops, dict_ops = n / t_eng, n / t_dict
    print()
    print(f"[1] engine   Host.do_tmem_op : {eng_ops:10,.0f} ops/s  ({1e6 / eng_ops:5.2f} µs/op, "
          f"best of {repeat}){contention(t_eng, c_eng)}")
    print(f"    timed part: {evicted} evictions "
          f"({evicted / max(1, sum(v for k, v in ce.items() if k[:2] == ('eph', 'put'))):.1%} "
          f"of ephemeral puts), get hit rate eph {hit_rate(ce, 'eph'):.1%} "
          f"pers {hit_rate(ce, 'pers'):.1%}, puts refused "
          f"{sum(v for k, v in ce.items() if k[1] == 'put' and k[2] != 1)}, "
          f"{resident_e} pages resident at the end")
    print(f"[2] dict model DictModel     : {dict_ops:10,.0f} ops/s  ({1e6 / dict_ops:5.2f} µs/op)"
          f"   engine/dict time ratio {t_eng / t_dict:.2f}x"
          f"{contention(t_dict, c_dict)}")
    print(f"    dict model: get hit rate eph {hit_rate(cd, 'eph'):.1%} "
          f"pers {hit_rate(cd, 'pers'):.1%}, {model.resident()} pages resident at the end")
    return trace, ops, eng_ops, t_eng / t_dict


# --- 3 -------------------------------------------------------------------------------------------
def metadata_per_page(n: int, pages_per_obj: int, model: bool = False, top: int = 8):
    """Python heap growth per stored page for ``n`` ephemeral pages in objects of
    ``pages_per_obj`` consecutive pages. The frame array is allocated before tracing starts;
    the oids are inode-like (not small cached ints) and built inside the traced loop, so what
    the engine keeps of them counts and the ``TmemOp`` wrappers (freed at once) do not.
    Returns (bytes per page, Xen-sized bytes per page or None, [(site, bytes per page)])."""
    gc.collect()
    target = _target(model, n + 1024)
    page = tracegen.make_pages(1)[0]
    do = target.do_tmem_op
    base = 1_000_003
    gc.collect()
    tracemalloc.start(1)
    snap0 = tracemalloc.take_snapshot()
    before = tracemalloc.get_traced_memory()[0]
    for i in range(n):
        do(1, TmemOp(cmd=PUT, pool_id=0, oid=(base + 7 * (i // pages_per_obj), 0, 0),
                     index=i % pages_per_obj, page=page))
    gc.collect()
    after = tracemalloc.get_traced_memory()[0]
    snap1 = tracemalloc.take_snapshot()
    tracemalloc.stop()
    if model:
        xen = None
        if target.resident() != n:
            raise RuntimeError(f"expected {n} resident pages, have {target.resident()}")
    else:
        if target.global_pgp_count != n or target.evicted_pgs:
            raise RuntimeError(f"expected {n} resident pages, have {target.global_pgp_count} "
                               f"({target.evicted_pgs} evicted)")
        xen = (target.global_pgp_count * SIZEOF["pgp"] + target.global_obj_count * SIZEOF["obj"]
               + target.global_rtree_node_count * SIZEOF["objnode"]) / n
    root = os.path.dirname(os.path.dirname(os.path.abspath(tmemref.__file__)))
    sites = []
    for st in snap1.compare_to(snap0, "lineno")[:top]:
        fr = st.traceback[0]
        if abs(st.size_diff) / n >= 1:
            sites.append((f"{os.path.relpath(fr.filename, root)}:{fr.lineno}", st.size_diff / n))
    del target, do
    return (after - before) / n, xen, sites


# --- 4 -------------------------------------------------------------------------------------------
PHASES = ("get-hit", "put-new", "put-dup", "flush", "put-back")


def _target(model: bool, frames: int):
    """A fresh Host (or DictModel) with guest 1 and one ephemeral pool in slot 0."""
    if model:
        return DictModel(frames - 256, [], {1: 0})
    host = Host(pages=frames)
    host.create_domain(1)
    if host.do_tmem_op(1, TmemOp(cmd=abi.TMEM_NEW_POOL, flags=abi.pool_flags())) != 0:
        raise RuntimeError("pool not in slot 0")
    return host


def per_op_cost(resident: int, ops_per_kind: int, repeat: int, model: bool = False,
                pages_per_obj: int = 16, seed: int = 5):
    """µs per op, by kind, with ``resident`` pages stored (and staying stored, give or take a
    batch). The host has ``resident`` data frames + ``resident // 16`` for tmem's metadata
    (about 130 B/page in TLSF blocks at Xen's sizes with 16-page objects), the heap's reserve
    (1/128) and 1024 frames of headroom, so nothing is evicted. Each round takes a batch of distinct resident pages (chosen at random,
    same seed for engine and model) and runs, timed separately: get (a hit; private ephemeral
    gets remove the page), put of the same pages (new pgps), put again (duplicate puts),
    flush, put back. ``model``: the same on a :class:`DictModel` of the same capacity."""
    gc.collect()
    frames = resident + resident // 16 + 1024
    target = _target(model, frames + frames // 127)
    page = tracegen.make_pages(1)[0]
    buf = bytearray(PAGE_SIZE)
    do = target.do_tmem_op
    oid = [(1_000_003 + 7 * o, 0, 0) for o in range(-(-resident // pages_per_obj))]
    keys = [(oid[i // pages_per_obj], i % pages_per_obj) for i in range(resident)]
    for o, idx in keys:
        if do(1, TmemOp(cmd=PUT, pool_id=0, oid=o, index=idx, page=page)) != 1:
            raise RuntimeError("fill failed")
    batch = min(resident // 4, 2000)
    rounds = max(1, ops_per_kind // batch)
    rng = np.random.Generator(np.random.PCG64(seed))
    best = {k: float("inf") for k in PHASES}
    for _ in range(repeat):
        tot = dict.fromkeys(PHASES, 0.0)
        for _ in range(rounds):
            pick = [keys[j] for j in rng.choice(resident, batch, replace=False)]
            phase_ops = {
                "get-hit": [TmemOp(cmd=GET, pool_id=0, oid=o, index=i, page=buf)
                            for o, i in pick],
                "put-new": [TmemOp(cmd=PUT, pool_id=0, oid=o, index=i, page=page)
                            for o, i in pick],
                "flush": [TmemOp(cmd=FLUSH, pool_id=0, oid=o, index=i) for o, i in pick],
            }
            phase_ops["put-dup"] = phase_ops["put-back"] = phase_ops["put-new"]
            for k in PHASES:
                lst = phase_ops[k]
                t0 = time.perf_counter()
                for op in lst:
                    do(1, op)
                tot[k] += time.perf_counter() - t0
        for k in PHASES:
            best[k] = min(best[k], tot[k] / (rounds * batch) * 1e6)
    stored = target.resident() if model else target.global_pgp_count
    if stored != resident or (not model and target.evicted_pgs):
        raise RuntimeError(f"residency drifted: {stored} pages stored, not {resident}")
    del target, do
    return best, rounds * batch


# --- profile -------------------------------------------------------------------------------------
def profile_trace(trace, ops, top=20):
    """cProfile one replay of the timed part of the trace; also count the garbage collector's
    passes and time (cycles: every freed pgp is still referenced by its own list heads)."""
    host = tracegen.setup_host(trace)
    replay(host.do_tmem_op, ops[:trace.warmup])
    gc.collect()
    gc_time = [0.0, 0, 0]
    start = [0.0]

    def cb(phase, info):
        if phase == "start":
            start[0] = time.perf_counter()
        else:
            gc_time[0] += time.perf_counter() - start[0]
            gc_time[1] += 1
            gc_time[2] += info.get("collected", 0)

    body = ops[trace.warmup:]
    gc.callbacks.append(cb)
    t0 = time.perf_counter()
    replay(host.do_tmem_op, body)
    plain = time.perf_counter() - t0
    gc.callbacks.remove(cb)
    print(f"\n[profile] without profiler: {plain:.2f} s for {len(body)} ops; garbage collector "
          f"{gc_time[1]} passes, {gc_time[0]:.3f} s, {gc_time[2]} objects collected")
    host = tracegen.setup_host(trace)
    replay(host.do_tmem_op, ops[:trace.warmup])
    gc.collect()
    prof = cProfile.Profile()
    prof.enable()
    replay(host.do_tmem_op, body)
    prof.disable()
    for key in ("tottime", "cumulative"):
        s = io.StringIO()
        st = pstats.Stats(prof, stream=s)
        st.sort_stats(key).print_stats(top)
        text = s.getvalue()
        root = os.path.dirname(os.path.dirname(os.path.abspath(tmemref.__file__))) + os.sep
        print(f"\n[profile] top {top} by {key}:")
        print(text[text.find("   ncalls"):].replace(root, "").rstrip())


# --- main ----------------------------------------------------------------------------------------
def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="small trace, fewer ops (~20 s)")
    ap.add_argument("--repeat", type=int, default=3, help="best of N (default 3)")
    ap.add_argument("--profile", action="store_true", help="cProfile the trace replay too")
    ap.add_argument("--no-scaling", action="store_true", help="skip figure 4")
    args = ap.parse_args(argv)
    t_start, c_start = time.perf_counter(), time.process_time()
    if args.quick:
        cfg = tracegen.TraceConfig(n_ops=80_000, warmup=40_000)
        sizes, per_kind = (1_000, 10_000, 100_000), 2_000
    else:
        cfg = tracegen.TraceConfig()
        sizes, per_kind = (1_000, 10_000, 100_000), 8_000
    print(f"tmemref {tmemref.__version__} benchmark — Python {platform.python_version()} "
          f"({platform.python_implementation()}), numpy {np.__version__}, "
          f"{platform.machine()}, {os.cpu_count()} CPUs, {time.strftime('%Y-%m-%d')}"
          f"{' (quick)' if args.quick else ''}")
    trace, ops, eng_ops, ratio = bench_trace(cfg, args.repeat)

    print()
    meta = {}
    for name, ppo in (("dense (64 pages/object)", 64), ("sparse (1 page/object)", 1)):
        per, xen, sites = metadata_per_page(10_000, ppo)
        dper, _, _ = metadata_per_page(10_000, ppo, model=True)
        meta[name] = per
        print(f"[3] metadata, 10^4 pages, {name}: {per:6.1f} B/page of Python heap "
              f"(dict model {dper:5.1f} B/page; Xen's C structures {xen:5.1f} B/page)")
        print("      biggest allocation sites (bytes per page, file:line):")
        for site, b in sites:
            print(f"        {b:7.1f}  {site}")

    scaling = {}
    if not args.no_scaling:
        print()
        print(f"[4] µs per op with R pages resident (16-page objects, {per_kind} ops per kind "
              f"and size, best of {args.repeat}); engine, then dict model, then the ratio:")
        print("    " + f"{'R':>8}      " + "".join(f"{k:>9}" for k in PHASES) + f"{'mean':>9}")
        w4, c4 = time.perf_counter(), time.process_time()
        for r in sizes:
            row = {}
            for model in (False, True):
                best, n = per_op_cost(r, per_kind, args.repeat, model=model)
                best["mean"] = sum(best.values()) / len(best)
                row[model] = best
                print("    " + (f"{r:>8,} engine" if not model else f"{'':>8} dict  ")
                      + "".join(f"{best[k]:9.2f}" for k in PHASES + ("mean",)))
            print("    " + f"{'':>8} ratio " + "".join(f"{row[False][k] / row[True][k]:9.1f}"
                                                    for k in PHASES + ("mean",)))
            scaling[r] = row
        note = contention(time.perf_counter() - w4, time.process_time() - c4)
        if note:
            print("   " + note)

    print()
    # the aims of this round: 250k ops/s, engine/dict <= 2.5x, 200 B/page dense, 400 sparse
    aims = [("throughput >= 250k ops/s", eng_ops >= 250_000, f"{eng_ops:,.0f} ops/s"),
            ("<= 2.5x the dict model", ratio <= 2.5, f"{ratio:.2f}x")]
    for name, v in meta.items():
        kind = name.split()[0]
        limit = 200 if kind == "dense" else 400
        aims.append((f"<= {limit} B/page, {kind}", v <= limit, f"{v:.0f} B/page"))
    if scaling:
        lo, hi = min(scaling), max(scaling)
        g_eng = scaling[hi][False]["mean"] / scaling[lo][False]["mean"]
        g_dict = scaling[hi][True]["mean"] / scaling[lo][True]["mean"]
        aims.append(("flat per-op cost (<= 1.5x)", g_eng <= 1.5,
                     f"mean µs/op x{g_eng:.2f} from {lo:,} to {hi:,} pages"))
        aims.append(("  ... relative to dict model", g_eng / g_dict <= 1.5,
                     f"engine/dict ratio x{g_eng / g_dict:.2f} (dict model alone x{g_dict:.2f})"))
    for name, ok, val in aims:
        print(f"aim {name:29}: {'met' if ok else 'NOT met':8} ({val})")
    if args.profile:
        profile_trace(trace, ops)
    wall, cpu = time.perf_counter() - t_start, time.process_time() - c_start
    print(f"\ntotal benchmark time {wall:.0f} s wall, {cpu:.0f} s CPU{contention(wall, cpu)}")


if __name__ == "__main__":
    main()
