"""The floor: what tmem's faithful structures cost by themselves, on the trace of bench_ops.

    python benchmarks/bench_floor.py            # about 40 s on a quiet 2-vCPU machine
    python benchmarks/bench_floor.py --quick    # the quick trace: about 20 s

A hypercall of the engine does two kinds of work: the operations of the structures Xen's tmem is
made of (its locks, the bucket's red-black tree, the object's radix tree, the TLSF allocator,
the page descriptor, the two LRU lists, the frame list, the 4 KiB copy) and everything around
them (decoding and validating the op, finding the client and pool, return codes, statistics,
billing, the guard against running out of memory). This script times each structure operation
alone, on the engine's own classes, then adds up what the timed part of the trace needs of
them, counted from the engine's own statistics after one replay. That sum is a *lower bound*
on the engine's time per hypercall while those structures stay: it leaves out all the work
around them, and counts each page's allocation, list insertions, removals and frees once per
page life (a put that stores a new page pays for all of it; the get, flush or eviction that
ends the page pays only for its lookup and locks).

Printed: each operation's cost (ns, best of 5, less the cost of an empty loop), the counts taken
from the trace, the floor in µs per hypercall and the most hypercalls per second it allows, the
same with the checks the ABI and the documented rules add, and, for comparison, the engine's
measured speed and how many function calls it makes per hypercall.
"""
from __future__ import annotations

import argparse
import cProfile
import gc
import os
import platform
import pstats
import sys
import importlib.util
import time

import numpy as np

import tmemref
from tmemref import abi
from tmemref.core.host import copy_page_in, page_out_view, valid_fields
from tmemref.core.obj import Pgp
from tmemref.ds.dlist import ListHead, Head2, list_add_tail, list_del, list2_add_tail, list2_del
from tmemref.ds.radix import RadixTree
from tmemref.host.alloc import SIZEOF
from tmemref.host.locks import RWLock, SpinLock

_spec = importlib.util.spec_from_file_location(
    "tmemref_bench_trace", os.path.join(os.path.dirname(os.path.abspath(__file__)), "trace.py"))
tracegen = importlib.util.module_from_spec(_spec)
sys.modules[_spec.name] = tracegen
_spec.loader.exec_module(tracegen)

N = 20_000


def per_call(body, n=N, repeat=5) -> float:
    """ns per iteration of ``body(n)`` (a function looping ``n`` times), best of ``repeat``,
    less an empty loop's cost."""
    def empty(n):
        for _ in range(n):
            pass
    best = {}
    for name, fn in (("empty", empty), ("body", body)):
        t = float("inf")
        for _ in range(repeat):
            t0 = time.perf_counter()
            fn(n)
            t = min(t, time.perf_counter() - t0)
        best[name] = t
    return max(0.0, best["body"] - best["empty"]) / n * 1e9


