"""Xen: tmem's lock protocol, put to the test — an explorer over the schedules of a scenario.

Each run of :mod:`.sched` is named by its schedule; this module chooses which schedules to run.

* :func:`explore` — **exhaustive, preemption-bounded** depth-first search (CHESS: Musuvathi and
  Qadeer, "Iterative context bounding for systematic testing of multithreaded programs", PLDI
  2007): every schedule with at most ``preemptions`` preemptions (switches away from a thread
  that could have gone on; blocking, finishing and failed trylocks hand over for free).
  With ``reduce=True`` it adds **sleep sets** (Godefroid, "Partial-order methods for the
  verification of concurrent systems", 1996), a partial-order reduction: once the branch
  "thread *t* runs its next step here" is explored, the sibling branches keep *t* asleep —
  never chosen — until some thread takes a step that does not commute with *t*'s step, and a
  branch in which every runnable thread is asleep is cut short (``pruned``): what follows
  would only reorder steps explored already. Whether two steps commute is read from their
  *footprints* (:func:`footprint`, :func:`dependent`): the lock each operates on (two reads of
  one rwlock commute; operations on different locks commute) and the counter a yield point
  writes or the step before it read. Footprints are observed in the run that explored the
  branch, so lock names must be stable across runs (``Scheduler.lock_key``). Two caveats:
  the reduction trusts the locking discipline (shared state is touched under a
  held lock, or next to a declared yield point), so the verdict of every shipped scenario is
  also checked with ``reduce=False``; and with a preemption bound, commuting a sleeper's step
  earlier can turn a free switch (a thread blocked on a lock the sleeper holds) into a
  preemption the bound forbids (Coons, Musuvathi and McKinley, "Bounded partial-order
  reduction", OOPSLA 2013) — so a sleeper whose step touches a lock some thread is blocked on
  is woken. ``benchmarks/bench_explore.py`` measures schedules and seconds both ways.
* :func:`pct` — **randomised**, PCT (Burckhardt, Kothari, Musuvathi and Nagarakatte, "A
  randomized scheduler with probabilistic guarantees of finding bugs", ASPLOS 2010): random
  thread priorities, ``depth - 1`` random points where the running thread drops to the lowest
  priority; the highest-priority runnable thread always runs. A bug of depth *d* is found by
  each run with probability at least 1/(n k^(d-1)) for n threads and k steps.
* :func:`replay` — one schedule, with its trace.

Parallel and deterministic: the search tree is split into subtrees by schedule prefixes (the
first ``split`` prefixes of a breadth-first expansion, a number that does not depend on the
number of workers), each explored by one task through any ``concurrent.futures.Executor``
(default: a local process pool; ``workers=1`` runs inline; a ``dask.distributed`` client's
``get_executor()`` spreads it over a cluster). The results are merged in prefix order, and the
failure reported is the shortest found (fewest steps, then fewest decisions, then the smallest
choices), so the verdict, the counts and the schedule printed are the same whatever the number
of workers.

``python -m tmemref explore SCENARIO [--preemptions K] [--random N] [--workers W] [--replay S]``
runs :func:`main`; its last line gives schedules, seconds and the verdict; exit status 1 when it
found a failure (the schedule is printed for ``--replay``), 0 when none within the bound.
"""
from __future__ import annotations

import argparse
import os
import random
import sys
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Optional

from .sched import READ_OPS, Failure, Run, Scheduler, decode, run

__all__ = ["Result", "explore", "pct", "replay", "main"]


@dataclass(slots=True)
class Result:
    """What an exploration found."""
    scenario: str                 # scenario name
    mode: str                     # how it explored, in words
    schedules: int = 0            # runs executed (pruned ones included)
    pruned: int = 0               # runs cut by the sleep sets
    failing: int = 0              # runs that failed
    seconds: float = 0.0          # wall-clock time
    failure: Optional[Failure] = None        # the shortest failure found
    kinds: dict = field(default_factory=dict)  # failure kind -> runs
    max_steps: int = 0            # longest run, in steps

    @property
    def verdict(self) -> str:
        """The kind of the failure found, or ``"none"``."""
        return self.failure.kind if self.failure else "none"

    def add(self, other: "Result") -> None:
        self.schedules += other.schedules
        self.pruned += other.pruned
        self.failing += other.failing
        self.max_steps = max(self.max_steps, other.max_steps)
        for k, n in other.kinds.items():
            self.kinds[k] = self.kinds.get(k, 0) + n
        if other.failure and (self.failure is None or other.failure.key() < self.failure.key()):
            self.failure = other.failure

    def count(self, r: Run) -> None:
        self.add(Result(self.scenario, self.mode, 1, int(r.pruned), int(r.failure is not None),
                        0.0, r.failure, {r.failure.kind: 1} if r.failure else {}, r.steps))

    def summary(self) -> str:
        """One line: schedules, seconds, verdict."""
        within = "" if self.failure else f" within {self.mode}"
        cut = f" ({self.pruned} cut short by sleep sets)" if self.pruned else ""
        return (f"{self.schedules} schedule{'s' * (self.schedules != 1)}{cut}, "
                f"{self.seconds:.2f} s, verdict: {self.verdict}{within}")


