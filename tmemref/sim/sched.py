"""Xen: tmem on several physical CPUs at once — a deterministic scheduler for its real code.

Tmem's hypercalls run concurrently on many CPUs, guarded by the locks of
:mod:`tmemref.host.locks`. Testing that with free-running threads finds a race only by luck.
This scheduler runs the *real* engine code in several real threads but lets exactly one run at
a time, and switches only at *scheduling points*: every lock operation, every
:func:`~tmemref.host.locks.yield_point` the engine declares (the non-atomic counter updates),
and the start of each operation of a thread's program. At each point the thread that would run
next is chosen by a *strategy*; the list of choices made where more than one thread could run
is the **schedule**, which names the interleaving exactly: replaying it runs the same steps.
The approach is CHESS's (Musuvathi et al., "Finding and reproducing Heisenbugs in concurrent
programs", OSDI 2008); Rust's loom and shuttle and .NET's Coyote work the same way.

How a step works: the running thread reaches a point, records the operation it is about to do
(its *pending* operation) and asks the strategy who runs next among the threads whose pending
operation can proceed (a blocking acquire of a held lock cannot). The chosen thread performs
its operation on the scheduler's model of the locks (the real ``threading`` locks are not
used while a scheduler is installed) and runs on to its next point.

* **Fairness** (CHESS's rule for spin loops): a failed trylock is a yield; the thread that
  failed is not chosen again while some other runnable thread has not run since, so a retry
  loop cannot starve the lock's holder (even one that becomes runnable only when the spinning
  thread drops a lock it was waiting for).
* **Preemption**: switching away from a thread that could have gone on. Blocking, finishing and
  yielding hand over for free; strategies count and bound preemptions.

What a run detects (:class:`Failure` ``kind``):

1. ``deadlock`` — live threads remain and none can run; the wait-for cycle is reported with
   lock and thread names (``Failure.cycle``);
2. ``livelock`` — no thread completed an operation within ``Scenario.livelock_steps`` steps
   (the failed trylocks of that stretch are reported), or the run exceeded ``max_steps``;
3. ``invariant`` — the world's ``check()`` failed at a quiescent point (a release that left no
   lock held by anyone) or at the end;
4. ``lock-order`` — the lock-order checker (on unless ``Scenario.check_order`` is False) raised
   :class:`~tmemref.host.locks.LockOrderError` in a thread;
5. ``exception`` — any other exception escaped an operation (the locks still held are named);
6. ``leak`` — a thread finished its program holding a lock;
7. whatever the world's ``final(results)`` raises as a :class:`Finding` (e.g. ``drift``);
8. ``stuck`` — a thread blocked outside the scheduler's control (a bug in the harness, or in
   code using a lock the scheduler does not see); ``mismatch`` — a replayed schedule named a
   thread that could not run there.

>>> from tmemref.host.locks import SpinLock
>>> a, b = SpinLock("a", 1), SpinLock("b", 1)
>>> def ab():
...     with a, b: pass
>>> def ba():
...     with b, a: pass
>>> deadly = Scenario("ab-ba", lambda: World((("t0", (("ab", ab),)), ("t1", (("ba", ba),)))))
>>> run(deadly).failure is None                     # default schedule: t0 runs alone first
True
>>> f = run(deadly, "abab").failure                 # t0 takes a, t1 takes b
>>> f.kind, [(t, w, h) for t, w, h in f.cycle]
('deadlock', [('t0', 'b#1', 't1'), ('t1', 'a#0', 't0')])
"""
from __future__ import annotations

import re
import sys
import threading
import traceback
from dataclasses import dataclass, field
from typing import Callable, Optional

from ..errors import InvariantError
from ..host import locks

__all__ = ["Scenario", "World", "Finding", "Failure", "Run", "Scheduler", "ScheduleMismatch",
           "run", "encode", "decode", "LOCK_OPS", "READ_OPS"]