def primitives(host, ops) -> dict:
    """ns per operation of each structure, on the replayed host's own pools and objects."""
    out = {}
    rw = RWLock("pool_rwlock", 1)
    spin = SpinLock("obj_spinlock", 2)

    def pair(take, give):
        def body(n):
            for _ in range(n):
                take()
                give()
        return body
    out["rwlock read + unlock"] = per_call(pair(rw.read_lock, rw.read_unlock))
    out["spinlock acquire + release"] = per_call(pair(spin.acquire, spin.release))
    out["spinlock trylock + release"] = per_call(pair(spin.trylock, spin.release))

    # the bucket's rb-tree, on the trace's own handles against the replayed host
    handles = [(host.clients[d].pools[op.pool_id], op.oid, op.index) for d, op in ops[:N]]
    found = [(p.find(o), i) for p, o, i in handles]

    def finds(n):
        for p, o, _ in handles[:n]:
            p.find(o)
    out["Pool.find (hash, rb-tree walk)"] = per_call(finds, len(handles))

    objs = [(o, i) for o, i in found if o is not None]

    def lookups(n):
        for o, i in objs[:n]:
            o.tree.lookup(i)
    out["RadixTree.lookup"] = per_call(lookups, len(objs))

    tree = RadixTree()
    idx = [i % 64 for i in range(N)]
    for i in range(64):
        tree.insert(i, i)

    def radix_pair(n):
        d, ins = tree.delete, tree.insert
        for i in idx[:n]:
            d(i)
            ins(i, i)
    out["RadixTree.delete + insert"] = per_call(radix_pair)

    pool = host.eph_mempool
    size = SIZEOF["pgp"]

    def tlsf_pair(n):
        a, f = pool.alloc, pool.free
        for _ in range(n):
            f(a(size))
    out["Tlsf alloc + free (pgp), with its lock"] = per_call(tlsf_pair)

    obj = objs[0][0]

    def pgp_new(n):
        for i in range(n):
            Pgp(obj, i)
    out["Pgp()"] = per_call(pgp_new)

    head, head2 = ListHead(), Head2()
    for _ in range(64):
        p = Pgp(obj, 0)
        list_add_tail(p, head)
        list2_add_tail(p, head2)
    node = Pgp(obj, 0)

    def lists(n):
        for _ in range(n):
            list_add_tail(node, head)
            list2_add_tail(node, head2)
            list_del(node)
            list2_del(node)
    out["2 list adds + 2 list dels"] = per_call(lists)

    mem = host.mem

    def frame_pair(n):
        take, give = mem.alloc_tmem_page, mem.free_tmem_page
        for _ in range(n):
            give(take())
    out["frame from + to tmem_page_list"] = per_call(frame_pair)

    page = tracegen.make_pages(1)[0]
    buf = bytearray(abi.PAGE_SIZE)
    f = mem.alloc_tmem_page()
    o = f << 12
    b = mem.bytes

    def copy_in(n):
        for _ in range(n):
            b[o:o + 4096] = page
    out["4 KiB copy in"] = per_call(copy_in)

    def copy_out(n):
        for _ in range(n):
            buf[:] = b[o:o + 4096]
    out["4 KiB copy out"] = per_call(copy_out)
    mem.free_tmem_page(f)

    # what the ABI and the documented rules add around the structures
    fields = [(op.cmd, op.pool_id, op.uuid, op.flags, op.arg1, op.oid, op.index, op.subop,
               op.cli_id, op.arg2) for _, op in ops[:N]]

    def validate(n):
        for fl in fields[:n]:
            valid_fields(*fl)
    out["valid_fields (every hypercall)"] = per_call(validate, len(fields))

    def page_in(n):
        for _ in range(n):
            copy_page_in(page)
    out["copy_page_in (puts)"] = per_call(page_in)

    def page_out(n):
        for _ in range(n):
            page_out_view(buf).release()
    out["page_out_view (gets)"] = per_call(page_out)

    def guard(n):
        g = mem.guard_pages
        for _ in range(n):
            g()
    out["the 1 MB guard's count (puts)"] = per_call(guard)
    doms = [(d, op.pool_id) for d, op in ops[:N]]
    domains = mem.domains

    def lookup(n):
        for d, p in doms[:n]:
            domains.get(d).client.pools[p]
    out["domain, client, pool lookup"] = per_call(lookup, len(doms))
    return out


COUNTERS = ("puts", "good_puts", "dup_puts_replaced", "gets", "found_gets", "flushs",
            "flushs_found", "flush_objs")


def stats(host) -> dict:
    """The pools' counters summed, and the host's evictions."""
    d = {k: sum(getattr(p, k) for p in host.every_pool()) for k in COUNTERS}
    d["evictions"] = host.evicted_pgs
    return d


def counts(before: dict, after: dict) -> dict:
    """What the timed part asked of the structures: the statistics' growth."""
    d = {k: after[k] - before[k] for k in before}
    d["new pages"] = d["good_puts"] - d["dup_puts_replaced"]
    return d


