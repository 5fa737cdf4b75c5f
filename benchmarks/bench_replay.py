"""Replay speed: ``tmemref replay FILE`` against the engine in memory, on the same trace. A script.

    python benchmarks/bench_replay.py              # 10^6 hypercalls (a 2.7 GB trace file)
    python benchmarks/bench_replay.py --quick      # 10^5 hypercalls
    python benchmarks/bench_replay.py --ops N --dir /tmp

The trace is ``trace.py``'s (4 guests, ephemeral and persistent pools, Zipf popularity,
evictions), ``--ops`` hypercalls long, preceded by the lines that make the host, its domains
and their pools. Two figures:

1. **engine**: every hypercall prebuilt as a ``TmemOp`` (pages and get buffers included)
   and replayed through ``Host.do_tmem_op`` on a fresh host;
2. **replay**: the same trace written as protocol lines to a file, then
   ``tmemref.cli.replay`` of that file — reading, ``json.loads``, building each ``TmemOp``,
   decoding puts' pages and encoding gets' pages (base64), writing every answer (to
   ``/dev/null``) — exactly what ``tmemref replay FILE > /dev/null`` does.

Each is the best of ``--repeat`` (default 2) runs, ``time.perf_counter``, with the CPU time of
that run beside it (``time.process_time``: when it is well below the wall time, other
processes had the CPU and the figure is not worth keeping). The line ``replay/engine speed
ratio N.NN`` is replay ops/s over engine ops/s, wall time (the aim: at least 0.50); the CPU
ratio follows it. Writing the file is not timed. Progress bars appear on a terminal only.
"""
from __future__ import annotations

import argparse
import gc
import importlib.util
import json
import os
import platform
import sys
import tempfile
import time

import tmemref
from tmemref import abi
from tmemref.cli import replay, request_line
from tmemref.progress import progress

# benchmarks/trace.py would shadow the standard library's ``trace``: load it by path.
_spec = importlib.util.spec_from_file_location(
    "tmemref_bench_trace", os.path.join(os.path.dirname(os.path.abspath(__file__)), "trace.py"))
tracegen = importlib.util.module_from_spec(_spec)
sys.modules[_spec.name] = tracegen
_spec.loader.exec_module(tracegen)


def setup_lines(trace) -> list:
    """The protocol lines that make ``trace``'s host, domains and pools (as ``setup_host``)."""
    lines = [json.dumps({"op": "host", "pages": trace.host_pages})]
    for domid, pages, max_pages in trace.domains:
        lines.append(json.dumps({"op": "create_domain", "domid": domid, "pages": pages,
                                 "max_pages": max_pages}))
    for domid, persist in trace.pools:
        lines.append(json.dumps({"dom": domid, "cmd": "NEW_POOL",
                                 "flags": abi.pool_flags(persist=persist)}))
    return lines


def write_trace(path: str, trace, ops) -> int:
    """Write the setup lines and one line per op; returns the file's size in bytes."""
    with open(path, "w", encoding="utf-8") as f:
        for line in setup_lines(trace):
            f.write(line + "\n")
        for domid, op in progress(ops, desc="write", unit=" lines"):
            f.write(request_line(domid, op) + "\n")
    return os.path.getsize(path)


def time_engine(trace, ops) -> tuple:
    """(wall, CPU seconds) of one in-memory replay on a fresh host."""
    host = tracegen.setup_host(trace)
    do = host.do_tmem_op
    gc.collect()
    t0, c0 = time.perf_counter(), time.process_time()
    for domid, op in progress(ops, desc="engine", unit=" ops"):
        do(domid, op)
    return time.perf_counter() - t0, time.process_time() - c0


def time_replay(path: str) -> tuple:
    """(wall, CPU seconds, session) of one ``replay`` of the file, answers to /dev/null."""
    gc.collect()
    with open(path, encoding="utf-8") as f, open(os.devnull, "w") as out:
        t0, c0 = time.perf_counter(), time.process_time()
        session = replay(progress(f, desc="replay", unit=" lines"), out)
        return time.perf_counter() - t0, time.process_time() - c0, session


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--ops", type=int, default=1_000_000, help="hypercalls in the trace")
    ap.add_argument("--quick", action="store_true", help="10^5 hypercalls")
    ap.add_argument("--repeat", type=int, default=2, help="best of N runs (2)")
    ap.add_argument("--dir", default=None, help="where to write the trace file (a temp dir)")
    args = ap.parse_args(argv)
    n = 100_000 if args.quick else args.ops
    print(f"python {platform.python_version()}, tmemref {tmemref.__version__}, "
          f"{os.cpu_count()} CPUs, {time.strftime('%Y-%m-%d')}; {n:,} hypercalls")
    trace = tracegen.make_trace(tracegen.TraceConfig(n_ops=n, warmup=0))
    ops = tracegen.build_ops(trace)
    gc.freeze()
    with tempfile.TemporaryDirectory(dir=args.dir) as tmp:
        path = os.path.join(tmp, "trace.jsonl")
        size = write_trace(path, trace, ops)
        print(f"trace file: {size / 1e6:,.0f} MB, {n + len(setup_lines(trace)):,} lines")
        engine, replayed = (0, 0), (0, 0)
        for _ in range(args.repeat):               # interleaved: both see the same machine
            e = time_engine(trace, ops)
            engine = e if not engine[0] or e[0] < engine[0] else engine
            wall, cpu, session = time_replay(path)
            replayed = (wall, cpu) if not replayed[0] or wall < replayed[0] else replayed
        session.host.check()
    for name, (wall, cpu) in (("engine in memory", engine), ("replay of a file", replayed)):
        busy = f"  [wall/cpu {wall / cpu:.2f}: the machine was busy]" if wall > 1.2 * cpu else ""
        print(f"{name}  {n / wall:12,.0f} ops/s  ({1e6 * wall / n:5.2f} µs/op wall, "
              f"{1e6 * cpu / n:5.2f} µs/op CPU){busy}")
    print(f"replay/engine speed ratio {engine[0] / replayed[0]:.2f} (aim: at least 0.50); "
          f"by CPU time {engine[1] / replayed[1]:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