# --- exhaustive search ---------------------------------------------------------------------------
class _Dfs:
    """One run of the search: replay ``prefix`` (its last choice is the branch taken here), then
    go on by default — the current thread, else the lowest runnable — recording each decision
    for the siblings. ``sleep``: ``{thread: footprint}`` asleep at the branch (sleep sets)."""

    def __init__(self, prefix: tuple, sleep, bound: int, reduce: bool):
        self.prefix, self.sleep0, self.bound, self.reduce = prefix, dict(sleep), bound, reduce
        self.sleep = {} if reduce and not prefix else None    # active after the branch
        self.points: list = []    # [index, cands, chosen, preemptions, sleep, current, footprint]
        self.last = None          # (thread, its pending op, its point) of the step just run

    def choose(self, s, cands):
        if self.last is not None:
            self._observed(s)
        i, n = len(s.choices), len(self.prefix)
        point = None
        if i < n:
            c = cands[0] if len(cands) == 1 else self.prefix[i]
            if i == n - 1 and len(cands) > 1 and self.reduce:
                self.sleep = dict(self.sleep0)
        else:
            if self.sleep:
                self._wake_for_blocked(s)
            sleep = self.sleep or {}
            awake = [x for x in cands if x not in sleep]
            if not awake:
                return None                               # all covered by explored siblings
            cur = s.current
            c = cur if cur in awake else awake[0]
            if cur in cands and c != cur and s.preemptions >= self.bound:
                return None
            if len(cands) > 1:
                point = [i, cands, c, s.preemptions, dict(sleep), cur, None]
                self.points.append(point)
        self.last = (c, s.pending(c), point)
        return c

    def _observed(self, s) -> None:
        """The step just run is over: note what it touched, wake the sleepers it conflicts with."""
        tid, start, point = self.last
        if not self.reduce or point is None and not self.sleep:
            return
        fp = footprint(s, start, s.pending(tid))
        if point is not None:
            point[6] = fp
        if self.sleep:
            self.sleep = {z: f for z, f in self.sleep.items() if not dependent(f, fp)}

    def _wake_for_blocked(self, s) -> None:
        """Wake a sleeper whose step touches a lock another thread is blocked on. Its step may
        be what lets that thread go on; commuted earlier, it would turn this free switch (a
        blocked thread hands over) into a preemption, which the bound may forbid."""
        for b in s.blocked():
            waits = footprint(s, s.pending(b), None)
            self.sleep = {z: f for z, f in self.sleep.items() if not dependent(f, waits)}

    def children(self, choices: tuple) -> list:
        """The sibling branches this run opened, in order: ``(prefix, sleep set)``. A sibling
        inherits the sleep set of its point plus the branch explored here (when its footprint
        is known), so that branch's steps are not explored again in another order."""
        kids = []
        for i, cands, chosen, pre, sleep, cur, fp in self.points:
            if self.reduce and fp is not None:
                sleep = {**sleep, chosen: fp}
            for c in cands:
                if c == chosen or c in sleep:
                    continue
                if pre + (cur in cands and c != cur) > self.bound:
                    continue
                kids.append((choices[:i] + (c,),
                             tuple(sorted(sleep.items())) if self.reduce else ()))
        return kids


def footprint(s, start: tuple, end) -> frozenset:
    """What one step touched: the lock of its operation (``("L", name, label, read?)``, see
    ``Scheduler.lock_key``), the counter written after a yield point (``("w", label)``), the
    counter read before the yield point it stopped at (``("r", label)``). Code between points
    is assumed to touch other shared state only under locks its thread holds. O(1)."""
    op, what = start
    fp = []
    if op == "yield":
        fp.append(("w", what))
    elif op != "op":
        fp.append(("L", *s.lock_key(what), op in READ_OPS))
    if end is not None and end[0] == "yield":
        fp.append(("r", end[1]))
    return frozenset(fp)