BLOCKING = frozenset(("acquire", "read_lock", "write_lock"))
TRYLOCKS = frozenset(("trylock", "read_trylock", "write_trylock"))
RELEASES = frozenset(("release", "read_unlock", "write_unlock"))
READ_OPS = frozenset(("read_lock", "read_trylock", "read_unlock"))
LOCK_OPS = BLOCKING | TRYLOCKS | RELEASES

_RUN_LOCK = threading.Lock()        # one simulation per process at a time (locks._sched is global)


class Finding(Exception):
    """Raised by a world's ``final`` to report what it found, e.g. ``Finding("drift", ...)``."""

    def __init__(self, kind: str, message: str):
        super().__init__(message)
        self.kind = kind


class ScheduleMismatch(Exception):
    """A replayed schedule chose a thread that cannot run at that point."""


@dataclass(frozen=True, slots=True)
class World:
    """One run's program: threads and checks, built fresh for every run.

    ``threads``: ``((name, ((label, fn), ...)), ...)`` — each thread calls its ``fn()`` in order
    (each is an *operation*: its completion is progress). ``check()``: invariants, called at
    quiescent points and at the end (raise :class:`~tmemref.errors.InvariantError`).
    ``final(results)``: after a clean run, with ``results[tid]`` the list of return values;
    raises :class:`Finding`. ``label(lock)``: a display name, or None for ``name#k``.
    """
    threads: tuple                           # ((name, ((label, fn), ...)), ...)
    check: Optional[Callable] = None         # invariants; None: nothing to check
    final: Optional[Callable] = None         # final(results), raises Finding; None: none
    label: Optional[Callable] = None         # label(lock) -> str or None; None: name#k


@dataclass(frozen=True, slots=True)
class Scenario:
    """A named, rebuildable concurrent program: ``build()`` returns a fresh :class:`World`.

    ``livelock_steps``: steps without any completed operation that count as a livelock;
    ``livelock_spins``: failed trylocks without any completed operation that count as one
    (None: no such bound) — a measure that does not grow with the locks a healthy operation
    takes; ``max_steps``: a hard bound on a run; ``check_order``: False runs without the
    lock-order checker, so that a deadlock it would have predicted can happen. Module-level
    functions keep it picklable (explorers ship scenarios to worker processes)."""
    name: str                     # what the command line calls it
    build: Callable               # () -> World, a fresh one each call
    doc: str = ""                 # one line for people
    livelock_steps: int = 400     # steps without a completed operation = livelock
    livelock_spins: Optional[int] = None   # failed trylocks without one = livelock
    max_steps: int = 20000        # longest run allowed
    check_order: bool = True      # blocking acquires checked against the lock order


@dataclass(slots=True)
class Failure:
    """What went wrong in one run, and the schedule that makes it happen."""
    kind: str                     # deadlock, livelock, invariant, lock-order, exception, leak, ...
    message: str                  # for people
    choices: tuple                # the schedule (thread ids chosen at each decision)
    steps: int                    # steps executed when it was detected
    cycle: tuple = ()             # deadlock: ((thread, lock it waits for, holder), ...)

    @property
    def schedule(self) -> str:
        """The schedule as a string (:func:`encode`), for ``--replay``."""
        return encode(self.choices)

    def key(self) -> tuple:
        """Order of preference: fewer steps, then fewer decisions, then smaller choices."""
        return (self.steps, len(self.choices), self.choices)

    def __str__(self):
        return f"{self.kind}: {self.message}"


@dataclass(slots=True)
class Run:
    """The outcome of one run: ``failure`` (None if clean), the schedule, what happened."""
    failure: Optional[Failure]    # None: a clean run
    choices: tuple                # decisions made (the schedule)
    steps: int                    # scheduling points executed
    preemptions: int              # switches away from a thread that could have gone on
    pruned: bool                  # the strategy stopped the run (nothing new below)
    trace: list = field(default_factory=list)    # (step, thread, op, what, result); op is a
    #   lock operation, "yield", "op" (an operation starts) or "done" (it returned result)
    results: dict = field(default_factory=dict)  # thread id -> return values of its operations
    names: tuple = ()             # thread names

    def format_trace(self, last: Optional[int] = None) -> str:
        """The steps as text, one per line: ``step thread op what -> result``."""
        rows = self.trace if last is None else self.trace[-last:]
        return "\n".join(f"{s:5d} {self.names[t]:>12} {op:<13} {what}"
                         + ("" if res is None else f" -> {res}") for s, t, op, what, res in rows)