def call_counts(trace, head, body):
    """(all calls, calls to Python functions) per hypercall of ``body``, counted by cProfile
    on a fresh host warmed up with ``head``."""
    h = tracegen.setup_host(trace)
    for d, op in head:
        h.do_tmem_op(d, op)
    prof = cProfile.Profile()
    prof.enable()
    for d, op in body:
        h.do_tmem_op(d, op)
    prof.disable()
    st = pstats.Stats(prof)
    python = sum(v[1] for k, v in st.stats.items() if not k[0].startswith("~"))
    return st.total_calls / len(body), python / len(body)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="the quick trace of bench_ops")
    args = ap.parse_args(argv)
    cfg = (tracegen.TraceConfig(n_ops=80_000, warmup=40_000) if args.quick
           else tracegen.TraceConfig())
    print(f"tmemref {tmemref.__version__} floor — Python {platform.python_version()}, "
          f"numpy {np.__version__}, {os.cpu_count()} CPUs, {time.strftime('%Y-%m-%d')}"
          f"{' (quick)' if args.quick else ''}")
    trace = tracegen.make_trace(cfg)
    ops = tracegen.build_ops(trace)
    gc.collect()
    gc.freeze()
    head, body = ops[:trace.warmup], ops[trace.warmup:]

    # the engine itself, for comparison: best of 3, as bench_ops does
    best = float("inf")
    for _ in range(3):
        h = tracegen.setup_host(trace)
        for d, op in head:
            h.do_tmem_op(d, op)
        gc.collect()
        t0 = time.perf_counter()
        for d, op in body:
            h.do_tmem_op(d, op)
        best = min(best, time.perf_counter() - t0)
    engine_us = best / len(body) * 1e6

    # the counts: the same replay, statistics before and after the timed part
    h = tracegen.setup_host(trace)
    for d, op in head:
        h.do_tmem_op(d, op)
    before = stats(h)
    for d, op in body:
        h.do_tmem_op(d, op)
    c = counts(before, stats(h))
    calls = call_counts(trace, head, body)
    ns = primitives(h, body)

    print("\nstructure operations, ns each (best of 5, empty loop taken off):")
    for k, v in ns.items():
        print(f"  {v:7.0f}  {k}")
    n = len(body)
    found = c["found_gets"] + c["flushs_found"] + c["flush_objs"] + c["dup_puts_replaced"]
    every = 2 * ns["rwlock read + unlock"] + ns["Pool.find (hash, rb-tree walk)"]
    parts = {
        "every hypercall: tmem_rwlock and pool_rwlock (read), Pool.find":
            n * every,
        "every hypercall that finds its object: trylock + radix lookup":
            (found + c["new pages"]) * (ns["spinlock trylock + release"] + ns["RadixTree.lookup"]),
        "each new page's life: Pgp, TLSF, radix, lists, eph lock twice, frame, copy":
            c["new pages"] * (ns["Pgp()"] + ns["Tlsf alloc + free (pgp), with its lock"]
                              + ns["RadixTree.delete + insert"] + ns["2 list adds + 2 list dels"]
                              + 2 * ns["spinlock acquire + release"]
                              + ns["frame from + to tmem_page_list"] + ns["4 KiB copy in"]),
        "duplicate puts: copy in": c["dup_puts_replaced"] * ns["4 KiB copy in"],
        "get hits: copy out": c["found_gets"] * ns["4 KiB copy out"],
        "evictions: trylock of the victim's object":
            c["evictions"] * ns["spinlock trylock + release"],
    }
    print(f"\nthe timed part of the trace ({n:,} hypercalls), from the engine's statistics:")
    print("  " + ", ".join(f"{k} {v:,}" for k, v in c.items()))
    print("\nthe floor, µs per hypercall:")
    for k, v in parts.items():
        print(f"  {v / n / 1000:6.2f}  {k}")
    floor = sum(parts.values()) / n / 1000
    print(f"  {floor:6.2f}  total: at most {1e6 / floor:,.0f} hypercalls/s with these "
          f"structures and nothing else")
    abi_parts = {
        "every hypercall: valid_fields, domain/client/pool lookup":
            n * (ns["valid_fields (every hypercall)"] + ns["domain, client, pool lookup"]),
        "puts: copy_page_in, the guard's count":
            c["puts"] * (ns["copy_page_in (puts)"] + ns["the 1 MB guard's count (puts)"]),
        "gets: page_out_view": c["gets"] * ns["page_out_view (gets)"],
    }
    print("\nwhat the ABI and the documented rules add, µs per hypercall:")
    for k, v in abi_parts.items():
        print(f"  {v / n / 1000:6.2f}  {k}")
    floor2 = floor + sum(abi_parts.values()) / n / 1000
    print(f"  {floor2:6.2f}  total with the structures: at most {1e6 / floor2:,.0f} "
          f"hypercalls/s (no statistics, no return-code paths, no function calls between them)")
    print(f"\nthe engine on the same trace: {engine_us:.2f} µs per hypercall "
          f"({1e6 / engine_us:,.0f}/s), {engine_us / floor2:.2f}x the floor")
    print(f"  function calls per hypercall (cProfile, one more replay): {calls[0]:.1f}, of which "
          f"{calls[1]:.1f} to Python functions")


if __name__ == "__main__":
    main()