def dependent(f: frozenset, g: frozenset) -> bool:
    """Do two steps' footprints conflict? The same lock (a label missing on either side
    matches any lock of that name) unless both only read it; a counter written by one and read
    or written by the other. O(|f| |g|)."""
    for a in f:
        for b in g:
            if a[0] == "L" and b[0] == "L":
                if a[1] == b[1] and (a[2] is None or b[2] is None or a[2] == b[2]) \
                        and not (a[3] and b[3]):
                    return True
            elif a[0] != "L" and b[0] != "L" and a[1] == b[1] and "w" in (a[0], b[0]):
                return True
    return False


def _expand(scenario, item, bound, reduce):
    strategy = _Dfs(item[0], item[1], bound, reduce)
    r = Scheduler(scenario, strategy, trace=False).run()
    return r, strategy.children(r.choices)


def _subtree(scenario, item, bound: int, reduce: bool) -> Result:
    """Explore every schedule below ``item`` (depth first); a task for an executor."""
    out = Result(scenario.name, "")
    stack = [item]
    while stack:
        r, kids = _expand(scenario, stack.pop(), bound, reduce)
        out.count(r)
        stack.extend(reversed(kids))
    return out


def explore(scenario, preemptions: int = 2, *, reduce: bool = True, executor=None,
            workers: Optional[int] = None, split: int = 64, progress=None) -> Result:
    """Every schedule of ``scenario`` with at most ``preemptions`` preemptions (sleep sets cut
    equivalent ones when ``reduce``). ``executor``: any ``concurrent.futures.Executor``;
    otherwise ``workers`` processes (default: one per CPU; 1 runs inline). ``progress(n)`` is
    called as runs complete. Cost: the number of schedules, O((steps × threads)^preemptions),
    times one run each."""
    scenario = _scenario(scenario)
    t0 = time.perf_counter()
    mode = f"{preemptions} preemptions" + ("" if reduce else ", no reduction")
    res = Result(scenario.name, mode)
    frontier = deque([((), ())])
    while frontier and len(frontier) < split:          # breadth first, inline
        r, kids = _expand(scenario, frontier.popleft(), preemptions, reduce)
        res.count(r)
        frontier.extend(kids)
        if progress:
            progress(1)
    tasks = [(scenario, item, preemptions, reduce) for item in frontier]
    for part in _map(_subtree, tasks, executor, workers, progress):
        res.add(part)
    res.seconds = time.perf_counter() - t0
    return res


# --- randomised search (PCT) ---------------------------------------------------------------------
class _Pct:
    """PCT's priorities for one run: distinct random priorities >= depth, and depth-1 change
    points among the first ``k`` steps at which the thread about to run drops to priority j."""

    def __init__(self, threads: int, depth: int, k: int, rng: random.Random):
        prio = list(range(depth, depth + threads))
        rng.shuffle(prio)
        self.prio = prio
        points = rng.sample(range(1, max(k, depth) + 1), depth - 1)
        self.change = {step: j + 1 for j, step in enumerate(points)}

    def choose(self, s, cands):
        best = max(cands, key=self.prio.__getitem__)
        j = self.change.get(s.steps + 1)
        if j is not None:
            self.prio[best] = j                      # the running thread drops below the rest
            best = max(cands, key=self.prio.__getitem__)
        return best


def _pct_chunk(scenario, seed: int, first: int, count: int, depth: int, k: int,
               threads: int) -> Result:
    out = Result(scenario.name, "")
    for i in range(first, first + count):
        rng = random.Random(seed * 1_000_003 + i)
        out.count(Scheduler(scenario, _Pct(threads, depth, k, rng), trace=False).run())
    return out


def pct(scenario, runs: int = 1000, *, depth: int = 3, seed: int = 0, executor=None,
        workers: Optional[int] = None, chunk: int = 25, progress=None) -> Result:
    """``runs`` PCT runs of ``scenario`` (bug depth ``depth``, run i seeded by ``(seed, i)``);
    executors as in :func:`explore`. The number of steps k is taken from the default schedule.
    Cost: ``runs`` runs."""
    scenario = _scenario(scenario)
    t0 = time.perf_counter()
    first = run(scenario, trace=False)
    k, threads = first.steps, len(first.names)
    res = Result(scenario.name, f"{runs} PCT runs (depth {depth}, seed {seed})")
    tasks = [(scenario, seed, i, min(chunk, runs - i), depth, k, threads)
             for i in range(0, runs, chunk)]
    for part in _map(_pct_chunk, tasks, executor, workers, progress):
        res.add(part)
    res.seconds = time.perf_counter() - t0
    return res