def encode(choices) -> str:
    """Schedule text: a thread letter (a = thread 0) per decision, runs written ``a5`` for
    ``aaaaa``; ``-`` for no decision. O(len).

    >>> encode((0, 0, 0, 1, 0)), decode("a3ba")
    ('a3ba', (0, 0, 0, 1, 0))
    """
    out, i, n = [], 0, len(choices)
    while i < n:
        j = i
        while j < n and choices[j] == choices[i]:
            j += 1
        out.append(chr(97 + choices[i]) + (str(j - i) if j - i > 1 else ""))
        i = j
    return "".join(out) or "-"


def decode(text: str) -> tuple:
    """The inverse of :func:`encode`; ``ValueError`` on anything else. O(len)."""
    text = text.strip()
    if text == "-":
        return ()
    if not re.fullmatch(r"(?:[a-z]\d*)+", text):
        raise ValueError(f"not a schedule: {text!r} (letters a-z, each optionally followed by a "
                         "count, e.g. 'a3ba'; '-' for none)")
    return tuple(ord(c) - 97 for c, k in re.findall(r"([a-z])(\d*)", text)
                 for _ in range(int(k) if k else 1))


class _Abort(BaseException):
    """Unwinds a simulated thread when its run is over (not an Exception: the engine's handlers
    must not catch it)."""


class _Lock:
    __slots__ = ("writer", "readers")

    def __init__(self):
        self.writer = None        # thread id holding it exclusively (spinlock or write), or None
        self.readers = {}         # thread id -> read holds


class _Cpu:
    """One simulated CPU: a real thread running one program, parked while others run."""
    __slots__ = ("tid", "name", "ops", "go", "thread", "pending", "done", "parked",
                 "last_run", "yielded_at", "results")

    def __init__(self, tid, name, ops):
        self.tid, self.name, self.ops = tid, name, tuple(ops)
        self.go = threading.Lock()        # released to let this thread run
        self.go.acquire()
        self.thread = None
        self.pending = ("op", self.ops[0][0]) if self.ops else None
        self.done = not self.ops
        self.parked = True
        self.last_run = -1                # step at which it last ran
        self.yielded_at = None            # step of its last failed trylock
        self.results: list = []


class _Default:
    """Run the current thread on while it can; then the lowest-numbered one."""

    def __init__(self, choices=()):
        self.choices = tuple(choices)

    def choose(self, sched, cands):
        if len(cands) > 1:
            i = len(sched.choices)
            if i < len(self.choices):
                c = self.choices[i]
                if c not in cands:
                    raise ScheduleMismatch(
                        f"decision {i}: thread {chr(97 + c)} cannot run here (runnable: "
                        f"{', '.join(chr(97 + x) for x in cands)})")
                return c
        return sched.current if sched.current in cands else cands[0]


