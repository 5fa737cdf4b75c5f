"""Schedules and seconds per explorer scenario, with and without sleep sets. A script, not a test.

    python benchmarks/bench_explore.py              # K = 1, 2 both ways, PCT (about 1 minute)
    python benchmarks/bench_explore.py --k 1 2 3    # also K = 3 (minutes without sleep sets)
    python benchmarks/bench_explore.py --workers 2  # through a local process pool

For every scenario of :mod:`tmemref.sim.races`: the exhaustive search with at most K
preemptions, sleep sets on and off (schedules run, of which cut short, failing, verdict,
seconds), then 200 PCT runs (depth 3, seed 0). Inline (one process) unless ``--workers``.
Take the seconds with a grain of salt: one machine, other processes on it.
"""
from __future__ import annotations

import argparse
import os
import platform
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(__file__), os.pardir))

from tmemref.sim.explore import explore, pct  # noqa: E402
from tmemref.sim.races import SCENARIOS  # noqa: E402


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--k", type=int, nargs="*", default=[1, 2], help="preemption bounds")
    p.add_argument("--workers", type=int, default=1)
    p.add_argument("--pct", type=int, default=200, help="PCT runs (0: none)")
    a = p.parse_args()
    print(f"Python {platform.python_version()}, {os.cpu_count()} CPUs, workers {a.workers}, "
          f"{time.strftime('%Y-%m-%d')}")
    print(f"{'scenario':<17} {'search':<22} {'schedules':>9} {'cut':>5} {'failing':>7} "
          f"{'verdict':<10} {'seconds':>7}")
    for name in SCENARIOS:
        rows = [(f"K={k}, sleep sets", dict(preemptions=k, reduce=True)) for k in a.k]
        rows += [(f"K={k}, none", dict(preemptions=k, reduce=False)) for k in a.k]
        for label, kw in rows:
            r = explore(name, workers=a.workers, **kw)
            print(f"{name:<17} {label:<22} {r.schedules:>9} {r.pruned:>5} {r.failing:>7} "
                  f"{r.verdict:<10} {r.seconds:>7.2f}")
        if a.pct:
            r = pct(name, a.pct, workers=a.workers)
            print(f"{name:<17} {f'PCT x{a.pct}, depth 3':<22} {r.schedules:>9} {'':>5} "
                  f"{r.failing:>7} {r.verdict:<10} {r.seconds:>7.2f}")


if __name__ == "__main__":
    main()