def replay(scenario, schedule) -> Run:
    """Run one schedule (text or tuple) of ``scenario`` and return the :class:`~.sched.Run`,
    trace included. O(steps)."""
    return run(_scenario(scenario), schedule)


# --- plumbing ------------------------------------------------------------------------------------
def _scenario(scenario):
    if isinstance(scenario, str):
        from .races import SCENARIOS
        if scenario not in SCENARIOS:
            raise ValueError(f"no scenario {scenario!r}; known: {', '.join(SCENARIOS)}")
        return SCENARIOS[scenario]
    return scenario


def _map(fn, tasks, executor, workers, progress):
    """``fn(*task)`` for every task, results in task order, through ``executor`` or a local
    process pool of ``workers`` (1: inline)."""
    if executor is None and (workers == 1 or len(tasks) <= 1):
        out = []
        for t in tasks:
            out.append(fn(*t))
            if progress:
                progress(out[-1].schedules)
        return out
    own = executor is None
    if own:
        from concurrent.futures import ProcessPoolExecutor
        executor = ProcessPoolExecutor(workers or os.cpu_count())
    try:
        from concurrent.futures import as_completed
        futures = [executor.submit(fn, *t) for t in tasks]
        if progress:
            for f in as_completed(futures):
                progress(f.result().schedules)
        return [f.result() for f in futures]
    finally:
        if own:
            executor.shutdown()


def main(argv=None) -> int:
    """The command line: ``explore SCENARIO [--preemptions K] [--random N] [--workers W]
    [--replay S] [--no-reduction] [--depth D] [--seed X]``. Returns the exit status."""
    from .races import SCENARIOS
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["explore"]:
        argv = argv[1:]
    p = argparse.ArgumentParser(prog="python -m tmemref explore",
                                description="Explore the thread interleavings of a scenario.")
    p.add_argument("scenario", choices=list(SCENARIOS))
    p.add_argument("--preemptions", type=int, default=2, metavar="K",
                   help="exhaustive search with at most K preemptions (default 2)")
    p.add_argument("--random", type=int, metavar="N", help="N randomised (PCT) runs instead")
    p.add_argument("--depth", type=int, default=3, help="PCT bug depth (default 3)")
    p.add_argument("--seed", type=int, default=0, help="PCT seed (default 0)")
    p.add_argument("--workers", type=int, metavar="W", help="processes (default: CPUs; 1 inline)")
    p.add_argument("--replay", metavar="S", help="run this one schedule and print its steps")
    p.add_argument("--no-reduction", action="store_true", help="no sleep sets")
    a = p.parse_args(argv)
    scenario = SCENARIOS[a.scenario]
    print(f"{scenario.name}: {scenario.doc.splitlines()[0]}")
    if a.replay is not None:
        try:
            schedule = decode(a.replay)
        except ValueError as e:
            p.error(str(e))
        t0 = time.perf_counter()
        r = replay(scenario, schedule)
        print(r.format_trace())
        if r.failure:
            print(r.failure)
        res = Result(scenario.name, "the schedule given")
        res.count(r)
        res.seconds = time.perf_counter() - t0
        print(res.summary())
        return 1 if r.failure else 0
    bar = None
    if sys.stderr.isatty():
        from tqdm import tqdm
        bar = tqdm(unit=" schedules", file=sys.stderr, leave=False)
    try:
        if a.random:
            res = pct(scenario, a.random, depth=a.depth, seed=a.seed, workers=a.workers,
                      progress=bar.update if bar is not None else None)
        else:
            res = explore(scenario, a.preemptions, reduce=not a.no_reduction,
                          workers=a.workers, progress=bar.update if bar is not None else None)
    finally:
        if bar is not None:
            bar.close()
    if res.failure:
        f = res.failure
        kinds = ", ".join(f"{k} {n}" for k, n in sorted(res.kinds.items()))
        print(f"failing schedules: {res.failing} ({kinds}); the shortest ({f.steps} steps):")
        print(f"  {f}")
        print(f"  replay: python -m tmemref explore {scenario.name} --replay {f.schedule}")
    print(res.summary())
    return 1 if res.failure else 0


if __name__ == "__main__":
    sys.exit(main())