class Scheduler:
    """Runs one :class:`World` under a strategy; :meth:`run` returns a :class:`Run`.

    A strategy has ``choose(sched, cands) -> thread id`` (or None to stop the run as pruned),
    called at every step with the runnable thread ids (after fairness); it may read
    ``sched.current`` (who ran last), ``sched.choices`` (decisions so far), ``sched.steps``,
    ``sched.preemptions``, ``sched.pending(tid)`` and ``sched.blocked()``. Cost per step:
    O(threads); ``check_model=True`` adds :meth:`check` after every lock operation.

    Invariants of the lock model (:meth:`check`):

    1. no lock is held for writing and for reading at once; read holds are positive;
    2. ``nheld`` is the number of holds of all locks by all threads;
    3. every holder is a thread that has not finished;
    4. a thread's pending operation is None exactly when it has finished;
    5. ``preemptions <= len(choices) <= steps``.
    """

    def __init__(self, scenario: Scenario, strategy=None, *, trace: bool = True,
                 stuck_seconds: float = 60.0, check_model: bool = False):
        self.scenario = scenario
        self.strategy = strategy or _Default()
        self.keep_trace = trace
        self.stuck_seconds = stuck_seconds
        self.check_model = check_model

    def check(self) -> None:
        """Verify invariants 1-5; raises :class:`~tmemref.errors.InvariantError`. O(locks)."""
        holds = 0
        for lock, st in self.state.items():
            if st.writer is not None and st.readers or any(n <= 0 for n in st.readers.values()):
                raise InvariantError(f"scheduler invariant 1: {self._name(lock)} writer "
                                     f"{st.writer}, readers {st.readers}")
            for tid in ([st.writer] if st.writer is not None else []) + list(st.readers):
                if self.cpus[tid].done:
                    raise InvariantError(f"scheduler invariant 3: {self._name(lock)} held by "
                                         f"finished thread {self.cpus[tid].name}")
            holds += (st.writer is not None) + sum(st.readers.values())
        if holds != self.nheld:
            raise InvariantError(f"scheduler invariant 2: nheld {self.nheld}, holds {holds}")
        for c in self.cpus:
            if (c.pending is None) != c.done:
                raise InvariantError(f"scheduler invariant 4: {c.name} pending {c.pending}, "
                                     f"done {c.done}")
        if not self.preemptions <= len(self.choices) <= self.steps:
            raise InvariantError(f"scheduler invariant 5: {self.preemptions} preemptions, "
                                 f"{len(self.choices)} decisions, {self.steps} steps")

    # --- the run --------------------------------------------------------------------------------
    def run(self) -> Run:
        with _RUN_LOCK:
            return self._run()

    def _run(self) -> Run:
        world = self.world = self.scenario.build()
        self.cpus = [_Cpu(i, name, ops) for i, (name, ops) in enumerate(world.threads)]
        self.state: dict = {}             # lock -> _Lock
        self.names: dict = {}             # lock -> (display name, key)
        self.nheld = 0                    # holds of all locks by all threads
        self.choices: list = []
        self.steps = self.preemptions = self.progress = 0
        self.current = None
        self.failure = None
        self.pruned = self.aborting = self.in_check = False
        self.spins: dict = {}             # (tid, lock name) -> failed trylocks since progress
        self.trace: list = []
        self.finished = threading.Lock()
        self.finished.acquire()
        self.by_ident: dict = {}
        was_checking = locks._checking
        locks.set_order_checking(True)
        locks.install_scheduler(self)
        try:
            for c in self.cpus:
                c.thread = threading.Thread(target=self._body, args=(c,), daemon=True,
                                            name=f"sim-{c.name}")
                c.thread.start()
                self.by_ident[c.thread.ident] = c
            first = self._decide()
            if first is None:
                self.finished.release()
            else:
                first.parked = False
                first.go.release()
            if not self.finished.acquire(timeout=self.stuck_seconds):
                self._stuck()
            else:
                self._join_all()
        finally:
            locks.install_scheduler(None)
            locks.set_order_checking(was_checking)
        if self.failure is None and not self.pruned:
            self._final_checks()
        return Run(self.failure, tuple(self.choices), self.steps, self.preemptions, self.pruned,
                   self.trace, {c.tid: c.results for c in self.cpus},
                   tuple(c.name for c in self.cpus))

    def _join_all(self) -> None:
        """After the run: let every parked thread unwind, one at a time, the last runner first."""
        self.aborting = True
        order = sorted(self.cpus, key=lambda c: c.tid != self.current)
        for c in order:
            if c.parked and c.thread.is_alive():
                c.parked = False
                c.go.release()
            c.thread.join(self.stuck_seconds)

    def _stuck(self) -> None:
        self.aborting = True
        frames = sys._current_frames()
        stacks = []
        for c in self.cpus:
            if c.thread.is_alive() and not c.parked:
                stacks.append(f"{c.name}:\n" + "".join(traceback.format_stack(
                    frames.get(c.thread.ident))[-4:]))
        self._set_failure("stuck", f"no scheduling point for {self.stuck_seconds} s:\n"
                          + "\n".join(stacks))

    def _final_checks(self) -> None:
        w = self.world
        try:
            if w.check is not None:
                w.check()
            if w.final is not None:
                w.final({c.tid: c.results for c in self.cpus})
        except InvariantError as e:
            self._set_failure("invariant", f"at the end: {e}")
        except Finding as e:
            self._set_failure(e.kind, str(e))

    # --- the simulated threads --------------------------------------------------------------------
    def _body(self, c: _Cpu) -> None:
        c.go.acquire()                                    # wait for the first turn
        try:
            if self.aborting:
                raise _Abort
            for i, (label, fn) in enumerate(c.ops):
                if i:
                    self._point(c, "op", label)
                if self.keep_trace:
                    self.trace.append((self.steps, c.tid, "op", label, None))
                c.results.append(fn())
                if self.keep_trace:
                    self.trace.append((self.steps, c.tid, "done", label, c.results[-1]))
                self.progress = self.steps
                self.spins.clear()
            self._finish(c)
        except _Abort:
            pass
        except BaseException as e:                        # escaped an operation
            if not self.aborting:
                held = self._held_by(c.tid)
                kind = "lock-order" if isinstance(e, locks.LockOrderError) else "exception"
                where = traceback.extract_tb(e.__traceback__)[-1]
                op = c.ops[len(c.results)][0] if len(c.results) < len(c.ops) else "its end"
                self._set_failure(kind, f"{type(e).__name__}: {e} — escaped "
                                  f"{op!r} in {c.name} "
                                  f"({where.name}, line {where.lineno})"
                                  + (f"; it still holds {', '.join(held)}" if held else ""))
                self._end()

    def _finish(self, c: _Cpu) -> None:
        held = self._held_by(c.tid)
        if held:
            self._set_failure("leak", f"{c.name} finished holding {', '.join(held)}")
            self._end()
            raise _Abort
        c.done = True
        c.pending = None
        nxt = self._decide()
        if nxt is None:
            self._end()
        else:
            nxt.parked = False
            nxt.go.release()

    def _end(self) -> None:
        """The run is over (clean, failed or pruned): wake the main thread, once."""
        if not self.aborting:
            self.aborting = True
            self.finished.release()

    def _point(self, c: _Cpu, op: str, what) -> None:
        """``c`` is about to do ``op``: let the strategy choose who runs; return when ``c`` may."""
        if self.aborting:
            raise _Abort
        c.pending = (op, what)
        nxt = self._decide()
        if nxt is None:
            self._end()
            raise _Abort
        if nxt is not c:
            c.parked = True
            nxt.parked = False
            nxt.go.release()
            c.go.acquire()
            if self.aborting:
                raise _Abort

    def _decide(self) -> Optional[_Cpu]:
        """The next thread to run, or None when the run is over (also records failures)."""
        if self.failure is not None:
            return None
        live = [c for c in self.cpus if not c.done]
        if not live:
            return None
        enabled = [c for c in live if self._enabled(c)]
        if not enabled:
            self._deadlock(live)
            return None
        if self.steps - self.progress >= self.scenario.livelock_steps:
            self._livelock(f"no operation completed in {self.steps - self.progress} steps")
            return None
        bound = self.scenario.livelock_spins
        if bound is not None and sum(self.spins.values()) >= bound:
            self._livelock(f"no operation completed in {sum(self.spins.values())} failed "
                           "trylocks")
            return None
        if self.steps >= self.scenario.max_steps:
            self._livelock(f"the run exceeded {self.scenario.max_steps} steps")
            return None
        cands = tuple(c.tid for c in enabled if not self._yielding(c, enabled)) or \
            tuple(c.tid for c in enabled)
        try:
            tid = self.strategy.choose(self, cands)
        except ScheduleMismatch as e:
            self._set_failure("mismatch", str(e))
            return None
        if tid is None:
            self.pruned = True
            return None
        if len(cands) > 1:
            self.choices.append(tid)
            if self.current in cands and tid != self.current:
                self.preemptions += 1
        self.current = tid
        self.steps += 1
        c = self.cpus[tid]
        c.last_run = self.steps
        return c

    @staticmethod
    def _yielding(c: _Cpu, enabled) -> bool:
        """Fairness: after a failed trylock, ``c`` waits until every other runnable thread has
        run since (including threads that became runnable only later, e.g. when ``c`` let go
        of the lock they were waiting for)."""
        y = c.yielded_at
        return y is not None and any(u.last_run < y for u in enabled if u is not c)

    def blocked(self) -> list:
        """Ids of the live threads whose pending operation cannot proceed (waiting for a lock)."""
        return [c.tid for c in self.cpus if not c.done and not self._enabled(c)]

    def pending(self, tid: int):
        """Thread ``tid``'s next operation: ``(op, lock)`` or ``("op"/"yield", label)``."""
        return self.cpus[tid].pending

    def _enabled(self, c: _Cpu) -> bool:
        op, lock = c.pending
        if op not in BLOCKING:
            return True
        st = self.state.get(lock)
        if st is None:
            return True
        if op == "read_lock":
            return st.writer is None
        return st.writer is None and not st.readers

    # --- what the locks call -------------------------------------------------------------------
    def _me(self) -> _Cpu:
        c = self.by_ident.get(threading.get_ident())
        if c is None:
            raise RuntimeError("a tmemref lock was used outside the simulated threads while a "
                               "scheduler runs")
        return c

    def lock_op(self, lock, op: str):
        """A lock operation of the running thread (called through the hook in
        :mod:`tmemref.host.locks`). Returns what the real operation returns."""
        if self.in_check:                   # check() taking a lock: the real one is free
            return locks._REAL_OPS[type(lock), op](lock)
        c = self._me()
        if op in BLOCKING:                  # the order checker, before waiting (may raise)
            locks._push(lock, self.scenario.check_order)
        self._point(c, op, lock)
        st = self.state.get(lock)
        if st is None:                      # first use: name it now (name#k counts first uses)
            st = self.state[lock] = _Lock()
            self._names(lock)
        me, result = c.tid, None
        if op in BLOCKING:
            if op == "read_lock":
                st.readers[me] = st.readers.get(me, 0) + 1
            else:
                st.writer = me
            self.nheld += 1
        elif op in TRYLOCKS:
            result = st.writer is None and (op == "read_trylock" or not st.readers)
            if result:
                if op == "read_trylock":
                    st.readers[me] = st.readers.get(me, 0) + 1
                else:
                    st.writer = me
                self.nheld += 1
                locks._push(lock, False)
            else:                           # a yield: let every other runnable thread go first
                c.yielded_at = self.steps
                key = (me, self._name(lock))
                self.spins[key] = self.spins.get(key, 0) + 1
        else:
            if op == "read_unlock":
                n = st.readers.get(me, 0)
                if not n:
                    raise RuntimeError(f"read_unlock of {self._name(lock)} not read-held")
                if n == 1:
                    del st.readers[me]
                else:
                    st.readers[me] = n - 1
            else:
                if st.writer != me:
                    raise RuntimeError(f"{op} of {self._name(lock)} by a thread not holding it")
                st.writer = None
            locks._pop(lock)
            self.nheld -= 1
        if self.keep_trace:
            self.trace.append((self.steps, me, op, self._name(lock), result))
        if self.check_model:
            self.check()
        if self.nheld == 0 and op in RELEASES:
            self._quiescent(c)
        return result

    def lock_held(self, lock) -> bool:
        """``lock.held`` while the scheduler runs: from the model."""
        st = self.state.get(lock)
        return st is not None and (st.writer is not None or bool(st.readers))

    def yield_point(self, label: str) -> None:
        """A declared place where the engine may lose the CPU (a non-atomic update)."""
        if self.in_check:
            return
        c = self._me()
        self._point(c, "yield", label)
        if self.keep_trace:
            self.trace.append((self.steps, c.tid, "yield", label, None))

    # --- detection -------------------------------------------------------------------------------
    def _quiescent(self, c: _Cpu) -> None:
        check = self.world.check
        if check is None:
            return
        self.in_check = True
        try:
            check()
        except InvariantError as e:
            self._set_failure("invariant", f"after {c.name}'s last release: {e}")
            self._end()
            raise _Abort
        finally:
            self.in_check = False

    def _set_failure(self, kind: str, message: str, cycle: tuple = ()) -> None:
        if self.failure is None:
            self.failure = Failure(kind, message, tuple(self.choices), self.steps, cycle)

    def _names(self, lock) -> tuple:
        """``(display name, key)`` of a lock: the world's label (key ``(name, label)``), else
        ``name#k`` (k: order of first use in this run; key ``(name, None)``). Cached by the
        lock itself, which keeps it alive: ids of freed locks are not reused within a run."""
        names = self.names.get(lock)
        if names is None:
            label = self.world.label(lock) if self.world.label is not None else None
            names = self.names[lock] = ((label, (lock.name, label)) if label else
                                        (f"{lock.name}#{len(self.names)}", (lock.name, None)))
        return names

    def _name(self, lock) -> str:
        return self._names(lock)[0]

    def lock_key(self, lock) -> tuple:
        """``(name, label or None)``, the same in every run of the scenario; a key without a
        label may stand for any lock of that name (coarser, never wrong)."""
        return self._names(lock)[1]

    def _held_by(self, tid: int) -> list:
        out = []
        for lock, st in self.state.items():
            if st.writer == tid:
                out.append(self._name(lock))
            elif tid in st.readers:
                out.append(f"{self._name(lock)} (read)")
        return sorted(out)

    def _holders(self, lock) -> list:
        st = self.state[lock]
        return [st.writer] if st.writer is not None else sorted(st.readers)

    def _deadlock(self, live) -> None:
        """Every live thread is blocked: follow who waits for whom until a thread repeats."""
        path, seen = [], {}
        c = live[0]
        while c.tid not in seen:
            seen[c.tid] = len(path)
            op, lock = c.pending
            holder = self.cpus[self._holders(lock)[0]]
            path.append((c.name, self._name(lock) + (" (write)" if op == "write_lock" else ""),
                         holder.name))
            c = holder
            if c.done:
                break
        cycle = tuple(path[seen[c.tid]:]) if c.tid in seen else tuple(path)
        text = "; ".join(f"{t} waits for {w}, held by {h}" for t, w, h in cycle)
        self._set_failure("deadlock", f"every thread is blocked: {text}", cycle)

    def _livelock(self, why: str) -> None:
        spins = ", ".join(f"{self.cpus[t].name} {n}x {name}" for (t, name), n in
                          sorted(self.spins.items(), key=lambda kv: (-kv[1], kv[0])))
        self._set_failure("livelock", why + (f"; failed trylocks meanwhile: {spins}"
                                             if spins else ""))


def run(scenario: Scenario, schedule=(), *, trace: bool = True) -> Run:
    """Run ``scenario`` once under ``schedule`` (a string from :func:`encode` or a tuple of
    thread ids; missing decisions take the default: go on with the current thread while it
    can, else the lowest-numbered runnable one). O(steps × threads)."""
    choices = decode(schedule) if isinstance(schedule, str) else tuple(schedule)
    r = Scheduler(scenario, _Default(choices), trace=trace).run()
    if r.failure is None and len(r.choices) < len(choices):
        r.failure = Failure("mismatch", f"the run ended after {len(r.choices)} of the "
                            f"{len(choices)} decisions given", r.choices, r.steps)
    return r
